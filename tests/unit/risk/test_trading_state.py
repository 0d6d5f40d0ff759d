"""Trading state of RiskEngine: daily loss limit, session reset, kill switch, manual state."""

from __future__ import annotations

from datetime import date

import pytest

from amcp.domain import TradingState, TradingStateChanged
from amcp.errors import RiskError

from ._builders import NOW_NS, SECOND_NS, context, engine, snapshot

ACTIVE, REDUCING, HALTED = TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED
DAY_1, DAY_2 = date(2024, 1, 2), date(2024, 1, 3)


def at_equity(equity: int, *, step: int = 0, session_date: date | None = DAY_1):  # type: ignore[no-untyped-def]
    """Context at ``NOW + step`` seconds with start-of-day equity 100,000."""
    return context(
        snapshot(equity=equity, start_of_day_equity=100_000),
        ts_ns=NOW_NS + step * SECOND_NS,
        session_date=session_date,
    )


def states(events: list[TradingStateChanged]) -> list[tuple[TradingState, TradingState]]:
    return [(e.previous, e.state) for e in events]


def test_new_engine_is_active() -> None:
    assert engine().state is ACTIVE


def test_loss_below_the_reduce_limit_changes_nothing() -> None:
    risk = engine(daily_loss_reduce_pct=0.05, daily_loss_halt_pct=0.10)

    assert risk.update(at_equity(95_001)) == []
    assert risk.state is ACTIVE


def test_daily_loss_moves_active_to_reducing_to_halted_once_each() -> None:
    risk = engine(daily_loss_reduce_pct=0.05, daily_loss_halt_pct=0.10)

    to_reducing = risk.update(at_equity(95_000, step=1))
    again = risk.update(at_equity(94_000, step=2))
    to_halted = risk.update(at_equity(90_000, step=3))
    again_halted = risk.update(at_equity(80_000, step=4))

    assert states(to_reducing) == [(ACTIVE, REDUCING)]
    assert to_reducing[0].ts_ns == NOW_NS + SECOND_NS
    assert "5.0000%" in to_reducing[0].reason and "100000" in to_reducing[0].reason
    assert "95000" in to_reducing[0].reason and "daily_loss_reduce_pct 5.00%" in to_reducing[0].reason
    assert again == []
    assert states(to_halted) == [(REDUCING, HALTED)]
    assert "10.0000%" in to_halted[0].reason and "daily_loss_halt_pct 10.00%" in to_halted[0].reason
    assert again_halted == []
    assert risk.state is HALTED


def test_loss_beyond_halt_from_active_goes_straight_to_halted() -> None:
    risk = engine()

    assert states(risk.update(at_equity(85_000))) == [(ACTIVE, HALTED)]


def test_a_bounce_does_not_lift_the_loss_state_within_the_session() -> None:
    risk = engine()
    risk.update(at_equity(94_000, step=1))

    assert risk.update(at_equity(100_000, step=2)) == []
    assert risk.state is REDUCING


def test_new_session_resets_a_loss_limit_state() -> None:
    risk = engine()
    risk.update(at_equity(85_000, step=1, session_date=DAY_1))

    events = risk.update(at_equity(100_000, step=2, session_date=DAY_2))

    assert states(events) == [(HALTED, ACTIVE)]
    assert "2024-01-03" in events[0].reason
    assert risk.state is ACTIVE


def test_new_session_with_a_loss_still_breached_resets_then_reapplies() -> None:
    risk = engine()
    risk.update(at_equity(85_000, step=1, session_date=DAY_1))

    events = risk.update(at_equity(94_000, step=2, session_date=DAY_2))

    assert states(events) == [(HALTED, ACTIVE), (ACTIVE, REDUCING)]


def test_new_session_keeps_a_manual_state() -> None:
    risk = engine()
    risk.update(at_equity(100_000, session_date=DAY_1))
    risk.set_state(REDUCING, NOW_NS, "earnings week")

    assert risk.update(at_equity(100_000, step=1, session_date=DAY_2)) == []
    assert risk.state is REDUCING


def test_kill_switch_is_sticky_across_loss_recovery_and_sessions() -> None:
    risk = engine()

    engaged = risk.engage_kill_switch(NOW_NS, "runaway strategy")
    after_session = risk.update(at_equity(100_000, step=1, session_date=DAY_2))

    assert states(engaged) == [(ACTIVE, HALTED)]
    assert "runaway strategy" in engaged[0].reason
    assert after_session == []
    assert risk.state is HALTED and risk.kill_switch_engaged


def test_kill_switch_cannot_be_overridden_by_set_state() -> None:
    risk = engine()
    risk.engage_kill_switch(NOW_NS, "runaway strategy")

    with pytest.raises(RiskError, match="kill switch is engaged"):
        risk.set_state(ACTIVE, NOW_NS, "try to resume")
    assert risk.state is HALTED


def test_engaging_twice_emits_once() -> None:
    risk = engine()

    assert len(risk.engage_kill_switch(NOW_NS, "a")) == 1
    assert risk.engage_kill_switch(NOW_NS, "b") == []


def test_reset_kill_switch_returns_to_active() -> None:
    risk = engine()
    risk.engage_kill_switch(NOW_NS, "test")

    events = risk.reset_kill_switch(NOW_NS + 1, "all clear")

    assert states(events) == [(HALTED, ACTIVE)]
    assert "all clear" in events[0].reason
    assert not risk.kill_switch_engaged


def test_reset_kill_switch_returns_to_reducing_if_the_loss_limit_says_so() -> None:
    risk = engine()
    risk.engage_kill_switch(NOW_NS, "test")
    assert risk.update(at_equity(94_000, step=1)) == []  # recorded, but the kill switch holds

    events = risk.reset_kill_switch(NOW_NS + 2 * SECOND_NS, "all clear")

    assert states(events) == [(HALTED, REDUCING)]
    assert risk.state is REDUCING


def test_reset_without_kill_switch_is_a_no_op() -> None:
    assert engine().reset_kill_switch(NOW_NS, "nothing") == []


def test_set_state_emits_only_on_change() -> None:
    risk = engine()

    first = risk.set_state(REDUCING, NOW_NS, "manual")
    second = risk.set_state(REDUCING, NOW_NS, "manual")

    assert states(first) == [(ACTIVE, REDUCING)]
    assert "manual" in first[0].reason
    assert second == []


def test_manual_override_holds_until_a_more_severe_loss() -> None:
    risk = engine()
    risk.update(at_equity(94_000, step=1))
    risk.set_state(ACTIVE, NOW_NS + 2 * SECOND_NS, "risk officer approved")

    same_level = risk.update(at_equity(93_000, step=3))
    worse = risk.update(at_equity(89_000, step=4))

    assert same_level == []
    assert states(worse) == [(ACTIVE, HALTED)]


def test_set_state_rejects_a_non_state() -> None:
    with pytest.raises(RiskError, match="not a trading state"):
        engine().set_state("paused", NOW_NS, "x")  # type: ignore[arg-type]


def test_zero_start_of_day_equity_does_not_act() -> None:
    risk = engine()

    assert risk.update(context(snapshot(equity=0, start_of_day_equity=0))) == []
    assert risk.state is ACTIVE
