"""Tests for amcp.backtest.report: report.json and a self-contained report.html."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from amcp.backtest.report import MAX_CURVE_POINTS, downsample_indices, to_jsonable, write_report
from amcp.errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DAY_NS = 86_400 * 10**9


def _curve(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts_ns = 1_262_638_800 * 10**9 + np.arange(n, dtype=np.int64) * DAY_NS
    equity = 1e6 * np.cumprod(1 + rng.normal(0.0003, 0.01, n))
    return ts_ns, equity


def _fills(n: int) -> list[dict]:
    return [
        {
            "ts_ns": i,
            "symbol": "AAPL" if i % 2 else "MSFT",
            "side": "buy",
            "qty": Decimal(10),
            "price": 100.0 + i,
        }
        for i in range(n)
    ]


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Path]:
    ts_ns, equity = _curve(5000)
    html_path = write_report(
        tmp_path / "run-1",
        summary={"mode": "paper", "symbols": 35, "final_equity": float(equity[-1]), "note": "<b>&</b>"},
        ts_ns=ts_ns,
        equity=equity,
        fills=_fills(250),
        denials={"PRICE_COLLAR": 3, "MAX_NOTIONAL": 7},
        quality={
            "summary": "data quality [repair] x: 10 rows in, 10 out; ohlc_inconsistent 1 (repaired)",
            "counts": {"ohlc_inconsistent": 1, "bad_price": 0},
            "actions": {"ohlc_inconsistent": "repaired", "bad_price": "dropped"},
            "by_symbol": {"EIX": {"ohlc_inconsistent": 1}},
            "examples": [{"kind": "ohlc_inconsistent", "symbol": "EIX", "date": "2010-07-12", "high": 2.7}],
        },
        title="sample run",
    )
    return html_path, tmp_path / "run-1" / "report.json"


def test_both_files_are_written_and_the_html_path_is_returned(written: tuple[Path, Path]) -> None:
    html_path, json_path = written

    assert html_path == json_path.parent / "report.html"
    assert html_path.is_file() and json_path.is_file()


def test_json_has_summary_metrics_curve_denials_and_quality(written: tuple[Path, Path]) -> None:
    data = json.loads(written[1].read_text())

    assert {"title", "summary", "metrics", "equity_curve", "denials", "quality", "fills_count"} <= set(data)
    assert data["summary"]["mode"] == "paper"
    assert {"sharpe", "max_drawdown", "cagr", "total_return"} <= set(data["metrics"])
    curve = data["equity_curve"]
    assert curve["source_points"] == 5000
    assert 2 <= curve["points"] == len(curve["equity"]) == len(curve["ts_ns"]) == len(curve["time"]) <= 2000
    assert curve["ts_ns"] == sorted(curve["ts_ns"])
    assert curve["time"][0] == "2010-01-04T21:00:00Z"
    assert data["denials"] == {"MAX_NOTIONAL": 7, "PRICE_COLLAR": 3}
    assert data["quality"]["counts"]["ohlc_inconsistent"] == 1
    assert data["fills_count"] == 250 and len(data["recent_fills"]) == 200
    assert data["recent_fills"][0]["qty"] == 10.0  # Decimal written as a number


def test_html_embeds_two_decodable_png_charts(written: tuple[Path, Path]) -> None:
    page = written[0].read_text()

    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    for encoded in images:
        png = base64.b64decode(encoded, validate=True)
        assert png[:8] == PNG_SIGNATURE
        assert len(png) > 1000


def test_html_is_self_contained_and_has_the_sections(written: tuple[Path, Path]) -> None:
    page = written[0].read_text()

    assert not re.search(r"""(src|href)=["']https?:""", page)
    assert "<script" not in page and "<link" not in page
    for section in ("Summary", "Metrics", "Equity", "Drawdown", "Denials by reason", "Data quality", "Fills"):
        assert f"<h2>{section}" in page
    assert "Fills (last 200 of 250)" in page
    assert page.count("<tr><td") >= 200
    assert "MAX_NOTIONAL" in page and "EIX" in page
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page  # values are escaped


def test_summary_metrics_override_computed_ones(tmp_path: Path) -> None:
    ts_ns, equity = _curve(30)

    write_report(tmp_path, {"metrics": {"hit_rate": 0.6, "turnover": 4.2}}, ts_ns, equity, [], {})

    data = json.loads((tmp_path / "report.json").read_text())
    assert data["metrics"]["hit_rate"] == 0.6 and data["metrics"]["turnover"] == 4.2
    assert "sharpe" in data["metrics"] and "metrics" not in data["summary"]


def test_report_without_fills_denials_or_quality(tmp_path: Path) -> None:
    ts_ns, equity = _curve(3)

    html_path = write_report(tmp_path / "r", {}, ts_ns, equity, [], {}, None)

    page = html_path.read_text()
    assert "No fills." in page and "No intents were denied." in page and "No data-quality report." in page
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["quality"] is None and data["equity_curve"]["points"] == 3


def test_mismatched_lengths_are_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ts_ns has shape"):
        write_report(tmp_path, {}, np.arange(3, dtype=np.int64), np.ones(4), [], {})


def test_downsampling_keeps_ends_and_extremes() -> None:
    values = np.sin(np.linspace(0, 40, 100_000))
    values[54_321] = -5.0

    keep = downsample_indices(values, MAX_CURVE_POINTS)

    assert keep.size <= MAX_CURVE_POINTS
    assert keep[0] == 0 and keep[-1] == values.size - 1
    assert 54_321 in keep
    assert (np.diff(keep) > 0).all()
    np.testing.assert_array_equal(downsample_indices(values[:10], MAX_CURVE_POINTS), np.arange(10))


def test_to_jsonable_makes_strict_json() -> None:
    value = {
        "a": float("nan"),
        "b": np.float64(1.5),
        "c": Decimal("2.25"),
        "d": np.arange(2),
        3: (np.int64(4),),
    }

    out = to_jsonable(value)

    assert json.loads(json.dumps(out, allow_nan=False)) == {
        "a": None,
        "b": 1.5,
        "c": 2.25,
        "d": [0, 1],
        "3": [4],
    }
