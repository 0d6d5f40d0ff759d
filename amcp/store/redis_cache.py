"""The latest bar, quote and trade per symbol, in Redis, for other actors and the API.

Layout under a ``namespace`` (default ``"amcp"``), one set of keys per kind
(``bar``, ``quote``, ``trade``):

* ``{namespace}:latest:{kind}`` — hash: symbol -> the event as compact JSON;
* ``{namespace}:latest:{kind}:ts`` — hash: symbol -> its ``ts_ns`` as a 20-digit decimal;
* pub/sub channel ``{namespace}:updates:{kind}`` — every accepted write is published there.

A write never moves a symbol backwards in time: a Lua script compares the stored and the new
timestamp and writes and publishes only if the new one is not older (an equal timestamp
replaces, so a corrected bar wins). Timestamps are compared as zero-padded decimal strings
because Lua numbers are doubles and cannot hold nanosecond epochs exactly.

Floats are written with Python's shortest round-trip ``repr`` (``json``), so a value read back
is bit-for-bit the value written, NaN included.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.exceptions

from amcp.domain.data import Bar, Quote, Trade
from amcp.errors import StoreError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
"""Used when neither an argument nor the ``REDIS_URL`` environment variable gives one."""

Kind = Literal["bar", "quote", "trade"]
Event = Bar | Quote | Trade

_CLASSES: dict[str, type[Bar] | type[Quote] | type[Trade]] = {"bar": Bar, "quote": Quote, "trade": Trade}
_KIND_OF: dict[type, str] = {cls: kind for kind, cls in _CLASSES.items()}
_TS_DIGITS = 20
"""Width of a stored timestamp: int64's maximum has 19 digits."""

# KEYS[1] value hash, KEYS[2] timestamp hash; ARGV[1] symbol, ARGV[2] zero-padded ts,
# ARGV[3] payload, ARGV[4] channel. Returns 1 if written, 0 if older than the stored value.
_PUT_IF_NOT_OLDER = """
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and stored > ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1
"""


def redact_url(url: str) -> str:
    """``url`` with any user name and password removed, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable redis url>"
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def encode_event(event: Event) -> str:
    """The event as compact JSON: its dataclass fields, in order, by name."""
    return json.dumps(dataclasses.asdict(event), separators=(",", ":"))


def decode_event(kind: Kind, payload: str | bytes) -> Bar | Quote | Trade:
    """Rebuild a ``kind`` event from :func:`encode_event` output (a stored value or a pub/sub message).

    Raises:
        StoreError: if ``kind`` is unknown or the payload is not a valid event of that kind.
    """
    cls = _CLASSES.get(kind)
    if cls is None:
        raise StoreError(f"latest-value cache: unknown kind {kind!r}; expected one of {sorted(_CLASSES)}")
    try:
        fields = json.loads(payload)
        return cls(**fields)
    except (ValueError, TypeError) as exc:
        raise StoreError(f"latest-value cache: cannot decode a {kind} from {payload!r:.200} ({exc})") from exc


class LatestValueCache:
    """Latest bar, quote and trade per symbol in Redis, never going back in time.

    Args:
        redis_url: ``redis://[user:password@]host:port/db``; defaults to the ``REDIS_URL``
            environment variable, then :data:`DEFAULT_REDIS_URL`.
        namespace: prefix of every key and channel, so several runs (or tests) can share a server.
        socket_timeout_s: connect and read timeout, in seconds.

    Connection and command failures raise :class:`StoreError` naming the URL (without
    credentials). Nothing connects until the first command.
    """

    def __init__(
        self, redis_url: str | None = None, *, namespace: str = "amcp", socket_timeout_s: float = 2.0
    ) -> None:
        url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        if not namespace or ":" in namespace:
            raise StoreError(
                f"latest-value cache: namespace must be non-empty without ':' (got {namespace!r})"
            )
        self.namespace = namespace
        self._safe_url = redact_url(url)
        try:
            self._redis = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=socket_timeout_s,
                decode_responses=True,
            )
        except ValueError as exc:
            raise StoreError(f"latest-value cache: invalid redis url {self._safe_url!r} ({exc})") from None
        self._put_script = self._redis.register_script(_PUT_IF_NOT_OLDER)

    @property
    def url(self) -> str:
        """The Redis URL without credentials."""
        return self._safe_url

    def key(self, kind: Kind) -> str:
        """The hash holding ``kind``'s latest values."""
        return f"{self.namespace}:latest:{kind}"

    def channel(self, kind: Kind) -> str:
        """The pub/sub channel every accepted ``kind`` write is published on (payload: the JSON event)."""
        return f"{self.namespace}:updates:{kind}"

    # ----------------------------------------------------------------- writes

    def put_bar(self, bar: Bar) -> bool:
        """Store ``bar`` unless an older one would replace a newer; return whether it was stored."""
        return self.put(bar)

    def put_quote(self, quote: Quote) -> bool:
        """Store ``quote`` unless it is older than the cached one; return whether it was stored."""
        return self.put(quote)

    def put_trade(self, trade: Trade) -> bool:
        """Store ``trade`` unless it is older than the cached one; return whether it was stored."""
        return self.put(trade)

    def put(self, event: Event) -> bool:
        """Store any :class:`Bar`, :class:`Quote` or :class:`Trade`, atomically, never backwards in time.

        Returns:
            ``True`` if written (and published), ``False`` if the cached value is newer.

        Raises:
            StoreError: if ``event`` is not a bar, quote or trade, has a negative or non-integer
                ``ts_ns``, or Redis cannot be reached.
        """
        kind: Kind | None = _KIND_OF.get(type(event))  # type: ignore[assignment]
        if kind is None:
            raise StoreError(
                f"latest-value cache: cannot store a {type(event).__name__}; expected Bar, Quote or Trade"
            )
        ts_ns = event.ts_ns
        if not isinstance(ts_ns, int) or ts_ns < 0:
            raise StoreError(
                f"latest-value cache: {kind} {event.symbol}: ts_ns must be a non-negative int (got {ts_ns!r})"
            )
        written = self._call(
            f"put {kind} {event.symbol}",
            self._put_script,
            keys=[self.key(kind), self._ts_key(kind)],
            args=[event.symbol, f"{ts_ns:0{_TS_DIGITS}d}", encode_event(event), self.channel(kind)],
        )
        return bool(written)

    # ----------------------------------------------------------------- reads

    def latest_bar(self, symbol: str) -> Bar | None:
        """The newest cached bar of ``symbol``, or ``None``."""
        return self._latest("bar", symbol)  # type: ignore[return-value]

    def latest_quote(self, symbol: str) -> Quote | None:
        """The newest cached quote of ``symbol``, or ``None``."""
        return self._latest("quote", symbol)  # type: ignore[return-value]

    def latest_trade(self, symbol: str) -> Trade | None:
        """The newest cached trade of ``symbol``, or ``None``."""
        return self._latest("trade", symbol)  # type: ignore[return-value]

    def latest_bars(self, symbols: Iterable[str]) -> dict[str, Bar]:
        """The newest cached bar of each symbol that has one, in one round trip (``HMGET``)."""
        return self.latest_many("bar", symbols)  # type: ignore[return-value]

    def latest_quotes(self, symbols: Iterable[str]) -> dict[str, Quote]:
        """The newest cached quote of each symbol that has one, in one round trip (``HMGET``)."""
        return self.latest_many("quote", symbols)  # type: ignore[return-value]

    def latest_many(self, kind: Kind, symbols: Iterable[str]) -> dict[str, Event]:
        """The newest cached ``kind`` event of each symbol that has one, in one round trip.

        Raises:
            StoreError: if Redis cannot be reached or a stored value is corrupt.
        """
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        values = self._call(f"read {kind}s", self._redis.hmget, self.key(kind), wanted)
        return {
            symbol: decode_event(kind, value) for symbol, value in zip(wanted, values) if value is not None
        }

    def clear(self) -> int:
        """Delete every key of this namespace's cache; return how many keys were deleted."""
        kinds: tuple[Kind, ...] = ("bar", "quote", "trade")
        keys = [self.key(kind) for kind in kinds] + [self._ts_key(kind) for kind in kinds]
        return int(self._call("clear", self._redis.delete, *keys))

    def ping(self) -> None:
        """Check the server answers.

        Raises:
            StoreError: if it does not.
        """
        self._call("ping", self._redis.ping)

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    # ----------------------------------------------------------------- internals

    def _ts_key(self, kind: Kind) -> str:
        return f"{self.key(kind)}:ts"

    def _latest(self, kind: Kind, symbol: str) -> Event | None:
        value = self._call(f"read {kind} {symbol}", self._redis.hget, self.key(kind), symbol)
        return None if value is None else decode_event(kind, value)

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise StoreError(
                f"latest-value cache at {self._safe_url}: {what} failed ({type(exc).__name__}: {exc})"
            ) from None

