"""Build the trading plane's component actors for a run (one place per mode).

The orchestrator calls :func:`build_plane`; each mode decides which actors fill the
:class:`~amcp.engine.cycle.Plane`'s roles:

- ``paper``: the simulated venue (SimBrokerActor) and a RiskActor.
- ``paper_server``: amcp's Alpaca-compatible paper server in a PaperServerActor, fed the
  replayed bars, and ONE LiveBrokerActor trading through alpaca-py as both ``broker`` and
  ``risk`` (one risk engine decides and sends).
- ``live``: the same LiveBrokerActor against Alpaca (``broker.paper``, ``broker.url_override``).

OMS, portfolio, strategies and journal are the same actors in every mode. The driver calls
:func:`prepare_run` before it creates the orchestrator, then in the live modes
:func:`start_run_credentials` (the run's credential vault, :mod:`actors.credentials`: no key pair is
ever an actor's constructor argument or environment variable) and in ``paper_server`` mode
:func:`start_paper_server` (the venue is the driver's, so it outlives a crashed orchestrator, as
a real broker does; :func:`build_plane` finds it by name). It calls :func:`broker_statement`
before it shuts the orchestrator down, :func:`stop_paper_server` and
:func:`actors.credentials.stop_credential_vault` after.

Recovery of the broker-backed modes (:class:`amcp.engine.broker_replay.BrokerEventReplay`): the LiveBrokerActor is owned
by the orchestrator and dies with it; the restarted orchestrator builds a new one, which
reconciles the state database with the surviving broker and keeps trading HALTED unless they
agree. The broker cannot be rolled back to the orchestrator's checkpoint, so the cycle the crash
interrupted is run again against what the broker and the state database already hold.
"""

from __future__ import annotations

import json
import secrets
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
from actors.credentials import CredentialRef, credential_vault_name, start_credential_vault
from actors.strategy import StrategyActor
from amcp.backtest.engine import capital_fractions, split_strategies
from amcp.config import TradeConfig
from amcp.data.calendar import TradingCalendar
from amcp.engine.cycle import Plane
from amcp.engine.live_cycles import next_session
from amcp.errors import ConfigError
from amcp.execution.live_plane import LiveBrokerSettings

STATEMENT_FILE = "broker_statement.json"
BROKER_CREDENTIALS = "broker"  # the vault entry of the broker's key pair (live: also the market data's)


def live_broker_name(run_id: str) -> str:
    """The Ray name of a run's LiveBrokerActor (namespace of the run)."""
    return f"live-broker-{run_id}"


def paper_server_name(run_id: str) -> str:
    """The Ray name of a run's PaperServerActor."""
    return f"paper-server-{run_id}"


def broker_credentials(config: TradeConfig, run_id: str) -> CredentialRef:
    """The live modes' reference to the broker's key pair: entry ``broker`` of the run's credential vault."""
    if config.mode == "paper_server":
        origin = "a fresh key pair the driver makes for the run's paper server"
    else:
        origin = (f"the environment variables {config.broker.key_env} / {config.broker.secret_env} "
                  f"(broker.key_env / broker.secret_env)")
    return CredentialRef(credential_vault_name(run_id), BROKER_CREDENTIALS, origin)


def start_run_credentials(config: TradeConfig, run_id: str) -> Any | None:
    """Live modes: start the run's credential vault and put the broker's key pair in it.

    Call it in the driver, before :func:`start_paper_server` and the orchestrator. In ``live``
    mode the key pair comes from the environment (``broker.key_env`` / ``broker.secret_env``),
    read here; in ``paper_server`` mode it is a fresh random one, which the paper server and the
    live broker actor both get from the vault. End it with
    :func:`actors.credentials.stop_credential_vault` after the run.

    Returns:
        The vault's handle (hold it for the whole run); None in ``paper`` mode, which has no key pair.

    Raises:
        ConfigError: ``live`` without the key pair in the environment, or the run's vault exists
            already (the run is driven from another driver).
    """
    if config.mode == "paper":
        return None
    if config.mode == "live":
        key, secret = config.broker.credentials()
    else:
        key, secret = secrets.token_hex(8), secrets.token_hex(16)
    vault = start_credential_vault(run_id)
    ray.get(vault.put.remote(BROKER_CREDENTIALS, key, secret))
    return vault


def start_paper_server(config: TradeConfig, symbols: tuple[str, ...], run_id: str) -> Any:
    """Mode ``paper_server``: start the run's PaperServerActor, named :func:`paper_server_name`.

    Call it in the driver, after :func:`start_run_credentials` and before the orchestrator: the
    caller owns the actor, so it lives until :func:`stop_paper_server` (or the driver's exit),
    through any restart of the orchestrator. The server listens on 127.0.0.1 only, with the run's
    key pair from the vault.

    Returns:
        The actor handle: hold it for the whole run (Ray ends an actor nobody holds a handle to,
        named or not).

    Raises:
        ConfigError: if the run's vault is not running or has no broker key pair.
    """
    api_key, secret_key = broker_credentials(config, run_id).key_pair()
    # As object references: Ray hands the constructor their values, and the actor's creation task
    # (kept in the GCS) holds only their ids. The server is never restarted, so nothing reads them again.
    return PaperServerActor.options(name=paper_server_name(run_id)).remote(
        start_ts_ns=_start_ts_ns(config), venue=config.venue, account=config.account, symbols=symbols,
        api_key=ray.put(api_key), secret_key=ray.put(secret_key))


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

    Live modes need ``config.state.database_url`` set (:func:`prepare_run` does it) and the
    run's credential vault (:func:`start_run_credentials`), ``paper_server`` the run's paper
    server (:func:`start_paper_server`).

    Raises:
        ConfigError: live modes without a state database, ``paper_server`` without the run's
            paper server. (The live broker actor fails to start, with a ConfigError, without
            the run's credential vault.)
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
        url, stream_url = connection.url, connection.stream_url
        replay = PaperServerReplay(server)
    else:
        url, stream_url = settings.url_override, settings.stream_url_override
    events = None if config.events.redis_url is None else {"redis_url": config.events.redis_url,
                                                           "stream": config.events.stream}
    service_settings = LiveBrokerSettings(
        credentials=broker_credentials(config, run_id), database_url=config.state.database_url,
        risk=config.risk, fees=config.venue.fees, paper=settings.paper, url_override=url, stream_url_override=stream_url,
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
