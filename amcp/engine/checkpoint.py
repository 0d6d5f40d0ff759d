"""Checkpoints of the trading plane: component snapshots and a store that keeps the latest few.

A checkpoint is everything the orchestrator needs to continue a run in a fresh process: the
kernel's state (:meth:`~amcp.engine.cycle.TradingKernel.state`), one opaque snapshot per
component actor, the number of cycles done, the journal's high-water mark (the last journal
``seq`` of the run when the checkpoint was taken) and the cycle reports the driver has not
acknowledged yet.

Component snapshots come from two mixins the actor shells add to the core classes, so the
core classes need no change:

* :class:`AttributeSnapshotMixin` pickles the instance's attributes in one ``pickle.dumps``
  call, so objects shared between attributes stay shared after a restore (the OMS keeps the
  same :class:`~amcp.domain.orders.Order` in two dicts). It suits classes of plain Python state:
  the simulated venue (its latency generator, a ``numpy.random.Generator``, pickles with its
  bit-generator state, so re-run cycles draw the same latencies), the OMS, the risk engine and
  the portfolio service.
* :class:`StateMethodSnapshotMixin` uses a class's own ``state()`` / ``load_state()``. The
  strategies need it: their price histories hold numpy *views* of a ring buffer, which a plain
  pickle would turn into independent copies (a restored strategy would then diverge).

Where checkpoints live: a ``checkpoints`` table in the run's journal database, through
SQLAlchemy, not a file next to it. The journal URL is the one place a run already keeps
durable state, for SQLite and PostgreSQL alike; a PostgreSQL journal has no "next to", and a
restarted orchestrator may land on another node where only the database URL is reachable. One
transaction writes the new checkpoint and prunes all but the newest ``keep`` of the run, so a
crash leaves either the old latest checkpoint or the new one, never a partial row; a SHA-256 of
the payload turns a damaged row into a clear :class:`CheckpointError` instead of a bad restore.

Payloads are pickles: load checkpoints only from a database you trust (the run's own).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from amcp.errors import ConfigError, StoreError

_METADATA = sa.MetaData()
CHECKPOINTS = sa.Table(
    "checkpoints",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(128), nullable=False, index=True),
    sa.Column("cycles_done", sa.Integer, nullable=False),
    sa.Column("journal_seq", sa.BigInteger, nullable=False),
    sa.Column("restarts", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)


class CheckpointError(StoreError):
    """A checkpoint is missing, damaged, or does not fit the component it is restored into."""


@runtime_checkable
class Checkpointable(Protocol):
    """A component whose state can be snapshotted to bytes and restored into a fresh instance."""

    def checkpoint_state(self) -> bytes: ...

    def restore_state(self, snapshot: bytes) -> None: ...


class AttributeSnapshotMixin:
    """Snapshots every instance attribute with one ``pickle.dumps`` call.

    Put it first among the bases (``class X(AttributeSnapshotMixin, Core)``). The restored
    instance must have been built with the same configuration: only the attributes are replaced.
    """

    def checkpoint_state(self) -> bytes:
        """Return the pickled attributes of this instance."""
        return pickle.dumps(vars(self), protocol=pickle.HIGHEST_PROTOCOL)

    def restore_state(self, snapshot: bytes) -> None:
        """Replace this instance's attributes with those of ``snapshot``.

        Raises:
            CheckpointError: if the snapshot does not unpickle or holds other attribute names
                (a checkpoint of another class or another version of it).
        """
        state = _unpickle(snapshot, type(self).__name__)
        own = vars(self)
        if not isinstance(state, dict) or set(state) != set(own):
            found = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(
                f"snapshot does not fit {type(self).__name__}: attributes {found}, expected {sorted(own)}"
            )
        own.update(state)


class StateMethodSnapshotMixin:
    """Snapshots through the class's own ``state()`` and ``load_state(state)`` methods.

    Put it first among the bases; the core class must define both methods.
    """

    def checkpoint_state(self) -> bytes:
        """Return the pickled ``state()`` of this instance."""
        return pickle.dumps(self.state(), protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[attr-defined]

    def restore_state(self, snapshot: bytes) -> None:
        """Load ``snapshot`` with ``load_state``.

        Raises:
            CheckpointError: if the snapshot does not unpickle.
        """
        self.load_state(_unpickle(snapshot, type(self).__name__))  # type: ignore[attr-defined]


def _unpickle(snapshot: bytes, owner: str) -> Any:
    try:
        return pickle.loads(snapshot)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a damaged snapshot
        raise CheckpointError(f"snapshot for {owner} cannot be read: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One run's state after ``cycles_done`` cycles.

    Attributes:
        run_id: the run it belongs to.
        cycles_done: cycles completed (cycles ``0 .. cycles_done - 1``).
        journal_seq: the run's last journal ``seq`` when it was taken (0: no record yet); a
            restore deletes journal records after it.
        restarts: how many times the orchestrator had been restarted when it was taken.
        kernel_state: :meth:`TradingKernel.state`.
        component_states: snapshot bytes per component role (``broker``, ``strategy-0``, ...).
        pending_reports: cycle reports the driver has not acknowledged, oldest first.
    """

    run_id: str
    cycles_done: int
    journal_seq: int
    restarts: int
    kernel_state: dict[str, Any]
    component_states: dict[str, bytes]
    pending_reports: tuple[Any, ...] = ()


class CheckpointStore:
    """The latest ``keep`` checkpoints of one run, in a SQL table.

    Args:
        url: SQLAlchemy URL of the run's journal database.
        run_id: the run whose checkpoints it reads and writes; other runs' rows are ignored.
        keep: how many checkpoints of the run to keep (the newest); at least 1.

    Raises:
        ConfigError: if ``keep`` < 1.
        StoreError: if the database cannot be opened (with the URL and the cause).
    """

    def __init__(self, url: str, run_id: str, keep: int = 3) -> None:
        if keep < 1:
            raise ConfigError(f"checkpoint store must keep at least 1 checkpoint, got keep={keep}")
        self.url = url
        self.run_id = run_id
        self.keep = keep
        try:
            self._engine = sa.create_engine(url, future=True)
            _METADATA.create_all(self._engine)
        except Exception as exc:  # noqa: BLE001 - any driver error is a store error at this edge
            raise StoreError(f"cannot open checkpoint store at {url}: {exc}") from exc

    def save(self, checkpoint: Checkpoint) -> int:
        """Write ``checkpoint`` and prune older ones of the run, in one transaction.

        Returns:
            The payload size in bytes.

        Raises:
            CheckpointError: if the checkpoint belongs to another run.
            StoreError: if the write fails.
        """
        if checkpoint.run_id != self.run_id:
            raise CheckpointError(f"checkpoint of run {checkpoint.run_id} given to the store of run {self.run_id}")
        payload = pickle.dumps(checkpoint, protocol=pickle.HIGHEST_PROTOCOL)
        row = {
            "run_id": self.run_id,
            "cycles_done": checkpoint.cycles_done,
            "journal_seq": checkpoint.journal_seq,
            "restarts": checkpoint.restarts,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "payload": payload,
        }
        newest_first = (
            sa.select(CHECKPOINTS.c.id).where(CHECKPOINTS.c.run_id == self.run_id).order_by(CHECKPOINTS.c.id.desc())
        )
        try:
            with self._engine.begin() as connection:
                connection.execute(CHECKPOINTS.insert(), row)
                oldest_kept = connection.execute(newest_first.offset(self.keep - 1).limit(1)).scalar_one_or_none()
                if oldest_kept is not None:
                    connection.execute(
                        CHECKPOINTS.delete().where(CHECKPOINTS.c.run_id == self.run_id, CHECKPOINTS.c.id < oldest_kept)
                    )
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"checkpoint store {self.url}: write for run {self.run_id} failed: {exc}") from exc
        return len(payload)

    def latest(self) -> Checkpoint:
        """Return the run's newest checkpoint.

        Raises:
            CheckpointError: if the run has none, or the newest one is damaged (its SHA-256 does
                not match, or it does not unpickle to a checkpoint of this run).
        """
        query = (
            sa.select(CHECKPOINTS)
            .where(CHECKPOINTS.c.run_id == self.run_id)
            .order_by(CHECKPOINTS.c.id.desc())
            .limit(1)
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).one_or_none()
        if row is None:
            raise CheckpointError(f"run {self.run_id} has no checkpoint in {self.url}")
        where = f"checkpoint {row.id} of run {self.run_id} (cycle {row.cycles_done}) in {self.url}"
        payload = bytes(row.payload)
        digest = hashlib.sha256(payload).hexdigest()
        if digest != row.sha256:
            raise CheckpointError(f"{where} is damaged: sha256 {digest} does not match the stored {row.sha256}")
        checkpoint = _unpickle(payload, where)
        if not isinstance(checkpoint, Checkpoint) or checkpoint.run_id != self.run_id:
            raise CheckpointError(f"{where} does not hold a checkpoint of this run: {type(checkpoint).__name__}")
        return checkpoint

    def discard(self) -> int:
        """Delete every checkpoint of the run; return how many there were."""
        with self._engine.begin() as connection:
            result = connection.execute(CHECKPOINTS.delete().where(CHECKPOINTS.c.run_id == self.run_id))
        return int(result.rowcount)

    def close(self) -> None:
        self._engine.dispose()
