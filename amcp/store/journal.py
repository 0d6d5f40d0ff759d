"""The journal: every command and event of a run, written durably in order.

SQLAlchemy Core over any SQL URL: SQLite (``sqlite:///runs/<id>/journal.sqlite``) by default,
PostgreSQL in production. One transaction per :meth:`Journal.record` call, so a cycle's
intents are on disk before the cycle sends them.

Recovery. A restarted orchestrator rolls the journal back to its checkpoint with
:meth:`Journal.restore_to`, then re-runs the cycles after it. The old journal actor may still
be finishing a write when that happens (it dies with its owner, asynchronously), so the run
has a fencing *epoch* (table ``journal_fence``): each journal reads it when built, ``restore_to``
raises it, and a write checks it in its own transaction (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite serialises writers). A stale journal's write fails with a
:class:`~amcp.errors.StoreError` and leaves nothing behind, so a re-run cycle is recorded once.
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
JOURNAL_FENCE = sa.Table(
    "journal_fence",
    _METADATA,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("epoch", sa.Integer, nullable=False),
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
            self._epoch = self._current_epoch()
        except Exception as exc:  # noqa: BLE001 - any driver error is a store error at this edge
            raise StoreError(f"cannot open journal at {url}: {exc}") from exc

    def _current_epoch(self) -> int:
        """Read the run's fencing epoch, creating it at 0 for a new run."""
        query = sa.select(JOURNAL_FENCE.c.epoch).where(JOURNAL_FENCE.c.run_id == self.run_id)
        with self._engine.begin() as connection:
            epoch = connection.execute(query).scalar_one_or_none()
            if epoch is not None:
                return int(epoch)
        try:
            with self._engine.begin() as connection:
                connection.execute(JOURNAL_FENCE.insert(), {"run_id": self.run_id, "epoch": 0})
            return 0
        except sa.exc.IntegrityError:  # another journal of the run created it first
            with self._engine.connect() as connection:
                return int(connection.execute(query).scalar_one())

    def _check_fence(self, connection: sa.Connection) -> None:
        query = sa.select(JOURNAL_FENCE.c.epoch).where(JOURNAL_FENCE.c.run_id == self.run_id).with_for_update()
        epoch = connection.execute(query).scalar_one_or_none()
        if epoch != self._epoch:
            raise StoreError(
                f"journal of run {self.run_id} is stale: it holds epoch {self._epoch}, the run is at epoch "
                f"{epoch} (a restarted orchestrator restored the journal); this write is refused"
            )

    def record(self, messages: Sequence[Any], cycle: int = 0) -> int:
        """Write messages in one transaction; return how many were written.

        Raises:
            StoreError: if a message is not a domain message, the write fails, or another journal
                of the run has called :meth:`restore_to` since this one was built (stale writer).
        """
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
                self._check_fence(connection)
                connection.execute(JOURNAL.insert(), rows)
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"journal {self.url}: write of {len(rows)} rows failed: {exc}") from exc
        return len(rows)

    def last_seq(self) -> int:
        """Return the ``seq`` of the run's last record (0 when it has none)."""
        query = sa.select(sa.func.max(JOURNAL.c.seq)).where(JOURNAL.c.run_id == self.run_id)
        with self._engine.connect() as connection:
            return int(connection.execute(query).scalar_one_or_none() or 0)

    def restore_to(self, seq: int) -> int:
        """Delete the run's records after ``seq`` and fence off every other journal of the run.

        One transaction raises the run's epoch to this journal's next one and deletes the
        records; from then on only this journal can write for the run.

        Args:
            seq: the last ``seq`` to keep (a checkpoint's ``journal_seq``; 0 deletes them all).

        Returns:
            How many records were deleted.

        Raises:
            StoreError: if the database cannot be written.
        """
        fence = sa.select(JOURNAL_FENCE.c.epoch).where(JOURNAL_FENCE.c.run_id == self.run_id).with_for_update()
        try:
            with self._engine.begin() as connection:
                epoch = int(connection.execute(fence).scalar_one()) + 1
                connection.execute(
                    JOURNAL_FENCE.update().where(JOURNAL_FENCE.c.run_id == self.run_id).values(epoch=epoch)
                )
                deleted = connection.execute(
                    JOURNAL.delete().where(JOURNAL.c.run_id == self.run_id, JOURNAL.c.seq > seq)
                ).rowcount
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"journal {self.url}: restore of run {self.run_id} to seq {seq} failed: {exc}") from exc
        self._epoch = epoch
        return int(deleted)

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

