"""The ingest job end to end on Ray: file and Alpaca sources, resume, and store → backtest parity."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from amcp.backtest.engine import BacktestEngine
from amcp.config import BacktestConfig, parse_config
from amcp.data.bars import load_daily_bars
from amcp.data.ingest import Quarantine
from amcp.data.schemas import CORPORATE_ACTION_SCHEMA
from amcp.data.store import MarketDataStore
from amcp.data.synthetic import generate_daily_bars, generate_option_chains
from amcp.testing.alpaca_rest import AlpacaMarketDataServer
from pipelines import ingest

pytestmark = pytest.mark.ray

SAMPLE = "data/sample/daily_bars.parquet"
SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "EIX"]


def _run(tmp_path, config: dict, capsys, *extra: str) -> tuple[int, dict]:
    path = tmp_path / "ingest.yaml"
    path.write_text(yaml.safe_dump(config))
    code = ingest.main(["--config", str(path), "--quiet", *extra])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, json.loads(lines[-1])


def _file_config(store_url: str, policy: str = "repair") -> dict:
    return {
        "kind": "ingest",
        "run": {"name": "ingest-test", "output_dir": store_url + "-runs"},
        "store": {"url": store_url},
        "source": {"kind": "file", "path": SAMPLE, "symbols": SYMBOLS},
        "quality": {"policy": policy},
        "ray": {"symbols_per_task": 2, "max_tasks_in_flight": 2, "task_num_cpus": 0.5},
    }


def test_file_ingest_is_idempotent_and_feeds_the_same_backtest(ray_local, tmp_path, capsys, repo_root) -> None:
    store_url = str(tmp_path / "store")
    config = _file_config(store_url)
    config["source"]["path"] = str(repo_root / SAMPLE)
    code, first = _run(tmp_path, config, capsys)
    assert code == 0 and first["ok"] and first["symbols"] == len(SYMBOLS) and first["failures"] == []
    store = MarketDataStore(store_url)
    assert store.symbols("equities/daily") == sorted(SYMBOLS)
    assert first["rows_written"] == store.read("equities/daily").num_rows
    # EIX carries the sample's decimal-shift bad prints: repaired on the way in, and reported
    assert first["quality"].get("bad_print", 0) > 0
    report = json.loads(open(first["report"]).read())
    per_symbol = {r["symbol"]: r for r in report["per_symbol"]}
    assert set(per_symbol) == set(SYMBOLS) and per_symbol["EIX"]["quality"].get("bad_print", 0) > 0
    assert sum(r["rows_written"] for r in per_symbol.values()) == first["rows_written"]

    code, second = _run(tmp_path, config, capsys)
    assert code == 0 and second["rows_written"] == 0 and second["rows_replaced"] == first["rows_written"]

    # The store feeds the backtest exactly what the file does (after the same repairs).
    common = {"strategies": [{"kind": "momentum", "id": "m", "capital_fraction": 0.9, "lookback_bars": 60, "skip_bars": 5,
                              "top_n": 2, "rebalance_bars": 10}]}
    by_file = parse_config({"data": {"path": str(repo_root / SAMPLE), "symbols": SYMBOLS}, **common}, BacktestConfig)
    by_store = parse_config({"data": {"store": {"url": store_url}, "symbols": SYMBOLS}, **common}, BacktestConfig)
    panel_file, _ = load_daily_bars(by_file.data)
    panel_store, quality = load_daily_bars(by_store.data)
    assert panel_store.symbols == panel_file.symbols
    assert (panel_store.ts_ns == panel_file.ts_ns).all()
    for field in ("open", "high", "low", "close", "volume"):
        assert (pa.array(getattr(panel_store, field).ravel()).equals(pa.array(getattr(panel_file, field).ravel())))
    result_file = BacktestEngine(by_file, panel_file).run()
    result_store = BacktestEngine(by_store, panel_store).run()
    assert result_file.fill_records() == result_store.fill_records()
    assert len(result_file.fill_records()) > 0


def test_file_ingest_strict_reports_the_bad_symbol_and_stores_the_rest(ray_local, tmp_path, capsys, repo_root) -> None:
    config = _file_config(str(tmp_path / "store"), policy="strict")
    config["source"]["path"] = str(repo_root / SAMPLE)
    code, summary = _run(tmp_path, config, capsys)
    assert code == ingest.EXIT_PARTIAL and not summary["ok"]
    failed = {f["symbol"] for f in summary["failures"]}
    assert "EIX" in failed and all(f["reason"] for f in summary["failures"])
    stored = set(MarketDataStore(str(tmp_path / "store")).symbols("equities/daily"))
    assert stored == set(SYMBOLS) - failed and stored


def test_bad_config_exits_2_with_the_key(ray_local, tmp_path, capsys) -> None:
    config = _file_config(str(tmp_path / "store"))
    config["source"]["symbols"] = ["NOPE"]
    config["source"]["path"] = SAMPLE
    code, summary = _run(tmp_path, config, capsys)
    assert code == 2 and "NOPE" in summary["error"]


def test_alpaca_ingest_fans_out_survives_429s_and_resumes(ray_local, tmp_path, capsys, monkeypatch) -> None:
    bars = generate_daily_bars(3, date(2014, 1, 1), date(2016, 12, 31), seed=11, symbols=["AAA", "BBB", "CCC"])
    chain = generate_option_chains("AAA", 100.0, date(2016, 12, 30), seed=2, expiries=2, strikes_per_expiry=5)
    actions = pa.table({"symbol": ["BBB"], "ex_date": [date(2015, 6, 1)], "action": ["split"], "ratio": [2.0],
                        "cash": [None]}, schema=CORPORATE_ACTION_SCHEMA)
    store_url = str(tmp_path / "store")
    monkeypatch.setenv("TEST_ALPACA_KEY", "test-key")
    monkeypatch.setenv("TEST_ALPACA_SECRET", "test-secret")
    with AlpacaMarketDataServer() as server:
        server.add_bars(bars, "1Day")
        server.add_option_chain(chain)
        server.add_corporate_actions(actions)
        config = {
            "kind": "ingest",
            "run": {"output_dir": str(tmp_path / "runs")},
            "store": {"url": store_url},
            "source": {"kind": "alpaca", "symbols": ["AAA", "BBB", "CCC"], "start": "2014-01-01", "end": "2016-12-31",
                       "url_override": server.url, "key_env": "TEST_ALPACA_KEY", "secret_env": "TEST_ALPACA_SECRET",
                       "chunk_days": 366, "rate_limit_per_minute": 6000, "option_underlyings": ["AAA"]},
            "ray": {"symbols_per_task": 1, "max_tasks_in_flight": 3, "task_num_cpus": 0.25},
        }
        server.fail_every(4, 429)  # a 429 storm: every fourth request is refused
        code, first = _run(tmp_path, config, capsys)
        server.fail_every(0)
        assert code == 0 and first["ok"], first
        assert first["windows"] == 3 * 3 and first["windows_skipped"] == 0
        store = MarketDataStore(store_url)
        stored = store.read("equities/daily")
        assert stored.num_rows == bars.num_rows
        assert stored.column("close").equals(bars.column("close"))
        assert store.read("options/chains").num_rows == chain.num_rows
        split = store.read("reference/corporate_actions")
        assert split.column("ratio").to_pylist() == [2.0]

        server.clear_log()
        code, again = _run(tmp_path, config, capsys)
        assert code == 0 and again["windows_skipped"] == 9 and again["windows"] == 0
        bar_requests = [r for r in server.requests if r.path.startswith("/v2/stocks/bars")]
        assert bar_requests == []  # nothing refetched

        code, restarted = _run(tmp_path, config, capsys, "--restart")
        daily = restarted["by_kind"]["equities/daily"]
        assert restarted["windows"] == 9 and daily["rows_replaced"] == bars.num_rows and daily["rows_written"] == 0
        assert restarted["by_kind"]["options/chains"]["rows_replaced"] == chain.num_rows
        assert pc.count_distinct(store.read("equities/daily").column("ts")).as_py() == bars.num_rows // 3


def test_alpaca_ingest_without_keys_exits_2(ray_local, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    config = {"kind": "ingest", "run": {"output_dir": str(tmp_path / "runs")}, "store": {"url": str(tmp_path / "s")},
              "source": {"kind": "alpaca", "symbols": ["AAA"], "start": "2016-01-01", "key_env": "NO_SUCH_KEY_VAR"}}
    code, summary = _run(tmp_path, config, capsys)
    assert code == 2 and "NO_SUCH_KEY_VAR" in summary["error"]


@pytest.mark.slow
def test_the_whole_shared_daily_file_ingests_with_every_bad_row_quarantined(ray_local, tmp_path, capsys,
                                                                           shared_daily) -> None:
    import pandas as pd

    frame = pd.read_parquet(shared_daily, columns=["symbol", "open", "high", "low", "close"])
    o, h, l, c = (frame[k].to_numpy() for k in ("open", "high", "low", "close"))
    inconsistent = int(((h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c))).sum())
    config = {"kind": "ingest", "run": {"output_dir": str(tmp_path / "runs")}, "store": {"url": str(tmp_path / "s")},
              "source": {"kind": "file", "path": str(shared_daily)}, "quality": {"policy": "quarantine"},
              "ray": {"symbols_per_task": 100, "max_tasks_in_flight": 2}}
    code, summary = _run(tmp_path, config, capsys)
    assert code == 0 and summary["symbols"] == frame["symbol"].nunique()
    assert summary["rows_in"] == len(frame)
    assert summary["rows_written"] + summary["rows_quarantined"] == len(frame)
    assert summary["rows_quarantined"] == inconsistent > 0
    assert summary["quality"]["outlier_return"] > 0 and summary["quality"]["missing_session"] > 0
    held = Quarantine(str(tmp_path / "s"), None, summary["job_key"]).read("equities/daily")
    assert held.num_rows == inconsistent
    assert MarketDataStore(str(tmp_path / "s")).read("equities/daily", columns=["close"]).num_rows == summary["rows_written"]


def test_a_task_that_dies_fails_its_symbols_and_the_job_still_reports(ray_local, tmp_path, capsys,
                                                                      monkeypatch) -> None:
    from amcp.data.ingest import IngestCheckpoint, job_key  # noqa: F401 - the key is read from the summary

    bars = generate_daily_bars(2, date(2015, 1, 1), date(2015, 12, 31), seed=3, symbols=["AAA", "BBB"])
    monkeypatch.setenv("TEST_ALPACA_KEY", "test-key")
    monkeypatch.setenv("TEST_ALPACA_SECRET", "test-secret")
    with AlpacaMarketDataServer() as server:
        server.add_bars(bars, "1Day")
        config = {
            "kind": "ingest", "run": {"output_dir": str(tmp_path / "runs")}, "store": {"url": str(tmp_path / "s")},
            "source": {"kind": "alpaca", "symbols": ["AAA", "BBB"], "start": "2015-01-01", "end": "2015-12-31",
                       "url_override": server.url, "key_env": "TEST_ALPACA_KEY", "secret_env": "TEST_ALPACA_SECRET",
                       "rate_limit_per_minute": 6000, "corporate_actions": False},
            "ray": {"symbols_per_task": 1, "max_tasks_in_flight": 2, "task_num_cpus": 0.25},
        }
        code, first = _run(tmp_path, config, capsys)
        assert code == 0
        # BBB's resume markers are corrupted: its task cannot start, AAA's runs
        checkpoint = IngestCheckpoint(str(tmp_path / "s"), None, first["job_key"])
        with checkpoint._fs.open(checkpoint._file("BBB"), "wb") as handle:
            handle.write(b"{broken")
        code, second = _run(tmp_path, config, capsys)
    assert code == ingest.EXIT_PARTIAL and not second["ok"]
    assert [f["symbol"] for f in second["failures"]] == ["BBB"]
    assert "checkpoint" in second["failures"][0]["reason"] and "task failed" in second["failures"][0]["reason"]
