"""A hand-quoted SPY chain shared by the multi-leg order tests (every net price in them is
worked out by hand from QUOTES)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.options.chain import OptionChain, years_to_expiry

AS_OF = datetime(2024, 1, 2, 16, 0, tzinfo=ZoneInfo("America/New_York"))
TS_NS = int(AS_OF.timestamp()) * 10**9
EXPIRY = date(2024, 1, 19)
# (is_call, strike) -> (bid, ask), hand-entered so that every expected net price is hand-computed
QUOTES = {
    (False, 470.0): ("1.00", "1.10"), (False, 475.0): ("1.60", "1.70"), (False, 480.0): ("2.90", "3.00"),
    (False, 485.0): ("5.40", "5.60"), (False, 490.0): ("9.00", "9.20"),
    (True, 470.0): ("11.50", "11.70"), (True, 475.0): ("7.60", "7.80"), (True, 480.0): ("4.40", "4.50"),
    (True, 485.0): ("2.00", "2.10"), (True, 490.0): ("0.80", "0.85"),
}


def occ(is_call: bool, strike: float) -> str:
    return OptionContract("SPY", EXPIRY, OptionRight.CALL if is_call else OptionRight.PUT, Decimal(int(strike))).occ_symbol


def spy_chain() -> OptionChain:
    """SPY at 480 on 2024-01-02, one expiry (2024-01-19), strikes 470-490, the quotes of QUOTES."""
    keys = sorted(QUOTES)  # puts before calls, strikes ascending: the chain's row order
    n = len(keys)
    return OptionChain(
        underlying="SPY", as_of=AS_OF, spot=480.0, rate=0.05, div_yield=0.0,
        expiry=np.full(n, np.datetime64(EXPIRY, "D")), t_years=np.full(n, years_to_expiry(AS_OF, EXPIRY)),
        strike=np.array([k for _, k in keys]), is_call=np.array([c for c, _ in keys]),
        bid=np.array([float(QUOTES[key][0]) for key in keys]), ask=np.array([float(QUOTES[key][1]) for key in keys]),
        last=np.full(n, np.nan), volume=np.full(n, np.nan), open_interest=np.full(n, np.nan),
        symbol=np.array([occ(c, k) for c, k in keys]), vendor_iv=np.full(n, 0.2),
    )
