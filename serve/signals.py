"""Ray Serve deployment: live scores of the production model, computed from the latest bars.

Run (starts a local Ray unless ``ray.address`` or RAY_ADDRESS names a cluster, then serves
until interrupted)::

    .venv/bin/python -m serve.signals --config configs/serve_signals.yaml

API (JSON; any bad input is a 400 whose ``error`` says what is wrong, never a 500):

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

``GET /v1/model`` answers the serving version and what a request needs.

Scoring: requests are parsed and checked in the HTTP handler, then batched with ``@serve.batch``
(``max_batch_size``, ``batch_wait_timeout_s``); a batch's feature rows go through one
``predict`` call, off the event loop. Version switches: every ``poll_interval_s`` (and on
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
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from amcp._typing import FloatArray
from amcp.config import StoreConfig, load_config
from amcp.errors import AmcpError, DataError
from amcp.features.registry import FeatureRegistry, SeriesInputs
from amcp.models.base import ModelError, SignalModel
from amcp.models.registry import ModelRegistry, ModelVersion

__all__ = [
    "FeaturePlan",
    "RequestError",
    "ScoreRequest",
    "ServeSignalsConfig",
    "SignalDeployment",
    "build_app",
    "parse_request",
    "score_requests",
]

logger = logging.getLogger("ray.serve")

_BAR_KEYS = ("t", "o", "h", "l", "c", "v")


class ServeSignalsConfig(BaseModel):
    """``configs/serve_signals.yaml``: where the models are, what to serve, how to batch."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    kind: str = Field("serve_signals", pattern=r"^serve_signals$")
    registry: StoreConfig = Field(
        ..., description="the model registry's root (a folder or s3:// URL) and S3 options")
    version: str | None = Field(None, description="serve this version; null follows the production pointer")
    poll_interval_s: float = Field(
        5.0, gt=0, description="how often a replica re-reads the production pointer")
    feature_registry: str = Field(
        "amcp.features:default_registry", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="module:function returning the FeatureRegistry the model's features come from")
    max_batch_size: int = Field(16, ge=1, description="requests scored together in one predict call")
    batch_wait_timeout_s: float = Field(0.002, ge=0, description="how long a batch waits to fill")
    max_symbols: int = Field(5000, ge=1, description="symbols one request may ask for")
    max_bars: int = Field(5000, ge=1, description="bars one symbol may carry")
    num_replicas: int = Field(1, ge=1)
    max_ongoing_requests: int = Field(64, ge=1, description="requests a replica accepts at once")
    replica_num_cpus: float = Field(1.0, ge=0, description="CPUs reserved per replica")
    app_name: str = Field("signals", pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    route_prefix: str = Field("/", pattern=r"^/\S*$")
    http_host: str = Field("127.0.0.1", min_length=1)
    http_port: int = Field(8000, ge=1, le=65535)
    ray_address: str | None = Field(
        None, description="Ray address; null uses RAY_ADDRESS or starts a local Ray")
    namespace: str = "amcp"


class RequestError(ModelError):
    """A scoring request is malformed or cannot be answered from what it carries (HTTP 400)."""


@dataclass(frozen=True, eq=False)
class ScoreRequest:
    """A parsed, checked ``POST /v1/signals`` body: one :class:`SeriesInputs` per symbol."""

    as_of: date
    symbols: tuple[str, ...]
    inputs: tuple[SeriesInputs, ...]


# --------------------------------------------------------------------------- parsing


def parse_request(body: Any, *, max_symbols: int, max_bars: int) -> ScoreRequest:
    """Check a request body and build each symbol's inputs (see the module docstring for the rules).

    Raises:
        RequestError: naming the first problem found (the symbol, bar index and field).
    """
    if not isinstance(body, Mapping):
        raise RequestError(f"the body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - {"as_of", "bars", "market"})
    if unknown:
        raise RequestError(f"unknown keys {unknown}; expected as_of, bars and optionally market")
    as_of_text = body.get("as_of")
    try:
        as_of = date.fromisoformat(as_of_text) if isinstance(as_of_text, str) else None
    except ValueError:
        as_of = None
    if as_of is None:
        raise RequestError(f"as_of must be an ISO date (YYYY-MM-DD), got {as_of_text!r}")
    bars = body.get("bars")
    if not isinstance(bars, Mapping) or not bars:
        raise RequestError("bars must be a non-empty object of symbol -> list of bars")
    if len(bars) > max_symbols:
        raise RequestError(f"{len(bars)} symbols asked for, at most {max_symbols} per request")
    market = _parse_market(body.get("market"), max_bars)
    day = np.datetime64(as_of, "D")
    symbols, inputs = [], []
    for symbol, rows in bars.items():
        if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
            raise RequestError(f"symbol names must be strings of 1-32 characters, got {symbol!r}")
        dates, columns = _columns(f"bars.{symbol}", rows, _BAR_KEYS, max_bars)
        if dates[-1] != day:
            raise RequestError(f"bars.{symbol}: the last bar is {dates[-1]}, not as_of {as_of}; "
                               f"send bars up to and including as_of (and none after)")
        o, h, l, c, v = columns
        for name, values in (("o", o), ("h", h), ("l", l), ("c", c)):
            bad = np.flatnonzero(~(values > 0))  # NaN fails too
            if bad.size:
                raise RequestError(f"bars.{symbol}[{bad[0]}].{name} is {float(values[bad[0]])}: "
                                   f"prices must be finite and > 0")
        bad = np.flatnonzero(~(v >= 0))
        if bad.size:
            raise RequestError(f"bars.{symbol}[{bad[0]}].v is {float(v[bad[0]])}: "
                               f"volume must be finite and >= 0")
        aligned = None
        if market is not None:
            market_dates, market_close = market
            at = np.searchsorted(market_dates, dates)
            found = (at < market_dates.size) & (market_dates[np.minimum(at, market_dates.size - 1)] == dates)
            aligned = np.where(found, market_close[np.minimum(at, market_dates.size - 1)], np.nan)
        symbols.append(symbol)
        inputs.append(SeriesInputs(dates, o, h, l, c, v, np.full(dates.size, np.nan), aligned))
    return ScoreRequest(as_of, tuple(symbols), tuple(inputs))


def _parse_market(rows: Any, max_bars: int) -> tuple[np.ndarray, FloatArray] | None:
    if rows is None:
        return None
    dates, (close,) = _columns("market", rows, ("t", "c"), max_bars)
    bad = np.flatnonzero(~(close > 0))
    if bad.size:
        raise RequestError(f"market[{bad[0]}].c is {float(close[bad[0]])}: closes must be finite and > 0")
    return dates, close


def _columns(
    where: str, rows: Any, keys: Sequence[str], max_bars: int
) -> tuple[np.ndarray, list[FloatArray]]:
    """Dates and float columns of a list of bar objects, with their shape and types checked."""
    if not isinstance(rows, list) or not rows:
        raise RequestError(f"{where} must be a non-empty list of bars")
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
    texts = [row[0] for row in table]
    if not all(isinstance(text, str) and len(text) == 10 for text in texts):
        index = next(i for i, text in enumerate(texts) if not (isinstance(text, str) and len(text) == 10))
        raise RequestError(f"{where}[{index}].t must be an ISO date (YYYY-MM-DD), got {texts[index]!r}")
    try:
        dates = np.array(texts, dtype="datetime64[D]")
    except ValueError as exc:
        raise RequestError(f"{where}: a date is not an ISO date (YYYY-MM-DD): {exc}") from None
    if dates.size > 1 and not (dates[1:] > dates[:-1]).all():
        index = int(np.flatnonzero(dates[1:] <= dates[:-1])[0]) + 1
        raise RequestError(f"{where}[{index}].t is {dates[index]}, not after {dates[index - 1]}: "
                           f"bars must be oldest first with strictly increasing dates")
    columns = []
    for j, key in enumerate(keys[1:], start=1):
        values = [row[j] for row in table]
        if not all(type(value) in (int, float) for value in values):
            index = next(i for i, value in enumerate(values) if type(value) not in (int, float))
            raise RequestError(f"{where}[{index}].{key} must be a number, got {values[index]!r}")
        columns.append(np.array(values, dtype=np.float64))
    return dates, columns


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
        longest = max(registry.series(name).window for name in self.series_names)
        self.history_bars = longest + self.lookback - 1

    def matrix(self, request: ScoreRequest) -> FloatArray:
        """The model input for ``request``'s symbols: ``(n, F)`` if ``lookback == 1``, else ``(n, L, F)``.

        Raises:
            RequestError: if a symbol has fewer than ``history_bars`` bars, or (with
                cross-sectional features) the symbols' last ``lookback`` dates differ.
        """
        short = [(s, len(x)) for s, x in zip(request.symbols, request.inputs) if len(x) < self.history_bars]
        if short:
            listed = ", ".join(f"{symbol} has {count}" for symbol, count in short[:5])
            raise RequestError(
                f"missing history: the model needs {self.history_bars} bars per symbol (feature windows "
                f"up to {self.history_bars - self.lookback + 1}, lookback {self.lookback}); {listed}"
                f"{f' (and {len(short) - 5} more)' if len(short) > 5 else ''}")
        L = self.lookback
        base = np.empty((len(request.symbols), L, len(self.series_names)))
        for i, inputs in enumerate(request.inputs):
            base[i] = self.registry.compute(inputs, self.series_names).values[-L:]
        X = np.empty((len(request.symbols), L, len(self.names)))
        for j, name in enumerate(self.names):
            if name in self._series_column:
                X[:, :, j] = base[:, :, self._series_column[name]]
        if self._cross:
            first = request.inputs[0].dates[-L:]
            for symbol, inputs in zip(request.symbols, request.inputs):
                if not np.array_equal(inputs.dates[-L:], first):
                    raise RequestError(f"cross-sectional features need the same last {L} dates for every "
                                       f"symbol; {symbol} has {list(map(str, inputs.dates[-L:]))}, "
                                       f"{request.symbols[0]} has {list(map(str, first))}")
            for j, name, base_name in self._cross:
                across = base[:, :, self._series_column[base_name]].T  # dates × symbols
                X[:, :, j] = self.registry.compute_cross_sectional(name, across).T
        return X[:, -1, :] if L == 1 else X


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
        """Score the symbols of the body (see the module docstring)."""
        try:
            body = await request.json()
        except ValueError as exc:
            return _bad_request(f"the body is not JSON: {exc}")
        try:
            result = await self.score(body)
        except RequestError as exc:
            return _bad_request(str(exc))
        return JSONResponse(result)

    @api.get("/v1/model")
    async def model(self) -> JSONResponse:
        """The serving version, its features and the history a request needs."""
        return JSONResponse({**self._current.describe(), "pinned": self._config.version is not None,
                             "reload_failures": self.reload_failures})

    # ------------------------------------------------------------------ handle methods

    async def score(self, body: Any) -> dict[str, Any]:
        """Score a request body given as a Python object (what a DeploymentHandle caller sends).

        Raises:
            RequestError: if the body is malformed or lacks history.
        """
        parsed = parse_request(body, max_symbols=self._config.max_symbols, max_bars=self._config.max_bars)
        result = await self._score_batch(parsed)
        if isinstance(result, RequestError):
            raise result
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

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def _score_batch(self, requests: list[ScoreRequest]) -> list[dict[str, Any] | RequestError]:
        loaded = self._current  # one model for the whole batch, even if a switch lands meanwhile
        return await asyncio.to_thread(score_requests, loaded, requests)

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

    connect_ray(config.ray_address, config.namespace)
    serve.start(http_options={"host": config.http_host, "port": config.http_port})
    serve.run(build_app(config), name=config.app_name, route_prefix=config.route_prefix, blocking=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
