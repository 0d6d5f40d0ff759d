"""The audit log: an append-only, hash-chained record of who did what, verifiable by anyone.

Every row carries the SHA-256 of its own content and of the row before it, so editing,
deleting, reordering or inserting a row anywhere in history breaks the chain at that row, and
:meth:`AuditLog.verify` (or ``python -m pipelines.audit verify``) names the first bad row.
Two changes no hash chain can see on its own — rows cut from the end, or a whole suffix
rewritten with fresh hashes — are caught against a head ``(seq, hash)`` kept outside the
database from an earlier verify (``expected_head``).
SQLAlchemy Core over any SQL URL: SQLite by default, PostgreSQL in production.

**Append-only in the database.** The table carries triggers that refuse every ``UPDATE`` and
``DELETE`` (and, on PostgreSQL, ``TRUNCATE``), so no application path can rewrite history; an
attacker must first drop or disable them, which needs DDL rights — give the application's role
``INSERT, SELECT`` only. A unique index on ``prev_hash`` refuses a fork (two rows claiming the
same predecessor) even if the append lock below were bypassed.

**Concurrency.** Appends are serialised: on PostgreSQL by ``pg_advisory_xact_lock`` on a key
derived from the table name, on SQLite by ``BEGIN IMMEDIATE``. Any number of processes, each
with its own :class:`AuditLog`, produce one unbroken chain: ``seq`` = 1, 2, 3, ... and each
``prev_hash`` equal to the previous row's ``hash``.

**The hash, exactly** (what an auditor re-implements; :func:`record_hash`)::

    frame(b)  = len(b) as 8-byte big-endian unsigned integer || b
    message   = frame(b"amcp.audit.v1")
             || frame(ASCII decimal of seq)          e.g. b"17"   (no sign, no leading zeros)
             || frame(ASCII decimal of ts_ns)        e.g. b"1700000000000000000"
             || frame(UTF-8 of actor)
             || frame(UTF-8 of action)
             || frame(UTF-8 of payload text)         the ``payload`` column, byte for byte
             || frame(ASCII of prev_hash)            64 lowercase hex digits
    hash      = lowercase hex of SHA-256(message)

The first row (``seq`` 1) has ``prev_hash`` = 64 zeros (:data:`GENESIS_HASH`). The hash covers
the stored payload text byte for byte (canonical text is pure ASCII), so checking a chain
needs no JSON re-encoding at all.

**The payload text** is produced by :func:`canonical_json`, so equal payloads always give
equal text whatever the key order: JSON (RFC 8259) with no whitespace, object keys sorted by
Unicode code point, every non-ASCII and control character escaped as ``\\uXXXX`` (lowercase
hex; surrogate pairs beyond U+FFFF), ``true``/``false``/``null``, and numbers typed so that
``1``, ``1.0`` and ``Decimal("1")`` stay distinct values with distinct hashes:

* ``int`` → a JSON integer: ``1``, ``-42`` (``bool`` is ``true``/``false``, never ``1``);
* ``float`` → Python's shortest round-trip ``repr``, which always has a ``.`` or an exponent:
  ``1.0``, ``0.1``, ``1e+16``, ``-0.0``; NaN and infinities are refused;
* ``Decimal`` → ``{"$decimal":"<str(d)>"}`` with the exponent kept, so ``Decimal("1")`` →
  ``{"$decimal":"1"}`` and ``Decimal("1.00")`` → ``{"$decimal":"1.00"}`` (precision is part of
  an amount); NaN and infinities are refused;
* ``str`` (and ``str`` enums, by value) → a JSON string; a list or tuple → an array (read back
  as a list); a mapping → an object whose keys are strings not starting with ``$`` (reserved
  for type tags). Anything else (datetimes, bytes, sets, objects) is refused with its path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from amcp.errors import StoreError
from amcp.store._sqlite import configure_connection

GENESIS_HASH = "0" * 64
HASH_DOMAIN = b"amcp.audit.v1"
DECIMAL_TAG = "$decimal"
MAX_ACTOR_CHARS = 256
MAX_ACTION_CHARS = 128
MAX_PAYLOAD_DEPTH = 64
MAX_TS_NS = 2**63 - 1

Problem = Literal["edited", "deleted", "reordered", "inserted", "bad_genesis"]

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BEGIN_OPTION = "amcp_audit_begin"
_VERIFY_BATCH_ROWS = 1000


# --------------------------------------------------------------------------- the encoding


def canonical_json(payload: Mapping[str, Any]) -> str:
    """Return the canonical JSON text of ``payload`` (the encoding in the module docstring).

    Raises:
        StoreError: if the payload is not a mapping, or holds a value that has no canonical
            form (a float or Decimal NaN/infinity, a non-string or ``$``-prefixed key, an
            unsupported type, nesting deeper than ``MAX_PAYLOAD_DEPTH``); the message names
            the path, e.g. ``payload['fills'][2]['px']``.
    """
    if not isinstance(payload, Mapping):
        raise StoreError(f"audit payload must be a mapping, got {type(payload).__name__}")
    plain = _plain(payload, "payload", 0)
    return json.dumps(plain, ensure_ascii=True, separators=(",", ":"), sort_keys=True, allow_nan=False)


def decode_payload(text: str) -> dict[str, Any]:
    """Parse canonical payload text back to values (``{"$decimal": s}`` → ``Decimal(s)``).

    Raises:
        StoreError: if ``text`` is not a JSON object.
    """
    try:
        value = json.loads(text, object_hook=_decode_object)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise StoreError(f"audit payload is not valid canonical JSON ({exc}): {text[:200]!r}") from exc
    if not isinstance(value, dict):
        raise StoreError(f"audit payload must be a JSON object, got {type(value).__name__}: {text[:200]!r}")
    return value


def record_hash(seq: int, ts_ns: int, actor: str, action: str, payload_text: str, prev_hash: str) -> str:
    """Return the lowercase hex SHA-256 of one row, exactly as the module docstring specifies.

    Args:
        seq: position in the chain, 1 for the first row.
        ts_ns: event time, UTC nanoseconds since the epoch.
        actor: who acted (a user, service or strategy id).
        action: what was done (a short verb phrase such as ``order.submit``).
        payload_text: the stored canonical JSON text of the payload.
        prev_hash: the previous row's hash, or :data:`GENESIS_HASH` for ``seq`` 1.

    Raises:
        UnicodeEncodeError: if a text field holds a lone surrogate (cannot be UTF-8).
    """
    digest = hashlib.sha256()
    for part in (
        HASH_DOMAIN,
        str(int(seq)).encode("ascii"),
        str(int(ts_ns)).encode("ascii"),
        actor.encode("utf-8"),
        action.encode("utf-8"),
        payload_text.encode("utf-8"),
        prev_hash.encode("ascii"),
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _plain(value: Any, path: str, depth: int) -> Any:
    """Map ``value`` onto JSON-native types (Decimals tagged), refusing what has no canonical form."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise StoreError(f"audit payload nests deeper than {MAX_PAYLOAD_DEPTH} levels at {path}")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # a str enum by its value, never "Cls.MEMBER"
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise StoreError(f"audit payload: {path} is {value!r}; expected a finite float")
        return float(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise StoreError(f"audit payload: {path} is Decimal({str(value)!r}); expected a finite Decimal")
        return {DECIMAL_TAG: str(value)}
    if isinstance(value, Mapping):
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise StoreError(
                    f"audit payload: key {key!r} at {path} is {type(key).__name__}; expected str"
                )
            if key.startswith("$"):
                raise StoreError(
                    f"audit payload: key {key!r} at {path} starts with '$', reserved for type tags"
                )
            plain[str.__str__(key)] = _plain(item, f"{path}[{key!r}]", depth + 1)
        return plain
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{path}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise StoreError(
        f"audit payload: {path} is {type(value).__name__} ({value!r:.80}); expected None, bool, int, "
        "finite float, finite Decimal, str, list, tuple or a mapping with str keys"
    )


def _decode_object(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and DECIMAL_TAG in obj:
        text = obj[DECIMAL_TAG]
        if not isinstance(text, str):
            raise ValueError(f"{DECIMAL_TAG} tag holds {text!r}, expected a string")
        return Decimal(text)
    return obj


# --------------------------------------------------------------------------- value types


@dataclass(frozen=True)
class AuditEntry:
    """One thing to append: who (``actor``), what (``action``), details, and when (UTC ns)."""

    actor: str
    action: str
    payload: Mapping[str, Any]
    ts_ns: int | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One stored row. ``payload`` is read-only, decoded from the canonical text."""

    seq: int
    ts_ns: int
    actor: str
    action: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict; the payload in canonical form (Decimals tagged, lossless)."""
        return {
            "seq": self.seq,
            "ts_ns": self.ts_ns,
            "actor": self.actor,
            "action": self.action,
            "payload": json.loads(canonical_json(self.payload)),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :meth:`AuditLog.verify`.

    Attributes:
        ok: True when every row verified (and the anchor, if one was given, matched).
        rows: rows read in ``seq`` order until verification stopped (all rows when ``ok``).
        first_bad_seq: the first ``seq`` at which history is wrong (for ``deleted``, the first
            missing ``seq``), or None when ``ok``.
        problem: ``edited``, ``deleted``, ``reordered``, ``inserted`` or ``bad_genesis``, or None.
        detail: one sentence for a human, naming the rows and hashes involved.
        head_seq: ``seq`` of the last row that verified (0 for an empty log).
        head_hash: its hash (:data:`GENESIS_HASH` for an empty log): record it outside the
            database and pass it back as ``expected_head`` to detect a truncated tail later.
    """

    ok: bool
    rows: int
    first_bad_seq: int | None
    problem: Problem | None
    detail: str
    head_seq: int = 0
    head_hash: str = GENESIS_HASH

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "detail": self.detail,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
        }


@dataclass(frozen=True)
class _Row:
    """A row as read for verification; fields may hold anything an attacker wrote."""

    seq: Any
    ts_ns: Any
    actor: Any
    action: Any
    payload: Any
    prev_hash: Any
    hash: Any

    def intact_at(self, seq: int) -> bool:
        """Whether the stored hash matches this row's content placed at ``seq``."""
        try:
            digest = record_hash(seq, self.ts_ns, self.actor, self.action, self.payload, self.prev_hash)
        except (TypeError, ValueError, AttributeError, UnicodeError):
            return False
        return bool(digest == self.hash)


@dataclass
class _Failure:
    expected_seq: int
    expected_prev: str
    prev: _Row | None
    row: _Row
    self_ok: bool
    link_ok: bool


@dataclass
class _Scan:
    rows: int = 0
    head: _Row | None = None
    failure: _Failure | None = None
    anchor_mismatch: _Row | None = None


# --------------------------------------------------------------------------- the log


class AuditLog:
    """An append-only, hash-chained audit log in one SQL table.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///runs/audit.sqlite`` or
            ``postgresql+psycopg2://user@host/db``.
        table: table name (lowercase letters, digits, ``_``; at most 40 characters). The triggers,
            indexes and PostgreSQL function are named after it.
        create: create the table, indexes and protective triggers if missing, and re-enable a
            disabled trigger (PostgreSQL). Pass False to only read an existing log (the CLI does).

    Raises:
        StoreError: if the table name is invalid, the database is unreachable, or (with
            ``create=False``) the table does not exist; the message names the URL and table.
    """

    def __init__(self, url: str, *, table: str = "audit_log", create: bool = True) -> None:
        if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
            raise StoreError(
                f"audit table name {table!r} is invalid; expected a lowercase letter or '_' then "
                "lowercase letters, digits or '_', at most 40 characters"
            )
        self.table_name = table
        try:
            parsed = sa.engine.make_url(url)
        except Exception as exc:  # noqa: BLE001 - any parse failure is bad input at this edge
            raise StoreError(f"audit log: cannot parse database URL {url!r}: {exc}") from exc
        self.url = parsed.render_as_string(hide_password=True)
        self._metadata = sa.MetaData()
        self._table = sa.Table(
            table,
            self._metadata,
            sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("ts_ns", sa.BigInteger, nullable=False),
            sa.Column("actor", sa.String(MAX_ACTOR_CHARS), nullable=False),
            sa.Column("action", sa.String(MAX_ACTION_CHARS), nullable=False),
            sa.Column("payload", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
            sa.Index(f"{table}_prev_hash_key", "prev_hash", unique=True),
            sa.Index(f"{table}_hash_key", "hash", unique=True),
        )
        try:
            self._engine = self._make_engine(parsed)
        except Exception as exc:  # noqa: BLE001 - a missing driver or bad option is a store error here
            raise StoreError(f"audit log: cannot create an engine for {self.url}: {exc}") from exc
        self._sqlite = self._engine.dialect.name == "sqlite"
        lock_digest = hashlib.sha256(f"amcp.audit:{table}".encode()).digest()
        self._lock_key = int.from_bytes(lock_digest[:8], "big", signed=True)
        # the append's statements, built once (their compiled form is then reused)
        self._head_query = sa.select(self._table.c.seq, self._table.c.hash).order_by(
            self._table.c.seq.desc()).limit(1)
        self._lock_query = sa.select(sa.func.pg_advisory_xact_lock(self._lock_key))
        self._insert = self._table.insert()
        try:
            database = parsed.database or ""
            on_disk = self._sqlite and database not in ("", ":memory:") and not database.startswith("file:")
            if not create and on_disk and not os.path.isfile(database):
                raise StoreError(f"no SQLite database file at {database!r} ({self.url})")
            if create:
                self._create()
            elif not sa.inspect(self._engine).has_table(table):
                raise StoreError(f"audit table {table!r} does not exist at {self.url}")
        except StoreError:
            self._engine.dispose()
            raise
        except Exception as exc:  # noqa: BLE001
            self._engine.dispose()
            raise StoreError(f"cannot open audit log {table!r} at {self.url}: {exc}") from exc

    # ---- lifecycle

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- writing

    def append(
        self, actor: str, action: str, payload: Mapping[str, Any], ts_ns: int | None = None
    ) -> AuditRecord:
        """Append one row in its own transaction and return it as stored.

        Args:
            actor: who acted; 1 to 256 characters, no NUL.
            action: what was done; 1 to 128 characters, no NUL.
            payload: the details (see the module docstring for what values are allowed).
            ts_ns: event time in UTC nanoseconds; the wall clock (``time.time_ns()``) when None.

        Raises:
            StoreError: on invalid input (nothing is written) or a database failure.
        """
        return self.append_many([AuditEntry(actor, action, payload, ts_ns)])[0]

    def append_many(
        self, entries: Iterable[AuditEntry], *, connection: Connection | None = None
    ) -> list[AuditRecord]:
        """Append rows in one transaction, in the order given: all are written or none.

        Args:
            entries: what to append.
            connection: a connection to this log's database with a write transaction open (see
                :meth:`shares_database`): the rows are written inside it and commit or roll back
                with whatever else it writes, so a record and its audit row are one durable
                step. Nothing is committed here, and database errors propagate as raised so the
                transaction's owner can roll back or retry (a retry appends afresh). The append
                lock (advisory lock or SQLite write lock) is held until that transaction ends:
                append last, just before the commit. ``None``: a transaction of its own.

        Raises:
            StoreError: if any entry is invalid (nothing is written), ``connection`` is not to
                this log's database or has no transaction open, or (own transaction only) the
                database fails.
        """
        prepared = [self._prepare(index, entry) for index, entry in enumerate(entries)]
        if connection is not None:
            self._check_joined(connection)
            return self._append(connection, prepared) if prepared else []
        if not prepared:
            return []
        try:
            with self._connect(write=True) as own, own.begin():
                return self._append(own, prepared)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - any driver error is a store error at this edge
            raise StoreError(
                f"audit log {self.table_name!r} at {self.url}: append of {len(prepared)} rows failed: {exc}"
            ) from exc

    def shares_database(self, url: str) -> bool:
        """Whether ``url`` names this log's database, so that a transaction of another store on
        ``url`` can carry audit rows (:meth:`append_many` with ``connection``).

        The URLs are compared without their passwords. An in-memory SQLite database is never
        shared (each engine has its own).
        """
        try:
            other = sa.engine.make_url(url).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - an unparsable URL names no database of ours
            return False
        database = self._engine.url.database or ""
        in_memory = self._sqlite and (database in ("", ":memory:") or "mode=memory" in self.url)
        return other == self.url and not in_memory

    def _check_joined(self, connection: Connection) -> None:
        """Refuse a caller's connection that is not in a transaction on this log's database."""
        theirs = connection.engine.url.render_as_string(hide_password=True)
        if not self.shares_database(theirs):
            raise StoreError(
                f"audit log {self.table_name!r} at {self.url}: cannot append within a transaction on "
                f"{theirs}: it is another database"
            )
        if not connection.in_transaction():
            raise StoreError(
                f"audit log {self.table_name!r} at {self.url}: append_many(connection=...) needs a "
                "transaction open on the connection"
            )

    def _append(self, connection: Connection, prepared: list[tuple[int, str, str, str]]) -> list[AuditRecord]:
        """Lock the chain, read its head and insert ``prepared`` after it, on ``connection``."""
        if not self._sqlite:
            connection.execute(self._lock_query)
        head = connection.execute(self._head_query).first()
        seq, prev_hash = (int(head.seq), str(head.hash)) if head is not None else (0, GENESIS_HASH)
        rows = []
        for ts_ns, actor, action, text in prepared:
            seq += 1
            digest = record_hash(seq, ts_ns, actor, action, text, prev_hash)
            rows.append({"seq": seq, "ts_ns": ts_ns, "actor": actor, "action": action,
                         "payload": text, "prev_hash": prev_hash, "hash": digest})
            prev_hash = digest
        connection.execute(self._insert, rows[0] if len(rows) == 1 else rows)
        return [self._record(row) for row in rows]

    # ---- reading

    def records(self, since_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """Return rows with ``seq > since_seq`` in ``seq`` order, at most ``limit`` of them.

        Raises:
            StoreError: on a negative ``since_seq`` or ``limit``, a database failure, or a stored
                payload that is not canonical JSON (naming its ``seq``).
        """
        if isinstance(since_seq, bool) or not isinstance(since_seq, int) or since_seq < 0:
            raise StoreError(f"since_seq must be a whole number >= 0, got {since_seq!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise StoreError(f"limit must be a whole number >= 0 or None, got {limit!r}")
        query = sa.select(self._table).where(self._table.c.seq > since_seq).order_by(self._table.c.seq)
        if limit is not None:
            query = query.limit(limit)
        rows = self._read(query)
        return [self._record(row._mapping) for row in rows]

    def head(self) -> AuditRecord | None:
        """Return the last row (highest ``seq``), or None for an empty log."""
        rows = self._read(sa.select(self._table).order_by(self._table.c.seq.desc()).limit(1))
        return self._record(rows[0]._mapping) if rows else None

    def tail(self, count: int) -> list[AuditRecord]:
        """Return the last ``count`` rows in ``seq`` order.

        Raises:
            StoreError: if ``count`` is negative or the database fails.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise StoreError(f"tail count must be a whole number >= 0, got {count!r}")
        query = sa.select(self._table).order_by(self._table.c.seq.desc()).limit(count)
        return [self._record(row._mapping) for row in reversed(self._read(query))]

    # ---- verification

    def verify(self, expected_head: tuple[int, str] | None = None) -> VerifyReport:
        """Recompute every hash in ``seq`` order and report the first break in the chain.

        Rows are streamed in batches of 1,000 (memory does not grow with the log) inside one
        read transaction, so rows appended meanwhile are not seen. Without ``expected_head``,
        deleting rows from the end of the log, or rewriting and re-hashing a whole suffix, is
        undetectable by any hash chain; pass the ``(head_seq, head_hash)`` of an earlier report,
        kept outside the database, to detect those too.

        Args:
            expected_head: ``(seq, hash)`` that row ``seq`` must still have, or None.

        Raises:
            StoreError: if the database cannot be read, or ``expected_head`` is malformed.
        """
        if expected_head is not None:
            anchor_seq, anchor_hash = expected_head
            if isinstance(anchor_seq, bool) or not isinstance(anchor_seq, int) or anchor_seq < 1:
                raise StoreError(f"expected_head seq must be a whole number >= 1, got {anchor_seq!r}")
            if not isinstance(anchor_hash, str) or not _HEX64.fullmatch(anchor_hash):
                raise StoreError(f"expected_head hash must be 64 lowercase hex digits, got {anchor_hash!r}")
        try:
            with self._connect(write=False) as connection, connection.begin():
                scan = self._scan(connection, expected_head)
                if scan.failure is not None:
                    return self._classify(connection, scan.failure, scan.rows)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(
                f"audit log {self.table_name!r} at {self.url}: verify could not read: {exc}"
            ) from exc
        if scan.anchor_mismatch is not None and expected_head is not None:
            row, before = scan.anchor_mismatch, scan.head
            return VerifyReport(
                False, scan.rows, int(row.seq), "edited",
                f"row {row.seq} has hash {row.hash} but the expected head says {expected_head[1]}: "
                f"history at or before seq {row.seq} was rewritten and re-hashed",
                int(before.seq) if before is not None else 0,
                str(before.hash) if before is not None else GENESIS_HASH,
            )
        head_seq = int(scan.head.seq) if scan.head is not None else 0
        head_hash = str(scan.head.hash) if scan.head is not None else GENESIS_HASH
        if expected_head is not None and head_seq < expected_head[0]:
            return VerifyReport(
                False, scan.rows, head_seq + 1, "deleted",
                f"the log ends at seq {head_seq} but the expected head is seq {expected_head[0]}: "
                f"rows {head_seq + 1}..{expected_head[0]} were deleted",
                head_seq, head_hash,
            )
        return VerifyReport(True, scan.rows, None, None, f"{scan.rows} rows verified", head_seq, head_hash)

    def _scan(self, connection: Connection, expected_head: tuple[int, str] | None) -> _Scan:
        """Stream rows in ``seq`` order; stop at the first that breaks the chain or the anchor."""
        scan = _Scan()
        query = sa.select(*self._columns()).order_by(self._table.c.seq)
        streaming = connection.execution_options(stream_results=True, yield_per=_VERIFY_BATCH_ROWS)
        result = streaming.execute(query)
        try:
            for raw in result:
                row, prev = _Row(*raw), scan.head
                scan.rows += 1
                expected_seq = int(prev.seq) + 1 if prev is not None else 1
                expected_prev = str(prev.hash) if prev is not None else GENESIS_HASH
                self_ok = isinstance(row.seq, int) and row.intact_at(row.seq)
                link_ok = row.prev_hash == expected_prev
                if row.seq != expected_seq or not self_ok or not link_ok:
                    scan.failure = _Failure(expected_seq, expected_prev, prev, row, self_ok, link_ok)
                    break
                if expected_head is not None and row.seq == expected_head[0] and row.hash != expected_head[1]:
                    scan.anchor_mismatch = row
                    break
                scan.head = row
        finally:
            result.close()
        return scan

    def _classify(self, connection: Connection, failure: _Failure, rows: int) -> VerifyReport:
        """Name the kind of damage at the first failing row (lookups use the unique hash indexes).

        ``row`` sits where seq ``expected`` belongs and does not fit. In order: a seq below the
        expected one is a forged insertion; a gap is a deletion (or, when the row after the gap
        is chained to the row before it, a forged row); a wrong genesis link is ``bad_genesis``;
        an intact row chained to another predecessor means that predecessor was replaced; a row
        whose hash fits only another seq was moved (swapped: ``reordered``; renumbered down
        after a delete: ``deleted``; shifted up behind a forged row: ``inserted``); anything
        else is an edit.
        """
        row, prev, expected = failure.row, failure.prev, failure.expected_seq

        def report(problem: Problem, seq: int, detail: str) -> VerifyReport:
            if prev is not None and seq < expected:  # damage starts at `prev`: trust only what precedes it
                head_seq, head_hash = int(prev.seq) - 1, str(prev.prev_hash)
            else:
                head_seq = int(prev.seq) if prev is not None else 0
                head_hash = str(prev.hash) if prev is not None else GENESIS_HASH
            return VerifyReport(False, rows, seq, problem, detail, head_seq, head_hash)

        seq = row.seq
        if not isinstance(seq, int) or seq < expected:
            return report("inserted", seq if isinstance(seq, int) else expected,
                          f"row with seq {seq!r} where seq {expected} belongs: "
                          "a row was inserted with a forged seq")
        if seq > expected:
            if failure.self_ok and failure.link_ok:
                return report("inserted", seq,
                              f"row {seq} follows seq {expected - 1} across a gap yet is chained to it: "
                              "it was forged and inserted with a skipped seq")
            return report("deleted", expected,
                          f"seq {expected}..{seq - 1} missing: the next row is seq {seq}")
        if expected == 1 and row.prev_hash != GENESIS_HASH:
            return report("bad_genesis", 1, f"row 1 has prev_hash {row.prev_hash!r}; expected {GENESIS_HASH}")
        if failure.self_ok:
            return report("edited", expected - 1,
                          f"row {expected} is chained to {row.prev_hash} but row {expected - 1} has hash "
                          f"{failure.expected_prev}: row {expected - 1} was rewritten with a recomputed "
                          "hash, or replaced")
        table = self._table.c
        owner = self._row_where(connection, table.prev_hash == failure.expected_prev, exclude_seq=expected)
        if owner is not None and owner.intact_at(expected):
            # The genuine row `expected` is stored at owner.seq.
            predecessor = self._row_where(connection, table.hash == row.prev_hash, exclude_seq=None)
            candidates = {int(owner.seq)} | ({int(predecessor.seq) + 1} if predecessor is not None else set())
            if any(row.intact_at(candidate) for candidate in candidates) or int(owner.seq) != expected + 1:
                return report("reordered", expected,
                              f"the row that belongs at seq {expected} is stored at seq {owner.seq}, and "
                              f"seq {expected} holds another row: rows were reordered")
            return report("inserted", expected,
                          f"the row that belongs at seq {expected} is stored at seq {owner.seq}: a forged "
                          f"row took seq {expected} and later rows were shifted up")
        if not failure.link_ok and row.intact_at(expected + 1):
            return report("deleted", expected,
                          f"row {expected} is the original row {expected + 1}: row {expected} was deleted "
                          "and later rows renumbered")
        if prev is not None and row.intact_at(expected - 1) and row.prev_hash == prev.prev_hash:
            return report("inserted", expected - 1,
                          f"row {expected} is the original row {expected - 1}: a forged row took seq "
                          f"{expected - 1} and later rows were shifted up")
        return report("edited", expected,
                      f"row {expected} does not match its hash {row.hash!r}: its content was edited")

    def _columns(self) -> list[sa.Column[Any]]:
        return [self._table.c[name] for name in _Row.__dataclass_fields__]

    def _row_where(self, connection: Connection, condition: Any, exclude_seq: int | None) -> _Row | None:
        query = sa.select(*self._columns()).where(condition)
        if exclude_seq is not None:
            query = query.where(self._table.c.seq != exclude_seq)
        raw = connection.execute(query.order_by(self._table.c.seq).limit(1)).first()
        return _Row(*raw) if raw is not None else None

    # ---- internals

    def _make_engine(self, url: sa.engine.URL) -> Engine:
        if url.get_backend_name() != "sqlite":
            return sa.create_engine(url, pool_pre_ping=True)
        connect_args: dict[str, Any] = {} if "timeout" in url.query else {"timeout": 30.0}
        engine = sa.create_engine(url, connect_args=connect_args)

        # pysqlite's own transaction handling cannot BEGIN IMMEDIATE: take it over (the
        # recipe in SQLAlchemy's SQLite dialect documentation), per engine, no global hooks.
        @sa.event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            configure_connection(dbapi_connection)

        @sa.event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
            connection.exec_driver_sql(f"BEGIN {mode}")

        return engine

    def _connect(self, *, write: bool) -> Connection:
        connection = self._engine.connect()
        if self._sqlite:
            connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE" if write else "DEFERRED"})
        elif not write:
            connection.execution_options(isolation_level="REPEATABLE READ")
        return connection

    def _read(self, query: Any) -> Sequence[Any]:
        try:
            with self._connect(write=False) as connection, connection.begin():
                return connection.execute(query).all()
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"audit log {self.table_name!r} at {self.url}: read failed: {exc}") from exc

    def _create(self) -> None:
        """Create the table, indexes and triggers if missing; re-enable a disabled trigger."""
        name = self.table_name
        with self._connect(write=True) as connection, connection.begin():
            if not self._sqlite:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_key)))
            self._metadata.create_all(connection)
            if self._sqlite:
                for operation in ("UPDATE", "DELETE"):
                    refusal = f"audit log {name} is append-only: {operation} refused"
                    connection.execute(sa.text(
                        f"CREATE TRIGGER IF NOT EXISTS {name}_no_{operation.lower()} BEFORE {operation} "
                        f"ON {name} BEGIN SELECT RAISE(ABORT, '{refusal}'); END"
                    ))
                return
            state = connection.execute(
                sa.text("SELECT tgenabled FROM pg_trigger "
                        "WHERE tgrelid = to_regclass(:table) AND tgname = :trigger"),
                {"table": name, "trigger": f"{name}_append_only"},
            ).scalar()
            if state is None:
                connection.execute(sa.text(
                    f"CREATE OR REPLACE FUNCTION {name}_append_only() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN RAISE EXCEPTION 'audit log % is append-only: % refused', "
                    "TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege'; END $$"
                ))
                connection.execute(sa.text(
                    f"CREATE TRIGGER {name}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {name} "
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {name}_append_only()"
                ))
            elif state == "D":
                connection.execute(sa.text(f"ALTER TABLE {name} ENABLE TRIGGER {name}_append_only"))

    def _prepare(self, index: int, entry: AuditEntry) -> tuple[int, str, str, str]:
        if not isinstance(entry, AuditEntry):
            raise StoreError(f"audit entry {index} is {type(entry).__name__}; expected AuditEntry")
        actor = _text_field("actor", entry.actor, MAX_ACTOR_CHARS, index)
        action = _text_field("action", entry.action, MAX_ACTION_CHARS, index)
        ts_ns = time.time_ns() if entry.ts_ns is None else entry.ts_ns
        if isinstance(ts_ns, bool) or not isinstance(ts_ns, int) or not 0 <= ts_ns <= MAX_TS_NS:
            raise StoreError(f"audit entry {index}: ts_ns must be a whole number of UTC nanoseconds in "
                             f"[0, 2**63 - 1], got {ts_ns!r}")
        return int(ts_ns), actor, action, canonical_json(entry.payload)

    def _record(self, row: Mapping[str, Any]) -> AuditRecord:
        try:
            payload = decode_payload(row["payload"])
        except StoreError as exc:
            raise StoreError(f"audit log {self.table_name!r} row {row['seq']}: {exc}") from exc
        return AuditRecord(
            seq=int(row["seq"]),
            ts_ns=int(row["ts_ns"]),
            actor=str(row["actor"]),
            action=str(row["action"]),
            payload=MappingProxyType(payload),
            prev_hash=str(row["prev_hash"]),
            hash=str(row["hash"]),
        )


def _text_field(name: str, value: Any, max_chars: int, index: int) -> str:
    """Return ``value`` as a plain str, or raise naming the entry, the field and what is wrong."""
    where = f"audit entry {index}: {name}"
    if not isinstance(value, str):
        raise StoreError(f"{where} must be a str, got {type(value).__name__} {value!r:.80}")
    if not 1 <= len(value) <= max_chars:
        raise StoreError(f"{where} must be 1 to {max_chars} characters, got {len(value)}: {value[:80]!r}")
    if "\x00" in value:
        raise StoreError(f"{where} {value[:80]!r} contains NUL, which PostgreSQL text cannot store")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{where} {value[:80]!r} is not valid Unicode ({exc.reason})") from exc
    return str.__str__(value)
