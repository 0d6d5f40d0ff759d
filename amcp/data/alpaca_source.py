"""Alpaca historical market data as Arrow tables in the store's schemas.

:class:`AlpacaHistoricalSource` drives the real alpaca-py clients (``StockHistoricalDataClient``,
``OptionHistoricalDataClient``, ``CorporateActionsClient``; ``url_override`` points them at a
proxy or at :class:`amcp.testing.alpaca_rest.AlpacaMarketDataServer`) in raw mode and converts
their JSON to :data:`~amcp.data.schemas.BAR_SCHEMA`, :data:`~amcp.data.schemas.TICK_SCHEMA`,
:data:`~amcp.data.schemas.OPTION_CHAIN_SCHEMA` and
:data:`~amcp.data.schemas.CORPORATE_ACTION_SCHEMA` tables. Raw mode keeps Alpaca's
nanosecond timestamps, which alpaca-py's models would truncate to microseconds.

Transport. Each client's ``requests.Session`` is replaced by a :class:`_PacedSession`, through
which every HTTP request passes, each page of a paginated call and each retry included:

1. it takes a token from the rate limiter (``rate_limiter.acquire()``);
2. a 429, a 5xx or a connection error/timeout is retried, up to ``max_retries`` times, after
   ``Retry-After`` seconds when the response carries that header, else after an exponential
   backoff with jitter: ``min(max_backoff_s, backoff_s * 2**attempt) * U(0.5, 1.0)``;
3. any other 4xx fails at once with a :class:`DataError` naming the request and Alpaca's message.

Only the failed page is retried: pagination resumes where it stopped. alpaca-py's own retry (3
attempts, 3 s apart, on 429 and 504) never sees an error response, and is switched off as
well, so the behaviour above is the only one. Pages hold at most ``page_limit`` items.

Conversion: daily bars are requested and stored raw (unadjusted; adjustment happens on read).
A response alpaca-py cannot page through, or an item missing a required field or holding a
non-numeric one, raises a :class:`DataError` naming the symbol and the field; nothing is
silently zeroed. Optional fields (a bar's ``vw``/``n``, a quote's sizes, greeks) become null.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, CorporateActionsType, DataFeed, OptionsFeed
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.requests import (
    CorporateActionsRequest,
    OptionChainRequest,
    StockBarsRequest,
    StockTradesRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from amcp.data.calendar import EXCHANGE_TIMEZONE
from amcp.data.ratelimit import RateLimiter, TokenBucket
from amcp.data.ratelimit import retry_after_s as parse_retry_after
from amcp.data.schemas import TS, BAR_SCHEMA, CORPORATE_ACTION_SCHEMA, OPTION_CHAIN_SCHEMA, TICK_SCHEMA
from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.errors import DataError, DomainError

logger = logging.getLogger(__name__)

MAX_PAGE_LIMIT = 10_000
"""Alpaca's largest page for bars and trades (option chains and corporate actions: 1,000)."""

DIVIDEND_PROCESS_LAG_DAYS = 90
"""Alpaca's corporate-actions ``start``/``end`` filter on ``process_date``, which for a cash
dividend is its payment date, weeks after ``ex_date``. Queries reach this many days past ``end``
and the results are then cut to ``ex_date <= end``."""

Instant = datetime | date | str | pd.Timestamp

_UNITS = {
    "Min": TimeFrameUnit.Minute,
    "T": TimeFrameUnit.Minute,
    "Hour": TimeFrameUnit.Hour,
    "H": TimeFrameUnit.Hour,
    "Day": TimeFrameUnit.Day,
    "D": TimeFrameUnit.Day,
    "Week": TimeFrameUnit.Week,
    "W": TimeFrameUnit.Week,
    "Month": TimeFrameUnit.Month,
    "M": TimeFrameUnit.Month,
}
_BAR_FIELDS = (("o", "open"), ("h", "high"), ("l", "low"), ("c", "close"), ("v", "volume"))
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class SourceStats:
    """Counters of one :class:`AlpacaHistoricalSource`: HTTP attempts, retries and seconds slept."""

    http_requests: int = 0
    retries: int = 0
    backoff_s: float = 0.0
    rate_limit_wait_s: float = 0.0


class _PacedSession(requests.Session):
    """A ``requests.Session`` that paces, retries and classifies every request (see module doc)."""

    def __init__(
        self,
        rate_limiter: RateLimiter,
        max_retries: int,
        backoff_s: float,
        max_backoff_s: float,
        timeout_s: float,
        sleep: Callable[[float], None],
        rng: random.Random,
    ) -> None:
        super().__init__()
        self.rate_limiter = rate_limiter
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.stats = SourceStats()
        self._sleep = sleep
        self._rng = rng
        self._stats_lock = threading.Lock()
        self._local = threading.local()

    @property
    def last_request(self) -> str:
        """The request this thread sent last, described as in error messages."""
        return str(getattr(self._local, "last", "no request yet"))

    def request(  # type: ignore[override]
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        """Send one request through the rate limiter, retrying transient failures.

        Raises:
            DataError: on a non-retryable 4xx, or when ``max_retries`` retries did not help.
        """
        kwargs.setdefault("timeout", self.timeout_s)
        described = _describe(str(method), str(url), kwargs.get("params"))
        self._local.last = described
        attempt = 0
        while True:
            waited_s = self.rate_limiter.acquire()
            with self._stats_lock:
                self.stats.http_requests += 1
                self.stats.rate_limit_wait_s += waited_s
            retry_after_s: float | None = None
            try:
                response = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = f"connection failed ({type(exc).__name__}: {exc})"
            except requests.RequestException as exc:
                reason = f"{type(exc).__name__}: {exc}"
                raise DataError(f"alpaca: {described} could not be sent ({reason})") from exc
            else:
                status = response.status_code
                if status < 400:
                    return response
                failure = f"HTTP {status}: {_alpaca_message(response)}"
                if status not in _RETRYABLE_STATUS:
                    raise DataError(f"alpaca: {described} was refused, {failure}")
                retry_after_s = parse_retry_after(response.headers)
            if attempt >= self.max_retries:
                raise DataError(f"alpaca: {described} failed after {attempt + 1} attempts; last: {failure}")
            delay_s = retry_after_s if retry_after_s is not None else self._backoff_s(attempt)
            logger.warning(
                "alpaca: %s: %s; retry %d/%d in %.2f s",
                described,
                failure,
                attempt + 1,
                self.max_retries,
                delay_s,
            )
            with self._stats_lock:
                self.stats.retries += 1
                self.stats.backoff_s += delay_s
            self._sleep(delay_s)
            attempt += 1

    def _backoff_s(self, attempt: int) -> float:
        """Seconds before retry ``attempt + 1``: capped exponential backoff, jittered to 50-100%."""
        return min(self.max_backoff_s, self.backoff_s * 2.0**attempt) * (0.5 + 0.5 * self._rng.random())


def _describe(method: str, url: str, params: Any) -> str:
    """``GET /v2/stocks/bars?symbols=...`` (no host, no credentials), cut to 300 characters."""
    path = urlsplit(url).path
    query = ""
    if isinstance(params, dict):
        query = "&".join(
            f"{key}={value.value if isinstance(value, Enum) else value}"
            for key, value in params.items()
            if value is not None
        )
    text = f"{method.upper()} {path}" + (f"?{query}" if query else "")
    return text if len(text) <= 300 else text[:297] + "..."


def _alpaca_message(response: requests.Response) -> str:
    """Alpaca's error message from ``{"code", "message"}``, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        return f"{body['message']} (code {body.get('code')})"
    return repr(response.text[:200]) if response.text else "empty body"


class _PageLimitMixin:
    """Caps alpaca-py's page size at ``self.amcp_page_limit`` items."""

    amcp_page_limit: int = MAX_PAGE_LIMIT

    def _get_marketdata(
        self,
        path: str,
        params: dict[str, Any],
        page_limit: int = MAX_PAGE_LIMIT,
        page_size: int | None = None,
        no_sub_key: bool = False,
    ) -> dict[str, Any]:
        return super()._get_marketdata(  # type: ignore[misc,no-any-return]
            path,
            params,
            page_limit=min(page_limit, self.amcp_page_limit),
            page_size=page_size,
            no_sub_key=no_sub_key,
        )


class _StockClient(_PageLimitMixin, StockHistoricalDataClient):
    pass


class _OptionClient(_PageLimitMixin, OptionHistoricalDataClient):
    pass


class _CorporateActionsClient(_PageLimitMixin, CorporateActionsClient):
    pass


def _install(client: Any, session: _PacedSession, page_limit: int) -> None:
    """Route ``client``'s requests through ``session`` and switch off alpaca-py's own retry."""
    client._session = session
    client._retry = 0
    client._retry_codes = []
    client.amcp_page_limit = page_limit


class AlpacaHistoricalSource:
    """Alpaca's historical stock, option-chain and corporate-action data as store tables.

    Args:
        api_key: Alpaca key id.
        secret_key: Alpaca secret key.
        url_override: base URL instead of ``https://data.alpaca.markets`` (a proxy, or the
            test server's ``url``).
        rate_limiter: paces every HTTP request, retries included; default ``TokenBucket()``
            (200 per minute, Alpaca's free-plan limit, evenly spaced). Pass one shared limiter
            to every source using the same key.
        max_retries: retries of one request after a 429, a 5xx or a connection error.
        backoff_s: first retry delay in seconds, doubled per retry before jitter.
        max_backoff_s: cap on one retry delay in seconds (``Retry-After`` is honoured as sent).
        page_limit: items per page, 1 to 10,000 (option chains and corporate actions are also
            capped at 1,000 by Alpaca).
        feed: stock feed (``"sip"``, ``"iex"``, ...); ``None`` lets Alpaca pick by plan.
        sleep: sleeps between retries (injected so tests do not wait).
        symbols_per_request: symbols per multi-symbol request (keeps URLs short).
        timeout_s: HTTP connect/read timeout per attempt, in seconds.
        option_feed: option feed (``"opra"`` or ``"indicative"``); ``None`` lets Alpaca pick.
        seed: seeds the backoff jitter, for reproducible runs.

    Raises:
        DataError: if a key is empty, a numeric argument is out of range or a feed is unknown.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        url_override: str | None = None,
        rate_limiter: RateLimiter | None = None,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        page_limit: int = MAX_PAGE_LIMIT,
        feed: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        symbols_per_request: int = 100,
        timeout_s: float = 30.0,
        option_feed: str | None = None,
        seed: int | None = None,
    ) -> None:
        if not api_key or not secret_key:
            raise DataError("alpaca source: api_key and secret_key are both required (got an empty one)")
        _check_int("max_retries", max_retries, 0, 1_000)
        _check_int("page_limit", page_limit, 1, MAX_PAGE_LIMIT)
        _check_int("symbols_per_request", symbols_per_request, 1, 10_000)
        if not 0 <= backoff_s <= max_backoff_s:
            raise DataError(
                f"alpaca source: need 0 <= backoff_s <= max_backoff_s (got {backoff_s}, {max_backoff_s})"
            )
        if not timeout_s > 0:
            raise DataError(f"alpaca source: timeout_s must be positive (got {timeout_s!r})")
        self._feed = None if feed is None else _enum(DataFeed, feed, "feed")
        self._option_feed = None if option_feed is None else _enum(OptionsFeed, option_feed, "option_feed")
        self._symbols_per_request = symbols_per_request
        self._session = _PacedSession(
            rate_limiter if rate_limiter is not None else TokenBucket(),
            max_retries,
            backoff_s,
            max_backoff_s,
            timeout_s,
            sleep,
            random.Random(seed),
        )
        kwargs: dict[str, Any] = {"api_key": api_key, "secret_key": secret_key, "raw_data": True}
        self._stocks = _StockClient(url_override=url_override, **kwargs)
        self._options = _OptionClient(url_override=url_override, **kwargs)
        self._actions = _CorporateActionsClient(url_override=url_override, **kwargs)
        for client in (self._stocks, self._options, self._actions):
            _install(client, self._session, page_limit)

    @property
    def stats(self) -> SourceStats:
        """HTTP attempts, retries and time slept so far (live counters)."""
        return self._session.stats

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def __enter__(self) -> AlpacaHistoricalSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- bars, trades

    def bars(
        self,
        symbols: Sequence[str],
        start: Instant,
        end: Instant,
        timeframe: str = "1Day",
        adjustment: str = "raw",
    ) -> pa.Table:
        """Bars of ``symbols`` from ``start`` to ``end`` inclusive, as :data:`BAR_SCHEMA` sorted by
        (symbol, ts).

        A ``date`` (or ``"YYYY-MM-DD"``) bound is a New York calendar day, whole; a naive
        datetime is UTC (as in alpaca-py). Daily bars are stamped at midnight New York of their
        session; intraday bars at the start of their interval. ``vwap``/``trade_count`` come from
        Alpaca's ``vw``/``n``.

        Raises:
            DataError: on bad arguments, a failed request, or a malformed bar (naming symbol and field).
        """
        frame = _timeframe(timeframe)
        adjust = _enum(Adjustment, adjustment, "adjustment")
        lo, hi = _bounds(start, end)
        tables = []
        for chunk in self._chunks(symbols):
            request = StockBarsRequest(
                symbol_or_symbols=chunk, timeframe=frame, start=lo, end=hi, adjustment=adjust, feed=self._feed
            )
            raw = self._fetch(f"bars {timeframe} for {_names(chunk)}", self._stocks.get_stock_bars, request)
            tables.extend(_bars_table(symbol, rows) for symbol, rows in _symbol_lists(raw, "bars"))
        return _finish(tables, BAR_SCHEMA, ["symbol", "ts"], "bars")

    def trades(self, symbols: Sequence[str], start: Instant, end: Instant) -> pa.Table:
        """Trades of ``symbols`` from ``start`` to ``end`` inclusive, as :data:`TICK_SCHEMA`.

        Timestamps keep Alpaca's nanoseconds; ``conditions`` are joined with commas. Sorted by
        (symbol, ts, trade_id). Bounds as in :meth:`bars`.

        Raises:
            DataError: on a failed request or a malformed trade (naming symbol and field).
        """
        lo, hi = _bounds(start, end)
        tables = []
        for chunk in self._chunks(symbols):
            request = StockTradesRequest(symbol_or_symbols=chunk, start=lo, end=hi, feed=self._feed)
            raw = self._fetch(f"trades for {_names(chunk)}", self._stocks.get_stock_trades, request)
            tables.extend(_trades_table(symbol, rows) for symbol, rows in _symbol_lists(raw, "trades"))
        return _finish(tables, TICK_SCHEMA, ["symbol", "ts", "trade_id"], "trades")

    # ----------------------------------------------------------------------------- options

    def option_chain(self, underlying: str) -> pa.Table:
        """The latest snapshot of every listed contract on ``underlying``, as :data:`OPTION_CHAIN_SCHEMA`.

        ``expiry``, ``strike`` and ``right`` are parsed from the OCC symbol. ``quote_ts`` is the
        latest quote's time (the latest trade's when there is no quote); a contract with
        neither has no data and is left out. ``volume`` is the daily bar's; Alpaca's snapshot
        carries no ``open_interest`` or ``underlying_price`` (null). ``iv`` and greeks are
        Alpaca's, as given. Sorted by symbol.

        Raises:
            DataError: on a failed request, an unparseable OCC symbol, or a malformed snapshot.
        """
        if not isinstance(underlying, str) or not underlying.strip():
            raise DataError(f"alpaca option chain: underlying must be a symbol (got {underlying!r})")
        request = OptionChainRequest(underlying_symbol=underlying.strip().upper(), feed=self._option_feed)
        raw = self._fetch(f"option chain of {underlying}", self._options.get_option_chain, request)
        if not isinstance(raw, dict):
            kind = type(raw).__name__
            raise DataError(f"alpaca option chain of {underlying}: expected snapshots by symbol (got {kind})")
        table = _chain_table(request.underlying_symbol, raw)
        return table.sort_by([("symbol", "ascending"), ("quote_ts", "ascending")])

    # ----------------------------------------------------------------------------- corporate actions

    def corporate_actions(self, symbols: Sequence[str], start: Instant, end: Instant) -> pa.Table:
        """Splits and cash dividends of ``symbols`` with ``start <= ex_date <= end``, as
        :data:`CORPORATE_ACTION_SCHEMA`, sorted by (symbol, ex_date, action).

        A split's ``ratio`` is ``new_rate / old_rate`` (4.0 for a 4-for-1, 0.1 for a 1-for-10
        reverse split); a dividend's ``cash`` is Alpaca's ``rate`` in USD per share. Two actions
        of one kind on one symbol and ex-date (a regular and a special dividend) are combined:
        cash amounts add, split ratios multiply. Other kinds (stock dividends, spin-offs,
        mergers) are not requested.

        Raises:
            DataError: on a failed request or a malformed action (naming symbol and field).
        """
        first, last = _day(start, "start"), _day(end, "end")
        if first > last:
            raise DataError(f"alpaca corporate actions: start {first} is after end {last}")
        types = [
            CorporateActionsType.FORWARD_SPLIT,
            CorporateActionsType.REVERSE_SPLIT,
            CorporateActionsType.CASH_DIVIDEND,
        ]
        combined: dict[tuple[str, date, str], float] = {}
        for chunk in self._chunks(symbols):
            request = CorporateActionsRequest(
                symbols=list(chunk),
                types=types,
                start=first,
                end=last + timedelta(days=DIVIDEND_PROCESS_LAG_DAYS),
                limit=None,  # alpaca-py reads `limit` as a cap on the total; its default 1000 truncates
            )
            what = f"corporate actions of {_names(chunk)}"
            raw = self._fetch(what, self._actions.get_corporate_actions, request)
            if not isinstance(raw, dict):
                kind = type(raw).__name__
                raise DataError(f"alpaca {what}: expected an object of action lists (got {kind})")
            for symbol, ex_date, action, value in _parse_actions(raw):
                if not first <= ex_date <= last:
                    continue
                key = (symbol, ex_date, action)
                if key in combined:
                    combined[key] = combined[key] * value if action == "split" else combined[key] + value
                else:
                    combined[key] = value
        rows = [
            {
                "symbol": symbol,
                "ex_date": ex_date,
                "action": action,
                "ratio": value if action == "split" else None,
                "cash": value if action == "dividend" else None,
            }
            for (symbol, ex_date, action), value in sorted(combined.items())
        ]
        return pa.Table.from_pylist(rows, schema=CORPORATE_ACTION_SCHEMA)

    # ----------------------------------------------------------------------------- plumbing

    def _chunks(self, symbols: Sequence[str]) -> Iterator[list[str]]:
        if isinstance(symbols, str):
            raise DataError(f"alpaca source: symbols must be a list of tickers, not the string {symbols!r}")
        names = sorted({str(s).strip().upper() for s in symbols if str(s).strip()})
        if not names:
            raise DataError(f"alpaca source: no symbols requested (got {list(symbols)!r})")
        for i in range(0, len(names), self._symbols_per_request):
            yield names[i : i + self._symbols_per_request]

    def _fetch(self, what: str, call: Callable[[Any], Any], request: Any) -> Any:
        """``call(request)``, turning alpaca-py's failures on a malformed response into :class:`DataError`."""
        try:
            return call(request)
        except DataError:
            raise
        except APIError as exc:  # not expected: the session raises first; kept as a safety net
            raise DataError(f"alpaca {what}: request failed: {exc}") from exc
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise DataError(
                f"alpaca {what}: the response to {self._session.last_request} could not be read "
                f"({type(exc).__name__}: {exc})"
            ) from exc


# --------------------------------------------------------------------------------- arguments


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DataError(f"alpaca source: {name} must be an integer from {low} to {high} (got {value!r})")


def _enum(kind: Any, value: str, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = [member.value for member in kind]
        raise DataError(f"alpaca source: unknown {name} {value!r}; expected one of {choices}") from None


def _timeframe(text: str) -> TimeFrame:
    """alpaca-py's ``TimeFrame`` for ``"1Day"``, ``"5Min"``, ``"1Hour"``, ..."""
    suffixes = sorted(_UNITS, key=len, reverse=True)
    unit = next((u for u in suffixes if isinstance(text, str) and text.endswith(u)), None)
    amount = text[: -len(unit)] if unit is not None else ""
    if unit is None or not amount.isdigit():
        raise DataError(f"alpaca source: invalid timeframe {text!r}; expected e.g. 1Min, 5Min, 1Hour, 1Day")
    try:
        return TimeFrame(int(amount), _UNITS[unit])
    except ValueError as exc:
        raise DataError(f"alpaca source: invalid timeframe {text!r}: {exc}") from None


def _bounds(start: Instant, end: Instant) -> tuple[datetime, datetime]:
    """UTC instants for an inclusive request: dates are whole New York days."""
    lo = _instant(start, "start", end_of_day=False)
    hi = _instant(end, "end", end_of_day=True)
    if lo > hi:
        raise DataError(f"alpaca source: start {lo.isoformat()} is after end {hi.isoformat()}")
    return lo.to_pydatetime(), hi.to_pydatetime()


def _is_day(value: Instant) -> bool:
    if isinstance(value, datetime):
        return False
    if isinstance(value, date):
        return True
    return isinstance(value, str) and len(value.strip()) == 10


def _instant(value: Instant, name: str, end_of_day: bool) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(
            f"alpaca source: invalid {name} {value!r}; expected a date, datetime or ISO string"
        ) from None
    if stamp is pd.NaT:
        raise DataError(f"alpaca source: invalid {name} {value!r}")
    if _is_day(value):
        day = stamp.normalize()
        if end_of_day:  # the last microsecond of the day (alpaca-py sends microseconds)
            next_midnight = (day + pd.Timedelta(days=1)).tz_localize(EXCHANGE_TIMEZONE)
            return (next_midnight - pd.Timedelta(microseconds=1)).tz_convert("UTC")
        return day.tz_localize(EXCHANGE_TIMEZONE).tz_convert("UTC")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _day(value: Instant, name: str) -> date:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise DataError(f"alpaca source: invalid {name} {value!r}; expected a date") from None
    if stamp is pd.NaT:
        raise DataError(f"alpaca source: invalid {name} {value!r}")
    return stamp.date()


def _names(symbols: Sequence[str]) -> str:
    text = ",".join(symbols)
    return text if len(text) <= 60 else f"{text[:57]}... ({len(symbols)} symbols)"


# --------------------------------------------------------------------------------- parsing


def _symbol_lists(raw: Any, what: str) -> Iterator[tuple[str, list[Any]]]:
    if not isinstance(raw, dict):
        raise DataError(f"alpaca {what}: expected an object keyed by symbol (got {type(raw).__name__})")
    for symbol, rows in raw.items():
        if not isinstance(rows, list):
            raise DataError(f"alpaca {what}: {symbol}: expected a list (got {type(rows).__name__})")
        yield symbol, rows


def _field(rows: list[Any], key: str, what: str, symbol: str) -> list[Any]:
    try:
        return [row.get(key) for row in rows]
    except AttributeError:
        bad = next(row for row in rows if not isinstance(row, dict))
        raise DataError(f"alpaca {what}: {symbol}: expected objects, got {bad!r}") from None


def _numbers(
    values: list[Any],
    arrow_type: pa.DataType,
    what: str,
    symbol: str,
    field: str,
    required: bool,
    labels: list[str] | None = None,
) -> pa.Array:
    """``values`` as an Arrow array; a :class:`DataError` naming the symbol (``labels[i]`` when
    given, else ``symbol`` and the item's index) and the field on a missing required value or a
    non-number."""

    def name(index: int) -> str:
        return labels[index] if labels is not None else f"{symbol} item {index}"

    for index, value in enumerate(values):
        if value is None:
            if required:
                raise DataError(f"alpaca {what}: {name(index)} lacks the required field '{field}'")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise DataError(f"alpaca {what}: {name(index)} field '{field}' must be a number (got {value!r})")
        elif pa.types.is_integer(arrow_type) and isinstance(value, float) and not value.is_integer():
            raise DataError(
                f"alpaca {what}: {name(index)} field '{field}' must be an integer (got {value!r})"
            )
    if pa.types.is_integer(arrow_type):
        values = [None if v is None else int(v) for v in values]
    return pa.array(values, type=arrow_type)


def _timestamps(
    values: list[Any], what: str, symbol: str, field: str = "t", labels: list[str] | None = None
) -> pa.Array:
    """RFC-3339 strings as ``timestamp[ns, UTC]``; a :class:`DataError` naming the symbol
    (``labels[i]`` when given) and the field if one is missing or unreadable."""

    def name(index: int) -> str:
        return labels[index] if labels is not None else f"{symbol} item {index}"

    for index, value in enumerate(values):
        if not isinstance(value, str):
            missing = "lacks the required field" if value is None else f"has a non-string ({value!r}) in"
            raise DataError(f"alpaca {what}: {name(index)} {missing} '{field}'")
    try:
        index = pd.to_datetime(values, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        for position, value in enumerate(values):
            try:
                pd.to_datetime([value], utc=True, format="ISO8601")
            except (ValueError, TypeError):
                raise DataError(
                    f"alpaca {what}: {name(position)} field '{field}' is not an RFC-3339 time (got {value!r})"
                ) from None
        raise DataError(f"alpaca {what}: {symbol} field '{field}' holds unreadable times") from None
    return pa.array(index.as_unit("ns").asi8, type=pa.int64()).cast(TS)


def _bars_table(symbol: str, rows: list[Any]) -> pa.Table:
    what = "bars"
    columns: dict[str, Any] = {
        "symbol": pa.array([symbol] * len(rows), pa.string()),
        "ts": _timestamps(_field(rows, "t", what, symbol), what, symbol),
    }
    for key, name in _BAR_FIELDS:
        columns[name] = _numbers(_field(rows, key, what, symbol), pa.float64(), what, symbol, key, True)
    columns["vwap"] = _numbers(_field(rows, "vw", what, symbol), pa.float64(), what, symbol, "vw", False)
    columns["trade_count"] = _numbers(_field(rows, "n", what, symbol), pa.int64(), what, symbol, "n", False)
    return pa.table(columns, schema=BAR_SCHEMA)


def _trades_table(symbol: str, rows: list[Any]) -> pa.Table:
    what = "trades"
    conditions = []
    for value in _field(rows, "c", what, symbol):
        if value is None or isinstance(value, str):
            conditions.append(value)
        elif isinstance(value, list) and all(isinstance(code, str) for code in value):
            conditions.append(",".join(value))
        else:
            raise DataError(f"alpaca trades: {symbol} field 'c' must list condition codes (got {value!r})")
    text = {}
    for key in ("x", "z"):
        values = _field(rows, key, what, symbol)
        bad = next((v for v in values if v is not None and not isinstance(v, str)), None)
        if bad is not None:
            raise DataError(f"alpaca trades: {symbol} field '{key}' must be a string (got {bad!r})")
        text[key] = values
    columns = {
        "symbol": pa.array([symbol] * len(rows), pa.string()),
        "ts": _timestamps(_field(rows, "t", what, symbol), what, symbol),
        "trade_id": _numbers(_field(rows, "i", what, symbol), pa.int64(), what, symbol, "i", required=True),
        "price": _numbers(_field(rows, "p", what, symbol), pa.float64(), what, symbol, "p", required=True),
        "size": _numbers(_field(rows, "s", what, symbol), pa.float64(), what, symbol, "s", required=True),
        "exchange": pa.array(text["x"], pa.string()),
        "conditions": pa.array(conditions, pa.string()),
        "tape": pa.array(text["z"], pa.string()),
    }
    return pa.table(columns, schema=TICK_SCHEMA)


def _finish(tables: list[pa.Table], schema: pa.Schema, keys: list[str], what: str) -> pa.Table:
    """Concatenate, sort by ``keys`` and refuse duplicated keys (a paging fault would cause them)."""
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    table = table.sort_by([(key, "ascending") for key in keys])
    if table.num_rows > 1:
        same = np.ones(table.num_rows - 1, dtype=bool)
        for key in keys:
            column = table.column(key)
            if key == "symbol":
                values = np.asarray(column.to_pylist(), dtype=object)
            else:
                values = column.cast(pa.int64()).to_numpy()
            same &= values[1:] == values[:-1]
        if same.any():
            row = int(np.flatnonzero(same)[0]) + 1
            duplicate = {key: table.column(key)[row].as_py() for key in keys}
            raise DataError(f"alpaca {what}: the response repeats the item {duplicate}")
    return table


def _sub(snapshot: dict[str, Any], key: str, symbol: str) -> dict[str, Any]:
    value = snapshot.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"alpaca option chain: {symbol} field '{key}' must be an object (got {value!r})")
    return value


def _chain_table(underlying: str, raw: dict[str, Any]) -> pa.Table:
    """OPTION_CHAIN_SCHEMA rows from ``{occ_symbol: snapshot}`` (unsorted)."""
    what = "option chain"
    symbols, stamps, expiries, strikes, rights = [], [], [], [], []
    number_names = ("bid", "ask", "bid_size", "ask_size", "last", "volume", "iv")
    numbers: dict[str, list[Any]] = {name: [] for name in number_names}
    greek_names = ("delta", "gamma", "theta", "vega", "rho")
    greeks: dict[str, list[Any]] = {name: [] for name in greek_names}
    skipped = 0
    for symbol, snapshot in raw.items():
        if not isinstance(snapshot, dict):
            raise DataError(f"alpaca option chain: {symbol}: expected a snapshot object (got {snapshot!r})")
        quote, trade = _sub(snapshot, "latestQuote", symbol), _sub(snapshot, "latestTrade", symbol)
        daily, greek = _sub(snapshot, "dailyBar", symbol), _sub(snapshot, "greeks", symbol)
        if not quote and not trade:
            skipped += 1
            continue
        stamp = quote.get("t") if quote else trade.get("t")
        try:
            contract = OptionContract.from_occ(symbol)
        except DomainError as exc:
            raise DataError(f"alpaca option chain of {underlying}: {exc}") from None
        symbols.append(symbol)
        stamps.append(stamp)
        expiries.append(contract.expiry)
        strikes.append(float(contract.strike))
        rights.append("C" if contract.right is OptionRight.CALL else "P")
        for name, source, key in (
            ("bid", quote, "bp"),
            ("ask", quote, "ap"),
            ("bid_size", quote, "bs"),
            ("ask_size", quote, "as"),
            ("last", trade, "p"),
            ("volume", daily, "v"),
        ):
            numbers[name].append(source.get(key))
        numbers["iv"].append(snapshot.get("impliedVolatility"))
        for name in greek_names:
            greeks[name].append(greek.get(name))
    if skipped:
        logger.info("alpaca option chain of %s: %d contracts had no quote or trade", underlying, skipped)
    columns: dict[str, Any] = {
        "underlying": pa.array([underlying] * len(symbols), pa.string()),
        "symbol": pa.array(symbols, pa.string()),
        "quote_ts": _timestamps(stamps, what, underlying, "latestQuote.t (or latestTrade.t)", labels=symbols),
        "expiry": pa.array(expiries, pa.date32()),
        "strike": pa.array(strikes, pa.float64()),
        "right": pa.array(rights, pa.string()),
    }
    for name, values in numbers.items():
        columns[name] = _numbers(values, pa.float64(), what, underlying, name, required=False, labels=symbols)
    columns["open_interest"] = pa.nulls(len(symbols), pa.float64())
    columns["underlying_price"] = pa.nulls(len(symbols), pa.float64())
    for name, values in greeks.items():
        label = f"greeks.{name}"
        columns[name] = _numbers(values, pa.float64(), what, underlying, label, False, labels=symbols)
    return pa.table({name: columns[name] for name in OPTION_CHAIN_SCHEMA.names}, schema=OPTION_CHAIN_SCHEMA)


def _positive(item: dict[str, Any], key: str, symbol: str, kind: str) -> float:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise DataError(
            f"alpaca corporate actions: {symbol} {kind} field '{key}' must be a positive number "
            f"(got {value!r})"
        )
    return float(value)


def _parse_actions(raw: dict[str, Any]) -> Iterator[tuple[str, date, str, float]]:
    """``(symbol, ex_date, "split" | "dividend", ratio or cash)`` of each split and cash dividend."""
    for group, items in raw.items():
        if group not in ("forward_splits", "reverse_splits", "cash_dividends"):
            continue
        if not isinstance(items, list):
            kind = type(items).__name__
            raise DataError(f"alpaca corporate actions: {group!r} must be a list (got {kind})")
        for item in items:
            if not isinstance(item, dict):
                raise DataError(f"alpaca corporate actions: {group} item must be an object (got {item!r})")
            symbol = item.get("symbol")
            if not isinstance(symbol, str) or not symbol:
                raise DataError(
                    f"alpaca corporate actions: a {group} item lacks 'symbol': {json.dumps(item)[:200]}"
                )
            try:
                ex_date = date.fromisoformat(item.get("ex_date"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(
                    f"alpaca corporate actions: {symbol} {group} field 'ex_date' must be YYYY-MM-DD "
                    f"(got {item.get('ex_date')!r})"
                ) from None
            if group == "cash_dividends":
                yield symbol, ex_date, "dividend", _positive(item, "rate", symbol, group)
            else:
                new_rate = _positive(item, "new_rate", symbol, group)
                old_rate = _positive(item, "old_rate", symbol, group)
                yield symbol, ex_date, "split", new_rate / old_rate
