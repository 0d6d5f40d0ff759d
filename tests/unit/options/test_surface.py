"""SVI smiles, the SVI surface, arbitrage flags, and fitting surfaces to chains (synthetic and VXX)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from amcp.errors import DataError
from amcp.options.black_scholes import bsm_price, norm_cdf
from amcp.options.chain import OptionChain, years_to_expiry
from amcp.options.surface import (
    SVIParams,
    SVISurface,
    VolSurface,
    fit_surface,
    fit_svi,
    svi_density,
    svi_total_variance,
)
from tests.conftest import SHARED_DATA, require

NEW_YORK = ZoneInfo("America/New_York")
KNOWN = [
    SVIParams(0.04, 0.4, -0.4, 0.1, 0.2),
    SVIParams(0.01, 0.1, 0.7, -0.05, 0.05),
    SVIParams(0.2, 1.2, 0.3, 0.0, 0.5),
    SVIParams(-0.01, 0.3, -0.9, 0.2, 0.3),
]
# Axel Vogt's parameters (Gatheral & Jacquier 2014, "Arbitrage-free SVI volatility surfaces", §2.2):
# they meet SVI's constraints, yet the density is negative around k = 0.9 (butterfly arbitrage).
VOGT = SVIParams(-0.0410, 0.1331, 0.3060, 0.3586, 0.4153)
NEAR = SVIParams(0.02, 0.2, -0.4, 0.1, 0.2)
FAR = SVIParams(0.05, 0.2, -0.4, 0.1, 0.2)


def test_svi_params_validate_rejects_each_broken_constraint() -> None:
    for bad, needle in [
        (SVIParams(0.04, -0.1, 0.0, 0.0, 0.2), "b >= 0"),
        (SVIParams(0.04, 0.1, 1.0, 0.0, 0.2), "|rho| < 1"),
        (SVIParams(0.04, 0.1, 0.0, 0.0, 0.0), "sigma > 0"),
        (SVIParams(-0.1, 0.1, 0.0, 0.0, 0.2), "w >= 0"),
        (SVIParams(np.nan, 0.1, 0.0, 0.0, 0.2), "finite"),
    ]:
        with pytest.raises(DataError, match=needle.replace("|", r"\|")):
            bad.validate()


@pytest.mark.parametrize("true", KNOWN, ids=[f"params{i}" for i in range(len(KNOWN))])
def test_fit_svi_recovers_known_parameters_from_noiseless_variances(true: SVIParams) -> None:
    t_years = 0.75
    k = np.linspace(-1.0, 1.0, 41)
    market_iv = np.sqrt(svi_total_variance(k, true) / t_years)

    fit = fit_svi(k, market_iv**2 * t_years)

    np.testing.assert_allclose(fit.params, true, rtol=0, atol=1e-6)
    fitted_iv = np.sqrt(svi_total_variance(k, fit.params) / t_years)
    assert np.abs(fitted_iv - market_iv).max() < 1e-8
    assert fit.rmse < 1e-10 and fit.n_points == 41


def test_fit_svi_ignores_zero_weight_points_and_recovers_with_uneven_weights() -> None:
    true = KNOWN[0]
    k = np.linspace(-0.8, 0.8, 33)
    w = svi_total_variance(k, true)
    w[5] += 0.5  # an outlier that carries no weight
    weights = np.random.default_rng(7).uniform(0.1, 10.0, k.size)
    weights[5] = 0.0

    fit = fit_svi(k, w, weights)

    np.testing.assert_allclose(fit.params, true, rtol=0, atol=1e-6)
    assert fit.n_points == 32


def test_fit_svi_on_noisy_data_keeps_the_constraints_and_reports_its_error() -> None:
    rng = np.random.default_rng(3)
    k = np.linspace(-0.6, 0.6, 25)
    w = svi_total_variance(k, KNOWN[0]) * (1.0 + rng.normal(0.0, 0.02, k.size))

    fit = fit_svi(k, w)

    fit.params.validate()
    residual = svi_total_variance(k, fit.params) - w
    assert fit.rmse == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-12)
    assert fit.max_error == pytest.approx(np.abs(residual).max(), rel=1e-12)
    truth_error = svi_total_variance(k, KNOWN[0]) - w
    assert 0 < fit.rmse <= np.sqrt(np.mean(truth_error**2))  # no worse than the true parameters
    np.testing.assert_allclose(fit.params, KNOWN[0], atol=0.02)


def test_fit_svi_rejects_bad_inputs_with_the_reason() -> None:
    k = np.linspace(-0.5, 0.5, 9)
    w = svi_total_variance(k, KNOWN[0])
    with pytest.raises(DataError, match="at least 5 points"):
        fit_svi(k[:4], w[:4])
    with pytest.raises(DataError, match="total_variance must be >= 0"):
        fit_svi(k, np.where(k > 0.3, -0.01, w))
    with pytest.raises(DataError, match="non-finite value at index 2"):
        fit_svi(np.where(np.arange(9) == 2, np.nan, k), w)
    with pytest.raises(DataError, match="one shape"):
        fit_svi(k, w[:-1])


def test_svi_density_equals_the_strike_convexity_of_black_prices() -> None:
    # With F = 1 and no discounting, ∂²C/∂K² = g(k)·n(d₂(k))/(K·√w(k)) (Gatheral & Jacquier, §2.1).
    params = KNOWN[0]
    k = np.linspace(-0.7, 0.7, 29)
    strike, h = np.exp(k), 1e-4

    def call(strikes: np.ndarray) -> np.ndarray:
        w = svi_total_variance(np.log(strikes), params)
        d1 = -np.log(strikes) / np.sqrt(w) + np.sqrt(w) / 2.0
        return norm_cdf(d1) - strikes * norm_cdf(d1 - np.sqrt(w))

    convexity = (call(strike + h) - 2.0 * call(strike) + call(strike - h)) / h**2
    w = svi_total_variance(k, params)
    d2 = -k / np.sqrt(w) - np.sqrt(w) / 2.0
    expected = svi_density(k, params) * np.exp(-0.5 * d2**2) / np.sqrt(2.0 * np.pi * w) / strike

    np.testing.assert_allclose(convexity, expected, rtol=1e-5, atol=1e-7)


def test_arbitrage_free_svi_surface_raises_no_flag() -> None:
    surface = SVISurface(100.0, [0.5, 1.0], [100.5, 101.0], [NEAR, FAR])

    report = surface.arbitrage()

    assert report.free
    assert all(check.min_density > 0 for check in report.butterfly)
    assert report.calendar[0].min_gap == pytest.approx(FAR.a - NEAR.a, abs=1e-12)


def test_vogt_parameters_are_flagged_for_butterfly_arbitrage() -> None:
    VOGT.validate()  # a legal SVI parameter set...
    surface = SVISurface(100.0, [1.0], [100.0], [VOGT])

    (check,) = surface.arbitrage().butterfly

    assert check.arbitrage and check.min_density < -0.01  # ...with a negative density
    assert 0.5 < check.worst_k < 1.3
    assert not surface.arbitrage().free


def test_crossing_smiles_are_flagged_for_calendar_arbitrage() -> None:
    # the later expiry's total variance lies below the earlier one's for k > 0
    later = SVIParams(0.03, 0.2, -0.8, 0.1, 0.2)
    surface = SVISurface(100.0, [0.5, 1.0], [100.0, 100.0], [NEAR, later])

    report = surface.arbitrage()

    (check,) = report.calendar
    assert check.arbitrage and check.min_gap < 0 and check.worst_k > 0
    grid_gap = svi_total_variance(report.k_grid, later) - svi_total_variance(report.k_grid, NEAR)
    assert check.min_gap == pytest.approx(grid_gap.min())
    assert not any(b.arbitrage for b in report.butterfly)


def _three_expiry_surface() -> SVISurface:
    params = [SVIParams(0.01, 0.1, -0.5, 0.05, 0.15), SVIParams(0.02, 0.15, -0.45, 0.05, 0.2),
              SVIParams(0.05, 0.2, -0.4, 0.05, 0.3)]
    return SVISurface(100.0, [0.1, 0.5, 1.5], [100.2, 101.0, 102.5], params)


def test_interpolation_passes_through_the_fitted_expiries() -> None:
    surface = _three_expiry_surface()
    k = np.linspace(-0.5, 0.5, 11)
    for t, forward, params in zip(surface.t_years, surface.forwards, surface.params, strict=True):
        np.testing.assert_allclose(surface.total_variance(k, t), svi_total_variance(k, params), rtol=1e-14)
        np.testing.assert_allclose(surface.forward(t), forward, rtol=1e-14)
        vols = surface.implied_vol(forward * np.exp(k), t)
        np.testing.assert_allclose(vols, np.sqrt(svi_total_variance(k, params) / t), rtol=1e-12)


def test_total_variance_is_linear_between_expiries_and_monotone_in_time() -> None:
    surface = _three_expiry_surface()
    assert surface.arbitrage().free
    k = np.linspace(-0.6, 0.6, 25)[:, None]
    t = np.linspace(0.01, 3.0, 300)[None, :]

    w = surface.total_variance(k, t)

    assert w.shape == (25, 300)
    assert (np.diff(w, axis=1) >= 0).all()
    middle = surface.total_variance(k, 0.3)[:, 0]
    first, second = (svi_total_variance(k[:, 0], params) for params in surface.params[:2])
    ends = (first + second) / 2
    np.testing.assert_allclose(middle, ends, rtol=1e-13)


def test_extrapolation_keeps_implied_vol_flat_at_fixed_log_moneyness() -> None:
    surface = _three_expiry_surface()
    k = np.array([-0.3, 0.0, 0.3])
    first_vol = np.sqrt(surface.total_variance(k, 0.1) / 0.1)
    last_vol = np.sqrt(surface.total_variance(k, 1.5) / 1.5)

    np.testing.assert_allclose(np.sqrt(surface.total_variance(k, 0.02) / 0.02), first_vol, rtol=1e-13)
    np.testing.assert_allclose(np.sqrt(surface.total_variance(k, 4.0) / 4.0), last_vol, rtol=1e-13)


def test_forward_is_log_linear_in_time_and_continues_the_last_forward_rate() -> None:
    surface = _three_expiry_surface()
    assert surface.forward(0.05) == pytest.approx(100.0 * (100.2 / 100.0) ** 0.5, rel=1e-13)
    assert surface.forward(1.0) == pytest.approx(np.sqrt(101.0 * 102.5), rel=1e-13)
    rate = np.log(102.5 / 101.0) / 1.0
    assert surface.forward(2.5) == pytest.approx(102.5 * np.exp(rate * 1.0), rel=1e-13)


def test_svi_surface_is_a_vol_surface_and_rejects_bad_arguments() -> None:
    surface = _three_expiry_surface()
    assert isinstance(surface, VolSurface)
    with pytest.raises(DataError, match="t_years must be finite and > 0"):
        surface.implied_vol(100.0, 0.0)
    with pytest.raises(DataError, match="strikes must be finite and > 0"):
        surface.implied_vol(-1.0, 0.5)
    with pytest.raises(DataError, match="strictly increasing"):
        SVISurface(100.0, [1.0, 0.5], [100.0, 100.0], [NEAR, FAR])
    with pytest.raises(DataError, match="w >= 0"):
        SVISurface(100.0, [1.0], [100.0], [SVIParams(-0.1, 0.1, 0.0, 0.0, 0.2)])


# ------------------------------------------------------------------------------------ chains

AS_OF = datetime(2024, 3, 1, 16, 0, tzinfo=NEW_YORK)
SMILES = {date(2024, 3, 28): SVIParams(0.004, 0.04, -0.5, 0.02, 0.1),
          date(2024, 6, 20): SVIParams(0.012, 0.08, -0.45, 0.03, 0.15),
          date(2024, 12, 19): SVIParams(0.03, 0.12, -0.4, 0.04, 0.2)}


def _synthetic_chain(spot: float, rate: float, true_div_yield: float, stated_div_yield: float,
                     quoted: bool) -> tuple[OptionChain, np.ndarray]:
    """Calls and puts at 41 strikes per expiry priced at SVI vols with ``true_div_yield``; the
    chain states ``stated_div_yield``. Returns the chain and its true vols per row."""
    expiry, strike, is_call, vols, t_all = [], [], [], [], []
    for day, params in SMILES.items():
        t = years_to_expiry(AS_OF, day)
        forward = spot * np.exp((rate - true_div_yield) * t)
        strikes = np.round(forward * np.exp(np.linspace(-0.5, 0.5, 41)), 2)
        vol = np.sqrt(svi_total_variance(np.log(strikes / forward), params) / t)
        for call in (False, True):
            expiry += [np.datetime64(day, "D")] * strikes.size
            strike += strikes.tolist()
            is_call += [call] * strikes.size
            vols += vol.tolist()
            t_all += [t] * strikes.size
    strike_a, call_a, vol_a, t_a = map(np.array, (strike, is_call, vols, t_all))
    price = bsm_price(spot, strike_a, t_a, rate, true_div_yield, vol_a, call_a)
    bid = price - 0.005 if quoted else np.full(price.size, np.nan)
    ask = price + 0.005 if quoted else np.full(price.size, np.nan)
    keep = bid > 0 if quoted else np.ones(price.size, dtype=bool)  # a quoted chain lists no zero bids
    symbol = np.array([f"XYZ{e.astype(date):%y%m%d}{'C' if c else 'P'}{round(k * 1000):08d}"
                       for e, c, k in zip(expiry, is_call, strike, strict=True)])
    nan = np.full(int(keep.sum()), np.nan)
    chain = OptionChain("XYZ", AS_OF, spot, rate, stated_div_yield, np.array(expiry)[keep], t_a[keep],
                        strike_a[keep], call_a[keep], bid[keep], ask[keep], nan, nan, nan, symbol[keep], nan)
    return chain, vol_a[keep]


def test_fit_surface_with_given_vols_recovers_every_smile() -> None:
    chain, vols = _synthetic_chain(100.0, 0.04, 0.01, 0.01, quoted=False)

    result = fit_surface(chain, vols, forward_method="carry")

    diagnostics = result.diagnostics
    assert [fit.expiry for fit in diagnostics.fits] == list(SMILES)
    for fit in diagnostics.fits:
        np.testing.assert_allclose(fit.params, SMILES[fit.expiry], rtol=0, atol=1e-6)
        assert fit.forward_source == "carry" and fit.rmse_iv < 1e-8
        assert fit.n_quotes == 41  # out-of-the-money only: 20 puts below F, 21 calls at or above
    assert diagnostics.arbitrage_free and diagnostics.skipped == ()
    np.testing.assert_allclose(result.surface.implied_vol(chain.strike, chain.t_years), vols, rtol=1e-7)


def test_fit_surface_skips_expiries_too_close_or_too_thin_and_says_why() -> None:
    chain, vols = _synthetic_chain(100.0, 0.04, 0.01, 0.01, quoted=False)
    thin = (chain.expiry == np.datetime64("2024-06-20")) & (np.abs(np.log(chain.strike / 100.0)) > 0.05)
    vols = np.where(thin, np.nan, vols)

    result = fit_surface(chain, vols, forward_method="carry", min_t_years=0.1)

    skipped = dict(result.diagnostics.skipped)
    assert "min_t_years" in skipped[date(2024, 3, 28)]
    assert "usable out-of-the-money quotes < min_quotes 6" in skipped[date(2024, 6, 20)]
    assert [fit.expiry for fit in result.diagnostics.fits] == [date(2024, 12, 19)]
    with pytest.raises(DataError, match="no expiry of XYZ"):
        fit_surface(chain, np.full(len(chain), np.nan), forward_method="carry")
    with pytest.raises(DataError, match="ivs has shape"):
        fit_surface(chain, vols[:-1])


# The tests below solve implied vols with amcp.options.implied_vol (written alongside this module).


def test_fit_surface_from_quotes_implies_the_forward_by_parity_and_recovers_the_smiles() -> None:
    # priced with a 3 % dividend yield that the chain does not state: the parity forward finds it
    chain, _ = _synthetic_chain(100.0, 0.04, 0.03, 0.0, quoted=True)

    result = fit_surface(chain)

    for fit in result.diagnostics.fits:
        true_forward = 100.0 * np.exp((0.04 - 0.03) * fit.t_years)
        assert fit.forward_source == "parity"
        assert fit.forward == pytest.approx(true_forward, rel=1e-9)
        np.testing.assert_allclose(fit.params, SMILES[fit.expiry], rtol=0, atol=1e-6)
        assert fit.rmse_iv < 1e-8
    carry = fit_surface(chain, forward_method="carry")
    assert all(f.forward == pytest.approx(100.0 * np.exp(0.04 * f.t_years)) for f in carry.diagnostics.fits)
    assert max(f.rmse_iv for f in carry.diagnostics.fits) > 1e-4  # the wrong forward shows in the fit


VXX_RMSE_BOUND = 0.05
"""Every fitted VXX expiry's implied-vol RMSE stays below 5 vol points (VXX vols are 50-150 %);
measured over all 20 quote dates of December 2016: median 0.9, 90th percentile 2.0, worst 4.9
vol points (the short weeklies and the January 2017 monthly are the roughest)."""


@pytest.mark.parametrize("quote_day", [date(2016, 12, 1), date(2016, 12, 15), date(2016, 12, 30)])
def test_real_vxx_chains_fit_within_the_stated_error_with_upward_skew(quote_day: date) -> None:
    from amcp.options.chain_io import chains_from_vendor_frame

    path = SHARED_DATA / "options" / "vxx_chains_2016-12.parquet"
    require(path.is_file(), f"the shared real data file {path} is not present")
    import pandas as pd

    chain = chains_from_vendor_frame(pd.read_parquet(path)).chains[("VXX", quote_day)]

    result = fit_surface(chain)

    fits = result.diagnostics.fits
    assert len(fits) >= 8
    for fit in fits:
        assert fit.forward_source == "parity" and fit.n_quotes >= 6
        assert fit.rmse_iv < VXX_RMSE_BOUND, fit
        if fit.t_years >= 0.03:  # VXX calls are bid over puts: implied vol rises with strike
            low, high = result.surface.implied_vol([0.85 * fit.forward, 1.15 * fit.forward], fit.t_years)
            assert high > low, fit
    assert np.median([fit.rmse_iv for fit in fits]) < 0.015
    assert all(d < quote_day + timedelta(days=3) for d, _ in result.diagnostics.skipped)
