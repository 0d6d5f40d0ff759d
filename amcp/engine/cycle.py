"""The trading cycle: one function of (components, bar batch) shared by every mode.

One cycle, for the bars that closed at ``ts``:

1. the broker fills or expires working orders against the bars;
2. the OMS applies those events and hands back the fills;
3. the portfolio starts a session if one began, applies the fills and marks to the closes;
4. strategies hear about their fills;
5. risk updates the trading state (daily loss limit); a move to HALTED cancels working orders;
6. strategies see the bars and emit intents;
7. the portfolio sizes intents into orders; risk accepts or denies each with a reason;
8. the OMS records the decisions; the journal writes them **before** anything is sent;
9. the broker acknowledges the accepted orders (they fill from the next bars on).

The backtest runs this with :class:`~amcp.engine.invoker.LocalInvoker`; the orchestrator
actor runs the very same code with a Ray invoker over actor handles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Sequence

from amcp.domain._fast_init import keyword_constructor
from amcp.domain.data import BarBatch
from amcp.domain.enums import TradingState
from amcp.domain.messages import (
    OrderDenied,
    OrderEvent,
    OrderFilled,
    TradingStateChanged,
)
from amcp.engine.clock import SessionDates
from amcp.engine.invoker import Invoker
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext

# RiskContext(...) for the hot path: the same object, without the class-call overhead.
_new_risk_context = keyword_constructor(RiskContext)


@dataclass(frozen=True, slots=True)
class Plane:
    """The components (objects or actor handles) one cycle drives."""

    broker: Any
    oms: Any
    portfolio: Any
    risk: Any
    strategies: Sequence[Any]
    journal: Any | None = None


@dataclass(slots=True)
class CycleReport:
    """What one cycle did; small and picklable (it crosses the actor boundary)."""

    cycle: int
    ts_ns: int
    equity: float
    cash: float
    gross_exposure: float
    bars: int
    orders_submitted: int = 0
    fills: list[OrderFilled] = field(default_factory=list)
    denials: list[OrderDenied] = field(default_factory=list)
    state_changes: list[TradingStateChanged] = field(default_factory=list)
    closed_trade_pnls: list[float] = field(default_factory=list)
    canceled: int = 0


class TradingKernel:
    """Runs cycles over a :class:`Plane` through an :class:`Invoker`.

    Its own state is only the last session date, the trading state it has seen and the cycle
    counter, all checkpointable through :meth:`state`.
    """

    def __init__(self, plane: Plane, invoker: Invoker, bars_close_session: bool = True) -> None:
        self.plane = plane
        self.invoker = invoker
        self.bars_close_session = bars_close_session
        self.session: date | None = None
        self.trading_state = TradingState.ACTIVE
        self.cycles_done = 0
        self._session_dates = SessionDates()  # session_date, cycle after cycle

    # ------------------------------------------------------------------ checkpoint
    def state(self) -> dict[str, Any]:
        return {"session": self.session, "trading_state": self.trading_state.value, "cycles_done": self.cycles_done}

    def load_state(self, state: dict[str, Any]) -> None:
        self.session = state["session"]
        self.trading_state = TradingState(state["trading_state"])
        self.cycles_done = int(state["cycles_done"])

    # ------------------------------------------------------------------ helpers
    def _journal(self, messages: Sequence[Any], cycle: int) -> None:
        if self.plane.journal is not None and messages:
            self.invoker.call(self.plane.journal, "record", list(messages), cycle)

    def _track(self, changes: Sequence[TradingStateChanged]) -> bool:
        """Record state changes; return whether trading just became HALTED."""
        halted = False
        for change in changes:
            if change.state is TradingState.HALTED and self.trading_state is not TradingState.HALTED:
                halted = True
            self.trading_state = change.state
        return halted

    def _cancel_all(self, ts_ns: int, reason: str, cycle: int) -> tuple[list[Any], int]:
        call = self.invoker.call
        cancels = call(self.plane.oms, "cancel_all_commands", ts_ns, reason)
        if not cancels:
            return [], 0
        events = call(self.plane.broker, "cancel", cancels)
        call(self.plane.oms, "apply", events)
        return [*cancels, *events], len(cancels)

    # ------------------------------------------------------------------ the cycle
    def run_cycle(self, batch: BarBatch) -> CycleReport:
        """Run one cycle for ``batch``; see the module docstring for the steps."""
        plane, call, gather = self.plane, self.invoker.call, self.invoker.gather
        cycle = self.cycles_done
        ts = batch.ts_ns
        today = self._session_dates.date_of(ts)
        new_session = today != self.session
        self.session = today
        log: list[Any] = []

        # 1-3: fills against the new bars, then the ledger.
        events: list[OrderEvent] = call(plane.broker, "on_bars", batch, self.bars_close_session)
        fills: list[OrderFilled] = call(plane.oms, "apply", events) if events else []
        log.extend(events)
        snapshot: PortfolioSnapshot
        snapshot, closed = call(plane.portfolio, "begin_cycle", batch, fills, new_session)
        # 4: strategies learn their fills.
        if fills:
            gather([(group, "on_fills", (fills,)) for group in plane.strategies])
        # 5: trading state.
        open_commands, pending = call(plane.oms, "book_view")
        context = _new_risk_context(ts_ns=ts, portfolio=snapshot, open_orders=open_commands, session_date=today)
        changes: list[TradingStateChanged] = call(plane.risk, "update", context)
        canceled = 0
        if changes:
            log.extend(changes)
            if self._track(changes):
                cancel_log, canceled = self._cancel_all(ts, "trading halted: " + changes[-1].reason, cycle)
                log.extend(cancel_log)
                open_commands, pending = call(plane.oms, "book_view")
                context = RiskContext(ts_ns=ts, portfolio=snapshot, open_orders=open_commands, session_date=today)
        # 6: strategies.
        intent_lists = gather([(group, "on_bars", (batch,)) for group in plane.strategies])
        intents = [intent for group_intents in intent_lists for intent in group_intents]
        # Positional (no keyword dict on the hot path): cycle, ts_ns, equity, cash, gross_exposure,
        # bars, orders_submitted, fills, denials, state_changes, closed_trade_pnls, canceled.
        # The lists are fresh from their components, which keep no reference to them.
        report = CycleReport(
            cycle,
            ts,
            float(snapshot.equity),
            float(snapshot.cash),
            float(snapshot.gross_exposure),
            batch.bar_count,
            0,
            fills,
            [],
            changes,
            closed,
            canceled,
        )
        # 7-9: size, check, record, send.
        if intents:
            commands = call(plane.portfolio, "size", intents, snapshot, pending, ts)
            if commands:
                accepted, denied = call(plane.risk, "check", commands, context)
                submitted = call(plane.oms, "process_decisions", commands, accepted, denied, ts)
                if plane.journal is not None:
                    self._journal([*log, *commands, *denied, *submitted], cycle)
                log = []
                if accepted:
                    acks = call(plane.broker, "submit", accepted, ts)
                    call(plane.oms, "apply", acks)
                    log.extend(acks)
                report.denials = denied
                report.orders_submitted = len(accepted)
        if log:
            self._journal(log, cycle)
        self.cycles_done = cycle + 1
        return report

    def engage_kill_switch(self, ts_ns: int, reason: str) -> CycleReport:
        """Halt trading now and cancel every working order."""
        call = self.invoker.call
        changes = call(self.plane.risk, "engage_kill_switch", ts_ns, reason)
        self._track(changes)
        self.trading_state = TradingState.HALTED
        cancel_log, canceled = self._cancel_all(ts_ns, "kill switch: " + reason, self.cycles_done)
        self._journal([*changes, *cancel_log], self.cycles_done)
        snapshot = call(self.plane.portfolio, "snapshot", ts_ns)
        return CycleReport(
            cycle=self.cycles_done,
            ts_ns=ts_ns,
            equity=float(snapshot.equity),
            cash=float(snapshot.cash),
            gross_exposure=float(snapshot.gross_exposure),
            bars=0,
            state_changes=list(changes),
            canceled=canceled,
        )

