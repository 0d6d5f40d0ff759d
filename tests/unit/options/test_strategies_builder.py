"""The builder picks contracts from a chain by strike, delta, ATM steps, offset and width."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from vollib.black_scholes_merton.greeks.analytical import delta as vollib_delta

from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.options.black_scholes import bsm_price
from amcp.options.chain import OptionChain, years_to_expiry
from amcp.options.strategies import (
    AtDelta,
    AtmOffset,
    AtmSteps,
    AtStrike,
    FromStrike,
    StrategyError,
    build,
    resolve_expiry,
)

AS_OF = datetime(2024, 5, 1, 10, 0, tzinfo=ZoneInfo("America/New_York"))
SPOT, RATE, VOL = 101.0, 0.03, 0.25
STRIKES = np.arange(80.0, 121.0, 5.0)
EXPIRIES = [AS_OF.date() + timedelta(days=d) for d in (30, 58, 93)]


def make_chain(drop: tuple[tuple[date, bool, float], ...] = ()) -> OptionChain:
    """Flat 25 % vol; quotes are the BSM price ± 0.05 (bid floored at 0)."""
    rows = [(e, c, k) for e in EXPIRIES for c in (False, True) for k in STRIKES if (e, c, k) not in drop]
    expiry = np.array([r[0] for r in rows], dtype="datetime64[D]")
    is_call = np.array([r[1] for r in rows])
    strike = np.array([r[2] for r in rows])
    t = np.array([years_to_expiry(AS_OF, r[0]) for r in rows])
    fair = bsm_price(SPOT, strike, t, RATE, 0.0, VOL, is_call)
    symbols = [
        OptionContract(
            "XYZ", r[0], OptionRight.CALL if r[1] else OptionRight.PUT, Decimal(int(r[2]))
        ).occ_symbol
        for r in rows
    ]
    order = OptionChain.sort_order(expiry, is_call, strike)
    n = len(rows)
    return OptionChain(
        underlying="XYZ",
        as_of=AS_OF,
        spot=SPOT,
        rate=RATE,
        div_yield=0.0,
        expiry=expiry[order],
        t_years=t[order],
        strike=strike[order],
        is_call=is_call[order],
        bid=np.maximum(fair - 0.05, 0.0)[order],
        ask=(fair + 0.05)[order],
        last=np.full(n, np.nan),
        volume=np.full(n, np.nan),
        open_interest=np.full(n, np.nan),
        symbol=np.array(symbols)[order],
        vendor_iv=np.full(n, VOL),
    )


CHAIN = make_chain()


def test_expiry_by_days_picks_the_nearest_listed_and_far_comes_after_near() -> None:
    assert resolve_expiry(CHAIN, 35) == EXPIRIES[0]  # 30 days is 5 away, 58 is 23
    assert resolve_expiry(CHAIN, 50) == EXPIRIES[1]
    assert resolve_expiry(CHAIN, 30, after=EXPIRIES[0]) == EXPIRIES[1]
    with pytest.raises(StrategyError, match="not listed"):
        resolve_expiry(CHAIN, date(2024, 6, 3))


def test_default_strikes_step_from_the_atm_strike() -> None:
    # spot 101: the ATM strike is 100; a bull call spread buys ATM and sells one strike up.
    position = build("bull_call_spread", CHAIN, near=30)
    assert position.strikes == {"K1": 100.0, "K2": 105.0}
    assert [leg.symbol for leg in position.option_legs] == ["XYZ240531C00100000", "XYZ240531C00105000"]
    assert [leg.quantity for leg in position.option_legs] == [1, -1]


def test_explicit_strikes_offsets_and_widths() -> None:
    position = build(
        "short_iron_condor",
        CHAIN,
        strikes={"K1": 85.0, "K2": AtStrike(90.0), "K3": AtmOffset(7.0), "K4": FromStrike("K3", 10.0)},
    )
    # ATM 100 + 7 = 107: nearest listed 105; K4 = 105 + 10 = 115.
    assert position.strikes == {"K1": 85.0, "K2": 90.0, "K3": 105.0, "K4": 115.0}
    position = build(
        "long_call_butterfly",
        CHAIN,
        strikes={"K1": AtmSteps(-2), "K2": FromStrike("K1", 10.0), "K3": FromStrike("K2", 10.0)},
    )
    assert position.strikes == {"K1": 90.0, "K2": 100.0, "K3": 110.0}


def test_delta_selector_picks_the_strike_with_the_closest_delta() -> None:
    t = years_to_expiry(AS_OF, EXPIRIES[0])
    call_deltas = {k: vollib_delta("c", SPOT, k, t, RATE, VOL, 0.0) for k in STRIKES}
    put_deltas = {k: vollib_delta("p", SPOT, k, t, RATE, VOL, 0.0) for k in STRIKES}
    want_call = min(STRIKES, key=lambda k: abs(call_deltas[k] - 0.30))
    want_put = min(STRIKES, key=lambda k: abs(put_deltas[k] + 0.20))
    position = build("short_strangle", CHAIN, strikes={"K1": AtDelta(-0.20), "K2": AtDelta(0.30)})
    assert position.strikes == {"K1": want_put, "K2": want_call}
    assert want_put < SPOT < want_call


def test_poor_mans_covered_call_picks_its_legs_by_delta_on_two_expiries() -> None:
    position = build("poor_mans_covered_call", CHAIN, near=30, far=90)
    far_t = years_to_expiry(AS_OF, EXPIRIES[2])
    near_t = years_to_expiry(AS_OF, EXPIRIES[0])
    long_strike = min(STRIKES, key=lambda k: abs(vollib_delta("c", SPOT, k, far_t, RATE, VOL, 0.0) - 0.80))
    short_strike = min(STRIKES, key=lambda k: abs(vollib_delta("c", SPOT, k, near_t, RATE, VOL, 0.0) - 0.30))
    long_leg, short_leg = position.option_legs
    assert (long_leg.strike, long_leg.expiry, long_leg.quantity) == (long_strike, EXPIRIES[2], 1)
    assert (short_leg.strike, short_leg.expiry, short_leg.quantity) == (short_strike, EXPIRIES[0], -1)


def test_premiums_are_the_mids_unless_given() -> None:
    position = build("long_straddle", CHAIN)
    for leg in position.option_legs:
        row = int(np.flatnonzero(CHAIN.symbol == leg.symbol)[0])
        assert leg.premium == pytest.approx((CHAIN.bid[row] + CHAIN.ask[row]) / 2)
        assert leg.vol == VOL and leg.t_years == CHAIN.t_years[row]
    given = build("long_straddle", CHAIN, premiums=(2.5, 3.0), units=2)
    assert [leg.premium for leg in given.option_legs] == [2.5, 3.0]
    assert given.net_premium == pytest.approx(2 * 100 * 5.5)


def test_stock_leg_is_in_shares_at_the_spot() -> None:
    position = build("covered_call", CHAIN, units=3)
    assert position.stock is not None
    assert (position.stock.shares, position.stock.price) == (300, SPOT)
    assert position.option_legs[0].quantity == -3


def test_a_slot_shared_by_a_call_and_a_put_only_takes_strikes_where_both_are_listed() -> None:
    chain = make_chain(drop=((EXPIRIES[0], False, 100.0),))  # no 100 put in the near expiry
    position = build("long_straddle", chain, near=30)
    assert position.strikes == {"K1": 105.0}  # the ATM of the common strikes 80..95, 105..120 (spot 101)


def test_unmet_selectors_raise_with_the_reason() -> None:
    with pytest.raises(StrategyError, match="not listed"):
        build("long_call", CHAIN, strikes={"K1": 102.5})
    with pytest.raises(StrategyError, match="beyond"):
        build("long_call", CHAIN, strikes={"K1": AtmSteps(9)})
    with pytest.raises(StrategyError, match="ascend"):
        build("bull_call_spread", CHAIN, strikes={"K1": 110.0, "K2": 100.0})
    with pytest.raises(StrategyError, match="unknown strike slot"):
        build("long_call", CHAIN, strikes={"K2": 100.0})
    with pytest.raises(StrategyError, match="cycle"):
        build("bull_call_spread", CHAIN, strikes={"K1": FromStrike("K2", -5.0), "K2": FromStrike("K1", 5.0)})
