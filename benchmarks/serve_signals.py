"""Benchmark: scoring through the Ray Serve signal deployment against the same work in process.

Run:
    .venv/bin/python benchmarks/serve_signals.py [--quick] [--symbols 50] [--requests 300]

Setup: real daily bars of ``--symbols`` stocks (``../shared/data/us_equities_daily.parquet``,
the first symbols, alphabetically, with a clean bar on every session of 2015-2016), every series
feature of :func:`amcp.features.default_registry` plus its cross-sectional ones (``--features N``:
the first N of them, which leaves mostly the serving overhead to measure), a LightGBM model
(100 trees) trained on 2015-2016 and registered in a temporary :class:`ModelRegistry` and
promoted; then ``serve.signals`` on a local Ray (one replica, ``max_batch_size`` 16).

Each request asks for every symbol's score at one session of late 2016, carrying the last 140
bars of each symbol (history_bars of the full feature set is about 61; recursive features want
more).

- ``in_process`` (the peer, "the model in process"): :func:`serve.signals.score_requests` on
  bars already in memory as one panel — the model's features and predict, nothing else — one call
  at a time (latency), and its throughput as one thread's calls per second. Timed in the
  benchmark's process while Ray and the Serve app are up, in blocks of 20 calls alternating with
  blocks of 20 served requests, so that both see the same machine: the same background (idle Ray
  takes about 9 % of a core here), neighbours and drift. Each call scores a freshly parsed
  request, as every served request is: features of one inputs object share memoised
  intermediates, so scoring the same request object again skips work (about 5 ms of the 211
  features' 37 ms here).
- ``serve`` (ours, metrics ``p50_ms``, ``p99_ms``, ``requests_per_s``): ``POST /v1/signals`` with
  an Arrow body of the panel layout (:mod:`amcp.models.wire`) encoded from ``(bars × symbols)``
  numpy matrices, as the ``ml_signal`` strategy sends them, to the replica's own port (``ingress:
  direct``, Ray Serve's direct ingress), over one keep-alive HTTP connection (as the strategy's
  ``HttpSignalClient`` keeps), one request at a time; the timed call includes encoding the body,
  HTTP, parsing and checking the body in the replica, the batch queue, the replica's work and
  the answer. Then ``--clients`` threads, each with its own connection, for ``--duration-s``
  (requests/s).
- ``p50_ms_arrow_bars``: the same through the replica's port with the per-symbol (bars) Arrow
  layout, encoded from per-symbol numpy columns.
- ``p50_ms_proxy``: the same Arrow requests through Serve's HTTP proxy (``ingress: proxy``, the
  default); ``p50_ms_json_columns`` / ``p50_ms_json_rows``: as JSON (columns; bar objects)
  through the proxy, encoding timed too; ``p50_ms_handle``: through a DeploymentHandle.
- ``serve_floor_p50_ms``: no-op round trips (``GET /v1/model``) on the replica's port, against the
  proxy's (and a handle's ``model()``) — what Serve itself costs on this machine before any work.

The summary line says whether the target was met (Serve p50 within 3 ms of the in-process
p50) and decomposes a served request: the client's encode (``client_encode_p50_ms``), the
replica's time from the ``Server-Timing`` headers (parse, queue, score, total) and the rest,
HTTP and Serve's handling outside the route (``http_p50_ms``). ``client_encode_after_pause_p50_ms``
measures what this machine charges code that has not run for one in-process scoring's time.
About 2 minutes on two cores (``--quick``: about 1 minute); a shared machine
makes every number noisy, so the summary gives the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, line, load_average_1m, percentile, progress  # noqa: E402

from amcp.config import StoreConfig  # noqa: E402
from amcp.features import default_registry  # noqa: E402
from amcp.features.registry import FeatureRegistry, SeriesInputs  # noqa: E402
from amcp.models.base import create_model  # noqa: E402
from amcp.models.registry import ModelRegistry  # noqa: E402
from amcp.models.wire import ARROW_CONTENT_TYPE, encode_request  # noqa: E402

BENCH = "serve_signals"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
TARGET_P50_GAP_MS = 3.0
SENT_BARS = 140
HORIZON = 5


def load_bars(count: int) -> tuple[tuple[str, ...], dict[str, SeriesInputs]]:
    """``count`` symbols with a clean bar on every session of 2015-2016, as SeriesInputs."""
    frame = pd.read_parquet(DATA, columns=["symbol", "date", "open", "high", "low", "close", "volume"],
                            filters=[("date", ">=", date(2015, 1, 1)), ("date", "<=", date(2016, 12, 31))])
    sessions = np.sort(frame["date"].unique())
    prices = frame[["open", "high", "low", "close"]]
    clean = frame[(prices > 0).all(axis=1) & (frame["volume"] >= 0)]
    full = clean.groupby("symbol")["date"].nunique()
    symbols = tuple(sorted(full[full == len(sessions)].index)[:count])
    if len(symbols) < count:
        raise SystemExit(f"only {len(symbols)} symbols have clean bars on all {len(sessions)} sessions")
    bars: dict[str, SeriesInputs] = {}
    for symbol, rows in clean[clean["symbol"].isin(symbols)].groupby("symbol"):
        rows = rows.sort_values("date")
        bars[str(symbol)] = SeriesInputs(
            rows["date"].to_numpy().astype("datetime64[D]"), rows["open"].to_numpy(float),
            rows["high"].to_numpy(float), rows["low"].to_numpy(float), rows["close"].to_numpy(float),
            rows["volume"].to_numpy(float), np.full(len(rows), np.nan), None)
    return symbols, bars


def training_set(registry: FeatureRegistry, names: tuple[str, ...], symbols: tuple[str, ...],
                 bars: dict[str, SeriesInputs]) -> tuple[np.ndarray, np.ndarray]:
    cross = set(registry.cross_sectional_names)
    series = [n for n in names if n not in cross]
    computed = np.stack([registry.compute(bars[s], series).values for s in symbols], axis=1)  # T × n × F
    columns = []
    for name in names:
        if name in cross:
            base = series.index(registry.cross_sectional(name).base)
            columns.append(registry.compute_cross_sectional(name, computed[:, :, base]))
        else:
            columns.append(computed[:, :, series.index(name)])
    X = np.stack(columns, axis=2)
    close = np.stack([bars[s].close for s in symbols], axis=1)
    y = np.full_like(close, np.nan)
    y[:-HORIZON] = close[HORIZON:] / close[:-HORIZON] - 1
    rows = slice(70, close.shape[0] - HORIZON)
    return X[rows].reshape(-1, len(names)), y[rows].reshape(-1)


def body_at(bars: dict[str, SeriesInputs], t: int) -> dict[str, Any]:
    payload = {}
    for symbol, x in bars.items():
        payload[symbol] = [{"t": str(x.dates[k]), "o": float(x.open[k]), "h": float(x.high[k]),
                            "l": float(x.low[k]), "c": float(x.close[k]), "v": float(x.volume[k])}
                           for k in range(t + 1 - SENT_BARS, t + 1)]
    return {"as_of": str(next(iter(bars.values())).dates[t]), "bars": payload}


def in_process_timer(loaded: Any, bodies: list[dict[str, Any]]) -> Callable[[int], float]:
    """A function timing the model in process on body ``i`` (ms): features from bars already in memory
    as one panel (what the served request holds once parsed), then predict (no parsing)."""
    from serve.signals import parse_arrow_request, score_requests

    payloads = [encode_request(body) for body in bodies]

    def fresh(i: int) -> Any:
        # A new request object per call, as every served request is: features computed from one
        # inputs object share intermediates (amcp.features.registry.shared), so scoring the same
        # object again would skip that work.
        request = parse_arrow_request(payloads[i % len(payloads)], max_symbols=5000, max_bars=5000)
        if request.panel is None:
            raise SystemExit("the in-process requests must be panels, as the served ones are")
        return request

    for i in range(5):
        score_requests(loaded, [fresh(i)])

    def timed(i: int) -> float:
        request = fresh(i)  # not timed
        start = time.perf_counter_ns()
        result = score_requests(loaded, [request])
        elapsed = (time.perf_counter_ns() - start) / 1e6
        if not isinstance(result[0], dict):
            raise SystemExit(f"in-process scoring failed: {result[0]}")
        return elapsed

    return timed


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99 and one caller's calls per second."""
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "requests_per_s": 1000.0 / float(np.mean(samples))}


def panel_of(body: dict[str, Any]) -> dict[str, Any]:
    """The same body as one panel — ``(bars × symbols)`` numpy matrices — as the ``ml_signal`` strategy
    sends it when every symbol has a bar on each session (it holds its bars in that layout)."""
    bars = body["bars"]
    first = next(iter(bars.values()))
    panel: dict[str, Any] = {"symbols": list(bars), "t": np.array([bar["t"] for bar in first], dtype="datetime64[D]")}
    for key in ("o", "h", "l", "c", "v"):
        panel[key] = np.array([[bar[key] for bar in rows] for rows in bars.values()], dtype=np.float64).T.copy()
    return {"as_of": body["as_of"], "panel": panel}


def columns_of(body: dict[str, Any], arrays: bool = False) -> dict[str, Any]:
    """The same body with each symbol's bars as columns instead of bar objects: JSON lists, or
    numpy arrays as the ``ml_signal`` strategy sends a body whose symbols lack some sessions (``arrays``)."""
    def column(bars: list[dict[str, Any]], key: str) -> Any:
        values = [bar[key] for bar in bars]
        if not arrays:
            return values
        return np.array(values, dtype="datetime64[D]") if key == "t" else np.array(values, dtype=np.float64)

    return {**body, "bars": {s: {k: column(bars, k) for k in ("t", "o", "h", "l", "c", "v")}
                             for s, bars in body["bars"].items()}}


ENCODERS = {
    "arrow": (lambda body: encode_request(body), ARROW_CONTENT_TYPE),
    "json_columns": (lambda body: json.dumps(body).encode(), "application/json"),
    "json_rows": (lambda body: json.dumps(body).encode(), "application/json"),
}


SERVER_TIMING: list[dict[str, float]] = []
"""The replica's own ``Server-Timing`` of every timed single-client request (parse, queue, score, total)."""


def post(connection: http.client.HTTPConnection, payload: bytes, content_type: str) -> dict[str, Any]:
    connection.request("POST", "/v1/signals", body=payload, headers={"Content-Type": content_type})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST /v1/signals answered {response.status}: {data[:300]!r}")
    header = response.getheader("Server-Timing") or ""
    SERVER_TIMING.append({part.split(";dur=")[0].strip(): float(part.split(";dur=")[1])
                          for part in header.split(",") if ";dur=" in part})
    return json.loads(data)


def bench_idle_cost(bodies: list[dict[str, Any]], pause_ms: float, count: int) -> dict[str, float]:
    """What this machine charges code that has not run for a while: ``encode_request`` of one body
    back to back, against right after sleeping ``pause_ms`` (one in-process scoring's time, what a
    client waits between its encodes). On the project's 2-core VM the second is about 3× the
    first (the same after a busy pure-Python wait instead of a sleep), and every step of a served
    request outside the model — the client's encode, HTTP, the replica's parse and queue — runs
    after such a wait, where the in-process peer's calls run back to back."""
    for body in bodies[:5]:
        encode_request(body)
    warm, cold = [], []
    for i in range(count):
        body = bodies[i % len(bodies)]
        start = time.perf_counter_ns()
        encode_request(body)
        warm.append((time.perf_counter_ns() - start) / 1e6)
    for i in range(count):
        body = bodies[i % len(bodies)]
        time.sleep(pause_ms / 1e3)
        start = time.perf_counter_ns()
        encode_request(body)
        cold.append((time.perf_counter_ns() - start) / 1e6)
    return {"warm_p50_ms": percentile(warm, 50), "after_pause_p50_ms": percentile(cold, 50)}


def bench_floor(port: int, count: int) -> float:
    """p50 of ``GET /v1/model`` (no work in the replica): Serve's own HTTP round trip on this machine."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    samples = []
    for i in range(count + 5):
        start = time.perf_counter_ns()
        connection.request("GET", "/v1/model")
        response = connection.getresponse()
        response.read()
        if i >= 5:
            samples.append((time.perf_counter_ns() - start) / 1e6)
    connection.close()
    return percentile(samples, 50)


def bench_handle(app_name: str, bodies: list[dict[str, Any]], count: int) -> dict[str, float]:
    """The same Arrow requests through a DeploymentHandle (no HTTP proxy), and the handle's no-op floor."""
    from ray import serve

    handle = serve.get_deployment_handle("SignalDeployment", app_name=app_name)
    for body in bodies[:5]:
        handle.score.remote(encode_request(body)).result()
        handle.model.remote().result()
    samples, floor = [], []
    for i in range(count):
        start = time.perf_counter_ns()
        handle.score.remote(encode_request(bodies[i % len(bodies)])).result()
        samples.append((time.perf_counter_ns() - start) / 1e6)
        start = time.perf_counter_ns()
        handle.model.remote().result()
        floor.append((time.perf_counter_ns() - start) / 1e6)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "floor_p50_ms": percentile(floor, 50)}


def bench_serve(port: int, bodies: list[dict[str, Any]], wire: str, count: int, clients: int,
                duration_s: float, peer: Callable[[int], float] | None = None,
                block: int = 20) -> dict[str, Any]:
    """``count`` requests one at a time over one keep-alive connection (encoding the body is timed: a
    client encodes every request), then ``clients`` threads for ``duration_s`` (0: skip).

    With ``peer`` (a function timing one in-process call), ``count`` in-process calls are timed too,
    in blocks of ``block`` alternating with the served requests' blocks, so that both see the same
    machine (Ray and Serve up and idle, the same neighbours, the same drift); their times are
    ``peer_samples``."""
    encode, content_type = ENCODERS[wire]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in bodies[:5]:
        post(connection, encode(body), content_type)
    samples, encoding, outside, peer_samples = [], [], [], []
    for i in range(count):
        if peer is not None and i % block == 0:
            peer_samples.extend(peer(j) for j in range(i, min(i + block, count)))
        body = bodies[i % len(bodies)]
        start = time.perf_counter_ns()
        payload = encode(body)
        encoded = time.perf_counter_ns()
        post(connection, payload, content_type)
        samples.append((time.perf_counter_ns() - start) / 1e6)
        encoding.append((encoded - start) / 1e6)
        outside.append(samples[-1] - encoding[-1] - SERVER_TIMING[-1].get("total", float("nan")))
    connection.close()
    result: dict[str, Any] = {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
                              "encode_p50_ms": percentile(encoding, 50), "outside_p50_ms": percentile(outside, 50),
                              "peer_samples": peer_samples}
    if clients == 0:
        return result

    done = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + duration_s

    def client(index: int) -> None:
        own = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.perf_counter() < deadline:
                post(own, encode(bodies[(index + done[index]) % len(bodies)]), content_type)
                done[index] += 1
        except (OSError, RuntimeError) as exc:
            failures.append(str(exc))
        finally:
            own.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} clients failed under load, first: {failures[0]}")
    return {**result, "requests_per_s": sum(done) / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer requests and a shorter load phase")
    parser.add_argument("--symbols", type=int, default=50, help="symbols per request")
    parser.add_argument("--requests", type=int, default=None,
                        help="requests timed one at a time (default 300; --quick 100)")
    parser.add_argument("--features", type=int, default=None,
                        help="use only the first N features of the default registry (default: all)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients in the throughput phase")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="seconds of the throughput phase (default 15; --quick 5)")
    args = parser.parse_args()
    args.requests = args.requests or (100 if args.quick else 300)
    args.duration_s = args.duration_s or (5.0 if args.quick else 15.0)
    if min(args.symbols, args.requests, args.clients, args.features or 1) < 1 or args.duration_s <= 0:
        parser.error("--symbols, --requests, --clients and --features must be >= 1, --duration-s > 0")

    import ray
    from ray import serve

    from serve.signals import (
        ServeSignalsConfig,
        answers_directly,
        build_app,
        direct_ingress_env,
        load_version,
    )

    load_before = load_average_1m()
    progress("loading bars and computing features")
    symbols, bars = load_bars(args.symbols)
    features = default_registry()
    names = (*features.series_names, *features.cross_sectional_names)[: args.features]
    X, y = training_set(features, names, symbols, bars)
    keep = np.isfinite(y)
    progress(f"training LightGBM on {int(keep.sum())} rows × {len(names)} features")
    params = {"n_estimators": 100, "num_leaves": 31, "seed": 0}
    model = create_model("lightgbm", names, params).fit(X[keep], y[keep])
    n_days = len(next(iter(bars.values())))
    bodies = [body_at(bars, t) for t in range(n_days - 20, n_days)]

    with tempfile.TemporaryDirectory(prefix="amcp-bench-models-") as root:
        registry = ModelRegistry(root)
        version = registry.register(model, features=names, train_start=date(2015, 1, 2),
                                    train_end=date(2016, 12, 30), metrics={}, params={"n_estimators": 100})
        registry.promote(version.version)
        loaded = load_version(registry, version.version, features)
        arrays = [panel_of(b) for b in bodies]  # what the ml_signal strategy sends
        in_process = in_process_timer(loaded, arrays)

        ports = []
        for _ in range(2):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                ports.append(probe.getsockname()[1])
        port, direct_port = ports
        config = ServeSignalsConfig(registry=StoreConfig(url=root), http_port=port, replica_num_cpus=1,
                                    ingress="direct", direct_port=direct_port)
        os.environ.update(direct_ingress_env(config))  # before Ray starts: its controller and replicas read it
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app(config), name="signals-bench", route_prefix="/")
            if not answers_directly("127.0.0.1", direct_port, timeout_s=30.0):
                raise SystemExit(f"the replica does not answer on its direct port {direct_port}")
            progress(f"serve, direct ingress (Arrow body) and in process, alternating: {args.requests} requests "
                     f"each, then {args.clients} clients for {args.duration_s} s")
            SERVER_TIMING.clear()
            ours_peer: dict[str, dict[str, Any]] = {}
            ours_peer["serve"] = bench_serve(direct_port, arrays, "arrow", args.requests, args.clients,
                                             args.duration_s, peer=in_process)
            ours_peer["in_process"] = summary(ours_peer["serve"]["peer_samples"])
            timed = SERVER_TIMING[5 : 5 + args.requests]  # the single-client phase, after its warm-up
            server = {key: percentile([t[key] for t in timed], 50) for key in ("parse", "queue", "score", "total")}
            progress(f"serve, direct ingress (Arrow body, per-symbol bars layout): {args.requests} requests")
            ours_peer["arrow_bars"] = bench_serve(direct_port, [columns_of(b, arrays=True) for b in bodies], "arrow",
                                                  args.requests, 0, 0.0)
            progress(f"serve through the proxy: Arrow, JSON columns, JSON bar objects, {args.requests} requests each")
            ours_peer["proxy"] = bench_serve(port, arrays, "arrow", args.requests, 0, 0.0)
            for wire in ("json_columns", "json_rows"):
                wire_bodies = [columns_of(b) for b in bodies] if wire == "json_columns" else bodies
                ours_peer[wire] = bench_serve(port, wire_bodies, wire, args.requests, 0, 0.0)
            progress(f"floors: GET /v1/model (direct, proxy) and a handle, {args.requests} requests each")
            floors = {"direct": bench_floor(direct_port, args.requests), "proxy": bench_floor(port, args.requests)}
            ours_peer["handle"] = bench_handle("signals-bench", arrays, args.requests)
            floors["handle"] = ours_peer["handle"]["floor_p50_ms"]
            idle = bench_idle_cost(arrays, ours_peer["in_process"]["p50_ms"], args.requests)
        finally:
            serve.shutdown()
            ray.shutdown()

    ours, peer = ours_peer["serve"], ours_peer["in_process"]
    for metric, unit in (("p50_ms", "ms"), ("p99_ms", "ms"), ("requests_per_s", "1/s")):
        emit(line(BENCH, metric, ours[metric], "in_process", peer[metric], unit, unit == "1/s", digits=3,
                  symbols=len(symbols), features=len(names), clients=args.clients if unit == "1/s" else 1))
    for path in ("arrow_bars", "proxy", "json_columns", "json_rows", "handle"):
        for metric in ("p50_ms", "p99_ms"):
            emit(line(BENCH, f"{metric}_{path}", ours_peer[path][metric], "in_process", peer[metric], "ms", False,
                      digits=3, symbols=len(symbols), features=len(names), clients=1))
    emit(line(BENCH, "serve_floor_p50_ms", floors["direct"], "proxy_floor", floors["proxy"], "ms", False,
              digits=3, handle_floor=round(floors["handle"], 3),
              note="no-op round trips (GET /v1/model): direct ingress (ours) and through the proxy"))
    emit(line(BENCH, "client_encode_after_pause_p50_ms", idle["after_pause_p50_ms"], "back_to_back",
              idle["warm_p50_ms"], "ms", False, digits=3, pause_ms=round(peer["p50_ms"], 3),
              note="encode_request of one body right after waiting one in-process scoring's time, against back to "
                   "back: what this machine charges code that has not run for that long"))
    gap = ours["p50_ms"] - peer["p50_ms"]
    emit({"bench": BENCH, "summary": True, "p50_gap_ms": round(gap, 3), "path": "direct ingress, Arrow body",
          "p50_gap_ms_other_paths": {w: round(ours_peer[w]["p50_ms"] - peer["p50_ms"], 3)
                                     for w in ("arrow_bars", "proxy", "json_columns", "json_rows", "handle")},
          "replica_p50_ms": {k: round(v, 3) for k, v in server.items()},
          "client_encode_p50_ms": round(ours["encode_p50_ms"], 3),
          "http_p50_ms": round(ours["outside_p50_ms"], 3),
          "serve_floor_p50_ms": {k: round(v, 3) for k, v in floors.items()},
          "targets": {"serve_p50_within_3ms_of_in_process": gap <= TARGET_P50_GAP_MS},
          "symbols": len(symbols), "features": len(names), "model": version.version,
          "load_average": [round(load_before, 2), load_average_1m()], "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
