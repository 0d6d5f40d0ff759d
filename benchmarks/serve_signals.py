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
more). Both sides do the same work per request: parse the body into inputs, compute the
model's features, predict.

- ``in_process``: :func:`serve.signals.parse_request` + :func:`serve.signals.score_requests` on
  the body as a Python object, in this process, one call at a time (latency), and its
  throughput as one thread's calls per second.
- ``serve``: ``POST /v1/signals`` over one keep-alive HTTP connection, one request at a time
  (latency: JSON encoding, HTTP, the Serve proxy, batching, the replica's work and the answer);
  then ``--clients`` threads, each with its own connection, for ``--duration-s`` (requests/s).

Prints JSON lines ``{"bench": "serve_signals", "metric", "ours", "peer", "peer_value", "ratio",
"unit", ...}`` (``ratio`` > 1 means ours is better: ours/peer for rates, peer/ours for
latencies), then one summary line saying whether the target was met: Serve p50 within 3 ms of
the in-process p50. About 2 minutes on two cores (``--quick``: about 1 minute); a shared
machine makes every number noisy, so the summary gives the load average.
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


def bench_in_process(loaded: Any, bodies: list[dict[str, Any]], count: int) -> dict[str, float]:
    from serve.signals import parse_request, score_requests

    for body in bodies[:5]:
        score_requests(loaded, [parse_request(body, max_symbols=5000, max_bars=5000)])
    samples = []
    for i in range(count):
        body = bodies[i % len(bodies)]
        start = time.perf_counter_ns()
        result = score_requests(loaded, [parse_request(body, max_symbols=5000, max_bars=5000)])
        samples.append((time.perf_counter_ns() - start) / 1e6)
        if not isinstance(result[0], dict):
            raise SystemExit(f"in-process scoring failed: {result[0]}")
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    return {"p50_ms": p50, "p99_ms": p99, "requests_per_s": 1000.0 / float(np.mean(samples))}


def post(connection: http.client.HTTPConnection, payload: bytes) -> dict[str, Any]:
    connection.request("POST", "/v1/signals", body=payload, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"POST /v1/signals answered {response.status}: {data[:300]!r}")
    return json.loads(data)


def bench_serve(port: int, bodies: list[dict[str, Any]], count: int, clients: int,
                duration_s: float) -> dict[str, float]:
    payloads = [json.dumps(body).encode() for body in bodies]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for payload in payloads[:5]:
        post(connection, payload)
    samples = []
    for i in range(count):
        payload = payloads[i % len(payloads)]
        start = time.perf_counter_ns()  # JSON encoding is done above, as a client would cache nothing else
        post(connection, payload)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    connection.close()
    p50, p99 = percentile(samples, 50), percentile(samples, 99)

    done = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + duration_s

    def client(index: int) -> None:
        own = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.perf_counter() < deadline:
                post(own, payloads[(index + done[index]) % len(payloads)])
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
    return {"p50_ms": p50, "p99_ms": p99, "requests_per_s": sum(done) / elapsed}


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

    from serve.signals import ServeSignalsConfig, build_app, load_version

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
        progress(f"in process: {args.requests} requests of {len(symbols)} symbols")
        ours_peer = {"in_process": bench_in_process(loaded, bodies, args.requests)}

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, configure_logging=False,
                 log_to_driver=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            config = ServeSignalsConfig(registry=StoreConfig(url=root), http_port=port, replica_num_cpus=1)
            serve.run(build_app(config), name="signals-bench", route_prefix="/")
            progress(f"serve: {args.requests} requests, then {args.clients} clients for {args.duration_s} s")
            ours_peer["serve"] = bench_serve(port, bodies, args.requests, args.clients, args.duration_s)
        finally:
            serve.shutdown()
            ray.shutdown()

    ours, peer = ours_peer["serve"], ours_peer["in_process"]
    for metric, unit in (("p50_ms", "ms"), ("p99_ms", "ms"), ("requests_per_s", "1/s")):
        emit(line(BENCH, metric, ours[metric], "in_process", peer[metric], unit, unit == "1/s", digits=3,
                  symbols=len(symbols), features=len(names), clients=args.clients if unit == "1/s" else 1))
    gap = ours["p50_ms"] - peer["p50_ms"]
    emit({"bench": BENCH, "summary": True, "p50_gap_ms": round(gap, 3),
          "targets": {"serve_p50_within_3ms_of_in_process": gap <= TARGET_P50_GAP_MS},
          "symbols": len(symbols), "features": len(names), "model": version.version,
          "load_average": [round(load_before, 2), load_average_1m()], "cpus": os.cpu_count()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
