"""The strategy interface and the rolling price history every strategy keeps.

A strategy sees one :class:`~amcp.domain.data.BarBatch` per cycle (every symbol's bar for one
timestamp) and answers with intents. It is point in time by construction: it only ever holds
closes it has already been given. The first batch fixes the column order; the strategy maps
its universe to column indices once and keeps its history in a :class:`PriceHistory`, a
fixed-size numpy ring buffer vectorised over symbols.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.domain.data import BarBatch
from amcp.domain.identifiers import StrategyId
from amcp.domain.messages import Intent, OrderFilled
from amcp.errors import ConfigError, DataError

_ZERO = Decimal(0)


class PriceHistory:
    """The last ``capacity`` values of each of ``n_symbols`` series, in a ring buffer.

    A symbol's history only advances when it has a value (NaN = no bar), so each symbol has
    its own count. The buffer is mirrored (every value is written at row ``p`` and ``p +
    capacity``), so the last ``k`` values of a symbol always sit in rows ``head - k + 1 ..
    head`` with ``capacity <= head < 2 × capacity``, with no wrap-around to handle. While every
    symbol has the same count (the usual case) a window is a plain slice, no copy. Rows a
    symbol has not filled yet hold NaN, so a window or lag reaching further back than a
    symbol's history is NaN for that symbol and drops out of any comparison.
    """

    __slots__ = (
        "_aligned",
        "_buffer",
        "_count",
        "_counts",
        "_flat",
        "_gather",
        "_head",
        "_row_steps",
        "capacity",
        "n_symbols",
    )

    def __init__(self, capacity: int, n_symbols: int) -> None:
        if capacity < 1 or n_symbols < 1:
            raise ConfigError(f"history needs capacity >= 1 and symbols >= 1, got {capacity} and {n_symbols}")
        self.capacity = capacity
        self.n_symbols = n_symbols
        self._buffer: FloatArray = np.full((2 * capacity, n_symbols), np.nan)
        self._flat = self._buffer.reshape(-1)
        self._counts: IntArray = np.zeros(n_symbols, dtype=np.int64)  # kept up to date once not aligned
        self._aligned = True
        self._count = 0  # every symbol's count while aligned
        # Once not aligned: flat index of each symbol's latest value (a row in the upper half).
        self._head: IntArray = np.empty(0, dtype=np.int64)
        # Flat offsets of rows k-1 .. 0 back from the head, for windows, oldest first.
        self._row_steps: IntArray = (np.arange(capacity - 1, -1, -1, dtype=np.int64) * n_symbols)[:, None]
        self._gather: IntArray = np.empty((capacity, n_symbols), dtype=np.int64)

    def push(self, values: FloatArray, absent: BoolArray, all_present: bool) -> None:
        """Append ``values[j]`` to symbol ``j``'s history wherever ``absent[j]`` is false."""
        cap, n = self.capacity, self.n_symbols
        if self._aligned:
            if all_present:
                row = self._count % cap
                self._buffer[row] = values
                self._buffer[row + cap] = values
                self._count += 1
                return
            if np.count_nonzero(absent) == n:
                return
            self._aligned = False
            self._counts.fill(self._count)
            self._head = ((self._count - 1) % cap + cap) * n + np.arange(n, dtype=np.int64)
        cap_n = cap * n
        head = self._head
        if all_present:
            head += n
            np.subtract(head, cap_n, out=head, where=head >= 2 * cap_n)
            self._flat[head] = values
            self._flat[head - cap_n] = values
            self._counts += 1
            return
        present = np.flatnonzero(~absent)
        moved = head[present] + n
        moved[moved >= 2 * cap_n] -= cap_n
        head[present] = moved
        chosen = values[present]
        self._flat[moved] = chosen
        self._flat[moved - cap_n] = chosen
        self._counts[present] += 1

    @property
    def counts(self) -> IntArray:
        """How many values each symbol has had so far (read-only use)."""
        if self._aligned:
            self._counts.fill(self._count)
        return self._counts

    def window(self, k: int) -> FloatArray:
        """Return each symbol's last ``k`` values, oldest first, as a ``(k, n_symbols)`` array.

        The array may be a view of the buffer: read it before the next :meth:`push`.

        Raises:
            DataError: if ``k`` exceeds the capacity.
        """
        cap = self.capacity
        if not 1 <= k <= cap:
            raise DataError(f"window of {k} values asked of a history that keeps {cap}")
        if self._aligned:
            end = (self._count - 1) % cap + cap + 1
            return self._buffer[end - k : end]
        index = self._gather[:k]
        np.subtract(self._head, self._row_steps[cap - k :], out=index)
        return self._flat.take(index)

    def lag(self, k: int) -> FloatArray:
        """Return each symbol's value ``k`` observations back (0 = latest); NaN where too short.

        The array may be a view of the buffer: read it before the next :meth:`push`.

        Raises:
            DataError: if ``k`` is not below the capacity.
        """
        cap = self.capacity
        if not 0 <= k < cap:
            raise DataError(f"lag of {k} asked of a history that keeps {cap} values")
        if self._aligned:
            return self._buffer[(self._count - 1 - k) % cap + cap]
        return self._flat[self._head - k * self.n_symbols]

    def state(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "buffer": self._buffer[self.capacity :].copy(),
            "counts": self.counts.copy(),
            "aligned": self._aligned,
            "count": self._count,
            "head": self._head.copy(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state`.

        Raises:
            DataError: if the saved history has another shape.
        """
        buffer = np.asarray(state["buffer"], dtype=np.float64)
        counts = np.asarray(state["counts"], dtype=np.int64)
        head = np.asarray(state["head"], dtype=np.int64)
        aligned = bool(state["aligned"])
        shape = (self.capacity, self.n_symbols)
        if (
            int(state["capacity"]) != self.capacity
            or buffer.shape != shape
            or counts.shape != shape[1:]
            or (head.shape != ((0,) if aligned else shape[1:]))
        ):
            raise DataError(
                f"saved history has capacity {state['capacity']} and shape {buffer.shape}, expected "
                f"{self.capacity} and {shape}"
            )
        self._buffer[: self.capacity] = buffer
        self._buffer[self.capacity :] = buffer
        self._counts[:] = counts
        self._aligned = aligned
        self._count = int(state["count"])
        self._head = head.copy()


class Strategy(ABC):
    """A signal strategy: bars in, intents out, one call per cycle.

    Subclasses implement :meth:`on_bars` and, for their own state beyond the price history
    and positions, :meth:`_extra_state` / :meth:`_load_extra_state`.

    Attributes:
        id: the strategy's id; every intent it emits carries it.
        universe: the symbols it trades, a subset of the batch symbols.
        positions: its own signed position per symbol, from its fills (non-zero entries only).
    """

    id: StrategyId
    universe: tuple[str, ...]
    positions: dict[str, Decimal]

    def __init__(self, strategy_id: str, universe: tuple[str, ...]) -> None:
        """Name the strategy and fix its universe (column mapping waits for the first batch).

        Raises:
            ConfigError: if the universe is empty or repeats a symbol.
            DomainError: if the id is not a valid strategy id.
        """
        self.id = StrategyId(strategy_id)
        universe = tuple(universe)
        if not universe:
            raise ConfigError(f"strategy {strategy_id!r}: the universe is empty")
        repeated = sorted({s for s in universe if universe.count(s) > 1})
        if repeated:
            raise ConfigError(f"strategy {strategy_id!r}: symbols repeated in the universe: {repeated}")
        self.universe = universe
        self.positions = {}
        self._batch_symbols: tuple[str, ...] | None = None
        self._columns: IntArray | None = None  # None: the universe is the batch, in order
        self._absent: BoolArray = np.zeros(len(universe), dtype=bool)

    # ------------------------------------------------------------------ interface
    @abstractmethod
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        """Consume one cycle's bars and return the intents they trigger (often none).

        Only data up to ``batch.ts_ns`` is ever used.
        """

    def on_fills(self, fills: Sequence[OrderFilled]) -> None:
        """Track this strategy's signed position per symbol from its own fills."""
        positions = self.positions
        for fill in fills:
            if fill.strategy_id != self.id:
                continue
            signed = fill.last_quantity if fill.side.sign > 0 else -fill.last_quantity
            new = positions.get(fill.symbol, _ZERO) + signed
            if new == 0:
                positions.pop(fill.symbol, None)
            else:
                positions[fill.symbol] = new

    def state(self) -> dict[str, Any]:
        """Return a picklable checkpoint of everything :meth:`on_bars` depends on."""
        return {
            "kind": type(self).__name__,
            "strategy_id": str(self.id),
            "universe": self.universe,
            "batch_symbols": self._batch_symbols,
            "positions": dict(self.positions),
            **self._extra_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint taken by :meth:`state` of a strategy built the same way.

        Raises:
            DataError: if the checkpoint is of another kind of strategy, id or universe.
        """
        expected = (type(self).__name__, str(self.id), self.universe)
        found = (state.get("kind"), state.get("strategy_id"), tuple(state.get("universe", ())))
        if found != expected:
            raise DataError(
                f"checkpoint of {found[:2]} cannot be loaded into {expected[:2]} (or its universe differs)"
            )
        symbols = state["batch_symbols"]
        self._batch_symbols = None
        self._columns = None
        if symbols is not None:
            self._bind(tuple(symbols))
        self.positions = {str(k): Decimal(v) for k, v in state["positions"].items()}
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # ------------------------------------------------------------------ helpers for subclasses
    def _bind(self, symbols: tuple[str, ...]) -> None:
        """Fix the batch column order and map the universe onto it."""
        position = {symbol: i for i, symbol in enumerate(symbols)}
        missing = [s for s in self.universe if s not in position]
        if missing:
            raise DataError(f"strategy {self.id!s}: universe symbols not in the bar batch: {missing}")
        self._batch_symbols = symbols
        self._columns = (
            None
            if symbols == self.universe
            else np.array([position[s] for s in self.universe], dtype=np.int64)
        )

    def _universe_close(self, batch: BarBatch) -> FloatArray:
        """Return the batch's closes for the universe, in universe order (read-only use).

        Raises:
            DataError: if the batch's symbols differ from the first batch's.
        """
        symbols = batch.symbols
        if symbols is not self._batch_symbols:
            if self._batch_symbols is None:
                self._bind(symbols)
            elif symbols != self._batch_symbols:
                first = self._batch_symbols
                at = next(
                    (i for i, (a, b) in enumerate(zip(first, symbols)) if a != b),
                    min(len(first), len(symbols)),
                )
                raise DataError(
                    f"strategy {self.id!s}: batch at {batch.ts_ns} has {len(symbols)} symbols, the first had "
                    f"{len(first)}, and they differ from column {at}; every batch of a run must have the "
                    f"same symbols in the same order"
                )
            else:
                self._batch_symbols = symbols  # equal tuple, new object: compare by identity next time
        if self._columns is None:
            return batch.close
        return batch.close.take(self._columns)
