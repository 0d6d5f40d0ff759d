"""The signal deployment on a local Ray: train → register → serve → predict round trip, bad input
answered with 400s, and a version switch under concurrent load that drops no request."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import date
from typing import Any

import numpy as np
import pytest

from amcp.config import StoreConfig
from amcp.features import default_registry
from amcp.features.registry import FeatureRegistry, SeriesInputs
from amcp.models.base import SignalModel, create_model
from amcp.models.registry import ModelRegistry

pytestmark = pytest.mark.ray

N_SYMBOLS, N_DAYS, HORIZON, SENT_BARS = 12, 260, 5, 140
SYMBOLS = tuple(f"S{i:02d}" for i in range(N_SYMBOLS))


def choose_features(registry: FeatureRegistry) -> tuple[str, ...]:
    """A spread of the default registry's series features and two cross-sectional ones."""
    series = registry.series_names
    return (*series[:: max(1, len(series) // 10)], *registry.cross_sectional_names[:2])


def synthetic_bars(seed: int = 3) -> dict[str, SeriesInputs]:
    rng = np.random.default_rng(seed)
    dates = np.busday_offset(np.datetime64("2016-01-04"), np.arange(N_DAYS), roll="forward")
    market = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, N_DAYS)))
    out = {}
    for symbol in SYMBOLS:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, N_DAYS)))
        open_ = close * np.exp(rng.normal(0, 0.005, N_DAYS))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, N_DAYS))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, N_DAYS))
        volume = rng.integers(10_000, 1_000_000, N_DAYS).astype(float)
        out[symbol] = SeriesInputs(dates, open_, high, low, close, volume, np.full(N_DAYS, np.nan), market)
    return out


def feature_tensor(registry: FeatureRegistry, names: tuple[str, ...],
                   bars: dict[str, SeriesInputs]) -> np.ndarray:
    """features[t, i, j]: feature j of symbol i at bar t, cross-sectional ones across the symbols."""
    cross = set(registry.cross_sectional_names)
    series = [n for n in names if n not in cross]
    bases = [registry.cross_sectional(n).base for n in names if n in cross]
    needed = list(dict.fromkeys(series + bases))
    computed = np.stack([registry.compute(bars[s], needed).values for s in SYMBOLS], axis=1)  # T × n × F
    out = np.empty((N_DAYS, N_SYMBOLS, len(names)))
    for j, name in enumerate(names):
        if name in cross:
            base = needed.index(registry.cross_sectional(name).base)
            out[:, :, j] = registry.compute_cross_sectional(name, computed[:, :, base])
        else:
            out[:, :, j] = computed[:, :, needed.index(name)]
    return out


def train(features: np.ndarray, bars: dict[str, SeriesInputs], names: tuple[str, ...],
          seed: int) -> SignalModel:
    close = np.stack([bars[s].close for s in SYMBOLS], axis=1)
    label = np.full_like(close, np.nan)
    label[:-HORIZON] = close[HORIZON:] / close[:-HORIZON] - 1
    rows = slice(70, N_DAYS - HORIZON)
    X = features[rows].reshape(-1, len(names))
    y = label[rows].reshape(-1)
    model = create_model("lightgbm", names, {"n_estimators": 20 + 10 * seed, "num_leaves": 7, "seed": seed})
    return model.fit(X, y)


def body_at(bars: dict[str, SeriesInputs], t: int) -> dict[str, Any]:
    """The request a client sends at bar t: each symbol's last SENT_BARS bars up to t."""
    payload = {}
    for symbol, x in bars.items():
        lo = t + 1 - SENT_BARS
        payload[symbol] = [{"t": str(x.dates[k]), "o": float(x.open[k]), "h": float(x.high[k]),
                            "l": float(x.low[k]), "c": float(x.close[k]), "v": float(x.volume[k])}
                           for k in range(lo, t + 1)]
    market = next(iter(bars.values()))
    lo = t + 1 - SENT_BARS
    return {"as_of": str(market.dates[t]), "bars": payload,
            "market": [{"t": str(market.dates[k]), "c": float(market.market[k])} for k in range(lo, t + 1)]}


def post(url: str, body: Any, *, raw: bytes | None = None, content_type: str = "application/json",
         timeout_s: float = 30.0) -> tuple[int, dict[str, Any]]:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def world(ray_local: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two trained, registered models (v1 promoted) and the deployment serving on a free port."""
    from ray import serve

    from serve.signals import ServeSignalsConfig, build_app

    registry_features = default_registry()
    names = choose_features(registry_features)
    bars = synthetic_bars()
    features = feature_tensor(registry_features, names, bars)
    models = [train(features, bars, names, seed) for seed in (0, 1)]
    root = str(tmp_path_factory.mktemp("models"))
    registry = ModelRegistry(root)
    versions = [registry.register(m, features=names, train_start=date(2016, 4, 1),
                                  train_end=date(2016, 12, 1), metrics={"ic": 0.0}, params={"seed": i},
                                  code_version="test")
                for i, m in enumerate(models)]
    registry.promote(versions[0].version)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = ServeSignalsConfig(registry=StoreConfig(url=root), poll_interval_s=0.2, max_batch_size=8,
                                batch_wait_timeout_s=0.002, replica_num_cpus=0, http_port=port)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_app(config), name="signals-test", route_prefix="/")
        yield {"registry": registry, "versions": versions, "models": models, "names": names, "bars": bars,
               "features": features, "url": f"http://127.0.0.1:{port}"}
    finally:
        serve.shutdown()


def expected_scores(world: dict[str, Any], model_index: int, t: int) -> np.ndarray:
    return world["models"][model_index].predict(world["features"][t])


def test_served_scores_equal_the_models_in_process_predictions(world: dict[str, Any]) -> None:
    t = N_DAYS - 1

    status, answer = post(f"{world['url']}/v1/signals", body_at(world["bars"], t))
    described = get(f"{world['url']}/v1/model")

    assert status == 200, answer
    assert answer["version"] == world["versions"][0].version == described["version"]
    assert answer["as_of"] == str(world["bars"][SYMBOLS[0]].dates[t])
    assert tuple(described["features"]) == world["names"] and described["history_bars"] <= SENT_BARS
    served = np.array([answer["scores"][s] for s in SYMBOLS])
    np.testing.assert_allclose(served, expected_scores(world, 0, t), rtol=1e-12, atol=0)
    assert np.ptp(served) > 0  # the model tells the symbols apart, so the comparison means something


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b["bars"].__setitem__("S00", b["bars"]["S00"][-5:]), "missing history: .*S00 has 5"),
    (lambda b: b["bars"]["S01"][-3].__setitem__("c", float("nan")), r"bars.S01\[137\].c is nan"),
    (lambda b: b["bars"]["S02"][10].pop("v"), r"bars.S02\[10\] is missing \['v'\]"),
    (lambda b: b["bars"].__setitem__("S03", "not a list"), "bars.S03 must be a non-empty list"),
    (lambda b: b["bars"]["S04"].pop(), "not as_of"),
    (lambda b: b.__setitem__("as_of", "yesterday"), "as_of must be an ISO date"),
    (lambda b: b["bars"]["S05"][4].__setitem__("t", b["bars"]["S05"][3]["t"]), "strictly increasing"),
])
def test_bad_requests_are_answered_400_with_the_reason(world: dict[str, Any], mutate: Any,
                                                       message: str) -> None:
    body = body_at(world["bars"], N_DAYS - 1)
    mutate(body)

    status, answer = post(f"{world['url']}/v1/signals", body)

    assert status == 400
    assert re.search(message, answer["error"]), answer


def test_columns_panels_and_arrow_bodies_score_exactly_as_bar_objects(world: dict[str, Any]) -> None:
    from amcp.models.wire import ARROW_CONTENT_TYPE, encode_request

    body = body_at(world["bars"], N_DAYS - 1)
    columns = {**body, "bars": {s: {k: [bar[k] for bar in bars] for k in ("t", "o", "h", "l", "c", "v")}
                                for s, bars in body["bars"].items()}}
    first = next(iter(body["bars"].values()))
    panel = {"as_of": body["as_of"], "market": body["market"],
             "panel": {"symbols": list(body["bars"]), "t": [bar["t"] for bar in first],
                       **{k: [[bars[i][k] for bars in body["bars"].values()] for i in range(len(first))]
                          for k in ("o", "h", "l", "c", "v")}}}

    as_rows = post(f"{world['url']}/v1/signals", body)
    as_columns = post(f"{world['url']}/v1/signals", columns)
    as_panel = post(f"{world['url']}/v1/signals", panel)
    as_arrow = post(f"{world['url']}/v1/signals", None, raw=encode_request(body), content_type=ARROW_CONTENT_TYPE)
    as_arrow_panel = post(f"{world['url']}/v1/signals", None, raw=encode_request(panel),
                          content_type=ARROW_CONTENT_TYPE)
    garbage = post(f"{world['url']}/v1/signals", None, raw=b"not arrow", content_type=ARROW_CONTENT_TYPE)

    assert as_rows[0] == as_columns[0] == as_panel[0] == as_arrow[0] == as_arrow_panel[0] == 200
    assert (as_rows[1]["scores"] == as_columns[1]["scores"] == as_panel[1]["scores"] == as_arrow[1]["scores"]
            == as_arrow_panel[1]["scores"])
    assert len(set(as_rows[1]["scores"].values())) > 1  # distinct scores: the comparison means something
    assert garbage[0] == 400 and "not an Arrow IPC stream" in garbage[1]["error"]


def test_direct_ingress_serves_the_same_scores_from_the_replicas_own_port(world: dict[str, Any],
                                                                         tmp_path: Any) -> None:
    """``python -m serve.signals`` with ``ingress: direct`` on a Ray of its own: the replica answers on
    its port, with the scores the proxy gives (this one scores in a worker thread, ``score_in_thread``;
    the module's app on the event loop, the default)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from serve.signals import answers_directly

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    config = {"kind": "serve_signals", "registry": {"url": str(world["registry"].root)}, "http_port": ports[0],
              "ingress": "direct", "direct_port": ports[1], "replica_num_cpus": 0, "ray_address": "local",
              "namespace": "amcp-direct-test", "score_in_thread": True}
    path = tmp_path / "serve_direct.yaml"
    path.write_text(yaml.safe_dump(config))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_SERVE_"))}
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen([sys.executable, "-m", "serve.signals", "--config", str(path)], cwd=root,
                               env=environment, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert answers_directly("127.0.0.1", ports[1], timeout_s=180.0), "the replica never answered on its port"
        body = body_at(world["bars"], N_DAYS - 1)
        direct = post(f"http://127.0.0.1:{ports[1]}/v1/signals", body)
        through_proxy = post(f"{world['url']}/v1/signals", body)

        assert direct[0] == through_proxy[0] == 200
        assert direct[1]["scores"] == through_proxy[1]["scores"]
        assert direct[1]["version"] == world["versions"][0].version
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_body_that_is_not_json_is_answered_400(world: dict[str, Any]) -> None:
    status, answer = post(f"{world['url']}/v1/signals", None, raw=b"{not json")

    assert status == 400 and "not JSON" in answer["error"]


def test_a_promotion_under_load_switches_each_client_once_and_drops_nothing(world: dict[str, Any]) -> None:
    url, registry, (first, second) = world["url"], world["registry"], world["versions"]
    times = (N_DAYS - 1, N_DAYS - 2, N_DAYS - 3)
    bodies = {t: json.dumps(body_at(world["bars"], t)).encode() for t in times}
    expected = {(v.version, t): expected_scores(world, i, t)
                for i, v in enumerate((first, second)) for t in times}
    n_clients, after_switch = 6, 15
    streams: list[list[tuple[int, str | None, int, Any]]] = [[] for _ in range(n_clients)]
    stop = threading.Event()

    def client(index: int) -> None:
        seen_new = 0
        while not stop.is_set() and seen_new < after_switch:
            t = times[len(streams[index]) % len(times)]
            status, answer = post(f"{url}/v1/signals", None, raw=bodies[t])
            streams[index].append((status, answer.get("version"), t, answer.get("scores")))
            seen_new += answer.get("version") == second.version

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    registry.promote(second.version)
    for thread in threads:
        thread.join(timeout=60)
    stop.set()

    for stream in streams:
        assert stream and all(status == 200 for status, *_ in stream), stream[:3]
        versions = [version for _, version, _, _ in stream]
        switches = sum(a != b for a, b in zip(versions, versions[1:]))
        assert versions[0] == first.version and versions[-1] == second.version and switches == 1
        for _, version, t, scores in stream:  # every answer is wholly the model it names
            served = np.array([scores[s] for s in SYMBOLS])
            np.testing.assert_allclose(served, expected[(version, t)], rtol=1e-12, atol=0)
    assert get(f"{url}/v1/model")["version"] == second.version


def test_a_strategy_gets_the_same_scores_through_a_serve_handle(world: dict[str, Any]) -> None:
    from amcp.strategies.ml_signal import ServeHandleSignalClient

    t = N_DAYS - 1
    answer = ServeHandleSignalClient("signals-test").scores(body_at(world["bars"], t), timeout_s=60)

    served = np.array([answer.scores[s] for s in SYMBOLS])
    index = [v.version for v in world["versions"]].index(answer.version)
    np.testing.assert_allclose(served, expected_scores(world, index, t), rtol=1e-12, atol=0)
