"""MLSignalStrategy asks a signal endpoint for scores, holds the ends, and holds positions when it fails."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from amcp.data.calendar import midnight_ns
from amcp.domain import BarBatch, TargetWeight
from amcp.errors import ConfigError
from amcp.models.wire import ARROW_CONTENT_TYPE, DecodedPanel, decode_request, decode_table, encode_request
from amcp.strategies.ml_signal import (
    HttpSignalClient,
    MLSignalConfig,
    MLSignalStrategy,
    SignalAnswer,
    SignalUnavailableError,
)

SYMBOLS = ("A", "B", "C", "D", "E", "F")
DAYS = np.busday_offset(np.datetime64("2021-03-01"), np.arange(40), roll="forward")


def config(**overrides: object) -> MLSignalConfig:
    values: dict[str, object] = {"kind": "ml_signal", "id": "ml", "history_bars": 3, "rebalance_bars": 2,
                                 "quantile": 0.34, "timeout_s": 0.5}
    values.update(overrides)
    return MLSignalConfig.model_validate(values)


def per_symbol(body: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Each symbol's columns ``t o h l c v`` of a strategy's body, whichever layout it has (a panel's
    matrix column ``j`` is ``symbols[j]``), in the body's symbol order."""
    assert ("panel" in body) != ("bars" in body), f"a body has either panel or bars, got {sorted(body)}"
    if "bars" in body:
        return dict(body["bars"])
    panel = body["panel"]
    dates, symbols = panel["t"], list(panel["symbols"])
    assert isinstance(dates, np.ndarray) and dates.dtype == np.dtype("datetime64[D]") and dates.ndim == 1
    for key in "ohlcv":
        assert panel[key].shape == (dates.size, len(symbols)) and panel[key].dtype == np.float64, key
    return {s: {"t": dates, **{key: panel[key][:, j] for key in "ohlcv"}} for j, s in enumerate(symbols)}


class FakeEndpoint:
    """Scores each symbol by ``score_of(symbol)``; fails while ``failing``; records every body."""

    def __init__(self, score_of: Callable[[str], float | None]) -> None:
        self.score_of = score_of
        self.failing = False
        self.bodies: list[Mapping[str, Any]] = []

    def scores(self, body: Mapping[str, Any], timeout_s: float) -> SignalAnswer:
        self.bodies.append(body)
        if self.failing:
            raise SignalUnavailableError("connection refused")
        return SignalAnswer("v0001-abcdef12", {s: self.score_of(s) for s in per_symbol(body)})


def batch(t: int, close: np.ndarray | None = None) -> BarBatch:
    values = np.asarray(close if close is not None else 100.0 + t + np.arange(len(SYMBOLS)), dtype=np.float64)
    ts = int(midnight_ns(np.array([DAYS[t]]))[0])
    return BarBatch(ts, SYMBOLS, values - 0.5, values + 1, values - 1, values, np.full(len(SYMBOLS), 1e4))


RANK = {"A": 0.1, "B": 0.6, "C": -0.3, "D": 0.9, "E": -0.8, "F": 0.2}


def weights(intents: list[Any]) -> dict[str, float]:
    return {i.symbol: i.weight for i in intents if isinstance(i, TargetWeight)}


def test_nothing_is_asked_before_history_bars_and_the_first_body_is_point_in_time() -> None:
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(), SYMBOLS, endpoint)

    early = [strategy.on_bars(batch(t)) for t in range(2)]
    strategy.on_bars(batch(2))

    assert early == [[], []] and len(endpoint.bodies) == 1
    body = endpoint.bodies[0]
    bars = per_symbol(body)
    assert body["as_of"] == str(DAYS[2]) and list(bars) == list(SYMBOLS)
    assert bars["A"]["t"].astype(str).tolist() == [str(d) for d in DAYS[:3]]
    assert bars["C"]["c"].tolist() == [102.0, 103.0, 104.0]
    last = {key: column[-1] for key, column in bars["C"].items()}
    assert last == {"t": DAYS[2], "o": 103.5, "h": 105.0, "l": 103.0, "c": 104.0, "v": 1e4}
    # The market proxy: the equal-weighted index of the universe's closes (1, then the mean daily return).
    closes = np.array([100.0 + t + np.arange(len(SYMBOLS)) for t in range(3)])
    assert body["market"]["t"].tolist() == DAYS[:3].tolist()
    np.testing.assert_allclose(body["market"]["c"], np.cumprod([1.0, *(1 + (closes[1:] / closes[:-1] - 1).mean(1))]))


def test_long_short_holds_the_best_and_worst_quantile() -> None:
    strategy = MLSignalStrategy(config(), SYMBOLS, FakeEndpoint(RANK.get))
    for t in range(2):
        strategy.on_bars(batch(t))

    intents = strategy.on_bars(batch(2))

    # 6 scored, quantile 0.34 → 2 a side: D, B long; E, C short
    assert weights(intents) == {"D": 0.25, "B": 0.25, "E": -0.25, "C": -0.25}
    assert strategy.held == {"D": 1, "B": 1, "E": -1, "C": -1} and strategy.last_version == "v0001-abcdef12"


def test_a_tie_spanning_both_ends_holds_no_book_and_exits_what_was_held() -> None:
    scores = dict(RANK)
    endpoint = FakeEndpoint(lambda s: scores[s])
    strategy = MLSignalStrategy(config(rebalance_bars=1), SYMBOLS, endpoint)
    for t in range(2):
        strategy.on_bars(batch(t))
    first = weights(strategy.on_bars(batch(2)))
    scores.update(dict.fromkeys(SYMBOLS, 0.0))  # the model now tells nothing apart
    flat = weights(strategy.on_bars(batch(3)))
    held_when_flat = strategy.held
    scores.update(A=1.0, B=1.0, C=0.5, D=0.5, E=0.5, F=0.5)  # k = 2: the 2nd best (1.0) beats the 2nd worst
    split = weights(strategy.on_bars(batch(4)))

    assert first == {"D": 0.25, "B": 0.25, "E": -0.25, "C": -0.25}
    assert flat == dict.fromkeys(first, 0.0) and held_when_flat == {}
    assert split["A"] == split["B"] == 0.25 and sum(w < 0 for w in split.values()) == 2


def test_long_only_holds_the_top_k_and_exits_what_drops_out() -> None:
    scores = dict(RANK)
    strategy = MLSignalStrategy(config(portfolio="long_only", top_k=2), SYMBOLS, FakeEndpoint(scores.get))
    for t in range(2):
        strategy.on_bars(batch(t))
    first = strategy.on_bars(batch(2))
    scores["A"] = 5.0

    strategy.on_bars(batch(3))  # between rebalances
    second = strategy.on_bars(batch(4))

    assert weights(first) == {"D": 0.5, "B": 0.5}
    assert weights(second) == {"B": 0.0, "A": 0.5, "D": 0.5}


def test_requests_are_sent_every_rebalance_bars_cycles() -> None:
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(rebalance_bars=3), SYMBOLS, endpoint)

    asked_at = []
    for t in range(12):
        before = len(endpoint.bodies)
        strategy.on_bars(batch(t))
        if len(endpoint.bodies) > before:
            asked_at.append(t)

    assert asked_at == [2, 5, 8, 11]


def test_a_failing_endpoint_holds_positions_counts_and_retries_next_cycle() -> None:
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(rebalance_bars=5), SYMBOLS, endpoint)
    for t in range(3):
        strategy.on_bars(batch(t))
    held = strategy.held
    endpoint.failing = True

    during = [strategy.on_bars(batch(t)) for t in range(3, 10)]  # rebalance due at 7
    endpoint.failing = False
    retried = strategy.on_bars(batch(10))

    assert during == [[]] * 7 and strategy.held == held
    assert strategy.failures == 3  # cycles 7, 8, 9: each retried
    assert weights(retried) == {"D": 0.25, "B": 0.25, "E": -0.25, "C": -0.25} and len(endpoint.bodies) == 5


def test_too_few_scores_count_as_a_failure() -> None:
    endpoint = FakeEndpoint(lambda s: 1.0 if s in "AB" else None)
    strategy = MLSignalStrategy(config(min_scored=3), SYMBOLS, endpoint)
    for t in range(2):
        strategy.on_bars(batch(t))

    assert strategy.on_bars(batch(2)) == [] and strategy.failures == 1 and strategy.held == {}


def test_a_held_symbol_without_a_bar_is_not_sent_and_is_exited() -> None:
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(), SYMBOLS, endpoint)
    for t in range(3):
        strategy.on_bars(batch(t))
    strategy.on_bars(batch(3))
    close = 104.0 + np.arange(len(SYMBOLS))
    close[SYMBOLS.index("D")] = np.nan

    intents = strategy.on_bars(batch(4, close))

    assert "D" not in per_symbol(endpoint.bodies[-1]) and len(per_symbol(endpoint.bodies[-1])) == 5
    assert weights(intents)["D"] == 0.0 and strategy.held.get("D") is None


def test_state_round_trip_continues_identically() -> None:
    scores = {s: float(i % 3) - 1 + 0.1 * i for i, s in enumerate(SYMBOLS)}
    first = MLSignalStrategy(config(), SYMBOLS, FakeEndpoint(scores.get))
    for t in range(4):
        first.on_bars(batch(t))
    second = MLSignalStrategy(config(), SYMBOLS, FakeEndpoint(scores.get))
    second.load_state(first.state())
    twin_endpoint = FakeEndpoint(scores.get)
    second.client = twin_endpoint
    first_endpoint = FakeEndpoint(scores.get)
    first.client = first_endpoint

    assert [first.on_bars(batch(t)) for t in range(4, 9)] == [second.on_bars(batch(t)) for t in range(4, 9)]
    assert first_endpoint.bodies and len(first_endpoint.bodies) == len(twin_endpoint.bodies)
    assert [encode_request(b) for b in first_endpoint.bodies] == [encode_request(b) for b in twin_endpoint.bodies]


def test_a_universe_smaller_than_min_scored_is_refused() -> None:
    with pytest.raises(ConfigError, match="min_scored 7 exceeds"):
        MLSignalStrategy(config(min_scored=7), SYMBOLS, FakeEndpoint(RANK.get))


def fields_of(sent: BarBatch, symbol: str) -> dict[str, float]:
    """The o h l c v a batch carried for ``symbol``."""
    j = sent.symbols.index(symbol)
    return dict(zip("ohlcv", (float(column[j]) for column in (sent.open, sent.high, sent.low, sent.close,
                                                               sent.volume))))


def gapped(t: int, missing: Mapping[int, str]) -> BarBatch:
    """``batch(t)`` without a bar for ``missing[t]`` (if any)."""
    close = 100.0 + t + np.arange(len(SYMBOLS))
    if t in missing:
        close[SYMBOLS.index(missing[t])] = np.nan
    return batch(t, close)


def test_with_full_history_the_body_is_a_panel_of_the_last_history_bars_in_universe_order() -> None:
    universe = ("F", "D", "B", "A", "C", "E")  # not the batches' order
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(history_bars=3, rebalance_bars=2), universe, endpoint)
    # A lacks a bar at 1: not eligible at 2 (2 bars), eligible at 4 with a full window 2..4 (the gap is
    # older).
    # B lacks a bar at 4: not chosen then, so its gap inside the window does not matter.
    sent = [gapped(t, {1: "A", 4: "B"}) for t in range(5)]
    for one in sent:
        strategy.on_bars(one)

    assert len(endpoint.bodies) == 2  # cycles 2 and 4; asserted after both so later bars did not leak in
    for body, as_of, chosen in ((endpoint.bodies[0], 2, ["F", "D", "B", "C", "E"]),
                                (endpoint.bodies[1], 4, ["F", "D", "A", "C", "E"])):
        assert "bars" not in body and body["as_of"] == str(DAYS[as_of])
        panel = body["panel"]
        assert panel["symbols"] == chosen
        assert panel["t"].dtype == np.dtype("datetime64[D]")
        assert panel["t"].tolist() == DAYS[as_of - 2 : as_of + 1].tolist()
        # point in time: nothing after as_of
        assert panel["t"].max() == np.datetime64(body["as_of"]) == body["market"]["t"].max()
        for key in "ohlcv":
            expected = [[fields_of(sent[t], s)[key] for s in chosen] for t in range(as_of - 2, as_of + 1)]
            np.testing.assert_array_equal(panel[key], np.array(expected))
            assert panel[key].dtype == np.float64 and panel[key].shape == (3, len(chosen))
        assert body["market"]["t"].tolist() == DAYS[: as_of + 1].tolist()


def run_gapped(missing: Mapping[int, str], cycles: int = 5) -> list[Mapping[str, Any]]:
    endpoint = FakeEndpoint(RANK.get)
    strategy = MLSignalStrategy(config(history_bars=3, rebalance_bars=2), SYMBOLS, endpoint)
    for t in range(cycles):
        strategy.on_bars(gapped(t, missing))
    return endpoint.bodies


def test_a_chosen_symbol_missing_a_bar_in_the_window_falls_back_to_bars_with_the_same_data() -> None:
    with_gap = run_gapped({3: "C"})[-1]  # C: bars at 0, 1, 2, 4 -> chosen at 4, window 2..4 has a gap
    full = run_gapped({})[-1]

    assert "panel" not in with_gap and "panel" in full and with_gap["as_of"] == full["as_of"] == str(DAYS[4])
    bars, panel = per_symbol(with_gap), per_symbol(full)
    assert list(bars) == list(SYMBOLS) == list(panel)
    for symbol in SYMBOLS:
        if symbol == "C":
            continue
        assert bars[symbol]["t"].dtype == panel[symbol]["t"].dtype == np.dtype("datetime64[D]")
        for key in ("t", *"ohlcv"):
            assert bars[symbol][key].dtype == panel[symbol][key].dtype, (symbol, key)
            np.testing.assert_array_equal(bars[symbol][key], panel[symbol][key], err_msg=f"{symbol} {key}")
    # C's own last 3 bars (skipping the gap), oldest first, nothing after as_of.
    assert bars["C"]["t"].tolist() == DAYS[[1, 2, 4]].tolist()
    for key in "ohlcv":
        assert bars["C"][key].tolist() == [fields_of(gapped(t, {}), "C")[key] for t in (1, 2, 4)]
    assert with_gap["market"]["t"].tolist() == full["market"]["t"].tolist() == DAYS[:5].tolist()


# --------------------------------------------------------------------------- HTTP client


def _aligned_market(columns: dict[str, list[Any]], market: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """``columns`` with the market proxy's close on each of its dates (the Arrow wire's per-row market)."""
    if market is not None:
        close = dict(zip((str(d) for d in market["t"]), (float(c) for c in market["c"])))
        columns["market"] = [close[d] for d in columns["t"]]
    return columns


def listed(body: Mapping[str, Any]) -> dict[str, Any]:
    """A strategy's (numpy) body as the fake service reads it: ``{"as_of", "bars": {symbol: lists}}``."""
    return {"as_of": body["as_of"], "bars": {
        symbol: _aligned_market({"t": [str(d) for d in columns["t"]],
                                 **{key: columns[key].tolist() for key in "ohlcv"}}, body.get("market"))
        for symbol, columns in per_symbol(body).items()}}


def wire_columns(raw: bytes, content_type: str) -> tuple[str, dict[str, Any]]:
    """The layout (``panel`` or ``bars``) of a request body and its per-symbol columns as lists:
    ``{"as_of", "bars": {symbol: {"t": [iso dates], "o": [...], ..., "market": [...] (if sent)}}}``."""
    if content_type == ARROW_CONTENT_TYPE:
        limits = {"max_symbols": 100, "max_rows": 10_000}
        layout = "panel" if isinstance(decode_table(raw, **limits), DecodedPanel) else "bars"
        as_of, decoded = decode_request(raw, **limits)
        return layout, {"as_of": as_of, "bars": {
            b.symbol: {"t": [str(d) for d in b.dates], **{k: c.tolist() for k, c in zip("ohlcv", b.columns)},
                       **({} if b.market is None else {"market": b.market.tolist()})}
            for b in decoded}}
    body = json.loads(raw)
    if "bars" in body:
        return "bars", {"as_of": body["as_of"], "bars": {
            symbol: _aligned_market(dict(columns), body.get("market"))
            for symbol, columns in body["bars"].items()}}
    panel = body["panel"]
    return "panel", {"as_of": body["as_of"], "bars": {
        symbol: _aligned_market(
            {"t": list(panel["t"]), **{key: [row[j] for row in panel[key]] for key in "ohlcv"}},
            body.get("market"))
        for j, symbol in enumerate(panel["symbols"])}}


@pytest.fixture
def fake_service(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """A local HTTP server answering POST /v1/signals as ``behaviour['mode']`` says (read per request).

    Speaks HTTP/1.0 (one request per connection) unless parametrized (indirect) with "HTTP/1.1"
    (keep-alive). Records each request's ``(path, content type, per-symbol columns)`` in ``bodies``,
    its layout in ``layouts`` and each accepted connection's client port in ``connections``. Modes:
    ``ok``; ``bad`` (400); ``slow`` (answers after 1 s); ``drop`` (answers, then closes the connection
    without a ``Connection: close`` header); ``hangup`` (closes the connection without answering).
    """
    behaviour: dict[str, Any] = {"mode": "ok", "bodies": [], "layouts": [], "connections": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = getattr(request, "param", "HTTP/1.0")

        def setup(self) -> None:
            super().setup()
            behaviour["connections"].append(self.client_address[1])

        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            mode = behaviour["mode"]
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            layout, body = wire_columns(raw, self.headers["Content-Type"])
            behaviour["layouts"].append(layout)
            behaviour["bodies"].append((self.path, self.headers["Content-Type"], body))
            if mode == "hangup":
                self.close_connection = True
                return
            if mode == "slow":
                time.sleep(1.0)
                self.close_connection = True  # the client left: do not wait for another request
            status, answer = ((400, {"error": "missing history: the model needs 61 bars"})
                              if mode == "bad" else
                              (200, {"version": "v0002-12345678", "as_of": body["as_of"],
                                     "scores": {s: (None if s == "B" else 0.5) for s in body["bars"]}}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return  # the client timed out and left ("slow" mode)
            if mode == "drop":
                self.close_connection = True  # an idle keep-alive connection the server drops, unannounced

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    behaviour["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield behaviour
    finally:
        server.shutdown()
        server.server_close()


KEEP_ALIVE = pytest.mark.parametrize("fake_service", ["HTTP/1.1"], indirect=True)

BODY = {"as_of": "2021-03-03", "bars": {
    "A": {"t": ["2021-03-02", "2021-03-03"], "o": [1.0, 2.0], "h": [2.0, 3.0], "l": [0.5, 1.5], "c": [1.5, 2.5],
          "v": [100.0, 0.0]},
    "B": {"t": ["2021-03-03"], "o": [10.0], "h": [11.0], "l": [9.0], "c": [10.5], "v": [7.0]}}}
ANSWER = SignalAnswer("v0002-12345678", {"A": 0.5, "B": None})


@pytest.mark.parametrize(("wire", "content_type"), [("arrow", ARROW_CONTENT_TYPE), ("json", "application/json")])
def test_http_client_posts_to_v1_signals_and_parses_the_scores(fake_service: dict[str, Any], wire: str,
                                                               content_type: str) -> None:
    answer = HttpSignalClient(fake_service["url"] + "/", wire=wire).scores(BODY, timeout_s=2.0)

    assert answer == ANSWER
    assert fake_service["bodies"] == [("/v1/signals", content_type, BODY)]
    assert fake_service["layouts"] == ["bars"]


def test_http_client_keeps_the_base_urls_path_prefix(fake_service: dict[str, Any]) -> None:
    client = HttpSignalClient(fake_service["url"] + "/scoring/", wire="json")

    assert client.scores(BODY, timeout_s=2.0) == ANSWER
    assert client.url == fake_service["url"] + "/scoring/v1/signals"
    assert fake_service["bodies"] == [("/scoring/v1/signals", "application/json", BODY)]


def test_http_client_sends_numpy_columns_as_json_lists(fake_service: dict[str, Any]) -> None:
    arrays = {"as_of": BODY["as_of"], "bars": {
        s: {k: (np.array(v, dtype="datetime64[D]") if k == "t" else np.array(v)) for k, v in bars.items()}
        for s, bars in BODY["bars"].items()}}

    HttpSignalClient(fake_service["url"], wire="json").scores(arrays, timeout_s=2.0)
    HttpSignalClient(fake_service["url"], wire="arrow").scores(arrays, timeout_s=2.0)

    assert [body for _, _, body in fake_service["bodies"]] == [BODY, BODY]


@pytest.mark.parametrize("layout", ["panel", "bars"])
def test_a_strategy_body_reaches_the_service_the_same_over_json_and_arrow(fake_service: dict[str, Any],
                                                                          layout: str) -> None:
    body = run_gapped({} if layout == "panel" else {3: "C"})[-1]
    assert layout in body
    encoded = encode_request(body)  # what the Arrow client sends, decoded directly
    as_of, decoded = decode_request(encoded, max_symbols=100, max_rows=10_000)

    answers = [HttpSignalClient(fake_service["url"], wire=wire).scores(body, timeout_s=2.0)
               for wire in ("json", "arrow")]

    expected = listed(body)
    assert answers == [SignalAnswer("v0002-12345678", {s: (None if s == "B" else 0.5) for s in SYMBOLS})] * 2
    assert fake_service["layouts"] == [layout, layout]
    assert fake_service["bodies"] == [("/v1/signals", "application/json", expected),
                                      ("/v1/signals", ARROW_CONTENT_TYPE, expected)]
    assert as_of == str(DAYS[4]) and [b.symbol for b in decoded] == list(SYMBOLS)
    decoded_table = decode_table(encoded, max_symbols=100, max_rows=10_000)
    assert isinstance(decoded_table, DecodedPanel) == (layout == "panel")
    assert len(expected["bars"]["A"]["t"]) == 3 and len(expected["bars"]["A"]["market"]) == 3


def test_http_client_refuses_an_unknown_wire_format() -> None:
    with pytest.raises(ConfigError, match="wire must be"):
        HttpSignalClient("http://127.0.0.1:9", wire="xml")


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "127.0.0.1:8000", "http://", "https:///v1", "",
                                 "http://h:8000?x=1", "http://h:8000/#frag"])
def test_http_client_refuses_a_url_that_is_not_http(url: str) -> None:
    with pytest.raises(ConfigError, match=r"must be http\(s\)://host"):
        HttpSignalClient(url)


@pytest.mark.parametrize("url", ["http://h:abc", "http://h:99999", "http://[::1", "http://127.0.0.1:8000x"])
def test_http_client_refuses_a_malformed_port_or_host_as_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="is not a valid URL"):
        HttpSignalClient(url)
    with pytest.raises(ConfigError, match="is not a valid URL"):
        MLSignalStrategy(config(endpoint=url), SYMBOLS)


@pytest.mark.parametrize(("mode", "message"), [("bad", "answered 400: .*missing history"),
                                               ("slow", "unreachable within 0.2 s")])
def test_http_client_reports_error_answers_and_timeouts(fake_service: dict[str, Any], mode: str,
                                                        message: str) -> None:
    fake_service["mode"] = mode

    with pytest.raises(SignalUnavailableError, match=message):
        HttpSignalClient(fake_service["url"]).scores(BODY, timeout_s=0.2)


@pytest.mark.parametrize(("fake_service", "connections"), [("HTTP/1.1", 1), ("HTTP/1.0", 2)],
                         indirect=["fake_service"])
def test_http_client_keeps_one_connection_across_calls(fake_service: dict[str, Any],
                                                       connections: int) -> None:
    client = HttpSignalClient(fake_service["url"])
    try:
        answers = [client.scores(BODY, timeout_s=2.0) for _ in range(2)]
        ports_before_close = list(fake_service["connections"])
        client.close()
        answers.append(client.scores(BODY, timeout_s=2.0))  # close() dropped it: a new one
    finally:
        client.close()

    assert answers == [ANSWER] * 3 and len(fake_service["bodies"]) == 3
    # HTTP/1.1: one TCP connection for both calls; HTTP/1.0 closes after each answer (the client follows)
    assert len(ports_before_close) == len(set(ports_before_close)) == connections
    assert len(fake_service["connections"]) == len(set(fake_service["connections"])) == connections + 1


@KEEP_ALIVE
def test_http_client_resends_once_when_the_server_dropped_the_kept_connection(
        fake_service: dict[str, Any]) -> None:
    fake_service["mode"] = "drop"
    client = HttpSignalClient(fake_service["url"])
    try:
        first = client.scores(BODY, timeout_s=2.0)
        second = client.scores(BODY, timeout_s=2.0)  # the kept connection is closed: resent on a new one
    finally:
        client.close()

    assert first == second == ANSWER
    assert len(fake_service["bodies"]) == 2  # the stale connection never delivered the second request
    assert len(fake_service["connections"]) == len(set(fake_service["connections"])) == 2


@KEEP_ALIVE
def test_http_client_resends_a_dropped_request_only_once(fake_service: dict[str, Any]) -> None:
    fake_service["mode"] = "drop"
    client = HttpSignalClient(fake_service["url"])
    try:
        client.scores(BODY, timeout_s=2.0)
        fake_service["mode"] = "hangup"  # the resend on a new connection fails too
        with pytest.raises(SignalUnavailableError, match="unreachable within 2.0 s: RemoteDisconnected"):
            client.scores(BODY, timeout_s=2.0)
        fake_service["mode"] = "ok"
        third = client.scores(BODY, timeout_s=2.0)
    finally:
        client.close()

    assert third == ANSWER
    assert len(fake_service["bodies"]) == 3  # first, the one resend, third
    assert len(fake_service["connections"]) == len(set(fake_service["connections"])) == 3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_fresh_connection_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[tuple[str, int]] = []
    connect = http.client.HTTPConnection.connect

    def counting(self: http.client.HTTPConnection) -> None:
        attempts.append((self.host, self.port))
        connect(self)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", counting)
    port = _free_port()
    client = HttpSignalClient(f"http://127.0.0.1:{port}")

    with pytest.raises(SignalUnavailableError, match=r"unreachable within 0.5 s: ConnectionRefusedError"):
        client.scores(BODY, timeout_s=0.5)

    assert attempts == [("127.0.0.1", port)]


@KEEP_ALIVE
def test_a_fresh_connection_closed_without_an_answer_is_not_retried(fake_service: dict[str, Any]) -> None:
    fake_service["mode"] = "hangup"
    client = HttpSignalClient(fake_service["url"])
    try:
        with pytest.raises(SignalUnavailableError, match="unreachable within 2.0 s: RemoteDisconnected"):
            client.scores(BODY, timeout_s=2.0)
        requests_after_failure = len(fake_service["bodies"])
        fake_service["mode"] = "ok"
        answer = client.scores(BODY, timeout_s=2.0)
    finally:
        client.close()

    assert requests_after_failure == 1 and answer == ANSWER
    assert len(fake_service["connections"]) == len(set(fake_service["connections"])) == 2


@KEEP_ALIVE
def test_after_a_timeout_the_next_call_works_on_a_new_connection(fake_service: dict[str, Any]) -> None:
    client = HttpSignalClient(fake_service["url"])
    try:
        first = client.scores(BODY, timeout_s=2.0)
        fake_service["mode"] = "slow"
        started = time.monotonic()
        with pytest.raises(SignalUnavailableError, match=r"unreachable within 0.2 s: TimeoutError"):
            client.scores(BODY, timeout_s=0.2)  # on the kept connection: a timeout is not resent
        waited = time.monotonic() - started
        requests_after_timeout = len(fake_service["bodies"])
        fake_service["mode"] = "ok"
        third = client.scores(BODY, timeout_s=2.0)
    finally:
        client.close()

    assert first == third == ANSWER and waited < 0.8
    assert requests_after_timeout == 2 and len(fake_service["bodies"]) == 3
    assert len(fake_service["connections"]) == len(set(fake_service["connections"])) == 2


def test_strategy_over_http_holds_when_the_service_is_down() -> None:
    strategy = MLSignalStrategy(config(endpoint="http://127.0.0.1:9"), SYMBOLS)
    for t in range(2):
        strategy.on_bars(batch(t))

    assert strategy.on_bars(batch(2)) == [] and strategy.failures == 1


@KEEP_ALIVE
def test_strategy_over_http_sends_panels_on_one_connection(fake_service: dict[str, Any]) -> None:
    strategy = MLSignalStrategy(config(endpoint=fake_service["url"], rebalance_bars=1), SYMBOLS)
    assert isinstance(strategy.client, HttpSignalClient)
    try:
        intents = [strategy.on_bars(batch(t)) for t in range(4)]
    finally:
        strategy.client.close()

    # B scores None, the rest 0.5: a tie across both ends, so no book; but both requests were answered
    assert intents == [[], [], [], []] and strategy.failures == 0
    assert strategy.last_version == "v0002-12345678"
    assert fake_service["layouts"] == ["panel", "panel"]
    assert [body["as_of"] for _, _, body in fake_service["bodies"]] == [str(DAYS[2]), str(DAYS[3])]
    assert len(fake_service["connections"]) == 1
