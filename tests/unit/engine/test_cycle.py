"""The trading cycle in-process: determinism, the daily loss limit's halt, the kill switch."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from amcp.backtest.engine import BacktestEngine, build_local_plane
from amcp.config import BacktestConfig, DataConfig, load_config, parse_config
from amcp.data.bars import BarPanel, load_daily_bars, session_close_ns
from amcp.domain import BarBatch, OrderFilled, OrderIntent, OrderSide, OrderType, StrategyId, TimeInForce
from amcp.domain.enums import DenyReason, OrderStatus, TradingState
from amcp.engine.cycle import TradingKernel
from amcp.engine.invoker import LocalInvoker
from amcp.engine.recorder import RunRecorder

ROOT = Path(__file__).resolve().parents[3]


class ScriptedStrategies:
    """A strategy group that emits a fixed list of intents on given cycles."""

    def __init__(self, script: dict[int, list[OrderIntent]]) -> None:
        self.script = script
        self.cycle = 0
        self.fills: list[OrderFilled] = []

    def on_bars(self, batch: BarBatch) -> list[OrderIntent]:
        intents = self.script.get(self.cycle, [])
        self.cycle += 1
        return intents

    def on_fills(self, fills: Sequence[OrderFilled]) -> None:
        self.fills.extend(fills)


def panel(closes: dict[str, list[float]]) -> BarPanel:
    symbols = tuple(closes)
    days = (np.datetime64("2015-01-05") - np.datetime64("1970-01-01")).astype(int)
    n = len(next(iter(closes.values())))
    day_numbers = np.array([days + 7 * (i // 5) + i % 5 for i in range(n)], dtype=np.int64)  # weekdays
    close = np.array([closes[s] for s in symbols], dtype=np.float64).T
    return BarPanel(symbols, session_close_ns(day_numbers), close.copy(), close * 1.001, close * 0.999, close.copy(),
                    np.full(close.shape, 1e7))


def config(**risk: object) -> BacktestConfig:
    return parse_config(
        {
            "data": {"path": "unused"},
            "account": {"starting_cash_usd": 100_000},
            "venue": {"participation_rate": None, "slippage": {"model": "none"}},
            "risk": {"daily_loss_reduce_pct": 0.05, "daily_loss_halt_pct": 0.10, **risk},
            "strategies": [{"kind": "ma_cross", "id": "s"}],
        },
        BacktestConfig,
    )


def intent(symbol: str, qty: int, **kw: object) -> OrderIntent:
    return OrderIntent(strategy_id=StrategyId("s"), symbol=symbol, side=OrderSide.BUY, quantity=Decimal(qty), **kw)


def kernel_for(cfg: BacktestConfig, bars: BarPanel, strategies: ScriptedStrategies) -> TradingKernel:
    plane = build_local_plane(cfg, bars.symbols)
    plane = type(plane)(broker=plane.broker, oms=plane.oms, portfolio=plane.portfolio, risk=plane.risk,
                        strategies=[strategies])
    return TradingKernel(plane, LocalInvoker())


def test_loss_limit_halt_cancels_working_orders_and_denies_new_intents() -> None:
    # AAA is bought, then halves on day 6: a 50% loss of the position is > 10% of equity.
    bars = panel({"AAA": [100.0] * 5 + [40.0] * 3, "BBB": [50.0] * 8})
    script = {
        0: [intent("AAA", 500)],
        2: [intent("BBB", 10, order_type=OrderType.LIMIT, limit_price=Decimal("47.00"), time_in_force=TimeInForce.GTC)],
        5: [intent("BBB", 5)],
        6: [intent("BBB", 7)],
    }
    strategies = ScriptedStrategies(script)
    kernel = kernel_for(config(), bars, strategies)

    reports = [kernel.run_cycle(batch) for batch in bars.batches()]

    halted = [r for r in reports if any(c.state is TradingState.HALTED for c in r.state_changes)]
    assert len(halted) == 1 and halted[0].cycle == 5
    assert halted[0].canceled == 1  # the resting GTC limit on BBB
    assert kernel.plane.oms.working_orders() == []
    # Same session: new intents are denied.
    assert [d.reason for d in reports[5].denials] == [DenyReason.TRADING_HALTED]
    # The limit is daily: the next session starts ACTIVE again and trades.
    assert [c.state for c in reports[6].state_changes] == [TradingState.ACTIVE]
    assert reports[6].orders_submitted == 1 and kernel.trading_state is TradingState.ACTIVE
    statuses = sorted(o.status.value for o in kernel.plane.oms.orders())
    assert statuses == ["canceled", "denied", "filled", "filled"]  # the day-6 order fills on day 7


def test_kill_switch_cancels_working_orders_in_process() -> None:
    bars = panel({"AAA": [100.0] * 6})
    script = {0: [intent("AAA", 10, order_type=OrderType.LIMIT, limit_price=Decimal("95.00"), time_in_force=TimeInForce.GTC)],
              4: [intent("AAA", 1)]}
    kernel = kernel_for(config(), bars, ScriptedStrategies(script))
    batches = list(bars.batches())
    for batch in batches[:3]:
        kernel.run_cycle(batch)
    assert len(kernel.plane.oms.working_orders()) == 1

    report = kernel.engage_kill_switch(batches[2].ts_ns, "operator")

    assert report.canceled == 1 and kernel.plane.oms.working_orders() == []
    assert kernel.plane.oms.orders()[0].status is OrderStatus.CANCELED
    later = [kernel.run_cycle(batch) for batch in batches[3:]]
    assert sum(r.orders_submitted for r in later) == 0
    assert [d.reason for r in later for d in r.denials] == [DenyReason.TRADING_HALTED]


def test_orders_fill_from_the_next_bar_never_the_deciding_one() -> None:
    bars = panel({"AAA": [100.0, 101.0, 102.0, 103.0]})
    strategies = ScriptedStrategies({1: [intent("AAA", 10)]})
    kernel = kernel_for(config(), bars, strategies)

    reports = [kernel.run_cycle(batch) for batch in bars.batches()]

    assert [len(r.fills) for r in reports] == [0, 0, 1, 0]
    assert reports[2].fills[0].last_price == Decimal("102.0")  # day 2's open, not day 1's close
    assert strategies.fills == reports[2].fills


def test_sample_backtest_is_deterministic_and_equity_matches_the_ledger() -> None:
    cfg = load_config(ROOT / "configs/backtest.yaml", BacktestConfig)
    cfg = cfg.model_copy(update={"data": DataConfig(path=str(ROOT / cfg.data.path))})
    bars, _ = load_daily_bars(cfg.data)
    bars = bars.slice(0, 300)

    first_engine = BacktestEngine(cfg, bars)
    first = first_engine.run()
    second = BacktestEngine(cfg, bars).run()

    assert len(first.fills) > 50
    assert first.fill_records() == second.fill_records()
    assert np.array_equal(first.equity, second.equity)
    ledger = first_engine.plane.portfolio.portfolio
    assert first.final_equity == pytest.approx(float(ledger.equity), abs=1e-6)
    assert ledger.cash + ledger.market_value == ledger.equity


def test_recorder_counts_match_the_cycle_reports() -> None:
    bars = panel({"AAA": [100.0] * 4})
    kernel = kernel_for(config(), bars, ScriptedStrategies({0: [intent("AAA", 10)], 1: [intent("AAA", 10**9)]}))
    recorder = RunRecorder()
    recorder.add(kernel.run_cycle(batch) for batch in bars.batches())
    result = recorder.result()
    assert result.orders_submitted == 1 and len(result.fills) == 1
    assert result.denials_by_reason() == {"max_order_quantity": 1}
    assert result.bars == 4 and len(result.equity) == 4
    assert date.fromisoformat(result.summary(mode="t", symbols=1, starting_equity=1e5, report_path=None)["start"][:10])
