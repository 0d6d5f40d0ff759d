"""Jobs meet bad input with a clear error (exit 2, no traceback) or a reported repair."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines import backtest

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, data_path: Path | str, **patch: object) -> Path:
    config = yaml.safe_load((ROOT / "configs/backtest.yaml").read_text())
    config["data"]["path"] = str(data_path)
    config["data"]["start"] = None
    config["data"]["end"] = None
    config["run"]["output_dir"] = str(tmp_path / "runs")
    for key, value in patch.items():
        section, field = key.split("__")
        config[section][field] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_job(config: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict, str]:
    code = backtest.main(["--config", str(config), "--quiet", *extra])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err


def bars(rows: int = 80, symbols: tuple[str, ...] = ("AAA", "BBB", "CCC", "DDD", "EEE", "FFF")) -> pd.DataFrame:
    dates = pd.bdate_range("2015-01-02", periods=rows).date
    frames = []
    for k, symbol in enumerate(symbols):
        close = [50.0 + k + 0.1 * i for i in range(rows)]
        frames.append(pd.DataFrame({"symbol": symbol, "date": dates, "open": close, "high": [c + 1 for c in close],
                                    "low": [c - 1 for c in close], "close": close, "volume": 1_000_000}))
    return pd.concat(frames, ignore_index=True)


def test_bad_config_value_exits_2_naming_key_and_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ROOT / "data/sample/daily_bars.parquet", risk__max_order_notional_usd=-1)
    code, summary, err = run_job(config, capsys)
    assert code == 2 and summary["ok"] is False
    assert "risk.max_order_notional_usd" in err and "(got -1)" in err
    assert "Traceback" not in err


def test_empty_data_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "empty.parquet"
    bars().iloc[:0].to_parquet(data)
    code, summary, err = run_job(write_config(tmp_path, data), capsys)
    assert code == 2 and "no rows" in err and str(data) in err


def test_zero_byte_and_corrupt_files_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zero = tmp_path / "zero.parquet"
    zero.write_bytes(b"")
    code, _, err = run_job(write_config(tmp_path, zero), capsys)
    assert code == 2 and "empty" in err
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    code, _, err = run_job(write_config(tmp_path, corrupt), capsys)
    assert code == 2 and str(corrupt) in err and "Traceback" not in err


def test_missing_columns_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "nocols.parquet"
    bars().drop(columns=["high", "volume"]).to_parquet(data)
    code, _, err = run_job(write_config(tmp_path, data), capsys)
    assert code == 2 and "high" in err and "volume" in err


def test_real_defects_are_repaired_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = bars()
    frame.loc[5, ["high", "low"]] = [40.0, 60.0]  # high < low, as in the shared data
    frame.loc[9, "close"] = -1.0  # price <= 0, as in the shared data
    data = tmp_path / "defects.parquet"
    frame.to_parquet(data)
    code, summary, err = run_job(write_config(tmp_path, data), capsys)
    assert code == 0, err
    assert summary["data_repairs"]["high_below_low"] == 1 and summary["data_repairs"]["bad_price"] == 1
    assert summary["cycles"] == 80


def test_strict_policy_stops_on_defects_with_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = bars()
    frame.loc[5, ["high", "low"]] = [40.0, 60.0]
    data = tmp_path / "defects.parquet"
    frame.to_parquet(data)
    code, _, err = run_job(write_config(tmp_path, data, data__quality_policy="strict"), capsys)
    assert code == 2 and "data quality check failed" in err
    assert "AAA 2015-01-09 o=50.5 h=40 l=60" in err


def test_trade_job_bad_config_fails_before_ray_without_traceback(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs/paper.yaml").read_text())
    config["ray"]["bogus"] = 1
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "pipelines.trade", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "ray.bogus: Extra inputs are not permitted" in done.stderr and "Traceback" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["ok"] is False


@pytest.mark.parametrize("bad", ["0", "-5", "ten"])
def test_bad_max_cycles_is_refused_not_ignored(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        backtest.main(["--config", str(ROOT / "configs/backtest.yaml"), "--max-cycles", bad])
    assert info.value.code == 2
    assert "--max-cycles" in capsys.readouterr().err
