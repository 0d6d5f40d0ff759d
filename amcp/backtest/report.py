"""Run reports: ``report.json`` for machines and a self-contained ``report.html`` for people.

An I/O edge: everything else in amcp computes, this writes. The HTML page has no external
assets: the equity and drawdown charts are PNGs (matplotlib, Agg backend) embedded as base64
data URIs, and the styles are inline.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import html
import io
import itertools
import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from amcp._typing import FloatArray, IntArray
from amcp.backtest.metrics import METRIC_NAMES, compute_metrics, drawdown_series
from amcp.errors import DataError

MAX_CURVE_POINTS = 2000
"""Most equity points kept in ``report.json``."""

MAX_FILLS_SHOWN = 200
"""Most recent fills listed in the report."""

_PERCENT_METRICS = {"total_return", "cagr", "volatility", "max_drawdown", "hit_rate", "exposure"}


def write_report(
    run_dir: Path,
    summary: dict[str, Any],
    ts_ns: IntArray,
    equity: FloatArray,
    fills: Sequence[Mapping[str, Any]],
    denials: Mapping[str, int],
    quality: dict[str, Any] | None = None,
    title: str = "amcp run",
) -> Path:
    """Write ``run_dir/report.json`` and ``run_dir/report.html``.

    Metrics are computed from the equity curve by :func:`~amcp.backtest.metrics.compute_metrics`
    (daily periods); a ``summary["metrics"]`` mapping, for instance with exposure, turnover and
    hit rate from the engine, overrides them key by key.

    ``report.json`` holds ``title``, ``generated_at``, ``summary``, ``metrics``,
    ``equity_curve`` (``ts_ns``, ISO ``time``, ``equity``, ``drawdown``; at most
    :data:`MAX_CURVE_POINTS` points, keeping each bucket's high and low), ``denials``,
    ``fills_count``, ``recent_fills`` (the last :data:`MAX_FILLS_SHOWN`) and ``quality``.
    Non-finite numbers are written as ``null``, Decimals as floats.

    Args:
        run_dir: the run folder; created if missing.
        summary: the run's summary (the job's one-line JSON), shown as a table.
        ts_ns: shape (T,), UTC nanoseconds of each equity point.
        equity: shape (T,), account equity.
        fills: fills as mappings (columns are the union of their keys, in first-seen order).
        denials: denied intents per reason code.
        quality: the data-quality report (``QualityReport.to_dict()``), or None.
        title: the page title.

    Returns:
        The path of ``report.html``.

    Raises:
        DataError: if ``ts_ns`` and ``equity`` differ in length or ``equity`` is invalid.
    """
    ts = np.asarray(ts_ns, dtype=np.int64)
    eq = np.asarray(equity, dtype=np.float64)
    if ts.shape != eq.shape or eq.ndim != 1:
        raise DataError(f"ts_ns has shape {ts.shape} but equity has {eq.shape}; they must match and be 1-D")
    metrics: dict[str, Any] = dict(compute_metrics(eq))
    given = summary.get("metrics")
    if isinstance(given, Mapping):
        metrics.update(given)
    drawdown = drawdown_series(eq)
    keep = downsample_indices(eq, MAX_CURVE_POINTS)
    recent = list(fills[-MAX_FILLS_SHOWN:]) if fills else []

    report = {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": {k: v for k, v in summary.items() if k != "metrics"},
        "metrics": metrics,
        "equity_curve": {
            "points": int(keep.size),
            "source_points": int(eq.size),
            "ts_ns": ts[keep],
            "time": [_iso(t) for t in ts[keep]],
            "equity": eq[keep],
            "drawdown": drawdown[keep],
        },
        "denials": dict(sorted(denials.items(), key=lambda kv: (-kv[1], kv[0]))),
        "fills_count": len(fills),
        "recent_fills": recent,
        "quality": quality,
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / "report.json", json.dumps(to_jsonable(report), indent=1, allow_nan=False))

    times = ts.astype("datetime64[ns]")
    equity_png = _line_chart(times, eq, "Equity", "{x:,.0f}", "#1f5fa8", fill=False)
    drawdown_png = _line_chart(
        times, -100.0 * drawdown, "Drawdown (% below peak)", "{x:.0f}%", "#b8322a", fill=True
    )
    page = _html_page(title, report, metrics, equity_png, drawdown_png, recent, len(fills))
    html_path = run_dir / "report.html"
    _write_atomic(html_path, page)
    return html_path


def downsample_indices(values: FloatArray, max_points: int) -> np.ndarray:
    """Return sorted indices of at most ``max_points`` points that keep the curve's shape.

    The series is cut into ``max_points // 2`` buckets and each bucket keeps its lowest and
    highest point, so peaks and troughs (hence drawdowns) survive; the first and last points are
    always kept.
    """
    n = int(np.asarray(values).size)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    picked = [0, n - 1]
    v = np.asarray(values, dtype=np.float64)
    for lo, hi in itertools.pairwise(edges):
        if hi > lo:
            chunk = v[lo:hi]
            picked.append(lo + int(np.argmin(chunk)))
            picked.append(lo + int(np.argmax(chunk)))
    return np.unique(np.asarray(picked, dtype=np.int64))


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types: non-finite floats -> None, Decimal -> float,
    numpy -> Python, dates -> ISO text, enums -> their value, dataclasses -> dicts."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return to_jsonable(float(value))
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    return str(value)


# --------------------------------------------------------------------------- charts


def _line_chart(
    times: np.ndarray, values: FloatArray, title: str, y_format: str, color: str, fill: bool
) -> bytes:
    """Render one line chart as PNG bytes (Figure + Agg canvas: no pyplot global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    figure = Figure(figsize=(10, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if times.size:
        axes.plot(times, values, color=color, linewidth=1.2)
        if fill:
            axes.fill_between(times, values, 0.0, color=color, alpha=0.25, linewidth=0)
    axes.set_title(title, loc="left", fontsize=11)
    axes.yaxis.set_major_formatter(StrMethodFormatter(y_format))
    axes.grid(True, alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d232a;max-width:1100px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #dde2e8}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #dde2e8;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;display:block;margin:8px 0} .muted{color:#66707a;font-size:12px}
.scroll{max-height:520px;overflow:auto}
"""


def _html_page(
    title: str,
    report: Mapping[str, Any],
    metrics: Mapping[str, Any],
    equity_png: bytes,
    drawdown_png: bytes,
    recent: Sequence[Mapping[str, Any]],
    fills_count: int,
) -> str:
    esc = html.escape
    names = [k for k in METRIC_NAMES if k in metrics] + [k for k in metrics if k not in METRIC_NAMES]
    metric_rows = [(k, _format_metric(k, metrics[k])) for k in names]
    summary_rows = [(str(k), _format_value(v)) for k, v in report["summary"].items()]
    denials = report["denials"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="muted">generated {esc(report["generated_at"])}</p>',
        "<h2>Summary</h2>",
        _table(["key", "value"], summary_rows) if summary_rows else "<p>No summary.</p>",
        "<h2>Metrics</h2>",
        _table(["metric", "value"], metric_rows),
        "<h2>Equity</h2>",
        _img(equity_png, "equity curve"),
        "<h2>Drawdown</h2>",
        _img(drawdown_png, "drawdown"),
        "<h2>Denials by reason</h2>",
        _denials_section(denials),
        "<h2>Data quality</h2>",
        _quality_section(report.get("quality")),
        f"<h2>Fills (last {min(fills_count, MAX_FILLS_SHOWN)} of {fills_count:,})</h2>",
        _fills_table(recent) if recent else "<p>No fills.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _denials_section(denials: Mapping[str, int]) -> str:
    if not denials:
        return "<p>No intents were denied.</p>"
    rows = [(str(reason), f"{count:,}") for reason, count in denials.items()]
    total = sum(denials.values())
    return _table(["reason", "count"], rows) + f'<p class="muted">{total:,} denied in all</p>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{esc(cell)}</td>' if _looks_numeric(cell) else f"<td>{esc(cell)}</td>"
            for cell in row
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _quality_section(quality: Mapping[str, Any] | None) -> str:
    if not quality:
        return "<p>No data-quality report.</p>"
    esc = html.escape
    parts = []
    if quality.get("summary"):
        parts.append(f"<p>{esc(str(quality['summary']))}</p>")
    counts = quality.get("counts")
    actions = quality.get("actions") or {}
    if isinstance(counts, Mapping):
        count_rows = [(str(k), f"{v:,}", str(actions.get(k, ""))) for k, v in counts.items()]
        parts.append(_table(["defect", "rows", "action"], count_rows))
    by_symbol = quality.get("by_symbol")
    if isinstance(by_symbol, Mapping) and by_symbol:
        rows = [
            (str(s), ", ".join(f"{k} {n}" for k, n in c.items())) for s, c in list(by_symbol.items())[:50]
        ]
        parts.append("<p>By symbol:</p>" + _table(["symbol", "defects"], rows))
    examples = quality.get("examples")
    if isinstance(examples, Sequence) and examples:
        parts.append("<p>Examples (values as found):</p>" + _records_table(examples))
    rest = {
        k: v for k, v in quality.items() if k not in {"summary", "counts", "actions", "by_symbol", "examples"}
    }
    if rest:
        parts.append(_table(["key", "value"], [(str(k), _format_value(v)) for k, v in rest.items()]))
    return "\n".join(parts)


def _fills_table(fills: Sequence[Mapping[str, Any]]) -> str:
    return f'<div class="scroll">{_records_table(fills)}</div>'


def _records_table(records: Sequence[Mapping[Any, Any]]) -> str:
    columns: dict[Any, None] = {}
    for record in records:
        for key in record:
            columns.setdefault(key, None)
    rows = [[_format_value(record.get(key, "")) for key in columns] for record in records]
    return _table([str(key) for key in columns], rows)


def _format_metric(name: str, value: Any) -> str:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):
            return "n/a"
        if name in _PERCENT_METRICS:
            return f"{number * 100:.2f}%"
        if name in {"periods", "trades"}:
            return f"{number:,.0f}"
        if name in {"start_equity", "end_equity"}:
            return f"{number:,.2f}"
        return f"{number:.3f}"
    return _format_value(value)


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}" if abs(int(value)) < 10**15 else str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if not math.isfinite(number):
            return "n/a"
        if number.is_integer() and abs(number) < 1e15:
            return f"{int(number):,}"
        return f"{number:,.2f}" if abs(number) >= 1e5 else f"{number:.6g}"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(to_jsonable(value), separators=(", ", ": "))
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(to_jsonable(value)) if not isinstance(value, str) else value


def _looks_numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace("%", "").strip()
    try:
        float(stripped)
    except ValueError:
        return False
    return True


def _iso(ts_ns: int) -> str:
    return str(np.datetime64(int(ts_ns), "ns").astype("datetime64[s]")) + "Z"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
