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

Speed: :meth:`Portfolio.mark_batch` does O(1) work for the universe (the mark book keeps a
reference to the batch's closes and folds batches into float arrays lazily, vectorised; see
:mod:`amcp.portfolio.marks`) and converts to ``Decimal`` only the closes of symbols held, in the
same pass over the held positions that sums the totals (equity, exposure, buying power). The
totals are cached until the next fill or mark. Snapshot prices are a read-only mapping that
converts a float close to ``Decimal`` only when a key is read. The hot paths run their
arithmetic in a private copy of :data:`LEDGER_CONTEXT` made current for the call, which is the
same as ``localcontext(LEDGER_CONTEXT)`` without copying the context every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    getcontext,
    localcontext,
    setcontext,
)
from numbers import Real
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from amcp.config import AccountConfig
from amcp.domain._fast_init import keyword_constructor
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide
from amcp.domain.instruments import ONE as _ONE
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as _default_instrument_for
from amcp.domain.messages import OrderFilled
from amcp.errors import DomainError, PortfolioError
from amcp.portfolio.marks import MarkBook, PriceMarks, PriceMarkTimes
from amcp.portfolio.snapshot import PortfolioSnapshot

__all__ = ["LEDGER_CONTEXT", "Portfolio", "Position", "PriceMarkTimes", "PriceMarks"]

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
    equity: Decimal  # cash + market_value
    unrealized_pnl: Decimal  # market_value - cost_basis
    buying_power: Decimal  # see Portfolio

_NO_COLUMNS: Mapping[str, int] = MappingProxyType({})
# PortfolioSnapshot(...) for the hot path: the same object, without the class-call overhead.
_new_snapshot = keyword_constructor(PortfolioSnapshot)


# A validated fill: the fill, its signed quantity, price, fee and instrument (a plain tuple: cheap).
_CheckedFill = tuple[OrderFilled, Decimal, Decimal, Decimal, Instrument]


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
        self._open_quantities: dict[str, Decimal] = {}  # the same keys, in the same order
        self._shorts: set[str] = set()  # the keys of short positions (negative market value)
        self._strategy_positions: dict[tuple[str, str], Decimal] = {}
        self._instruments: dict[str, Instrument] = {}
        self._options: dict[str, OptionContract] = {}  # those of them that are option contracts
        self._scaled_positions = False  # whether any of them has a multiplier other than ONE
        self._marks = MarkBook()
        # The hot paths do their arithmetic in this private copy of LEDGER_CONTEXT, made current
        # for the call: the same as ``localcontext(LEDGER_CONTEXT)`` without a copy per call.
        self._context = LEDGER_CONTEXT.copy()
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
        saved = getcontext()
        setcontext(self._context)
        try:
            self._book(checked)
        finally:
            setcontext(saved)

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
        if not isinstance(fill.side, OrderSide):
            raise PortfolioError(f"{_where(fill)}: side must be an OrderSide, got {fill.side!r}")
        quantity = _exact_number(fill.last_quantity)
        if quantity is None or quantity <= ZERO:
            raise PortfolioError(
                f"{_where(fill)}: last_quantity must be a positive finite Decimal, got {fill.last_quantity!r}"
            )
        price = _exact_number(fill.last_price)
        if price is None or price <= ZERO:
            raise PortfolioError(
                f"{_where(fill)}: last_price must be a positive finite Decimal, got {fill.last_price!r}"
            )
        fee = _exact_number(fill.fee)
        if fee is None or fee < ZERO:
            raise PortfolioError(f"{_where(fill)}: fee must be a finite Decimal >= 0, got {fill.fee!r}")
        if not isinstance(fill.ts_ns, int) or isinstance(fill.ts_ns, bool):
            raise PortfolioError(f"{_where(fill)}: ts_ns must be an int of UTC nanoseconds, got {fill.ts_ns!r}")
        instrument = self._instruments.get(fill.symbol) if type(fill.symbol) is str else None
        if instrument is None:
            instrument = self._instrument(fill.symbol, _where(fill))
        signed = quantity if fill.side is OrderSide.BUY else -quantity
        return fill, signed, price, fee, instrument

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
            if isinstance(instrument, OptionContract):
                self._options[symbol] = instrument
            if multiplier is not _ONE:
                self._scaled_positions = True
        return instrument

    def _book(self, checked: _CheckedFill) -> None:
        """Apply a validated fill; runs inside ``LEDGER_CONTEXT``."""
        fill, signed, price, fee, instrument = checked
        symbol = fill.symbol
        multiplier = instrument.multiplier
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

        if not held or (held > ZERO) == (signed > ZERO):
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
        self._cash -= trade_value + fee
        self._fees += fee

        if position.quantity:
            self._open[symbol] = position
            self._open_quantities[symbol] = position.quantity
        else:
            self._open.pop(symbol, None)
            self._open_quantities.pop(symbol, None)
        if position.quantity < ZERO:
            self._shorts.add(symbol)
        else:
            self._shorts.discard(symbol)
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

        Costs O(1) for the universe plus O(held positions): the batch's closes are kept by
        reference and folded into the float price arrays lazily and vectorised (every 64 batches,
        or on a change of universe); only held symbols' closes are converted to ``Decimal`` now
        (``Decimal(repr(close))``, the float's shortest repr), in the pass that also sums the
        totals. Like every event, the batch is immutable: its arrays must not be written after
        the call (row views of a panel that is not modified are fine).

        Raises:
            PortfolioError: if ``batch`` is not a ``BarBatch``.
        """
        if not isinstance(batch, BarBatch):
            raise PortfolioError(f"mark_batch expects a BarBatch, got {type(batch).__name__}")
        index = self._marks.add_batch(batch)
        if self._open:
            # Marks and totals in one pass over the held positions.
            self._totals = self._sum_totals(batch.close.tolist(), index, batch.ts_ns)

    def start_session(self, ts_ns: int) -> None:
        """Begin a trading session: start-of-day equity becomes the current equity."""
        self._start_of_day_equity = self._compute_totals().equity
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
        return self._compute_totals().equity

    @property
    def unrealized_pnl(self) -> Decimal:
        """USD ``market_value - Σ cost_basis`` over held positions."""
        return self._compute_totals().unrealized_pnl

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
        return self._compute_totals().buying_power

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
        the other mappings are fresh dicts. Cost: O(held positions) if a fill or mark changed the
        totals since they were last summed (:meth:`mark_batch` sums them as it marks), else O(1).
        """
        totals = self._compute_totals()
        prices, price_ts = self._marks.views()
        return _new_snapshot(
            ts_ns=ts_ns,
            cash=self._cash,
            equity=totals.equity,
            market_value=totals.market_value,
            gross_exposure=totals.gross_exposure,
            buying_power=totals.buying_power,
            start_of_day_equity=self._start_of_day_equity,
            realized_pnl=self._realized_pnl,
            unrealized_pnl=totals.unrealized_pnl,
            fees=self._fees,
            positions=dict(self._open_quantities),
            strategy_positions=dict(self._strategy_positions),
            prices=prices,
            price_ts_ns=price_ts,
        )

    def _compute_totals(self) -> _Totals:
        """Return the held positions' totals, summed in one pass and cached until a fill or mark."""
        totals = self._totals
        if totals is None:
            totals = self._totals = self._sum_totals()
        return totals

    def _sum_totals(
        self, closes: Sequence[float] = (), columns: Mapping[str, int] = _NO_COLUMNS, ts_ns: int = 0
    ) -> _Totals:
        """Sum the held positions' totals, first marking each at its batch close, if it has one.

        ``closes`` are a batch's closes by column, ``columns`` maps symbols to columns (empty:
        no batch) and ``ts_ns`` is the batch's time. NaN, zero, negative and infinite closes
        leave the old mark. Sums run in position order in ``LEDGER_CONTEXT``; equity, unrealised
        P&L and buying power follow from them and the cash.
        """
        column_of = columns.get
        to_decimal, shortest_repr, inf = Decimal, repr, math.inf
        scaled = self._scaled_positions  # else every multiplier is ONE, and × 1 changes nothing
        values: list[Decimal] = []
        cost = ZERO
        saved = getcontext()
        setcontext(self._context)
        try:
            for symbol, position in self._open.items():
                i = column_of(symbol)
                if i is not None:
                    close = closes[i]
                    if 0.0 < close < inf:
                        position.last_price = to_decimal(shortest_repr(close))
                        position.last_price_ts_ns = ts_ns
                value = position.quantity * position.last_price
                if scaled:
                    value *= position.multiplier
                values.append(value)
                cost += position.cost_basis
            market_value = sum(values, ZERO)
            # Marks and multipliers are positive, so a value is negative exactly when the position
            # is short; with none short, |value| is value itself: the same sum, term for term.
            gross = sum(map(abs, values), ZERO) if self._shorts else market_value
            if self._options:
                equity_gross, option_requirement = self._margin_sums(values)
            else:  # every position is an equity
                equity_gross, option_requirement = gross, ZERO
            cash = self._cash
            equity = cash + market_value
            if self._config.account_type == "cash":
                buying_power = max(ZERO, cash)
            else:
                # (equity - equity_gross / m - option_requirement) × m, without the division.
                power = (equity - option_requirement) * self._config.margin_multiplier - equity_gross
                buying_power = max(ZERO, power)
            return _Totals(
                market_value,
                gross,
                cost,
                equity_gross,
                option_requirement,
                equity,
                market_value - cost,
                buying_power,
            )
        finally:
            setcontext(saved)

    def _margin_sums(self, values: list[Decimal]) -> tuple[Decimal, Decimal]:
        """Return Σ |value| over equities and the option requirement; ``values`` in position order."""
        equity_gross = option_requirement = ZERO
        options = self._options
        for (symbol, position), value in zip(self._open.items(), values):
            magnitude = abs(value)
            option = options.get(symbol)
            if option is None:
                equity_gross += magnitude
                continue
            option_requirement += magnitude
            quantity = position.quantity
            if quantity < 0:
                option_requirement += SHORT_OPTION_STRIKE_PCT * option.strike * position.multiplier * -quantity
        return equity_gross, option_requirement


# ---------------------------------------------------------------------- numbers


class _Bad:
    """Sentinel for a value that is not a number at all."""


_BAD = _Bad()


def _where(fill: OrderFilled) -> str:
    """Name a fill in an error message."""
    return f"fill {fill.trade_id!s} of order {fill.client_order_id!s} ({fill.symbol!r})"


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
