"""Live market data from Alpaca's websocket streams, normalised to :mod:`amcp.domain.data` events.

:class:`AlpacaLiveFeed` runs alpaca-py's own ``StockDataStream`` (and ``OptionDataStream`` for
option symbols) on one asyncio loop in a background thread. alpaca-py connects, authenticates,
subscribes, and reconnects with exponential backoff after a drop; the feed turns each message
into a :class:`Bar`, :class:`Quote` or :class:`Trade`, fills bar gaps from a historical source,
caches every event in Redis if asked, and buffers the events for :meth:`AlpacaLiveFeed.drain`.

The streams run in ``raw_data`` mode and the feed parses the wire dicts itself
(:func:`event_from_message`), for two reasons: alpaca-py's models carry timestamps as
``datetime`` (microseconds) while the wire has nanoseconds, and a message its models cannot
parse raises inside alpaca-py's receive loop, which drops the rest of that frame. Here a
malformed message is counted in ``bad_messages``, logged, and skipped; nothing else is lost.

Usage::

    feed = AlpacaLiveFeed(key, secret, symbols=["AAPL", "MSFT"], cache=LatestValueCache(),
                          backfill=historical.minute_bars)   # (symbol, start_ns, end_ns) -> bars
    feed.start()
    while trading:
        for event in feed.drain(timeout_s=1.0):
            ...
    feed.stop()
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgpack
import pandas as pd
from alpaca.data.enums import DataFeed, OptionsFeed
from alpaca.data.live.option import OptionDataStream
from alpaca.data.live.stock import StockDataStream
from alpaca.data.live.websocket import DataStream

from amcp.domain.data import Bar, Quote, Trade
from amcp.errors import DataError, StoreError
from amcp.store.redis_cache import LatestValueCache

log = logging.getLogger(__name__)

MarketEvent = Bar | Quote | Trade
Backfill = Callable[[str, int, int], Sequence[Bar]]
"""``backfill(symbol, start_ns, end_ns)``: the symbol's bars with ``start_ns <= ts <= end_ns``."""

CHANNELS: tuple[str, ...] = ("bars", "quotes", "trades")
OPTION_CHANNELS: tuple[str, ...] = ("quotes", "trades")
"""Alpaca's option stream has no bars."""

_STOP_TIMEOUT_S = 10.0


# ------------------------------------------------------------------------------------ parsing


def timestamp_ns(value: Any) -> int:
    """UTC nanoseconds of a wire timestamp.

    Accepts a ``msgpack.Timestamp`` (Alpaca's msgpack frames), an RFC-3339 string with an
    offset or ``Z`` (its JSON frames), or a timezone-aware ``datetime``.

    Raises:
        DataError: for anything else, or a string without a timezone.
    """
    if isinstance(value, msgpack.Timestamp):
        return int(value.to_unix_nano())
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DataError(f"timestamp {value!r} has no timezone; expected UTC")
        return int(pd.Timestamp(value).value)
    if isinstance(value, str):
        try:
            parsed = pd.Timestamp(value)
        except ValueError:
            raise DataError(f"timestamp {value!r} is not RFC-3339") from None
        if parsed.tzinfo is None:
            raise DataError(f"timestamp {value!r} has no timezone; expected UTC")
        return int(parsed.value)
    raise DataError(f"timestamp must be a msgpack Timestamp or RFC-3339 string (got {type(value).__name__})")


def _field(message: Mapping[str, Any], key: str) -> Any:
    try:
        return message[key]
    except KeyError:
        raise DataError(
            f"message {message.get('T')!r} for {message.get('S')!r} has no field {key!r}"
        ) from None


def _number(message: Mapping[str, Any], key: str, *, positive: bool = False) -> float:
    value = _field(message, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"field {key!r} of {message.get('S')!r} must be a number (got {value!r})")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        expected = "> 0" if positive else ">= 0"
        raise DataError(
            f"field {key!r} of {message.get('S')!r} must be finite and {expected} (got {value!r})"
        )
    return number


def _symbol(message: Mapping[str, Any]) -> str:
    symbol = _field(message, "S")
    if not isinstance(symbol, str) or not symbol:
        raise DataError(f"field 'S' must be a non-empty symbol (got {symbol!r})")
    return symbol


def bar_from_message(message: Mapping[str, Any]) -> Bar:
    """A :class:`Bar` from an Alpaca bar message (``T`` ``b``, ``u`` or ``d``); prices in dollars.

    Raises:
        DataError: if a field is missing, not a number, not finite, or a price is not positive.
    """
    return Bar(
        _symbol(message),
        timestamp_ns(_field(message, "t")),
        _number(message, "o", positive=True),
        _number(message, "h", positive=True),
        _number(message, "l", positive=True),
        _number(message, "c", positive=True),
        _number(message, "v"),
    )


def quote_from_message(message: Mapping[str, Any]) -> Quote:
    """A :class:`Quote` from an Alpaca quote message (``T`` ``q``); a zero price means no bid/ask.

    Raises:
        DataError: if a field is missing, not a number, negative or not finite.
    """
    return Quote(
        _symbol(message),
        timestamp_ns(_field(message, "t")),
        _number(message, "bp"),
        _number(message, "ap"),
        _number(message, "bs"),
        _number(message, "as"),
    )


def trade_from_message(message: Mapping[str, Any]) -> Trade:
    """A :class:`Trade` from an Alpaca trade message (``T`` ``t``).

    Raises:
        DataError: if a field is missing or malformed (price must be > 0, id an integer).
    """
    trade_id = _field(message, "i")
    if isinstance(trade_id, bool) or not isinstance(trade_id, int):
        raise DataError(f"field 'i' of {message.get('S')!r} must be an integer trade id (got {trade_id!r})")
    exchange = message.get("x", "")
    if not isinstance(exchange, str):
        raise DataError(f"field 'x' of {message.get('S')!r} must be an exchange code (got {exchange!r})")
    return Trade(
        _symbol(message),
        timestamp_ns(_field(message, "t")),
        _number(message, "p", positive=True),
        _number(message, "s"),
        exchange,
        trade_id,
    )


_PARSERS: dict[str, Callable[[Mapping[str, Any]], MarketEvent]] = {
    "b": bar_from_message,
    "q": quote_from_message,
    "t": trade_from_message,
}


def event_from_message(message: Any) -> MarketEvent:
    """The domain event for one Alpaca market-data message (bar, quote or trade).

    Raises:
        DataError: if the message is not a dict, has another type, or is malformed.
    """
    if not isinstance(message, Mapping):
        raise DataError(f"market-data message must be a map (got {type(message).__name__})")
    parser = _PARSERS.get(message.get("T"))  # type: ignore[arg-type]
    if parser is None:
        raise DataError(
            f"unsupported market-data message type {message.get('T')!r}; expected 'b', 'q' or 't'"
        )
    return parser(message)


# ------------------------------------------------------------------------------------ the feed


class AlpacaLiveFeed:
    """Alpaca's live stock (and option) streams as a buffer of domain events.

    Args:
        api_key: Alpaca API key id.
        secret_key: Alpaca API secret.
        stock_url: websocket URL of the stock stream; ``None`` for Alpaca's (by ``feed``).
        option_url: websocket URL of the option stream; ``None`` for Alpaca's (by ``option_feed``).
        feed: stock feed, ``"iex"`` or ``"sip"``.
        symbols: stock symbols.
        option_symbols: OCC option symbols (quotes and trades only: Alpaca streams no option bars).
        channels: any of ``"bars"``, ``"quotes"``, ``"trades"``.
        cache: if given, every event is also written to it (a failed write is counted, not raised).
        backfill: ``backfill(symbol, start_ns, end_ns)`` returning the bars in that inclusive
            window, called when a bar arrives more than ``bar_interval_ns`` after the symbol's
            previous bar; the bars it returns are emitted before the new bar.
        bar_interval_ns: bar length in nanoseconds (one minute by default).
        option_feed: option feed, ``"indicative"`` or ``"opra"``.
        data_timeout_s: passed to alpaca-py: reconnect after this many seconds without market
            data; ``None`` (default) never does, since a quiet symbol is not a dead socket.

    Raises:
        DataError: for an unknown feed or channel, no symbols, or a non-positive interval.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        stock_url: str | None = None,
        option_url: str | None = None,
        feed: str = "iex",
        symbols: Iterable[str] = (),
        option_symbols: Iterable[str] = (),
        channels: Iterable[str] = CHANNELS,
        cache: LatestValueCache | None = None,
        backfill: Backfill | None = None,
        bar_interval_ns: int = 60_000_000_000,
        option_feed: str = "indicative",
        data_timeout_s: float | None = None,
    ) -> None:
        self._symbols = tuple(dict.fromkeys(symbols))
        self._option_symbols = tuple(dict.fromkeys(option_symbols))
        self._channels = tuple(dict.fromkeys(channels))
        unknown = [channel for channel in self._channels if channel not in CHANNELS]
        if unknown or not self._channels:
            raise DataError(
                f"AlpacaLiveFeed: channels must be a non-empty subset of {CHANNELS} (got {channels!r})"
            )
        if not self._symbols and not self._option_symbols:
            raise DataError("AlpacaLiveFeed: no symbols or option_symbols to subscribe to")
        if isinstance(bar_interval_ns, bool) or not isinstance(bar_interval_ns, int) or bar_interval_ns <= 0:
            raise DataError(
                f"AlpacaLiveFeed: bar_interval_ns must be a positive int (got {bar_interval_ns!r})"
            )
        try:
            self._feed = DataFeed(feed)
            self._option_feed = OptionsFeed(option_feed)
        except ValueError:
            raise DataError(
                f"AlpacaLiveFeed: unknown feed {feed!r} / option_feed {option_feed!r}; "
                "expected 'iex' or 'sip' / 'indicative' or 'opra'"
            ) from None
        if self._feed not in (DataFeed.IEX, DataFeed.SIP):
            raise DataError(f"AlpacaLiveFeed: stock streams support 'iex' or 'sip' (got {feed!r})")
        self._api_key = api_key
        self._secret_key = secret_key
        self._stock_url = stock_url
        self._option_url = option_url
        self._cache = cache
        self._backfill = backfill
        self._bar_interval_ns = bar_interval_ns
        self._data_timeout_s = data_timeout_s

        self._buffer: deque[MarketEvent] = deque()
        self._ready = threading.Condition()
        self._stats_lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys(
            (
                "bars", "quotes", "trades", "sessions", "reconnects", "auth_failures", "bad_messages",
                "gaps_detected", "gaps_backfilled", "backfilled_bars", "backfill_errors", "stale_bars",
                "cache_errors",
            ),
            0,
        )  # fmt: skip
        self._last_error: str | None = None
        self._last_bar_ts: dict[str, int] = {}
        self._streams: list[DataStream] = []
        self._sessions: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Connect and subscribe in a background thread; return at once.

        Raises:
            DataError: if the feed was already started.
        """
        if self._thread is not None:
            raise DataError("AlpacaLiveFeed: already started (a feed runs once; build a new one to restart)")
        self._streams = self._build_streams()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="alpaca-live-feed", daemon=True)
        self._thread.start()
        ready.wait(_STOP_TIMEOUT_S)

    def stop(self) -> None:
        """Unsubscribe, close the sockets and join the thread (idempotent). Buffered events stay drainable."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        if thread.is_alive() and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT_S)
            except (RuntimeError, TimeoutError, asyncio.TimeoutError) as exc:
                log.warning("alpaca live feed: stream shutdown did not finish cleanly (%s)", exc)
        thread.join(_STOP_TIMEOUT_S)

    @property
    def running(self) -> bool:
        """Whether the background thread is alive (it ends on :meth:`stop` or a rejected login)."""
        return self._thread is not None and self._thread.is_alive()

    # ----------------------------------------------------------------- consumer side

    def drain(self, max_events: int | None = None, *, timeout_s: float = 0.0) -> list[MarketEvent]:
        """Take buffered events, oldest first (thread-safe).

        Args:
            max_events: at most this many; ``None`` for all.
            timeout_s: if the buffer is empty, wait up to this many seconds for an event.

        Returns:
            The events in arrival order (backfilled bars before the bar that revealed the gap).
        """
        if max_events is not None and max_events < 0:
            raise DataError(f"drain: max_events must be >= 0 or None (got {max_events})")
        with self._ready:
            if not self._buffer and timeout_s > 0:
                self._ready.wait_for(lambda: bool(self._buffer), timeout_s)
            count = len(self._buffer) if max_events is None else min(max_events, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def stats(self) -> dict[str, Any]:
        """Counters since start.

        Keys: ``bars``, ``quotes``, ``trades`` (events emitted, backfilled bars included),
        ``sessions`` (successful logins), ``reconnects`` (logins after a stream's first),
        ``auth_failures``, ``bad_messages``, ``gaps_detected``, ``gaps_backfilled``,
        ``backfilled_bars``, ``backfill_errors``, ``stale_bars`` (bars not newer than the
        symbol's last, dropped), ``cache_errors``, ``buffered``, ``running``, ``last_error``.
        """
        with self._stats_lock:
            result: dict[str, Any] = dict(self._counts)
            result["last_error"] = self._last_error
        with self._ready:
            result["buffered"] = len(self._buffer)
        result["running"] = self.running
        return result

    # ----------------------------------------------------------------- streams

    def _build_streams(self) -> list[DataStream]:
        streams: list[DataStream] = []
        if self._symbols:
            stock = StockDataStream(
                self._api_key, self._secret_key, raw_data=True, feed=self._feed,
                url_override=self._stock_url, data_timeout=self._data_timeout_s,
            )  # fmt: skip
            subscribe = {
                "bars": stock.subscribe_bars,
                "quotes": stock.subscribe_quotes,
                "trades": stock.subscribe_trades,
            }
            for channel in self._channels:
                subscribe[channel](self._on_message, *self._symbols)
            streams.append(self._instrument(stock, "stock"))
        option_channels = [channel for channel in self._channels if channel in OPTION_CHANNELS]
        if self._option_symbols and option_channels:
            option = OptionDataStream(
                self._api_key, self._secret_key, raw_data=True, feed=self._option_feed,
                url_override=self._option_url, data_timeout=self._data_timeout_s,
            )  # fmt: skip
            option_subscribe = {"quotes": option.subscribe_quotes, "trades": option.subscribe_trades}
            for channel in option_channels:
                option_subscribe[channel](self._on_message, *self._option_symbols)
            streams.append(self._instrument(option, "option"))
        if not streams:
            raise DataError(
                f"AlpacaLiveFeed: nothing to stream: option symbols support only {OPTION_CHANNELS}"
            )
        return streams

    def _instrument(self, stream: DataStream, name: str) -> DataStream:
        """Wrap the stream's login step to count sessions and stop on rejected credentials.

        alpaca-py 0.44 logs in through ``DataStream._auth`` on every (re)connect and retries a
        failed login forever; a wrong key never becomes right, so the feed stops that stream
        and reports it instead of hammering the venue.
        """
        authenticate = stream._auth
        self._sessions[name] = 0

        async def counted_auth() -> None:
            try:
                await authenticate()
            except ValueError as exc:
                if "auth failed" in str(exc).lower():  # Alpaca's error 402
                    reason = f"{name} stream: login rejected ({exc}); check the API key and secret"
                    self._error(reason, "auth_failures")
                    await stream.stop_ws()
                raise
            with self._stats_lock:
                self._sessions[name] += 1
                self._counts["sessions"] += 1
                if self._sessions[name] > 1:
                    self._counts["reconnects"] += 1

        stream._auth = counted_auth  # type: ignore[method-assign]
        return stream

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._main(ready))
        except Exception as exc:  # noqa: BLE001 - the thread must report, not die silently
            self._error(f"feed thread failed: {type(exc).__name__}: {exc}")
        finally:
            ready.set()

    async def _main(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        ready.set()
        await asyncio.gather(*(self._run_stream(stream) for stream in self._streams))

    async def _run_stream(self, stream: DataStream) -> None:
        try:
            await stream._run_forever()
        except Exception as exc:  # noqa: BLE001 - one stream's death must not end the other
            self._error(f"{stream._name} stream ended: {type(exc).__name__}: {exc}")

    async def _shutdown(self) -> None:
        for stream in self._streams:
            await stream.stop_ws()
            await stream.close()  # wakes a receive that would otherwise wait its 5 s timeout

    # ----------------------------------------------------------------- messages

    async def _on_message(self, message: Any) -> None:
        """alpaca-py's handler for every channel; never raises (that would drop the rest of the frame)."""
        try:
            event = event_from_message(message)
        except DataError as exc:
            self._error(f"malformed message dropped: {exc}", "bad_messages")
            return
        try:
            events = await self._with_backfill(event) if isinstance(event, Bar) else [event]
            self._emit(events)
        except Exception as exc:  # noqa: BLE001 - keep the stream alive whatever a callback did
            self._error(f"handling {type(event).__name__} {event.symbol} failed: {type(exc).__name__}: {exc}")

    async def _with_backfill(self, bar: Bar) -> list[MarketEvent]:
        previous = self._last_bar_ts.get(bar.symbol)
        if previous is not None and bar.ts_ns <= previous:
            with self._stats_lock:
                self._counts["stale_bars"] += 1
            log.info(
                "alpaca live feed: %s bar at %d is not after the last one (%d); dropped",
                bar.symbol, bar.ts_ns, previous,
            )  # fmt: skip
            return []
        events: list[MarketEvent] = []
        if previous is not None and bar.ts_ns - previous > self._bar_interval_ns:
            events.extend(await self._fill_gap(bar.symbol, previous, bar.ts_ns))
        self._last_bar_ts[bar.symbol] = bar.ts_ns
        events.append(bar)
        return events

    async def _fill_gap(self, symbol: str, previous_ns: int, next_ns: int) -> list[Bar]:
        """Bars strictly between ``previous_ns`` and ``next_ns`` from the backfill source, by time."""
        with self._stats_lock:
            self._counts["gaps_detected"] += 1
        if self._backfill is None:
            return []
        start_ns, end_ns = previous_ns + self._bar_interval_ns, next_ns - self._bar_interval_ns
        loop = asyncio.get_running_loop()
        try:
            fetched = await loop.run_in_executor(None, self._backfill, symbol, start_ns, end_ns)
        except Exception as exc:  # noqa: BLE001 - a failed backfill loses the gap, not the feed
            self._error(f"backfill of {symbol} [{start_ns}, {end_ns}] failed: {type(exc).__name__}: {exc}",
                        "backfill_errors")  # fmt: skip
            return []
        by_ts = {
            bar.ts_ns: bar
            for bar in fetched
            if isinstance(bar, Bar) and bar.symbol == symbol and previous_ns < bar.ts_ns < next_ns
        }
        bars = [by_ts[ts] for ts in sorted(by_ts)]
        with self._stats_lock:
            self._counts["gaps_backfilled"] += 1
            self._counts["backfilled_bars"] += len(bars)
        return bars

    def _emit(self, events: list[MarketEvent]) -> None:
        if not events:
            return
        with self._stats_lock:
            for event in events:
                self._counts[_COUNTER[type(event)]] += 1
        with self._ready:
            self._buffer.extend(events)
            self._ready.notify_all()
        if self._cache is None:
            return
        for event in events:
            try:
                self._cache.put(event)
            except StoreError as exc:
                self._error(str(exc), "cache_errors")

    def _error(self, text: str, counter: str | None = None) -> None:
        with self._stats_lock:
            self._last_error = text
            if counter is not None:
                self._counts[counter] += 1
        log.warning("alpaca live feed: %s", text)


_COUNTER: dict[type, str] = {Bar: "bars", Quote: "quotes", Trade: "trades"}


def rest_backfill(source: Any, timeframe: str = "1Min") -> Backfill:
    """A :data:`Backfill` that fetches the missing bars over REST.

    Args:
        source: an :class:`~amcp.data.alpaca_source.AlpacaHistoricalSource` (anything with its
            ``bars(symbols, start, end, timeframe)`` returning BAR_SCHEMA rows).
        timeframe: the stream's bar interval in Alpaca's notation (the stock stream sends 1Min bars).
    """

    def backfill(symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        table = source.bars([symbol], pd.Timestamp(start_ns, tz="UTC"), pd.Timestamp(end_ns, tz="UTC"), timeframe)
        if table.num_rows == 0:
            return []
        ts = table.column("ts").cast("int64").to_numpy()
        columns = [table.column(name).to_numpy(zero_copy_only=False).astype(float) for name in _BAR_FIELDS]
        return [
            Bar(symbol, int(t), *(float(c[i]) for c in columns))
            for i, t in enumerate(ts)
            if start_ns <= t <= end_ns
        ]

    return backfill


_BAR_FIELDS = ("open", "high", "low", "close", "volume")


class EventFeed(Protocol):
    """What :class:`LiveMarketData` needs of a feed (``AlpacaLiveFeed`` and ``StoreReplayFeed`` have it)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def drain(
        self, max_events: int | None = None, *, timeout_s: float = 0.0
    ) -> Sequence[Bar | Quote | Trade]: ...

    def stats(self) -> dict[str, Any]: ...


class LiveMarketData:
    """A feed of market-data events, built in the actor by ``feed_factory`` and served by drain.

    Args:
        feed_factory: builds the feed, e.g. ``functools.partial(AlpacaLiveFeed, key, secret, ...)``.
    """

    def __init__(self, feed_factory: Callable[[], EventFeed]) -> None:
        self._feed = feed_factory()

    def start(self) -> None:
        """Start the feed (connect, or start the replay clock)."""
        self._feed.start()

    def stop(self) -> None:
        """Stop the feed; events already buffered can still be drained."""
        self._feed.stop()

    def drain(self, max_events: int | None = None, timeout_s: float = 0.0) -> list[Bar | Quote | Trade]:
        """The feed's pending events, oldest first (waiting up to ``timeout_s`` seconds for one)."""
        return list(self._feed.drain(max_events, timeout_s=timeout_s))

    def stats(self) -> dict[str, Any]:
        """The feed's counters (see ``AlpacaLiveFeed.stats`` / ``StoreReplayFeed.stats``)."""
        return self._feed.stats()
