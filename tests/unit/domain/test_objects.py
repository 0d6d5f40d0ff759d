"""Value types: exact decimals, increments, ids and messages that round-trip."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amcp.domain import ClientOrderId, Money, OrderSide, Price, Quantity, StrategyId, SubmitOrder, derive_client_order_id
from amcp.domain.objects import round_to_increment, to_decimal
from amcp.domain.serialization import from_record, to_json, to_record
from amcp.errors import DomainError


def test_float_converts_as_it_prints() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(23.456) == Decimal("23.456")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc", True, None])
def test_non_numbers_are_refused(bad: object) -> None:
    with pytest.raises(DomainError):
        to_decimal(bad)  # type: ignore[arg-type]


def test_quantity_refuses_negative_and_price_keeps_precision() -> None:
    with pytest.raises(DomainError, match="negative"):
        Quantity(-1)
    assert str(Price("10.50")) == "10.50"


def test_round_to_increment_modes() -> None:
    assert round_to_increment(Decimal("10.125"), Decimal("0.01")) == Decimal("10.12")
    assert round_to_increment(Decimal("10.121"), Decimal("0.05"), "up") == Decimal("10.15")
    assert round_to_increment(Decimal("-7.9"), Decimal(1), "down") == Decimal(-8)
    with pytest.raises(DomainError):
        round_to_increment(Decimal(1), Decimal(0))


def test_money_refuses_mixed_currencies() -> None:
    assert (Money(Decimal("1.10")) + Money(Decimal("2.205"))).cents().amount == Decimal("3.30")
    with pytest.raises(DomainError, match="USD with EUR"):
        Money(Decimal(1)) + Money(Decimal(1), "EUR")


def test_ids_are_validated_and_typed() -> None:
    assert isinstance(ClientOrderId("abc-1"), str)
    with pytest.raises(DomainError, match="ClientOrderId"):
        ClientOrderId("")
    with pytest.raises(DomainError):
        StrategyId("bad id!")


def test_derived_client_order_id_is_stable_and_distinct() -> None:
    a = derive_client_order_id("mom", 10, 0, "AAPL")
    assert a == derive_client_order_id("mom", 10, 0, "AAPL")
    assert a != derive_client_order_id("mom", 10, 1, "AAPL")
    assert len(a) <= 128


def test_messages_round_trip_through_records() -> None:
    command = SubmitOrder(client_order_id=ClientOrderId("c1"), strategy_id=StrategyId("s"), symbol="AAPL",
                          side=OrderSide.SELL, quantity=Decimal("5"), limit_price=Decimal("10.25"), ts_ns=7)
    record = to_record(command)
    assert record["side"] == "sell" and record["limit_price"] == "10.25"
    assert from_record(record) == command
    assert '"type":"SubmitOrder"' in to_json(command)


def test_bad_records_are_refused_clearly() -> None:
    with pytest.raises(DomainError, match="unknown message type"):
        from_record({"type": "Nope"})
    with pytest.raises(DomainError, match="unknown fields"):
        from_record({"type": "CancelOrder", "client_order_id": "c", "ts_ns": 1, "extra": 1})
    with pytest.raises(DomainError, match="cannot read"):
        from_record({"type": "CancelOrder", "client_order_id": "bad id!", "ts_ns": 1})
    with pytest.raises(DomainError, match="not a domain message"):
        to_record(object())
