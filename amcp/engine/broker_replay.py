"""Replay of broker events into a cycle that a restarted orchestrator runs again.

Broker-backed modes (``paper_server``, ``live``) record every broker event in the state database
before the trading cycle sees it; :class:`BrokerEventReplay` hands a re-run cycle the events the
crashed orchestrator had already taken (see the class docstring). Pure: no Ray; the orchestrator
wraps its invoker with it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from amcp.domain.messages import OrderEvent, SubmitOrder
from amcp.domain.serialization import from_record
from amcp.engine.checkpoint import CheckpointError
from amcp.engine.invoker import Call, Invoker


REPLAY_ROLE = "broker-events"  # BrokerEventReplay's entry among a checkpoint's component states


class BrokerEventReplay:
    """Broker-backed modes: hands the cycle a restarted orchestrator runs again the broker events
    the crashed one already took from the state database.

    The broker role records every broker event in the state database (and its audit log) before
    the kernel sees it, and never records one twice: a cycle run again after a crash would get
    none of the events the crashed incarnation's OMS, portfolio and strategies consumed after the
    last checkpoint, and the restored ones would miss those fills. So the orchestrator keeps a
    watermark in each checkpoint — the audit log's last ``seq`` when every event recorded so far
    had been handed to the kernel (:meth:`mark`, after each cycle) — and, after a restore, the
    first cycle's broker calls return the events the audit log holds after it, in its order:

    - ``on_bars``: the events of orders whose intent was saved before the watermark (fills,
      cancels, expiries, and what the new broker actor's start-up reconciliation recorded);
    - ``submit``: per command, the events recorded after the watermark under its client order
      id when there are any (the crashed incarnation sent it, and the broker role never sends an
      intent the state database knows again), else what the call itself returned.

    Events after the watermark must belong to the one cycle run again, so the orchestrator
    checkpoints after every cycle in these modes. Events the store applied with an anomaly
    (an overfill) are not replayed.

    Args:
        database_url: the state database (``state.database_url``): its ``audit_log`` table is
            read (and created if missing, before the broker actor exists).
    """

    def __init__(self, database_url: str) -> None:
        from amcp.store.audit import AuditLog

        self._audit = AuditLog(database_url)
        self._watermark = self._head()  # before the broker actor records anything
        self._replaying = False

    def _head(self) -> int:
        head = self._audit.head()
        return 0 if head is None else head.seq

    def mark(self) -> None:
        """Every event recorded so far has reached the kernel: move the watermark to the audit
        log's end and stop replaying."""
        self._watermark = self._head()
        self._replaying = False

    def checkpoint_state(self) -> bytes:
        """The watermark (an audit ``seq``), for the orchestrator's checkpoint."""
        return pickle.dumps(self._watermark)

    def restore_state(self, snapshot: bytes) -> None:
        """Take a checkpoint's watermark and replay from it in the next cycle.

        Raises:
            CheckpointError: if ``snapshot`` is not a watermark.
        """
        try:
            watermark = pickle.loads(snapshot)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged snapshot
            raise CheckpointError(f"broker event watermark cannot be read: {type(exc).__name__}: {exc}") from exc
        if isinstance(watermark, bool) or not isinstance(watermark, int) or watermark < 0:
            raise CheckpointError(f"broker event watermark must be an audit seq >= 0, got {watermark!r}")
        self._watermark = watermark
        self._replaying = True

    def wrap(self, invoker: Invoker, broker: Any) -> Invoker:
        """An invoker that answers ``broker``'s ``on_bars`` and ``submit`` from the audit log
        while replaying, and passes every call on to ``invoker``."""
        return _ReplayingInvoker(invoker, broker, self)

    def _since_watermark(self) -> tuple[set[str], list[OrderEvent]]:
        """Client order ids whose intent was sent after the watermark, and the events recorded."""
        sent: set[str] = set()
        events: list[OrderEvent] = []
        for record in self._audit.records(since_seq=self._watermark):
            if record.action in ("intent", "resend"):
                sent.add(str(record.payload["client_order_id"]))
            elif record.action == "event" and record.payload.get("anomaly") is None:
                events.append(from_record({k: v for k, v in record.payload.items() if k != "anomaly"}))
        return sent, events

    def on_bars(self, returned: list[OrderEvent]) -> list[OrderEvent]:
        """The events ``on_bars`` hands to the kernel (``returned``: what the call returned)."""
        if not self._replaying:
            return returned
        sent, events = self._since_watermark()
        return [event for event in events if str(event.client_order_id) not in sent]

    def submit(self, commands: Sequence[SubmitOrder], returned: list[OrderEvent]) -> list[OrderEvent]:
        """The events ``submit`` hands to the kernel, in command order (``returned``: the call's)."""
        if not self._replaying:
            return returned
        _, events = self._since_watermark()
        out: list[OrderEvent] = []
        for command in commands:
            key = str(command.client_order_id)
            replayed = [event for event in events if str(event.client_order_id) == key]
            out.extend(replayed or [event for event in returned if str(event.client_order_id) == key])
        return out

    def close(self) -> None:
        self._audit.close()


class _ReplayingInvoker:
    """:meth:`BrokerEventReplay.wrap`: the broker's ``on_bars`` and ``submit`` through the replay."""

    def __init__(self, inner: Invoker, broker: Any, replay: BrokerEventReplay) -> None:
        self._inner = inner
        self._broker = broker
        self._replay = replay

    def call(self, target: Any, method: str, *args: Any) -> Any:
        result = self._inner.call(target, method, *args)
        if target is self._broker and method == "on_bars":
            return self._replay.on_bars(result)
        if target is self._broker and method == "submit":
            return self._replay.submit(args[0], result)
        return result

    def gather(self, calls: Sequence[Call]) -> list[Any]:
        return self._inner.gather(calls)
