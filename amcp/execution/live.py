"""The live order path: risk → persist → audit → send → record, and reconciliation on start.

:class:`LiveExecutionEngine` is what the OMS actor runs in live and paper-against-a-broker mode.
Its invariants are the issue's: an order is never lost, never duplicated, never sent unchecked.

- Every command passes the pre-trade checks (:class:`~amcp.risk.engine.RiskEngine`) first; a
  denial never leaves the process. While the engine is not reconciled, or the risk engine is
  HALTED, nothing is sent.
- The intent is persisted (:meth:`TradingStateStore.save_intent`) and audited **before** the
  request; the request is marked sent before it goes out. A restart therefore finds every order
  that may have reached the broker. When the audit log lives in the state store's database
  (:meth:`AuditLog.shares_database`; ``LiveOMS`` always), the intent is written already marked
  sent (``pending_new``) with its audit row in one transaction, one commit before the request;
  otherwise the marked intent and its audit row are two commits.
- An intent already known to the store is never sent again by :meth:`submit`; re-sending is
  the reconciler's decision, always with the same client order id (which the broker refuses to
  duplicate).
- Broker events go through :meth:`TradingStateStore.apply_many`, which refuses duplicates,
  illegal transitions and overfills (an overfill also halts the symbol), and every event is
  audited (in the same transaction when the audit log shares the database: an event is recorded
  only with its audit row). Their commit does not wait for the disk: a crash of the database
  server or the machine may lose the last few recorded events (whole transactions, never half),
  and the reconciliation every start runs recovers them from the broker, which keeps them. The
  intent, which only this process knows, is always flushed to disk before its request.
- The database down (a PostgreSQL restart): an intent that cannot be persisted is denied
  (``state_unavailable``) and never sent; a broker event that cannot be recorded leaves the
  engine un-reconciled, so nothing more is sent until :meth:`LiveExecutionEngine.reconcile`
  succeeds and recovers what was missed from the broker. Redis down: events that cannot be
  published wait in order in an outbox and go out with the next successful publish.

Reconciliation (:meth:`LiveExecutionEngine.start` and :meth:`reconcile`): every local order that
is not terminal is looked up at the broker by client order id. Found: its status is brought
level, legs the broker created for it (bracket/OTO/OCO exits, option legs) and the store does not
know are registered as orders of their own and brought level in turn, and any quantity the
broker filled that the store has not seen is recorded from the account's FILL activities, each
execution under its own id (the activity id). Executions the store already holds are skipped:
those with the same id, and, for fills recorded from the stream under other ids, the earliest
executions up to the quantity they cover. Only where the broker offers no activities (or they do
not cover the gap) is the rest recorded as one fill whose trade id starts with ``reconcile:``. A
late stream copy of an execution reconciliation recorded is refused: as a repeated trade id, or,
under another id, as already covered by the broker's filled quantity. Not found: an intent never sent, or sent with an unknown outcome, is kept
pending and sent again (same id, through the pre-trade checks) when trading resumes — when the
strategy re-emits it, or by :meth:`LiveExecutionEngine.resume_pending`. Nothing is sent while
reconciling. Broker orders the store does not know (orphans) and position differences keep
the engine HALTED until an operator resolves them; a working leg of a known parent is no orphan:
it is registered.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from amcp.config import RiskConfig
from amcp.domain.enums import DenyReason, LiquiditySide, OrderStatus, TradingState
from amcp.domain.identifiers import TradeId, VenueOrderId
from amcp.domain.messages import (
    CancelOrder,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)
from amcp.domain.serialization import to_record
from amcp.errors import ExecutionError, StoreError
from amcp.execution.group_commit import GroupCommit
from amcp.risk.engine import RiskContext, RiskEngine
from amcp.store.audit import AuditEntry, AuditLog
from amcp.store.state import (
    LEG_TAG_PREFIX,
    Anomaly,
    Applied,
    IntentAudit,
    OrderRow,
    TradingStateStore,
)

log = logging.getLogger(__name__)

RECONCILE_TRADE_PREFIX = "reconcile:"
# FILL activities are read from this long before the oldest order they may belong to (UTC ns),
# so a clock difference between amcp and the broker cannot hide an execution.
_ACTIVITY_MARGIN_NS = 60 * 1_000_000_000


class Broker(Protocol):
    """What the engine needs of a broker (``amcp.brokers.alpaca.AlpacaBroker`` has it)."""

    def submit(self, command: SubmitOrder) -> list[OrderEvent]: ...

    def cancel(self, command: CancelOrder) -> list[OrderEvent]: ...

    def cancel_all(self) -> int: ...

    def order(self, client_order_id: str) -> Any: ...

    def open_orders(self) -> list[Any]: ...

    def positions(self) -> dict[str, Decimal]: ...


class AuditSink(Protocol):
    def append(self, actor: str, action: str, payload: Mapping[str, Any], ts_ns: int | None = None) -> Any: ...


@dataclass(frozen=True)
class ReconcileReport:
    """What a reconciliation found and did.

    Attributes:
        ok: the store and the broker agree (no orphans, no position breaks).
        checked: local non-terminal orders looked up.
        resent: intents to send again on resume (never sent, or unknown at the broker), with the
            same client order ids; nothing is sent while reconciling (the engine is HALTED).
        updated: orders whose status or fills were brought level.
        missed_fill_quantity: quantity the broker had filled that the store had not seen.
        orphans: broker open orders unknown to the store (client order ids).
        position_breaks: symbol → (local, broker) quantities where they differ.
        legs_registered: leg orders of known parents the store did not know (client order ids).
    """

    ok: bool
    checked: int = 0
    resent: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    missed_fill_quantity: Decimal = Decimal(0)
    orphans: tuple[str, ...] = ()
    position_breaks: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    legs_registered: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["missed_fill_quantity"] = str(self.missed_fill_quantity)
        out["position_breaks"] = {k: [str(a), str(b)] for k, (a, b) in self.position_breaks.items()}
        return out


class LiveExecutionEngine:
    """The order path of the OMS against a real (or Alpaca-compatible) broker.

    Args:
        broker: submits, cancels and reports orders.
        state: the durable store of orders and fills.
        audit: the hash-chained audit log.
        risk: the pre-trade checks and the trading state.
        publish: optional sink for every recorded event (e.g. ``EventStream.publish``).
        clock_ns: the wall clock, UTC ns (injected for tests).
        actor: the name written in the audit log.
        crash_hook: test hook called with a point name (``intent_saved``, ``request_sent``,
            ``response_received``, ``fill_applied``) — a test raises there to simulate a kill.
        send_concurrency: how many callers' requests of one group commit may be in flight at once
            (1: one after the other). One caller's commands always go out in order.
    """

    def __init__(
        self,
        broker: Broker,
        state: TradingStateStore,
        audit: AuditSink,
        risk: RiskEngine,
        *,
        publish: Callable[[Any], Any] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        actor: str = "oms",
        crash_hook: Callable[[str], None] | None = None,
        send_concurrency: int = 1,
    ) -> None:
        if type(send_concurrency) is not int or send_concurrency < 1:
            raise ExecutionError(f"send_concurrency must be an int >= 1, got {send_concurrency!r}")
        self.broker = broker
        self.state = state
        self.audit = audit
        self.risk = risk
        self._publish = publish
        self._clock_ns = clock_ns
        self._actor = actor
        self._crash = crash_hook or (lambda point: None)
        self._reconciled = False
        self._pending_resend: dict[str, SubmitOrder] = {}
        self._stream_sessions = 0
        self.halted_symbols: dict[str, str] = {}
        self.sent = 0
        self._sent_lock = threading.Lock()
        # different callers' requests of one group commit go out concurrently (see _requests)
        self._send_pool = (ThreadPoolExecutor(send_concurrency, thread_name_prefix="oms-send")
                           if send_concurrency > 1 else None)
        self._checked: set[str] = set()  # accepted by this engine's risk checks, not yet sent
        self._outbox: list[Any] = []  # recorded events a failed publish left behind, in order
        self.audit_failures = 0
        # audit rows ride in the store's transactions when both live in one database
        self._joint_log = audit if isinstance(audit, AuditLog) and audit.shares_database(state.url) else None

    # ------------------------------------------------------------------ lifecycle

    @property
    def reconciled(self) -> bool:
        return self._reconciled

    def start(self) -> ReconcileReport:
        """Migrate the store, reconcile with the broker, and allow trading only if they agree."""
        self.state.upgrade()
        now = self._clock_ns()
        if self.risk.state is not TradingState.HALTED:
            self.risk.set_state(TradingState.HALTED, now, "reconciling with the broker")
        report = self.reconcile()
        if report.ok and not self.risk.kill_switch_engaged:
            self.risk.set_state(TradingState.ACTIVE, self._clock_ns(), "reconciled with the broker")
        return report

    @property
    def pending_resend(self) -> tuple[SubmitOrder, ...]:
        """Intents reconciliation found unsent (or unknown to the broker), to send on resume."""
        return tuple(self._pending_resend.values())

    def resume_pending(self, ctx: RiskContext) -> list[OrderEvent]:
        """Send the intents reconciliation left pending, through the pre-trade checks (once the
        engine is reconciled and trading; while HALTED they are denied and stay pending)."""
        pending = list(self._pending_resend.values())
        for command in pending:  # accepted before but never sent: check them afresh
            self.risk.release(command)
        return self.submit(pending, ctx)

    def sync_account(self) -> Any:
        """Read the broker's account, store it as an account snapshot, and halt trading if the
        broker blocks it (``trading_blocked``); return the account.

        Raises:
            ExecutionError: if the broker cannot be read; StoreError if the snapshot cannot be saved.
        """
        now = self._clock_ns()
        account = self.broker.account()
        raw = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(account).items()}
        self.state.save_account_snapshot(now, account.cash, account.equity, account.buying_power, raw)
        if account.trading_blocked and self.risk.state is not TradingState.HALTED:
            self.risk.set_state(TradingState.HALTED, now, "the broker blocks trading on this account")
            self._audit("trading_blocked", raw, now)
        return account

    def kill(self, reason: str) -> int:
        """Kill switch: deny every new order from now on and cancel every working order."""
        now = self._clock_ns()
        self.risk.engage_kill_switch(now, reason)
        self.audit.append(self._actor, "kill_switch", {"reason": reason}, now)
        return self.broker.cancel_all()

    # ------------------------------------------------------------------ orders

    def submit(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> list[OrderEvent]:
        """Check, persist, audit and send ``commands``; return every event recorded."""
        return self.submit_many([(commands, ctx)])[0]

    def submit_many(
        self, requests: Sequence[tuple[Sequence[SubmitOrder], RiskContext]]
    ) -> list[list[OrderEvent]]:
        """Several callers' :meth:`submit` calls as one group commit; one event list per request.

        Each request is checked against its own context, in order; then every accepted intent of
        every request is persisted in one transaction (durable before any of them is sent), the
        requests go out, and the responses are recorded in one transaction. The guarantees are
        :meth:`submit`'s, per intent.
        """
        checked = [self.check(commands, ctx) for commands, ctx in requests]
        sent = self._send_groups([accepted for accepted, _ in checked])
        return [[*denied, *events] for (_, denied), events in zip(checked, sent)]

    def check(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> tuple[list[SubmitOrder], list[OrderDenied]]:
        """The pre-trade checks alone (the trading plane's risk hop): return (accepted, denied).

        Accepted commands are remembered, and only they can be sent by :meth:`send_checked`.
        Denials are audited. Nothing passes while the engine is not reconciled or the symbol is
        halted after an overfill.
        """
        out: list[OrderDenied] = []
        allowed: list[SubmitOrder] = []
        for command in commands:
            reason = None if self._reconciled else "not reconciled with the broker"
            reason = reason or self._halted(command)
            if reason:
                out.append(self._deny(command, DenyReason.TRADING_HALTED, reason))
            else:
                allowed.append(command)
        accepted, denied = self.risk.check(allowed, ctx)
        for denial in denied:
            self._audit("denied", to_record(denial), denial.ts_ns)
            out.append(denial)
        self._checked.update(str(c.client_order_id) for c in accepted)
        return list(accepted), out

    def send_checked(self, commands: Sequence[SubmitOrder]) -> list[OrderEvent]:
        """Persist, audit and send commands :meth:`check` accepted (the plane's broker hop).

        A command this engine did not accept is denied (``not_checked``); one that arrives after
        the engine lost its reconciliation (or its symbol was halted) is denied too.
        """
        return self._send_groups([commands])[0]

    def _halted(self, command: SubmitOrder) -> str | None:
        """Why ``command`` touches a symbol halted after an overfill (its own or a leg's), if it does."""
        halted = self.halted_symbols
        if not halted:
            return None
        return halted.get(command.symbol) or next(
            (halted[leg.symbol] for leg in command.legs if leg.symbol in halted), None)

    def _send_groups(self, groups: Sequence[Sequence[SubmitOrder]]) -> list[list[OrderEvent]]:
        """Send the checked commands of several callers; one event list per group, in command order.

        New intents of all groups are saved in one transaction (with their audit rows when the
        audit log shares the database) and their responses recorded in one; an intent
        reconciliation left pending goes through :meth:`_send` alone. If the joint save fails,
        every new intent goes through :meth:`_send` alone, which denies each it cannot persist.
        """
        slots: list[list[list[OrderEvent]]] = [[[] for _ in group] for group in groups]
        fresh: list[tuple[int, int, SubmitOrder]] = []
        for g, group in enumerate(groups):
            for i, command in enumerate(group):
                key = str(command.client_order_id)
                if key not in self._checked:
                    slots[g][i].append(self._deny(command, DenyReason.NOT_CHECKED,
                                                  "not accepted by this engine's pre-trade checks"))
                    continue
                self._checked.discard(key)
                reason = None if self._reconciled else "not reconciled with the broker"
                reason = reason or self._halted(command)
                if reason:
                    self.risk.release(command)  # checked, never sent: it may be checked again
                    slots[g][i].append(self._deny(command, DenyReason.TRADING_HALTED, reason))
                elif key in self._pending_resend:
                    slots[g][i].extend(self._send(command))
                else:
                    fresh.append((g, i, command))
        if fresh:
            answers = self._send_fresh([command for _, _, command in fresh], [g for g, _, _ in fresh])
            for (g, i, _), events in zip(fresh, answers):
                slots[g][i].extend(events)
        return [[event for slot in group for event in slot] for group in slots]

    def _send_fresh(self, commands: Sequence[SubmitOrder], callers: Sequence[int]) -> list[list[OrderEvent]]:
        """Save new intents in one transaction, send them, record the answers in one transaction.

        ``callers[i]`` says whose request ``commands[i]`` is: one caller's commands go out in their
        order, one after the other; different callers' go out concurrently when the engine has a
        ``send_concurrency`` above 1.
        """
        try:
            saved = self.state.save_intents(commands, submitted_ns=self._clock_ns(),
                                            audit_all=self._intents_audit(commands))
        except StoreError as exc:
            if len(commands) == 1:
                return [[self._unpersisted(commands[0], exc)]]
            log.warning("oms: joint save of %d intents failed (%s); saving them one by one", len(commands), exc)
            return [self._send(command) for command in commands]
        for command, written in zip(commands, saved):
            if written and self._joint_log is None:
                self._audit_intent(command)
            if not written:
                log.info("oms: intent %s is already known; not sent again", command.client_order_id)
        if any(saved):
            self._crash("intent_saved")
        answers = self._requests([(caller, i, command) for i, (caller, command, written)
                                  in enumerate(zip(callers, commands, saved)) if written], len(commands))
        recorded = set(map(id, self.on_broker_events([event for events in answers for event in events])))
        return [[event for event in events if id(event) in recorded] for events in answers]

    def _requests(self, todo: Sequence[tuple[int, int, SubmitOrder]], count: int) -> list[list[OrderEvent]]:
        """Send ``todo`` (caller, position, command): each caller's in order, callers concurrently
        on the send pool; the answers by position (``count`` of them). Every request finishes
        before an exception of one is raised."""
        answers: list[list[OrderEvent]] = [[] for _ in range(count)]
        chains: dict[int, list[tuple[int, SubmitOrder]]] = {}
        for caller, position, command in todo:
            chains.setdefault(caller, []).append((position, command))

        def run(chain: list[tuple[int, SubmitOrder]]) -> None:
            for position, command in chain:
                answers[position] = self._request(command)

        if self._send_pool is None or len(chains) < 2:
            for chain in chains.values():
                run(chain)
            return answers
        futures = [self._send_pool.submit(run, chain) for chain in chains.values()]
        wait(futures)
        for future in futures:
            future.result()  # re-raise the first failure, once all are done
        return answers

    def _unpersisted(self, command: SubmitOrder, exc: StoreError) -> OrderDenied:
        """No persisted (and audited) intent, no request: deny ``command``; the engine reconciles
        before it sends anything again (the save may have landed after all)."""
        self._reconciled = False
        log.error("oms: cannot persist intent %s, denied: %s", command.client_order_id, exc)
        self.risk.release(command)  # never sent: the strategy may emit it again
        return self._deny(command, DenyReason.STATE_UNAVAILABLE, f"state store unavailable: {exc}")

    def _audit_intent(self, command: SubmitOrder) -> None:
        """The ``intent`` audit row, appended after the save when the audit log is elsewhere."""
        self.audit.append(self._actor, "intent", to_record(command), command.ts_ns)

    def _request(self, command: SubmitOrder) -> list[OrderEvent]:
        """Send one persisted intent; a command the broker client cannot express is rejected
        locally (nothing left the process)."""
        self._crash("request_sent")
        with self._sent_lock:
            self.sent += 1
        try:
            events = self.broker.submit(command)
        except ExecutionError as exc:
            log.error("oms: %s cannot be sent: %s", command.client_order_id, exc)
            events = [OrderRejected(client_order_id=command.client_order_id, ts_ns=self._clock_ns(),
                                    reason=f"not sent: {exc}")]
        self._crash("response_received")
        return events

    def _send(self, command: SubmitOrder) -> list[OrderEvent]:
        try:
            # written already marked sent (pending_new): nothing stands between it and the request
            saved = self.state.save_intent(command, submitted_ns=self._clock_ns(),
                                           audit=self._intent_audit(command))
            if saved and self._joint_log is None:
                self._audit_intent(command)
        except StoreError as exc:
            return [self._unpersisted(command, exc)]
        if saved:
            self._crash("intent_saved")
        elif str(command.client_order_id) in self._pending_resend:
            try:  # an intent saved ``initialized`` (before this engine) is marked sent first
                self.audit.append(self._actor, "resend", to_record(command), self._clock_ns())
                existing = self.state.order(command.client_order_id)
                if existing is not None and existing.status is OrderStatus.INITIALIZED:
                    self.state.mark_submitted(command.client_order_id, self._clock_ns())
            except StoreError as exc:
                self._reconciled = False
                log.error("oms: cannot mark %s submitted, not sent: %s", command.client_order_id, exc)
                self.risk.release(command)  # never sent: the strategy may emit it again
                return [self._deny(command, DenyReason.STATE_UNAVAILABLE, f"state store unavailable: {exc}")]
            del self._pending_resend[str(command.client_order_id)]
        else:
            log.info("oms: intent %s is already known; not sent again", command.client_order_id)
            return []
        return self.on_broker_events(self._request(command))

    def cancel(self, commands: Sequence[CancelOrder]) -> list[OrderEvent]:
        """Cancel orders at the broker (cancels are never blocked: they reduce risk)."""
        out: list[OrderEvent] = []
        for command in commands:
            self._audit("cancel", to_record(command), command.ts_ns)
            out.extend(self.on_broker_events(self.broker.cancel(command)))
        return out

    def on_broker_events(self, events: Sequence[OrderEvent]) -> list[OrderEvent]:
        """Record broker events (from a response, the trade stream or reconciliation).

        The events commit in one transaction (each with its audit row when the audit log shares
        the database). If the store cannot record them (database down) none is recorded,
        nothing is raised, and the engine stops sending until a reconciliation recovers them.
        An overfill halts the order's symbol, and every leg symbol of a multi-leg order.
        """
        if not events:
            return []
        now = self._clock_ns()
        try:
            todo = [event for event in events
                    if not (isinstance(event, OrderFilled) and not _recorded_by_reconcile(str(event.trade_id))
                            and self._covered_by_reconcile(event))]
            records = [to_record(event) for event in todo]
            # the broker's answers and fills can be had again from the broker: their commit does
            # not wait for the disk (reconciliation recovers what a database crash may lose)
            results = self.state.apply_many(todo, audit_all=self._events_audit(records, now), durable=False)
        except StoreError as exc:
            self._reconciled = False
            log.error("oms: cannot record %d events (first %s for %s): %s; halted until reconciled",
                      len(events), type(events[0]).__name__, events[0].client_order_id, exc)
            return []
        recorded: list[OrderEvent] = []
        for event, record, result in zip(todo, records, results):
            if self._joint_log is None:
                self._audit("event", _event_payload(record, result), now)
            if result.anomaly is Anomaly.OVERFILL:
                self._halt_overfilled(event, result)
            if result.applied:
                recorded.append(event)
        if any(isinstance(event, OrderFilled) for event in recorded):
            self._crash("fill_applied")
        for event in recorded:
            self._publish_event(event)
        return recorded

    def _halt_overfilled(self, event: OrderEvent, result: Applied) -> None:
        """Halt the symbols an overfilled order trades: its own, and each of its legs'."""
        order = result.order
        symbols = {getattr(event, "symbol", "") or (order.symbol if order else "")}
        if order is not None:
            symbols.update(leg.symbol for leg in order.command.legs)
        reason = f"symbol halted after an overfill of {event.client_order_id}"
        for symbol in sorted(symbols - {""}):
            self.halted_symbols[symbol] = reason
        log.error("oms: overfill on %s; %s halted", event.client_order_id, ", ".join(sorted(symbols - {""})))

    @property
    def unpublished(self) -> int:
        """Recorded events waiting for the event stream (Redis down)."""
        return len(self._outbox)

    def _publish_event(self, event: Any) -> None:
        """Publish in order: the event joins the outbox, which drains from its head."""
        if self._publish is not None:
            self._outbox.append(event)
            self.flush_outbox()

    def flush_outbox(self) -> int:
        """Publish what waits in the outbox, oldest first, until a publish fails; return how
        many still wait (the failed one stays at the head)."""
        while self._outbox and self._publish is not None:
            try:
                self._publish(self._outbox[0])
            except Exception as exc:  # noqa: BLE001 - any publisher failure: keep and retry later
                log.warning("oms: event stream unavailable (%s); %d events wait", exc, len(self._outbox))
                break
            self._outbox.pop(0)
        return len(self._outbox)

    def _intent_audit(self, command: SubmitOrder) -> IntentAudit | None:
        """The ``intent`` audit row written in the intent's own transaction, or None when the
        audit log is in another database (it is then appended after the save)."""
        joint = self._joint_log
        if joint is None:
            return None
        entry = AuditEntry(self._actor, "intent", to_record(command), command.ts_ns)
        return lambda connection: joint.append_many([entry], connection=connection)

    def _intents_audit(self, commands: Sequence[SubmitOrder]) -> Callable[[Any, list[bool]], None] | None:
        """The ``intent`` audit rows of a joint save, appended once in its transaction (for the
        intents it wrote), or None when the audit log is in another database."""
        joint = self._joint_log
        if joint is None:
            return None

        def write(connection: Any, written: list[bool]) -> None:
            entries = [AuditEntry(self._actor, "intent", to_record(command), command.ts_ns)
                       for command, new in zip(commands, written) if new]
            if entries:
                joint.append_many(entries, connection=connection)

        return write

    def _events_audit(self, records: Sequence[Mapping[str, Any]], ts_ns: int) -> Callable[[Any, list[Applied]], None] | None:
        """The ``event`` audit rows (each event and the anomaly it met) of a joint apply, appended
        once in its transaction, or None when the audit log is in another database."""
        joint = self._joint_log
        if joint is None:
            return None

        def write(connection: Any, results: list[Applied]) -> None:
            joint.append_many([AuditEntry(self._actor, "event", _event_payload(record, result), ts_ns)
                               for record, result in zip(records, results)], connection=connection)

        return write

    def _audit(self, action: str, payload: Mapping[str, Any], ts_ns: int) -> None:
        """Audit a record that does not gate a request (denials, events, cancels): a database
        failure is logged and counted, never raised (the state store holds the same facts)."""
        try:
            self.audit.append(self._actor, action, payload, ts_ns)
        except StoreError as exc:
            self.audit_failures += 1
            log.error("oms: audit append %s failed: %s", action, exc)

    def on_trade_updates(self, messages: Sequence[Mapping[str, Any]], strategy_id: str = "",
                         sessions: int | None = None) -> list[OrderEvent]:
        """Record ``trade_updates`` payloads (their ``data`` objects).

        ``sessions`` is the stream's login count (:attr:`AlpacaTradeUpdateFeed.sessions`): when
        it has grown since the last call the stream reconnected and may have lost updates, so the
        engine reconciles with the broker over REST first. A malformed update is audited and
        skipped, never raised.
        """
        from amcp.brokers.alpaca import trade_update_events

        if sessions is not None:
            if self._stream_sessions and sessions > self._stream_sessions:
                self.audit.append(self._actor, "trade_stream_reconnected",
                                  {"sessions": sessions}, self._clock_ns())
                self.reconcile()
            self._stream_sessions = max(self._stream_sessions, sessions)
        out: list[OrderEvent] = []
        for message in messages:
            try:
                events = trade_update_events(message, strategy_id)
            except ExecutionError as exc:
                self.audit.append(self._actor, "bad_trade_update", {"error": str(exc)}, self._clock_ns())
                continue
            out.extend(self.on_broker_events(events))
        return out

    def _covered_by_reconcile(self, fill: OrderFilled) -> bool:
        """A stream fill for an order whose missed fills reconciliation already recorded: apply it
        only if the broker's filled quantity shows it is new."""
        fills = self.state.fills(fill.client_order_id)
        if not any(_recorded_by_reconcile(str(f.trade_id)) for f in fills):
            return False
        local = sum((f.quantity for f in fills), Decimal(0))
        remote = self.broker.order(fill.client_order_id)
        if remote is not None and local + fill.last_quantity <= remote.filled_quantity:
            return False
        self.audit.append(self._actor, "fill_covered_by_reconcile", to_record(fill), self._clock_ns())
        return True

    def _deny(self, command: SubmitOrder, reason: DenyReason, message: str) -> OrderDenied:
        denial = OrderDenied(client_order_id=command.client_order_id, ts_ns=command.ts_ns, reason=reason,
                             message=message, strategy_id=command.strategy_id, symbol=command.symbol)
        self._audit("denied", to_record(denial), command.ts_ns)
        return denial

    # ------------------------------------------------------------------ reconciliation

    def reconcile(self) -> ReconcileReport:
        """Bring the store level with the broker; see the module docstring."""
        from amcp.brokers.alpaca import events_from_order

        self._reconciled = False
        resent: list[str] = []
        updated: list[str] = []
        legs: list[str] = []
        missed = Decimal(0)
        executions = _Executions(self.broker)

        def level(order: OrderRow, remote: Any) -> None:
            nonlocal missed
            now = self._clock_ns()
            raw = {"client_order_id": remote.client_order_id, "id": remote.venue_order_id,
                   "status": remote.status.value}
            events: list[OrderEvent] = list(events_from_order(raw, now))
            fills = self._missed_fills(order, remote, executions, now)
            missed += sum((f.last_quantity for f in fills), Decimal(0))
            events[1:1] = fills  # after the accept, before any terminal event
            if self.on_broker_events(events):
                updated.append(str(order.client_order_id))
            for leg in self._register_legs(remote, now):
                legs.append(str(leg.client_order_id))
                remote_leg = next(r for r in remote.legs if r.client_order_id == leg.client_order_id)
                level(leg, remote_leg)

        local_open = self.state.open_orders()
        for order in local_open:
            remote = self.broker.order(order.client_order_id)
            if remote is None:
                if order.status in (OrderStatus.INITIALIZED, OrderStatus.PENDING_NEW):
                    # never sent, or sent with an outcome the broker does not know: send it again
                    # (same id) once trading resumes, through the pre-trade checks
                    self._pending_resend[str(order.client_order_id)] = order.command
                    resent.append(str(order.client_order_id))
                continue
            level(order, remote)
        orphans: list[str] = []
        for remote in self.broker.open_orders():
            if self.state.order(remote.client_order_id) is None:
                orphans.append(remote.client_order_id)
                continue
            now = self._clock_ns()
            for leg in self._register_legs(remote, now):  # working legs of a parent no longer open here
                legs.append(str(leg.client_order_id))
                level(leg, next(r for r in remote.legs if r.client_order_id == leg.client_order_id))
        local_positions = {s: q for s, q in self.state.positions().items() if q != 0}
        remote_positions = {s: q for s, q in self.broker.positions().items() if q != 0}
        breaks = {s: (local_positions.get(s, Decimal(0)), remote_positions.get(s, Decimal(0)))
                  for s in set(local_positions) | set(remote_positions)
                  if local_positions.get(s, Decimal(0)) != remote_positions.get(s, Decimal(0))}
        report = ReconcileReport(ok=not orphans and not breaks, checked=len(local_open), resent=tuple(resent),
                                 updated=tuple(updated), missed_fill_quantity=missed, orphans=tuple(sorted(orphans)),
                                 position_breaks=breaks, legs_registered=tuple(legs))
        self.audit.append(self._actor, "reconcile", report.to_dict(), self._clock_ns())
        self._reconciled = report.ok
        if not report.ok:
            log.error("oms: reconciliation failed, staying HALTED: %s", report.to_dict())
        return report

    def _register_legs(self, remote: Any, ts_ns: int) -> list[OrderRow]:
        """Register the legs of the broker order ``remote`` the store does not know; return them.

        Each leg becomes an order of its own (see :class:`~amcp.store.state.TradingStateStore`),
        so its events and fills apply and reconciliation never calls it an orphan.
        """
        from amcp.brokers.alpaca import leg_events

        if not getattr(remote, "legs", ()):
            return []
        unknown = [e for e in leg_events(remote, ts_ns) if self.state.order(e.client_order_id) is None]
        self.on_broker_events(unknown)
        rows = [self.state.order(e.client_order_id) for e in unknown]
        return [row for row in rows if row is not None]

    def _missed_fills(self, order: OrderRow, remote: Any, executions: _Executions, ts_ns: int) -> list[OrderFilled]:
        """Fills for the quantity the broker filled and the store has not seen (see the module docstring)."""
        gap = remote.filled_quantity - order.filled_quantity
        if gap <= 0 or remote.filled_avg_price is None:
            return []
        strategy_id = order.strategy_id or order.command.strategy_id
        fills: list[OrderFilled] = []
        recorded = self.state.fills(order.client_order_id)
        found = executions.of(remote.venue_order_id, self._origin_ns(order))
        if found:
            ids = {str(f.trade_id) for f in recorded}
            shown = {e.execution_id for e in found}
            # fills recorded under ids the activities do not show (the stream's) cover the earliest executions
            covered = sum((f.quantity for f in recorded if str(f.trade_id) not in shown), Decimal(0))
            taken = Decimal(0)
            for execution in found:
                if execution.execution_id in ids:
                    continue
                if covered > 0:
                    if execution.quantity > covered:
                        break  # executions and recorded fills do not line up: the rest is synthesised
                    covered -= execution.quantity
                    continue
                if taken + execution.quantity > gap:
                    break
                taken += execution.quantity
                fills.append(OrderFilled(
                    client_order_id=order.client_order_id, venue_order_id=VenueOrderId(remote.venue_order_id),
                    trade_id=TradeId(execution.execution_id), strategy_id=strategy_id, symbol=order.symbol,
                    side=order.side, last_quantity=execution.quantity, last_price=execution.price, fee=Decimal(0),
                    liquidity=LiquiditySide.TAKER, ts_ns=execution.ts_ns))
        rest = gap - sum((f.last_quantity for f in fills), Decimal(0))
        if rest > 0:
            notional = (remote.filled_avg_price * remote.filled_quantity - order.filled_notional
                        - sum((f.last_quantity * f.last_price for f in fills), Decimal(0)))
            fills.append(OrderFilled(
                client_order_id=order.client_order_id, venue_order_id=VenueOrderId(remote.venue_order_id),
                trade_id=TradeId(f"{RECONCILE_TRADE_PREFIX}{remote.venue_order_id}:{remote.filled_quantity}"),
                strategy_id=strategy_id, symbol=order.symbol, side=order.side, last_quantity=rest,
                last_price=notional / rest, fee=Decimal(0), liquidity=LiquiditySide.TAKER, ts_ns=ts_ns))
        return fills

    def _origin_ns(self, order: OrderRow) -> int:
        """When the order (a leg: its parent) was created, UTC ns: no execution of it is older."""
        tag = order.command.tag
        if tag.startswith(LEG_TAG_PREFIX):
            parent = self.state.order(tag[len(LEG_TAG_PREFIX):])
            if parent is not None:
                return parent.created_ns
        return order.created_ns


def _event_payload(record: Mapping[str, Any], result: Applied) -> dict[str, Any]:
    """The audit payload of an event: its record and the anomaly it met (None when clean)."""
    return {**record, "anomaly": result.anomaly.value if result.anomaly else None}


def _recorded_by_reconcile(trade_id: str) -> bool:
    """Whether a fill was recorded by reconciliation: synthesised (``reconcile:``) or from a
    FILL activity (Alpaca's ``<time>::<uuid>`` ids)."""
    return trade_id.startswith(RECONCILE_TRADE_PREFIX) or "::" in trade_id


class _Executions:
    """The broker's FILL activities per broker order id, read at most once per reconciliation
    (again only when an older order needs them); none when the broker offers none."""

    def __init__(self, broker: Broker) -> None:
        self._read: Callable[[int | None], list[Any]] | None = getattr(broker, "fill_activities", None)
        self._since_ns: int | None = None
        self._by_order: dict[str, list[Any]] = {}

    def of(self, venue_order_id: str, since_ns: int) -> list[Any]:
        """Executions of ``venue_order_id`` (oldest first); empty when activities are unavailable."""
        if self._read is None:
            return []
        if self._since_ns is None or since_ns < self._since_ns:
            try:
                activities = self._read(max(0, since_ns - _ACTIVITY_MARGIN_NS))
            except ExecutionError as exc:
                log.warning("oms: fill activities unavailable (%s); missed fills are synthesised", exc)
                self._read = None
                return []
            self._since_ns = since_ns
            self._by_order = {}
            for activity in activities:
                self._by_order.setdefault(activity.venue_order_id, []).append(activity)
        return self._by_order.get(venue_order_id, [])


class LiveOMS:
    """The OMS service: builds the engine from plain settings (picklable, so Ray can rebuild it
    on restart, see ``actors/live_oms.py``) and reconciles in the constructor.

    It may serve several callers at once (a threaded actor): concurrent :meth:`submit` calls are
    group-committed (:class:`~amcp.execution.group_commit.GroupCommit`: their intents share one
    commit before any of them is sent, their answers one commit after), and every entry point
    runs under one lock, so the engine itself only ever sees one call at a time. Calls of one
    caller are ordered only when it waits for each result before the next call.

    Args:
        broker: keyword arguments of :class:`amcp.brokers.alpaca.AlpacaBroker` (key pair, URL…).
        database_url: the trading state and audit database (SQLAlchemy URL).
        risk: the pre-trade limits.
        crash_at: test hook: ``(point, marker_path)`` — exit the process at ``point`` of a
            submit unless ``marker_path`` exists (it is created first, so a restarted actor does
            not crash again). ``point`` is one of the engine's crash points.
        events: where recorded events are published: ``{"redis_url": ..., "stream": ...}``
            (:class:`amcp.store.event_stream.EventStream` keyword arguments); None publishes nothing.
        max_batch: the most submit calls one group commit takes.
        send_concurrency: how many of a group commit's callers' requests may be in flight at once.
    """

    def __init__(self, broker: Mapping[str, Any], database_url: str, risk: RiskConfig,
                 crash_at: tuple[str, str] | None = None, events: Mapping[str, Any] | None = None,
                 max_batch: int = 64, send_concurrency: int = 8) -> None:
        from amcp.brokers.alpaca import AlpacaBroker
        from amcp.store.audit import AuditLog
        from amcp.store.event_stream import EventStream

        hook = None
        if crash_at is not None:
            point, marker = crash_at

            def hook(name: str) -> None:
                if name == point and not os.path.exists(marker):
                    with open(marker, "w") as handle:
                        handle.write(name)
                    os._exit(1)  # a kill, not an exception: nothing after this line runs

        publish = EventStream(**events).publish if events is not None else None
        self._lock = threading.RLock()
        self.engine = LiveExecutionEngine(AlpacaBroker(**broker), TradingStateStore(database_url),
                                          AuditLog(database_url), RiskEngine(risk), crash_hook=hook,
                                          publish=publish, send_concurrency=send_concurrency)
        self._submits: GroupCommit[tuple[Sequence[SubmitOrder], RiskContext], list[OrderEvent]] = GroupCommit(
            self.engine.submit_many, self._lock, max_batch=max_batch)
        with self._lock:
            self.report = self.engine.start()
        self.pid = os.getpid()

    def reconcile_report(self) -> dict[str, Any]:
        return self.report.to_dict()

    def reconcile(self) -> dict[str, Any]:
        with self._lock:
            self.report = self.engine.reconcile()
            return self.report.to_dict()

    def submit(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> list[OrderEvent]:
        """Check, persist, send and record ``commands`` (group-committed with concurrent calls)."""
        return self._submits.run((commands, ctx))

    def group_commit_stats(self) -> dict[str, int]:
        """How many batches the submits took, and the largest."""
        return {"batches": self._submits.batches, "largest_batch": self._submits.largest_batch}

    def resume_pending(self, ctx: RiskContext) -> list[OrderEvent]:
        with self._lock:
            return self.engine.resume_pending(ctx)

    def check(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> tuple[list[SubmitOrder], list[OrderDenied]]:
        with self._lock:
            return self.engine.check(commands, ctx)

    def send_checked(self, commands: Sequence[SubmitOrder]) -> list[OrderEvent]:
        with self._lock:
            return self.engine.send_checked(commands)

    def flush_outbox(self) -> int:
        with self._lock:
            return self.engine.flush_outbox()

    def cancel(self, commands: Sequence[CancelOrder]) -> list[OrderEvent]:
        with self._lock:
            return self.engine.cancel(commands)

    def on_trade_updates(self, messages: Sequence[Mapping[str, Any]], strategy_id: str = "",
                         sessions: int | None = None) -> list[OrderEvent]:
        """Record ``trade_updates`` payloads; see :meth:`LiveExecutionEngine.on_trade_updates`."""
        with self._lock:
            return self.engine.on_trade_updates(messages, strategy_id, sessions)

    def kill(self, reason: str) -> int:
        with self._lock:
            return self.engine.kill(reason)

    def process_id(self) -> int:
        return self.pid
