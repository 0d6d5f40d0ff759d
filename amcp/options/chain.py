"""Option chains as columns: one underlying, one quote time, every listed contract.

:class:`OptionChain` is the shape every options component works on — the surface fit, the
strategy builders, the scanner. It is columnar (numpy arrays of equal length, one row per
contract) so kernels run over whole chains, and it is validated once, at construction: rows
sorted by (expiry, right, strike), no duplicate contract, finite positive strikes, times to
expiry ≥ 0, bids and asks either NaN (no quote) or ≥ 0 with bid ≤ ask.

Units: prices per unit of underlying (a contract is ``multiplier`` units); ``t_years`` is
calendar time to expiry in years (ACT/365 from ``as_of`` to the expiry's 16:00 New York close);
``rate`` and ``div_yield`` continuously compounded annual decimals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from amcp._typing import BoolArray, FloatArray
from amcp.errors import DataError

__all__ = ["CLOSE_NEW_YORK", "OptionChain", "years_to_expiry"]

_NEW_YORK = ZoneInfo("America/New_York")
#: Listed equity options stop trading at the 16:00 New York close of their expiry day.
CLOSE_NEW_YORK = time(16, 0)
_SECONDS_PER_YEAR = 365.0 * 86_400.0

_FLOAT_COLUMNS = ("strike", "t_years", "bid", "ask", "last", "volume", "open_interest", "vendor_iv")


def years_to_expiry(as_of: datetime, expiry: date) -> float:
    """Calendar years (ACT/365) from ``as_of`` (timezone-aware) to ``expiry``'s 16:00 New York close.

    Raises:
        DataError: if ``as_of`` is naive.
    """
    if as_of.tzinfo is None:
        raise DataError(f"as_of must be timezone-aware, got {as_of!r}")
    close = datetime.combine(expiry, CLOSE_NEW_YORK, tzinfo=_NEW_YORK)
    return max((close - as_of).total_seconds(), 0.0) / _SECONDS_PER_YEAR


@dataclass(frozen=True, eq=False)
class OptionChain:
    """Every contract of one underlying at one quote time (see the module docstring).

    Args:
        underlying: the underlying's symbol, e.g. ``"SPY"``.
        as_of: the quote time (timezone-aware).
        spot: the underlying's price at ``as_of``.
        rate: the risk-free rate (continuous, annual).
        div_yield: the underlying's continuous dividend yield (annual).
        expiry: expiry dates, ``datetime64[D]``.
        t_years: time to expiry in years (see :func:`years_to_expiry`).
        strike: strikes.
        is_call: True for calls, False for puts.
        bid, ask, last: quotes; NaN where there is none.
        volume, open_interest: the day's volume and the open interest; NaN where unknown.
        symbol: OCC symbols as Alpaca writes them (root not padded), e.g. ``SPY240119C00480000``.
        vendor_iv: the data vendor's implied volatility where it gives one, else NaN.
        multiplier: units of underlying per contract.

    Raises:
        DataError: if the columns differ in length or break a rule of the module docstring;
            the message names the column and the first offending row.
    """

    underlying: str
    as_of: datetime
    spot: float
    rate: float
    div_yield: float
    expiry: npt.NDArray[np.datetime64]
    t_years: FloatArray
    strike: FloatArray
    is_call: BoolArray
    bid: FloatArray
    ask: FloatArray
    last: FloatArray
    volume: FloatArray
    open_interest: FloatArray
    symbol: npt.NDArray[np.str_]
    vendor_iv: FloatArray
    multiplier: float = 100.0
    _expiries: npt.NDArray[np.datetime64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None:
            raise DataError(f"chain {self.underlying}: as_of must be timezone-aware, got {self.as_of!r}")
        for name, value in (("spot", self.spot), ("multiplier", self.multiplier)):
            if not np.isfinite(value) or value <= 0:
                raise DataError(f"chain {self.underlying}: {name} must be a positive number, got {value!r}")
        for name, value in (("rate", self.rate), ("div_yield", self.div_yield)):
            if not np.isfinite(value):
                raise DataError(f"chain {self.underlying}: {name} must be finite, got {value!r}")
        n = len(self.strike)
        for name in _FLOAT_COLUMNS:
            column = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            if column.shape != (n,):
                raise DataError(f"chain {self.underlying}: column {name} has shape {column.shape}, expected ({n},)")
            object.__setattr__(self, name, column)
        expiry = np.asarray(self.expiry, dtype="datetime64[D]")
        is_call = np.asarray(self.is_call, dtype=bool)
        symbol = np.asarray(self.symbol, dtype=np.str_)
        for name, column in (("expiry", expiry), ("is_call", is_call), ("symbol", symbol)):
            if column.shape != (n,):
                raise DataError(f"chain {self.underlying}: column {name} has shape {column.shape}, expected ({n},)")
        object.__setattr__(self, "expiry", expiry)
        object.__setattr__(self, "is_call", is_call)
        object.__setattr__(self, "symbol", symbol)
        self._validate_rows()
        object.__setattr__(self, "_expiries", np.unique(expiry))
        for column in (self.expiry, self.is_call, self.symbol, *(getattr(self, c) for c in _FLOAT_COLUMNS)):
            column.flags.writeable = False

    def _validate_rows(self) -> None:
        def fail(name: str, bad: BoolArray, rule: str) -> None:
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"chain {self.underlying}: {name} {rule}; row {row} ({self.symbol[row]}) breaks it")

        if (bad := ~(np.isfinite(self.strike) & (self.strike > 0))).any():
            fail("strike", bad, "must be finite and > 0")
        if (bad := ~(np.isfinite(self.t_years) & (self.t_years >= 0))).any():
            fail("t_years", bad, "must be finite and >= 0")
        for name in ("bid", "ask", "last", "volume", "open_interest", "vendor_iv"):
            column = getattr(self, name)
            if (bad := ~np.isnan(column) & ~(np.isfinite(column) & (column >= 0))).any():
                fail(name, bad, "must be NaN or a finite number >= 0")
        if (bad := self.bid > self.ask).any():  # NaN compares False: one-sided quotes pass
            fail("bid", bad, "must not exceed ask")
        if len(self.strike) > 1:
            # sorted by (expiry, right: puts first, strike); equal keys mean a duplicate contract
            keys = (self.strike, self.is_call, self.expiry)
            order = np.lexsort(keys)
            if (order != np.arange(len(order))).any():
                fail("rows", order != np.arange(len(order)), "must be sorted by (expiry, puts before calls, strike)")
            same = ((self.expiry[1:] == self.expiry[:-1]) & (self.is_call[1:] == self.is_call[:-1])
                    & (self.strike[1:] == self.strike[:-1]))
            if same.any():
                fail("rows", np.concatenate([[False], same]), "must not repeat a contract")

    # ------------------------------------------------------------------ views

    def __len__(self) -> int:
        return len(self.strike)

    @property
    def expiries(self) -> npt.NDArray[np.datetime64]:
        """The distinct expiries, ascending."""
        return self._expiries

    @property
    def mid(self) -> FloatArray:
        """(bid + ask) / 2 where both sides are quoted, else NaN."""
        return (self.bid + self.ask) / 2.0

    @property
    def spread(self) -> FloatArray:
        """ask − bid where both sides are quoted, else NaN."""
        return self.ask - self.bid

    def select(self, mask: BoolArray) -> OptionChain:
        """The chain restricted to the rows where ``mask`` is True (order kept)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise DataError(f"chain {self.underlying}: mask has shape {mask.shape}, expected ({len(self)},)")
        columns = {name: getattr(self, name)[mask] for name in (*_FLOAT_COLUMNS, "expiry", "is_call", "symbol")}
        return OptionChain(underlying=self.underlying, as_of=self.as_of, spot=self.spot, rate=self.rate,
                           div_yield=self.div_yield, multiplier=self.multiplier, **columns)

    def expiry_slice(self, expiry: np.datetime64 | date) -> OptionChain:
        """The contracts of one expiry."""
        return self.select(self.expiry == np.datetime64(expiry, "D"))

    @staticmethod
    def sort_order(expiry: npt.ArrayLike, is_call: npt.ArrayLike, strike: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """The row order an :class:`OptionChain` requires, for constructors that gather rows
        in another order: ``columns[order]``."""
        return np.lexsort((np.asarray(strike, dtype=np.float64), np.asarray(is_call, dtype=bool),
                           np.asarray(expiry, dtype="datetime64[D]")))

