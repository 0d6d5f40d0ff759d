"""The risk engine's instrument lookups, cached per symbol together with the restricted-symbol verdict.

Each symbol is looked up once: the first order (or working order, or multi-leg leg) on it asks
``instrument_for``, and every later one reads the cached :data:`Listing`.
"""

from __future__ import annotations

from collections.abc import Callable

from amcp.domain.instruments import Instrument, OptionContract
from amcp.errors import DomainError

#: ``(instrument, restricted message or None)``, or the UNKNOWN_INSTRUMENT message.
Listing = tuple[Instrument, str | None] | str


class Listings(dict[str, Listing]):
    """Symbol -> :data:`Listing`, looked up on first use (``listings[symbol]`` never raises).

    A symbol is unknown when ``instrument_for`` raises :class:`~amcp.errors.DomainError` or
    :class:`LookupError`, or when it is not written the way its instrument writes it (``aapl``
    for ``AAPL``). A known symbol is restricted when it, or an option's underlying, is in
    ``restricted``.
    """

    __slots__ = ("_instrument_for", "_restricted")

    def __init__(self, instrument_for: Callable[[str], Instrument], restricted: frozenset[str]) -> None:
        super().__init__()
        self._instrument_for = instrument_for
        self._restricted = restricted

    def __missing__(self, symbol: str) -> Listing:
        listing: Listing
        try:
            instrument = self._instrument_for(symbol)
        except (DomainError, LookupError) as exc:
            listing = f"unknown instrument {symbol!r}: {exc}"
        else:
            canonical = instrument.symbol
            if canonical != symbol:
                listing = f"symbol {symbol!r} is not written as its instrument writes it: {canonical!r}"
            elif canonical in self._restricted:
                listing = (instrument, f"{canonical} is a restricted symbol")
            elif isinstance(instrument, OptionContract) and instrument.underlying in self._restricted:
                listing = (
                    instrument,
                    f"{canonical} is an option on the restricted symbol {instrument.underlying}",
                )
            else:
                listing = (instrument, None)
        self[symbol] = listing
        return listing
