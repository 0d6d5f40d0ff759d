"""MLSignalStrategy asks a signal endpoint for scores, holds the ends, and holds positions when it fails."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from amcp.data.calendar import midnight_ns
from amcp.domain import BarBatch, TargetWeight
from amcp.errors import ConfigError
from amcp.models.wire import ARROW_CONTENT_TYPE, decode_request, encode_request
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
        return SignalAnswer("v0001-abcdef12", {s: self.score_of(s) for s in body["bars"]})


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
    assert body["as_of"] == str(DAYS[2])
    assert body["bars"]["A"]["t"].astype(str).tolist() == [str(d) for d in DAYS[:3]]
    assert body["bars"]["C"]["c"].tolist() == [102.0, 103.0, 104.0]
    last = {key: column[-1] for key, column in body["bars"]["C"].items()}
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

    assert "D" not in endpoint.bodies[-1]["bars"]
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


# --------------------------------------------------------------------------- HTTP client


@pytest.fixture
def fake_service() -> Iterator[dict[str, Any]]:
    """A local HTTP server answering POST /v1/signals as ``behaviour['mode']`` says."""
    behaviour: dict[str, Any] = {"mode": "ok", "bodies": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers["Content-Type"] == ARROW_CONTENT_TYPE:
                as_of, decoded = decode_request(raw, max_symbols=100, max_rows=10_000)
                body = {"as_of": as_of, "bars": {b.symbol: {"t": [str(d) for d in b.dates],
                                                            **{k: c.tolist() for k, c in zip("ohlcv", b.columns)}}
                                                 for b in decoded}}
            else:
                body = json.loads(raw)
            behaviour["bodies"].append((self.path, self.headers["Content-Type"], body))
            if behaviour["mode"] == "slow":
                time.sleep(1.0)
            status, answer = ((400, {"error": "missing history: the model needs 61 bars"})
                              if behaviour["mode"] == "bad" else
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
                return  # the client timed out and left ("slow" mode)

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    behaviour["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield behaviour
    finally:
        server.shutdown()
        server.server_close()


BODY = {"as_of": "2021-03-03", "bars": {
    "A": {"t": ["2021-03-02", "2021-03-03"], "o": [1.0, 2.0], "h": [2.0, 3.0], "l": [0.5, 1.5], "c": [1.5, 2.5],
          "v": [100.0, 0.0]},
    "B": {"t": ["2021-03-03"], "o": [10.0], "h": [11.0], "l": [9.0], "c": [10.5], "v": [7.0]}}}


@pytest.mark.parametrize(("wire", "content_type"), [("arrow", ARROW_CONTENT_TYPE), ("json", "application/json")])
def test_http_client_posts_to_v1_signals_and_parses_the_scores(fake_service: dict[str, Any], wire: str,
                                                               content_type: str) -> None:
    answer = HttpSignalClient(fake_service["url"] + "/", wire=wire).scores(BODY, timeout_s=2.0)

    assert answer == SignalAnswer("v0002-12345678", {"A": 0.5, "B": None})
    assert fake_service["bodies"] == [("/v1/signals", content_type, BODY)]


def test_http_client_sends_numpy_columns_as_json_lists(fake_service: dict[str, Any]) -> None:
    arrays = {"as_of": BODY["as_of"], "bars": {
        s: {k: (np.array(v, dtype="datetime64[D]") if k == "t" else np.array(v)) for k, v in bars.items()}
        for s, bars in BODY["bars"].items()}}

    HttpSignalClient(fake_service["url"], wire="json").scores(arrays, timeout_s=2.0)
    HttpSignalClient(fake_service["url"], wire="arrow").scores(arrays, timeout_s=2.0)

    assert [body for _, _, body in fake_service["bodies"]] == [BODY, BODY]


def test_http_client_refuses_an_unknown_wire_format() -> None:
    with pytest.raises(ConfigError, match="wire must be"):
        HttpSignalClient("http://127.0.0.1:9", wire="xml")


@pytest.mark.parametrize(("mode", "message"), [("bad", "answered 400: .*missing history"),
                                               ("slow", "unreachable within 0.2 s")])
def test_http_client_reports_error_answers_and_timeouts(fake_service: dict[str, Any], mode: str,
                                                        message: str) -> None:
    fake_service["mode"] = mode

    with pytest.raises(SignalUnavailableError, match=message):
        HttpSignalClient(fake_service["url"]).scores(BODY, timeout_s=0.2)


def test_strategy_over_http_holds_when_the_service_is_down() -> None:
    strategy = MLSignalStrategy(config(endpoint="http://127.0.0.1:9"), SYMBOLS)
    for t in range(2):
        strategy.on_bars(batch(t))

    assert strategy.on_bars(batch(2)) == [] and strategy.failures == 1
