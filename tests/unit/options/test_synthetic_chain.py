"""Synthetic chains: valid, free of static arbitrage for every accepted parameter set, quoted on
the documented smile, and refusing parameters that would break a no-arbitrage condition."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pytest

from amcp.domain.instruments import OptionContract
from amcp.errors import DataError
from amcp.options.chain import OptionChain
from amcp.options.implied_vol import IVStatus, implied_vol
from amcp.options.scanner import LiquidityFilter, ScannerConfig, find_arbitrage
from amcp.options.synthetic import smile_vol, synthetic_chain

AS_OF = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)


def chain_for(**overrides: object) -> OptionChain:
    arguments: dict[str, object] = {"underlying": "SYN", "as_of": AS_OF, "spot": 100.0, "strike_step": 1.0,
                                    "rate": 0.03, "div_yield": 0.01}
    arguments.update(overrides)
    return synthetic_chain(**arguments)  # type: ignore[arg-type]


def random_parameters(seed: int) -> dict[str, object]:
    """Parameters drawn inside the documented arbitrage-free ranges (equity-like to meme-like)."""
    rng = np.random.default_rng(seed)
    spot = float(rng.uniform(20, 500))
    atm_vol = float(rng.uniform(0.1, 0.9))
    curvature = float(rng.uniform(0.5, 3.0))
    rho = float(rng.uniform(-0.9, 0.5))
    return {"underlying": "SYN", "as_of": AS_OF, "spot": spot, "strike_step": round(spot / 50, 2),
            "rate": float(rng.uniform(0.0, 0.06)), "div_yield": float(rng.uniform(0.0, 0.04)),
            "expiries_days": (7, 21, 45, 91, 182), "strike_width": float(rng.uniform(0.2, 0.6)),
            "atm_vol": atm_vol, "skew": rho * atm_vol * curvature / 2, "curvature": curvature,
            "term": float(rng.uniform(-0.1, 0.1)) * atm_vol, "half_spread_abs": float(rng.uniform(0.0, 0.05)),
            "half_spread_rel": float(rng.uniform(0.005, 0.05)), "seed": seed}


@pytest.mark.parametrize("seed", range(8))
def test_a_synthetic_chain_shows_no_arbitrage_at_executable_or_mid_prices(seed: int) -> None:
    chain = synthetic_chain(**random_parameters(seed))  # type: ignore[arg-type]
    executable = find_arbitrage(chain, ScannerConfig(style="european"))
    assert len(executable) == 0, executable[:3]
    at_mid = find_arbitrage(chain, ScannerConfig(style="european", filters=LiquidityFilter(min_bid=1e-12),
                                                 min_violation=1e-9, include_mid_violations=True))
    assert len(at_mid) == 0, at_mid[:3]


@pytest.mark.parametrize("seed", range(4))
def test_the_mids_of_out_of_the_money_contracts_imply_the_documented_smile(seed: int) -> None:
    parameters = random_parameters(seed)
    chain = synthetic_chain(**parameters)  # type: ignore[arg-type]
    forward = chain.spot * np.exp((chain.rate - chain.div_yield) * chain.t_years)
    otm = np.where(chain.is_call, chain.strike >= forward, chain.strike < forward)
    solved = implied_vol(chain.mid, chain.spot, chain.strike, chain.t_years, chain.rate, chain.div_yield,
                         chain.is_call)
    expected = smile_vol(np.log(chain.strike / forward), chain.t_years, atm_vol=parameters["atm_vol"],
                         skew=parameters["skew"], curvature=parameters["curvature"], term=parameters["term"])
    assert (solved.status[otm] == IVStatus.OK).all()
    np.testing.assert_allclose(solved.vol[otm], expected[otm], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(chain.vendor_iv, expected)


def test_the_smile_has_the_requested_atm_level_slope_and_term_structure() -> None:
    k = np.array([-1e-6, 0.0, 1e-6])
    for t, atm in ((0.25, 0.2 + 0.04 * 0.25), (1.0, 0.2 + 0.04)):
        vol = smile_vol(k, np.full(3, t), atm_vol=0.2, skew=-0.15, curvature=2.0, term=0.04)
        assert vol[1] == pytest.approx(atm, abs=1e-15)
        assert (vol[2] - vol[0]) / 2e-6 == pytest.approx(-0.15 * atm / 0.2, rel=1e-6)


def test_a_synthetic_chain_is_sorted_with_occ_symbols_and_quotes_around_the_model_price() -> None:
    chain = chain_for(expiries_days=(30, 7), strike_width=0.1, half_spread_abs=0.02, half_spread_rel=0.05)
    assert (OptionChain.sort_order(chain.expiry, chain.is_call, chain.strike) == np.arange(len(chain))).all()
    assert [str(e) for e in chain.expiries] == ["2024-01-09", "2024-02-01"]
    assert sorted(set(chain.strike)) == list(np.arange(90.0, 111.0))
    assert len(chain) == 2 * 2 * 21
    for row in (0, 30, len(chain) - 1):
        contract = OptionContract.from_occ(str(chain.symbol[row]))
        assert (contract.underlying, contract.strike) == ("SYN", Decimal(str(chain.strike[row])))
        assert np.datetime64(contract.expiry, "D") == chain.expiry[row]
        assert (contract.right.value.lower() == "call") == bool(chain.is_call[row])
    half = np.minimum(0.02 + 0.05 * chain.last, chain.last)
    np.testing.assert_allclose(chain.ask - chain.bid, 2 * half, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(chain.mid, chain.last, rtol=1e-12, atol=1e-15)
    assert (chain.bid >= 0).all() and (chain.bid == 0).any()  # far out-of-the-money mids under 2 cents


def test_the_seed_drives_open_interest_and_volume_only() -> None:
    first, again, other = chain_for(seed=1), chain_for(seed=1), chain_for(seed=2)
    np.testing.assert_array_equal(first.open_interest, again.open_interest)
    assert (first.open_interest != other.open_interest).any() and (first.volume != other.volume).any()
    np.testing.assert_array_equal(first.bid, other.bid)
    assert abs(first.open_interest.mean() - 500) < 10 and abs(first.volume.mean() - 50) < 3


@pytest.mark.parametrize(("overrides", "message"), [
    ({"skew": -0.5}, "ρ = 2·skew/(atm_vol·curvature) = -2.5 must lie in (−1, 1)"),
    ({"atm_vol": 0.9, "curvature": 4.0, "expiries_days": (30, 365)}, "would allow butterfly arbitrage"),
    ({"term": -0.2, "expiries_days": (30, 365)}, "makes the ATM total variance fall"),
    ({"atm_vol": 0.0}, "atm_vol must be a finite number > 0"),
    ({"spot": float("nan")}, "spot must be a finite number > 0"),
    ({"expiries_days": (7, 7)}, "expiries_days must be distinct whole days >= 1"),
    ({"expiries_days": (0, 30)}, "expiries_days must be distinct whole days >= 1"),
    ({"strike_step": 0.0005}, "strike_step must be a multiple of 0.001"),
    ({"strike_step": 30.0}, "fewer than 5"),
    ({"strike_width": 1.0}, "strike_width must lie in (0, 1)"),
    ({"half_spread_abs": 0.0, "half_spread_rel": 0.0}, "quotes need a spread"),
    ({"volume": -1.0}, "volume must be a finite number >= 0"),
    ({"underlying": "toolong1"}, "option root must be 1-6 upper-case characters"),
    ({"as_of": datetime(2024, 1, 2, 15)}, "as_of must be timezone-aware"),
])
def test_parameters_outside_the_documented_ranges_are_refused_with_the_reason(overrides: dict[str, object],
                                                                              message: str) -> None:
    with pytest.raises(DataError, match="synthetic chain") as raised:
        chain_for(**overrides)
    assert message in str(raised.value)
