"""Turn domain messages into plain JSON-able records and back (for the journal and the API).

A field holding a tuple of messages (``SubmitOrder.legs``) is written as a list of their
records and read back as a tuple.
"""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from enum import Enum
from typing import Any

from amcp.domain import messages
from amcp.errors import DomainError

_TYPES: dict[str, type] = {
    name: obj
    for name, obj in vars(messages).items()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == messages.__name__
}


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple):
        return [to_record(item) if dataclasses.is_dataclass(item) else _plain(item) for item in value]
    return value


def to_record(message: Any) -> dict[str, Any]:
    """Return ``{"type": <class name>, **fields}`` with Decimals as strings and enums as values.

    Raises:
        DomainError: if ``message`` is not one of the message dataclasses.
    """
    name = type(message).__name__
    if _TYPES.get(name) is not type(message):
        raise DomainError(f"not a domain message: {type(message).__name__}")
    record: dict[str, Any] = {"type": name}
    for field in dataclasses.fields(message):
        record[field.name] = _plain(getattr(message, field.name))
    return record


def to_json(message: Any) -> str:
    return json.dumps(to_record(message), separators=(",", ":"), sort_keys=True)


def from_record(record: dict[str, Any]) -> Any:
    """Rebuild a message from :func:`to_record` output, converting each field to its declared type.

    Raises:
        DomainError: if the type is unknown or a field is missing or malformed.
    """
    data = dict(record)
    name = data.pop("type", None)
    cls = _TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise DomainError(f"unknown message type {name!r}")
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = set(data) - set(hints)
    if unknown:
        raise DomainError(f"{name}: unknown fields {sorted(unknown)}")
    namespace = vars(messages)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kwargs[key] = _coerce(str(hints[key]), value, namespace)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise DomainError(f"{name}: {exc}") from exc


def _coerce(annotation: str, value: Any, namespace: dict[str, Any]) -> Any:
    if value is None:
        return None
    if annotation.startswith("tuple["):
        if not isinstance(value, list):
            raise DomainError(f"cannot read {value!r:.80} as {annotation}: expected a list")
        inner = annotation[len("tuple["):].split(",")[0].strip()
        items = tuple(from_record(item) if isinstance(item, dict) else item for item in value)
        wrong = [type(item).__name__ for item in items if type(item).__name__ != inner]
        if wrong:
            raise DomainError(f"cannot read {value!r:.80} as {annotation}: holds {wrong}")
        return items
    base = annotation.split("|")[0].strip()
    target = namespace.get(base)
    if base == "Decimal":
        return Decimal(str(value))
    if base in ("int", "float", "str", "bool"):
        return value
    if isinstance(target, type):
        try:
            return target(value)
        except Exception as exc:  # noqa: BLE001 - any constructor failure is bad input
            raise DomainError(f"cannot read {value!r} as {base}: {exc}") from exc
    return value
