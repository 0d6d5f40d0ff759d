"""The panel layout of an Arrow request body: one row per date, each bar column a (T, N) matrix.

Encoded from matrices or nested lists, decoded back without loss, and refused with the reason
when the table is not a well-formed panel.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from amcp.models.wire import (
    BAR_FIELDS, DecodedPanel, DecodedTable, WireError, decode_request, decode_table, encode_request,
)

SYMBOLS = ["AAA", "BBB", "CCC"]
T = 6
DATES = np.busday_offset(np.datetime64("2024-01-02"), np.arange(T), roll="forward")
LIMITS = {"max_symbols": 10, "max_rows": 1000}


def matrices(seed: int = 3) -> dict[str, np.ndarray]:
    """o, h, l, c, v of shape (T, N), all distinct values (so a transposed or shifted read shows)."""
    rng = np.random.default_rng(seed)
    close = 10.0 * np.arange(1, len(SYMBOLS) + 1) + np.cumsum(rng.normal(0, 0.3, (T, len(SYMBOLS))), axis=0)
    return {"o": close - 0.125, "h": close + 0.5, "l": close - 0.5, "c": close,
            "v": rng.integers(100, 10_000, (T, len(SYMBOLS))).astype(float)}


def market_rows() -> list[dict[str, Any]]:
    """The market proxy, unsorted and missing the third date."""
    rows = [{"t": str(d), "c": 400.0 + j} for j, d in enumerate(DATES) if j != 2]
    return rows[::-1]


def panel_body() -> dict[str, Any]:
    return {"as_of": str(DATES[-1]), "panel": {"symbols": list(SYMBOLS), "t": DATES.copy(), **matrices()},
            "market": market_rows()}


def bars_body() -> dict[str, Any]:
    """The same data in the per-symbol bars layout (columns)."""
    m = matrices()
    return {"as_of": str(DATES[-1]),
            "bars": {s: {"t": [str(d) for d in DATES], **{k: m[k][:, j].tolist() for k in BAR_FIELDS}}
                     for j, s in enumerate(SYMBOLS)},
            "market": market_rows()}


def expected_market() -> np.ndarray:
    market = 400.0 + np.arange(T, dtype=float)
    market[2] = np.nan
    return market


# --------------------------------------------------------------------------- round trips


def test_a_panel_body_decodes_to_exactly_its_matrices_dates_symbols_and_as_of() -> None:
    body = panel_body()

    payload = encode_request(body)
    decoded = decode_table(payload, **LIMITS)

    assert isinstance(decoded, DecodedPanel)
    assert decoded.as_of == str(DATES[-1]) and decoded.symbols == tuple(SYMBOLS)
    assert decoded.dates.dtype == np.dtype("datetime64[D]")
    np.testing.assert_array_equal(decoded.dates, DATES)
    assert len(decoded.columns) == len(BAR_FIELDS)
    for key, column in zip(BAR_FIELDS, decoded.columns):
        assert column.shape == (T, len(SYMBOLS)) and column.dtype == np.float64
        np.testing.assert_array_equal(column, body["panel"][key])
    # aligned per date despite the unsorted input; NaN where the market has no close
    np.testing.assert_array_equal(decoded.market, expected_market())


def test_the_panel_schema_is_date32_rows_and_fixed_size_lists_with_symbols_metadata() -> None:
    table = pa.ipc.open_stream(encode_request(panel_body())).read_all()

    assert table.column_names == ["t", *BAR_FIELDS, "market"]
    assert table.num_rows == T
    assert json.loads(table.schema.metadata[b"symbols"]) == SYMBOLS
    assert table.schema.metadata[b"as_of"] == str(DATES[-1]).encode()
    assert table.schema.field("t").type == pa.date32()
    for key in BAR_FIELDS:
        kind = table.schema.field(key).type
        assert pa.types.is_fixed_size_list(kind) and kind.list_size == len(SYMBOLS)
        assert kind.value_type == pa.float64()
    assert table.schema.field("market").type == pa.float64()
    # row i of column c is the close of every symbol on date i
    assert table.column("c").to_pylist()[1] == matrices()["c"][1].tolist()


def test_nested_lists_and_iso_date_strings_encode_to_the_same_panel_as_numpy() -> None:
    body = panel_body()
    as_lists = {"as_of": body["as_of"],
                "panel": {"symbols": list(SYMBOLS), "t": [str(d) for d in DATES],
                          **{k: body["panel"][k].tolist() for k in BAR_FIELDS}},
                "market": {"t": [r["t"] for r in market_rows()], "c": [r["c"] for r in market_rows()]}}

    from_numpy = decode_table(encode_request(body), **LIMITS)
    from_lists = decode_table(encode_request(as_lists), **LIMITS)

    assert isinstance(from_lists, DecodedPanel)
    assert from_lists.symbols == from_numpy.symbols and from_lists.as_of == from_numpy.as_of
    np.testing.assert_array_equal(from_lists.dates, from_numpy.dates)
    for a, b in zip(from_lists.columns, from_numpy.columns):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(from_lists.market, expected_market())


def test_a_panel_without_market_decodes_with_market_none() -> None:
    body = panel_body()
    del body["market"]

    decoded = decode_table(encode_request(body), **LIMITS)

    assert isinstance(decoded, DecodedPanel) and decoded.market is None
    assert "market" not in pa.ipc.open_stream(encode_request(body)).read_all().column_names


def test_a_market_with_no_date_in_common_is_all_nan() -> None:
    body = panel_body()
    body["market"] = [{"t": "2020-01-02", "c": 1.0}, {"t": "2030-01-02", "c": 2.0}]

    decoded = decode_table(encode_request(body), **LIMITS)

    assert decoded.market is not None and decoded.market.shape == (T,) and np.isnan(decoded.market).all()


def test_decode_request_gives_each_symbol_its_column_of_the_panel() -> None:
    body = panel_body()

    as_of, bars = decode_request(encode_request(body), **LIMITS)

    assert as_of == str(DATES[-1])
    assert [b.symbol for b in bars] == SYMBOLS
    for j, one in enumerate(bars):
        np.testing.assert_array_equal(one.dates, DATES)
        for key, column in zip(BAR_FIELDS, one.columns):
            np.testing.assert_array_equal(column, body["panel"][key][:, j])
        np.testing.assert_array_equal(one.market, expected_market())


def test_the_panel_and_bars_layouts_decode_to_the_same_symbol_bars() -> None:
    _, from_panel = decode_request(encode_request(panel_body()), **LIMITS)
    bars_table = decode_table(encode_request(bars_body()), **LIMITS)

    assert isinstance(bars_table, DecodedTable)
    from_bars = bars_table.symbol_bars()
    assert [b.symbol for b in from_panel] == [b.symbol for b in from_bars]
    for a, b in zip(from_panel, from_bars):
        np.testing.assert_array_equal(a.dates, b.dates)
        for x, y in zip(a.columns, b.columns):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(a.market, b.market)


def test_a_panel_body_is_smaller_than_the_same_data_as_bars() -> None:
    panel = encode_request(panel_body())
    bars = encode_request(bars_body())

    assert len(panel) < len(bars)


def test_a_panel_of_several_record_batches_decodes_like_one() -> None:
    payload = encode_request(panel_body())
    table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=4):  # rows 0-3, then 4-5 (a sliced second chunk)
            writer.write_batch(batch)

    whole = decode_table(payload, **LIMITS)
    chunked = decode_table(sink.getvalue().to_pybytes(), **LIMITS)

    for a, b in zip(whole.columns, chunked.columns):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(whole.dates, chunked.dates)
    np.testing.assert_array_equal(whole.market, chunked.market)


# --------------------------------------------------------------------------- encode errors


def _without(key: str) -> dict[str, Any]:
    body = panel_body()
    del body["panel"][key]
    return body


def _reshaped(key: str) -> dict[str, Any]:
    body = panel_body()
    body["panel"][key] = body["panel"][key][:-1]  # one date short
    return body


def _transposed() -> dict[str, Any]:
    body = panel_body()
    body["panel"]["c"] = body["panel"]["c"].T
    return body


def _empty_symbols() -> dict[str, Any]:
    body = panel_body()
    body["panel"] = {"symbols": [], "t": body["panel"]["t"], **{k: np.empty((T, 0)) for k in BAR_FIELDS}}
    return body


@pytest.mark.parametrize(("body", "message"), [
    ({**panel_body(), "bars": bars_body()["bars"]}, "give either bars .* or panel"),
    ({"as_of": str(DATES[-1]), "market": market_rows()}, "give either bars .* or panel"),
    ({k: v for k, v in panel_body().items() if k != "as_of"}, "KeyError: 'as_of'"),
    (_without("h"), "cannot encode the request: KeyError: 'h'"),
    (_without("symbols"), "cannot encode the request: KeyError: 'symbols'"),
    (_reshaped("v"), r"of shape \(len\(t\), len\(symbols\)\) = \(6, 3\)"),
    (_transposed(), r"= \(6, 3\), got \[\(6, 3\), \(6, 3\), \(6, 3\), \(3, 6\), \(6, 3\)\]"),
    (_empty_symbols(), "symbols non-empty"),
])
def test_malformed_panel_bodies_are_refused_when_encoding(body: dict[str, Any], message: str) -> None:
    with pytest.raises(WireError, match=message):
        encode_request(body)


def test_encoding_refuses_a_market_whose_columns_differ_in_length() -> None:
    body = panel_body()
    body["market"] = {"t": [str(d) for d in DATES], "c": [1.0] * (T - 1)}

    with pytest.raises(WireError, match="market: t and c must be 1-D and of one length"):
        encode_request(body)


# --------------------------------------------------------------------------- decode errors


def _panel_payload(columns: dict[str, pa.Array], symbols: str | None, as_of: str = str(DATES[-1])) -> bytes:
    table = pa.table(columns)
    metadata = {"as_of": as_of}
    if symbols is not None:
        metadata["symbols"] = symbols
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _lists(values: np.ndarray, value_type: pa.DataType = pa.float64()) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=value_type), values.shape[1])


def _columns(rows: int = 3, width: int = 2) -> dict[str, pa.Array]:
    dates = DATES[-rows:] if rows else np.empty(0, dtype="datetime64[D]")
    return {"t": pa.array(dates, type=pa.date32()),
            **{k: _lists(np.full((rows, width), 5.0 + i)) for i, k in enumerate(BAR_FIELDS)}}


def _symbols(width: int = 2) -> str:
    return json.dumps([f"S{j}" for j in range(width)])


def _with(**changes: pa.Array) -> dict[str, pa.Array]:
    return {**_columns(), **changes}


DECODE_ERRORS = [
    pytest.param(_columns(), "[\"S0\", ", "the 'symbols' metadata is not JSON", id="symbols not json"),
    pytest.param(_columns(), '{"S0": 1}', "must be a non-empty JSON array of symbol names", id="symbols an object"),
    pytest.param(_columns(), "[]", "must be a non-empty JSON array of symbol names", id="symbols empty"),
    pytest.param(_columns(), '["S0", 1]', "must be a non-empty JSON array of symbol names", id="symbol a number"),
    pytest.param(_columns(width=3), '["S0", "S1", "S0"]', "symbol 'S0' appears twice in the panel's 'symbols'",
                 id="duplicate symbol"),
    pytest.param(_columns(rows=1, width=11), _symbols(11), "11 symbols asked for, at most 10 per request",
                 id="too many symbols"),
    pytest.param({k: v for k, v in _columns().items() if k not in ("v", "h")}, _symbols(),
                 r"the Arrow panel lacks columns \['h', 'v'\]", id="missing columns"),
    pytest.param(_columns(rows=0), _symbols(), "the Arrow panel has no rows", id="no rows"),
    pytest.param(_with(t=pa.array([str(d) for d in DATES[-3:]])), _symbols(),
                 "column 't' must be date32 .*got string", id="t strings"),
    pytest.param(_with(t=pa.array(DATES[-3:].astype("datetime64[ms]"))), _symbols(),
                 "column 't' must be date32 .*got timestamp", id="t timestamps"),
    pytest.param(_with(t=pa.array([DATES[-3].item(), None, DATES[-1].item()], type=pa.date32())), _symbols(),
                 "column 't' has nulls", id="t with nulls"),
    pytest.param(_with(c=pa.array([5.0, 5.0, 5.0])), _symbols(),
                 r"column 'c' of a panel must be fixed_size_list<float64>\[2\] .*got double", id="c flat"),
    pytest.param(_with(o=_lists(np.full((3, 3), 5.0))), _symbols(),
                 r"column 'o' of a panel must be fixed_size_list<float64>\[2\]", id="o wrong width"),
    pytest.param(_with(v=pa.array([[1.0, 2.0]] * 3)), _symbols(),
                 r"column 'v' of a panel must be fixed_size_list<float64>\[2\] .*got list", id="v variable list"),
    pytest.param(_with(l=pa.FixedSizeListArray.from_arrays(pa.array(["x"] * 6), 2)), _symbols(),
                 r"column 'l' of a panel must be fixed_size_list<float64>\[2\]", id="l of strings"),
    pytest.param(_with(h=pa.array([[5.0, 5.0], None, [5.0, 5.0]], type=pa.list_(pa.float64(), 2))), _symbols(),
                 "column 'h' has null rows", id="h null row"),
    pytest.param(_with(market=pa.array(["1", "2", "3"])), _symbols(), "column 'market' must be numeric",
                 id="market strings"),
]


@pytest.mark.parametrize(("columns", "symbols", "message"), DECODE_ERRORS)
def test_malformed_panel_tables_are_refused_with_the_reason(columns: dict[str, pa.Array], symbols: str,
                                                             message: str) -> None:
    payload = _panel_payload(columns, symbols)

    with pytest.raises(WireError, match=message):
        decode_table(payload, **LIMITS)
    with pytest.raises(WireError, match=message):
        decode_request(payload, **LIMITS)


def test_a_panel_of_more_bars_than_max_rows_is_refused_before_its_columns_are_read() -> None:
    columns = _columns(rows=3, width=2)
    columns["c"] = pa.array(["not", "read", "yet"])  # would be refused too, but the size check comes first

    with pytest.raises(WireError, match="3 dates × 2 symbols sent, at most 5 bars are accepted"):
        decode_table(_panel_payload(columns, _symbols()), max_symbols=10, max_rows=5)
    # exactly at the limit it decodes
    assert isinstance(decode_table(_panel_payload(_columns(), _symbols()), max_symbols=2, max_rows=6), DecodedPanel)


def test_a_panel_without_as_of_is_refused() -> None:
    table = pa.table(_columns()).replace_schema_metadata({"symbols": _symbols()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)

    with pytest.raises(WireError, match="no 'as_of' metadata"):
        decode_table(sink.getvalue().to_pybytes(), **LIMITS)


def test_integer_values_and_nulls_inside_a_row_decode_to_float64_and_nan() -> None:
    columns = _columns()
    columns["v"] = _lists(np.array([[1, 2], [3, 4], [5, 6]]), pa.int64())
    columns["c"] = pa.FixedSizeListArray.from_arrays(pa.array([5.0, None, 5.0, 5.0, 5.0, 5.0]), 2)
    columns["market"] = pa.array([1, None, 3], type=pa.int32())

    decoded = decode_table(_panel_payload(columns, _symbols()), **LIMITS)

    assert isinstance(decoded, DecodedPanel)
    volume = decoded.columns[BAR_FIELDS.index("v")]
    assert volume.dtype == np.float64
    np.testing.assert_array_equal(volume, [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    close = decoded.columns[BAR_FIELDS.index("c")]
    assert np.isnan(close[0, 1]) and np.isfinite(np.delete(close.ravel(), 1)).all()
    np.testing.assert_array_equal(decoded.market, [1.0, np.nan, 3.0])
