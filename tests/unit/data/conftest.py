"""Fixtures for the data tests: an in-process S3 server (moto) and a daily-bar builder for the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from amcp.data.calendar import midnight_ns
from amcp.data.schemas import BAR_SCHEMA
from tests.conftest import require

BUCKET = "amcp-test"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """An S3 endpoint with an empty bucket: yields ``("s3://amcp-test", storage_options)``.

    The options are what a MinIO deployment would pass to s3fs (``endpoint_url``, ``key``,
    ``secret``); the credentials are dummies given through the options, never the environment.
    """
    try:
        import boto3
        import s3fs  # noqa: F401 - the store reaches S3 through it
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        require(False, f"moto[server] and s3fs are needed for the S3 tests ({exc})")
        raise  # unreachable: require skips or fails
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options: dict[str, Any] = {
            "endpoint_url": f"http://{host}:{port}",
            "key": "testing-key",
            "secret": "testing-secret",
            "client_kwargs": {"region_name": "us-east-1"},
        }
        client = boto3.client(
            "s3",
            endpoint_url=options["endpoint_url"],
            aws_access_key_id=options["key"],
            aws_secret_access_key=options["secret"],
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}", options
    finally:
        server.stop()


def bars(symbols: list[str], days: list[str] | np.ndarray, *, seed: int = 0) -> pa.Table:
    """Daily bars of ``symbols`` on ``days`` (ISO dates), stamped at midnight New York like the store's."""
    sessions = np.asarray(days, dtype="datetime64[D]")
    ts = midnight_ns(sessions)
    rng = np.random.default_rng(seed)
    n = len(sessions)
    columns: dict[str, list[Any]] = {name: [] for name in BAR_SCHEMA.names}
    for symbol in symbols:
        close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 4)
        columns["symbol"] += [symbol] * n
        columns["ts"] += ts.tolist()
        columns["open"] += (close * 0.999).tolist()
        columns["high"] += (close * 1.01).tolist()
        columns["low"] += (close * 0.99).tolist()
        columns["close"] += close.tolist()
        columns["volume"] += rng.integers(1_000, 1_000_000, n).astype(float).tolist()
        columns["vwap"] += [None if i % 5 == 0 else float(c) for i, c in enumerate(close)]
        columns["trade_count"] += [None if i % 7 == 0 else int(i * 10) for i in range(n)]
    arrays = [
        pa.array(columns[field.name], type=pa.int64()).cast(field.type)
        if field.name == "ts"
        else pa.array(columns[field.name], type=field.type)
        for field in BAR_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=BAR_SCHEMA)


@pytest.fixture
def make_bars() -> Callable[..., pa.Table]:
    """:func:`bars`, as a fixture: ``make_bars(["AAPL"], ["2020-01-02", ...], seed=1)``."""
    return bars
