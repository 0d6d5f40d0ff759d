"""The journal: every command and event of a run, written durably in order.

SQLAlchemy Core over any SQL URL: SQLite (``sqlite:///runs/<id>/journal.sqlite``) by default,
PostgreSQL in production. One transaction per :meth:`Journal.record` call, so a cycle's
intents are on disk before the cycle sends them.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import sqlalchemy as sa

from amcp.domain.serialization import to_record
from amcp.errors import DomainError, StoreError

_METADATA = sa.MetaData()
JOURNAL = sa.Table(
    "journal",
    _METADATA,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(128), nullable=False, index=True),
    sa.Column("cycle", sa.Integer, nullable=False),
    sa.Column("ts_ns", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("client_order_id", sa.String(128), nullable=True, index=True),
    sa.Column("payload", sa.Text, nullable=False),
)


class Journal:
    """Append-only record of a run's messages.

    Raises:
        StoreError: if the database cannot be opened or written (with the URL and the cause).
    """

    def __init__(self, url: str, run_id: str) -> None:
        self.url = url
        self.run_id = run_id
        try:
            self._engine = sa.create_engine(url, future=True)
            _METADATA.create_all(self._engine)
        except Exception as exc:  # noqa: BLE001 - any driver error is a store error at this edge
            raise StoreError(f"cannot open journal at {url}: {exc}") from exc

    def record(self, messages: Sequence[Any], cycle: int = 0) -> int:
        """Write messages in one transaction; return how many were written."""
        if not messages:
            return 0
        rows = []
        for message in messages:
            try:
                record = to_record(message)
            except DomainError as exc:
                raise StoreError(f"journal: cannot record {type(message).__name__}: {exc}") from exc
            rows.append(
                {
                    "run_id": self.run_id,
                    "cycle": cycle,
                    "ts_ns": int(record.get("ts_ns", 0)),
                    "type": record["type"],
                    "client_order_id": record.get("client_order_id"),
                    "payload": json.dumps(record, separators=(",", ":"), sort_keys=True),
                }
            )
        try:
            with self._engine.begin() as connection:
                connection.execute(JOURNAL.insert(), rows)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"journal {self.url}: write of {len(rows)} rows failed: {exc}") from exc
        return len(rows)

    def read(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Return the run's records in write order (payload decoded)."""
        query = sa.select(JOURNAL).where(JOURNAL.c.run_id == (run_id or self.run_id)).order_by(JOURNAL.c.seq)
        with self._engine.connect() as connection:
            return [json.loads(row.payload) | {"cycle": row.cycle} for row in connection.execute(query)]

    def counts_by_type(self, run_id: str | None = None) -> dict[str, int]:
        query = (
            sa.select(JOURNAL.c.type, sa.func.count())
            .where(JOURNAL.c.run_id == (run_id or self.run_id))
            .group_by(JOURNAL.c.type)
        )
        with self._engine.connect() as connection:
            return {row[0]: int(row[1]) for row in connection.execute(query)}

    def close(self) -> None:
        self._engine.dispose()

