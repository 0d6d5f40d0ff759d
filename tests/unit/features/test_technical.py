"""The technical features: TA-Lib agreement on real bars, direct formulas, edge cases, calendar."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib

from amcp.features import technical as tech
from amcp.features._indicators import lag
from amcp.features._rolling import rolling_max, rolling_min
from amcp.features.registry import REGISTRY, SeriesInputs
from amcp.features.technical import TECHNICAL_FEATURES

TALIB_SYMBOLS = ("AAPL", "JPM", "XOM")


def synthetic_bars(n: int = 400, *, seed: int = 7, sigma: float = 0.02,
                   market: bool = True) -> SeriesInputs:
    """A lognormal random walk with a consistent OHLC (``L <= O, C <= H``) and positive volume."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    open_ = np.r_[50.0, close[:-1]] * np.exp(rng.normal(0.0, sigma / 4, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, sigma / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, sigma / 2, n)))
    volume = rng.integers(1_000, 100_000, n).astype(np.float64)
    index = 100.0 * np.exp(np.cumsum(rng.normal(0.0, sigma / 2, n))) if market else None
    dates = np.datetime64("2010-01-04") + np.arange(n)
    return SeriesInputs(dates, open_, high, low, close, volume, np.full(n, np.nan), index)


def with_columns(bars: SeriesInputs, **columns: np.ndarray) -> SeriesInputs:
    fields = {name: getattr(bars, name) for name in
              ("dates", "open", "high", "low", "close", "volume", "vwap", "market")}
    fields.update(columns)
    return SeriesInputs(**fields)


def feature(name: str, bars: SeriesInputs) -> np.ndarray:
    return REGISTRY.compute(bars, [name]).values[:, 0]


# ---------------------------------------------------------------------------- registration


def test_registers_at_least_30_documented_lowercase_series_features() -> None:
    assert len(TECHNICAL_FEATURES) >= 30
    for name in TECHNICAL_FEATURES:
        spec = REGISTRY.series(name)
        assert name == name.lower(), f"{name} could clash with Qlib's upper-case Alpha158 names"
        assert len(spec.doc) > 40, f"{name} needs its formula in the docstring"


@pytest.mark.parametrize("name", TECHNICAL_FEATURES)
def test_first_value_is_at_the_declared_window(name: str) -> None:
    bars = synthetic_bars()
    values = feature(name, bars)
    finite = np.flatnonzero(np.isfinite(values))
    assert finite.size > 0
    assert finite[0] == REGISTRY.series(name).window - 1


def test_values_at_or_before_t_ignore_later_bars() -> None:
    bars = synthetic_bars(300)
    full = REGISTRY.compute(bars, TECHNICAL_FEATURES).values
    for count in (40, 97, 211):
        prefix = REGISTRY.compute(bars.head(count), TECHNICAL_FEATURES).values
        np.testing.assert_array_equal(prefix, full[:count])


@pytest.mark.parametrize("poison", [np.inf, -np.inf, -1.0, 0.0, np.nan, 1e300])
def test_poisoned_later_bars_change_nothing_before_and_give_no_inf(poison: float) -> None:
    bars = synthetic_bars(200)
    t = 120
    names = ("open", "high", "low", "close", "volume", "market")
    columns = {name: getattr(bars, name).copy() for name in names}
    for column in columns.values():
        column[t + 1:] = poison
    values = REGISTRY.compute(with_columns(bars, **columns), TECHNICAL_FEATURES).values
    clean = REGISTRY.compute(bars, TECHNICAL_FEATURES).values
    np.testing.assert_array_equal(values[:t + 1], clean[:t + 1])
    assert not np.isinf(values).any()


# ---------------------------------------------------------------------------- TA-Lib on real bars


@pytest.fixture(scope="module")
def real_bars(shared_daily) -> dict[str, SeriesInputs]:
    frame = pd.read_parquet(shared_daily, filters=[("symbol", "in", list(TALIB_SYMBOLS))])
    out = {}
    for symbol, group in frame.groupby("symbol"):
        group = group.sort_values("date")
        n = len(group)
        out[str(symbol)] = SeriesInputs(
            group["date"].to_numpy(), *(group[c].to_numpy(np.float64) for c in
                                        ("open", "high", "low", "close", "volume")), np.full(n, np.nan))
    assert set(out) == set(TALIB_SYMBOLS)
    return out


def _obv_20_reference(b: SeriesInputs) -> np.ndarray:
    obv = talib.OBV(b.close, b.volume)
    return (obv - lag(obv, 20)) / pd.Series(b.volume).rolling(20).sum().to_numpy()


def _zero_range_within(b: SeriesInputs, bars: int) -> np.ndarray:
    """Bars whose last ``bars`` fast-%K windows include one with ``HH_14 == LL_14``."""
    flat = (rolling_max(b.high, 14) == rolling_min(b.low, 14)).astype(np.float64)
    return rolling_max(flat, bars) > 0


def _talib_zero(b: SeriesInputs, reference: np.ndarray) -> np.ndarray:
    """TA-Lib writes 0 where the denominator is 0 (zero range, zero mean deviation, no money flow)."""
    return reference == 0


# name -> (TA-Lib oracle, the bars where ours is NaN by definition but TA-Lib has a value or None,
#          first bar compared: past TA-Lib's unstable period where its seeding differs from ours)
TALIB_CASES = {
    "natr_14": (lambda b: talib.NATR(b.high, b.low, b.close, 14), None, 0),
    "macd_12_26": (lambda b: talib.MACD(b.close, 12, 26, 9)[0] / b.close, None, 200),
    "macd_signal_12_26_9": (lambda b: talib.MACD(b.close, 12, 26, 9)[1] / b.close, None, 200),
    "macd_hist_12_26_9": (lambda b: talib.MACD(b.close, 12, 26, 9)[2] / b.close, None, 200),
    "plus_di_14": (lambda b: talib.PLUS_DI(b.high, b.low, b.close, 14), None, 0),
    "minus_di_14": (lambda b: talib.MINUS_DI(b.high, b.low, b.close, 14), None, 0),
    "adx_14": (lambda b: talib.ADX(b.high, b.low, b.close, 14), None, 0),
    "aroon_osc_14": (lambda b: talib.AROONOSC(b.high, b.low, 14), None, 0),
    "trix_15": (lambda b: talib.TRIX(b.close, 15), None, 0),
    "rsi_14": (lambda b: talib.RSI(b.close, 14), None, 0),
    "stoch_fastk_14": (lambda b: talib.STOCHF(b.high, b.low, b.close, 14, 1, 0)[0], _talib_zero, 0),
    "stoch_k_14_3": (lambda b: talib.STOCH(b.high, b.low, b.close, 14, 3, 0, 3, 0)[0],
                     lambda b, _: _zero_range_within(b, 3), 0),
    "stoch_d_14_3_3": (lambda b: talib.STOCH(b.high, b.low, b.close, 14, 3, 0, 3, 0)[1],
                       lambda b, _: _zero_range_within(b, 5), 0),
    "willr_14": (lambda b: talib.WILLR(b.high, b.low, b.close, 14), _talib_zero, 0),
    "cci_20": (lambda b: talib.CCI(b.high, b.low, b.close, 20), _talib_zero, 0),
    "mfi_14": (lambda b: talib.MFI(b.high, b.low, b.close, b.volume, 14), _talib_zero, 0),
    "ultosc_7_14_28": (lambda b: talib.ULTOSC(b.high, b.low, b.close, 7, 14, 28), None, 0),
    "obv_20": (_obv_20_reference, None, 0),
}


@pytest.mark.parametrize("name", sorted(TALIB_CASES))
def test_feature_matches_talib_on_real_bars(name: str, real_bars: dict[str, SeriesInputs]) -> None:
    """Agreement to 1e-9 relative (1e-9 absolute near 0), past TA-Lib's unstable period."""
    oracle, nan_by_definition, start = TALIB_CASES[name]
    for symbol, bars in real_bars.items():
        ours = feature(name, bars)
        reference = np.asarray(oracle(bars), dtype=np.float64)
        both = np.isfinite(ours) & np.isfinite(reference)
        both[:start] = False
        assert both.sum() > 0.95 * (len(bars) - max(start, 100)), (symbol, both.sum())
        np.testing.assert_allclose(ours[both], reference[both], rtol=1e-9, atol=1e-9,
                                   err_msg=f"{name} on {symbol}")
        only_reference = np.isfinite(reference) & ~np.isfinite(ours)
        allowed = (np.zeros(len(bars), bool) if nan_by_definition is None
                   else nan_by_definition(bars, reference))
        assert not (only_reference & ~allowed).any(), (symbol, np.flatnonzero(only_reference & ~allowed)[:5])
        only_ours = np.isfinite(ours) & ~np.isfinite(reference)
        assert (np.flatnonzero(only_ours) < 40).all(), f"{name} on {symbol}: values TA-Lib lacks after bar 40"


def test_atr_kernel_matches_talib_atr_from_its_first_value(real_bars: dict[str, SeriesInputs]) -> None:
    for bars in real_bars.values():
        ours = tech.atr(bars.high, bars.low, bars.close, 14)
        reference = talib.ATR(bars.high, bars.low, bars.close, 14)
        np.testing.assert_array_equal(np.isfinite(ours), np.isfinite(reference))
        np.testing.assert_allclose(ours[14:], reference[14:], rtol=1e-12)


def test_range_volatilities_are_non_negative_on_real_bars(real_bars: dict[str, SeriesInputs]) -> None:
    for bars in real_bars.values():
        for name in ("parkinson_vol_20", "garman_klass_vol_20", "rogers_satchell_vol_20",
                     "yang_zhang_vol_20"):
            values = feature(name, bars)
            finite = values[np.isfinite(values)]
            assert finite.size > 0.9 * len(bars)
            assert (finite >= 0).all()


# ---------------------------------------------------------------------------- volatility estimators


def _direct_estimators(o: list[float], h: list[float], lo: list[float], c: list[float],
                       prev_close: float, n: int) -> dict[str, float]:
    """The four estimators over the last n bars, written out term by term from the papers."""
    bars = list(zip(o[-n:], h[-n:], lo[-n:], c[-n:]))
    park = sum(math.log(hi / low) ** 2 for _, hi, low, _ in bars) / (4 * math.log(2) * n)
    gk = sum(0.5 * math.log(hi / low) ** 2 - (2 * math.log(2) - 1) * math.log(cl / op) ** 2
             for op, hi, low, cl in bars) / n
    rs = sum(math.log(hi / cl) * math.log(hi / op) + math.log(low / cl) * math.log(low / op)
             for op, hi, low, cl in bars) / n
    closes = [prev_close, *c[-n:]]
    overnight = [math.log(op / closes[i]) for i, (op, _, _, _) in enumerate(bars)]
    intraday = [math.log(cl / op) for op, _, _, cl in bars]

    def sample_var(xs: list[float]) -> float:
        mean = sum(xs) / len(xs)
        return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)

    k = 0.34 / (1.34 + (n + 1) / (n - 1))
    yz = sample_var(overnight) + k * sample_var(intraday) + (1 - k) * rs
    return {"parkinson": math.sqrt(park), "garman_klass": math.sqrt(gk),
            "rogers_satchell": math.sqrt(rs), "yang_zhang": math.sqrt(yz)}


def test_range_volatilities_equal_their_direct_formulas() -> None:
    bars = synthetic_bars(70, seed=3)
    o, h, lo, c = (list(map(float, x)) for x in (bars.open, bars.high, bars.low, bars.close))
    for n in (20, 60):
        expected = _direct_estimators(o, h, lo, c, c[-n - 1], n)
        for estimator, value in expected.items():
            ours = feature(f"{estimator}_vol_{n}", bars)[-1]
            assert ours == pytest.approx(value, rel=1e-12), (estimator, n)


def test_parkinson_of_a_repeated_bar_is_the_log_range_over_sqrt_4ln2() -> None:
    n = 25
    bars = SeriesInputs(np.datetime64("2020-01-01") + np.arange(n), np.full(n, 100.0), np.full(n, 110.0),
                        np.full(n, 90.0), np.full(n, 105.0), np.full(n, 1e4), np.full(n, np.nan))
    expected = math.log(110 / 90) / math.sqrt(4 * math.log(2))
    np.testing.assert_allclose(feature("parkinson_vol_20", bars)[19:], expected, rtol=1e-14)


def test_yang_zhang_recovers_the_sigma_of_simulated_brownian_bars() -> None:
    """GBM with a known daily sigma, 20% of the variance overnight, 1560 intraday steps per bar."""
    rng = np.random.default_rng(11)
    days, steps, sigma, overnight_share = 4000, 1560, 0.015, 0.2
    overnight = rng.normal(0.0, sigma * math.sqrt(overnight_share), days)
    step_sigma = sigma * math.sqrt((1 - overnight_share) / steps)
    paths = np.cumsum(rng.normal(0.0, step_sigma, (days, steps)), axis=1)
    log_open = np.cumsum(overnight + np.r_[0.0, paths[:-1, -1]])
    log_path = log_open[:, None] + np.c_[np.zeros(days), paths]
    bars = SeriesInputs(np.datetime64("2000-01-03") + np.arange(days), np.exp(log_open),
                        np.exp(log_path.max(axis=1)), np.exp(log_path.min(axis=1)), np.exp(log_path[:, -1]),
                        np.full(days, 1e6), np.full(days, np.nan))
    close_to_close = np.diff(np.log(bars.close)).std()
    yz_var = np.nanmean(feature("yang_zhang_vol_20", bars) ** 2)
    # sampling error of the mean variance over 4000 days is ~1.1% of sigma; a range sampled at
    # 1560 points understates the continuous one by ~1%: 4% is about 2 of each
    assert math.sqrt(yz_var) == pytest.approx(sigma, rel=0.04)
    assert math.sqrt(yz_var) == pytest.approx(close_to_close, rel=0.04)
    # Parkinson sees only the intraday share (and a discretely sampled range): clearly below sigma
    assert np.nanmean(feature("parkinson_vol_20", bars) ** 2) < 0.85 * sigma**2


def test_bar_with_high_below_low_blanks_range_volatility_windows_only() -> None:
    bars = synthetic_bars(80)
    high = bars.high.copy()
    high[50] = bars.low[50] * 0.99
    broken = with_columns(bars, high=high)
    values = feature("parkinson_vol_20", broken)
    assert np.isnan(values[50:70]).all()
    assert np.isfinite(values[np.r_[19:50, 70:80]]).all()


# ---------------------------------------------------------------------------- edge cases


def test_constant_prices_give_nan_not_inf_for_range_denominated_features() -> None:
    n = 120
    flat = SeriesInputs(np.datetime64("2021-01-04") + np.arange(n), *(np.full(n, 20.0) for _ in range(4)),
                        np.full(n, 1e5), np.full(n, np.nan), np.full(n, 100.0))
    values = REGISTRY.compute(flat, TECHNICAL_FEATURES).values
    assert not np.isinf(values).any()
    for name in ("willr_14", "stoch_fastk_14", "stoch_k_14_3", "donchian_pos_20", "cci_20", "rsi_14",
                 "keltner_pos_20", "ret_skew_20", "ret_kurt_20", "beta_60", "corr_60", "mfi_14"):
        assert np.isnan(feature(name, flat)).all(), name
    for name in ("parkinson_vol_20", "natr_14", "donchian_width_20", "amihud_20"):
        finite = feature(name, flat)[REGISTRY.series(name).window - 1:]
        np.testing.assert_array_equal(finite, 0.0)


def test_constant_growth_has_undefined_return_skew_and_kurtosis() -> None:
    n = 80
    close = 10.0 * 1.001 ** np.arange(n)
    bars = SeriesInputs(np.datetime64("2021-01-04") + np.arange(n), close, close, close, close,
                        np.full(n, 1e5), np.full(n, np.nan))
    for name in ("ret_skew_20", "ret_kurt_20", "ret_skew_60", "ret_kurt_60"):
        assert np.isnan(feature(name, bars)).all(), name


def test_zero_volume_gives_nan_volume_features_and_no_inf() -> None:
    bars = with_columns(synthetic_bars(100), volume=np.zeros(100))
    values = REGISTRY.compute(bars, TECHNICAL_FEATURES).values
    assert not np.isinf(values).any()
    for name in ("obv_20", "mfi_14", "amihud_20", "volume_zscore_20"):
        assert np.isnan(feature(name, bars)).all(), name
    assert np.isfinite(feature("natr_14", bars)[14:]).all()


def test_a_missing_bar_blanks_rolling_windows_and_recursive_features_resume() -> None:
    bars = synthetic_bars(200)
    gap = 120
    columns = {name: getattr(bars, name).copy() for name in ("open", "high", "low", "close", "volume")}
    for column in columns.values():
        column[gap] = np.nan
    gapped = with_columns(bars, **columns)
    values = REGISTRY.compute(gapped, TECHNICAL_FEATURES).values
    assert not np.isinf(values).any()
    clean = REGISTRY.compute(bars, TECHNICAL_FEATURES).values
    np.testing.assert_array_equal(values[:gap], clean[:gap])  # nothing before the gap moves
    willr = feature("willr_14", gapped)
    assert np.isnan(willr[gap:gap + 14]).all() and np.isfinite(willr[gap + 14])
    rsi = feature("rsi_14", gapped)
    assert np.isnan(rsi[gap:gap + 2]).all() and np.isfinite(rsi[gap + 2:]).all()


def test_wilder_and_ema_skip_missing_values_and_keep_their_state() -> None:
    x = np.array([1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    smoothed = tech.ema(x, 3)
    assert np.isnan(smoothed[:3]).all()
    assert smoothed[3] == pytest.approx(2.0)  # mean of 1, 2, 3
    assert smoothed[4] == pytest.approx(2.0 + 0.5 * (4.0 - 2.0))
    assert tech.wilder(x, 2)[1] == pytest.approx(1.5)
    assert tech.wilder(x, 2)[3] == pytest.approx(1.5 + (3.0 - 1.5) / 2)


# ---------------------------------------------------------------------------- distribution, market, liquidity


def test_return_skew_and_kurtosis_equal_pandas_rolling() -> None:
    bars = synthetic_bars(300)
    returns = pd.Series(np.log(bars.close)).diff()
    for n in (20, 60):
        np.testing.assert_allclose(feature(f"ret_skew_{n}", bars)[n + 1:],
                                   returns.rolling(n).skew().to_numpy()[n + 1:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(feature(f"ret_kurt_{n}", bars)[n + 1:],
                                   returns.rolling(n).kurt().to_numpy()[n + 1:], rtol=1e-9, atol=1e-12)


def test_beta_and_correlation_equal_least_squares_on_the_window() -> None:
    bars = synthetic_bars(150)
    stock = bars.close[1:] / bars.close[:-1] - 1
    market = bars.market[1:] / bars.market[:-1] - 1
    window_stock, window_market = stock[-60:], market[-60:]
    slope = np.polyfit(window_market, window_stock, 1)[0]
    assert feature("beta_60", bars)[-1] == pytest.approx(slope, rel=1e-10)
    correlation = np.corrcoef(window_stock, window_market)[0, 1]
    assert feature("corr_60", bars)[-1] == pytest.approx(correlation, rel=1e-10)


def test_twice_the_market_return_has_beta_two_and_correlation_one() -> None:
    bars = synthetic_bars(100)
    market_returns = bars.market[1:] / bars.market[:-1] - 1
    close = 30.0 * np.r_[1.0, np.cumprod(1 + 2 * market_returns)]
    levered = with_columns(bars, close=close, high=np.maximum(bars.high, close),
                           low=np.minimum(bars.low, close))
    np.testing.assert_allclose(feature("beta_20", levered)[20:], 2.0, rtol=1e-9)
    np.testing.assert_allclose(feature("corr_20", levered)[20:], 1.0, rtol=1e-9)


def test_market_features_are_all_nan_without_a_market_proxy() -> None:
    bars = synthetic_bars(100, market=False)
    for name in ("beta_20", "beta_60", "corr_20", "corr_60"):
        assert np.isnan(feature(name, bars)).all()


def test_amihud_averages_impact_over_traded_bars_only() -> None:
    bars = synthetic_bars(60)
    volume = bars.volume.copy()
    volume[45:50] = 0.0
    thin = with_columns(bars, volume=volume)
    returns = np.abs(bars.close[1:] / bars.close[:-1] - 1)
    dollar_volume = bars.close[1:] * volume[1:]
    traded = dollar_volume[-20:] > 0  # bars 40..59, five without trades
    expected = 1e6 * (returns[-20:][traded] / dollar_volume[-20:][traded]).mean()
    assert feature("amihud_20", thin)[-1] == pytest.approx(expected, rel=1e-12)


def test_volume_zscore_is_the_sample_zscore_of_the_window() -> None:
    bars = synthetic_bars(50)
    window = bars.volume[-20:]
    expected = (window[-1] - window.mean()) / window.std(ddof=1)
    assert feature("volume_zscore_20", bars)[-1] == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------- channels


def test_channels_place_the_close_as_their_formulas_say() -> None:
    bars = synthetic_bars(120)
    t = 100
    highest, lowest = bars.high[t - 19:t + 1].max(), bars.low[t - 19:t + 1].min()
    assert feature("donchian_pos_20", bars)[t] == pytest.approx((bars.close[t] - lowest) / (highest - lowest))
    assert feature("donchian_width_20", bars)[t] == pytest.approx((highest - lowest) / bars.close[t])
    middle = talib.EMA(bars.close, 20)[t]
    band = 2 * talib.ATR(bars.high, bars.low, bars.close, 10)[t]
    assert feature("keltner_pos_20", bars)[t] == pytest.approx((bars.close[t] - middle) / band, rel=1e-10)
    assert feature("keltner_width_20", bars)[t] == pytest.approx(2 * band / middle, rel=1e-10)
    position = feature("donchian_pos_55", bars)
    assert ((position[54:] >= 0) & (position[54:] <= 1)).all()


# ---------------------------------------------------------------------------- calendar


def test_calendar_features_on_known_dates() -> None:
    dates = np.array(["2000-02-28", "2023-12-29", "2023-12-31", "2024-01-01", "2024-02-29", "2024-07-15"],
                     dtype="datetime64[D]")
    n = len(dates)
    bars = SeriesInputs(dates, *(np.full(n, 10.0) for _ in range(5)), np.full(n, np.nan))
    np.testing.assert_array_equal(feature("day_of_week", bars), [0, 4, 6, 0, 3, 0])
    np.testing.assert_array_equal(feature("month_of_year", bars), [2, 12, 12, 1, 2, 7])
    np.testing.assert_array_equal(feature("day_of_month", bars), [28, 29, 31, 1, 29, 15])
    np.testing.assert_array_equal(feature("days_to_month_end", bars), [1, 2, 0, 30, 0, 16])
