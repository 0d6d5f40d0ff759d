"""The ledger's last mark per symbol, and the immutable views of it that snapshots carry.

Marks come from bar batches (float closes, one column per symbol of the batch universe) and
from explicit marks (exact Decimals). Every mark carries a sequence number, so the most
recently applied one wins. A float close is read as ``Decimal(repr(close))``, its shortest repr.

Speed: a batch is only queued (its close array, by reference) when it is marked. Queued batches
are folded into the float arrays, vectorised, every :data:`MAX_PENDING_BATCHES` batches; a
lookup in between takes the newest valid close among the queued batches (usually the newest
one), then the arrays. A snapshot's view captures the arrays and the queue as it is (the queue
is only appended to, and a fold starts a new one, so the view keeps the list and its length),
so taking a snapshot costs no array work and no copy; the arrays and the exact-mark dict are
copied on write once a view shares them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal

import numpy as np

from amcp._typing import FloatArray, IntArray
from amcp.domain.data import BarBatch

MAX_PENDING_BATCHES = 64
NO_SEQ = -1

# A queued batch: its close array (the batch universe's columns), ts_ns and sequence number.
_Pending = tuple[FloatArray, int, int]
# An explicit mark: exact price, ts_ns and sequence number.
_Exact = tuple[Decimal, int, int]


class MarkBook:
    """Last mark per symbol; see the module docstring. One owner (the ledger) mutates it."""

    __slots__ = (
        "_arrays_shared",
        "_close",
        "_exact",
        "_exact_shared",
        "_index",
        "_next_seq",
        "_pending",
        "_seq",
        "_symbols",
        "_ts",
    )

    def __init__(self) -> None:
        self._symbols: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._close: FloatArray = np.empty(0, dtype=np.float64)
        self._ts: IntArray = np.empty(0, dtype=np.int64)
        self._seq: IntArray = np.empty(0, dtype=np.int64)
        self._pending: list[_Pending] = []
        self._exact: dict[str, _Exact] = {}  # symbol -> (price, ts_ns, seq)
        self._arrays_shared = False  # a view holds the arrays: copy before writing them
        self._exact_shared = False  # a view holds the exact-mark dict: copy before writing it
        self._next_seq = 0

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def set_exact(self, symbol: str, price: Decimal, ts_ns: int) -> None:
        if self._exact_shared:
            self._exact = dict(self._exact)
            self._exact_shared = False
        self._exact[symbol] = (price, ts_ns, self._take_seq())

    def add_batch(self, batch: BarBatch) -> dict[str, int]:
        """Queue ``batch``'s closes and return its symbol -> column index map."""
        symbols = batch.symbols
        if symbols is not self._symbols:
            if symbols != self._symbols:
                self._adopt(symbols)
            self._symbols = symbols  # same content: keep the caller's tuple for the fast path
        self._pending.append((batch.close, int(batch.ts_ns), self._take_seq()))
        if len(self._pending) >= MAX_PENDING_BATCHES:
            self._fold()
        return self._index

    def get(self, symbol: str) -> tuple[Decimal, int] | None:
        """Return ``(price, ts_ns)`` of ``symbol``'s last mark, or None if never marked."""
        pending = self._pending
        return _lookup(symbol, self._index, self._close, self._ts, self._seq, self._exact, pending, len(pending))

    def views(self) -> tuple[PriceMarks, PriceMarkTimes]:
        """Return immutable views of the marks as they are now (no copy until the next write)."""
        self._arrays_shared = self._exact_shared = True
        # The pending list is only ever appended to (a fold starts a new one), so the view can
        # share it: it reads the entries there now, the first len(pending).
        pending = self._pending
        state = MarkState(
            self._symbols, self._index, self._close, self._ts, self._seq, self._exact, pending, len(pending)
        )
        return PriceMarks(state), PriceMarkTimes(state)

    def _fold(self) -> None:
        """Fold the queued batches into the arrays (copied first if a view shares them)."""
        if not self._pending:
            return
        if self._arrays_shared:
            self._close, self._ts, self._seq = self._close.copy(), self._ts.copy(), self._seq.copy()
            self._arrays_shared = False
        _fold_into(self._close, self._ts, self._seq, self._pending)
        self._pending = []

    def _adopt(self, symbols: tuple[str, ...]) -> None:
        """Switch to a new batch universe, carrying every existing mark over."""
        self._fold()
        index = {symbol: i for i, symbol in enumerate(symbols)}
        close = np.full(len(symbols), np.nan)
        ts = np.zeros(len(symbols), dtype=np.int64)
        seq = np.full(len(symbols), NO_SEQ, dtype=np.int64)
        for symbol, old in self._index.items():
            if self._seq[old] == NO_SEQ:
                continue
            new = index.get(symbol)
            if new is not None:
                close[new], ts[new], seq[new] = self._close[old], self._ts[old], self._seq[old]
            else:
                exact = self._exact.get(symbol)
                if exact is None or exact[2] < self._seq[old]:
                    if self._exact_shared:
                        self._exact = dict(self._exact)
                        self._exact_shared = False
                    self._exact[symbol] = (
                        Decimal(repr(self._close.item(old))),
                        self._ts.item(old),
                        self._seq.item(old),
                    )
        self._index, self._close, self._ts, self._seq = index, close, ts, seq
        self._arrays_shared = False


def _fold_into(close: FloatArray, ts: IntArray, seq: IntArray, pending: list[_Pending] | tuple[_Pending, ...]) -> None:
    """Write each column's newest valid (positive, finite) close of ``pending`` into the arrays."""
    if len(pending) <= 2:
        for values, batch_ts, batch_seq in pending:
            valid = (values > 0.0) & (values < math.inf)  # NaN compares False: ignored
            np.copyto(close, values, where=valid)
            ts[valid] = batch_ts
            seq[valid] = batch_seq
        return
    values, batch_ts, batch_seq = pending[-1]
    if ((values > 0.0) & (values < math.inf)).all():  # the newest batch has every column: it wins
        close[...] = values
        ts[...] = batch_ts
        seq[...] = batch_seq
        return
    # One pass over all queued batches: each column takes its last valid close.
    stacked = np.stack([values for values, _, _ in pending])
    valid = (stacked > 0.0) & (stacked < math.inf)
    newest_first = valid[::-1]
    columns = np.flatnonzero(newest_first.any(axis=0))
    rows = len(pending) - 1 - newest_first.argmax(axis=0)[columns]
    close[columns] = stacked[rows, columns]
    ts[columns] = np.array([batch_ts for _, batch_ts, _ in pending], dtype=np.int64)[rows]
    seq[columns] = np.array([batch_seq for _, _, batch_seq in pending], dtype=np.int64)[rows]


def _lookup(
    symbol: str,
    index: dict[str, int],
    close: FloatArray,
    ts: IntArray,
    seq: IntArray,
    exact: dict[str, _Exact],
    pending: list[_Pending],
    count: int,
) -> tuple[Decimal, int] | None:
    """The last mark of ``symbol``: the newer of its batch close and its explicit mark.

    Only the first ``count`` entries of ``pending`` are read.
    """
    entry = exact.get(symbol)
    i = index.get(symbol)
    if i is not None:
        for k in range(count - 1, -1, -1):  # newest first
            values, batch_ts, batch_seq = pending[k]
            value = values.item(i)
            if 0.0 < value < math.inf:
                if entry is None or batch_seq > entry[2]:
                    return Decimal(repr(float(value))), batch_ts
                return entry[0], entry[1]
        array_seq = seq.item(i)
        if array_seq != NO_SEQ and (entry is None or array_seq > entry[2]):
            return Decimal(repr(close.item(i))), ts.item(i)
    if entry is not None:
        return entry[0], entry[1]
    return None


class MarkState:
    """The marks as one snapshot saw them. Never mutated; pickles with its batches folded.

    ``pending`` may be the mark book's own list of queued batches, which only grows: the state
    reads its first ``count`` entries, the ones queued when the snapshot was taken.
    """

    __slots__ = ("_found", "_keys", "close", "columns", "count", "exact", "pending", "seq", "symbols", "ts")

    def __init__(
        self,
        symbols: tuple[str, ...],
        columns: dict[str, int],
        close: FloatArray,
        ts: IntArray,
        seq: IntArray,
        exact: dict[str, _Exact],
        pending: list[_Pending] | None = None,
        count: int = 0,
    ) -> None:
        self.symbols = symbols
        self.columns = columns
        self.close = close
        self.ts = ts
        self.seq = seq
        self.exact = exact
        self.pending = [] if pending is None else pending
        self.count = count
        self._keys: list[str] | None = None
        self._found: dict[str, tuple[Decimal, int]] = {}  # lookups so far (the state never changes)

    def lookup(self, symbol: str) -> tuple[Decimal, int] | None:
        found = self._found.get(symbol)
        if found is None:
            found = _lookup(
                symbol, self.columns, self.close, self.ts, self.seq, self.exact, self.pending, self.count
            )
            if found is not None:
                self._found[symbol] = found
        return found

    def folded(self) -> tuple[FloatArray, IntArray, IntArray]:
        """Return the arrays with the queued batches folded in (fresh copies if there are any)."""
        if not self.count:
            return self.close, self.ts, self.seq
        close, ts, seq = self.close.copy(), self.ts.copy(), self.seq.copy()
        _fold_into(close, ts, seq, self.pending[: self.count])
        return close, ts, seq

    def keys(self) -> list[str]:
        if self._keys is None:
            seq = self.folded()[2]
            marked = [self.symbols[i] for i in np.flatnonzero(seq != NO_SEQ).tolist()]
            seen = set(marked)
            self._keys = marked + [symbol for symbol in self.exact if symbol not in seen]
        return self._keys

    def __reduce__(self) -> tuple[type[MarkState], tuple[object, ...]]:
        close, ts, seq = self.folded()
        return (MarkState, (self.symbols, self.columns, close, ts, seq, self.exact))


class PriceMarks(Mapping[str, Decimal]):
    """Immutable ``symbol -> last mark (USD)`` of a snapshot; converts floats on first read."""

    __slots__ = ("_state",)

    def __init__(self, state: MarkState) -> None:
        self._state = state

    def __getitem__(self, symbol: str) -> Decimal:
        found = self._state.lookup(symbol)
        if found is None:
            raise KeyError(symbol)
        return found[0]

    def get(self, symbol: str, default: Decimal | None = None) -> Decimal | None:  # type: ignore[override]
        found = self._state.lookup(symbol)
        return default if found is None else found[0]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.keys())

    def __len__(self) -> int:
        return len(self._state.keys())

    def __repr__(self) -> str:
        return f"PriceMarks({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type[PriceMarks], tuple[MarkState]]:
        return (PriceMarks, (self._state,))


class PriceMarkTimes(Mapping[str, int]):
    """Immutable ``symbol -> UTC nanoseconds of its last mark`` of a snapshot."""

    __slots__ = ("_state",)

    def __init__(self, state: MarkState) -> None:
        self._state = state

    def __getitem__(self, symbol: str) -> int:
        found = self._state.lookup(symbol)
        if found is None:
            raise KeyError(symbol)
        return found[1]

    def get(self, symbol: str, default: int | None = None) -> int | None:  # type: ignore[override]
        found = self._state.lookup(symbol)
        return default if found is None else found[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.keys())

    def __len__(self) -> int:
        return len(self._state.keys())

    def __repr__(self) -> str:
        return f"PriceMarkTimes({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type[PriceMarkTimes], tuple[MarkState]]:
        return (PriceMarkTimes, (self._state,))
