"""Scoring requests as JSON bar objects, JSON columns and Arrow streams parse to the same inputs, and bad ones are refused with the reason."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from amcp.models.wire import ARROW_CONTENT_TYPE, decode_request, encode_request
from serve.signals import RequestError, parse_arrow_request, parse_request

LIMITS = {"max_symbols": 10, "max_bars": 50}
DAYS = [str(d) for d in np.busday_offset(np.datetime64("2024-01-02"), np.arange(6), roll="forward")]


def rows_body() -> dict[str, Any]:
    rng = np.random.default_rng(1)
    bars = {}
    for k, symbol in enumerate(("AAA", "BBB", "CCC")):
        close = 10.0 * (k + 1) + np.cumsum(rng.normal(0, 0.1, len(DAYS)))
        days = DAYS[k:]  # CCC has fewer bars than AAA
        bars[symbol] = [{"t": t, "o": float(c) - 0.1, "h": float(c) + 0.5, "l": float(c) - 0.5, "c": float(c),
                         "v": float(1000 * (j + 1))} for j, (t, c) in enumerate(zip(days, close[k:]))]
    market = [{"t": t, "c": 400.0 + j} for j, t in enumerate(DAYS) if j != 2]  # one date missing
    return {"as_of": DAYS[-1], "bars": bars, "market": market}


def columns_body(body: dict[str, Any]) -> dict[str, Any]:
    return {"as_of": body["as_of"],
            "bars": {s: {k: [bar[k] for bar in bars] for k in ("t", "o", "h", "l", "c", "v")}
                     for s, bars in body["bars"].items()},
            "market": {"t": [r["t"] for r in body["market"]], "c": [r["c"] for r in body["market"]]}}


def test_bar_objects_columns_and_arrow_parse_to_identical_inputs() -> None:
    body = rows_body()

    parsed = [parse_request(body, **LIMITS), parse_request(columns_body(body), **LIMITS),
              parse_arrow_request(encode_request(body), **LIMITS),
              parse_arrow_request(encode_request(columns_body(body)), **LIMITS)]

    reference = parsed[0]
    assert reference.symbols == ("AAA", "BBB", "CCC") and str(reference.as_of) == DAYS[-1]
    for other in parsed[1:]:
        assert other.symbols == reference.symbols and other.as_of == reference.as_of
        for a, b in zip(reference.series(), other.series()):
            np.testing.assert_array_equal(a.dates, b.dates)
            for field in ("open", "high", "low", "close", "volume", "market"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    aaa = reference.series()[0]
    assert np.isnan(aaa.market[2]) and aaa.market[3] == 403.0  # the missing market date is NaN
    assert len(reference.series()[2]) == len(DAYS) - 2


def test_an_arrow_body_is_a_tenth_of_the_json_and_carries_as_of_in_its_schema() -> None:
    import json

    body = rows_body()
    payload = encode_request(body)
    table = pa.ipc.open_stream(payload).read_all()

    assert table.schema.metadata[b"as_of"] == DAYS[-1].encode()
    assert table.column_names == ["symbol", "t", "o", "h", "l", "c", "v", "market"]
    assert table.num_rows == sum(len(b) for b in body["bars"].values())
    assert ARROW_CONTENT_TYPE == "application/vnd.apache.arrow.stream"
    assert len(payload) < len(json.dumps(body))  # small bodies carry the schema; large ones shrink ~10x


def _bad_price(b: dict[str, Any]) -> None:
    b["bars"]["BBB"]["c"][2] = float("inf")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b["bars"]["AAA"].pop("v"), r"bars.AAA must have exactly the columns .*missing or unknown: \['v'\]"),
    (lambda b: b["bars"]["AAA"]["o"].pop(), "bars.AAA: the columns have different lengths"),
    (lambda b: b["bars"]["AAA"]["c"].__setitem__(1, "10.5"), r"bars.AAA\[1\].c must be a number, got '10.5'"),
    (lambda b: b["bars"]["AAA"]["v"].__setitem__(1, True), r"bars.AAA\[1\].v must be a number, got True"),
    (lambda b: b["bars"]["AAA"].__setitem__("t", list(reversed(b["bars"]["AAA"]["t"]))), "strictly increasing"),
    (_bad_price, r"bars.BBB\[2\].c is inf: prices must be finite and > 0"),
    (lambda b: b["bars"]["CCC"]["v"].__setitem__(0, -1.0), r"bars.CCC\[0\].v is -1.0"),
    (lambda b: b["bars"].__setitem__("AAA", {k: [] for k in "tohlcv"}), "bars.AAA has no bars"),
    (lambda b: b["bars"].update({f"X{i}": b["bars"]["AAA"] for i in range(8)}), "11 symbols asked for, at most 10"),
    (lambda b: b["market"]["c"].__setitem__(0, 0.0), r"market\[0\].c is 0.0"),
])
def test_bad_column_bodies_are_refused_with_the_reason(mutate: Any, message: str) -> None:
    body = columns_body(rows_body())
    mutate(body)

    with pytest.raises(RequestError, match=message):
        parse_request(body, **LIMITS)


def _table(**columns: pa.Array) -> bytes:
    table = pa.table(columns).replace_schema_metadata({"as_of": DAYS[-1]})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _valid_columns(symbols: list[str]) -> dict[str, pa.Array]:
    n = len(symbols)
    days = np.array([DAYS[-n + i] if n <= len(DAYS) else DAYS[-1] for i in range(n)], dtype="datetime64[D]")
    return {"symbol": pa.array(symbols), "t": pa.array(days, type=pa.date32()),
            **{k: pa.array(np.full(n, 5.0)) for k in "ohlcv"}}


@pytest.mark.parametrize(("payload", "message"), [
    (b"{\"as_of\": 1}", "not an Arrow IPC stream"),
    (_table(**{k: v for k, v in _valid_columns(["A"]).items() if k != "v"}), r"lacks columns \['v'\]"),
    (_table(**{**_valid_columns(["A"]), "t": pa.array([DAYS[-1]])}), "'t' must be date32"),
    (_table(**{**_valid_columns(["A"]), "c": pa.array(["5"])}), "'c' must be numeric"),
    (_table(**{**_valid_columns(["A", "B", "A"]),
               "t": pa.array(np.array(DAYS[-3:], dtype="datetime64[D]"), type=pa.date32())}),
     "rows of symbol 'A' are not contiguous"),
    (_table(**{**_valid_columns(["A"]), "c": pa.array([float("nan")])}), r"bars.A\[0\].c is nan"),
    (_table(**{**_valid_columns(["A"]), "t": pa.array(np.array([DAYS[-2]], dtype="datetime64[D]"),
                                                         type=pa.date32())}), "not as_of"),
])
def test_bad_arrow_bodies_are_refused_with_the_reason(payload: bytes, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_arrow_request(payload, **LIMITS)


def test_an_arrow_body_without_as_of_or_with_too_many_rows_is_refused() -> None:
    table = pa.table(_valid_columns(["A"]))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    with pytest.raises(RequestError, match="no 'as_of' metadata"):
        parse_arrow_request(sink.getvalue().to_pybytes(), **LIMITS)
    with pytest.raises(RequestError, match="bars.AAA has 60 bars, at most 50 are accepted"):
        body = columns_body(rows_body())
        long = copy.deepcopy(body)
        days = np.arange(np.datetime64("2020-01-01"), np.datetime64(DAYS[-1]) + 1)[-60:]
        long["bars"] = {"AAA": {"t": [str(d) for d in days], **{k: [5.0] * 60 for k in "ohlcv"}}}
        parse_arrow_request(encode_request(long), **LIMITS)


def test_decode_keeps_symbols_in_first_seen_order_and_reads_nulls_as_nan() -> None:
    columns = _valid_columns(["B", "B", "A"])
    columns["t"] = pa.array(np.array([DAYS[-2], DAYS[-1], DAYS[-1]], dtype="datetime64[D]"), type=pa.date32())
    columns["market"] = pa.array([401.0, None, 402.0])

    as_of, decoded = decode_request(_table(**columns), max_symbols=5, max_rows=10)

    assert as_of == DAYS[-1] and [b.symbol for b in decoded] == ["B", "A"]
    assert np.isnan(decoded[0].market[1]) and decoded[1].market[0] == 402.0


@pytest.mark.parametrize("encoding", ["strings", "dictionary", "dictionary with a repeated entry", "chunks"])
def test_symbol_runs_read_the_same_from_strings_or_a_dictionary(encoding: str) -> None:
    symbols = ["B", "B", "A", "C", "C"]
    columns = _valid_columns(symbols)
    columns["t"] = pa.array(np.array([DAYS[-2], DAYS[-1], DAYS[-1], DAYS[-2], DAYS[-1]], dtype="datetime64[D]"),
                            type=pa.date32())
    if encoding == "dictionary":
        columns["symbol"] = pa.array(symbols).dictionary_encode()
    elif encoding == "dictionary with a repeated entry":  # "B" twice in the dictionary: indices 0 and 2
        columns["symbol"] = pa.DictionaryArray.from_arrays(pa.array([0, 2, 1, 3, 3], type=pa.int32()),
                                                           pa.array(["B", "A", "B", "C"]))
    payload = _table(**columns)
    if encoding == "chunks":  # the same rows as two record batches
        table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            for batch in table.to_batches(max_chunksize=2):
                writer.write_batch(batch)
        payload = sink.getvalue().to_pybytes()

    _, decoded = decode_request(payload, max_symbols=5, max_rows=10)

    assert [(b.symbol, len(b.dates)) for b in decoded] == [("B", 2), ("A", 1), ("C", 2)]


def test_a_dictionary_symbol_column_pointing_at_a_null_entry_is_refused() -> None:
    columns = _valid_columns(["A", "B"])
    columns["t"] = pa.array(np.array(DAYS[-1:] * 2, dtype="datetime64[D]"), type=pa.date32())
    columns["symbol"] = pa.DictionaryArray.from_arrays(pa.array([0, 1], type=pa.int32()), pa.array(["A", None]))

    with pytest.raises(RequestError, match="column 'symbol' has nulls"):
        parse_arrow_request(_table(**columns), **LIMITS)


def test_a_dictionary_symbol_column_whose_rows_are_not_contiguous_is_refused() -> None:
    columns = _valid_columns(["A", "B", "A"])
    columns["t"] = pa.array(np.array(DAYS[-3:], dtype="datetime64[D]"), type=pa.date32())
    columns["symbol"] = pa.array(["A", "B", "A"]).dictionary_encode()

    with pytest.raises(RequestError, match="rows of symbol 'A' are not contiguous"):
        parse_arrow_request(_table(**columns), **LIMITS)


def test_direct_ingress_needs_its_switch_and_port_range_in_rays_environment() -> None:
    from amcp.config import ServeSignalsConfig, StoreConfig, parse_config
    from amcp.errors import ConfigError
    from serve.signals import direct_ingress_env

    proxy = ServeSignalsConfig(registry=StoreConfig(url="runs/models"))
    direct = ServeSignalsConfig(registry=StoreConfig(url="runs/models"), ingress="direct", direct_port=9100)

    assert proxy.ingress == "proxy" and direct_ingress_env(proxy) == {}
    assert direct_ingress_env(direct) == {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
                                          "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": "9100",
                                          "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": "9200",
                                          "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                                          "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
                                          "RAY_SERVE_LOG_TO_STDERR": "0"}
    with pytest.raises(ConfigError, match="ingress"):
        parse_config({"registry": {"url": "x"}, "ingress": "sideways"}, ServeSignalsConfig)


def test_encoding_refuses_columns_of_different_lengths_with_the_symbol_named() -> None:
    from amcp.models.wire import WireError

    body = columns_body(rows_body())
    body["bars"]["BBB"]["o"] = body["bars"]["BBB"]["o"][:-1]
    with pytest.raises(WireError, match=r"bars.BBB: the columns t, o, h, l, c, v must be 1-D and of one length"):
        encode_request(body)

    body = columns_body(rows_body())
    body["market"]["c"] = body["market"]["c"][:-1]
    with pytest.raises(WireError, match="market: t and c must be 1-D and of one length"):
        encode_request(body)
    with pytest.raises(WireError, match="cannot encode the request: KeyError"):
        encode_request({"bars": {}})


# --------------------------------------------------------------------------- the panel layout

PANEL_SYMBOLS = ["AAA", "BBB", "CCC"]


def panel_matrices(seed: int = 2) -> dict[str, np.ndarray]:
    """o, h, l, c, v of shape (len(DAYS), 3): every symbol on every date."""
    rng = np.random.default_rng(seed)
    close = 10.0 * np.arange(1, 4) + np.cumsum(rng.normal(0, 0.1, (len(DAYS), 3)), axis=0)
    return {"o": close - 0.1, "h": close + 0.5, "l": close - 0.5, "c": close,
            "v": rng.integers(0, 5000, (len(DAYS), 3)).astype(float)}


PANEL_MARKET = [{"t": t, "c": 400.0 + j} for j, t in enumerate(DAYS) if j != 2]  # one date missing


def panel_json(market: bool = True) -> dict[str, Any]:
    """A JSON panel body: rows of numbers per date."""
    m = panel_matrices()
    body: dict[str, Any] = {"as_of": DAYS[-1], "panel": {"symbols": list(PANEL_SYMBOLS), "t": list(DAYS),
                                                         **{k: m[k].tolist() for k in "ohlcv"}}}
    if market:
        body["market"] = copy.deepcopy(PANEL_MARKET)  # JSON: oldest first, as the server requires
    return body


def panel_arrow_body(market: bool = True) -> dict[str, Any]:
    """The same panel as :func:`panel_json`, as numpy matrices for :func:`encode_request`."""
    body: dict[str, Any] = {"as_of": DAYS[-1], "panel": {"symbols": list(PANEL_SYMBOLS),
                                                         "t": np.array(DAYS, dtype="datetime64[D]"),
                                                         **panel_matrices()}}
    if market:
        body["market"] = copy.deepcopy(PANEL_MARKET[::-1])  # unsorted: the encoder sorts and aligns it
    return body


def panel_as_bars() -> dict[str, Any]:
    """The same data in the per-symbol bars layout (columns)."""
    m = panel_matrices()
    return {"as_of": DAYS[-1],
            "bars": {s: {"t": list(DAYS), **{k: m[k][:, j].tolist() for k in "ohlcv"}}
                     for j, s in enumerate(PANEL_SYMBOLS)},
            "market": copy.deepcopy(PANEL_MARKET)}


def _assert_same_series(a: Any, b: Any) -> None:
    assert a.symbols == b.symbols and a.as_of == b.as_of
    for x, y in zip(a.series(), b.series(), strict=True):
        np.testing.assert_array_equal(x.dates, y.dates)
        for field in ("open", "high", "low", "close", "volume", "vwap", "market"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))


def test_arrow_and_json_panels_parse_to_one_panel_equal_to_the_bars_layout() -> None:
    from_arrow = parse_arrow_request(encode_request(panel_arrow_body()), **LIMITS)
    from_json = parse_request(panel_json(), **LIMITS)
    from_bars = parse_request(panel_as_bars(), **LIMITS)
    from_arrow_bars = parse_arrow_request(encode_request(panel_as_bars()), **LIMITS)

    for request in (from_arrow, from_json):
        assert request.panel is not None and not request.inputs
        assert request.panel.width == 3 and len(request.panel) == len(DAYS)
        assert request.lengths() == [len(DAYS)] * 3
    assert from_arrow.symbols == tuple(PANEL_SYMBOLS) and str(from_arrow.as_of) == DAYS[-1]
    m = panel_matrices()
    np.testing.assert_array_equal(from_arrow.panel.close, m["c"])
    np.testing.assert_array_equal(from_arrow.panel.volume, m["v"])
    np.testing.assert_array_equal(from_arrow.panel.dates, np.array(DAYS, dtype="datetime64[D]"))
    for other in (from_json, from_bars, from_arrow_bars):
        _assert_same_series(from_arrow, other)


def test_a_panels_arrays_are_own_writable_c_contiguous_float64_and_market_is_broadcast() -> None:
    for request in (parse_arrow_request(encode_request(panel_arrow_body()), **LIMITS),
                    parse_request(panel_json(), **LIMITS)):
        panel = request.panel
        assert panel is not None
        for name in ("open", "high", "low", "close", "volume", "vwap", "market"):
            values = getattr(panel, name)
            assert values.shape == (len(DAYS), 3) and values.dtype == np.float64, name
            assert values.flags.writeable and values.flags.c_contiguous and values.flags.owndata, name
        assert np.isnan(panel.vwap).all()
        expected = 400.0 + np.arange(len(DAYS), dtype=float)
        expected[2] = np.nan
        for j in range(3):
            np.testing.assert_array_equal(panel.market[:, j], expected)
        panel.market[0, 0] = -1.0  # a broadcast view would change every column at once
        assert panel.market[0, 1] == 400.0


def test_an_arrow_panel_without_market_has_no_market() -> None:
    for request in (parse_arrow_request(encode_request(panel_arrow_body(market=False)), **LIMITS),
                    parse_request(panel_json(market=False), **LIMITS)):
        assert request.panel is not None and request.panel.market is None
        assert all(x.market is None for x in request.series())


def _arrow_panel(mutate: Any) -> bytes:
    body = panel_arrow_body()
    mutate(body)
    return encode_request(body)


def _set(key: str, i: int, j: int, value: float) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        body["panel"][key][i, j] = value
    return mutate


@pytest.mark.parametrize(("mutate", "message"), [
    (_set("c", 3, 1, float("nan")), r"panel.c\[3\]\[1\] \(BBB\) is nan: prices must be finite and > 0"),
    (_set("o", 0, 2, 0.0), r"panel.o\[0\]\[2\] \(CCC\) is 0.0: prices must be finite and > 0"),
    (_set("h", 5, 0, float("inf")), r"panel.h\[5\]\[0\] \(AAA\) is inf: prices must be finite and > 0"),
    (_set("l", 1, 1, -2.0), r"panel.l\[1\]\[1\] \(BBB\) is -2.0: prices must be finite and > 0"),
    (_set("v", 4, 2, -1.0), r"panel.v\[4\]\[2\] \(CCC\) is -1.0: volume must be finite and >= 0"),
    (_set("v", 2, 0, float("nan")), r"panel.v\[2\]\[0\] \(AAA\) is nan: volume must be finite and >= 0"),
    (lambda b: b["panel"].__setitem__("symbols", ["AAA", "BBB", "AAA"]), "symbol 'AAA' appears twice"),
    (lambda b: b["panel"].__setitem__("symbols", ["AAA", "", "CCC"]),
     "symbol names must be strings of 1-32 characters, got ''"),
    (lambda b: b["panel"].__setitem__("symbols", ["AAA", "X" * 33, "CCC"]),
     "symbol names must be strings of 1-32 characters"),
    (lambda b: b["panel"].__setitem__("t", b["panel"]["t"][[0, 2, 1, 3, 4, 5]]),
     r"panel\[2\].t is .*, not after .*: bars must be oldest first with strictly increasing dates"),
    (lambda b: b["panel"].__setitem__("t", b["panel"]["t"][[0, 1, 1, 3, 4, 5]]), "strictly increasing dates"),
    (lambda b: b.__setitem__("as_of", DAYS[-2]), f"panel: the last date is {DAYS[-1]}, not as_of {DAYS[-2]}"),
    (lambda b: b.__setitem__("as_of", "2024-13-01"), "as_of must be an ISO date"),
    (lambda b: b.__setitem__("market", [{"t": DAYS[1], "c": -5.0}]),
     f"market on {DAYS[1]} is -5.0: closes must be finite and > 0"),
    (lambda b: b.__setitem__("market", [{"t": DAYS[3], "c": float("inf")}]), f"market on {DAYS[3]} is inf"),
])
def test_bad_arrow_panel_values_are_refused_with_the_reason(mutate: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_arrow_request(_arrow_panel(mutate), **LIMITS)


def test_an_arrow_panel_with_too_many_dates_or_symbols_is_refused() -> None:
    days = np.arange(np.datetime64(DAYS[-1]) - 59, np.datetime64(DAYS[-1]) + 1)
    long = {"as_of": DAYS[-1], "panel": {"symbols": ["A"], "t": days, **{k: np.full((60, 1), 5.0) for k in "ohlcv"}}}
    with pytest.raises(RequestError, match="panel has 60 dates, at most 50 bars per symbol are accepted"):
        parse_arrow_request(encode_request(long), **LIMITS)

    wide = {"as_of": DAYS[-1], "panel": {"symbols": [f"S{j}" for j in range(11)], "t": [DAYS[-1]],
                                         **{k: np.full((1, 11), 5.0) for k in "ohlcv"}}}
    with pytest.raises(RequestError, match="11 symbols asked for, at most 10 per request"):
        parse_arrow_request(encode_request(wide), **LIMITS)


def test_a_null_inside_an_arrow_panel_row_is_refused_as_a_price() -> None:
    payload = encode_request(panel_arrow_body())
    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    values = table.column("h").combine_chunks().flatten().to_pylist()
    values[1 * 3 + 2] = None  # date 1, symbol CCC
    table = table.set_column(table.column_names.index("h"), "h",
                             pa.FixedSizeListArray.from_arrays(pa.array(values, type=pa.float64()), 3))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    with pytest.raises(RequestError, match=r"panel.h\[1\]\[2\] \(CCC\) is nan: prices must be finite and > 0"):
        parse_arrow_request(sink.getvalue().to_pybytes(), **LIMITS)


def test_wire_errors_of_an_arrow_panel_become_request_errors() -> None:
    table = pa.ipc.open_stream(pa.py_buffer(encode_request(panel_arrow_body()))).read_all()
    table = table.replace_schema_metadata({"as_of": DAYS[-1], "symbols": "AAA,BBB,CCC"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    with pytest.raises(RequestError, match="the 'symbols' metadata is not JSON"):
        parse_arrow_request(sink.getvalue().to_pybytes(), **LIMITS)


def _json_panel(mutate: Any) -> dict[str, Any]:
    body = panel_json()
    mutate(body)
    return body


def _json_set(key: str, i: int, j: int, value: Any) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        body["panel"][key][i][j] = value
    return mutate


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.__setitem__("bars", panel_as_bars()["bars"]), "give either bars .* or panel .*, not both"),
    (lambda b: b["panel"].pop("v"), r"panel must be an object with exactly the keys .*got \['c', 'h', 'l', 'o', "
                                     r"'symbols', 't'\]"),
    (lambda b: b["panel"].__setitem__("x", []), "panel must be an object with exactly the keys"),
    (lambda b: b.__setitem__("panel", [1, 2]), "panel must be an object with exactly the keys .*got list"),
    (lambda b: b.__setitem__("extra", 1), r"unknown keys \['extra'\]"),
    (lambda b: b["panel"].__setitem__("symbols", []), "panel.symbols must be a non-empty list of symbol names"),
    (lambda b: b["panel"].__setitem__("symbols", "AAA"), "panel.symbols must be a non-empty list"),
    (lambda b: b["panel"].__setitem__("symbols", [f"S{j}" for j in range(11)]),
     "11 symbols asked for, at most 10 per request"),
    (lambda b: b["panel"].__setitem__("symbols", ["AAA", 7, "CCC"]), "symbol names must be strings .*got 7"),
    (lambda b: b["panel"].__setitem__("symbols", ["AAA", "BBB", "BBB"]), "symbol 'BBB' appears twice"),
    (lambda b: b["panel"].__setitem__("t", []), "panel.t must be a non-empty list of ISO dates"),
    (lambda b: b["panel"].__setitem__("t", [str(d) for d in np.arange(np.datetime64("2023-11-01"),
                                                                      np.datetime64("2023-12-22"))]),
     "panel has 51 dates, at most 50 bars per symbol are accepted"),
    (lambda b: b["panel"]["t"].__setitem__(1, "2024/01/03"), r"panel: a date is not an ISO date"),
    (lambda b: b["panel"]["t"].__setitem__(1, 20240103), r"panel\[1\].t must be an ISO date"),
    (lambda b: b["panel"]["t"].__setitem__(3, b["panel"]["t"][2]), r"panel\[3\].t is .* not after"),
    (lambda b: b["panel"]["o"].pop(), r"panel.o must be a list of 6 rows \(one per date in panel.t\) of 3 numbers"),
    (lambda b: b["panel"]["h"][2].pop(), r"panel.h must be a list of 6 rows .* of 3 numbers \(one per symbol\)"),
    (lambda b: b["panel"].__setitem__("l", "1,2,3"), r"panel.l must be a list of 6 rows"),
    (lambda b: b["panel"]["c"].__setitem__(0, 5.0), r"panel.c must be a list of 6 rows"),
    (_json_set("c", 2, 1, "10.5"), r"panel.c\[2\]\[1\] \(BBB\) must be a number, got '10.5'"),
    (_json_set("v", 4, 0, True), r"panel.v\[4\]\[0\] \(AAA\) must be a number, got True"),
    (_json_set("o", 0, 2, None), r"panel.o\[0\]\[2\] \(CCC\) must be a number, got None"),
    (_json_set("c", 3, 1, float("nan")), r"panel.c\[3\]\[1\] \(BBB\) is nan: prices must be finite and > 0"),
    (_json_set("l", 5, 2, 0), r"panel.l\[5\]\[2\] \(CCC\) is 0.0: prices must be finite and > 0"),
    (_json_set("v", 1, 1, -3), r"panel.v\[1\]\[1\] \(BBB\) is -3.0: volume must be finite and >= 0"),
    (lambda b: b.__setitem__("as_of", DAYS[-2]), f"panel: the last date is {DAYS[-1]}, not as_of {DAYS[-2]}"),
    (lambda b: b["market"][0].__setitem__("c", 0.0), r"market\[0\].c is 0.0"),
])
def test_bad_json_panels_are_refused_with_the_reason(mutate: Any, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        parse_request(_json_panel(mutate), **LIMITS)


def test_a_json_panel_accepts_integers_and_a_market_of_columns() -> None:
    body = panel_json()
    body["panel"]["v"] = [[int(x) for x in row] for row in body["panel"]["v"]]
    body["market"] = {"t": [r["t"] for r in PANEL_MARKET], "c": [r["c"] for r in PANEL_MARKET]}

    _assert_same_series(parse_request(body, **LIMITS), parse_request(panel_json(), **LIMITS))
