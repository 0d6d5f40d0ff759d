"""The ledger: exact cash, positions, realised and unrealised P&L, marks and buying power.

Accounting is exact. Every amount is a :class:`~decimal.Decimal` computed in
:data:`LEDGER_CONTEXT` (50 significant digits, so sums and products of fills and marks never
round), and the one inexact step, splitting a position's cost basis on a partial close, is
quantised to :data:`COST_QUANTUM` (1e-18 USD) in a way that keeps the books balanced. After any
sequence of fills and marks these hold exactly, not merely to the cent::

    cash == starting_cash - sum(side × qty × price × multiplier) - sum(fees)
    equity == cash + market_value
    equity == starting_cash + realized_pnl + unrealized_pnl - fees

Conventions:
    * A position's ``quantity`` is signed (short < 0) and its ``cost_basis`` is signed the same
      way: ``cost_basis = quantity × average_price × multiplier``, i.e. the cash paid for a long
      (> 0) or received for a short (< 0).
    * ``market_value = quantity × last_price × multiplier`` (negative for a short);
      ``unrealized_pnl = market_value - cost_basis``.
    * Realised P&L excludes fees (they are totalled in ``fees``). A fill that reduces a position
      realises ``(fill price - average price) × closed qty × sign(position) × multiplier``; a
      fill that crosses zero closes the old side in full and opens the rest at the fill price.
    * A position's mark is the symbol's last mark (:meth:`Portfolio.mark`,
      :meth:`Portfolio.mark_batch`); a symbol never marked is marked at its first fill's price.

Speed: :meth:`Portfolio.mark_batch` does O(1) work for the universe (it keeps a reference to the
batch and folds batches into float arrays lazily, vectorised) and converts to ``Decimal`` only
the closes of symbols held. Totals (equity, exposure, buying power) are computed in one pass over
the held positions and cached until the next fill or mark. Snapshot prices are a read-only
mapping that converts a float close to ``Decimal`` only when a key is read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from numbers import Real
from typing import NamedTuple

import numpy as np

from amcp.config import AccountConfig
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as _default_instrument_for
from amcp.domain.messages import OrderFilled
from amcp.errors import DomainError, PortfolioError
from amcp.portfolio.snapshot import PortfolioSnapshot

LEDGER_CONTEXT = Context(
    prec=50, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)
"""Decimal context of every ledger computation: 50 digits, rounding half-even, errors trapped."""

COST_QUANTUM = Decimal("1e-18")
"""Resolution (USD) of the cost basis removed by a partial close; the only rounded ledger value."""

SHORT_OPTION_STRIKE_PCT = Decimal("0.20")
"""Placeholder short-option margin: |market value| + this × strike × multiplier × |quantity|.

A stand-in until the options issue brings the real Reg-T/CBOE formula (premium + 20 % of the
underlying less the out-of-the-money amount, floored at 10 %). It needs no underlying price; it
is at least as strict for out-of-the-money and at-the-money contracts, but can understate the
requirement of a deep in-the-money short call, where 20 % of the underlying exceeds 20 % of the
strike."""

ZERO = Decimal(0)
_MAX_PENDING_BATCHES = 64
_NO_SEQ = -1


@dataclass(slots=True)
class Position:
    """One symbol's net position over all strategies.

    Attributes:
        symbol: the instrument's symbol (OCC symbol for an option).
        quantity: signed shares or contracts (short < 0); zero once flat.
        cost_basis: signed USD, ``quantity × average_price × multiplier`` (cash paid for a long,
            received for a short); zero when flat.
        realized_pnl: USD realised on this symbol since the ledger started, fees excluded.
        multiplier: USD per point per unit (1 for equities, 100 for standard options).
        last_price: the symbol's last mark (USD per share or per contract point).
        last_price_ts_ns: UTC nanoseconds of that mark (of the fill if marked at a fill price).
    """

    symbol: str
    quantity: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal
    multiplier: Decimal
    last_price: Decimal
    last_price_ts_ns: int = 0

    @property
    def average_price(self) -> Decimal:
        """Return ``cost_basis / (quantity × multiplier)`` in USD per unit, zero when flat."""
        if not self.quantity:
            return ZERO
        return LEDGER_CONTEXT.divide(self.cost_basis, LEDGER_CONTEXT.multiply(self.quantity, self.multiplier))

    @property
    def market_value(self) -> Decimal:
        """Return ``quantity × last_price × multiplier`` in USD (negative for a short)."""
        return LEDGER_CONTEXT.multiply(
            LEDGER_CONTEXT.multiply(self.quantity, self.last_price), self.multiplier
        )

    @property
    def unrealized_pnl(self) -> Decimal:
        """Return ``market_value - cost_basis`` in USD."""
        return LEDGER_CONTEXT.subtract(self.market_value, self.cost_basis)


class _Totals(NamedTuple):
    market_value: Decimal
    gross_exposure: Decimal
    cost_basis: Decimal
    equity_gross: Decimal  # sum of |market value| of equity positions
    option_requirement: Decimal  # margin held against option positions, in full


_NO_TOTALS = _Totals(ZERO, ZERO, ZERO, ZERO, ZERO)


@dataclass(frozen=True, slots=True)
class _CheckedFill:
    fill: OrderFilled
    signed_quantity: Decimal
    price: Decimal
    fee: Decimal
    instrument: Instrument


class Portfolio:
    """The account's ledger: applies fills, takes marks, reports equity and buying power.

    Not thread-safe; one owner (an engine or the portfolio actor) drives it. Every public method
    validates its input before changing anything, so a rejected call leaves the state unchanged.

    Buying power:
        * cash account: ``max(0, cash)``.
        * margin account (Reg-T): ``max(0, (equity - initial margin) × margin_multiplier)`` where
          the initial margin is ``Σ |market value| / margin_multiplier`` over equities, plus the
          full market value of long options, plus for short options ``|market value| +
          SHORT_OPTION_STRIKE_PCT × strike × multiplier × |quantity|`` (a conservative
          placeholder until the options work lands).
    """

    def __init__(
        self,
        config: AccountConfig,
        instrument_for: Callable[[str], Instrument] = _default_instrument_for,
    ) -> None:
        self._config = config
        self._instrument_for = instrument_for
        self._starting_cash: Decimal = config.starting_cash_usd
        self._cash: Decimal = config.starting_cash_usd
        self._realized_pnl: Decimal = ZERO
        self._fees: Decimal = ZERO
        self._positions: dict[str, Position] = {}  # every symbol ever traded, flat ones included
        self._open: dict[str, Position] = {}  # quantity != 0 only: the hot loops walk this
        self._strategy_positions: dict[tuple[str, str], Decimal] = {}
        self._instruments: dict[str, Instrument] = {}
        self._marks = _MarkBook()
        self._totals: _Totals | None = None
        self._start_of_day_equity: Decimal = config.starting_cash_usd
        self._session_start_ts_ns: int | None = None

    # ------------------------------------------------------------------ fills

    def apply_fill(self, fill: OrderFilled) -> None:
        """Book one execution: cash, fees, the symbol's position and the strategy's position.

        ``cash -= side × quantity × price × multiplier + fee``.

        Raises:
            PortfolioError: if the fill is malformed (non-positive or non-finite quantity or
                price, negative fee, unknown side, unparseable symbol); nothing is changed.
        """
        checked = self._check(fill)
        with localcontext(LEDGER_CONTEXT):
            self._book(checked)

    def apply_fills(self, fills: Iterable[OrderFilled]) -> None:
        """Book several executions in order, all or none.

        Raises:
            PortfolioError: if any fill is malformed; then none of them is booked.
        """
        checked = [self._check(fill) for fill in fills]
        with localcontext(LEDGER_CONTEXT):
            for item in checked:
                self._book(item)

    def _check(self, fill: OrderFilled) -> _CheckedFill:
        if not isinstance(fill, OrderFilled):
            raise PortfolioError(f"expected an OrderFilled, got {type(fill).__name__} {fill!r}")
        where = f"fill {fill.trade_id!s} of order {fill.client_order_id!s} ({fill.symbol!r})"
        if not isinstance(fill.side, OrderSide):
            raise PortfolioError(f"{where}: side must be an OrderSide, got {fill.side!r}")
        quantity = _exact_number(fill.last_quantity)
        if quantity is None or quantity <= 0:
            raise PortfolioError(
                f"{where}: last_quantity must be a positive finite Decimal, got {fill.last_quantity!r}"
            )
        price = _exact_number(fill.last_price)
        if price is None or price <= 0:
            raise PortfolioError(
                f"{where}: last_price must be a positive finite Decimal, got {fill.last_price!r}"
            )
        fee = _exact_number(fill.fee)
        if fee is None or fee < 0:
            raise PortfolioError(f"{where}: fee must be a finite Decimal >= 0, got {fill.fee!r}")
        if not isinstance(fill.ts_ns, int) or isinstance(fill.ts_ns, bool):
            raise PortfolioError(f"{where}: ts_ns must be an int of UTC nanoseconds, got {fill.ts_ns!r}")
        instrument = self._instrument(fill.symbol, where)
        signed = quantity if fill.side is OrderSide.BUY else -quantity
        return _CheckedFill(fill, signed, price, fee, instrument)

    def _instrument(self, symbol: str, where: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            if not isinstance(symbol, str):
                raise PortfolioError(f"{where}: symbol must be a string, got {symbol!r}")
            try:
                instrument = self._instrument_for(symbol)
            except DomainError as exc:
                raise PortfolioError(f"{where}: unknown instrument: {exc}") from exc
            multiplier = instrument.multiplier
            if not isinstance(multiplier, Decimal) or not multiplier.is_finite() or multiplier <= 0:
                raise PortfolioError(
                    f"{where}: instrument multiplier must be a positive Decimal, got {multiplier!r}"
                )
            self._instruments[symbol] = instrument
        return instrument

    def _book(self, checked: _CheckedFill) -> None:
        """Apply a validated fill; runs inside ``LEDGER_CONTEXT``."""
        fill = checked.fill
        symbol = fill.symbol
        multiplier = checked.instrument.multiplier
        signed = checked.signed_quantity
        price = checked.price
        trade_value = signed * price * multiplier  # cash out for a buy (> 0), in for a sell (< 0)

        position = self._positions.get(symbol)
        if position is None:
            position = Position(symbol, ZERO, ZERO, ZERO, multiplier, price, fill.ts_ns)
            self._positions[symbol] = position
        held = position.quantity
        if not held:
            mark = self._marks.get(symbol)
            if mark is None:
                mark = (price, fill.ts_ns)
                self._marks.set_exact(symbol, price, fill.ts_ns)
            position.last_price, position.last_price_ts_ns = mark

        if not held or (held > 0) == (signed > 0):
            # Opening or adding: the whole trade value goes into the cost basis.
            position.quantity = held + signed
            position.cost_basis += trade_value
            realized = ZERO
        else:
            # Reducing, closing or crossing zero. The closing part of the trade is worth
            # closing_value; the rest (non-zero only when the fill crosses zero) opens the new
            # side at the fill price.
            if abs(signed) < abs(held):
                closing_value = trade_value
                removed = (position.cost_basis * abs(signed) / abs(held)).quantize(COST_QUANTUM)
            else:
                closing_value = -held * price * multiplier
                removed = position.cost_basis  # a full close leaves no basis behind, exactly
            realized = -closing_value - removed
            position.quantity = held + signed
            position.cost_basis = position.cost_basis - removed + (trade_value - closing_value)
        # Books balance exactly: Δcost_basis + realized == trade_value in every branch.
        position.realized_pnl += realized
        self._realized_pnl += realized
        self._cash -= trade_value + checked.fee
        self._fees += checked.fee

        if position.quantity:
            self._open[symbol] = position
        else:
            self._open.pop(symbol, None)
        key = (fill.strategy_id, symbol)
        strategy_quantity = self._strategy_positions.get(key, ZERO) + signed
        if strategy_quantity:
            self._strategy_positions[key] = strategy_quantity
        else:
            self._strategy_positions.pop(key, None)
        self._totals = None

    # ------------------------------------------------------------------ marks

    def mark(self, prices: Mapping[str, Decimal | float], ts_ns: int) -> None:
        """Record the last price (USD) of each symbol at ``ts_ns``.

        NaN, infinite, zero and negative prices are ignored: the symbol keeps its old mark.

        Raises:
            PortfolioError: if a key is not a string or a value is not a number; nothing is
                changed.
        """
        if not isinstance(ts_ns, int) or isinstance(ts_ns, bool):
            raise PortfolioError(f"mark: ts_ns must be an int of UTC nanoseconds, got {ts_ns!r}")
        accepted: list[tuple[str, Decimal]] = []
        for symbol, value in prices.items():
            if not isinstance(symbol, str):
                raise PortfolioError(f"mark: symbols must be strings, got {symbol!r}")
            price = _mark_price(value)
            if isinstance(price, _Bad):
                raise PortfolioError(f"mark: price of {symbol!r} must be a number, got {value!r}")
            if price is not None:
                accepted.append((symbol, price))
        for symbol, price in accepted:
            self._marks.set_exact(symbol, price, ts_ns)
            position = self._open.get(symbol)
            if position is not None:
                position.last_price = price
                position.last_price_ts_ns = ts_ns
                self._totals = None

    def mark_batch(self, batch: BarBatch) -> None:
        """Mark every symbol with a positive close in ``batch`` at ``batch.ts_ns``.

        Costs O(1) for the universe plus O(held positions): the batch is kept by reference and
        folded into the float price arrays lazily and vectorised (at the next snapshot, the next
        fill of a flat symbol, or every 64 batches); only held symbols' closes are converted to
        ``Decimal`` now (``Decimal(repr(close))``, the float's shortest repr). Like every event,
        the batch is immutable: its arrays must not be written after the call (row views of a
        panel that is not modified are fine).

        Raises:
            PortfolioError: if ``batch`` is not a ``BarBatch``.
        """
        if not isinstance(batch, BarBatch):
            raise PortfolioError(f"mark_batch expects a BarBatch, got {type(batch).__name__}")
        index = self._marks.add_batch(batch)
        if not self._open:
            return
        close = batch.close
        ts_ns = batch.ts_ns
        inf = math.inf
        for symbol, position in self._open.items():
            i = index.get(symbol)
            if i is None:
                continue
            value = close.item(i)
            if 0.0 < value < inf:
                position.last_price = Decimal(repr(value))
                position.last_price_ts_ns = ts_ns
                self._totals = None

    def start_session(self, ts_ns: int) -> None:
        """Begin a trading session: start-of-day equity becomes the current equity."""
        self._start_of_day_equity = self.equity
        self._session_start_ts_ns = ts_ns

    # ------------------------------------------------------------------ reports

    @property
    def config(self) -> AccountConfig:
        return self._config

    @property
    def starting_cash(self) -> Decimal:
        return self._starting_cash

    @property
    def cash(self) -> Decimal:
        """USD cash: starting cash less trade values and fees (short sale proceeds included)."""
        return self._cash

    @property
    def market_value(self) -> Decimal:
        """USD ``Σ quantity × last_price × multiplier`` over held positions (shorts negative)."""
        return self._compute_totals().market_value

    @property
    def net_exposure(self) -> Decimal:
        """USD long market value less short market value (equals ``market_value``)."""
        return self._compute_totals().market_value

    @property
    def gross_exposure(self) -> Decimal:
        """USD ``Σ |quantity × last_price × multiplier|`` over held positions."""
        return self._compute_totals().gross_exposure

    @property
    def equity(self) -> Decimal:
        """USD ``cash + market_value``."""
        return LEDGER_CONTEXT.add(self._cash, self._compute_totals().market_value)

    @property
    def unrealized_pnl(self) -> Decimal:
        """USD ``market_value - Σ cost_basis`` over held positions."""
        totals = self._compute_totals()
        return LEDGER_CONTEXT.subtract(totals.market_value, totals.cost_basis)

    @property
    def realized_pnl(self) -> Decimal:
        """USD realised on closes since the start, fees excluded."""
        return self._realized_pnl

    @property
    def fees(self) -> Decimal:
        """USD of fees paid since the start."""
        return self._fees

    @property
    def start_of_day_equity(self) -> Decimal:
        """USD equity when the current session started (starting cash before the first)."""
        return self._start_of_day_equity

    @property
    def session_start_ts_ns(self) -> int | None:
        """UTC nanoseconds of the last :meth:`start_session`, None before the first."""
        return self._session_start_ts_ns

    @property
    def initial_margin_requirement(self) -> Decimal:
        """USD initial margin of held positions (see the class docstring); zero for a cash account."""
        if self._config.account_type == "cash":
            return ZERO
        totals = self._compute_totals()
        with localcontext(LEDGER_CONTEXT):
            return totals.equity_gross / self._config.margin_multiplier + totals.option_requirement

    @property
    def buying_power(self) -> Decimal:
        """USD buying power; see the class docstring for the cash and margin formulas."""
        if self._config.account_type == "cash":
            return max(ZERO, self._cash)
        totals = self._compute_totals()
        context = LEDGER_CONTEXT
        # (equity - equity_gross / m - option_requirement) × m, without the division.
        equity = context.add(self._cash, totals.market_value)
        power = context.subtract(
            context.multiply(
                context.subtract(equity, totals.option_requirement), self._config.margin_multiplier
            ),
            totals.equity_gross,
        )
        return max(ZERO, power)

    def position(self, symbol: str) -> Position | None:
        """Return a copy of ``symbol``'s position (flat if closed), or None if never traded."""
        position = self._positions.get(symbol)
        return None if position is None else replace(position)

    def positions(self) -> dict[str, Position]:
        """Return copies of the open (non-zero) positions by symbol."""
        return {symbol: replace(position) for symbol, position in self._open.items()}

    def strategy_position(self, strategy_id: str, symbol: str) -> Decimal:
        """Return the signed quantity ``strategy_id`` holds in ``symbol`` (zero if none)."""
        return self._strategy_positions.get((strategy_id, symbol), ZERO)

    def snapshot(self, ts_ns: int) -> PortfolioSnapshot:
        """Return the read-only view of the portfolio that risk, sizing and reports consume.

        ``prices`` and ``price_ts_ns`` are immutable lazy mappings (every symbol ever marked);
        the other mappings are fresh dicts. Cost: O(held positions) plus one vectorised fold of
        any batches not yet folded.
        """
        totals = self._compute_totals()
        prices, price_ts = self._marks.views()
        return PortfolioSnapshot(
            ts_ns=ts_ns,
            cash=self._cash,
            equity=LEDGER_CONTEXT.add(self._cash, totals.market_value),
            market_value=totals.market_value,
            gross_exposure=totals.gross_exposure,
            buying_power=self.buying_power,
            start_of_day_equity=self._start_of_day_equity,
            realized_pnl=self._realized_pnl,
            unrealized_pnl=LEDGER_CONTEXT.subtract(totals.market_value, totals.cost_basis),
            fees=self._fees,
            positions={symbol: position.quantity for symbol, position in self._open.items()},
            strategy_positions=dict(self._strategy_positions),
            prices=prices,
            price_ts_ns=price_ts,
        )

    def _compute_totals(self) -> _Totals:
        """Return the held positions' totals, summed in one pass and cached until a fill or mark."""
        totals = self._totals
        if totals is not None:
            return totals
        if not self._open:
            totals = self._totals = _NO_TOTALS
            return totals
        market_value = gross = cost = equity_gross = option_requirement = ZERO
        instruments = self._instruments
        with localcontext(LEDGER_CONTEXT):
            for symbol, position in self._open.items():
                quantity = position.quantity
                value = quantity * position.last_price * position.multiplier
                magnitude = abs(value)
                market_value += value
                gross += magnitude
                cost += position.cost_basis
                instrument = instruments[symbol]
                if isinstance(instrument, OptionContract):
                    option_requirement += magnitude
                    if quantity < 0:
                        option_requirement += (
                            SHORT_OPTION_STRIKE_PCT * instrument.strike * position.multiplier * -quantity
                        )
                else:
                    equity_gross += magnitude
        totals = self._totals = _Totals(market_value, gross, cost, equity_gross, option_requirement)
        return totals


# ---------------------------------------------------------------------- numbers


class _Bad:
    """Sentinel for a value that is not a number at all."""


_BAD = _Bad()


def _exact_number(value: object) -> Decimal | None:
    """Return a finite Decimal (ints accepted), or None if ``value`` is anything else."""
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return None


def _mark_price(value: object) -> Decimal | None | _Bad:
    """Return a positive finite Decimal price, None to ignore the value, or ``_BAD``."""
    if isinstance(value, Decimal):
        return value if value.is_finite() and value > 0 else None
    if isinstance(value, bool) or not isinstance(value, Real):
        return _BAD
    number = float(value)
    if not 0.0 < number < math.inf:
        return None
    if isinstance(value, (int, np.integer)):
        return Decimal(int(value))
    return Decimal(repr(number))


# ---------------------------------------------------------------------- marks


class _MarkBook:
    """Last mark per symbol, from bar batches (floats) and explicit marks (exact Decimals).

    Batch closes live in float arrays aligned with the batch universe; explicit marks in a
    dict. Every mark carries a sequence number so the most recently applied one wins. Arrays
    and dict are copied on write once a snapshot's view shares them.
    """

    __slots__ = ("_close", "_exact", "_index", "_next_seq", "_pending", "_seq", "_shared", "_symbols", "_ts")

    def __init__(self) -> None:
        self._symbols: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._close = np.empty(0, dtype=np.float64)
        self._ts = np.empty(0, dtype=np.int64)
        self._seq = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[BarBatch, int]] = []
        self._exact: dict[str, tuple[Decimal, int, int]] = {}  # symbol -> (price, ts_ns, seq)
        self._shared = False
        self._next_seq = 0

    def _take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq = seq + 1
        return seq

    def set_exact(self, symbol: str, price: Decimal, ts_ns: int) -> None:
        if self._shared:
            self._unshare()
        self._exact[symbol] = (price, ts_ns, self._take_seq())

    def add_batch(self, batch: BarBatch) -> dict[str, int]:
        """Queue ``batch`` and return its symbol -> column index map."""
        symbols = batch.symbols
        if symbols is not self._symbols:
            if symbols != self._symbols:
                self._adopt(symbols)
            self._symbols = symbols  # same content: keep the caller's tuple for the fast path
        self._pending.append((batch, self._take_seq()))
        if len(self._pending) >= _MAX_PENDING_BATCHES:
            self._fold()
        return self._index

    def get(self, symbol: str) -> tuple[Decimal, int] | None:
        """Return ``(price, ts_ns)`` of ``symbol``'s last mark, or None if never marked."""
        self._fold()
        return _lookup(symbol, self._index, self._close, self._ts, self._seq, self._exact)

    def views(self) -> tuple[PriceMarks, PriceMarkTimes]:
        self._fold()
        self._shared = True
        state = _MarkState(self._symbols, self._index, self._close, self._ts, self._seq, self._exact)
        return PriceMarks(state), PriceMarkTimes(state)

    def _unshare(self) -> None:
        self._close = self._close.copy()
        self._ts = self._ts.copy()
        self._seq = self._seq.copy()
        self._exact = dict(self._exact)
        self._shared = False

    def _fold(self) -> None:
        """Fold queued batches into the arrays, oldest first (vectorised per batch)."""
        if not self._pending:
            return
        if self._shared:
            self._unshare()
        pending = self._pending
        close, ts, seq = self._close, self._ts, self._seq
        if len(pending) <= 2:
            for batch, batch_seq in pending:
                values = batch.close
                valid = (values > 0.0) & (values < math.inf)  # NaN compares False: ignored
                np.copyto(close, values, where=valid)
                ts[valid] = batch.ts_ns
                seq[valid] = batch_seq
        else:
            # One pass over all queued batches: each column takes its last valid close.
            stacked = np.stack([batch.close for batch, _ in pending])
            valid = (stacked > 0.0) & (stacked < math.inf)
            newest_first = valid[::-1]
            columns = np.flatnonzero(newest_first.any(axis=0))
            rows = len(pending) - 1 - newest_first.argmax(axis=0)[columns]
            close[columns] = stacked[rows, columns]
            ts[columns] = np.array([batch.ts_ns for batch, _ in pending], dtype=np.int64)[rows]
            seq[columns] = np.array([batch_seq for _, batch_seq in pending], dtype=np.int64)[rows]
        pending.clear()

    def _adopt(self, symbols: tuple[str, ...]) -> None:
        """Switch to a new batch universe, carrying every existing mark over."""
        self._fold()
        if self._shared:
            self._unshare()
        index = {symbol: i for i, symbol in enumerate(symbols)}
        close = np.full(len(symbols), np.nan)
        ts = np.zeros(len(symbols), dtype=np.int64)
        seq = np.full(len(symbols), _NO_SEQ, dtype=np.int64)
        for symbol, old in self._index.items():
            if self._seq[old] == _NO_SEQ:
                continue
            new = index.get(symbol)
            if new is not None:
                close[new], ts[new], seq[new] = self._close[old], self._ts[old], self._seq[old]
            else:
                exact = self._exact.get(symbol)
                if exact is None or exact[2] < self._seq[old]:
                    self._exact[symbol] = (
                        Decimal(repr(self._close.item(old))),
                        self._ts.item(old),
                        self._seq.item(old),
                    )
        self._index, self._close, self._ts, self._seq = index, close, ts, seq


class _MarkState(NamedTuple):
    symbols: tuple[str, ...]
    columns: dict[str, int]
    close: np.ndarray
    ts: np.ndarray
    seq: np.ndarray
    exact: dict[str, tuple[Decimal, int, int]]

    def keys(self) -> list[str]:
        marked = [self.symbols[i] for i in np.flatnonzero(self.seq != _NO_SEQ).tolist()]
        seen = set(marked)
        return marked + [symbol for symbol in self.exact if symbol not in seen]


def _lookup(
    symbol: str,
    index: dict[str, int],
    close: np.ndarray,
    ts: np.ndarray,
    seq: np.ndarray,
    exact: dict[str, tuple[Decimal, int, int]],
) -> tuple[Decimal, int] | None:
    entry = exact.get(symbol)
    i = index.get(symbol)
    if i is not None:
        array_seq = seq.item(i)
        if array_seq != _NO_SEQ and (entry is None or array_seq > entry[2]):
            return Decimal(repr(close.item(i))), ts.item(i)
    if entry is not None:
        return entry[0], entry[1]
    return None


class PriceMarks(Mapping[str, Decimal]):
    """Immutable ``symbol -> last mark (USD)`` of a snapshot; converts floats on first read."""

    __slots__ = ("_cache", "_state")

    def __init__(self, state: _MarkState) -> None:
        self._state = state
        self._cache: dict[str, Decimal] = {}

    def __getitem__(self, symbol: str) -> Decimal:
        price = self._cache.get(symbol)
        if price is None:
            state = self._state
            found = _lookup(symbol, state.columns, state.close, state.ts, state.seq, state.exact)
            if found is None:
                raise KeyError(symbol)
            price = self._cache[symbol] = found[0]
        return price

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.keys())

    def __len__(self) -> int:
        return len(self._state.keys())

    def __repr__(self) -> str:
        return f"PriceMarks({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type[PriceMarks], tuple[_MarkState]]:
        return (PriceMarks, (self._state,))


class PriceMarkTimes(Mapping[str, int]):
    """Immutable ``symbol -> UTC nanoseconds of its last mark`` of a snapshot."""

    __slots__ = ("_state",)

    def __init__(self, state: _MarkState) -> None:
        self._state = state

    def __getitem__(self, symbol: str) -> int:
        state = self._state
        found = _lookup(symbol, state.columns, state.close, state.ts, state.seq, state.exact)
        if found is None:
            raise KeyError(symbol)
        return found[1]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state.keys())

    def __len__(self) -> int:
        return len(self._state.keys())

    def __repr__(self) -> str:
        return f"PriceMarkTimes({dict(self.items())!r})"

    def __reduce__(self) -> tuple[type[PriceMarkTimes], tuple[_MarkState]]:
        return (PriceMarkTimes, (self._state,))
