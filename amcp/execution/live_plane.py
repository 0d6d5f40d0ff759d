"""The broker and risk roles of the trading plane against Alpaca (or amcp's paper server).

:class:`LiveBrokerService` is what the trading kernel (:mod:`amcp.engine.cycle`) calls as
``plane.broker`` **and** ``plane.risk`` in the ``paper_server`` and ``live`` modes: one object
holds the one :class:`~amcp.risk.engine.RiskEngine` of a :class:`LiveExecutionEngine`, so the
risk hop (:meth:`LiveBrokerService.check`) and the broker hop (:meth:`LiveBrokerService.submit`)
share it, and only what the engine's own checks accepted can be sent.

The kernel's hops, and what they do here:

- ``update(ctx)`` / ``check(commands, ctx)`` / ``engage_kill_switch(ts_ns, reason)``: the
  engine's risk engine (the kill switch also cancels every order at the broker).
- ``submit(accepted, ts_ns)``: persist, audit and send (``send_checked``); the REST answers
  (accepted, rejected) come back. A command refused at this hop (not checked, not reconciled)
  comes back as ``OrderRejected``: the kernel's OMS already counts it as submitted.
- ``cancel(commands)``: cancel requests; confirmations arrive on the stream.
- ``on_bars(batch, session_closed)``: the broker events since the last cycle. With a
  :class:`BarReplayVenue` (``paper_server`` mode) the venue is first advanced by the batch and
  the service waits, at most ``stream_timeout_s``, until ``trade_updates`` has delivered every
  update the venue produced; on timeout it reconciles over REST instead. Live, it takes what the
  stream delivered. Every event recorded (stream, reconciliation) is returned in order, so the
  kernel's OMS and portfolio see fills, cancels and expiries exactly as from the simulated venue.

Alpaca's trade updates carry no fees (Alpaca books regulatory fees as separate account
activities), so each recorded fill is charged the fee :class:`~amcp.execution.fees.AlpacaFeeModel`
computes from ``fees`` — the same model the simulated venue and the paper server charge with —
and attributed to the strategy of the stored order.

The service is built from :class:`LiveBrokerSettings` (plain, picklable), so Ray can rebuild it
after a crash; the constructor gets the key pair from the settings' :class:`KeyPairSource` (the
settings hold no secret: under Ray, a reference to the run's credential vault, see
:mod:`actors.credentials`), connects the stream and then reconciles with the broker
(:meth:`LiveExecutionEngine.start`), which holds trading HALTED until the store and the broker
agree. Events a reconciliation recorded at start are handed out by the first ``on_bars``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from amcp.config import FeeConfig, RiskConfig
from amcp.domain.data import BarBatch
from amcp.domain.enums import TradingState
from amcp.domain.instruments import Instrument
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import (
    CancelOrder,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
    TradingStateChanged,
)
from amcp.engine.checkpoint import AttributeSnapshotMixin
from amcp.errors import AmcpError
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.live import LiveExecutionEngine, ReconcileReport
from amcp.risk.engine import RiskContext, RiskEngine

log = logging.getLogger(__name__)

_POLL_S = 0.001  # how often the start-up wait for the stream's first login checks it


class BarReplayVenue(Protocol):
    """A venue that fills against replayed bars (amcp's paper server, in ``paper_server`` mode)."""

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        """Fill working orders against ``batch``; return how many trade updates the venue has
        produced since it started (every one, those of REST requests included)."""
        ...

    def wait_stream_listening(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` clients listen to ``trade_updates`` within ``timeout_s`` seconds."""
        ...


class KeyPairSource(Protocol):
    """Where :class:`LiveBrokerService` gets the account's key pair when it is built."""

    def key_pair(self) -> tuple[str, str]:
        """The key pair ``(key id, secret)``."""
        ...


@dataclass(frozen=True)
class LiveBrokerSettings:
    """Everything :class:`LiveBrokerService` is built from (picklable: Ray rebuilds it on restart).

    Attributes:
        credentials: gives the account's key pair (read by the constructor, never logged).
        database_url: SQLAlchemy URL of the trading state and the audit log.
        risk: the pre-trade limits.
        fees: the fee model charged on fills (the trade updates carry none).
        paper: Alpaca's paper endpoint (ignored with the URL overrides).
        url_override, stream_url_override: REST and ``trade_updates`` URLs of an
            Alpaca-compatible server.
        rate_limit_per_minute: client-side REST request limit.
        timeout_s: HTTP timeout of one request, seconds.
        stream_timeout_s: with a replay venue, how long ``on_bars`` waits for a batch's updates.
        connect_timeout_s: how long the constructor waits for the stream's login.
        events: ``{"redis_url": ..., "stream": ...}`` to publish every recorded event; None: none.
    """

    credentials: KeyPairSource
    database_url: str
    risk: RiskConfig
    fees: FeeConfig = FeeConfig()
    paper: bool = True
    url_override: str | None = None
    stream_url_override: str | None = None
    rate_limit_per_minute: float = 200.0
    timeout_s: float = 10.0
    stream_timeout_s: float = 5.0
    connect_timeout_s: float = 10.0
    events: Mapping[str, Any] | None = None


class _CheckpointedRiskEngine(AttributeSnapshotMixin, RiskEngine):
    """The risk engine plus ``checkpoint_state`` / ``restore_state`` (the orchestrator's checkpoints)."""


class _PlaneEngine(LiveExecutionEngine):
    """The live engine, charging fees on fills, attributing them to their strategy, and keeping
    what it records while :attr:`collected` is a list (the events ``on_bars`` hands out)."""

    def __init__(self, *args: Any, fee_model: AlpacaFeeModel, instrument_for: Callable[[str], Instrument],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fee_model = fee_model
        self._instrument_for = instrument_for
        self.collected: list[OrderEvent] | None = None

    def on_broker_events(self, events: Sequence[OrderEvent]) -> list[OrderEvent]:
        seen: set[str] = set()  # orders with a fill earlier in this list
        recorded = super().on_broker_events([self._complete(event, seen) for event in events])
        if self.collected is not None:
            self.collected.extend(recorded)
        return recorded

    def _complete(self, event: OrderEvent, seen: set[str]) -> OrderEvent:
        if not isinstance(event, OrderFilled):
            return event
        key = str(event.client_order_id)
        order = self.state.order(event.client_order_id)
        if order is None:
            return event  # the store refuses it as unknown, and records why
        first = key not in seen and order.filled_quantity == 0
        seen.add(key)
        fee = event.fee
        if fee == 0:
            try:
                fee = self._fee_model.fee(self._instrument_for(event.symbol), event.side, event.last_quantity,
                                          event.last_price, first)
            except (AmcpError, LookupError, ValueError) as exc:
                log.warning("live broker: no fee for %s (%s): recorded with fee 0", key, exc)
        return dataclasses.replace(event, strategy_id=order.strategy_id or event.strategy_id, fee=fee)


class LiveBrokerService:
    """The trading plane's broker and risk roles over an Alpaca account (module docstring).

    Args:
        settings: account, database, limits and timeouts.
        replay: the venue to advance with each batch (``paper_server`` mode); None trades live.
        instrument_for: maps a symbol to its instrument (risk checks and fees).

    Raises:
        ConfigError: if ``settings.credentials`` cannot give the key pair (the run's credential
            vault is gone, see :mod:`actors.credentials`).
    """

    def __init__(self, settings: LiveBrokerSettings, replay: BarReplayVenue | None = None,
                 instrument_for: Callable[[str], Instrument] = default_instrument_for) -> None:
        from amcp.brokers.alpaca import AlpacaBroker
        from amcp.brokers.trade_stream import AlpacaTradeUpdateFeed
        from amcp.data.ratelimit import TokenBucket
        from amcp.store.audit import AuditLog
        from amcp.store.event_stream import EventStream
        from amcp.store.state import TradingStateStore

        self.settings = settings
        self._replay = replay
        api_key, secret_key = settings.credentials.key_pair()
        self.broker = AlpacaBroker(api_key, secret_key, paper=settings.paper,
                                   url_override=settings.url_override, timeout_s=settings.timeout_s,
                                   rate_limiter=TokenBucket(settings.rate_limit_per_minute))
        self.feed = AlpacaTradeUpdateFeed(api_key, secret_key, paper=settings.paper,
                                          url_override=settings.stream_url_override)
        publish = EventStream(**settings.events).publish if settings.events is not None else None
        self._state = TradingStateStore(settings.database_url)
        self._audit = AuditLog(settings.database_url)
        self._risk = _CheckpointedRiskEngine(settings.risk, instrument_for)
        self.engine = _PlaneEngine(self.broker, self._state, self._audit, self._risk,
                                   publish=publish, actor="live-broker",
                                   fee_model=AlpacaFeeModel.from_config(settings.fees), instrument_for=instrument_for)
        self._unseen = 0  # venue updates this feed missed (before it started, or while down)
        self._state_changes: list[TradingStateChanged] = []  # for the kernel's next ``update``, restamped
        self.pid = os.getpid()
        self.feed.start()  # before reconciling: nothing the broker sends meanwhile is missed
        self._await_stream()
        self.engine.collected = []  # what reconciliation records goes to the first on_bars
        self.report = self.engine.start()
        if self.engine.risk.state is not TradingState.ACTIVE:
            self._state_changes.append(TradingStateChanged(
                previous=TradingState.ACTIVE, state=self.engine.risk.state, ts_ns=time.time_ns(),
                reason=f"not reconciled with the broker: {self.report.to_dict()}"))
        log.info("live broker: reconciled with %s: %s", settings.url_override or "alpaca", self.report.to_dict())

    def _await_stream(self) -> None:
        """Wait (bounded) until the stream has logged in, and with a replay venue until the venue
        sees this client listening; a stream that does not come up leaves REST reconciliation to
        recover each cycle's events (logged)."""
        timeout_s = self.settings.connect_timeout_s
        deadline = time.monotonic() + timeout_s
        while self.feed.sessions < 1 and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        listening = self.feed.sessions >= 1
        if listening and self._replay is not None:
            listening = self._replay.wait_stream_listening(1, max(deadline - time.monotonic(), 0.0))
        if not listening:
            log.error("live broker: trade_updates stream not up after %gs; events will come from REST "
                      "reconciliation", timeout_s)

    # ------------------------------------------------------------------ the risk role

    def update(self, ctx: RiskContext) -> list[TradingStateChanged]:
        """Trading-state changes: any left by (re)connection, then the daily loss limit's."""
        changes, self._state_changes = self._state_changes, []
        return [*(dataclasses.replace(c, ts_ns=ctx.ts_ns) for c in changes), *self.engine.risk.update(ctx)]

    def check(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> tuple[list[SubmitOrder], list[OrderDenied]]:
        """The pre-trade checks: return (accepted, denied); only accepted commands can be sent."""
        return self.engine.check(commands, ctx)

    def engage_kill_switch(self, ts_ns: int, reason: str) -> list[TradingStateChanged]:
        """Halt trading and cancel every order at the broker; return the state change."""
        changes = self.engine.risk.engage_kill_switch(ts_ns, reason)
        canceled = self.engine.kill(reason)
        log.warning("live broker: kill switch (%s): %d orders canceled at the broker", reason, canceled)
        return changes

    # ------------------------------------------------------------------ the broker role

    def submit(self, commands: Sequence[SubmitOrder], ts_ns: int) -> list[OrderEvent]:
        """Persist, audit and send commands :meth:`check` accepted; return the broker's answers
        (a command refused here comes back as ``OrderRejected``). ``ts_ns`` is unused: the
        broker stamps its own answers."""
        return [_rejection(e) if isinstance(e, OrderDenied) else e for e in self.engine.send_checked(commands)]

    def cancel(self, commands: Sequence[CancelOrder]) -> list[OrderEvent]:
        """Ask the broker to cancel; the confirmations arrive with a later :meth:`on_bars`."""
        return self.engine.cancel(commands)

    def on_bars(self, batch: BarBatch, session_closed: bool = False) -> list[OrderEvent]:
        """The broker events recorded since the last call (module docstring)."""
        collected = self.engine.collected if self.engine.collected is not None else []
        self.engine.collected = collected
        try:
            if self._replay is None:
                self._take_updates()
            else:
                self._await_updates(self._replay.advance(batch, session_closed))
        finally:
            self.engine.collected = None
        return collected

    def _take_updates(self) -> None:
        messages = self.feed.drain()
        self.engine.on_trade_updates(messages, sessions=self.feed.sessions)

    def _await_updates(self, produced: int) -> None:
        """Wait until the feed has received the ``produced``-th update of the venue (counted
        since the venue started, less the ones this feed can never see), then record them."""
        arrived = self.feed.wait_for(produced - self._unseen, self.settings.stream_timeout_s)
        self._take_updates()
        if arrived:
            return
        log.warning("live broker: %d of %d trade updates arrived within %gs; reconciling over REST instead",
                    self.feed.received + self._unseen, produced, self.settings.stream_timeout_s)
        self.reconcile()
        self._unseen = produced - self.feed.received  # late copies are refused as duplicates

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_state(self) -> bytes:
        """The risk engine's state (trading state, kill switch, throttle, accepted ids) for the
        orchestrator's checkpoint; orders and fills need none: the state database and the broker
        hold them."""
        return self._risk.checkpoint_state()

    def restore_state(self, snapshot: bytes) -> None:
        """Restore a checkpoint's risk state (after an orchestrator restart); trading stays HALTED
        while this service is not reconciled with the broker.

        Raises:
            CheckpointError: if ``snapshot`` is not this risk engine's.
        """
        risk = self._risk
        risk.restore_state(snapshot)
        if not self.engine.reconciled and risk.state is not TradingState.HALTED:
            self._state_changes += risk.set_state(TradingState.HALTED, time.time_ns(), "not reconciled with the broker")

    # ------------------------------------------------------------------ operations

    def reconcile(self) -> dict[str, Any]:
        """Reconcile with the broker now; trading resumes if it was held only for reconciling."""
        was = self.engine.risk.state
        self.report = self.engine.reconcile()
        if self.report.ok and was is TradingState.HALTED and not self.engine.risk.kill_switch_engaged:
            self._state_changes += self.engine.risk.set_state(TradingState.ACTIVE, time.time_ns(),
                                                              "reconciled with the broker")
        return self.report.to_dict()

    def reconcile_report(self) -> dict[str, Any]:
        """The last reconciliation's report (the constructor's, until :meth:`reconcile`)."""
        return self.report.to_dict()

    def statement(self) -> dict[str, Any]:
        """End-of-run statement: a final reconciliation, the broker's positions and account and
        the store's positions (quantities and USD amounts as decimal strings)."""
        report: ReconcileReport = self.engine.reconcile()
        account = self.broker.account()
        return {
            "reconcile": report.to_dict(),
            "broker_positions": {s: str(q) for s, q in sorted(self.broker.positions().items()) if q},
            "local_positions": {s: str(q) for s, q in sorted(self.engine.state.positions().items()) if q},
            "account": {"cash": str(account.cash), "equity": str(account.equity)},
            "requests_sent": self.broker.requests_sent,
            "stream": self.feed.stats(),
            "unpublished_events": self.engine.unpublished,
        }

    def flush_outbox(self) -> int:
        """Publish events a Redis outage held back; return how many still wait."""
        return self.engine.flush_outbox()

    def process_id(self) -> int:
        return self.pid

    def wait_for_trade_updates(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` trade updates have arrived on this service's stream since it started
        (taken by a cycle or not), waiting at most ``timeout_s`` seconds."""
        return self.feed.wait_for(count, timeout_s)

    def close(self) -> None:
        """Close the stream and the database connections."""
        self.feed.stop()
        self._state.close()
        self._audit.close()


def _rejection(denial: OrderDenied) -> OrderRejected:
    return OrderRejected(client_order_id=denial.client_order_id, ts_ns=denial.ts_ns,
                         reason=f"{denial.reason.value}: {denial.message}")
