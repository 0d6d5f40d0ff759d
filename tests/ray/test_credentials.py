"""The broker's key pair never enters Ray's cluster metadata, yet every actor that trades or
streams gets it (from the run's credential vault), again after Ray restarts it.

Cluster metadata: what the GCS keeps about actors (runtime_env included), tasks and jobs, which
the dashboard and ``ray.util.state`` serve. The shared test cluster runs without the dashboard,
so the records are read straight from the GCS, whole (every field of every record), and the
constructor arguments of the actors the driver creates are captured as Ray serializes them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.market_data import AlpacaBarFeedSettings, LiveMarketDataActor, alpaca_bar_feed
from actors.orchestrator import drive_orchestrator, get_or_create_orchestrator, pin_data
from actors.planes import (
    broker_credentials,
    broker_statement,
    build_plane,
    prepare_run,
    start_paper_server,
    start_run_credentials,
    stop_paper_server,
)
from actors.credentials import start_credential_vault, stop_credential_vault
from amcp.config import TradeConfig, parse_config
from amcp.data.bars import load_daily_bars
from amcp.errors import ConfigError
from amcp.testing.alpaca_stream import AlpacaStreamServer
from serve.alpaca_paper import AlpacaPaperServer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "vault-test-key-7f3a91", "vault-test-secret-c4e85d20b6"  # recognisable in any dump
KEY_ENV, SECRET_ENV = "AMCP_VAULT_TEST_KEY", "AMCP_VAULT_TEST_SECRET"
SYMBOLS = ("AAPL", "MSFT", "SPY")
WAIT_S = 60.0


def _config(name: str, **updates: Any) -> TradeConfig:
    """configs/<name>.yaml with the bundled sample's absolute path and ``updates`` per section."""
    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    raw["data"]["path"] = str(ROOT / raw["data"]["path"])
    for section, values in updates.items():
        raw[section].update(values)
    return parse_config(raw, TradeConfig)


def _cluster_metadata(ray) -> bytes:
    """Every record the GCS keeps of actors, tasks and jobs, and the job's runtime_env, as bytes."""
    from ray._private.state import state

    accessor = state._global_state_accessor
    records = [*accessor.get_actor_table(None, None), *accessor.get_task_events(),
               *accessor.get_job_table(skip_submission_job_info_field=False, skip_is_running_tasks_field=False)]
    return b"\n".join([*records, repr(ray.get_runtime_context().runtime_env).encode()])


@pytest.fixture()
def creation_args(ray_local, monkeypatch) -> list[bytes]:
    """The constructor arguments of every actor this process creates, as Ray serializes them into
    the creation task (object references stay references)."""
    from ray.actor import ActorClass

    captured: list[bytes] = []
    create = ActorClass._remote

    def capture(self, args=None, kwargs=None, **options):
        context = ray_local._private.worker.global_worker.get_serialization_context()
        captured.append(context.serialize((args, kwargs)).to_bytes())
        return create(self, args=args, kwargs=kwargs, **options)

    monkeypatch.setattr(ActorClass, "_remote", capture)
    return captured


def _assert_nowhere(key: str, secret: str, ray, creation_args: list[bytes]) -> None:
    metadata = _cluster_metadata(ray)
    assert metadata, "the GCS must have records to search"
    for value in (key, secret):
        assert value.encode() not in metadata
        assert not any(value.encode() in args for args in creation_args)


def test_paper_server_run_trades_with_a_key_pair_that_is_nowhere_in_cluster_metadata(
        ray_local, tmp_path, creation_args) -> None:
    ray = ray_local
    config = prepare_run(_config("paper_server"), tmp_path)
    panel, _ = load_daily_bars(config.data)
    cycles, run_id = 40, "secrets-paper-server"
    vault = start_run_credentials(config, run_id)
    server = start_paper_server(config, panel.symbols, run_id)
    handle = get_or_create_orchestrator(pin_data(config, panel), run_id, f"sqlite:///{tmp_path / 'journal.sqlite'}",
                                        max_cycles=cycles)
    try:
        reports: dict[int, Any] = {}
        drive_orchestrator(handle, cycles, config.ray.cycles_per_call, reports, max_failures=0)
        statement = broker_statement(config, run_id, tmp_path)
        requests = ray.get(server.order_requests.remote())
        connection = ray.get(server.connection.remote())
        ray.get(handle.shutdown.remote())
    finally:
        ray.kill(handle)
        stop_paper_server(run_id)
        stop_credential_vault(run_id)

    assert vault is not None and len(reports) == cycles
    # the live broker actor reached the server with the vault's key pair: its orders were accepted
    assert requests and all(status < 400 for _, status in requests)
    assert statement["broker"]["reconciled"]
    assert len(creation_args) >= 3  # the vault, the paper server, the orchestrator
    _assert_nowhere(connection.api_key, connection.secret_key, ray, creation_args)


@pytest.fixture()
def live_plane(ray_local, tmp_path, monkeypatch, creation_args) -> Iterator[tuple[TradeConfig, str, Any]]:
    """Mode live's plane against a local paper server that accepts only KEY / SECRET, the key pair
    in the environment as a live run has it; built by the driver (so its arguments are captured)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setenv(SECRET_ENV, SECRET)
    ray = ray_local
    run_id = f"secrets-live-{tmp_path.name}"
    base = _config("live")
    with AlpacaPaperServer(start_ts_ns=0, api_key=KEY, secret_key=SECRET, venue_config=base.venue,
                           account_config=base.account, symbols=SYMBOLS) as paper:
        config = prepare_run(_config("live", broker={"url_override": paper.url, "stream_url_override": paper.ws_url,
                                                      "key_env": KEY_ENV, "secret_env": SECRET_ENV}), tmp_path)
        vault = start_run_credentials(config, run_id)  # held: Ray ends an actor nobody holds a handle to
        plane = build_plane(config, SYMBOLS, run_id, None)
        try:
            yield config, run_id, plane.broker
            assert ray.get(vault.entries.remote()) == ["broker"]
        finally:
            ray.get(plane.broker.close.remote())
            for handle in (plane.broker, plane.oms, plane.portfolio, *plane.strategies):
                ray.kill(handle)
            stop_credential_vault(run_id)


def test_live_broker_and_feed_get_the_environment_key_pair_only_from_the_vault(
        ray_local, live_plane, creation_args) -> None:
    ray = ray_local
    config, run_id, broker = live_plane
    with AlpacaStreamServer(KEY, SECRET) as stream:
        feed = AlpacaBarFeedSettings(credentials=broker_credentials(config, run_id), symbols=SYMBOLS,
                                     stream_url=stream.url, backfill=False)
        market_data = LiveMarketDataActor.remote(partial(alpaca_bar_feed, feed))
        try:
            ray.get(market_data.start.remote())
            # the stream takes subscriptions only from a client that logged in with KEY / SECRET
            assert stream.wait_subscribed(SYMBOLS, WAIT_S, channel="bars")
        finally:
            ray.get(market_data.stop.remote())
            ray.kill(market_data)

    report = ray.get(broker.reconcile_report.remote())  # the broker actor reconciled over REST with the key pair
    assert report["ok"]
    assert ray.get(broker.statement.remote())["stream"]["sessions"] >= 1  # and logged in to trade_updates
    _assert_nowhere(KEY, SECRET, ray, creation_args)


def test_restarted_live_broker_actor_gets_the_key_pair_from_the_vault_again(ray_local, live_plane) -> None:
    ray = ray_local
    _, _, broker = live_plane
    first = ray.get(broker.process_id.remote())

    ray.kill(broker, no_restart=False)

    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            pid = ray.get(broker.process_id.remote(), timeout=WAIT_S)
        except ray.exceptions.RayActorError:  # on its way back
            pid = first
        if pid != first:
            break
        assert time.monotonic() < deadline, "the live broker actor did not come back"
        time.sleep(0.1)
    assert ray.get(broker.reconcile_report.remote())["ok"]  # its new constructor reconciled with the key pair
    assert ray.get(broker.statement.remote())["stream"]["sessions"] >= 1


def test_actor_without_the_runs_vault_or_entry_gets_a_config_error_naming_vault_and_variables(ray_local) -> None:
    ray = ray_local
    config = _config("live", broker={"key_env": KEY_ENV, "secret_env": SECRET_ENV})
    missing_vault = broker_credentials(config, "secrets-no-such-run")
    with pytest.raises(ConfigError, match=rf"credential vault 'credential-vault-secrets-no-such-run' .*is not "
                                          rf"running.*{KEY_ENV} / {SECRET_ENV}"):
        missing_vault.key_pair()

    run_id = "secrets-empty-vault"
    assert start_run_credentials(_config("paper"), run_id) is None  # paper mode has no key pair to keep
    vault = start_credential_vault(run_id)
    try:
        with pytest.raises(ConfigError, match=rf"'credential-vault-{run_id}' holds no entry 'broker'.*{KEY_ENV}"):
            broker_credentials(config, run_id).key_pair()
        with pytest.raises(ConfigError, match=f"credential vault 'credential-vault-{run_id}' .*exists already"):
            start_credential_vault(run_id)
        assert ray.get(vault.entries.remote()) == []
    finally:
        stop_credential_vault(run_id)
