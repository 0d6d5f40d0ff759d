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
