"""The audit log chains every row to the one before, refuses rewrites, and names any tampering.

Every database test runs on SQLite and on PostgreSQL, each in its own table (dropped after,
with its trigger function). Tampering is done as an attacker with DDL rights would: disable
the protective triggers first, then rewrite rows with raw SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from amcp.errors import StoreError
from amcp.store.audit import (
    GENESIS_HASH,
    AuditEntry,
    AuditLog,
    canonical_json,
    decode_payload,
    record_hash,
)
from pipelines.audit import main as audit_main


class Backend:
    """One database and one fresh table name; raw SQL access as an attacker with DDL rights."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.table = f"audit_{uuid.uuid4().hex[:12]}"
        self._raw = sa.create_engine(url)
        self._logs: list[AuditLog] = []

    def log(self) -> AuditLog:
        log = AuditLog(self.url, table=self.table)
        self._logs.append(log)
        return log

    def sql(self, statement: str, **params: Any) -> list[Any]:
        with self._raw.begin() as connection:
            result = connection.execute(sa.text(statement.replace("{t}", self.table)), params)
            return result.all() if result.returns_rows else []

    def disable_protection(self) -> None:
        if self.kind == "sqlite":
            self.sql("DROP TRIGGER {t}_no_update")
            self.sql("DROP TRIGGER {t}_no_delete")
        else:
            self.sql(f"ALTER TABLE {{t}} DISABLE TRIGGER {self.table}_append_only")

    def row(self, seq: int) -> Any:
        return self.sql("SELECT * FROM {t} WHERE seq = :seq", seq=seq)[0]

    def close(self) -> None:
        for log in self._logs:
            log.close()
        if self.kind == "postgresql":
            self.sql("DROP TABLE IF EXISTS {t}")
            self.sql(f"DROP FUNCTION IF EXISTS {self.table}_append_only()")
        self._raw.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = Backend(request.param, url)
    yield db
    db.close()


def _fill(log: AuditLog, count: int) -> list[Any]:
    return [
        log.append(f"user-{i % 3}", "order.submit", {"i": i, "qty": Decimal(i), "px": 100.5 + i},
                   ts_ns=1_000 + i)
        for i in range(1, count + 1)
    ]


def _documented_hash(seq: int, ts_ns: int, actor: str, action: str, payload_text: str, prev_hash: str) -> str:
    """The encoding of the module docstring, written again from the text, as an auditor would."""
    fields = [b"amcp.audit.v1", str(seq).encode(), str(ts_ns).encode(), actor.encode("utf-8"),
              action.encode("utf-8"), payload_text.encode("ascii"), prev_hash.encode("ascii")]
    return hashlib.sha256(b"".join(len(f).to_bytes(8, "big") + f for f in fields)).hexdigest()


# --------------------------------------------------------------------------- the encoding


def test_hash_is_the_documented_encoding_and_key_order_does_not_change_it() -> None:
    text_a = canonical_json({"b": 1, "a": {"y": [1, 2], "x": "é"}})
    text_b = canonical_json({"a": {"x": "é", "y": [1, 2]}, "b": 1})
    assert text_a == text_b == '{"a":{"x":"\\u00e9","y":[1,2]},"b":1}'
    expected = _documented_hash(7, 123, "alice", "order.submit", text_a, GENESIS_HASH)
    assert record_hash(7, 123, "alice", "order.submit", text_b, GENESIS_HASH) == expected
    # Every field is framed by its length: moving a character between fields changes the hash.
    assert record_hash(7, 123, "alic", "eorder.submit", text_a, GENESIS_HASH) != expected


def test_one_and_one_point_zero_and_decimal_one_are_distinct_values() -> None:
    texts = [canonical_json({"x": value}) for value in (1, 1.0, Decimal("1"), Decimal("1.00"), True, "1")]
    assert texts == ['{"x":1}', '{"x":1.0}', '{"x":{"$decimal":"1"}}', '{"x":{"$decimal":"1.00"}}',
                     '{"x":true}', '{"x":"1"}']
    hashes = {record_hash(1, 0, "a", "b", text, GENESIS_HASH) for text in texts}
    assert len(hashes) == len(texts)
    decoded = [decode_payload(text)["x"] for text in texts]
    assert [type(value) for value in decoded] == [int, float, Decimal, Decimal, bool, str]
    assert str(decoded[3]) == "1.00"  # the exponent (precision) survives


def test_floats_use_the_shortest_round_trip_form() -> None:
    assert canonical_json({"a": 0.1, "b": 1e16, "c": -0.0, "d": 2**70}) == (
        '{"a":0.1,"b":1e+16,"c":-0.0,"d":1180591620717411303424}'
    )


class _Side(str, Enum):
    BUY = "buy"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"px": float("nan")}, r"payload\['px'\] is nan; expected a finite float"),
        ({"px": float("inf")}, "expected a finite float"),
        ({"qty": Decimal("NaN")}, "expected a finite Decimal"),
        ({1: "x"}, "key 1 at payload is int; expected str"),
        ({"$decimal": "1"}, "starts with '\\$', reserved"),
        ({"fills": [{"at": datetime(2024, 1, 2, tzinfo=timezone.utc)}]},
         r"payload\['fills'\]\[0\]\['at'\] is datetime"),
        ({"tags": {"a"}}, r"payload\['tags'\] is set"),
    ],
)
def test_payload_without_a_canonical_form_is_refused_with_its_path(
    payload: dict[Any, Any], message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        canonical_json(payload)


def test_str_enums_are_encoded_by_value_and_tuples_as_arrays() -> None:
    assert canonical_json({"side": _Side.BUY, "legs": ("a", 1)}) == '{"legs":["a",1],"side":"buy"}'


# --------------------------------------------------------------------------- appending and reading


def test_appends_form_one_chain_that_verifies(backend: Backend) -> None:
    log = backend.log()
    first = _fill(log, 4)
    more = log.append_many([AuditEntry("bob", "order.cancel", {"i": 5}, 2_000),
                            AuditEntry("bob", "x", {}, 2_001)])
    chain = first + more
    assert [r.seq for r in chain] == [1, 2, 3, 4, 5, 6]
    assert chain[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in zip(chain, chain[1:]))
    for raw in backend.sql("SELECT * FROM {t} ORDER BY seq"):
        documented = _documented_hash(raw.seq, raw.ts_ns, raw.actor, raw.action, raw.payload, raw.prev_hash)
        assert raw.hash == documented
    assert log.records() == chain
    assert [r.seq for r in log.records(since_seq=2, limit=2)] == [3, 4]
    assert log.head() == chain[-1] and [r.seq for r in log.tail(2)] == [5, 6]
    report = log.verify()
    assert (report.ok, report.rows, report.first_bad_seq, report.problem) == (True, 6, None, None)
    assert (report.head_seq, report.head_hash) == (6, chain[-1].hash)


def test_payload_types_round_trip_through_the_database(backend: Backend) -> None:
    log = backend.log()
    payload = {"i": 1, "f": 1.0, "d": Decimal("1.50"), "n": None, "l": [True, "é"]}
    stored = log.append("a", "b", payload, ts_ns=5)
    (read,) = log.records()
    assert read == stored
    assert [type(read.payload[k]) for k in ("i", "f", "d")] == [int, float, Decimal]
    assert str(read.payload["d"]) == "1.50"
    with pytest.raises(TypeError):
        read.payload["i"] = 2  # type: ignore[index]


def test_an_empty_log_verifies() -> None:
    report = AuditLog("sqlite://", table="audit_empty").verify()
    assert (report.ok, report.rows, report.head_seq, report.head_hash) == (True, 0, 0, GENESIS_HASH)


def test_verify_streams_past_one_batch(backend: Backend) -> None:
    log = backend.log()
    log.append_many([AuditEntry("svc", "tick", {"i": i}, i) for i in range(2_500)])
    assert log.verify().rows == 2_500


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (AuditEntry("", "x", {}), "actor must be 1 to 256 characters, got 0"),
        (AuditEntry("a" * 257, "x", {}), "actor must be 1 to 256 characters, got 257"),
        (AuditEntry("a", "x\x00y", {}), "action 'x\\\\x00y' contains NUL"),
        (AuditEntry("a", "x", {}, -1), "ts_ns must be a whole number .* got -1"),
        (AuditEntry("a", "x", {}, 2**63), "ts_ns must be"),
        (AuditEntry("a", "x", [1]), "payload must be a mapping, got list"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_entry_writes_nothing_of_its_batch(backend: Backend, entry: AuditEntry, message: str) -> None:
    log = backend.log()
    log.append("a", "first", {})
    with pytest.raises(StoreError, match=message):
        log.append_many([AuditEntry("a", "good", {}), entry])
    assert [r.action for r in log.records()] == ["first"]


@pytest.mark.parametrize("name", ["x; drop table y", "Audit", "1audit", "a" * 41, ""])
def test_invalid_table_names_are_refused_before_any_sql(name: str) -> None:
    with pytest.raises(StoreError, match=f"audit table name '{re.escape(name)}' is invalid"):
        AuditLog("sqlite://", table=name)


def test_opening_a_missing_log_read_only_is_an_error_and_creates_nothing(
    backend: Backend, tmp_path: Path
) -> None:
    backend.sql("SELECT 1")  # the database exists (SQLite: the file), the table does not
    with pytest.raises(StoreError, match=f"audit table '{backend.table}' does not exist"):
        AuditLog(backend.url, table=backend.table, create=False)
    missing = tmp_path / "none.sqlite"
    with pytest.raises(StoreError, match="no SQLite database file"):
        AuditLog(f"sqlite:///{missing}", create=False)
    assert not missing.exists()


# --------------------------------------------------------------------------- append-only


def test_update_delete_and_truncate_are_refused_by_the_database(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 3)
    statements = [
        "UPDATE {t} SET actor = 'mallory' WHERE seq = 2", "DELETE FROM {t} WHERE seq = 3", "DELETE FROM {t}"
    ]
    if backend.kind == "postgresql":
        statements.append("TRUNCATE {t}")
    for statement in statements:
        with pytest.raises(sa.exc.DBAPIError, match="is append-only"):
            backend.sql(statement)
    assert [r.actor for r in log.records()] == ["user-1", "user-2", "user-0"]
    assert log.verify().ok


def test_reopening_the_log_restores_disabled_protection(backend: Backend) -> None:
    _fill(backend.log(), 2)
    backend.disable_protection()
    backend.log()  # an application start
    with pytest.raises(sa.exc.DBAPIError, match="is append-only"):
        backend.sql("DELETE FROM {t} WHERE seq = 1")


# --------------------------------------------------------------------------- tampering


def _forge(db: Backend, seq: int, prev_hash: str, payload: str = '{"forged":true}') -> None:
    digest = record_hash(seq, 1, "mallory", "order.submit", payload, prev_hash)
    db.sql("INSERT INTO {t} (seq, ts_ns, actor, action, payload, prev_hash, hash) "
           "VALUES (:seq, 1, 'mallory', 'order.submit', :payload, :prev, :hash)",
           seq=seq, payload=payload, prev=prev_hash, hash=digest)


def _renumber(db: Backend, seqs: range, delta: int) -> None:
    for seq in seqs:
        db.sql("UPDATE {t} SET seq = :new WHERE seq = :old", new=seq + delta, old=seq)


def _swap(db: Backend, a: int, b: int) -> None:
    db.sql("UPDATE {t} SET seq = -1 WHERE seq = :a", a=a)
    db.sql("UPDATE {t} SET seq = :a WHERE seq = :b", a=a, b=b)
    db.sql("UPDATE {t} SET seq = :b WHERE seq = -1", b=b)


def _rehash(db: Backend, seq: int) -> None:
    r = db.row(seq)
    db.sql("UPDATE {t} SET hash = :h WHERE seq = :seq", seq=seq,
           h=record_hash(r.seq, r.ts_ns, r.actor, r.action, r.payload, r.prev_hash))


def _edit_and_rehash(db: Backend) -> None:
    db.sql("UPDATE {t} SET payload = :p WHERE seq = 3", p='{"i":3,"px":1.0}')
    _rehash(db, 3)


def _bad_genesis(db: Backend) -> None:
    db.sql("UPDATE {t} SET prev_hash = :p WHERE seq = 1", p="1" * 64)
    _rehash(db, 1)


def _delete_and_renumber(db: Backend) -> None:
    db.sql("DELETE FROM {t} WHERE seq = 3")
    _renumber(db, range(4, 7), -1)


def _shift_insert(db: Backend) -> None:
    db.sql(f"DROP INDEX {db.table}_prev_hash_key")  # the fork guard is in the way too
    _renumber(db, range(6, 2, -1), +1)
    _forge(db, 3, db.row(2).hash)


TAMPERS: dict[str, tuple[Callable[[Backend], None], str, int]] = {
    "payload edited": (lambda db: db.sql("UPDATE {t} SET payload = :p WHERE seq = 3", p='{"i":3}'),
                       "edited", 3),
    "actor edited": (lambda db: db.sql("UPDATE {t} SET actor = 'mallory' WHERE seq = 4"), "edited", 4),
    "action edited": (lambda db: db.sql("UPDATE {t} SET action = 'order.cancel' WHERE seq = 1"), "edited", 1),
    "ts edited": (lambda db: db.sql("UPDATE {t} SET ts_ns = ts_ns + 1 WHERE seq = 6"), "edited", 6),
    "edited and re-hashed": (_edit_and_rehash, "edited", 3),
    "middle row deleted": (lambda db: db.sql("DELETE FROM {t} WHERE seq = 3"), "deleted", 3),
    "first row deleted": (lambda db: db.sql("DELETE FROM {t} WHERE seq = 1"), "deleted", 1),
    "deleted and renumbered": (_delete_and_renumber, "deleted", 3),
    "two rows swapped": (lambda db: _swap(db, 2, 5), "reordered", 2),
    "neighbours swapped": (lambda db: _swap(db, 3, 4), "reordered", 3),
    "forged before genesis": (lambda db: _forge(db, 0, "ab" * 32), "inserted", 0),
    "forged after a gap": (lambda db: _forge(db, 8, db.row(6).hash), "inserted", 8),
    "forged in the middle": (_shift_insert, "inserted", 3),
    "genesis rewritten": (_bad_genesis, "bad_genesis", 1),
}


@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_is_detected_at_the_right_row(backend: Backend, tamper: str) -> None:
    log = backend.log()
    chain = _fill(log, 6)
    assert log.verify().ok
    action, problem, seq = TAMPERS[tamper]
    backend.disable_protection()
    action(backend)
    report = log.verify()
    assert (report.ok, report.problem, report.first_bad_seq) == (False, problem, seq), report.detail
    # The head it reports is the last row still trustworthy, with its original hash.
    trusted = max(0, min(seq - 1, len(chain)))
    assert (report.head_seq, report.head_hash) == (trusted, chain[trusted - 1].hash if trusted else GENESIS_HASH)


def test_a_truncated_tail_is_caught_only_against_a_kept_head(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 6)
    anchor = log.verify()
    backend.disable_protection()
    backend.sql("DELETE FROM {t} WHERE seq >= 5")
    assert log.verify().ok  # no hash chain alone can see a cut tail ...
    report = log.verify(expected_head=(anchor.head_seq, anchor.head_hash))
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "deleted", 5)  # ... the kept head can


def test_a_rewritten_last_row_is_caught_against_a_kept_head(backend: Backend) -> None:
    log = backend.log()
    _fill(log, 4)
    anchor = log.verify()
    backend.disable_protection()
    backend.sql("UPDATE {t} SET actor = 'mallory' WHERE seq = 4")
    _rehash(backend, 4)
    assert log.verify().ok
    report = log.verify(expected_head=(anchor.head_seq, anchor.head_hash))
    assert (report.ok, report.problem, report.first_bad_seq) == (False, "edited", 4)


# --------------------------------------------------------------------------- concurrency


def test_concurrent_appenders_in_threads_make_one_unbroken_chain(backend: Backend) -> None:
    backend.log()  # create the table once, as a deployment would
    workers, per_worker = 4, 50
    start = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            with AuditLog(backend.url, table=backend.table) as log:
                start.wait()
                for i in range(per_worker):
                    log.append(f"worker-{worker}", "tick", {"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    log = backend.log()
    report = log.verify()
    assert (report.ok, report.rows) == (True, workers * per_worker), report.detail
    records = log.records()
    assert [r.seq for r in records] == list(range(1, workers * per_worker + 1))
    for worker in range(workers):  # each worker's rows in the order it wrote them
        assert [r.payload["i"] for r in records if r.actor == f"worker-{worker}"] == list(range(per_worker))


def _append_in_process(url: str, table: str, worker: int, count: int) -> None:
    with AuditLog(url, table=table) as log:
        for i in range(count):
            log.append(f"process-{worker}", "tick", {"i": i})


def test_concurrent_appenders_in_processes_make_one_unbroken_chain(backend: Backend) -> None:
    backend.log()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_append_in_process, args=(backend.url, backend.table, worker, 30))
        for worker in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert [p.exitcode for p in processes] == [0, 0, 0]
    report = backend.log().verify()
    assert (report.ok, report.rows) == (True, 90), report.detail


# --------------------------------------------------------------------------- the command line


def _cli(*argv: str) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = audit_main(list(argv))
    return code, out.getvalue().splitlines(), err.getvalue()


def test_cli_verify_prints_one_json_line_and_exits_by_outcome(backend: Backend) -> None:
    _fill(backend.log(), 5)
    code, lines, _ = _cli("verify", "--url", backend.url, "--table", backend.table)
    assert code == 0 and len(lines) == 1
    summary = json.loads(lines[0])
    outcome = (summary["ok"], summary["rows"], summary["first_bad_seq"], summary["problem"])
    assert outcome == (True, 5, None, None)
    head = f"{summary['head_seq']}:{summary['head_hash']}"
    assert _cli("verify", "--url", backend.url, "--table", backend.table, "--expect-head", head)[0] == 0

    backend.disable_protection()
    backend.sql("UPDATE {t} SET payload = '{}' WHERE seq = 2")
    code, lines, _ = _cli("verify", "--url", backend.url, "--table", backend.table)
    summary = json.loads(lines[0])
    assert (code, summary["ok"], summary["first_bad_seq"], summary["problem"]) == (1, False, 2, "edited")


def test_cli_tail_prints_the_last_records_as_json_lines(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(backend.log(), 5)
    monkeypatch.setenv("DATABASE_URL", backend.url)
    code, lines, _ = _cli("tail", "--table", backend.table, "-n", "2")
    rows = [json.loads(line) for line in lines]
    assert code == 0 and [r["seq"] for r in rows] == [4, 5]
    assert rows[1]["payload"] == {"i": 5, "px": 105.5, "qty": {"$decimal": "5"}}
    assert rows[1]["hash"] == _documented_hash(5, rows[1]["ts_ns"], rows[1]["actor"], rows[1]["action"],
                                               canonical_json(decode_payload(json.dumps(rows[1]["payload"]))),
                                               rows[1]["prev_hash"])


def test_cli_bad_input_exits_2_with_a_clear_message(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    backend.sql("SELECT 1")  # the database exists (SQLite: the file), the table does not
    code, lines, err = _cli("verify", "--url", backend.url, "--table", backend.table)
    assert code == 2 and f"audit table '{backend.table}' does not exist" in err
    assert json.loads(lines[0])["ok"] is False

    unreachable = ("postgresql+psycopg2://postgres@127.0.0.1:1/test" if backend.kind == "postgresql"
                   else f"sqlite:///{tmp_path / 'no-such-dir' / 'audit.sqlite'}")
    code, _, err = _cli("tail", "--url", unreachable)
    assert code == 2 and err.startswith("error: ")

    monkeypatch.delenv("DATABASE_URL", raising=False)
    code, _, err = _cli("verify")
    assert code == 2 and "pass --url or set DATABASE_URL" in err

    with pytest.raises(SystemExit) as exit_info, contextlib.redirect_stderr(io.StringIO()):
        audit_main(["verify", "--url", backend.url, "--expect-head", "5:nothex"])
    assert exit_info.value.code == 2
