"""The signal service's model inputs: computed per panel of one calendar, equal to each symbol's own features."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from amcp.features import default_registry
from amcp.features.registry import FeatureRegistry, SeriesInputs
from amcp.models.wire import encode_request
from serve.signals import FeaturePlan, RequestError, ScoreRequest, parse_arrow_request, parse_request

LIMITS = {"max_symbols": 20, "max_bars": 400}
SYMBOLS = ("AAA", "BBB", "CCC", "DDD", "EEE")
BARS = 150


def synthetic(seed: int = 5) -> dict[str, Any]:
    """Bars of five symbols on one calendar as the JSON columns of a request, plus a market proxy."""
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(np.datetime64("2021-03-01"), np.arange(BARS), roll="forward")
    bars = {}
    for k, symbol in enumerate(SYMBOLS):
        close = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, BARS)))
        if k == 2:
            close[60:80] = close[59]  # a flat stretch
        open_ = close * np.exp(rng.normal(0, 0.004, BARS))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, BARS))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, BARS))
        volume = rng.integers(0, 50_000, BARS).astype(float)
        volume[90:95] = 0.0  # a halt-like run of zero volume
        bars[symbol] = {"t": [str(d) for d in dates], "o": open_.tolist(), "h": high.tolist(),
                        "l": low.tolist(), "c": close.tolist(), "v": volume.tolist()}
    market = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, BARS)))
    return {"as_of": str(dates[-1]), "bars": bars, "market": {"t": [str(d) for d in dates], "c": market.tolist()}}


def plan_for(registry: FeatureRegistry, lookback: int = 1) -> FeaturePlan:
    names = (*registry.series_names, *registry.cross_sectional_names)
    return FeaturePlan(registry, names, lookback)


def per_symbol(plan: FeaturePlan, request: ScoreRequest) -> np.ndarray:
    """The model input built the slow way: every symbol's features on its own, then the cross sections."""
    registry, L = plan.registry, plan.lookback
    base = np.stack([registry.compute(x, plan.series_names).values[-L:] for x in request.series()])  # n × L × S
    X = np.empty((len(request.symbols), L, len(plan.names)))
    cross = set(registry.cross_sectional_names)
    for j, name in enumerate(plan.names):
        if name in cross:
            column = plan.series_names.index(registry.cross_sectional(name).base)
            X[:, :, j] = registry.compute_cross_sectional(name, base[:, :, column].T).T
        else:
            X[:, :, j] = base[:, :, plan.series_names.index(name)]
    return X[:, -1, :] if L == 1 else X


@pytest.fixture(scope="module")
def registry() -> FeatureRegistry:
    return default_registry()


@pytest.mark.parametrize("lookback", [1, 3])
def test_an_arrow_body_of_one_calendar_is_one_panel_and_scores_as_each_symbol_alone(
        registry: FeatureRegistry, lookback: int) -> None:
    body = synthetic()
    plan = plan_for(registry, lookback)

    from_arrow = parse_arrow_request(encode_request(body), **LIMITS)
    from_json = parse_request(body, **LIMITS)

    assert from_arrow.panel is not None and from_arrow.panel.width == len(SYMBOLS) and not from_arrow.inputs
    assert from_json.panel is None and len(from_json.inputs) == len(SYMBOLS)
    expected = per_symbol(plan, from_json)
    assert np.isfinite(expected).mean() > 0.9  # most features are defined after 150 bars
    np.testing.assert_allclose(plan.matrix(from_arrow), expected, rtol=1e-12, atol=0, equal_nan=True)
    np.testing.assert_allclose(plan.matrix(from_json), expected, rtol=1e-12, atol=0, equal_nan=True)


def test_symbols_of_different_calendars_are_computed_in_separate_panels(registry: FeatureRegistry) -> None:
    body = synthetic()
    bars = body["bars"]
    for key in bars["BBB"]:
        bars["BBB"][key] = bars["BBB"][key][30:]  # a later listing: fewer bars, same last dates
    for key in bars["DDD"]:
        del bars["DDD"][key][100]  # a missing session
    plan = plan_for(registry)

    for request in (parse_request(body, **LIMITS), parse_arrow_request(encode_request(body), **LIMITS)):
        assert request.panel is None  # the Arrow body does not parse into one panel either
        groups = plan._panels(request)
        assert sorted(columns for columns, _ in groups) == [[0, 2, 4], [1], [3]]
        np.testing.assert_allclose(plan.matrix(request), per_symbol(plan, request), rtol=1e-12, atol=0,
                                   equal_nan=True)


def test_a_symbol_with_too_little_history_is_named_whichever_path_parsed_it(registry: FeatureRegistry) -> None:
    body = synthetic()
    plan = plan_for(registry)
    for key in body["bars"]["EEE"]:
        body["bars"]["EEE"][key] = body["bars"]["EEE"][key][-10:]
    short_panel = {**body, "bars": {s: {k: v[-10:] for k, v in cols.items()} for s, cols in body["bars"].items()}}

    for request in (parse_request(body, **LIMITS), parse_arrow_request(encode_request(short_panel), **LIMITS)):
        with pytest.raises(RequestError, match="missing history: .*EEE has 10"):
            plan.matrix(request)


def test_a_score_request_holds_inputs_or_a_panel_of_one_column_per_symbol() -> None:
    from datetime import date

    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-04"))
    one = SeriesInputs(dates, *(np.ones(3) for _ in range(5)), np.full(3, np.nan))
    with pytest.raises(ValueError, match="either one inputs per symbol or a panel"):
        ScoreRequest(date(2024, 1, 3), ("A", "B"), (one,))
    with pytest.raises(ValueError, match="either one inputs per symbol or a panel"):
        ScoreRequest(date(2024, 1, 3), ("A",))


def test_cross_sectional_features_refuse_symbols_whose_last_dates_differ(registry: FeatureRegistry) -> None:
    body = synthetic()
    for key in body["bars"]["DDD"]:
        del body["bars"]["DDD"][key][-2]  # a missing session inside the model's last 3 dates
    plan = plan_for(registry, lookback=3)

    for request in (parse_request(body, **LIMITS), parse_arrow_request(encode_request(body), **LIMITS)):
        with pytest.raises(RequestError, match=r"same last 3 dates for every symbol; DDD has .*AAA has"):
            plan.matrix(request)
    series_only = FeaturePlan(registry, registry.series_names, 3)  # no cross section: each symbol on its own
    assert series_only.matrix(parse_request(body, **LIMITS)).shape == (len(SYMBOLS), 3, len(registry.series_names))


def as_panel(body: dict[str, Any], *, arrays: bool) -> dict[str, Any]:
    """The bars of :func:`synthetic` as a panel body: matrices (for Arrow) or rows of numbers (JSON)."""
    bars = body["bars"]
    symbols = list(bars)
    matrices = {k: np.column_stack([bars[s][k] for s in symbols]) for k in "ohlcv"}
    dates = bars[symbols[0]]["t"]
    panel = ({"symbols": symbols, "t": np.array(dates, dtype="datetime64[D]"), **matrices} if arrays else
             {"symbols": symbols, "t": list(dates), **{k: m.tolist() for k, m in matrices.items()}})
    return {"as_of": body["as_of"], "panel": panel, "market": body["market"]}


@pytest.mark.parametrize("lookback", [1, 3])
def test_a_panel_body_gives_exactly_the_features_of_the_same_bars(registry: FeatureRegistry, lookback: int) -> None:
    body = synthetic()
    plan = plan_for(registry, lookback)

    from_bars_json = plan.matrix(parse_request(body, **LIMITS))
    from_bars_arrow = plan.matrix(parse_arrow_request(encode_request(body), **LIMITS))
    panel_arrow = parse_arrow_request(encode_request(as_panel(body, arrays=True)), **LIMITS)
    panel_json = parse_request(as_panel(body, arrays=False), **LIMITS)

    assert panel_arrow.panel is not None and panel_json.panel is not None
    assert panel_arrow.symbols == panel_json.symbols == SYMBOLS
    expected = per_symbol(plan, parse_request(body, **LIMITS))
    assert np.isfinite(expected).mean() > 0.9
    shape = (len(SYMBOLS), len(plan.names)) if lookback == 1 else (len(SYMBOLS), lookback, len(plan.names))
    for request in (panel_arrow, panel_json):
        got = plan.matrix(request)
        assert got.shape == shape
        np.testing.assert_array_equal(got, from_bars_json)
        np.testing.assert_array_equal(got, from_bars_arrow)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0, equal_nan=True)


def test_a_panels_market_reaches_the_market_features(registry: FeatureRegistry) -> None:
    body = synthetic()
    plan = plan_for(registry)
    without = {k: v for k, v in as_panel(body, arrays=True).items() if k != "market"}

    with_market = plan.matrix(parse_arrow_request(encode_request(as_panel(body, arrays=True)), **LIMITS))
    no_market = plan.matrix(parse_arrow_request(encode_request(without), **LIMITS))

    # the beta/correlation features are defined only with the market; every other column is unchanged
    differs = ~np.isclose(with_market, no_market, rtol=0, atol=0, equal_nan=True).all(axis=0)
    assert differs.any() and not differs.all()
    assert np.isnan(no_market[:, differs]).all() and np.isfinite(with_market[:, differs]).any()


def test_a_short_panel_is_refused_for_missing_history_naming_every_symbol(registry: FeatureRegistry) -> None:
    body = synthetic()
    plan = plan_for(registry)
    short = {**body, "bars": {s: {k: v[-10:] for k, v in cols.items()} for s, cols in body["bars"].items()}}

    for request in (parse_arrow_request(encode_request(as_panel(short, arrays=True)), **LIMITS),
                    parse_request(as_panel(short, arrays=False), **LIMITS)):
        assert request.panel is not None
        with pytest.raises(RequestError, match="missing history: .*AAA has 10, BBB has 10, .*EEE has 10"):
            plan.matrix(request)
