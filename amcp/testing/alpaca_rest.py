"""An in-process server that speaks Alpaca's market-data REST API, for tests and offline use.

The real alpaca-py clients (``StockHistoricalDataClient``, ``OptionHistoricalDataClient``,
``CorporateActionsClient``) run against it unchanged through their ``url_override`` argument::

    with AlpacaMarketDataServer(api_key="k", secret_key="s") as server:
        server.add_bars(daily_table, timeframe="1Day")
        client = StockHistoricalDataClient("k", "s", url_override=server.url)
        bars = client.get_stock_bars(StockBarsRequest(symbol_or_symbols=["AAPL"], ...))

Endpoints (paths, query parameters and JSON bodies as Alpaca documents them):

- ``GET /v2/stocks/bars`` and ``/v2/stocks/{symbol}/bars``; ``GET /v2/stocks/trades`` and
  ``/v2/stocks/{symbol}/trades``; ``GET /v2/stocks/bars/latest`` (latest ``1Min`` bar) and
  ``/v2/stocks/trades/latest``; ``GET /v1beta1/options/bars`` (bars loaded under OCC symbols).
- ``GET /v1beta1/options/snapshots/{underlying}`` (the option chain) and
  ``/v1beta1/options/snapshots?symbols=``.
- ``GET /v1/corporate-actions`` (forward and reverse splits, cash dividends).

Pagination follows Alpaca: at most ``limit`` items per page *across all symbols*, symbols in
lexicographic order, and an opaque ``next_page_token`` (``null`` on the last page). Omitted
``start``/``end`` mean unbounded (Alpaca defaults to today; a test server has no "today").
Bars are served exactly as loaded: ``adjustment`` is validated and logged but not applied,
and timeframes are not aggregated (a valid timeframe with nothing loaded returns no bars).

Every request needs the ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` headers of the
configured key pair (401 otherwise); bad parameters get 400. Errors carry Alpaca's body,
``{"code": ..., "message": ...}``. Faults can be injected (:meth:`fail_next`,
:meth:`fail_every`, :meth:`drop_connection_next`, :meth:`respond_next`, ``latency_s``) and every
request is logged (:attr:`requests`), so tests can assert that paging, retrying and rate
limiting really happened.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import uuid
import zlib
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, NamedTuple, Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from amcp.data.schemas import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA, OPTION_CHAIN_SCHEMA, TICK_SCHEMA
from amcp.errors import DataError
from amcp.testing.http_server import (
    HttpAnswer,
    HttpRequest,
    ThreadedJsonHttpServer,
    json_answer,
    status_phrase,
)

logger = logging.getLogger(__name__)

MAX_LIMIT = 10_000
"""Alpaca's largest ``limit`` for bars and trades."""
MAX_OPTION_LIMIT = 1_000
"""Alpaca's largest ``limit`` for option snapshots and corporate actions."""

_TIMEFRAME = re.compile(r"^(\d+)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT = {"Min": "Min", "T": "Min", "Hour": "Hour", "H": "Hour", "Day": "Day", "D": "Day"}
_UNIT.update({"Week": "Week", "W": "Week", "Month": "Month", "M": "Month"})
_FEEDS = frozenset({"sip", "iex", "otc", "boats", "overnight", "delayed_sip"})
_OPTION_FEEDS = frozenset({"opra", "indicative"})
_ADJUSTMENTS = frozenset({"raw", "split", "dividend", "spin-off", "all"})
_ACTION_TYPES = frozenset(
    {
        "forward_split",
        "reverse_split",
        "unit_split",
        "stock_dividend",
        "cash_dividend",
        "spin_off",
        "cash_merger",
        "stock_merger",
        "stock_and_cash_merger",
        "redemption",
        "name_change",
        "worthless_removal",
        "rights_distribution",
    }
)
_ACTION_NAMESPACE = uuid.UUID("6f0b8a52-4d8e-4a43-9b55-2f1f0d1c7a10")
_DIVIDEND_PAYABLE_DAYS = 14
"""A served cash dividend's ``payable_date`` (= ``process_date``) is this many days after ``ex_date``."""


class RequestRecord(NamedTuple):
    """One request the server answered: its path, query (last value per key) and HTTP status.

    ``status`` is 0 for a connection dropped by :meth:`AlpacaMarketDataServer.drop_connection_next`.
    """

    path: str
    query: dict[str, str]
    status: int


class _HttpError(Exception):
    """An error response: status, Alpaca error code and message."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status * 100_000


def _rfc3339(ts_ns: np.ndarray) -> list[str]:
    """RFC-3339 UTC strings of nanosecond instants, trailing fractional zeros dropped (Alpaca's form)."""
    text = np.datetime_as_string(np.asarray(ts_ns, dtype=np.int64).view("datetime64[ns]"), unit="ns")
    return [s.rstrip("0").rstrip(".") + "Z" for s in text.tolist()]


def _column(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


def _conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types, or a :class:`DataError`."""
    if not isinstance(table, pa.Table):
        raise DataError(f"alpaca test server: {what} must be a pyarrow Table (got {type(table).__name__})")
    missing = [name for name in schema.names if name not in table.column_names]
    if missing:
        present = table.column_names
        raise DataError(f"alpaca test server: {what} table lacks columns {missing} (has {present})")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise DataError(f"alpaca test server: {what} table does not match the schema: {exc}") from exc


@dataclass(frozen=True)
class _Series:
    """One symbol's items, sorted by time: instants (ns) and their JSON-ready bodies."""

    ts_ns: np.ndarray
    items: list[dict[str, Any]]

    def bounds(self, start_ns: int | None, end_ns: int | None) -> tuple[int, int]:
        """Index range ``[lo, hi)`` of items with ``start_ns <= ts <= end_ns``."""
        lo = 0 if start_ns is None else int(np.searchsorted(self.ts_ns, start_ns, side="left"))
        hi = len(self.items) if end_ns is None else int(np.searchsorted(self.ts_ns, end_ns, side="right"))
        return lo, hi


def _group_series(table: pa.Table, bodies: list[dict[str, Any]], ts_column: str) -> dict[str, _Series]:
    """Split rows (already sorted by symbol then time) into one :class:`_Series` per symbol."""
    symbols = np.asarray(_column(table, "symbol"), dtype=object)
    ts = table.column(ts_column).cast(pa.int64()).to_numpy()
    result: dict[str, _Series] = {}
    if len(symbols) == 0:
        return result
    cuts = np.flatnonzero(symbols[1:] != symbols[:-1]) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(symbols)], strict=True):
        result[str(symbols[lo])] = _Series(ts[lo:hi].copy(), bodies[lo:hi])
    return result


def _sorted_unique(table: pa.Table, keys: list[str], what: str) -> pa.Table:
    """``table`` sorted by ``keys``; a :class:`DataError` naming the first duplicated key."""
    table = table.sort_by([(key, "ascending") for key in keys])
    if table.num_rows > 1:
        same = np.ones(table.num_rows - 1, dtype=bool)
        for key in keys:
            column = table.column(key)
            if pa.types.is_string(column.type):
                values = np.asarray(column.to_pylist(), dtype=object)
            else:
                values = column.cast(pa.int64()).to_numpy()
            same &= values[1:] == values[:-1]
        if same.any():
            row = int(np.flatnonzero(same)[0]) + 1
            key = {name: table.column(name)[row].as_py() for name in keys}
            raise DataError(f"alpaca test server: {what} has duplicate rows for key {key}")
    return table


def _drop_nulls(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


def _encode_token(payload: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_token(token: str) -> list[Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _HttpError(400, f"invalid page_token {token!r}") from None
    if not isinstance(payload, list) or len(payload) != 2:
        raise _HttpError(400, f"invalid page_token {token!r}")
    return payload


class _Query:
    """Validated access to one request's query parameters (last value wins)."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

    def text(self, name: str, required: bool = False) -> str | None:
        value = self.raw.get(name)
        if value is None or value == "":
            if required:
                raise _HttpError(400, f"missing required parameter {name!r}")
            return None
        return value

    def choice(self, name: str, allowed: frozenset[str], default: str | None = None) -> str | None:
        value = self.text(name)
        if value is None:
            return default
        if value not in allowed:
            raise _HttpError(400, f"invalid {name} {value!r}; expected one of {sorted(allowed)}")
        return value

    def symbols(self, required: bool = True) -> list[str]:
        value = self.text("symbols", required=required)
        if value is None:
            return []
        names = sorted({name.strip() for name in value.split(",") if name.strip()})
        if not names and required:
            raise _HttpError(400, f"invalid symbols {value!r}")
        return names

    def limit(self, default: int, maximum: int) -> int:
        value = self.text("limit")
        if value is None:
            return default
        try:
            limit = int(value)
        except ValueError:
            raise _HttpError(400, f"invalid limit {value!r}; expected an integer") from None
        if not 1 <= limit <= maximum:
            raise _HttpError(400, f"invalid limit {limit}; expected 1 to {maximum}")
        return limit

    def instant_ns(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise _HttpError(400, f"invalid {name} {value!r}; expected RFC-3339 or YYYY-MM-DD") from None
        if stamp is pd.NaT:
            raise _HttpError(400, f"invalid {name} {value!r}; expected RFC-3339 or YYYY-MM-DD")
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return int(stamp.value)

    def day(self, name: str) -> date | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise _HttpError(400, f"invalid {name} {value!r}; expected YYYY-MM-DD") from None

    def number(self, name: str) -> float | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise _HttpError(400, f"invalid {name} {value!r}; expected a number") from None

    def sort_descending(self) -> bool:
        return self.choice("sort", frozenset({"asc", "desc"}), "asc") == "desc"


def _timeframe_key(value: str) -> str:
    """Alpaca's canonical spelling of a timeframe (``1D`` -> ``1Day``); :class:`_HttpError` if invalid."""
    match = _TIMEFRAME.match(value)
    if match is None or int(match[1]) < 1:
        raise _HttpError(400, f"invalid timeframe {value!r}; expected e.g. 1Min, 15Min, 1Hour, 1Day")
    return f"{int(match[1])}{_UNIT[match[2]]}"


def _page_series(
    store: dict[str, _Series],
    symbols: list[str],
    start_ns: int | None,
    end_ns: int | None,
    limit: int,
    descending: bool,
    token: str | None,
) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
    """One page of at most ``limit`` items across ``symbols`` (sorted) and the next page's token.

    The token is ``[symbol, index]``: the next item to serve is ``store[symbol].items[index]``.
    """
    first, resume = 0, None
    if token is not None:
        symbol, resume = _decode_token(token)
        if symbol not in symbols or not isinstance(resume, int):
            raise _HttpError(400, f"invalid page_token {token!r} for symbols {symbols}")
        first = symbols.index(symbol)
    page: dict[str, list[dict[str, Any]]] = {}
    remaining = limit
    for k in range(first, len(symbols)):
        symbol = symbols[k]
        series = store.get(symbol)
        if series is None:
            continue
        lo, hi = series.bounds(start_ns, end_ns)
        if descending:
            top = hi - 1 if k != first or resume is None else min(hi - 1, resume)
            count = top - lo + 1
        else:
            bottom = lo if k != first or resume is None else max(lo, resume)
            count = hi - bottom
        if count <= 0:
            continue
        if remaining == 0:
            return page, _encode_token([symbol, top if descending else bottom])
        take = min(count, remaining)
        if descending:
            page[symbol] = series.items[top - take + 1 : top + 1][::-1]
        else:
            page[symbol] = series.items[bottom : bottom + take]
        remaining -= take
        if take < count:
            return page, _encode_token([symbol, top - take if descending else bottom + take])
    return page, None


def _series_page(
    q: _Query, store: dict[str, _Series], name: str, symbols: list[str], single: bool
) -> dict[str, Any]:
    """The JSON page of ``store``'s items under key ``name`` (``bars`` or ``trades``) for ``symbols``.

    ``single`` is the one-symbol endpoint's form (``/v2/stocks/{symbol}/...``): a list of items and
    the ``symbol``, rather than a mapping of symbol to items.
    """
    page, token = _page_series(
        store,
        symbols,
        q.instant_ns("start"),
        q.instant_ns("end"),
        q.limit(1000, MAX_LIMIT),
        q.sort_descending(),
        q.text("page_token"),
    )
    if single:
        return {name: page.get(symbols[0], []), "symbol": symbols[0], "next_page_token": token}
    return {name: page, "next_page_token": token}


class AlpacaMarketDataServer(ThreadedJsonHttpServer):
    """Alpaca's market-data REST API over loaded Arrow tables, on ``127.0.0.1`` (see module doc).

    Args:
        api_key: the key id clients must send as ``APCA-API-KEY-ID``.
        secret_key: the secret clients must send as ``APCA-API-SECRET-KEY``.
        host: interface to bind.
        port: TCP port; 0 picks a free one (read :attr:`url` after :meth:`start`).
        latency_s: seconds each request sleeps before being answered.
    """

    error = DataError
    label = "alpaca test server"
    server_version = "amcp-alpaca-rest/1"

    def __init__(
        self,
        api_key: str = "test-key",
        secret_key: str = "test-secret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(host=host, port=port, latency_s=latency_s)
        self.api_key = api_key
        self.secret_key = secret_key
        self._lock = threading.Lock()
        self._bars: dict[str, dict[str, _Series]] = {}
        self._bar_tables: dict[str, pa.Table] = {}
        self._trades: dict[str, _Series] = {}
        self._trade_table = TICK_SCHEMA.empty_table()
        self._chain_table = OPTION_CHAIN_SCHEMA.empty_table()
        self._snapshots: dict[str, dict[str, Any]] = {}
        self._actions_table = CORPORATE_ACTION_SCHEMA.empty_table()
        self._actions: list[tuple[str, str, str, dict[str, Any]]] = []
        self._log: list[RequestRecord] = []
        self._fail_next: list[tuple[int, float | None]] = []
        self._fail_every: tuple[int, int] | None = None
        self._drop_next = 0
        self._respond_next: list[tuple[int, bytes]] = []
        self._served = 0

    # ----------------------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Bind and serve in a daemon thread (nothing more if already serving); return ``self``.

        Raises:
            DataError: if ``host:port`` cannot be bound.
        """
        if self._http is not None:
            return self
        return super().start()

    def stop(self) -> None:
        """Stop serving and release the port: :meth:`close`."""
        self.close()

    # ----------------------------------------------------------------------------- data

    def add_bars(self, table: pa.Table, timeframe: str = "1Day") -> None:
        """Serve ``table`` (:data:`BAR_SCHEMA`) as ``timeframe`` bars, added to those already loaded.

        Raises:
            DataError: on a bad timeframe, a table not matching the schema, or duplicate
                ``(symbol, ts)`` rows.
        """
        try:
            key = _timeframe_key(timeframe)
        except _HttpError as exc:
            raise DataError(f"alpaca test server: {exc.message}") from None
        table = _conform(table, BAR_SCHEMA, "bars")
        with self._lock:
            combined = pa.concat_tables([self._bar_tables.get(key, BAR_SCHEMA.empty_table()), table])
            combined = _sorted_unique(combined, ["symbol", "ts"], f"{key} bars")
            ts = combined.column("ts").cast(pa.int64()).to_numpy()
            bodies = [
                _drop_nulls({"t": t, "o": o, "h": h, "l": low, "c": c, "v": v, "n": n, "vw": vw})
                for t, o, h, low, c, v, n, vw in zip(
                    _rfc3339(ts),
                    *(_column(combined, name) for name in ("open", "high", "low", "close", "volume")),
                    _column(combined, "trade_count"),
                    _column(combined, "vwap"),
                    strict=True,
                )
            ]
            self._bar_tables[key] = combined
            self._bars[key] = _group_series(combined, bodies, "ts")

    def add_trades(self, table: pa.Table) -> None:
        """Serve ``table`` (:data:`TICK_SCHEMA`) as trades, added to those already loaded.

        ``conditions`` (comma-joined in the store) is served as Alpaca's list of codes.

        Raises:
            DataError: on a table not matching the schema or duplicate ``(symbol, ts, trade_id)``.
        """
        table = _conform(table, TICK_SCHEMA, "trades")
        with self._lock:
            combined = pa.concat_tables([self._trade_table, table])
            combined = _sorted_unique(combined, ["symbol", "ts", "trade_id"], "trades")
            ts = combined.column("ts").cast(pa.int64()).to_numpy()
            bodies = [
                _drop_nulls(
                    {"t": t, "x": x, "p": p, "s": s, "c": None if c is None else c.split(","), "i": i, "z": z}
                )
                for t, x, p, s, c, i, z in zip(
                    _rfc3339(ts),
                    *(_column(combined, name) for name in ("exchange", "price", "size", "conditions")),
                    _column(combined, "trade_id"),
                    _column(combined, "tape"),
                    strict=True,
                )
            ]
            self._trade_table = combined
            self._trades = _group_series(combined, bodies, "ts")

    def add_option_chain(self, table: pa.Table) -> None:
        """Serve ``table`` (:data:`OPTION_CHAIN_SCHEMA`) as option snapshots: each contract's latest row.

        A snapshot has ``latestQuote`` (bid/ask and sizes at ``quote_ts``), ``latestTrade``
        (``last`` at ``quote_ts``; the schema has no trade size, so it is sent as 0),
        ``dailyBar`` (``volume``, with ``last`` as its OHLC), ``impliedVolatility`` and
        ``greeks`` (only when all five are present, as alpaca-py requires). ``open_interest`` and
        ``underlying_price`` are not part of Alpaca's snapshot and are not served.

        Raises:
            DataError: on a table not matching the schema or duplicate ``(symbol, quote_ts)``.
        """
        table = _conform(table, OPTION_CHAIN_SCHEMA, "option chain")
        with self._lock:
            combined = pa.concat_tables([self._chain_table, table])
            combined = _sorted_unique(combined, ["symbol", "quote_ts"], "option chain")
            symbols = np.asarray(_column(combined, "symbol"), dtype=object)
            is_last = np.r_[symbols[1:] != symbols[:-1], True] if len(symbols) else np.array([], dtype=bool)
            latest = combined.filter(pa.array(is_last))
            stamps = _rfc3339(latest.column("quote_ts").cast(pa.int64()).to_numpy())
            snapshots: dict[str, dict[str, Any]] = {}
            for row, stamp in zip(latest.to_pylist(), stamps, strict=True):
                snapshots[row["symbol"]] = _snapshot_body(row, stamp)
            self._chain_table = combined
            self._snapshots = snapshots

    def add_corporate_actions(self, table: pa.Table) -> None:
        """Serve ``table`` (:data:`CORPORATE_ACTION_SCHEMA`) from ``/v1/corporate-actions``.

        A split of ratio ``r`` becomes a forward split (``r > 1``) or reverse split (``r < 1``)
        with the smallest integer ``new_rate``/``old_rate`` pair whose quotient is ``r``
        (denominators up to 1,000); a dividend becomes a cash dividend with ``rate = cash``, paid
        (``payable_date`` and ``process_date``) 14 days after ``ex_date``. The ``start``/``end``
        query filters on ``process_date``, as Alpaca's does.

        Raises:
            DataError: on a table not matching the schema, an unknown action, a split without a
                positive ratio other than 1, or a dividend without a cash amount.
        """
        table = _conform(table, CORPORATE_ACTION_SCHEMA, "corporate actions")
        actions = [_action_body(row) for row in table.to_pylist()]
        with self._lock:
            self._actions_table = pa.concat_tables([self._actions_table, table])
            self._actions = sorted([*self._actions, *actions], key=lambda item: (item[0], item[3]["id"]))

    # ----------------------------------------------------------------------------- faults

    def fail_next(self, n: int, status: int = 429, retry_after_s: float | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and a ``Retry-After`` header if given)."""
        with self._lock:
            self._fail_next.extend([(status, retry_after_s)] * n)

    def fail_every(self, k: int, status: int = 429) -> None:
        """Answer every ``k``-th request from now on with ``status``; ``k = 0`` stops it."""
        with self._lock:
            self._fail_every = (k, status) if k > 0 else None
            self._served = 0

    def drop_connection_next(self, n: int) -> None:
        """Close the connection of the next ``n`` requests without answering."""
        with self._lock:
            self._drop_next += n

    def respond_next(self, n: int, body: bytes, status: int = 200) -> None:
        """Answer the next ``n`` authorised requests with ``body`` verbatim (e.g. malformed JSON)."""
        with self._lock:
            self._respond_next.extend([(status, body)] * n)

    # ----------------------------------------------------------------------------- log

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def request_count(self) -> int:
        """Number of requests answered so far (dropped connections included)."""
        with self._lock:
            return len(self._log)

    @property
    def status_counts(self) -> Counter[int]:
        """Requests answered so far, by HTTP status (0 for a dropped connection)."""
        with self._lock:
            return Counter(record.status for record in self._log)

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._log.clear()

    # ----------------------------------------------------------------------------- serving

    def _record(self, path: str, query: dict[str, str], status: int) -> None:
        with self._lock:
            self._log.append(RequestRecord(path, query, status))

    def _next_fault(self) -> tuple[str, int, float | None]:
        """The fault for the request now arriving: ``("drop" | "fail" | "", status, retry_after_s)``."""
        with self._lock:
            self._served += 1
            if self._drop_next > 0:
                self._drop_next -= 1
                return "drop", 0, None
            if self._fail_next:
                status, retry_after = self._fail_next.pop(0)
                return "fail", status, retry_after
            if self._fail_every is not None and self._served % self._fail_every[0] == 0:
                return "fail", self._fail_every[1], None
            return "", 0, None

    def _take_body_override(self) -> tuple[int, bytes] | None:
        with self._lock:
            return self._respond_next.pop(0) if self._respond_next else None

    def _authorised(self, key: str | None, secret: str | None) -> bool:
        return key == self.api_key and secret == self.secret_key

    def _answer(self, request: HttpRequest) -> HttpAnswer | None:
        """Inject the next fault, else check the key pair and answer :meth:`route`'s JSON (logged)."""
        path, query = request.path, request.query
        fault, status, retry_after = self._next_fault()
        if fault == "drop":
            self._record(path, query, 0)
            return None
        if fault == "fail":
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return self._error(path, query, _HttpError(status, status_phrase(status)), headers)
        key, secret = request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")
        if not self._authorised(key, secret):
            return self._error(path, query, _HttpError(401, "request is not authorized", 40110000))
        override = self._take_body_override()
        if override is not None:
            self._record(path, query, override[0])
            return HttpAnswer(override[0], override[1])
        try:
            body = self.route(path, query)
        except _HttpError as exc:
            return self._error(path, query, exc)
        except Exception as exc:  # noqa: BLE001 - a server bug must answer 500, not hang the client
            logger.exception("alpaca test server: error serving %s", request.target)
            return self._error(path, query, _HttpError(500, f"internal error: {exc}"))
        answer = json_answer(200, body)
        self._record(path, query, 200)
        return answer

    def _error(
        self, path: str, query: dict[str, str], error: _HttpError, headers: dict[str, str] | None = None
    ) -> HttpAnswer:
        """Log and answer ``error`` as Alpaca's ``{"code": ..., "message": ...}`` body."""
        self._record(path, query, error.status)
        return json_answer(error.status, {"code": error.code, "message": error.message}, headers)

    def route(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        """The JSON body for an authorised ``GET path?query``; raises :class:`_HttpError` otherwise."""
        q = _Query(query)
        parts = [part for part in path.split("/") if part]
        with self._lock:
            if parts in (["v2", "stocks", "bars"], ["v1beta1", "options", "bars"]):
                return self._bars_page(q, q.symbols(), single=False)
            if len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "bars":
                return self._bars_page(q, [parts[2]], single=True)
            if parts == ["v2", "stocks", "trades"]:
                return self._trades_page(q, q.symbols(), single=False)
            if len(parts) == 4 and parts[:2] == ["v2", "stocks"] and parts[3] == "trades":
                return self._trades_page(q, [parts[2]], single=True)
            if parts == ["v2", "stocks", "bars", "latest"]:
                series = self._bars.get("1Min", {})
                return {"bars": {s: series[s].items[-1] for s in q.symbols() if s in series}}
            if parts == ["v2", "stocks", "trades", "latest"]:
                return {"trades": {s: self._trades[s].items[-1] for s in q.symbols() if s in self._trades}}
            if parts == ["v1beta1", "options", "snapshots"]:
                return self._snapshots_page(q, None, q.symbols())
            if len(parts) == 4 and parts[:3] == ["v1beta1", "options", "snapshots"]:
                return self._snapshots_page(q, parts[3], None)
            if parts == ["v1", "corporate-actions"]:
                return self._actions_page(q)
        raise _HttpError(404, f"endpoint not found: {path}")

    def _bars_page(self, q: _Query, symbols: list[str], single: bool) -> dict[str, Any]:
        timeframe = _timeframe_key(q.text("timeframe", required=True) or "")
        q.choice("feed", _FEEDS)
        adjustment = q.text("adjustment")
        if adjustment is not None and not set(adjustment.split(",")) <= _ADJUSTMENTS:
            raise _HttpError(400, f"invalid adjustment {adjustment!r}; expected {sorted(_ADJUSTMENTS)}")
        return _series_page(q, self._bars.get(timeframe, {}), "bars", symbols, single)

    def _trades_page(self, q: _Query, symbols: list[str], single: bool) -> dict[str, Any]:
        q.choice("feed", _FEEDS)
        return _series_page(q, self._trades, "trades", symbols, single)

    def _snapshots_page(self, q: _Query, underlying: str | None, symbols: list[str] | None) -> dict[str, Any]:
        q.choice("feed", _OPTION_FEEDS)
        limit = q.limit(100, MAX_OPTION_LIMIT)
        if underlying is not None:
            chosen = self._chain_symbols(q, underlying)
        else:
            chosen = [s for s in symbols or [] if s in self._snapshots]
        token = q.text("page_token")
        first = 0
        if token is not None:
            kind, after = _decode_token(token)
            if kind != "snapshots" or not isinstance(after, str):
                raise _HttpError(400, f"invalid page_token {token!r}")
            first = bisect_left(chosen, after)
        page = chosen[first : first + limit]
        more = first + limit < len(chosen)
        return {
            "snapshots": {symbol: self._snapshots[symbol] for symbol in page},
            "next_page_token": _encode_token(["snapshots", chosen[first + limit]]) if more else None,
        }

    def _chain_symbols(self, q: _Query, underlying: str) -> list[str]:
        """Sorted OCC symbols of ``underlying`` passing the chain endpoint's filters."""
        table = self._chain_table
        mask = pc.equal(table.column("underlying"), underlying)
        kind = q.choice("type", frozenset({"call", "put"}))
        if kind is not None:
            mask = pc.and_(mask, pc.equal(table.column("right"), "C" if kind == "call" else "P"))
        for name, op in (("strike_price_gte", pc.greater_equal), ("strike_price_lte", pc.less_equal)):
            bound = q.number(name)
            if bound is not None:
                mask = pc.and_(mask, op(table.column("strike"), bound))
        for name, op in (
            ("expiration_date", pc.equal),
            ("expiration_date_gte", pc.greater_equal),
            ("expiration_date_lte", pc.less_equal),
        ):
            day = q.day(name)
            if day is not None:
                mask = pc.and_(mask, op(table.column("expiry"), pa.scalar(day, pa.date32())))
        root = q.text("root_symbol")
        if root is not None:
            mask = pc.and_(mask, pc.starts_with(table.column("symbol"), root))
        return sorted(set(table.filter(mask).column("symbol").to_pylist()))

    def _actions_page(self, q: _Query) -> dict[str, Any]:
        symbols = set(q.symbols(required=False))
        types_text = q.text("types")
        types = set(types_text.split(",")) if types_text else set(_ACTION_TYPES)
        if not types <= _ACTION_TYPES:
            unknown = sorted(types - _ACTION_TYPES)
            raise _HttpError(400, f"invalid types {unknown}; expected some of {sorted(_ACTION_TYPES)}")
        start, end = q.day("start"), q.day("end")
        limit = q.limit(100, MAX_OPTION_LIMIT)
        descending = q.sort_descending()
        chosen = [
            item
            for item in self._actions
            if item[1] in types
            and (not symbols or item[3]["symbol"] in symbols)
            and (start is None or item[0] >= start.isoformat())
            and (end is None or item[0] <= end.isoformat())
        ]
        if descending:
            chosen.reverse()
        token = q.text("page_token")
        first = 0
        if token is not None:
            kind, action_id = _decode_token(token)
            ids = [item[3]["id"] for item in chosen]
            if kind != "corporate_actions" or action_id not in ids:
                raise _HttpError(400, f"invalid page_token {token!r}")
            first = ids.index(action_id)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for _, _, group, body in chosen[first : first + limit]:
            grouped.setdefault(group, []).append(body)
        more = first + limit < len(chosen)
        next_token = _encode_token(["corporate_actions", chosen[first + limit][3]["id"]]) if more else None
        return {"corporate_actions": grouped, "next_page_token": next_token}


def _snapshot_body(row: dict[str, Any], stamp: str) -> dict[str, Any]:
    """Alpaca's option snapshot JSON for one OPTION_CHAIN_SCHEMA row stamped ``stamp``."""
    body: dict[str, Any] = {}
    quote = _drop_nulls({"bp": row["bid"], "bs": row["bid_size"], "ap": row["ask"], "as": row["ask_size"]})
    if quote:
        body["latestQuote"] = {"t": stamp, "bx": "", "ax": "", "c": "", **quote}
    if row["last"] is not None:
        body["latestTrade"] = {"t": stamp, "p": row["last"], "s": 0, "x": "", "c": ""}
        if row["volume"] is not None:
            last = row["last"]
            body["dailyBar"] = {"t": stamp, "o": last, "h": last, "l": last, "c": last, "v": row["volume"]}
    if row["iv"] is not None:
        body["impliedVolatility"] = row["iv"]
    greeks = {name: row[name] for name in ("delta", "gamma", "rho", "theta", "vega")}
    if all(value is not None for value in greeks.values()):
        body["greeks"] = greeks
    return body


def _action_body(row: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
    """``(process_date, type, response group, JSON body)`` of one CORPORATE_ACTION_SCHEMA row."""
    symbol, ex_date, action = row["symbol"], row["ex_date"], row["action"]
    ident = str(uuid.uuid5(_ACTION_NAMESPACE, f"{symbol}|{ex_date}|{action}"))
    cusip = f"{zlib.crc32(symbol.encode()) % 10**9:09d}"
    if action == "split":
        ratio = row["ratio"]
        if ratio is None or not ratio > 0 or ratio == 1:
            raise DataError(
                f"alpaca test server: {symbol} split on {ex_date} needs a positive ratio other than 1 "
                f"(got {ratio})"
            )
        fraction = Fraction(ratio).limit_denominator(1000)
        common = {
            "id": ident,
            "symbol": symbol,
            "new_rate": float(fraction.numerator),
            "old_rate": float(fraction.denominator),
            "process_date": ex_date.isoformat(),
            "ex_date": ex_date.isoformat(),
            "record_date": (ex_date - timedelta(days=1)).isoformat(),
            "payable_date": (ex_date - timedelta(days=1)).isoformat(),
        }
        if ratio > 1:
            return ex_date.isoformat(), "forward_split", "forward_splits", {**common, "cusip": cusip}
        reverse = {**common, "old_cusip": cusip, "new_cusip": cusip}
        return ex_date.isoformat(), "reverse_split", "reverse_splits", reverse
    if action == "dividend":
        cash = row["cash"]
        if cash is None:
            raise DataError(f"alpaca test server: {symbol} dividend on {ex_date} has no cash amount")
        payable = ex_date + timedelta(days=_DIVIDEND_PAYABLE_DAYS)
        body = {
            "id": ident,
            "symbol": symbol,
            "cusip": cusip,
            "rate": cash,
            "special": False,
            "foreign": False,
            "process_date": payable.isoformat(),
            "ex_date": ex_date.isoformat(),
            "record_date": (ex_date + timedelta(days=1)).isoformat(),
            "payable_date": payable.isoformat(),
        }
        return payable.isoformat(), "cash_dividend", "cash_dividends", body
    raise DataError(
        f"alpaca test server: unknown corporate action {action!r} for {symbol}; expected split or dividend"
    )


__all__ = ["MAX_LIMIT", "MAX_OPTION_LIMIT", "AlpacaMarketDataServer", "RequestRecord"]
