"""The scan job end to end on Ray: synthetic chains from the default config, VXX chains from a vendor file
and from the store, one task per chain."""

from __future__ import annotations

import json
from datetime import date

import pandas as pd
import pytest
import yaml

from pipelines import scan
from tests.conftest import ROOT, SHARED_DATA, require

VXX = SHARED_DATA / "options" / "vxx_chains_2016-12.parquet"
DATES = ("12/01/2016", "12/02/2016")


@pytest.fixture(scope="module")
def vxx_slice(tmp_path_factory) -> str:
    """Two quote dates of the shared VXX file, as a vendor-layout Parquet file."""
    require(VXX.is_file(), f"the shared real data file {VXX} is not present")
    frame = pd.read_parquet(VXX)
    path = tmp_path_factory.mktemp("vxx") / "vxx_two_days.parquet"
    frame[frame["quotedate"].isin(DATES)].to_parquet(path, index=False)
    return str(path)


def _run(tmp_path, config: dict, capsys) -> tuple[int, dict]:
    path = tmp_path / "scan.yaml"
    path.write_text(yaml.safe_dump(config))
    code = scan.main(["--config", str(path), "--quiet"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, json.loads(lines[-1])


def _config(tmp_path, source: dict) -> dict:
    return {
        "kind": "scan",
        "run": {"name": "scan-test", "output_dir": str(tmp_path / "runs")},
        "source": source,
        "market": {"rate": 0.005},
        "scanner": {"filters": {"min_bid": 0.05, "min_open_interest": 1}, "min_violation": 0.01,
                    "butterfly_max_wing_strikes": 4, "condor_max_wing_strikes": 3, "top_per_structure": 5},
        "ray": {"task_num_cpus": 0.5, "max_tasks_in_flight": 2},
        "output": {"format": "csv", "top": 3},
    }


def test_the_default_config_scans_synthetic_chains_without_data_and_finds_no_arbitrage(ray_local, tmp_path,
                                                                                       capsys) -> None:
    default = ROOT / "configs" / "scan.yaml"
    underlyings = [u["symbol"] for u in yaml.safe_load(default.read_text())["source"]["underlyings"]]
    code = scan.main(["--config", str(default), "--output-dir", str(tmp_path / "runs"), "--quiet"])
    summary = json.loads([line for line in capsys.readouterr().out.splitlines() if line.strip()][-1])
    assert code == 0 and summary["ok"], summary
    assert summary["source"] == "synthetic"
    assert summary["chains"] == summary["chains_scanned"] == len(underlyings) and summary["failures"] == []
    assert summary["violations"] == 0 and summary["violations_by_kind"] == {}
    assert summary["candidates_evaluated"] == sum(summary["candidates_by_structure"].values()) > 0
    chains = pd.read_csv(summary["files"]["chains"])
    assert sorted(chains["underlying"]) == sorted(underlyings)
    assert (chains["fitted_expiries"] > 0).all() and chains["surface_arbitrage_free"].all()
    assert set(pd.read_parquet(summary["files"]["candidates"])["underlying"]) == set(underlyings)


def test_the_scan_job_scans_every_chain_of_a_vendor_file_and_writes_its_tables(ray_local, tmp_path, capsys,
                                                                               vxx_slice) -> None:
    code, summary = _run(tmp_path, _config(tmp_path, {"kind": "vendor_file", "path": vxx_slice}), capsys)
    assert code == 0 and summary["ok"], summary
    assert summary["chains"] == summary["chains_scanned"] == 2 and summary["failures"] == []
    assert summary["candidates_evaluated"] == sum(summary["candidates_by_structure"].values()) > 0
    assert len(summary["top"]) == 3
    assert [t["ev_per_risk"] for t in summary["top"]] == sorted((t["ev_per_risk"] for t in summary["top"]),
                                                                reverse=True)
    chains = pd.read_csv(summary["files"]["chains"])
    assert list(chains["quote_date"]) == ["2016-12-01", "2016-12-02"]
    assert chains["candidates_evaluated"].sum() == summary["candidates_evaluated"]
    assert (chains["fitted_expiries"] > 0).all()
    candidates = pd.read_csv(summary["files"]["candidates"])
    assert len(candidates) <= 2 * 7 * 5 and set(candidates["underlying"]) == {"VXX"}
    violations = pd.read_csv(summary["files"]["violations"]) if summary["violations"] else pd.DataFrame()
    assert len(violations) == summary["violations"] == chains["violations"].sum()
    if len(violations):
        assert (violations["size"] > 0.01).all()
        assert dict(violations["kind"].value_counts()) == summary["violations_by_kind"]


def test_a_chain_read_from_the_store_scans_like_the_same_chain_from_the_file(ray_local, tmp_path, capsys,
                                                                             vxx_slice) -> None:
    from amcp.options.chain_io import chains_from_vendor_frame, write_chain

    chains = chains_from_vendor_frame(pd.read_parquet(vxx_slice)).chains
    store = str(tmp_path / "store")
    write_chain(store, chains[("VXX", date(2016, 12, 2))])
    code, from_store = _run(tmp_path, _config(tmp_path, {"kind": "store", "store": {"url": store},
                                                         "underlyings": ["VXX"], "quote_dates": ["2016-12-02"]}),
                            capsys)
    assert code == 0 and from_store["chains_scanned"] == 1, from_store
    code, from_file = _run(tmp_path, _config(tmp_path, {"kind": "vendor_file", "path": vxx_slice,
                                                        "quote_dates": ["2016-12-02"]}), capsys)
    assert code == 0 and from_file["chains_scanned"] == 1
    assert from_store["candidates_by_structure"] == from_file["candidates_by_structure"]
    assert from_store["violations_by_kind"] == from_file["violations_by_kind"]


def test_a_chain_that_is_not_stored_fails_alone_with_its_reason(ray_local, tmp_path, capsys, vxx_slice) -> None:
    from amcp.options.chain_io import chains_from_vendor_frame, write_chain

    store = str(tmp_path / "store")
    write_chain(store, chains_from_vendor_frame(pd.read_parquet(vxx_slice)).chains[("VXX", date(2016, 12, 1))])
    config = _config(tmp_path, {"kind": "store", "store": {"url": store}, "underlyings": ["VXX"],
                                "quote_dates": ["2016-12-01", "2016-12-05"]})
    code, summary = _run(tmp_path, config, capsys)
    assert code == scan.EXIT_PARTIAL and not summary["ok"]
    assert summary["chains_scanned"] == 1
    assert [(f["quote_date"], "no option quotes stored" in f["reason"]) for f in summary["failures"]] == [
        ("2016-12-05", True)]


def test_a_bad_config_exits_2_naming_the_key(ray_local, tmp_path, capsys) -> None:
    config = _config(tmp_path, {"kind": "vendor_file", "path": str(tmp_path / "missing.parquet")})
    config["scanner"]["top_n"] = 5
    code, summary = _run(tmp_path, config, capsys)
    assert code == 2 and "top_n" in summary["error"]
    del config["scanner"]["top_n"]
    code, summary = _run(tmp_path, config, capsys)
    assert code == 2 and "not found" in summary["error"]
