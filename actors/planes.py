"""Build the trading plane's component actors for a run (one place per mode).

The orchestrator calls :func:`build_plane`; each mode decides which actors fill the
:class:`~amcp.engine.cycle.Plane`'s roles:

- ``paper``: the simulated venue (SimBrokerActor) and a RiskActor.
- ``paper_server``: amcp's Alpaca-compatible paper server in a PaperServerActor, fed the
  replayed bars, and ONE LiveBrokerActor trading through alpaca-py as both ``broker`` and
  ``risk`` (one risk engine decides and sends).
- ``live``: the same LiveBrokerActor against Alpaca (``broker.paper``, ``broker.url_override``).

OMS, portfolio, strategies and journal are the same actors in every mode. The driver calls
:func:`prepare_run` before it creates the orchestrator, :func:`start_paper_server` too in
``paper_server`` mode (the venue is the driver's, so it outlives a crashed orchestrator, as a
real broker does; :func:`build_plane` finds it by name), and :func:`broker_statement` before it
shuts the orchestrator down, :func:`stop_paper_server` after.

Recovery of the broker-backed modes (:class:`BrokerEventReplay`): the LiveBrokerActor is owned
by the orchestrator and dies with it; the restarted orchestrator builds a new one, which
reconciles the state database with the surviving broker and keeps trading HALTED unless they
agree. The broker cannot be rolled back to the orchestrator's checkpoint, so the cycle the crash
interrupted is run again against what the broker and the state database already hold.
"""

from __future__ import annotations

import json
import pickle
import secrets
from collections.abc import Sequence
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

import ray

from actors.broker import SimBrokerActor
from actors.journal import JournalActor
from actors.live_broker import LiveBrokerActor
from actors.oms import OMSActor
from actors.paper_server import PaperServerActor, PaperServerReplay
from actors.portfolio import PortfolioActor
from actors.risk import RiskActor
from actors.strategy import StrategyActor
from amcp.backtest.engine import capital_fractions, split_strategies
from amcp.config import TradeConfig
from amcp.data.calendar import TradingCalendar
from amcp.domain.messages import OrderEvent, SubmitOrder
from amcp.domain.serialization import from_record
from amcp.engine.checkpoint import CheckpointError
from amcp.engine.cycle import Plane
from amcp.engine.invoker import Call, Invoker
from amcp.engine.live_cycles import next_session
from amcp.errors import ConfigError
from amcp.execution.live_plane import LiveBrokerSettings

STATEMENT_FILE = "broker_statement.json"


def live_broker_name(run_id: str) -> str:
    """The Ray name of a run's LiveBrokerActor (namespace of the run)."""
    return f"live-broker-{run_id}"


def paper_server_name(run_id: str) -> str:
    """The Ray name of a run's PaperServerActor."""
    return f"paper-server-{run_id}"


def start_paper_server(config: TradeConfig, symbols: tuple[str, ...], run_id: str) -> Any:
    """Mode ``paper_server``: start the run's PaperServerActor, named :func:`paper_server_name`.

    Call it in the driver, before the orchestrator: the caller owns the actor, so it lives until
    :func:`stop_paper_server` (or the driver's exit), through any restart of the orchestrator.
    The server listens on 127.0.0.1 only, with a fresh key pair.

    Returns:
        The actor handle: hold it for the whole run (Ray ends an actor nobody holds a handle to,
        named or not).
    """
    return PaperServerActor.options(name=paper_server_name(run_id)).remote(
        start_ts_ns=_start_ts_ns(config), venue=config.venue, account=config.account, symbols=symbols,
        api_key=secrets.token_hex(8), secret_key=secrets.token_hex(16))


def stop_paper_server(run_id: str) -> None:
    """Close the run's paper server (its ports) and end its actor; nothing when there is none."""
    try:
        server = ray.get_actor(paper_server_name(run_id))
    except ValueError:
        return
    ray.get(server.close.remote())
    ray.kill(server)


def build_plane(config: TradeConfig, symbols: tuple[str, ...], run_id: str, journal_url: str | None) -> Plane:
    """Create the component actors of ``config.mode`` and return them as a :class:`Plane`.

    Live modes need ``config.state.database_url`` set (:func:`prepare_run` does it), and
    ``paper_server`` the run's paper server (:func:`start_paper_server`).

    Raises:
        ConfigError: live modes without a state database, ``paper_server`` without the run's
            paper server, or ``live`` without the key pair in the environment variables
            ``broker.key_env`` / ``broker.secret_env``.
    """
    options: dict[str, Any] = {"num_cpus": config.ray.actor_num_cpus}
    journal = JournalActor.options(**options).remote(journal_url, run_id) if journal_url else None
    groups = split_strategies(config.strategies, config.ray.num_strategy_actors)
    if config.mode == "paper":
        broker = SimBrokerActor.options(**options).remote(config.venue)
        risk = RiskActor.options(**options).remote(config.risk)
    else:
        broker = risk = _live_broker(config, symbols, run_id, options)
    return Plane(
        broker=broker,
        oms=OMSActor.options(**options).remote(),
        portfolio=PortfolioActor.options(**options).remote(config.account, config.sizing, capital_fractions(config)),
        risk=risk,
        strategies=[StrategyActor.options(**options).remote(group, symbols) for group in groups],
        journal=journal,
    )


def _live_broker(config: TradeConfig, symbols: tuple[str, ...], run_id: str, options: dict[str, Any]) -> Any:
    """The LiveBrokerActor of a live mode (and, for ``paper_server``, the server it trades with)."""
    if config.state.database_url is None:
        raise ConfigError(f"mode {config.mode}: state.database_url is not resolved; call prepare_run first")
    settings = config.broker
    replay = None
    if config.mode == "paper_server":
        try:
            server = ray.get_actor(paper_server_name(run_id))
        except ValueError:
            raise ConfigError(f"mode paper_server: run {run_id} has no paper server (actor "
                              f"{paper_server_name(run_id)!r}); the driver starts it with start_paper_server") from None
        connection = ray.get(server.connection.remote())
        api_key, secret_key = connection.api_key, connection.secret_key
        url, stream_url = connection.url, connection.stream_url
        replay = PaperServerReplay(server)
    else:
        api_key, secret_key = settings.credentials()
        url, stream_url = settings.url_override, settings.stream_url_override
    events = None if config.events.redis_url is None else {"redis_url": config.events.redis_url,
                                                           "stream": config.events.stream}
    service_settings = LiveBrokerSettings(
        api_key=api_key, secret_key=secret_key, database_url=config.state.database_url, risk=config.risk,
        fees=config.venue.fees, paper=settings.paper, url_override=url, stream_url_override=stream_url,
        rate_limit_per_minute=settings.rate_limit_per_minute, timeout_s=settings.timeout_s,
        stream_timeout_s=settings.stream_timeout_s, connect_timeout_s=settings.connect_timeout_s, events=events)
    return LiveBrokerActor.options(name=live_broker_name(run_id), **options).remote(service_settings, replay)


def _start_ts_ns(config: TradeConfig) -> int:
    """The paper server's clock at start: midnight UTC of ``data.start`` (0 when unset), before any bar."""
    if config.data.start is None:
        return 0
    return int(datetime.combine(config.data.start, time(0), tzinfo=timezone.utc).timestamp()) * 10**9


def prepare_run(config: TradeConfig, run_dir: Path) -> TradeConfig:
    """Resolve, in the driver, what a live mode's actors need: the state database
    (``state.database_url``, else ``DATABASE_URL``, else ``state.sqlite`` in ``run_dir``).

    In ``mode: live`` the historical bars of ``data:`` only warm the strategies up; the cycles
    come from the live feed (:meth:`actors.orchestrator.TradingOrchestrator.poll_live`).

    Raises:
        ConfigError: ``mode: live`` without the broker's key pair in the environment (checked
            here, before anything starts).
    """
    if config.mode == "paper":
        return config
    if config.mode == "live":
        config.broker.credentials()
    state = config.state.model_copy(update={"database_url": config.state.resolve(run_dir)})
    return config.model_copy(update={"state": state})


def first_live_session(config: TradeConfig, history_end: date, now_ns: int) -> date:
    """Mode ``live``: the first session the job trades, the exchange session after ``history_end``.

    Args:
        config: the run's configuration (``live_data.exchange``, ``live_data.close_grace_s``).
        history_end: the last session of the warm-up history (``data:``).
        now_ns: the wall clock, UTC nanoseconds.

    Raises:
        ConfigError: if that session closed (plus ``live_data.close_grace_s``) before ``now_ns``:
            the stream does not replay it, so the strategies would miss it. Not checked when
            ``close_grace_s`` is null (a replayed feed, whose bars are not in real time).
    """
    calendar = TradingCalendar(config.live_data.exchange)
    first = next_session(calendar, history_end)
    grace_s = config.live_data.close_grace_s
    if grace_s is not None:
        close_ns = int(calendar.opens_closes_ns(first, first)[1][0])
        if now_ns >= close_ns + int(grace_s * 1e9):
            raise ConfigError(
                f"mode live: the history (data:) ends {history_end}, but the next {calendar.exchange} session, "
                f"{first}, has closed already: the strategies would miss it. Bring data: up to the last closed "
                f"session (ingest it into the store, or set data.end) and start again"
            )
    return first


def broker_statement(config: TradeConfig, run_id: str, run_dir: Path) -> dict[str, Any]:
    """Live modes: the run's end-of-run broker statement, written to ``run_dir/broker_statement.json``.

    It holds a final reconciliation, the broker's and the store's positions and account, and in
    ``paper_server`` mode every order the paper server accepted. Returns the summary's part:
    ``{"broker": {...}}``; empty in ``paper`` mode. Call it before the orchestrator shuts down.
    """
    if config.mode == "paper":
        return {}
    statement = ray.get(ray.get_actor(live_broker_name(run_id)).statement.remote())
    if config.mode == "paper_server":
        statement["paper_server_orders"] = ray.get(ray.get_actor(paper_server_name(run_id)).orders.remote())
    path = run_dir / STATEMENT_FILE
    path.write_text(json.dumps(statement, indent=1, sort_keys=True))
    reconcile = statement["reconcile"]
    return {"broker": {"reconciled": reconcile["ok"], "orphans": len(reconcile["orphans"]),
                       "position_breaks": len(reconcile["position_breaks"]), "state": config.state.database_url,
                       "statement": str(path)}}


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
