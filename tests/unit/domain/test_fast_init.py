"""The generated constructors build exactly what the dataclass ``__init__`` would."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from amcp.domain import ClientOrderId, OrderSide, StrategyId, SubmitOrder
from amcp.domain._fast_init import fast_init, keyword_constructor, unchecked_constructor


@dataclass(frozen=True, slots=True, kw_only=True)
class Plain:
    a: int
    b: str = "x"
    c: list[int] = field(default_factory=list)


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class Fast:
    a: int
    b: str = "x"
    c: list[int] = field(default_factory=list)


def test_fast_init_matches_the_dataclass_init_for_defaults_and_factories() -> None:
    assert dataclasses.astuple(Fast(a=1)) == dataclasses.astuple(Plain(a=1))
    assert dataclasses.astuple(Fast(a=1, b="y", c=[2])) == dataclasses.astuple(Plain(a=1, b="y", c=[2]))
    assert Fast(a=1).c is not Fast(a=1).c  # a fresh list per instance, as default_factory promises
    with pytest.raises(TypeError):
        Fast(1)  # keyword-only is kept
    with pytest.raises(TypeError):
        Fast(b="y")  # a required field is still required


def test_messages_stay_frozen_comparable_picklable_and_replaceable() -> None:
    build = keyword_constructor(SubmitOrder)
    kwargs = dict(client_order_id=ClientOrderId("c"), strategy_id=StrategyId("s"), symbol="AAPL",
                  side=OrderSide.BUY, quantity=Decimal(3), ts_ns=1)
    direct, built = SubmitOrder(**kwargs), build(**kwargs)
    assert direct == built and hash(direct) == hash(built) and repr(direct) == repr(built)
    assert pickle.loads(pickle.dumps(built)) == direct
    assert dataclasses.replace(built, quantity=Decimal(4)).quantity == Decimal(4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.quantity = Decimal(5)  # type: ignore[misc]


def test_unchecked_constructor_sets_fields_in_order() -> None:
    build = unchecked_constructor(Plain)
    assert build(7, "z", [1]) == Plain(a=7, b="z", c=[1])


def test_non_frozen_or_unslotted_classes_are_refused() -> None:
    @dataclass
    class Loose:
        a: int

    with pytest.raises(TypeError, match="frozen dataclass with slots"):
        fast_init(Loose)

    @dataclass(frozen=True, slots=True)
    class WithPostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="__post_init__"):
        fast_init(WithPostInit)
