"""The journal writes every message in order and reads it back."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from amcp.domain import CancelOrder, ClientOrderId, OrderSide, StrategyId, SubmitOrder
from amcp.errors import StoreError
from amcp.store.journal import Journal


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    journal = Journal(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-1")
    submit = SubmitOrder(client_order_id=ClientOrderId("c1"), strategy_id=StrategyId("s"), symbol="AAPL",
                         side=OrderSide.BUY, quantity=Decimal(3), ts_ns=5)
    assert journal.record([submit, CancelOrder(client_order_id=ClientOrderId("c1"), ts_ns=6)], cycle=2) == 2
    rows = journal.read()
    assert [r["type"] for r in rows] == ["SubmitOrder", "CancelOrder"]
    assert rows[0]["quantity"] == "3" and rows[0]["cycle"] == 2
    assert journal.counts_by_type() == {"CancelOrder": 1, "SubmitOrder": 1}
    # Another run in the same database is kept apart.
    other = Journal(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-2")
    assert other.read() == []


def test_unwritable_location_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open journal"):
        Journal(f"sqlite:///{tmp_path / 'missing-dir' / 'j.sqlite'}", "r")


def test_non_message_is_refused(tmp_path: Path) -> None:
    journal = Journal(f"sqlite:///{tmp_path / 'j.sqlite'}", "r")
    with pytest.raises(StoreError, match="cannot record dict"):
        journal.record([{"type": "x"}])
    assert journal.read() == []


def test_journal_on_postgresql_keeps_runs_apart(postgres_url: str) -> None:
    import uuid

    run_id = f"test-{uuid.uuid4().hex[:12]}"
    journal = Journal(postgres_url, run_id)
    cancel = CancelOrder(client_order_id=ClientOrderId("c9"), ts_ns=3)
    journal.record([cancel], cycle=1)
    assert [r["type"] for r in journal.read()] == ["CancelOrder"]
    assert journal.counts_by_type() == {"CancelOrder": 1}
    journal.close()
