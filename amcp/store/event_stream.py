"""Order and trading events on a Redis Stream, read through consumer groups.

The OMS publishes every domain message (:mod:`amcp.domain.messages`) to one stream; other
actors and the API read it through consumer groups, so each group sees every event, the
consumers of one group share its events, a slow consumer falls behind and catches up, and the
unacknowledged events of a crashed consumer are taken over by another (:meth:`claim_stale`).
Delivery is at least once: a consumer acknowledges (:meth:`EventConsumer.ack`) after it has
handled an event, and must tolerate seeing one again.

Layout of one stream entry (``XADD``)::

    type  the message class name, e.g. ``OrderFilled``
    data  amcp.domain.serialization.to_json(event): Decimals as strings, enums as values,
          ids as plain strings, ints as JSON integers, so the event read back compares
          equal to the one published and re-encodes to the same bytes

Nothing a consumer is handed is lost and nothing raises into its loop: an entry that cannot be
decoded (unknown type, corrupt JSON, written by a newer version), an entry delivered more than
``max_deliveries`` times (a poison message), and an entry trimmed from the stream before it was
acknowledged are each copied, with the reason, to a dead-letter stream (default
``{stream}:dead``) and acknowledged in the same ``MULTI``/``EXEC`` transaction, and counted in
:meth:`EventConsumer.stats`. A dead-letter entry holds::

    source_stream, source_id, group, consumer, reason, deliveries
    payload.<field>  every field of the original entry, byte for byte

Requires Redis 7.0 or later (``XAUTOCLAIM`` reporting deleted entries).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.exceptions

from amcp.domain.serialization import from_record, to_json
from amcp.errors import DomainError, StoreError
from amcp.store.redis_cache import DEFAULT_REDIS_URL, redact_url

DEFAULT_STREAM = "amcp:events"
DEFAULT_MAX_DELIVERIES = 5
DEAD_LETTER_SUFFIX = ":dead"
PAYLOAD_PREFIX = "payload."
"""Prefix of the original entry's field names inside a dead-letter entry."""

_TYPE_FIELD = b"type"
_DATA_FIELD = b"data"
_MIN_REPLY_MARGIN_MS = 250
"""Time a blocking read leaves, within the socket timeout, for the reply to arrive."""
_PRIMITIVES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "str": (str,),
    "bool": (bool,),
}
_DECODE_ERRORS = (ValueError, TypeError, ArithmeticError, RecursionError, DomainError)
"""What decoding an untrusted entry may raise (UnicodeDecodeError and JSONDecodeError are ValueErrors)."""

# KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] start id, ARGV[5] count.
# Returns {next start id, claimed entries, ids deleted from the stream, delivery count of each claimed
# entry}: XAUTOCLAIM does not report delivery counts, and reading them in the same script means no
# other consumer can claim an entry between the two commands.
_CLAIM_WITH_COUNTS = """
local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], 'COUNT', ARGV[5])
local counts = {}
for i, entry in ipairs(reply[2]) do
  counts[i] = 0
  if type(entry) == 'table' then
    local info = redis.call('XPENDING', KEYS[1], ARGV[1], entry[1], entry[1], 1, ARGV[2])
    if info[1] then
      counts[i] = info[1][4]
    end
  end
end
return {reply[1], reply[2], reply[3] or {}, counts}
"""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event handed to a consumer.

    Attributes:
        id: the stream entry id (``<ms>-<seq>``); pass it to :meth:`EventConsumer.ack`.
        event: the domain message, as published.
        attempts: how many times the group has delivered this entry, this delivery included
            (1 on first delivery; more after :meth:`EventConsumer.claim_stale`).
    """

    id: str
    event: Any
    attempts: int


@dataclass(frozen=True, slots=True)
class PendingInfo:
    """An entry delivered to a consumer of the group and not yet acknowledged.

    Attributes:
        id: the stream entry id.
        consumer: the consumer that holds it.
        idle_ms: milliseconds since it was last delivered.
        deliveries: how many times it has been delivered.
    """

    id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry moved to the dead-letter stream, with why.

    Attributes:
        id: the dead-letter entry's own id.
        source_stream: the stream the entry came from.
        source_id: its id there.
        group: the consumer group that gave up on it.
        consumer: the consumer that moved it.
        reason: why it could not be delivered.
        deliveries: how many times it had been delivered.
        payload: the original entry's fields, byte for byte (empty if it was trimmed away).
    """

    id: str
    source_stream: str
    source_id: str
    group: str
    consumer: str
    reason: str
    deliveries: int
    payload: dict[str, bytes]


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """Counts kept by one :class:`EventConsumer` since it was built.

    Attributes:
        delivered: deliveries handed to the caller (a redelivery counts again).
        claimed: of those, deliveries taken over with :meth:`EventConsumer.claim_stale`.
        acked: entries acknowledged through :meth:`EventConsumer.ack`.
        undecodable: entries dead-lettered because they could not be decoded.
        poison: entries dead-lettered because they were delivered more than ``max_deliveries`` times.
        trimmed: pending entries found trimmed from the stream before anyone acknowledged them.
    """

    delivered: int = 0
    claimed: int = 0
    acked: int = 0
    undecodable: int = 0
    poison: int = 0
    trimmed: int = 0

    @property
    def dead_lettered(self) -> int:
        """Entries moved to the dead-letter stream, for any reason."""
        return self.undecodable + self.poison + self.trimmed


def encode_entry(event: Any) -> dict[bytes, bytes]:
    """The stream entry's fields for ``event``: its class name and its canonical JSON.

    Raises:
        StoreError: if ``event`` is not one of the domain messages.
    """
    try:
        data = to_json(event)
    except DomainError as exc:
        raise StoreError(
            f"event stream: cannot publish a {type(event).__name__}; expected a message of "
            f"amcp.domain.messages ({exc})"
        ) from None
    return {_TYPE_FIELD: type(event).__name__.encode(), _DATA_FIELD: data.encode()}


def decode_entry(fields: dict[bytes, bytes]) -> Any:
    """Rebuild the domain message from a stream entry's fields (:func:`encode_entry` output).

    Checks what :func:`amcp.domain.serialization.from_record` leaves unchecked: the ``type``
    field agrees with the JSON, and ``int``/``float``/``str``/``bool`` fields hold those types.

    Raises:
        StoreError: naming what is wrong, if the entry is not a valid message.
    """
    type_value, data = fields.get(_TYPE_FIELD), fields.get(_DATA_FIELD)
    if type_value is None or data is None:
        raise StoreError(f"entry has fields {sorted(fields)}; expected {[_TYPE_FIELD, _DATA_FIELD]}")
    try:
        type_name = type_value.decode()
        record = json.loads(data.decode())
        if not isinstance(record, dict):
            raise StoreError(f"data is a JSON {type(record).__name__}; expected an object")
        if record.get("type") != type_name:
            raise StoreError(f"type field {type_name!r} disagrees with the data's {record.get('type')!r}")
        event = from_record(record)
    except StoreError:
        raise
    except _DECODE_ERRORS as exc:
        raise StoreError(
            f"cannot decode a {_text(type_value)!r:.80} from {data!r:.200} ({type(exc).__name__}: {exc})"
        ) from None
    _check_primitive_fields(event)
    return event


def _check_primitive_fields(event: Any) -> None:
    """Raise StoreError if an int/float/str/bool field of ``event`` holds another type."""
    for field in dataclasses.fields(event):
        name, annotation = field.name, field.type
        allowed: tuple[type, ...] = ()
        for part in str(annotation).split("|"):
            allowed += _PRIMITIVES.get(part.strip(), ())
        if not allowed:
            continue
        value = getattr(event, name)
        if value is None and "None" in str(annotation):
            continue
        wrong_bool = isinstance(value, bool) and bool not in allowed
        if wrong_bool or not isinstance(value, allowed):
            raise StoreError(
                f"{type(event).__name__}.{name} is {value!r:.80} ({type(value).__name__}); "
                f"expected {annotation}"
            )


def _text(value: bytes | str) -> str:
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else value


class EventStream:
    """The stream of domain messages: publish, read by id range, trim.

    Args:
        redis_url: ``redis://[user:password@]host:port/db``; defaults to the ``REDIS_URL``
            environment variable, then :data:`~amcp.store.redis_cache.DEFAULT_REDIS_URL`.
        stream: the stream's key.
        max_len: the stream is trimmed on every publish to about this many entries (``MAXLEN
            ~``): Redis trims whole internal nodes only, so it may hold up to one node
            (``stream-node-max-entries``, 100 by default) more.
        socket_timeout_s: connect and read timeout, in seconds. A blocking
            :meth:`EventConsumer.read` must block for less than this.

    Connection and command failures raise :class:`StoreError` naming the URL (without
    credentials). Nothing connects until the first command.

    Raises:
        StoreError: if an argument is invalid.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        stream: str = DEFAULT_STREAM,
        max_len: int = 1_000_000,
        socket_timeout_s: float = 2.0,
    ) -> None:
        url = redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
        self._safe_url = redact_url(url)
        if not isinstance(stream, str) or not stream:
            raise StoreError(f"event stream: stream name must be a non-empty string (got {stream!r})")
        if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
            raise StoreError(f"event stream {stream}: max_len must be a positive int (got {max_len!r})")
        if not socket_timeout_s > 0:
            raise StoreError(
                f"event stream {stream}: socket_timeout_s must be positive seconds (got {socket_timeout_s!r})"
            )
        self.name = stream
        self.max_len = max_len
        self.socket_timeout_s = float(socket_timeout_s)
        try:
            self._redis: redis.Redis = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout_s,
                socket_connect_timeout=socket_timeout_s,
                decode_responses=False,  # entries may hold any bytes; they are decoded here
            )
        except ValueError as exc:
            raise StoreError(f"event stream {stream}: invalid redis url {self._safe_url!r} ({exc})") from None
        self._claim_script = self._redis.register_script(_CLAIM_WITH_COUNTS)

    @property
    def url(self) -> str:
        """The Redis URL without credentials."""
        return self._safe_url

    def publish(self, event: Any) -> str:
        """Append ``event`` (``XADD``) and return its stream id.

        Raises:
            StoreError: if ``event`` is not a domain message or Redis cannot be reached.
        """
        fields = encode_entry(event)
        entry_id = self._call(
            f"publish {type(event).__name__}",
            self._redis.xadd,
            self.name,
            fields,  # type: ignore[arg-type]
            maxlen=self.max_len,
            approximate=True,
        )
        return _text(entry_id)

    def publish_many(self, events: Sequence[Any]) -> list[str]:
        """Append ``events`` in order, in one round trip and one transaction; return their ids.

        Every event is encoded before anything is sent: one that is not a domain message
        publishes none of them.

        Raises:
            StoreError: if an event is not a domain message or Redis cannot be reached.
        """
        if not events:
            return []
        entries = [encode_entry(event) for event in events]
        pipeline = self._redis.pipeline(transaction=True)
        for fields in entries:
            pipeline.xadd(self.name, fields, maxlen=self.max_len, approximate=True)  # type: ignore[arg-type]
        entry_ids = self._call(f"publish {len(entries)} events", pipeline.execute)
        return [_text(entry_id) for entry_id in entry_ids]

    def read_range(self, start: str = "-", end: str = "+", count: int | None = None) -> list[tuple[str, Any]]:
        """The entries with ids from ``start`` to ``end`` (inclusive; ``(id`` excludes), oldest first.

        Args:
            start: the first id, ``-`` for the oldest.
            end: the last id, ``+`` for the newest.
            count: at most this many entries; ``None`` for all.

        Returns:
            ``(id, event)`` pairs.

        Raises:
            StoreError: if ``count`` is not positive, Redis cannot be reached, or an entry cannot
                be decoded (the message names its id: resume after it with ``start="(<id>"``).
        """
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise StoreError(
                f"event stream {self.name}: count must be a positive int or None (got {count!r})"
            )
        entries = self._call(f"read {start}..{end}", self._redis.xrange, self.name, start, end, count)
        result: list[tuple[str, Any]] = []
        for raw_id, fields in entries:
            entry_id = _text(raw_id)
            try:
                result.append((entry_id, decode_entry(fields)))
            except StoreError as exc:
                raise StoreError(f"event stream {self.name}: entry {entry_id}: {exc}") from None
        return result

    def length(self) -> int:
        """How many entries the stream holds (``XLEN``; 0 if it does not exist)."""
        return int(self._call("length", self._redis.xlen, self.name))

    def delete(self) -> None:
        """Delete the stream, its entries and its consumer groups (not a dead-letter stream)."""
        self._call("delete", self._redis.delete, self.name)

    def ping(self) -> None:
        """Check the server answers.

        Raises:
            StoreError: if it does not.
        """
        self._call("ping", self._redis.ping)

    def close(self) -> None:
        """Release the connection pool."""
        self._redis.close()

    def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise StoreError(
                f"event stream {self.name} at {self._safe_url}: {what} failed ({type(exc).__name__}: {exc})"
            ) from None


class EventConsumer:
    """One consumer of a consumer group on an :class:`EventStream`.

    The group is created on first use (``XGROUP CREATE ... MKSTREAM``), and again if the stream
    was deleted under it.

    Args:
        stream: the stream to read.
        group: the consumer group; every group sees every event.
        consumer: this consumer's name, unique within the group and stable across restarts.
        start_id: where a group created by this consumer starts: ``"0"`` reads the whole
            history, ``"$"`` only events published afterwards. Ignored if the group exists.
        dead_letter_stream: where undeliverable entries go; default ``f"{stream.name}:dead"``.
        max_deliveries: an entry delivered more times than this is dead-lettered instead.

    Raises:
        StoreError: if an argument is invalid.
    """

    def __init__(
        self,
        stream: EventStream,
        group: str,
        consumer: str,
        *,
        start_id: str = "0",
        dead_letter_stream: str | None = None,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
    ) -> None:
        for label, value in (("group", group), ("consumer", consumer), ("start_id", start_id)):
            if not isinstance(value, str) or not value:
                raise StoreError(
                    f"event stream {stream.name}: {label} must be a non-empty string (got {value!r})"
                )
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise StoreError(
                f"event stream {stream.name}: max_deliveries must be a positive int (got {max_deliveries!r})"
            )
        dead = dead_letter_stream if dead_letter_stream is not None else stream.name + DEAD_LETTER_SUFFIX
        if not dead or dead == stream.name:
            raise StoreError(
                f"event stream {stream.name}: dead_letter_stream must be a non-empty name other than the "
                f"stream's (got {dead_letter_stream!r})"
            )
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.start_id = start_id
        self.dead_letter_stream = dead
        self.max_deliveries = max_deliveries
        self._group_ready = False
        self._counts = {"delivered": 0, "claimed": 0, "acked": 0, "undecodable": 0, "poison": 0, "trimmed": 0}

    # ----------------------------------------------------------------- group

    def ensure_group(self) -> None:
        """Create the group at ``start_id`` (and the stream) unless it exists.

        Raises:
            StoreError: if Redis cannot be reached.
        """
        try:
            self.stream._redis.xgroup_create(self.stream.name, self.group, self.start_id, mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise self._error("create group", exc) from None
        except redis.exceptions.RedisError as exc:
            raise self._error("create group", exc) from None
        self._group_ready = True

    # ----------------------------------------------------------------- reading

    def read(self, count: int = 100, block_ms: int | None = None) -> list[Delivery]:
        """Take up to ``count`` events no consumer of the group has been given (``XREADGROUP >``).

        Entries that cannot be decoded are dead-lettered and acknowledged, not returned.

        Args:
            count: at most this many entries.
            block_ms: wait up to this many milliseconds for an event if none is waiting; ``None``
                returns at once. Must leave 250 ms of the stream's ``socket_timeout_s``.

        Raises:
            StoreError: if an argument is invalid or Redis cannot be reached.
        """
        self._check_count(count)
        if block_ms is not None:
            limit_ms = int(self.stream.socket_timeout_s * 1000) - _MIN_REPLY_MARGIN_MS
            if isinstance(block_ms, bool) or not isinstance(block_ms, int) or not 1 <= block_ms <= limit_ms:
                raise StoreError(
                    f"event stream {self.stream.name}: block_ms must be an int from 1 to {limit_ms} "
                    f"(socket_timeout_s={self.stream.socket_timeout_s} less {_MIN_REPLY_MARGIN_MS} ms "
                    f"for the "
                    f"reply; raise socket_timeout_s to block longer) (got {block_ms!r})"
                )
        reply = self._with_group(
            "read",
            self.stream._redis.xreadgroup,
            self.group,
            self.consumer,
            {self.stream.name: ">"},
            count=count,
            block=block_ms,
        )
        entries = reply[0][1] if reply else []
        return self._deliver([(entry_id, fields, 1) for entry_id, fields in entries], claimed=False)

    def claim_stale(self, min_idle_ms: int, count: int = 100) -> list[Delivery]:
        """Take over entries other consumers (or this one) were given and left unacknowledged.

        Claims (``XAUTOCLAIM``) up to ``count`` pending entries idle for at least
        ``min_idle_ms`` milliseconds — those of a consumer that crashed — scanning the group's
        whole pending list once. Each claim is a new delivery: one delivered more than
        ``max_deliveries`` times is dead-lettered and acknowledged instead of returned, and so
        is one no longer in the stream (trimmed before it was acknowledged).

        Raises:
            StoreError: if an argument is invalid or Redis cannot be reached.
        """
        self._check_count(count)
        if isinstance(min_idle_ms, bool) or not isinstance(min_idle_ms, int) or min_idle_ms < 0:
            raise StoreError(
                f"event stream {self.stream.name}: min_idle_ms must be a non-negative int "
                f"(got {min_idle_ms!r})"
            )
        deliveries: list[Delivery] = []
        cursor = "0-0"
        while len(deliveries) < count:
            cursor_raw, entries, deleted, counts = self._with_group(
                "claim stale entries",
                self.stream._claim_script,
                keys=[self.stream.name],
                args=[self.group, self.consumer, min_idle_ms, cursor, count - len(deliveries)],
            )
            trimmed = list(deleted)
            claimed: list[tuple[bytes, dict[bytes, bytes], int]] = []
            for entry, deliveries_so_far in zip(entries, counts):
                if isinstance(entry, list | tuple) and len(entry) == 2 and entry[1]:
                    claimed.append((entry[0], _pairs_to_dict(entry[1]), max(1, int(deliveries_so_far))))
                elif isinstance(entry, list | tuple) and entry:
                    trimmed.append(entry[0])
            self._dead_letter_trimmed(trimmed)
            deliveries.extend(self._deliver(claimed, claimed=True))
            cursor = _text(cursor_raw)
            if cursor == "0-0":
                break
        return deliveries

    # ----------------------------------------------------------------- acknowledging

    def ack(self, ids: Sequence[str]) -> int:
        """Acknowledge entries handled; return how many were pending (already acked ones are not).

        Raises:
            StoreError: if Redis cannot be reached.
        """
        if not ids:
            return 0
        acked = int(self._with_group("ack", self.stream._redis.xack, self.stream.name, self.group, *ids))
        self._counts["acked"] += acked
        return acked

    def pending(self, count: int = 1000, consumer: str | None = None) -> list[PendingInfo]:
        """The group's unacknowledged entries, oldest first (``XPENDING`` extended form).

        Args:
            count: at most this many entries.
            consumer: only those held by this consumer; ``None`` for every consumer's.

        Raises:
            StoreError: if an argument is invalid or Redis cannot be reached.
        """
        self._check_count(count)
        rows = self._with_group(
            "list pending",
            self.stream._redis.xpending_range,
            self.stream.name,
            self.group,
            "-",
            "+",
            count,
            consumername=consumer,
        )
        return [
            PendingInfo(
                id=_text(row["message_id"]),
                consumer=_text(row["consumer"]),
                idle_ms=int(row["time_since_delivered"]),
                deliveries=int(row["times_delivered"]),
            )
            for row in rows
        ]

    # ----------------------------------------------------------------- dead letters and stats

    def dead_letters(self, start: str = "-", end: str = "+", count: int | None = None) -> list[DeadLetter]:
        """The dead-letter stream's entries from ``start`` to ``end``, oldest first (every group's).

        Raises:
            StoreError: if Redis cannot be reached.
        """
        entries = self.stream._call(
            f"read dead letters of {self.dead_letter_stream}",
            self.stream._redis.xrange,
            self.dead_letter_stream,
            start,
            end,
            count,
        )
        letters = []
        for raw_id, fields in entries:
            text = {_text(key): value for key, value in fields.items()}
            letters.append(
                DeadLetter(
                    id=_text(raw_id),
                    source_stream=_text(text.get("source_stream", b"")),
                    source_id=_text(text.get("source_id", b"")),
                    group=_text(text.get("group", b"")),
                    consumer=_text(text.get("consumer", b"")),
                    reason=_text(text.get("reason", b"")),
                    deliveries=int(text.get("deliveries", b"0") or 0),
                    payload={
                        key[len(PAYLOAD_PREFIX) :]: value
                        for key, value in text.items()
                        if key.startswith(PAYLOAD_PREFIX)
                    },
                )
            )
        return letters

    def stats(self) -> ConsumerStats:
        """What this consumer has delivered, acknowledged and dead-lettered since it was built."""
        return ConsumerStats(**self._counts)

    # ----------------------------------------------------------------- internals

    def _deliver(
        self, entries: list[tuple[bytes, dict[bytes, bytes], int]], *, claimed: bool
    ) -> list[Delivery]:
        """Decode entries; dead-letter and ack the undecodable and the over-delivered; return the rest."""
        deliveries: list[Delivery] = []
        rejected: list[tuple[bytes, dict[bytes, bytes], int, str, str]] = []
        for raw_id, fields, attempts in entries:
            if attempts > self.max_deliveries:
                reason = f"delivered {attempts} times, more than max_deliveries={self.max_deliveries}"
                rejected.append((raw_id, fields, attempts, reason, "poison"))
                continue
            try:
                event = decode_entry(fields)
            except StoreError as exc:
                rejected.append((raw_id, fields, attempts, f"undecodable: {exc}", "undecodable"))
                continue
            deliveries.append(Delivery(id=_text(raw_id), event=event, attempts=attempts))
        if rejected:
            pipeline = self.stream._redis.pipeline(transaction=True)
            for raw_id, fields, attempts, reason, _ in rejected:
                record = self._dead_letter_fields(raw_id, reason, attempts, fields)
                pipeline.xadd(self.dead_letter_stream, record)
                pipeline.xack(self.stream.name, self.group, raw_id)
            self.stream._call(f"dead-letter {len(rejected)} entries", pipeline.execute)
            for *_, kind in rejected:
                self._counts[kind] += 1
        self._counts["delivered"] += len(deliveries)
        if claimed:
            self._counts["claimed"] += len(deliveries)
        return deliveries

    def _dead_letter_trimmed(self, ids: list[bytes]) -> None:
        """Record pending entries that were trimmed from the stream before anyone acknowledged them."""
        if not ids:
            return
        reason = "trimmed from the stream before it was acknowledged; its payload is lost"
        pipeline = self.stream._redis.pipeline(transaction=True)
        for raw_id in ids:
            pipeline.xadd(self.dead_letter_stream, self._dead_letter_fields(raw_id, reason, 0, {}))
            pipeline.xack(self.stream.name, self.group, raw_id)  # Redis 7 already dropped it; 6.2 did not
        self.stream._call(f"dead-letter {len(ids)} trimmed entries", pipeline.execute)
        self._counts["trimmed"] += len(ids)

    def _dead_letter_fields(
        self, raw_id: bytes | str, reason: str, attempts: int, fields: dict[bytes, bytes]
    ) -> Any:
        record: dict[bytes, bytes] = {
            b"source_stream": self.stream.name.encode(),
            b"source_id": raw_id if isinstance(raw_id, bytes) else raw_id.encode(),
            b"group": self.group.encode(),
            b"consumer": self.consumer.encode(),
            b"reason": reason.encode(),
            b"deliveries": str(attempts).encode(),
        }
        for key, value in fields.items():
            record[PAYLOAD_PREFIX.encode() + (key if isinstance(key, bytes) else str(key).encode())] = value
        return record

    def _with_group(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a group command, creating the group first, and again once if it has vanished."""
        if not self._group_ready:
            self.ensure_group()
        try:
            return function(*args, **kwargs)
        except redis.exceptions.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise self._error(what, exc) from None
        except redis.exceptions.RedisError as exc:
            raise self._error(what, exc) from None
        self.ensure_group()  # the stream was deleted (and its groups with it) since the group was made
        try:
            return function(*args, **kwargs)
        except redis.exceptions.RedisError as exc:
            raise self._error(what, exc) from None

    def _check_count(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise StoreError(f"event stream {self.stream.name}: count must be a positive int (got {count!r})")

    def _error(self, what: str, exc: Exception) -> StoreError:
        return StoreError(
            f"event stream {self.stream.name} at {self.stream.url}, group {self.group}, consumer "
            f"{self.consumer}: {what} failed ({type(exc).__name__}: {exc})"
        )


def _pairs_to_dict(pairs: Any) -> dict[bytes, bytes]:
    """A Lua script returns an entry's fields as a flat [name, value, ...] list; redis-py as a dict."""
    if isinstance(pairs, dict):
        return pairs
    return {pairs[i]: pairs[i + 1] for i in range(0, len(pairs) - 1, 2)}


__all__ = [
    "DEFAULT_STREAM",
    "ConsumerStats",
    "DeadLetter",
    "Delivery",
    "EventConsumer",
    "EventStream",
    "PendingInfo",
    "decode_entry",
    "encode_entry",
]
