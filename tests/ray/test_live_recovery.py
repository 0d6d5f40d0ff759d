"""Broker-backed recovery (issue #4): an orchestrator crash in ``paper_server`` and ``live`` mode.

The venue outlives the orchestrator, as a real broker does: in ``paper_server`` mode the driver
owns the paper server (``start_paper_server``), in ``live`` mode it is a server this test runs.
The restarted orchestrator builds a new LiveBrokerActor, which reconciles the state database
with the surviving broker; the run continues from the checkpoint and ends with the same orders,
fills and equity as an uninterrupted one, every order known once on both sides.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from actors.orchestrator import NAMESPACE, ORCHESTRATOR_NAME, drive_orchestrator, get_or_create_orchestrator
from actors.planes import broker_statement, prepare_run, start_paper_server, stop_paper_server
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.cycle import CycleReport
from amcp.engine.recorder import RunRecorder, RunResult
from amcp.store.audit import AuditLog
from amcp.store.journal import Journal
from pipelines import trade
from pipelines._common import load_config_and_data
from tests.ray._live_market import (
    KEY,
    LIVE_DAYS,
    ROOT,
    SECRET,
    SYMBOLS,
    WAIT_S,
    WARM_UP_SESSIONS,
    alpaca_servers,
    checkpointed_cycles,
    close_ns,
    live_config,
    minute_bars,
    stored_orders,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CYCLES = 80
CYCLES_PER_CALL = 20


@dataclass
class BrokerRun:
    """What a paper_server run left: its reports, the orchestrator's status, both sides' books."""

    reports: dict[int, CycleReport]
    result: RunResult
    status: dict[str, Any]
    failures: int
    journal: list[dict[str, Any]]
    statement: dict[str, Any]
    stored_orders: dict[str, str]
    order_requests: list[tuple[str, int]]
    state_url: str


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[TradeConfig, BarPanel, Path]:
    """configs/paper_server.yaml loaded the way the job loads it, sliced like ``--max-cycles``."""
    tmp = tmp_path_factory.mktemp("live-recovery")
    raw = yaml.safe_load((ROOT / "configs/paper_server.yaml").read_text())
    raw["data"]["path"] = str(ROOT / raw["data"]["path"])
    raw["ray"]["cycles_per_call"] = CYCLES_PER_CALL
    (tmp / "paper_server.yaml").write_text(yaml.safe_dump(raw))
    config, panel, _ = load_config_and_data(str(tmp / "paper_server.yaml"), TradeConfig)
    return config, panel.slice(0, CYCLES), tmp


@pytest.fixture(scope="module")
def uninterrupted(ray_local, sample) -> BrokerRun:
    config, panel, tmp = sample
    run = _paper_server_run(ray_local, config, panel, tmp / "uninterrupted")
    assert len(run.result.fills) > 20, "the slice must exercise real trading"
    assert run.status["restarts"] == 0
    _assert_books_agree(run)
    return run


def _kill_leftover(ray) -> None:
    try:
        ray.kill(ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE))
    except ValueError:
        pass


def _paper_server_run(ray, config: TradeConfig, panel: BarPanel, run_dir: Path, *,
                      crash_at: tuple[int, str] | None = None) -> BrokerRun:
    """Drive a paper_server run as the job does (the driver owns the paper server)."""
    _kill_leftover(ray)
    run_dir.mkdir()
    run_id = f"recovery-{run_dir.name}"
    config = prepare_run(config, run_dir)
    journal_url = f"sqlite:///{run_dir / 'journal.sqlite'}"
    server = start_paper_server(config, panel.symbols, run_id)
    panel_ref = ray.put(panel)  # held for the whole run: a restart reads it again
    handle = get_or_create_orchestrator(config, panel_ref, run_id, journal_url, crash_at=crash_at)
    reports: dict[int, CycleReport] = {}
    try:
        failures = drive_orchestrator(handle, len(panel), CYCLES_PER_CALL, reports,
                                      config.ray.orchestrator_max_restarts)
        status = ray.get(handle.status.remote())
        summary = broker_statement(config, run_id, run_dir)
        requests = ray.get(server.order_requests.remote())
        ray.get(handle.shutdown.remote())
    finally:
        ray.kill(handle)
        stop_paper_server(run_id)
    recorder = RunRecorder()
    recorder.add(reports[cycle] for cycle in sorted(reports))
    journal = Journal(journal_url, run_id)
    records = journal.read()
    journal.close()
    statement = json.loads(Path(summary["broker"]["statement"]).read_text())
    state_url = str(config.state.database_url)
    return BrokerRun(reports, recorder.result(), status, failures, records, statement, stored_orders(state_url),
                     requests, state_url)


def _assert_books_agree(run: BrokerRun) -> None:
    """The state database and the paper server agree on every order and position; the audit
    chain verifies; every order reached the server once."""
    statement = run.statement
    assert statement["reconcile"]["ok"] and statement["reconcile"]["position_breaks"] == {}
    sent = [cid for cid, _ in run.order_requests]
    assert len(sent) == len(set(sent)), "a client order id was sent to the broker twice"
    accepted_at_server = set(statement["paper_server_orders"])
    assert set(sent) == accepted_at_server | {cid for cid, status in run.order_requests if status >= 400}
    assert {cid for cid, status in run.stored_orders.items() if status != "rejected"} == accepted_at_server
    assert statement["local_positions"] == statement["broker_positions"] != {}
    assert AuditLog(run.state_url).verify().ok


@pytest.mark.parametrize("sends_orders", [True, False], ids=["before-its-orders-go-out", "after-its-last-hop"])
def test_paper_server_crash_mid_cycle_resumes_with_the_same_orders_fills_and_equity(
        ray_local, sample, uninterrupted, sends_orders: bool) -> None:
    config, panel, tmp = sample
    # A cycle after the first call that fills older orders. With orders, the crash comes after the
    # cycle's first journal write, before its orders go out; without, after its last hop (the
    # end-of-cycle journal write). Either way the restarted orchestrator must get the fills again
    # from the state database; with orders, it must send the intents itself, once.
    cycle = next(c for c, report in sorted(uninterrupted.reports.items())
                 if c > CYCLES_PER_CALL and report.fills
                 and (report.orders_submitted > 0 if sends_orders else not (report.orders_submitted or report.denials)))
    name = f"crashed-at-{cycle}"
    marker = tmp / f"{name}.marker"
    run = _paper_server_run(ray_local, config, panel, tmp / name, crash_at=(cycle, str(marker)))

    assert marker.read_text() == str(cycle), "the orchestrator must have crashed at the chosen cycle"
    assert run.failures == 1 and run.status["restarts"] == 1
    assert run.status["cycles_done"] == CYCLES and run.status["trading_state"] == "active"
    _assert_books_agree(run)
    assert run.stored_orders == uninterrupted.stored_orders
    assert run.result.fill_records() == uninterrupted.result.fill_records()
    assert np.array_equal(run.result.equity, uninterrupted.result.equity)
    assert run.result.orders_submitted == uninterrupted.result.orders_submitted
    assert _without_wall_clock(run.journal) == _without_wall_clock(uninterrupted.journal)


def _without_wall_clock(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Journal records with the wall-clock stamp of the REST acknowledgements left out (it
    differs between any two runs); everything else is the simulated venue's and must match."""
    return [{k: v for k, v in record.items() if not (k == "ts_ns" and record["type"] == "OrderAccepted")}
            for record in journal]



# ---------------------------------------------------------------------------------------- live mode
# As tests/ray/test_live_mode_job.py: local servers stand in for Alpaca's market-data stream and
# REST API and for the broker (a paper server this test owns and moves); the test plays the market.
LIVE_RUN_ID = "live-recovery"


def test_live_job_survives_an_orchestrator_crash_between_sessions(ray_local, tmp_path, monkeypatch, capsys) -> None:
    ray = ray_local
    raw, config, panel = live_config(tmp_path)
    monkeypatch.setenv("AMCP_TEST_KEY", KEY)
    monkeypatch.setenv("AMCP_TEST_SECRET", SECRET)
    journal_url = f"sqlite:///{tmp_path / 'runs' / LIVE_RUN_ID / 'journal.sqlite'}"
    errors: list[BaseException] = []

    with alpaca_servers(config, panel) as (stream, rest, paper):
        path = write_config(raw, (stream, rest, paper), tmp_path / "live.yaml")

        def play_the_market() -> None:
            try:
                for done, day in enumerate(LIVE_DAYS, start=1):
                    if not stream.wait_subscribed(SYMBOLS, WAIT_S, channel="bars"):
                        raise TimeoutError(f"the job's feed did not subscribe to bars within {WAIT_S} s")
                    paper.advance(panel.batch(WARM_UP_SESSIONS + done - 1), session_closed=True)
                    for bar in minute_bars(panel, day):
                        stream.publish_bar(bar.symbol, bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)
                    stream.publish_bar("SPY", close_ns(day), 1.0, 1.0, 1.0, 1.0, 1.0)  # after hours: closes it
                    wait_until(lambda: checkpointed_cycles(journal_url, LIVE_RUN_ID) >= done, f"the job did not run session {day}")
                    if done == 1:  # between sessions: the orchestrator dies, its actors with it
                        connections = stream.connections
                        ray.kill(ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE), no_restart=False)
                        wait_until(lambda: stream.connections > connections, "the restarted feed did not connect")
                os.kill(os.getpid(), signal.SIGTERM)  # the job stops after the cycle in progress
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
                os.kill(os.getpid(), signal.SIGINT)  # do not leave the job waiting for sessions

        market = threading.Thread(target=play_the_market, name="market", daemon=True)
        market.start()
        code = trade.main(["--config", str(path), "--run-id", LIVE_RUN_ID, "--quiet"])
        market.join(WAIT_S)
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        server_orders = {str(u["order"]["client_order_id"]): u["order"] for u in paper.trade_updates}
        sent = [str((r.body or {}).get("client_order_id")) for r in paper.requests
                if r.method == "POST" and r.path == "/v2/orders"]

    assert errors == []
    assert code == 0 and summary["cycles"] == len(LIVE_DAYS) and summary["restarts"] == 1
    live = summary["live"]
    # the restarted process took the strategies from the checkpoint: it warmed nothing up
    assert live["warm_up_sessions"] == 0 and live["next_session"] == "2010-07-09"
    assert summary["orders"] >= 5 and summary["fills"] > 0
    # the new broker actor reconciled with the broker: trading was never HALTED (no state change journaled)
    journal = Journal(journal_url, LIVE_RUN_ID)
    records = journal.read()
    journal.close()
    assert records and not any(
        record["type"] == "TradingStateChanged" for record in records)
    # the state database and the broker agree on every order and position; each order sent once
    assert summary["broker"]["reconciled"] and summary["broker"]["position_breaks"] == 0
    assert len(sent) == len(set(sent)) and set(sent) == set(server_orders)
    state_url = summary["broker"]["state"]
    assert {cid for cid, status in stored_orders(state_url).items() if status != "rejected"} == set(server_orders)
    statement = json.loads(Path(summary["broker"]["statement"]).read_text())
    assert statement["local_positions"] == statement["broker_positions"] != {}
    assert AuditLog(state_url).verify().ok
