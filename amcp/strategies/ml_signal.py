"""A strategy trading a served model's scores (``serve/signals.py``): ask, rank, hold the ends.

Every cycle the strategy records its universe's bars (open, high, low, close, volume) in a ring
buffer. Every ``rebalance_bars`` cycles, counted from the first cycle at which ``min_scored``
symbols have ``history_bars`` bars, it sends each symbol that has a bar this cycle and
``history_bars`` bars of history — its last ``history_bars`` bars, up to this cycle's session
(``as_of``), with the equal-weighted index of the universe's closes as the market proxy
(:func:`amcp.features.market.equal_weight_index`, what the features job gives beta and
correlation) — to the signal service and ranks the scores it gets back:

- ``long_short``: ``k = max(1, floor(quantile × m))`` of the ``m`` scored symbols (at most
  ``m // 2``); weight ``+0.5 / k`` in the ``k`` best, ``-0.5 / k`` in the ``k`` worst;
  when a tie spans both ends (the ``k``-th best score equals the ``k``-th worst, e.g. a constant
  signal) nothing is held;
- ``long_only``: weight ``1 / top_k`` in the ``top_k`` best.

Symbols it held and no longer selects get weight 0 (a held symbol without a bar this cycle is
not scored, so it is exited, as in the momentum strategy). Ties go to the earlier symbol of the
universe; null scores are not ranked.

When the service fails (timeout, connection refused, an error answer, fewer than
``min_scored`` scores) the strategy emits nothing, so positions are held; it logs the reason,
counts it in :attr:`MLSignalStrategy.failures` and asks again on the next cycle instead of
waiting for the next rebalance.

Endpoints: ``http://host:port`` (``POST /v1/signals``) or ``serve://<app name>`` (a Serve
``DeploymentHandle`` to the app's ``SignalDeployment``, for a strategy running in the same Ray
cluster). Both are blocking calls with ``timeout_s``, made from the (synchronous) strategy actor;
the HTTP client keeps its connection open between calls.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from amcp._typing import FloatArray
from amcp.config import MLSignalConfig
from amcp.data.calendar import day_of_ns
from amcp.domain.data import BarBatch
from amcp.domain.messages import Intent, TargetWeight
from amcp.errors import AmcpError, ConfigError, DataError
from amcp.features.market import equal_weight_index
from amcp.models.wire import ARROW_CONTENT_TYPE, WireError, encode_request
from amcp.strategies.base import Strategy

__all__ = [
    "HttpSignalClient",
    "MLSignalConfig",
    "MLSignalStrategy",
    "ServeHandleSignalClient",
    "SignalAnswer",
    "SignalClient",
    "SignalUnavailableError",
    "requested_symbols",
]

logger = logging.getLogger(__name__)

_FIELDS = ("o", "h", "l", "c", "v")


class SignalUnavailableError(AmcpError):
    """The signal service gave no usable answer (the reason is the message)."""


@dataclass(frozen=True)
class SignalAnswer:
    """Scores for one request: the model version that made them and a score (or None) per symbol."""

    version: str
    scores: Mapping[str, float | None]


class SignalClient(Protocol):
    """Something that scores a ``POST /v1/signals`` body."""

    def scores(self, body: Mapping[str, Any], timeout_s: float) -> SignalAnswer:
        """Score ``body`` within ``timeout_s``.

        Raises:
            SignalUnavailableError: on a timeout, a transport error or an error answer.
        """
        ...


class HttpSignalClient:
    """``POST {base_url}/v1/signals`` over one keep-alive HTTP/1.1 connection (standard library).

    The body goes as an Arrow stream (:mod:`amcp.models.wire`, ``wire="arrow"``, the default:
    about ten times smaller than JSON and decoded without a Python object per value) or as JSON.
    The connection is opened on the first call and kept for the next ones (no TCP handshake per
    request); after any failure it is closed and the next call opens a new one. A call that fails
    on a reused connection before any answer (the server closed it while idle: servers drop idle
    keep-alive connections after a few seconds) is sent once more on a new connection — scoring
    changes nothing on the server, so a repeat is harmless.
    """

    def __init__(self, base_url: str, wire: str = "arrow") -> None:
        if wire not in ("arrow", "json"):
            raise ConfigError(f"wire must be 'arrow' or 'json', got {wire!r}")
        try:
            parts = urllib.parse.urlsplit(base_url)
            port = parts.port  # a port that is not a number in 0-65535 raises here
        except ValueError as exc:
            raise ConfigError(f"the signal endpoint {base_url!r} is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(f"the signal endpoint must be http(s)://host[:port][/prefix], got {base_url!r}")
        self.url = base_url.rstrip("/") + "/v1/signals"
        self.wire = wire
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, port
        self._path = parts.path.rstrip("/") + "/v1/signals"
        self._connection: http.client.HTTPConnection | None = None

    def scores(self, body: Mapping[str, Any], timeout_s: float) -> SignalAnswer:
        if self.wire == "arrow":
            try:
                data, content_type = encode_request(body), ARROW_CONTENT_TYPE
            except WireError as exc:
                raise SignalUnavailableError(f"cannot encode the request: {exc}") from None
        else:
            data, content_type = json.dumps(body, default=_jsonable).encode(), "application/json"
        reused = self._connection is not None
        try:
            try:
                status, raw = self._post(data, content_type, timeout_s)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                self.close()  # the server dropped the idle connection: once more on a new one
                status, raw = self._post(data, content_type, timeout_s)
        except (http.client.HTTPException, OSError) as exc:  # TimeoutError and refusals are OSErrors
            self.close()
            raise SignalUnavailableError(
                f"{self.url} unreachable within {timeout_s} s: {type(exc).__name__}: {exc}") from None
        if status != 200:
            detail = raw[:500].decode(errors="replace")
            raise SignalUnavailableError(f"{self.url} answered {status}: {detail}")
        return _answer(raw, self.url)

    def close(self) -> None:
        """Close the kept connection (the next call opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _post(self, data: bytes, content_type: str, timeout_s: float) -> tuple[int, bytes]:
        if self._connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._connection = kind(self._host, self._port, timeout=timeout_s)
        connection = self._connection
        connection.timeout = timeout_s  # for a new socket; an open one gets it below
        if connection.sock is not None:
            connection.sock.settimeout(timeout_s)
        connection.request("POST", self._path, body=data, headers={"Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
        if response.will_close:
            self.close()
        return response.status, raw


class ServeHandleSignalClient:
    """``SignalDeployment.score`` of the Serve app ``app_name`` through a DeploymentHandle (Arrow body)."""

    def __init__(self, app_name: str) -> None:
        self.app_name = app_name
        self._handle: Any = None

    def scores(self, body: Mapping[str, Any], timeout_s: float) -> SignalAnswer:
        from ray import serve

        try:
            if self._handle is None:
                self._handle = serve.get_deployment_handle("SignalDeployment", app_name=self.app_name)
            answer = self._handle.score.remote(encode_request(body)).result(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure of the remote call means "no scores"
            raise SignalUnavailableError(
                f"serve app {self.app_name!r}: {type(exc).__name__}: {exc}") from None
        return _answer(answer, f"serve app {self.app_name!r}")


def requested_symbols(body: Mapping[str, Any]) -> list[str]:
    """The symbols a ``POST /v1/signals`` body asks for, in its order (``panel.symbols`` or ``bars``' keys)."""
    return [str(symbol) for symbol in (body["panel"]["symbols"] if "panel" in body else body["bars"])]


def _jsonable(value: Any) -> Any:
    """numpy columns as JSON lists (dates as ISO strings)."""
    if isinstance(value, np.ndarray):
        return value.astype(str).tolist() if np.issubdtype(value.dtype, np.datetime64) else value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _answer(raw: Any, source: str) -> SignalAnswer:
    try:
        data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
        version, scores = str(data["version"]), data["scores"]
        parsed = {str(s): (None if x is None else float(x)) for s, x in scores.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise SignalUnavailableError(
            f"{source} answered something that is not a scores object: {exc!r}") from None
    return SignalAnswer(version, parsed)


def client_for(endpoint: str) -> SignalClient:
    """The client an ``endpoint`` of :class:`MLSignalConfig` names."""
    if endpoint.startswith("serve://"):
        return ServeHandleSignalClient(endpoint[len("serve://"):])
    return HttpSignalClient(endpoint)


class MLSignalStrategy(Strategy):
    """Rank the universe by a served model's scores and hold the ends (see the module docstring).

    Attributes:
        failures: how many times the service gave no usable answer.
        last_version: the model version of the last scores used (None before any).
    """

    def __init__(
        self, config: MLSignalConfig, universe: tuple[str, ...], client: SignalClient | None = None
    ) -> None:
        """Build the strategy for ``config`` on ``universe``, asking ``client`` (default: the endpoint's).

        Raises:
            ConfigError: if the universe has fewer symbols than ``min_scored``.
        """
        super().__init__(config.id, universe)
        if len(self.universe) < config.min_scored:
            raise ConfigError(f"strategy {config.id!r}: min_scored {config.min_scored} exceeds the "
                              f"universe's {len(self.universe)} symbols")
        self.config = config
        self.client = client if client is not None else client_for(config.endpoint)
        n = len(self.universe)
        self._capacity = 2 * config.history_bars  # room for missing bars
        self._bars: FloatArray = np.full((len(_FIELDS), self._capacity, n), np.nan)
        self._days = np.zeros(self._capacity, dtype="datetime64[D]")
        self._count = 0
        self._held = np.zeros(n, dtype=np.int8)  # +1 long, -1 short, 0 flat
        self._cycles_since_warm = -1  # -1: not warm yet
        self._retry = False
        self.failures = 0
        self.last_version: str | None = None

    # ------------------------------------------------------------------ cycle
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        close = self._universe_close(batch)
        row = self._count % self._capacity
        for k, column in enumerate((batch.open, batch.high, batch.low, batch.close, batch.volume)):
            self._bars[k, row] = column if self._columns is None else column.take(self._columns)
        self._days[row] = day_of_ns(np.array([batch.ts_ns]))[0]
        self._count += 1

        eligible = self._eligible(close)
        if self._cycles_since_warm < 0:
            if np.count_nonzero(eligible) < self.config.min_scored:
                return []
            self._cycles_since_warm = 0
        cycle = self._cycles_since_warm
        self._cycles_since_warm = cycle + 1
        if cycle % self.config.rebalance_bars and not self._retry:
            return []
        return self._rebalance(eligible)

    def _eligible(self, close: FloatArray) -> np.ndarray:
        """Symbols with a bar now and ``history_bars`` bars in the buffer."""
        filled = min(self._count, self._capacity)
        have = np.count_nonzero(~np.isnan(self._bars[3, :filled]), axis=0)
        return ~np.isnan(close) & (have >= self.config.history_bars)

    def _rebalance(self, eligible: np.ndarray) -> list[Intent]:
        config = self.config
        chosen = np.flatnonzero(eligible)
        try:
            answer = self.client.scores(self._request(chosen), config.timeout_s)
            score = np.array([_finite(answer.scores.get(self.universe[i])) for i in chosen], dtype=np.float64)
            usable = ~np.isnan(score)
            if np.count_nonzero(usable) < config.min_scored:
                raise SignalUnavailableError(
                    f"{np.count_nonzero(usable)} of {chosen.size} symbols scored, "
                    f"min_scored is {config.min_scored}")
        except SignalUnavailableError as exc:
            self.failures += 1
            self._retry = True
            logger.warning("strategy %s: no scores (failure %d), holding positions: %s",
                           self.id, self.failures, exc)
            return []
        self._retry = False
        self.last_version = answer.version
        candidates = chosen[usable]
        # Best first; a stable sort on the negated score keeps ties in universe order.
        ranking = np.argsort(-score[usable], kind="stable")
        order, ranked = candidates[ranking], score[usable][ranking]
        selected = np.zeros_like(self._held)
        if config.portfolio == "long_short":
            count = min(max(1, math.floor(config.quantile * order.size)), order.size // 2)
            longs, shorts = order[:count], order[order.size - count :][::-1]
            if ranked[count - 1] <= ranked[order.size - count]:
                # A tie spans both sides (e.g. every score equal): the scores cannot tell the ends
                # apart, so no book is held rather than one picked by universe order.
                longs, shorts = order[:0], order[:0]
            long_weight, short_weight = 0.5 / count, -0.5 / count
        else:
            longs, shorts = order[: config.top_k], order[:0]
            long_weight, short_weight = 1.0 / config.top_k, 0.0
        selected[longs] = 1
        selected[shorts] = -1

        sid, universe = self.id, self.universe
        intents: list[Intent] = [
            TargetWeight(strategy_id=sid, symbol=universe[i], weight=0.0, tag="ml exit")
            for i in np.flatnonzero((self._held != 0) & (selected == 0)).tolist()
        ]
        intents.extend(TargetWeight(strategy_id=sid, symbol=universe[i], weight=long_weight, tag="ml long")
                       for i in longs.tolist())
        intents.extend(TargetWeight(strategy_id=sid, symbol=universe[i], weight=short_weight, tag="ml short")
                       for i in shorts.tolist())
        self._held = selected
        return intents

    def _request(self, chosen: np.ndarray) -> dict[str, Any]:
        """The ``POST /v1/signals`` body: each chosen symbol's last ``history_bars`` bars, oldest first (numpy
        arrays: dates datetime64[D], ``o h l c v`` float64; the clients encode them).

        When every chosen symbol has a bar on each of the buffer's last ``history_bars`` sessions (the
        usual case) the body is one ``panel`` of those sessions — ``(sessions × symbols)`` matrices, the
        buffer's own layout, which the Arrow wire sends and the service decodes without a per-symbol
        step; otherwise each symbol's own last ``history_bars`` bars, as ``bars`` columns."""
        filled = min(self._count, self._capacity)
        order = (np.arange(self._count - filled, self._count) % self._capacity)  # oldest row first
        bars, days = self._bars[:, order], self._days[order]
        # The market proxy of the beta/correlation features: the equal-weighted index of the universe's
        # closes over the buffer (the features job builds the same index over its whole universe).
        market = {"t": days, "c": equal_weight_index(bars[3])}
        history = self.config.history_bars
        recent = bars[:, -history:][:, :, chosen]
        if recent.shape[1] == history and not np.isnan(recent[3]).any():
            panel: dict[str, Any] = {"symbols": [self.universe[i] for i in chosen.tolist()], "t": days[-history:]}
            panel.update(zip(_FIELDS, recent))
            return {"as_of": str(days[-1]), "panel": panel, "market": market}
        body: dict[str, dict[str, np.ndarray]] = {}
        for i in chosen.tolist():
            rows = np.flatnonzero(~np.isnan(bars[3, :, i]))[-history:]
            columns: dict[str, np.ndarray] = {"t": days[rows]}
            columns.update(zip(_FIELDS, bars[:, rows, i]))
            body[self.universe[i]] = columns
        return {"as_of": str(days[-1]), "bars": body, "market": market}

    # ------------------------------------------------------------------ checkpoint
    @property
    def held(self) -> dict[str, int]:
        """The symbols of the last rebalance's targets: +1 long, -1 short."""
        return {self.universe[i]: int(self._held[i]) for i in np.flatnonzero(self._held).tolist()}

    def _extra_state(self) -> dict[str, Any]:
        return {"bars": self._bars.copy(), "days": self._days.copy(), "count": self._count,
                "held": self._held.copy(), "cycles_since_warm": self._cycles_since_warm, "retry": self._retry,
                "failures": self.failures, "last_version": self.last_version}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        bars = np.asarray(state["bars"], dtype=np.float64)
        held = np.asarray(state["held"], dtype=np.int8)
        if bars.shape != self._bars.shape or held.shape != self._held.shape:
            raise DataError(f"saved ml_signal state has bars {bars.shape} and held {held.shape}, expected "
                            f"{self._bars.shape} and {self._held.shape} (history_bars or universe changed)")
        self._bars = bars.copy()
        self._days = np.asarray(state["days"], dtype="datetime64[D]").copy()
        self._count = int(state["count"])
        self._held = held.copy()
        self._cycles_since_warm = int(state["cycles_since_warm"])
        self._retry = bool(state["retry"])
        self.failures = int(state["failures"])
        self.last_version = state["last_version"]


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else math.nan
