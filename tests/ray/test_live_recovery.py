"""Broker-backed recovery (issue #4): an orchestrator crash in ``paper_server`` and ``live`` mode.

The venue outlives the orchestrator, as a real broker does: in ``paper_server`` mode the driver
owns the paper server (``start_paper_server``), in ``live`` mode it is a server this test runs.
The restarted orchestrator builds a new LiveBrokerActor, which reconciles the state database
with the surviving broker; the run continues from the checkpoint and ends with the same orders,
fills, denials, positions and equity as an uninterrupted run on the same market, every order
known once on both sides.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.orchestrator import NAMESPACE, ORCHESTRATOR_NAME, drive_orchestrator, get_or_create_orchestrator
from actors.planes import (
    broker_statement,
    prepare_run,
    start_paper_server,
    start_run_credentials,
    stop_paper_server,
)
from actors.credentials import stop_credential_vault
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.cycle import CycleReport
from amcp.engine.recorder import RunRecorder, RunResult
from amcp.store.audit import AuditLog
from amcp.store.journal import Journal
from pipelines import trade
from tests.ray._live_market import (
    KEY,
    LIVE_DAYS,
    SECRET,
    WAIT_S,
    LiveMarket,
    alpaca_servers,
    kill_leftover_orchestrator,
    live_config,
    sliced_sample,
    stored_orders,
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
    config, panel = sliced_sample("configs/paper_server.yaml", tmp, CYCLES, CYCLES_PER_CALL)
    return config, panel, tmp


@pytest.fixture(scope="module")
def uninterrupted(ray_local, sample) -> BrokerRun:
    config, panel, tmp = sample
    run = _paper_server_run(ray_local, config, panel, tmp / "uninterrupted")
    assert len(run.result.fills) > 20, "the slice must exercise real trading"
    assert run.status["restarts"] == 0
    _assert_books_agree(run)
    return run


def _paper_server_run(ray, config: TradeConfig, panel: BarPanel, run_dir: Path, *,
                      crash_at: tuple[int, str] | None = None) -> BrokerRun:
    """Drive a paper_server run as the job does (the driver owns the paper server)."""
    kill_leftover_orchestrator()
    run_dir.mkdir()
    run_id = f"recovery-{run_dir.name}"
    config = prepare_run(config, run_dir)
    journal_url = f"sqlite:///{run_dir / 'journal.sqlite'}"
    reports: dict[int, CycleReport] = {}
    # the driver's vault and venue: held for the whole run, so that they outlive a crashed orchestrator
    _vault = start_run_credentials(config, run_id)
    try:
        server = start_paper_server(config, panel.symbols, run_id)
        handle = get_or_create_orchestrator(config, run_id, journal_url, max_cycles=len(panel), crash_at=crash_at)
        try:
            failures = drive_orchestrator(handle, len(panel), CYCLES_PER_CALL, reports,
                                          config.ray.orchestrator_max_restarts)
            status = ray.get(handle.status.remote())
            summary = broker_statement(config, run_id, run_dir)
            requests = ray.get(server.order_requests.remote())
            ray.get(handle.shutdown.remote())
        finally:
            ray.kill(handle)
    finally:
        stop_paper_server(run_id)
        stop_credential_vault(run_id)
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
# REST API and for the broker (a paper server this test owns and moves); the test plays the market
# (tests.ray._live_market.LiveMarket), session by session, so two runs see the same market.
CRASH_AFTER_SESSION = 1  # momentum's first rebalance is live session 1: its orders fill in session 2, after the crash
EQUITY_ATOL_USD = 1e-6
"""How far the crashed run's equity curve may be from the uninterrupted one's. Both runs apply the
same fills and fees to the same state (the restarted components get theirs back from a pickled
checkpoint, bit for bit), so the curves should agree exactly; the tolerance admits only
floating-point noise (an ulp of 1e6 USD is 1.2e-10 USD) and stays far below a cent, where any
differing order, fill, fee or mark shows. The broker's own account equity is compared exactly."""


@dataclass
class LiveRun:
    """What a live job left: its summary and journal, both books, and what the market saw."""

    summary: dict[str, Any]
    journal: list[dict[str, Any]]
    equity: np.ndarray  # per session, from the job's report.json
    statement: dict[str, Any]
    stored_orders: dict[str, str]
    venue_orders: dict[str, dict[str, Any]]  # client order id -> the paper server's last view of the order
    sent: list[str]  # client order ids POSTed to the paper server, in order
    broker_pids: list[int]  # the process of the job's broker in each session

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [record for record in self.journal if record["type"] == kind]


def _live_run(ray, tmp: Path, run_id: str, *, crash_after: int | None = None) -> LiveRun:
    """Run the live job (``trade.main``) over the live sessions against fresh local servers; with
    ``crash_after``, kill its orchestrator (Ray restarts it) once that session is checkpointed."""
    kill_leftover_orchestrator()
    raw, config, panel = live_config(tmp)
    journal_url = f"sqlite:///{tmp / 'runs' / run_id / 'journal.sqlite'}"
    errors: list[BaseException] = []
    job_done = threading.Event()
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as env, alpaca_servers(config, panel) as (stream, rest, paper):
        env.setenv("AMCP_TEST_KEY", KEY)
        env.setenv("AMCP_TEST_SECRET", SECRET)
        env.delenv("DATABASE_URL", raising=False)  # each run keeps its own state database
        path = write_config(raw, (stream, rest, paper), tmp / "live.yaml")
        market = LiveMarket(stream, paper, panel, journal_url, run_id)

        def play_the_market() -> None:
            try:
                market.await_job()
                for number in range(1, len(LIVE_DAYS) + 1):
                    market.play_session(number)
                    if number == crash_after:  # between sessions: the orchestrator dies, its actors with it
                        ray.kill(ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE), no_restart=False)
                        market.await_job()
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                errors.append(exc)
                if not job_done.is_set():
                    os.kill(os.getpid(), signal.SIGINT)  # do not leave the job waiting for sessions

        player = threading.Thread(target=play_the_market, name="market", daemon=True)
        player.start()
        with contextlib.redirect_stdout(stdout):
            code = trade.main(["--config", str(path), "--run-id", run_id, "--max-cycles", str(len(LIVE_DAYS)),
                               "--quiet"])
        job_done.set()
        player.join(WAIT_S)
        venue_orders = {str(u["order"]["client_order_id"]): u["order"] for u in paper.trade_updates}
        sent = [str((r.body or {}).get("client_order_id")) for r in paper.requests
                if r.method == "POST" and r.path == "/v2/orders"]

    assert errors == [] and not player.is_alive()
    assert code == 0
    summary = json.loads(stdout.getvalue().strip().splitlines()[-1])
    journal = Journal(journal_url, run_id)
    records = journal.read()
    journal.close()
    report = json.loads((tmp / "runs" / run_id / "report.json").read_text())
    return LiveRun(summary, records, np.asarray(report["equity_curve"]["equity"], dtype=np.float64),
                   json.loads(Path(summary["broker"]["statement"]).read_text()),
                   stored_orders(summary["broker"]["state"]), venue_orders, sent, market.broker_pids)


def _assert_live_books_agree(run: LiveRun) -> None:
    """The job ran every session without halting; the state database and the broker agree on
    every order and position; each order was sent once; the audit chain verifies."""
    assert run.summary["cycles"] == len(LIVE_DAYS) and run.summary["live"]["next_session"] == "2010-07-09"
    assert not run.records("TradingStateChanged"), "trading must never have been halted"
    assert run.summary["broker"]["reconciled"] and run.summary["broker"]["position_breaks"] == 0
    assert len(run.sent) == len(set(run.sent)) and set(run.sent) == set(run.venue_orders)
    assert {cid for cid, status in run.stored_orders.items() if status != "rejected"} == set(run.venue_orders)
    assert run.statement["local_positions"] == run.statement["broker_positions"] != {}
    assert AuditLog(run.summary["broker"]["state"]).verify().ok


@pytest.fixture(scope="module")
def live_uninterrupted(ray_local, tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    run = _live_run(ray_local, tmp_path_factory.mktemp("live-uninterrupted"), "live-uninterrupted")
    assert run.summary["restarts"] == 0 and len(set(run.broker_pids)) == 1
    _assert_live_books_agree(run)
    return run


def test_live_job_killed_between_sessions_ends_with_the_orders_fills_and_equity_of_an_uninterrupted_run(
        ray_local, tmp_path, live_uninterrupted) -> None:
    reference = live_uninterrupted
    run = _live_run(ray_local, tmp_path, "live-crashed", crash_after=CRASH_AFTER_SESSION)

    # the crash happened: Ray restarted the orchestrator, which rebuilt its broker in a new process
    # and took the strategies from the checkpoint (it warmed nothing up)
    assert run.summary["restarts"] == 1
    before, after = run.broker_pids[:CRASH_AFTER_SESSION], run.broker_pids[CRASH_AFTER_SESSION:]
    assert len(set(before)) == len(set(after)) == 1 and set(before) != set(after)
    assert run.summary["live"]["warm_up_sessions"] == 0
    _assert_live_books_agree(run)
    # not vacuous: both runs traded, and orders sent before the crash filled after it
    for live in (reference, run):
        sent_before = {r["client_order_id"] for r in live.records("SubmitOrder") if r["cycle"] < CRASH_AFTER_SESSION}
        filled_after = {r["client_order_id"] for r in live.records("OrderFilled") if r["cycle"] >= CRASH_AFTER_SESSION}
        assert len(sent_before) >= 5 and sent_before & filled_after
    # the same orders (by client order id), at the broker too
    assert ({r["client_order_id"]: r for r in run.records("SubmitOrder")}
            == {r["client_order_id"]: r for r in reference.records("SubmitOrder")})
    assert run.stored_orders == reference.stored_orders
    assert _venue_view(run) == _venue_view(reference)
    # the same fills (quantities and prices, in the same sessions) and the same denials
    assert _fills(run) == _fills(reference)
    assert _denials(run) == _denials(reference)
    # the same positions and equity
    assert run.statement["local_positions"] == reference.statement["local_positions"]
    assert run.statement["account"] == reference.statement["account"]
    assert run.equity.shape == reference.equity.shape == (len(LIVE_DAYS),)
    np.testing.assert_allclose(run.equity, reference.equity, rtol=0.0, atol=EQUITY_ATOL_USD)
    # and every other journaled command and event, in order
    assert _without_wall_clock(run.journal) == _without_wall_clock(reference.journal)


def _venue_view(run: LiveRun) -> dict[str, tuple[Any, ...]]:
    """The paper server's orders: client order id -> symbol, side, quantity, status, filled quantity and price."""
    return {cid: (o["symbol"], o["side"], o["qty"], o["status"], o["filled_qty"], o["filled_avg_price"])
            for cid, o in run.venue_orders.items()}


def _fills(run: LiveRun) -> list[tuple[Any, ...]]:
    return [(r["cycle"], r["client_order_id"], r["symbol"], r["side"], r["last_quantity"], r["last_price"], r["fee"])
            for r in run.records("OrderFilled")]


def _denials(run: LiveRun) -> list[tuple[Any, ...]]:
    return [(r["cycle"], r["client_order_id"], r["reason"], r["message"]) for r in run.records("OrderDenied")]
