"""Collects cycle reports into a run's result: equity curve, fills, denials, metrics.

Backtest and paper both feed their :class:`~amcp.engine.cycle.CycleReport` s through here,
so both summaries are computed by the same code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from amcp.backtest.metrics import compute_metrics
from amcp.domain.messages import OrderDenied, OrderFilled, TradingStateChanged
from amcp.domain.serialization import to_record
from amcp.engine.clock import iso_utc
from amcp.engine.cycle import CycleReport


@dataclass
class RunResult:
    ts_ns: np.ndarray
    equity: np.ndarray
    gross_exposure: np.ndarray
    fills: list[OrderFilled]
    denials: list[OrderDenied]
    state_changes: list[TradingStateChanged]
    orders_submitted: int
    bars: int
    canceled: int
    closed_trade_pnls: list[float] = field(default_factory=list)

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1]) if len(self.equity) else float("nan")

    def denials_by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(d.reason.value for d in self.denials).items()))

    def traded_notional(self) -> float:
        return float(sum(f.last_quantity * f.last_price for f in self.fills))

    def metrics(self, starting_equity: float, periods_per_year: float = 252.0) -> dict[str, float]:
        curve = np.concatenate([[starting_equity], self.equity]) if len(self.equity) else np.array([starting_equity])
        exposure = np.concatenate([[0.0], self.gross_exposure]) if len(self.gross_exposure) else None
        return compute_metrics(
            curve,
            periods_per_year=periods_per_year,
            gross_exposure=exposure,
            traded_notional=self.traded_notional(),
            trade_pnls=np.asarray(self.closed_trade_pnls, dtype=np.float64),
        )

    def summary(self, *, mode: str, symbols: int, starting_equity: float, report_path: str | None) -> dict[str, Any]:
        """The one-line JSON summary every job ends with."""
        metrics = self.metrics(starting_equity)
        return {
            "mode": mode,
            "symbols": symbols,
            "cycles": int(len(self.ts_ns)),
            "bars": self.bars,
            "start": iso_utc(int(self.ts_ns[0])) if len(self.ts_ns) else None,
            "end": iso_utc(int(self.ts_ns[-1])) if len(self.ts_ns) else None,
            "orders": self.orders_submitted,
            "fills": len(self.fills),
            "denials": self.denials_by_reason(),
            "canceled": self.canceled,
            "final_equity": round(self.final_equity, 2),
            "total_return": round(metrics["total_return"], 6),
            "sharpe": round(metrics["sharpe"], 4),
            "max_drawdown": round(metrics["max_drawdown"], 6),
            "report": report_path,
        }

    def fill_records(self) -> list[dict[str, Any]]:
        records = []
        for fill in self.fills:
            record = to_record(fill)
            record["time"] = iso_utc(fill.ts_ns)
            records.append(record)
        return records


class RunRecorder:
    """Accumulates cycle reports in order."""

    def __init__(self) -> None:
        self._ts: list[int] = []
        self._equity: list[float] = []
        self._gross: list[float] = []
        self._fills: list[OrderFilled] = []
        self._denials: list[OrderDenied] = []
        self._changes: list[TradingStateChanged] = []
        self._closed: list[float] = []
        self._orders = 0
        self._bars = 0
        self._canceled = 0

    def add(self, reports: Iterable[CycleReport]) -> None:
        for report in reports:
            if report.bars:
                self._ts.append(report.ts_ns)
                self._equity.append(report.equity)
                self._gross.append(report.gross_exposure)
            self._fills.extend(report.fills)
            self._denials.extend(report.denials)
            self._changes.extend(report.state_changes)
            self._closed.extend(report.closed_trade_pnls)
            self._orders += report.orders_submitted
            self._bars += report.bars
            self._canceled += report.canceled

    def result(self) -> RunResult:
        return RunResult(
            ts_ns=np.asarray(self._ts, dtype=np.int64),
            equity=np.asarray(self._equity, dtype=np.float64),
            gross_exposure=np.asarray(self._gross, dtype=np.float64),
            fills=list(self._fills),
            denials=list(self._denials),
            state_changes=list(self._changes),
            orders_submitted=self._orders,
            bars=self._bars,
            canceled=self._canceled,
            closed_trade_pnls=list(self._closed),
        )
