"""The trade job's live modes: paper_server end to end, parity with paper, and the live plane.

``paper_server`` runs the whole job (its own Alpaca-compatible server in an actor, real alpaca-py
REST and ``trade_updates``); ``live`` is driven through ``broker.url_override`` against a paper
server this test starts (no network here), with the test moving the market.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from actors.invoker import RayInvoker
from actors.credentials import stop_credential_vault
from actors.planes import broker_statement, build_plane, start_run_credentials
from amcp.config import TradeConfig, parse_config
from amcp.data.bars import load_daily_bars
from amcp.engine.cycle import TradingKernel
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from pipelines import trade
from serve.alpaca_paper import AlpacaPaperServer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 60
OPEN_CYCLES = 40  # mean reversion holds positions then


def _config(tmp_path: Path, mode: str, **top: Any) -> dict[str, Any]:
    config = yaml.safe_load((ROOT / "configs/paper_server.yaml").read_text())
    config["mode"] = mode
    config["data"]["path"] = str(ROOT / config["data"]["path"])
    config["run"]["output_dir"] = str(tmp_path / "runs")
    config["strategies"] = [s for s in config["strategies"] if s["kind"] == "mean_reversion"]  # trades early
    config.update(top)
    return config


def _run(tmp_path: Path, config: dict[str, Any], run_id: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    path = tmp_path / f"{run_id}.yaml"
    path.write_text(yaml.safe_dump(config))
    code = trade.main(["--config", str(path), "--max-cycles", str(CYCLES), "--run-id", run_id, "--quiet"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_paper_server_job_trades_through_alpaca_py_and_ends_reconciled(ray_local, tmp_path, capsys) -> None:
    code, summary = _run(tmp_path, _config(tmp_path, "paper_server"), "ps", capsys)

    assert code == 0 and summary["mode"] == "paper_server" and summary["cycles"] == CYCLES
    assert summary["orders"] > 0 and summary["fills"] > 0
    assert summary["broker"]["reconciled"] and summary["broker"]["position_breaks"] == 0
    statement = json.loads(Path(summary["broker"]["statement"]).read_text())
    url = f"sqlite:///{tmp_path / 'runs' / 'ps' / 'state.sqlite'}"
    state = TradingStateStore(url)
    local_orders = _stored_order_ids(url)
    # every order known on both sides (an order the server refused over HTTP never existed there)
    assert {cid for cid, status in local_orders.items() if status != "rejected"} == set(statement["paper_server_orders"])
    local_positions = {s: q for s, q in state.positions().items() if q}
    broker_positions = {s: Decimal(q) for s, q in statement["broker_positions"].items()}
    assert local_positions == broker_positions  # flat on both sides: the last exit filled on cycle 53
    assert AuditLog(url).verify().ok


def test_paper_and_paper_server_modes_trade_alike_on_the_same_bars(ray_local, tmp_path, capsys) -> None:
    _, paper = _run(tmp_path, _config(tmp_path, "paper"), "parity-paper", capsys)
    _, server = _run(tmp_path, _config(tmp_path, "paper_server"), "parity-server", capsys)

    assert paper["orders"] > 0
    assert (server["orders"], server["fills"], server["denials"]) == (paper["orders"], paper["fills"], paper["denials"])
    assert server["final_equity"] == pytest.approx(paper["final_equity"], rel=1e-9)


def test_the_live_plane_trades_against_an_alpaca_compatible_url(ray_local, tmp_path, monkeypatch) -> None:
    ray = ray_local
    raw = _config(tmp_path, "live")
    config = parse_config(raw, TradeConfig)
    panel, _ = load_daily_bars(config.data)
    panel = panel.slice(0, OPEN_CYCLES)
    monkeypatch.setenv("AMCP_TEST_KEY", "live-key")
    monkeypatch.setenv("AMCP_TEST_SECRET", "live-secret")
    run_dir = tmp_path / "live"
    run_dir.mkdir()
    with AlpacaPaperServer(start_ts_ns=int(panel.ts_ns[0]) - 1, api_key="live-key", secret_key="live-secret",
                           venue_config=config.venue, account_config=config.account, symbols=panel.symbols) as server:
        broker = {"url_override": server.url, "stream_url_override": server.ws_url, "key_env": "AMCP_TEST_KEY",
                  "secret_env": "AMCP_TEST_SECRET", "rate_limit_per_minute": 600_000}
        config = parse_config({**raw, "broker": broker}, TradeConfig)
        config = config.model_copy(update={"state": config.state.model_copy(
            update={"database_url": config.state.resolve(run_dir)})})
        vault = start_run_credentials(config, "live-plane")
        plane = build_plane(config, panel.symbols, "live-plane", None)
        assert plane.broker is plane.risk  # one actor, one risk engine
        kernel = TradingKernel(plane, RayInvoker(), bars_close_session=True)
        fills = 0
        for batch in panel.batches(0, len(panel)):
            server.advance(batch, session_closed=True)  # the market moves by itself
            fills += len(kernel.run_cycle(batch).fills)

        statement = broker_statement(config, "live-plane", run_dir)
        for handle in {id(h): h for h in (plane.broker, plane.oms, plane.portfolio, *plane.strategies)}.values():
            ray.kill(handle)
        stop_credential_vault("live-plane")
    assert vault is not None and fills > 0
    assert statement["broker"]["reconciled"] and statement["broker"]["position_breaks"] == 0
    positions = json.loads(Path(statement["broker"]["statement"]).read_text())
    assert positions["local_positions"] == positions["broker_positions"] != {}
    assert AuditLog(config.state.database_url).verify().ok


def _stored_order_ids(url: str) -> dict[str, str]:
    """Every order the state database holds: client order id -> status."""
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("select client_order_id, status from trading_orders")).all()
    engine.dispose()
    return {str(cid): str(status) for cid, status in rows}
