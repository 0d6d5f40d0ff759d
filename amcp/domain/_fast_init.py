"""Faster construction of the frozen, slotted dataclasses built on every cycle and every order.

Two costs of ``Message(field=value, ...)`` on CPython 3.11, both avoidable without changing what
is built:

- ``dataclasses`` gives a frozen class an ``__init__`` that stores each field with
  ``object.__setattr__(self, "name", value)``, which looks the attribute up by name every time.
  :func:`fast_init` swaps in an ``__init__`` that calls each field's slot descriptor directly
  (``Class.name.__set__(self, value)``).
- Calling a class with keyword arguments packs them into a dict and out again on the way to
  ``__init__``. A plain function taking the same keywords does not:
  :func:`keyword_constructor` returns one that builds the instance itself.

Parameters, defaults and default factories are those of the dataclass; instances stay frozen
(assigning a field still raises ``FrozenInstanceError``) and compare, hash, print, pickle, copy
and ``dataclasses.replace`` exactly as before.
"""

from __future__ import annotations

import dataclasses
from types import MemberDescriptorType
from typing import Any, Callable, TypeVar

_T = TypeVar("_T")
_NO_VALUE = object()  # a parameter whose field has a default factory was not given


def fast_init(cls: type[_T]) -> type[_T]:
    """Give the frozen, slotted dataclass ``cls`` the faster ``__init__``; return ``cls``.

    Raises:
        TypeError: if ``cls`` is not a frozen dataclass with slots, or has a ``__post_init__``,
            an ``InitVar``, a ``ClassVar`` or a field left out of ``__init__`` (none of which
            this supports).
    """
    parameters, body, namespace = _generated_parts(cls)
    source = f"def __init__(self, {parameters}):\n{body}"
    exec(source, namespace)  # noqa: S102 - generated from the field names, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(getattr(cls.__init__, "__annotations__", {}))
    cls.__init__ = init  # type: ignore[misc]
    return cls


def keyword_constructor(cls: type[_T]) -> Callable[..., _T]:
    """Return a function that takes ``cls(...)``'s arguments and builds the same instance, faster.

    For hot paths: it skips the class-call machinery (no keyword dict), and sets the slots as
    :func:`fast_init` does.

    Raises:
        TypeError: as :func:`fast_init`.
    """
    parameters, body, namespace = _generated_parts(cls)
    namespace.update({"_new": object.__new__, "_cls": cls})
    source = f"def create({parameters}):\n    self = _new(_cls)\n{body}    return self\n"
    exec(source, namespace)  # noqa: S102 - generated from the field names, as dataclasses does
    create: Callable[..., _T] = namespace["create"]
    create.__qualname__ = f"{cls.__qualname__}.<keyword constructor>"
    create.__module__ = cls.__module__
    return create


def unchecked_constructor(cls: type[_T]) -> Callable[..., _T]:
    """Return ``build(*field_values) -> cls`` for a frozen, slotted dataclass, skipping ``__init__``.

    The fields are set in order, from positional arguments, and neither defaults nor
    ``__post_init__`` run: only for values already known to pass the class's own checks.

    Raises:
        TypeError: if ``cls`` is not a frozen dataclass with slots.
    """
    _check_frozen_slots(cls)
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_cls": cls, "_new": object.__new__}
    namespace.update({f"_set_{name}": getattr(cls, name).__set__ for name in names})
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    exec(f"def build({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n", namespace)  # noqa: S102
    build: Callable[..., _T] = namespace["build"]
    build.__qualname__ = f"{cls.__qualname__}.<unchecked constructor>"
    return build


def _check_frozen_slots(cls: type) -> None:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"need a frozen dataclass with slots, got {cls.__qualname__}")


def _generated_parts(cls: type) -> tuple[str, str, dict[str, Any]]:
    """Return the parameter list, the body setting every slot, and the names they use."""
    _check_frozen_slots(cls)
    fields = dataclasses.fields(cls)
    if hasattr(cls, "__post_init__") or len(fields) != len(cls.__dataclass_fields__):  # type: ignore[attr-defined]
        raise TypeError(f"no __post_init__, InitVar or ClassVar supported ({cls.__qualname__})")
    namespace: dict[str, Any] = {"_NO_VALUE": _NO_VALUE}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for field in fields:
        name = field.name
        slot = getattr(cls, name)
        if not field.init or not isinstance(slot, MemberDescriptorType):
            raise TypeError(f"need slotted init fields, not {cls.__qualname__}.{name}")
        namespace[f"_set_{name}"] = slot.__set__
        value = name
        if field.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = field.default
            parameter = f"{name}=_default_{name}"
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = field.default_factory
            parameter = f"{name}=_NO_VALUE"
            value = f"_factory_{name}() if {name} is _NO_VALUE else {name}"
        else:
            parameter = name
        (keyword if field.kw_only else positional).append(parameter)
        body.append(f"    _set_{name}(self, {value})\n")
    parameters = ", ".join([*positional, *(["*", *keyword] if keyword else [])])
    return parameters, "".join(body) or "    pass\n", namespace
