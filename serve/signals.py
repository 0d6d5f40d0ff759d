"""Ray Serve deployment: live scores of the production model, computed from the latest bars.

Run (starts a local Ray unless ``ray.address`` or RAY_ADDRESS names a cluster, prints one JSON
line when it serves, then serves until interrupted)::

    .venv/bin/python -m serve.signals --config configs/serve_signals.yaml

API (JSON or Arrow; any bad input is a 400 whose ``error`` says what is wrong, never a 500):

``POST /v1/signals`` with ``{"as_of": "2017-01-03", "bars": {"AAPL": [{"t": "2016-10-03", "o": ...,
"h": ..., "l": ..., "c": ..., "v": ...}, ...], ...}, "market": [{"t": ..., "c": ...}, ...]}``
answers ``{"as_of", "version", "scores": {symbol: score}}``. Each symbol's bars are daily, oldest
first, strictly increasing ISO dates ending exactly at ``as_of``; prices finite and positive,
volume finite and non-negative; at least ``history_bars`` of them (``GET /v1/model``: the
longest window of the model's features plus ``lookback - 1``). ``market`` (optional) is the
market proxy's close the features' beta/correlation terms use (absent: those features are NaN,
which the model imputes). Features are computed from the bars sent, so recursive ones (EMAs)
match training only with enough history: send more than ``history_bars`` where they matter.
Cross-sectional features are taken across the request's symbols. A score is null where the
model returns a non-finite value.

Each symbol's bars may also be sent as columns, ``{"t": [...], "o": [...], "h": [...], "l": [...],
"c": [...], "v": [...]}`` (``market`` likewise ``{"t": [...], "c": [...]}``), which decodes about three
times faster. Symbols that all have a bar on the same dates may go as one panel instead of
``bars``: ``{"as_of", "panel": {"symbols": [N names], "t": [T dates], "o": [T rows of N numbers],
"h", "l", "c", "v"}, "market"}`` (errors name ``panel.c[i][j] (SYMBOL)``). Either may go as an
Apache Arrow IPC stream with ``Content-Type: application/vnd.apache.arrow.stream`` (layouts in
:mod:`amcp.models.wire`), about ten times smaller than JSON objects and decoded without a Python
object per value — the fast path for large requests; a panel decodes straight into the matrices
its features are computed from (``benchmarks/serve_signals.py`` measures the paths).

Every answer carries the replica's own time, in milliseconds: the ``Server-Timing`` header of
``POST /v1/signals`` (``parse``, ``queue`` — waiting for and in the batch queue, ``score`` — the
batch's features and predict, ``total``), and ``timing_ms`` (those plus ``batch``, the batch's
size) in a handle caller's answer. What a client measures beyond ``total`` is transport: HTTP,
the Serve proxy and the actor call.

``GET /v1/model`` answers the serving version and what a request needs.

Ingress: by default requests go through Serve's HTTP proxy (``http_port``). With ``ingress:
direct`` each replica also serves the same API itself from ``direct_port`` up (Ray Serve's
direct ingress: no proxy hop; on this project's 2-core machine a no-op round trip falls from
3.3–4.3 ms to 0.7–0.8 ms, measured by ``benchmarks/serve_signals.py``). Ray reads the switch when it
starts (:func:`direct_ingress_env`): a local Ray started here gets it; a cluster must be started
with it, else the job warns and the proxy alone serves.

Scoring: requests are parsed and checked in the HTTP handler, then batched with ``@serve.batch``
(``max_batch_size``, ``batch_wait_timeout_s``); a batch's feature rows go through one
``predict`` call, on the replica's event loop (``score_in_thread: true`` moves it to a worker
thread, keeping the loop free to read requests meanwhile at some latency cost). Features are
computed per panel: the symbols that share their dates are stacked (:class:`PanelInputs`) and
each feature runs once for all of them, not once per symbol (3–4× faster for 50 symbols × 140
bars; a panel body, or an Arrow body of one calendar, parses straight into one panel), with each
symbol's values equal to its own computation.

Version switches: every ``poll_interval_s`` (and on
:meth:`SignalDeployment.reload`) a replica reads the production pointer (or keeps its pinned
version); a new version is loaded and hash-checked first, then swapped in with one assignment.
A batch takes the model once at its start, so in-flight batches finish on the old model and
no request is dropped; each replica switches once, so a client talking to one replica sees the
version change exactly once. With several replicas, each switches on its own poll (within
``poll_interval_s`` of each other). A version that fails to load is logged and counted; the
replica keeps serving the old one and retries at the next poll.
"""

import argparse
import asyncio
import importlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from amcp._typing import FloatArray
from amcp.config import ServeSignalsConfig, load_config  # the service's config model lives in amcp.config
from amcp.errors import AmcpError, DataError
from amcp.features.registry import FeatureRegistry, PanelInputs, SeriesInputs
from amcp.models.base import ModelError, SignalModel
from amcp.models.registry import ModelRegistry, ModelVersion
from amcp.models.wire import ARROW_CONTENT_TYPE, DecodedPanel, WireError, decode_table

__all__ = [
    "FeaturePlan",
    "RequestError",
    "ScoreRequest",
    "ServeSignalsConfig",
    "SignalDeployment",
    "answers_directly",
    "build_app",
    "direct_ingress_env",
    "parse_arrow_request",
    "parse_request",
    "score_requests",
]

logger = logging.getLogger("ray.serve")

_BAR_KEYS = ("t", "o", "h", "l", "c", "v")


class RequestError(ModelError):
    """A scoring request is malformed or cannot be answered from what it carries (HTTP 400)."""


@dataclass(frozen=True, eq=False)
class ScoreRequest:
    """A parsed, checked ``POST /v1/signals`` body: one :class:`SeriesInputs` per symbol, or (when
    every symbol has the same dates) one :class:`PanelInputs` of them all, column ``j`` being
    ``symbols[j]`` — what an Arrow body of one calendar parses into, without a per-symbol object."""

    as_of: date
    symbols: tuple[str, ...]
    inputs: tuple[SeriesInputs, ...] = ()
    panel: PanelInputs | None = None

    def __post_init__(self) -> None:
        has_panel = self.panel is not None
        count = self.panel.width if self.panel is not None else len(self.inputs)
        if has_panel == bool(self.inputs) or count != len(self.symbols):
            raise ValueError("a ScoreRequest holds either one inputs per symbol or a panel of one column per symbol")

    def series(self) -> tuple[SeriesInputs, ...]:
        """Each symbol's inputs (views of the panel's columns when the request holds a panel)."""
        if self.panel is None:
            return self.inputs
        p = self.panel
        return tuple(SeriesInputs.from_checked_arrays(
            p.dates, p.open[:, j], p.high[:, j], p.low[:, j], p.close[:, j], p.volume[:, j], p.vwap[:, j],
            None if p.market is None else p.market[:, j]) for j in range(p.width))

    def lengths(self) -> list[int]:
        """How many bars each symbol has."""
        return [len(self.panel)] * self.panel.width if self.panel is not None else [len(x) for x in self.inputs]


# --------------------------------------------------------------------------- parsing


def parse_request(body: Any, *, max_symbols: int, max_bars: int) -> ScoreRequest:
    """Check a JSON request body and build each symbol's inputs (see the module docstring for the rules).

    A symbol's bars are either a list of bar objects (``[{"t", "o", "h", "l", "c", "v"}, ...]``)
    or columns (``{"t": [...], "o": [...], ...}``, equal lengths) — the columns decode about
    three times faster. ``market`` likewise: a list of ``{"t", "c"}`` or ``{"t": [...], "c": [...]}``.

    Raises:
        RequestError: naming the first problem found (the symbol, bar index and field).
    """
    if not isinstance(body, Mapping):
        raise RequestError(f"the body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"as_of", "bars", "panel", "market"})
    if unknown:
        raise RequestError(f"unknown keys {unknown}; expected as_of, bars (or panel) and optionally market")
    as_of = _as_of(body.get("as_of"))
    if "panel" in body:
        if "bars" in body:
            raise RequestError("give either bars (per symbol) or panel (one calendar), not both")
        return _parse_panel(body["panel"], as_of, _parse_market(body.get("market"), max_bars), max_symbols,
                            max_bars)
    bars = body.get("bars")
    if not isinstance(bars, Mapping) or not bars:
        raise RequestError("bars must be a non-empty object of symbol -> bars (a list of bars or columns)")
    if len(bars) > max_symbols:
        raise RequestError(f"{len(bars)} symbols asked for, at most {max_symbols} per request")
    market = _parse_market(body.get("market"), max_bars)
    day = np.datetime64(as_of, "D")
    symbols, inputs = [], []
    for symbol, rows in bars.items():
        _check_symbol(symbol)
        dates, columns = _columns(f"bars.{symbol}", rows, _BAR_KEYS, max_bars)
        symbols.append(symbol)
        inputs.append(_checked_inputs(f"bars.{symbol}", dates, columns, _aligned_market(market, dates), day))
    return ScoreRequest(as_of, tuple(symbols), tuple(inputs))


def parse_arrow_request(payload: bytes, *, max_symbols: int, max_bars: int) -> ScoreRequest:
    """Check an Arrow request body (:mod:`amcp.models.wire`) and build each symbol's inputs.

    The same rules as :func:`parse_request`, checked over whole columns at once; ``market`` is
    a per-row column (NaN: unknown).

    Raises:
        RequestError: naming the first problem found (symbol, bar index and field).
    """
    try:
        table = decode_table(payload, max_symbols=max_symbols, max_rows=max_symbols * max_bars)
    except WireError as exc:
        raise RequestError(str(exc)) from None
    if isinstance(table, DecodedPanel):
        return _panel_request(_as_of(table.as_of), table.symbols, table.dates, table.columns, table.market,
                              max_bars)
    as_of = _as_of(table.as_of)
    day = np.datetime64(as_of, "D")
    starts, ends = table.starts, table.ends

    def where(row: int) -> str:
        k = int(np.searchsorted(starts, row, side="right")) - 1
        return f"bars.{table.symbols[k]}[{row - int(starts[k])}]"

    for symbol in table.symbols:
        _check_symbol(symbol)
    long = np.flatnonzero(ends - starts > max_bars)
    if long.size:
        k = int(long[0])
        raise RequestError(f"bars.{table.symbols[k]} has {int(ends[k] - starts[k])} bars, "
                           f"at most {max_bars} are accepted")
    dates = table.dates
    not_after = np.flatnonzero(dates[1:] <= dates[:-1]) + 1
    not_after = not_after[~np.isin(not_after, starts)]
    if not_after.size:
        row = int(not_after[0])
        raise RequestError(f"{where(row)}.t is {dates[row]}, not after {dates[row - 1]}: "
                           f"bars must be oldest first with strictly increasing dates")
    late = np.flatnonzero(dates[ends - 1] != day)
    if late.size:
        k = int(late[0])
        raise RequestError(f"bars.{table.symbols[k]}: the last bar is {dates[ends[k] - 1]}, not as_of {day}; "
                           f"send bars up to and including as_of (and none after)")
    for name, values in zip(("o", "h", "l", "c"), table.columns[:4]):
        bad = np.flatnonzero(~(values > 0) | ~np.isfinite(values))
        if bad.size:
            raise RequestError(f"{where(int(bad[0]))}.{name} is {float(values[bad[0]])}: "
                               f"prices must be finite and > 0")
    volume = table.columns[4]
    bad = np.flatnonzero(~(volume >= 0) | ~np.isfinite(volume))
    if bad.size:
        raise RequestError(f"{where(int(bad[0]))}.v is {float(volume[bad[0]])}: volume must be finite and >= 0")
    market = table.market
    if market is not None:
        bad = np.flatnonzero(~(market > 0) & ~np.isnan(market) | np.isinf(market))
        if bad.size:
            raise RequestError(f"{where(int(bad[0]))}.market is {float(market[bad[0]])}: "
                               f"closes must be finite and > 0 (or null)")
    # Checked above over whole columns (dates increasing within each symbol, prices and volume);
    # the Arrow columns are contiguous float64 and the dates datetime64[D], so no per-symbol re-check.
    count = int(ends[0] - starts[0])
    if (ends - starts == count).all() and (dates.reshape(-1, count) == dates[:count]).all():
        # One calendar: every column is a (symbols × bars) block; its transpose is the panel, copied
        # into row-major (dates × symbols) order once here rather than by every kernel it meets.
        def block(values: FloatArray) -> FloatArray:
            return np.ascontiguousarray(values.reshape(-1, count).T)

        panel = PanelInputs.from_checked_arrays(
            dates[:count], *(block(values) for values in table.columns), np.full((count, len(starts)), np.nan),
            None if market is None else block(market))
        return ScoreRequest(as_of, table.symbols, panel=panel)
    no_vwap = np.full(dates.size, np.nan)
    inputs = tuple(SeriesInputs.from_checked_arrays(bars.dates, *bars.columns, no_vwap[a:b], bars.market)
                   for bars, a, b in zip(table.symbol_bars(), starts.tolist(), ends.tolist()))
    return ScoreRequest(as_of, table.symbols, inputs)


def _parse_panel(panel: Any, as_of: date, market: tuple[np.ndarray, FloatArray] | None, max_symbols: int,
                 max_bars: int) -> ScoreRequest:
    """A JSON panel: ``{"symbols": [N names], "t": [T dates], "o": [T rows of N numbers], ...}``."""
    keys = ("symbols", *_BAR_KEYS)
    if not isinstance(panel, Mapping) or set(panel) != set(keys):
        got = sorted(panel) if isinstance(panel, Mapping) else type(panel).__name__
        raise RequestError(f"panel must be an object with exactly the keys {list(keys)}, got {got}")
    symbols = panel["symbols"]
    if not isinstance(symbols, list) or not symbols:
        raise RequestError("panel.symbols must be a non-empty list of symbol names")
    if len(symbols) > max_symbols:
        raise RequestError(f"{len(symbols)} symbols asked for, at most {max_symbols} per request")
    for symbol in symbols:  # before they name a bad value's column
        _check_symbol(symbol)
    texts = panel["t"]
    if not isinstance(texts, list) or not texts:
        raise RequestError("panel.t must be a non-empty list of ISO dates")
    if len(texts) > max_bars:
        raise RequestError(f"panel has {len(texts)} dates, at most {max_bars} bars per symbol are accepted")
    dates = _dates("panel", texts)
    columns = []
    for key in _BAR_KEYS[1:]:
        rows = panel[key]
        if not isinstance(rows, list) or len(rows) != len(texts) or not all(
                isinstance(row, list) and len(row) == len(symbols) for row in rows):
            raise RequestError(f"panel.{key} must be a list of {len(texts)} rows (one per date in panel.t) of "
                               f"{len(symbols)} numbers (one per symbol)")
        for i, row in enumerate(rows):
            if not all(type(value) in (int, float) for value in row):
                j = next(j for j, value in enumerate(row) if type(value) not in (int, float))
                raise RequestError(f"panel.{key}[{i}][{j}] ({symbols[j]}) must be a number, got {row[j]!r}")
        columns.append(np.array(rows, dtype=np.float64))
    return _panel_request(as_of, tuple(symbols), dates, tuple(columns), _aligned_market(market, dates), max_bars,
                          checked_dates=True)


def _panel_request(as_of: date, symbols: tuple[str, ...], dates: np.ndarray, columns: Sequence[FloatArray],
                   market: FloatArray | None, max_bars: int, *, checked_dates: bool = False) -> ScoreRequest:
    """Check a panel body's values (the rules of :func:`parse_request`, over ``(T, N)`` matrices at
    once) and build its request: one :class:`PanelInputs`, no per-symbol object."""
    for symbol in symbols:
        _check_symbol(symbol)
    if len(set(symbols)) != len(symbols):
        raise RequestError(f"symbol {next(s for s in symbols if symbols.count(s) > 1)!r} appears twice in the panel")
    if dates.size > max_bars:
        raise RequestError(f"panel has {dates.size} dates, at most {max_bars} bars per symbol are accepted")
    if not checked_dates:
        _check_dates("panel", dates)
    day = np.datetime64(as_of, "D")
    if dates[-1] != day:
        raise RequestError(f"panel: the last date is {dates[-1]}, not as_of {day}; "
                           f"send bars up to and including as_of (and none after)")
    for name, values in zip(_BAR_KEYS[1:], columns):
        bad = np.flatnonzero((~(values > 0) | ~np.isfinite(values)) if name != "v" else
                             (~(values >= 0) | ~np.isfinite(values)))
        if bad.size:
            i, j = divmod(int(bad[0]), len(symbols))
            rule = "volume must be finite and >= 0" if name == "v" else "prices must be finite and > 0"
            raise RequestError(f"panel.{name}[{i}][{j}] ({symbols[j]}) is {float(values[i, j])}: {rule}")
    if market is not None:
        bad = np.flatnonzero(~(market > 0) & ~np.isnan(market) | np.isinf(market))
        if bad.size:
            raise RequestError(f"market on {dates[bad[0]]} is {float(market[bad[0]])}: "
                               f"closes must be finite and > 0 (or null)")
    shape = (dates.size, len(symbols))
    # Own, writable, row-major copies: an Arrow body's columns are read-only views of the body (and
    # the feature kernels are compiled for writable arrays).
    panel = PanelInputs.from_checked_arrays(
        dates, *(np.array(values, dtype=np.float64, order="C") for values in columns), np.full(shape, np.nan),
        None if market is None else np.ascontiguousarray(np.broadcast_to(market[:, None], shape)))
    return ScoreRequest(as_of, symbols, panel=panel)


def _as_of(text: Any) -> date:
    try:
        as_of = date.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        as_of = None
    if as_of is None:
        raise RequestError(f"as_of must be an ISO date (YYYY-MM-DD), got {text!r}")
    return as_of


def _check_symbol(symbol: Any) -> None:
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise RequestError(f"symbol names must be strings of 1-32 characters, got {symbol!r}")


def _checked_inputs(where: str, dates: np.ndarray, columns: Sequence[FloatArray], market: FloatArray | None,
                    day: np.datetime64) -> SeriesInputs:
    """One symbol's inputs once its prices, volume and last date are checked."""
    if dates[-1] != day:
        raise RequestError(f"{where}: the last bar is {dates[-1]}, not as_of {day}; "
                           f"send bars up to and including as_of (and none after)")
    o, h, l, c, v = columns
    for name, values in (("o", o), ("h", h), ("l", l), ("c", c)):
        bad = np.flatnonzero(~(values > 0) | ~np.isfinite(values))  # NaN fails the first test
        if bad.size:
            raise RequestError(f"{where}[{bad[0]}].{name} is {float(values[bad[0]])}: "
                               f"prices must be finite and > 0")
    bad = np.flatnonzero(~(v >= 0) | ~np.isfinite(v))
    if bad.size:
        raise RequestError(f"{where}[{bad[0]}].v is {float(v[bad[0]])}: volume must be finite and >= 0")
    return SeriesInputs(dates, o, h, l, c, v, np.full(dates.size, np.nan), market)


def _aligned_market(market: tuple[np.ndarray, FloatArray] | None, dates: np.ndarray) -> FloatArray | None:
    """The market's close on each of ``dates`` (NaN where it has none), or None without a market."""
    if market is None:
        return None
    market_dates, market_close = market
    at = np.minimum(np.searchsorted(market_dates, dates), market_dates.size - 1)
    return np.where(market_dates[at] == dates, market_close[at], np.nan)


def _parse_market(rows: Any, max_bars: int) -> tuple[np.ndarray, FloatArray] | None:
    if rows is None:
        return None
    dates, (close,) = _columns("market", rows, ("t", "c"), max_bars)
    bad = np.flatnonzero(~(close > 0) | ~np.isfinite(close))
    if bad.size:
        raise RequestError(f"market[{bad[0]}].c is {float(close[bad[0]])}: closes must be finite and > 0")
    return dates, close


def _columns(
    where: str, rows: Any, keys: Sequence[str], max_bars: int
) -> tuple[np.ndarray, list[FloatArray]]:
    """Dates and float columns of a list of bar objects or of columns, with their shape and types checked."""
    if isinstance(rows, Mapping):
        return _from_columns(where, rows, keys, max_bars)
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"{where} must be a non-empty list of bars or an object of columns")
    if len(rows) > max_bars:
        raise RequestError(f"{where} has {len(rows)} bars, at most {max_bars} are accepted")
    try:
        table = [[row[key] for key in keys] for row in rows]
    except (KeyError, TypeError):
        index = next(i for i, row in enumerate(rows) if not isinstance(row, Mapping) or set(keys) - set(row))
        row = rows[index]
        detail = (f"is missing {sorted(set(keys) - set(row))}" if isinstance(row, Mapping)
                  else f"is a {type(row).__name__}, not an object")
        raise RequestError(f"{where}[{index}] {detail}; each bar needs {list(keys)}") from None
    dates = _dates(where, [row[0] for row in table])
    columns = [_numbers(where, key, [row[j] for row in table]) for j, key in enumerate(keys[1:], start=1)]
    return dates, columns


def _from_columns(
    where: str, columns: Mapping[str, Any], keys: Sequence[str], max_bars: int
) -> tuple[np.ndarray, list[FloatArray]]:
    wrong = sorted(set(keys) ^ set(columns))
    if wrong:
        raise RequestError(f"{where} must have exactly the columns {list(keys)}; "
                           f"missing or unknown: {wrong}")
    lists = [columns[key] for key in keys]
    if not all(isinstance(values, list) for values in lists):
        key = next(k for k, values in zip(keys, lists) if not isinstance(values, list))
        raise RequestError(f"{where}.{key} must be a list")
    lengths = {len(values) for values in lists}
    if len(lengths) != 1:
        raise RequestError(f"{where}: the columns have different lengths "
                           f"{dict(zip(keys, (len(v) for v in lists)))}")
    (length,) = lengths
    if length == 0:
        raise RequestError(f"{where} has no bars")
    if length > max_bars:
        raise RequestError(f"{where} has {length} bars, at most {max_bars} are accepted")
    dates = _dates(where, lists[0])
    return dates, [_numbers(where, key, values) for key, values in zip(keys[1:], lists[1:])]


def _dates(where: str, texts: list[Any]) -> np.ndarray:
    if not all(isinstance(text, str) and len(text) == 10 for text in texts):
        index = next(i for i, text in enumerate(texts) if not (isinstance(text, str) and len(text) == 10))
        raise RequestError(f"{where}[{index}].t must be an ISO date (YYYY-MM-DD), got {texts[index]!r}")
    try:
        dates = np.array(texts, dtype="datetime64[D]")
    except ValueError as exc:
        raise RequestError(f"{where}: a date is not an ISO date (YYYY-MM-DD): {exc}") from None
    _check_dates(where, dates)
    return dates


def _check_dates(where: str, dates: np.ndarray) -> None:
    if dates.size > 1 and not (dates[1:] > dates[:-1]).all():
        index = int(np.flatnonzero(dates[1:] <= dates[:-1])[0]) + 1
        raise RequestError(f"{where}[{index}].t is {dates[index]}, not after {dates[index - 1]}: "
                           f"bars must be oldest first with strictly increasing dates")


def _numbers(where: str, key: str, values: list[Any]) -> FloatArray:
    if not all(type(value) in (int, float) for value in values):
        index = next(i for i, value in enumerate(values) if type(value) not in (int, float))
        raise RequestError(f"{where}[{index}].{key} must be a number, got {values[index]!r}")
    return np.array(values, dtype=np.float64)


# --------------------------------------------------------------------------- features and scores


class FeaturePlan:
    """The features one model reads, how much history they need, and how to build its input ``X``.

    ``history_bars`` = the longest window among the model's series features (a cross-sectional
    feature counts its base's window) + ``lookback - 1``.

    Raises:
        DataError: if a feature name is unknown to ``registry``.
    """

    def __init__(self, registry: FeatureRegistry, names: Sequence[str], lookback: int) -> None:
        self.registry = registry
        self.names = tuple(names)
        self.lookback = int(lookback)
        series: list[str] = []
        self._cross: list[tuple[int, str, str]] = []  # (column, cross name, base name)
        known_cross = set(registry.cross_sectional_names)
        for j, name in enumerate(self.names):
            base = registry.cross_sectional(name).base if name in known_cross else registry.series(name).name
            if name in known_cross:
                self._cross.append((j, name, base))
            if base not in series:
                series.append(base)
        self.series_names = tuple(series)
        self._series_column = {name: k for k, name in enumerate(self.series_names)}
        # X[..., _series_at] = base[..., _series_from]: the model's series features, in its order.
        self._series_at = [j for j, name in enumerate(self.names) if name in self._series_column]
        self._series_from = [self._series_column[self.names[j]] for j in self._series_at]
        longest = max(registry.series(name).window for name in self.series_names)
        self.history_bars = longest + self.lookback - 1

    def matrix(self, request: ScoreRequest) -> FloatArray:
        """The model input for ``request``'s symbols: ``(n, F)`` if ``lookback == 1``, else ``(n, L, F)``.

        Raises:
            RequestError: if a symbol has fewer than ``history_bars`` bars, or (with
                cross-sectional features) the symbols' last ``lookback`` dates differ.
        """
        short = [(s, n) for s, n in zip(request.symbols, request.lengths()) if n < self.history_bars]
        if short:
            listed = ", ".join(f"{symbol} has {count}" for symbol, count in short[:5])
            raise RequestError(
                f"missing history: the model needs {self.history_bars} bars per symbol (feature windows "
                f"up to {self.history_bars - self.lookback + 1}, lookback {self.lookback}); {listed}"
                f"{f' (and {len(short) - 5} more)' if len(short) > 5 else ''}")
        L = self.lookback
        base = np.empty((len(request.symbols), L, len(self.series_names)))
        panels = self._panels(request)  # the first holds symbol 0
        for columns, panel in panels:
            values = self.registry.compute_panel(panel, self.series_names, last=L)  # L × symbols × features
            base[columns] = values.transpose(1, 0, 2)
        X = np.empty((len(request.symbols), L, len(self.names)))
        X[:, :, self._series_at] = base[:, :, self._series_from]
        if self._cross:
            first = panels[0][1].dates[-L:]
            for columns, panel in panels[1:]:
                if not np.array_equal(panel.dates[-L:], first):
                    raise RequestError(f"cross-sectional features need the same last {L} dates for every "
                                       f"symbol; {request.symbols[columns[0]]} has "
                                       f"{list(map(str, panel.dates[-L:]))}, {request.symbols[0]} has "
                                       f"{list(map(str, first))}")
            for j, name, base_name in self._cross:
                across = base[:, :, self._series_column[base_name]].T  # dates × symbols
                X[:, :, j] = self.registry.compute_cross_sectional(name, across).T
        return X[:, -1, :] if L == 1 else X

    @staticmethod
    def _panels(request: ScoreRequest) -> list[tuple[list[int], PanelInputs]]:
        """The request's symbols as panels of one calendar each: ``(their positions, the panel)``.

        Features are computed once per panel, not once per symbol (a feature's call costs about
        as much as its arithmetic on 140 bars), so symbols that share their dates, and whether
        they carry a market column, are stacked.
        """
        if request.panel is not None:
            return [(list(range(request.panel.width)), request.panel)]
        groups: dict[tuple[bytes, bool], list[int]] = {}
        for j, inputs in enumerate(request.inputs):
            groups.setdefault((inputs.dates.tobytes(), inputs.market is None), []).append(j)
        return [(columns, PanelInputs.stack([request.inputs[j] for j in columns])) for columns in groups.values()]


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A registry version, its model and its feature plan: what a batch scores with."""

    version: ModelVersion
    model: SignalModel
    plan: FeaturePlan

    def describe(self) -> dict[str, Any]:
        """The ``GET /v1/model`` answer."""
        v = self.version
        return {"version": v.version, "family": v.family, "features": list(v.features),
                "lookback": v.lookback, "history_bars": self.plan.history_bars,
                "train_start": v.train_start.isoformat(), "train_end": v.train_end.isoformat(),
                "code_version": v.code_version,
                "metrics": {k: (x if math.isfinite(x) else None) for k, x in v.metrics.items()}}


def score_requests(
    loaded: LoadedModel, requests: Sequence[ScoreRequest]
) -> list[dict[str, Any] | RequestError]:
    """Score every request with one ``predict`` call; a request that cannot be scored gets its error.

    Returns:
        Per request, ``{"as_of", "version", "scores": {symbol: score or None}}`` or the RequestError.
    """
    results: list[dict[str, Any] | RequestError] = []
    matrices: list[tuple[int, FloatArray]] = []
    for index, request in enumerate(requests):
        try:
            matrices.append((index, loaded.plan.matrix(request)))
            results.append({})
        except (RequestError, DataError) as exc:
            results.append(exc if isinstance(exc, RequestError) else RequestError(str(exc)))
    if matrices:
        scores = np.asarray(loaded.model.predict(np.concatenate([m for _, m in matrices])), dtype=np.float64)
        start = 0
        for index, matrix in matrices:
            chunk = scores[start : start + len(matrix)]
            start += len(matrix)
            request = requests[index]
            results[index] = {
                "as_of": request.as_of.isoformat(),
                "version": loaded.version.version,
                "scores": {s: (float(x) if math.isfinite(x) else None)
                           for s, x in zip(request.symbols, chunk.tolist())},
            }
    return results


def load_version(registry: ModelRegistry, version: str, features: FeatureRegistry) -> LoadedModel:
    """Load and hash-check ``version`` and plan its features.

    Raises:
        ModelError: if the version is unknown, corrupt, or its features are unknown to ``features``.
    """
    record = registry.get(version)
    model = registry.load(version)
    try:
        plan = FeaturePlan(features, model.feature_names, model.lookback)
    except DataError as exc:
        raise ModelError(f"model version {version} reads a feature this server lacks: {exc}") from None
    return LoadedModel(record, model, plan)


def import_factory(path: str) -> Callable[[], FeatureRegistry]:
    """The function ``module:function`` names.

    Raises:
        ModelError: if the module or function does not exist.
    """
    module_name, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), name)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"feature_registry {path!r} cannot be imported: {exc}") from None


# --------------------------------------------------------------------------- the deployment

# No ``from __future__ import annotations`` in this module: FastAPI reads the route methods'
# annotations (``request: Request``) at runtime through Serve's class-based view.
api = FastAPI(title="amcp signals")


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


@serve.deployment
@serve.ingress(api)
class SignalDeployment:
    """The Serve deployment behind ``POST /v1/signals`` and ``GET /v1/model`` (see the module docstring)."""

    async def __init__(self, config: ServeSignalsConfig) -> None:
        self._config = config
        self._registry = ModelRegistry(config.registry.url, storage_options=config.registry.storage_options())
        self._features = import_factory(config.feature_registry)()
        self._reload_lock = asyncio.Lock()
        self.reload_failures = 0
        self._current = await asyncio.to_thread(self._load_target)
        self._score_batch.set_max_batch_size(config.max_batch_size)
        self._score_batch.set_batch_wait_timeout_s(config.batch_wait_timeout_s)
        self._poller = (None if config.version else
                        asyncio.get_running_loop().create_task(self._poll_production()))
        logger.info("signals: serving model %s", self._current.version.version)

    # ------------------------------------------------------------------ HTTP

    @api.post("/v1/signals")
    async def signals(self, request: Request) -> JSONResponse:
        """Score the symbols of the body: JSON, or an Arrow stream (see the module docstring)."""
        body: Any
        if request.headers.get("content-type", "").split(";")[0].strip() == ARROW_CONTENT_TYPE:
            body = await request.body()
        else:
            try:
                body = await request.json()
            except ValueError as exc:
                return _bad_request(f"the body is not JSON: {exc}")
        try:
            result = await self.score(body)
        except RequestError as exc:
            return _bad_request(str(exc))
        timing = result.pop("timing_ms")
        server_timing = ", ".join(f"{name};dur={timing[name]}" for name in ("parse", "queue", "score", "total"))
        return JSONResponse(result, headers={"Server-Timing": server_timing})

    @api.get("/v1/model")
    async def model(self) -> JSONResponse:
        """The serving version, its features and the history a request needs."""
        return JSONResponse({**self._current.describe(), "pinned": self._config.version is not None,
                             "reload_failures": self.reload_failures})

    # ------------------------------------------------------------------ handle methods

    async def score(self, body: Any) -> dict[str, Any]:
        """Score a request body: a JSON-shaped Python object, or the bytes of an Arrow stream
        (what a DeploymentHandle caller sends).

        Raises:
            RequestError: if the body is malformed or lacks history.
        """
        started = time.perf_counter()
        limits = {"max_symbols": self._config.max_symbols, "max_bars": self._config.max_bars}
        parsed = (parse_arrow_request(bytes(body), **limits) if isinstance(body, (bytes, bytearray, memoryview))
                  else parse_request(body, **limits))
        parsed_at = time.perf_counter()
        result = await self._score_batch(parsed)
        if isinstance(result, RequestError):
            raise result
        timing = result["timing_ms"]
        timing["parse"] = round((parsed_at - started) * 1e3, 3)
        timing["total"] = round((time.perf_counter() - started) * 1e3, 3)
        timing["queue"] = round(max(timing["total"] - timing["parse"] - timing["score"], 0.0), 3)
        return result

    async def reload(self) -> str:
        """Switch to the production (or pinned) version if it changed; return the serving version.

        Raises:
            ModelError: if the new version cannot be loaded (the old one keeps serving).
        """
        async with self._reload_lock:
            target = await asyncio.to_thread(self._target_version)
            if target != self._current.version.version:
                loaded = await asyncio.to_thread(load_version, self._registry, target, self._features)
                previous, self._current = self._current.version.version, loaded  # the atomic swap
                logger.info("signals: switched from model %s to %s", previous, target)
            return self._current.version.version

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _score_batch(self, requests: list[ScoreRequest]) -> list[dict[str, Any] | RequestError]:
        loaded = self._current  # one model for the whole batch, even if a switch lands meanwhile
        started = time.perf_counter()
        if self._config.score_in_thread:
            results = await asyncio.to_thread(score_requests, loaded, requests)
        else:  # on the loop: no hand-off to a thread and back (see ServeSignalsConfig.score_in_thread)
            results = score_requests(loaded, requests)
        elapsed = round((time.perf_counter() - started) * 1e3, 3)
        for result in results:
            if isinstance(result, dict):
                result["timing_ms"] = {"score": elapsed, "batch": len(requests)}
        return results

    # ------------------------------------------------------------------ internals

    def _target_version(self) -> str:
        if self._config.version:
            return self._config.version
        production = self._registry.production()
        if production is None:
            raise ModelError(f"no model version is in production in {self._registry.root} and none is pinned")
        return production.version

    def _load_target(self) -> LoadedModel:
        return load_version(self._registry, self._target_version(), self._features)

    async def _poll_production(self) -> None:
        while True:
            await asyncio.sleep(self._config.poll_interval_s)
            try:
                await self.reload()
            except AmcpError as exc:
                self.reload_failures += 1
                logger.error("signals: cannot switch model (failure %d), still serving %s: %s",
                             self.reload_failures, self._current.version.version, exc)


def build_app(config: ServeSignalsConfig) -> serve.Application:
    """The Serve application for ``config`` (replicas, concurrency and CPUs from it)."""
    return SignalDeployment.options(
        num_replicas=config.num_replicas,
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options={"num_cpus": config.replica_num_cpus},
    ).bind(config)


def direct_ingress_env(config: ServeSignalsConfig) -> dict[str, str]:
    """The environment Ray must start with for ``ingress: direct`` (empty for ``proxy``).

    Ray Serve reads these when its controller and replicas start, so they belong in the
    environment of the process that starts Ray (``ray start`` on a cluster; this process when
    it starts a local Ray). Each replica then serves HTTP on a port from ``direct_port`` to
    ``direct_port + 100`` besides the proxy on ``http_port``.

    The latency setup goes with it (three of the settings Ray's own
    ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` makes): route handlers run on the replica's own event
    loop instead of a second thread's (no cross-thread hop per request; the handlers only parse,
    the features and predict run on a worker thread), access-log lines are written in batches,
    and replica logs go to their files only, not also to stderr. On this project's 2-core machine
    they take a no-op round trip on the replica's port from about 0.7 to 0.4 ms
    (``benchmarks/serve_signals.py``, ``serve_floor_p50_ms``).
    """
    if config.ingress != "direct":
        return {}
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
            "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(config.direct_port),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(config.direct_port + 100),
            "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
            "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
            "RAY_SERVE_LOG_TO_STDERR": "0"}


def answers_directly(host: str, port: int, timeout_s: float) -> bool:
    """Whether ``GET /v1/model`` on ``host:port`` answers 200 within ``timeout_s`` (polled)."""
    import http.client

    deadline = time.monotonic() + timeout_s
    while True:
        connection = http.client.HTTPConnection(host, port, timeout=2.0)
        try:
            connection.request("GET", "/v1/model")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            connection.close()
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Serve ``--config`` until interrupted (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--config", default=str(Path("configs/serve_signals.yaml")), help="the YAML config")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, ServeSignalsConfig)
    except AmcpError as exc:
        print(exc, file=sys.stderr)
        return 2
    from actors.cluster import connect_ray

    os.environ.update(direct_ingress_env(config))  # read by a local Ray this process starts
    connect_ray(config.ray_address, config.namespace)
    serve.start(http_options={"host": config.http_host, "port": config.http_port})
    serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix, blocking=False)
    if config.ingress == "direct":
        if answers_directly(config.http_host, config.direct_port, timeout_s=30.0):
            logger.info("signals: replicas answer directly from port %d", config.direct_port)
        else:
            logger.warning("signals: ingress is direct but nothing answers on port %d: the Ray cluster was not "
                           "started with %s; serving through the proxy on port %d only", config.direct_port,
                           " ".join(f"{k}={v}" for k, v in direct_ingress_env(config).items()), config.http_port)
    print(json.dumps({"serving": config.app_name, "http_port": config.http_port,
                      "direct_port": config.direct_port if config.ingress == "direct" else None}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
