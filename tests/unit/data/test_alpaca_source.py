"""AlpacaHistoricalSource against AlpacaMarketDataServer, through the real alpaca-py clients.

Nothing sleeps: the source's retry sleep is a recorder and its rate limiter a counting stub.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import requests
from alpaca.data.historical import OptionHistoricalDataClient, StockHistoricalDataClient
from alpaca.data.historical.corporate_actions import CorporateActionsClient
from alpaca.data.requests import (
    CorporateActionsRequest,
    OptionChainRequest,
    StockBarsRequest,
    StockLatestBarRequest,
)
from alpaca.data.timeframe import TimeFrame

from amcp.data.alpaca_source import AlpacaHistoricalSource
from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.data.schemas import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA, OPTION_CHAIN_SCHEMA, TICK_SCHEMA
from amcp.errors import DataError
from amcp.testing.alpaca_rest import AlpacaMarketDataServer

KEY, SECRET = "test-key", "test-secret"
SESSIONS = TradingCalendar().sessions("2024-01-02", "2024-02-14")  # 31 sessions


class CountingLimiter:
    """A RateLimiter stub that never waits and counts acquisitions."""

    def __init__(self) -> None:
        self.acquired = 0

    def acquire(self, n: int = 1) -> float:
        self.acquired += n
        return 0.0


def daily_bars(symbols: dict[str, int], seed: int = 7) -> pa.Table:
    """``symbols[s]`` daily bars of each symbol from 2024-01-02, with unround prices and some null vwaps."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol, count in symbols.items():
        close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.02, count)))
        vwap = close * (1 + rng.normal(0, 0.001, count))
        parts.append(
            pa.table(
                {
                    "symbol": [symbol] * count,
                    "ts": pa.array(midnight_ns(SESSIONS[:count])).cast(BAR_SCHEMA.field("ts").type),
                    "open": close * (1 + rng.normal(0, 0.005, count)),
                    "high": close * 1.01,
                    "low": close * 0.99,
                    "close": close,
                    "volume": rng.integers(1_000, 1_000_000, count).astype(float),
                    "vwap": pa.array(vwap, mask=np.arange(count) % 5 == 4),
                    "trade_count": rng.integers(10, 10_000, count),
                },
                schema=BAR_SCHEMA,
            )
        )
    return pa.concat_tables(parts).sort_by([("symbol", "ascending"), ("ts", "ascending")])


@pytest.fixture
def server() -> Iterator[AlpacaMarketDataServer]:
    with AlpacaMarketDataServer(KEY, SECRET) as running:
        yield running


@pytest.fixture
def limiter() -> CountingLimiter:
    return CountingLimiter()


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_source(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float], **options: object
) -> AlpacaHistoricalSource:
    options.setdefault("page_limit", 10_000)
    return AlpacaHistoricalSource(
        KEY, SECRET, url_override=server.url, rate_limiter=limiter, sleep=sleeps.append, seed=1, **options
    )


# ------------------------------------------------------------------------------------- bars


def test_bars_over_many_pages_equal_the_loaded_data(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 31, "MSFT": 31, "SPY": 28})
    server.add_bars(loaded)
    source = make_source(server, limiter, sleeps, page_limit=7)

    got = source.bars(["SPY", "MSFT", "AAPL"], SESSIONS[0].item(), SESSIONS[-1].item())

    assert got.equals(loaded)
    pages = server.requests
    assert len(pages) == -(-loaded.num_rows // 7)
    assert all(page.query["limit"] == "7" for page in pages)
    assert all(page.query["adjustment"] == "raw" and page.query["timeframe"] == "1Day" for page in pages)
    assert "page_token" not in pages[0].query and all("page_token" in page.query for page in pages[1:])
    assert sleeps == []


def test_rate_limiter_is_acquired_once_per_page(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.add_bars(daily_bars({"AAPL": 31, "MSFT": 31}))
    source = make_source(server, limiter, sleeps, page_limit=5)

    source.bars(["AAPL", "MSFT"], "2024-01-02", "2024-02-14")

    assert server.request_count == 13
    assert limiter.acquired == 13
    assert source.stats.http_requests == 13


def test_date_bounds_are_whole_new_york_days(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 10})
    server.add_bars(loaded)
    source = make_source(server, limiter, sleeps)

    got = source.bars(["AAPL"], SESSIONS[2].item(), SESSIONS[4].item())

    assert got.equals(loaded.slice(2, 3))


def test_minute_bars_are_served_from_their_own_timeframe(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    daily = daily_bars({"AAPL": 3})
    opens = np.asarray(TradingCalendar().opens_closes_ns("2024-01-03", "2024-01-03")[0])
    stamps = pa.array(opens[0] + np.arange(3) * 60_000_000_000).cast(BAR_SCHEMA.field("ts").type)
    minutes = daily_bars({"AAPL": 3}, seed=11).set_column(1, BAR_SCHEMA.field("ts"), stamps)
    server.add_bars(daily, timeframe="1Day")
    server.add_bars(minutes, timeframe="1Min")
    source = make_source(server, limiter, sleeps)

    got = source.bars(["AAPL"], "2024-01-03", "2024-01-03", timeframe="1Min")
    latest = StockHistoricalDataClient(KEY, SECRET, url_override=server.url).get_stock_latest_bar(
        StockLatestBarRequest(symbol_or_symbols=["AAPL"])
    )

    assert got.equals(minutes)
    assert server.requests[0].query["timeframe"] == "1Min"
    assert latest["AAPL"].close == minutes.column("close")[-1].as_py()


def test_symbols_are_split_across_requests(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 3, "IBM": 3, "MSFT": 3})
    server.add_bars(loaded)
    source = make_source(server, limiter, sleeps, symbols_per_request=2)

    got = source.bars(["msft", "IBM", "AAPL"], "2024-01-02", "2024-01-05")

    assert got.equals(loaded)
    assert [page.query["symbols"] for page in server.requests] == ["AAPL,IBM", "MSFT"]


def test_server_pages_at_most_limit_bars_across_symbols(server: AlpacaMarketDataServer) -> None:
    server.add_bars(daily_bars({"AAA": 3, "BBB": 5, "CCC": 2}))
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    params: dict[str, str] = {"symbols": "CCC,AAA,BBB", "timeframe": "1Day", "limit": "4"}

    pages = []
    while True:
        body = requests.get(f"{server.url}/v2/stocks/bars", params=params, headers=headers, timeout=5).json()
        pages.append({symbol: len(bars) for symbol, bars in body["bars"].items()})
        if body["next_page_token"] is None:
            break
        params["page_token"] = body["next_page_token"]

    assert pages == [{"AAA": 3, "BBB": 1}, {"BBB": 4}, {"CCC": 2}]


def test_server_pages_descending_in_reverse_time_order(server: AlpacaMarketDataServer) -> None:
    loaded = daily_bars({"AAA": 5})
    server.add_bars(loaded)
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    params = {"symbols": "AAA", "timeframe": "1Day", "limit": "2", "sort": "desc"}

    closes = []
    while True:
        body = requests.get(f"{server.url}/v2/stocks/bars", params=params, headers=headers, timeout=5).json()
        closes.extend(bar["c"] for bar in body["bars"].get("AAA", []))
        if body["next_page_token"] is None:
            break
        params["page_token"] = body["next_page_token"]

    assert closes == loaded.column("close").to_pylist()[::-1]


def test_alpaca_py_models_parse_the_server_bars(server: AlpacaMarketDataServer) -> None:
    loaded = daily_bars({"AAPL": 4})
    server.add_bars(loaded)
    client = StockHistoricalDataClient(KEY, SECRET, url_override=server.url)

    bar_set = client.get_stock_bars(StockBarsRequest(symbol_or_symbols="AAPL", timeframe=TimeFrame.Day))

    assert [bar.close for bar in bar_set["AAPL"]] == loaded.column("close").to_pylist()
    assert [int(bar.timestamp.timestamp()) for bar in bar_set["AAPL"]] == [
        ns // 1_000_000_000 for ns in loaded.column("ts").cast(pa.int64()).to_pylist()
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbols": "AAPL", "timeframe": "7Fortnight"}, "invalid timeframe"),
        ({"symbols": "AAPL", "timeframe": "1Day", "start": "yesterday-ish"}, "invalid start"),
        ({"symbols": "AAPL", "timeframe": "1Day", "limit": "10001"}, "invalid limit"),
        ({"timeframe": "1Day"}, "symbols"),
        ({"symbols": "AAPL", "timeframe": "1Day", "page_token": "garbage"}, "page_token"),
    ],
)
def test_server_rejects_bad_parameters_with_400(
    server: AlpacaMarketDataServer, params: dict[str, str], message: str
) -> None:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}

    response = requests.get(f"{server.url}/v2/stocks/bars", params=params, headers=headers, timeout=5)

    assert response.status_code == 400
    assert message in response.json()["message"]
    assert isinstance(response.json()["code"], int)


# ------------------------------------------------------------------------------------- faults


def test_429_storm_is_retried_with_backoff_then_succeeds(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 31})
    server.add_bars(loaded)
    server.fail_next(4, status=429)
    source = make_source(server, limiter, sleeps, page_limit=10, backoff_s=0.5, max_backoff_s=3.0)

    got = source.bars(["AAPL"], "2024-01-02", "2024-02-14")

    assert got.equals(loaded)
    assert server.status_counts == {429: 4, 200: 4}
    assert len(sleeps) == 4 and source.stats.retries == 4
    for attempt, slept in enumerate(sleeps):
        ceiling = min(3.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= slept <= ceiling
    assert limiter.acquired == server.request_count == 8


def test_retry_after_header_sets_the_wait(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.add_bars(daily_bars({"AAPL": 3}))
    server.fail_next(1, status=429, retry_after_s=7)
    source = make_source(server, limiter, sleeps)

    source.bars(["AAPL"], "2024-01-02", "2024-01-05")

    assert sleeps == [7.0]


def test_only_the_failed_page_is_fetched_again(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 31})
    server.add_bars(loaded)
    server.fail_every(3, status=503)
    source = make_source(server, limiter, sleeps, page_limit=10)

    got = source.bars(["AAPL"], "2024-01-02", "2024-02-14")

    assert got.equals(loaded)
    ok = [record.query.get("page_token") for record in server.requests if record.status == 200]
    assert len(ok) == 4 and len(set(ok)) == 4
    assert server.status_counts[503] == len(sleeps) > 0


def test_server_errors_beyond_max_retries_raise_data_error(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.add_bars(daily_bars({"AAPL": 3}))
    server.fail_next(10, status=500)
    source = make_source(server, limiter, sleeps, max_retries=2)

    with pytest.raises(DataError, match=r"/v2/stocks/bars.*failed after 3 attempts.*HTTP 500"):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05")
    assert server.request_count == 3
    assert len(sleeps) == 2


def test_dropped_connection_is_retried(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = daily_bars({"AAPL": 3})
    server.add_bars(loaded)
    server.drop_connection_next(1)
    source = make_source(server, limiter, sleeps)

    got = source.bars(["AAPL"], "2024-01-02", "2024-01-05")

    assert got.equals(loaded)
    assert server.status_counts == {0: 1, 200: 1}
    assert len(sleeps) == 1


def test_wrong_key_fails_at_once_with_alpacas_message(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.add_bars(daily_bars({"AAPL": 3}))
    source = AlpacaHistoricalSource(
        KEY, "wrong-secret", url_override=server.url, rate_limiter=limiter, sleep=sleeps.append
    )

    with pytest.raises(DataError, match=r"GET /v2/stocks/bars.*HTTP 401: request is not authorized"):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05")
    assert server.requests[0].status == 401
    assert server.request_count == 1 and sleeps == []


def test_other_4xx_fails_at_once(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.respond_next(1, b'{"code": 42210000, "message": "invalid symbol: AAPL!"}', status=422)
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match="HTTP 422: invalid symbol: AAPL!"):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05")
    assert server.request_count == 1 and sleeps == []


def test_malformed_json_body_raises_data_error(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    server.respond_next(1, b'{"bars": {"AAPL": [')
    source = make_source(server, limiter, sleeps)

    expected = r"bars 1Day for AAPL: the response to GET /v2/stocks/bars.*could not be read"
    with pytest.raises(DataError, match=expected):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05")


@pytest.mark.parametrize(
    ("bar", "match"),
    [
        ({"t": "2024-01-02T05:00:00Z", "o": 1.0, "h": 1.0, "l": 1.0, "v": 10.0}, r"MSFT item 0 .*'c'"),
        ({"t": "2024-01-02T05:00:00Z", "o": "1.0", "h": 1, "l": 1, "c": 1, "v": 1}, r"MSFT item 0 field 'o'"),
        ({"o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "v": 10.0}, r"MSFT item 0 .*'t'"),
        ({"t": "2nd of January", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}, r"MSFT item 0 field 't'"),
        ({"t": "2024-01-02T05:00:00Z", "o": 1, "h": 1, "l": 1, "c": 1, "v": 1, "n": 2.5}, r"MSFT .*'n'"),
    ],
)
def test_bar_with_a_missing_or_bad_field_names_symbol_and_field(
    server: AlpacaMarketDataServer,
    limiter: CountingLimiter,
    sleeps: list[float],
    bar: dict[str, object],
    match: str,
) -> None:
    server.respond_next(1, json.dumps({"bars": {"MSFT": [bar]}, "next_page_token": None}).encode())
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match=match):
        source.bars(["MSFT"], "2024-01-02", "2024-01-05")


def test_bad_arguments_are_refused_before_any_request(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match="timeframe '7Fortnight'"):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05", timeframe="7Fortnight")
    with pytest.raises(DataError, match="adjustment 'splits'"):
        source.bars(["AAPL"], "2024-01-02", "2024-01-05", adjustment="splits")
    with pytest.raises(DataError, match="after end"):
        source.bars(["AAPL"], "2024-01-05", "2024-01-02")
    with pytest.raises(DataError, match="not the string"):
        source.bars("AAPL", "2024-01-02", "2024-01-05")
    assert server.request_count == 0


# ------------------------------------------------------------------------------------- trades


def test_trades_keep_nanoseconds_and_conditions(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    base = 1_704_205_800_000_000_000  # 2024-01-02 14:30 UTC
    loaded = pa.table(
        {
            "symbol": ["AAPL"] * 4 + ["MSFT"] * 3,
            "ts": pa.array(
                [base + 1, base + 1, base + 999, base + 1_000_000_123, base, base + 7, base + 8]
            ).cast(TICK_SCHEMA.field("ts").type),
            "trade_id": [11, 12, 13, 14, 1, 2, 3],
            "price": [185.01, 185.02, 184.995, 185.0, 370.1, 370.15, 370.2],
            "size": [100.0, 5.0, 1.0, 300.0, 10.0, 20.0, 30.0],
            "exchange": ["V", "P", "Q", None, "N", "V", "Q"],
            "conditions": ["@,T", "@", None, "@,F,T", "@", "I", "@"],
            "tape": ["C", "C", "C", "C", "C", "C", None],
        },
        schema=TICK_SCHEMA,
    )
    server.add_trades(loaded)
    source = make_source(server, limiter, sleeps, page_limit=3)

    got = source.trades(["MSFT", "AAPL"], "2024-01-02", "2024-01-02")

    assert got.equals(loaded)
    assert server.request_count == 3


# ------------------------------------------------------------------------------------- options


def option_chain() -> pa.Table:
    quote_ts = pa.array([1_704_229_199_123_456_789] * 4 + [1_704_229_100_000_000_000]).cast(
        OPTION_CHAIN_SCHEMA.field("quote_ts").type
    )
    return pa.table(
        {
            "underlying": ["AAPL"] * 5,
            "symbol": [
                "AAPL240119C00190000",
                "AAPL240119P00190000",
                "AAPL240216C00192500",
                "AAPL240216P00192500",
                "AAPL260618C00250000",
            ],
            "quote_ts": quote_ts,
            "expiry": [date(2024, 1, 19)] * 2 + [date(2024, 2, 16)] * 2 + [date(2026, 6, 18)],
            "strike": [190.0, 190.0, 192.5, 192.5, 250.0],
            "right": ["C", "P", "C", "P", "C"],
            "bid": [1.5, 3.1, 4.2, 5.55, 0.05],
            "ask": [1.6, 3.25, 4.35, 5.7, 0.1],
            "bid_size": [10.0, 3.0, 1.0, 7.0, 100.0],
            "ask_size": [12.0, 4.0, 2.0, 9.0, 50.0],
            "last": [1.55, None, 4.3, 5.6, 0.07],
            "volume": [1200.0, None, 45.0, None, 3.0],
            "open_interest": pa.nulls(5, pa.float64()),
            "underlying_price": pa.nulls(5, pa.float64()),
            "iv": [0.21, 0.23, 0.2, 0.22, None],
            "delta": [0.45, -0.55, 0.4, -0.6, None],
            "gamma": [0.05, 0.05, 0.03, 0.03, None],
            "theta": [-0.3, -0.25, -0.1, -0.09, None],
            "vega": [0.12, 0.12, 0.2, 0.2, None],
            "rho": [0.01, -0.01, 0.02, -0.02, None],
        },
        schema=OPTION_CHAIN_SCHEMA,
    )


def test_option_chain_is_parsed_from_occ_symbols(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = option_chain()
    server.add_option_chain(loaded)
    source = make_source(server, limiter, sleeps, page_limit=2)

    got = source.option_chain("AAPL")

    assert got.equals(loaded)
    assert [record.path for record in server.requests] == ["/v1beta1/options/snapshots/AAPL"] * 3
    assert limiter.acquired == 3


def test_option_chain_filters_and_alpaca_py_models(server: AlpacaMarketDataServer) -> None:
    server.add_option_chain(option_chain())
    client = OptionHistoricalDataClient(KEY, SECRET, url_override=server.url)

    request = OptionChainRequest(underlying_symbol="AAPL", type="put", strike_price_gte=191)
    puts = client.get_option_chain(request)

    assert list(puts) == ["AAPL240216P00192500"]
    assert puts["AAPL240216P00192500"].greeks.delta == -0.6
    assert puts["AAPL240216P00192500"].latest_quote.ask_price == 5.7


def test_option_chain_with_a_bad_occ_symbol_names_it(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    body = b'{"snapshots": {"AAPL2401X": {"latestQuote": {"t": "2024-01-02T20:00:00Z", "bp": 1}}}}'
    server.respond_next(1, body)
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match="AAPL2401X"):
        source.option_chain("AAPL")


def test_option_chain_with_a_non_numeric_greek_names_contract_and_field(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    body = (
        b'{"snapshots": {"AAPL240119C00190000": {"latestQuote": {"t": "2024-01-02T20:00:00Z", "bp": 1},'
        b' "greeks": {"delta": "high"}}}}'
    )
    server.respond_next(1, body)
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match=r"AAPL240119C00190000 field 'greeks.delta'"):
        source.option_chain("AAPL")


# ------------------------------------------------------------------------------------- corporate actions


def corporate_actions() -> pa.Table:
    def split(symbol: str, ex_date: date, ratio: float) -> dict[str, object]:
        return {"symbol": symbol, "ex_date": ex_date, "action": "split", "ratio": ratio, "cash": None}

    def dividend(symbol: str, ex_date: date, cash: float) -> dict[str, object]:
        return {"symbol": symbol, "ex_date": ex_date, "action": "dividend", "ratio": None, "cash": cash}

    rows = [
        split("AAPL", date(2020, 8, 31), 4.0),
        dividend("AAPL", date(2024, 2, 9), 0.24),
        dividend("AAPL", date(2024, 5, 10), 0.25),
        split("GE", date(2021, 8, 2), 0.125),
        split("SHOP", date(2022, 6, 29), 10.0),
        split("XYZ", date(2023, 3, 1), 1.5),
        dividend("MSFT", date(2024, 2, 14), 0.75),
        dividend("IBM", date(2024, 2, 8), 1.66),
    ]
    return pa.Table.from_pylist(rows, schema=CORPORATE_ACTION_SCHEMA)


def test_corporate_actions_are_parsed_and_cut_to_ex_dates(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    loaded = corporate_actions()
    server.add_corporate_actions(loaded)
    source = make_source(server, limiter, sleeps, page_limit=2)
    symbols = ["AAPL", "GE", "SHOP", "XYZ", "MSFT"]

    got = source.corporate_actions(symbols, date(2020, 1, 1), date(2024, 2, 14))

    in_range = pc.and_(
        pc.is_in(loaded.column("symbol"), pa.array(symbols)),
        pc.less_equal(loaded.column("ex_date"), pa.scalar(date(2024, 2, 14), pa.date32())),
    )
    expected = loaded.filter(in_range).sort_by([("symbol", "ascending"), ("ex_date", "ascending")])
    assert got.equals(expected)  # MSFT's dividend is paid after `end` yet is found
    assert server.request_count >= 3


def test_same_day_dividends_are_added(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    body = (
        b'{"corporate_actions": {"cash_dividends": ['
        b'{"symbol": "COST", "ex_date": "2023-12-27", "rate": 15.0, "special": true},'
        b'{"symbol": "COST", "ex_date": "2023-12-27", "rate": 1.02, "special": false}]},'
        b' "next_page_token": null}'
    )
    server.respond_next(1, body)
    source = make_source(server, limiter, sleeps)

    got = source.corporate_actions(["COST"], date(2023, 12, 1), date(2023, 12, 31))

    assert got.to_pylist() == [
        {"symbol": "COST", "ex_date": date(2023, 12, 27), "action": "dividend", "ratio": None, "cash": 16.02}
    ]


def test_split_without_rates_names_symbol_and_field(
    server: AlpacaMarketDataServer, limiter: CountingLimiter, sleeps: list[float]
) -> None:
    body = (
        b'{"corporate_actions": {"forward_splits":'
        b' [{"symbol": "NVDA", "ex_date": "2024-06-10", "new_rate": 10}]}}'
    )
    server.respond_next(1, body)
    source = make_source(server, limiter, sleeps)

    with pytest.raises(DataError, match=r"NVDA forward_splits field 'old_rate'"):
        source.corporate_actions(["NVDA"], date(2024, 1, 1), date(2024, 12, 31))


def test_alpaca_py_models_parse_the_server_corporate_actions(server: AlpacaMarketDataServer) -> None:
    server.add_corporate_actions(corporate_actions())
    client = CorporateActionsClient(KEY, SECRET, url_override=server.url)

    result = client.get_corporate_actions(
        CorporateActionsRequest(symbols=["GE", "AAPL"], start=date(2020, 1, 1), end=date(2024, 12, 31))
    )

    (reverse,) = result["reverse_splits"]
    assert (reverse.symbol, reverse.old_rate, reverse.new_rate) == ("GE", 8.0, 1.0)
    assert sorted(d.rate for d in result["cash_dividends"]) == [0.24, 0.25]
