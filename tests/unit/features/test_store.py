"""The feature store: round trips on disk and on S3 (moto), pruning, filters, manifest, validation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from amcp.errors import DataError, StoreError
from amcp.features.registry import FeatureRegistry, SeriesInputs
from amcp.features.store import MANIFEST_NAME, read_features, read_manifest, write_features
from tests.conftest import require

SYMBOLS = ["MSFT", "AAPL", "BRK/B"]
BUCKET = "amcp-features-test"


def _registry() -> FeatureRegistry:
    registry = FeatureRegistry()

    @registry.register("ret1", window=2, group="test")
    def ret1(inputs: SeriesInputs) -> np.ndarray:
        """close[t] / close[t-1] - 1."""
        out = np.full(len(inputs), np.nan)
        out[1:] = inputs.close[1:] / inputs.close[:-1] - 1
        return out

    @registry.register("range1", window=1, group="test")
    def range1(inputs: SeriesInputs) -> np.ndarray:
        """(high - low) / close."""
        return (inputs.high - inputs.low) / inputs.close

    registry.add_cross_sectional("ret1_rank", "ret1", "rank", "rank of ret1 across symbols per date")
    return registry


def _frame(days: int = 600, seed: int = 0) -> pd.DataFrame:
    """Features of SYMBOLS over ``days`` business days from 2019-06-03 (two symbols skip some dates)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-06-03", periods=days)
    rows = []
    for i, symbol in enumerate(SYMBOLS):
        keep = np.ones(days, dtype=bool) if i == 0 else rng.random(days) > 0.05
        rows.append(pd.DataFrame({"date": dates[keep], "symbol": symbol}))
    frame = pd.concat(rows, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["ret1"] = rng.normal(0, 0.01, len(frame))
    frame["range1"] = rng.uniform(0, 0.05, len(frame))
    frame["ret1_rank"] = rng.uniform(0, 1, len(frame))
    frame["label_fwd_ret_5"] = rng.normal(0, 0.02, len(frame))
    frame.loc[frame.index[::7], "ret1"] = np.nan
    return frame


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.sort_values(["date", "symbol"], ignore_index=True)
    out["date"] = out["date"].astype("datetime64[ns]")
    return out


def _assert_same(left: pd.DataFrame, right: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True),
                                  check_dtype=False, check_exact=True)
    assert str(left["date"].dtype) == "datetime64[ns]"
    assert all(left[c].dtype == np.float64 for c in left.columns[2:])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """An in-process moto S3 server with an empty bucket, reached through s3fs like MinIO."""
    try:
        import boto3
        import s3fs  # noqa: F401 - the store reaches S3 through it
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        require(False, f"moto[server] and s3fs are needed for the S3 tests ({exc})")
        raise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options: dict[str, Any] = {"endpoint_url": f"http://{host}:{port}", "key": "testing-key",
                                   "secret": "testing-secret", "client_kwargs": {"region_name": "us-east-1"}}
        boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id=options["key"],
                     aws_secret_access_key=options["secret"], region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield f"s3://{BUCKET}", options
    finally:
        server.stop()


@pytest.mark.parametrize("partition_by", ["symbol", "year"])
def test_a_written_frame_reads_back_equal_sorted_by_date_and_symbol(tmp_path, partition_by) -> None:
    frame = _frame()

    manifest = write_features(str(tmp_path), frame, registry=_registry(), partition_by=partition_by)
    back = read_features(str(tmp_path))

    _assert_same(back, _sorted(frame))
    assert manifest.rows == len(frame) and manifest.symbols == 3
    assert sum(p.rows for p in manifest.partitions) == len(frame)
    keys = sorted(SYMBOLS) if partition_by == "symbol" else ["2019", "2020", "2021"]
    assert [p.key for p in manifest.partitions] == keys


def test_the_symbol_layout_has_one_percent_encoded_folder_per_symbol(tmp_path) -> None:
    write_features(str(tmp_path), _frame(50), registry=_registry())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [MANIFEST_NAME, "symbol=AAPL", "symbol=BRK%2FB", "symbol=MSFT"])


@pytest.mark.parametrize("partition_by", ["symbol", "year"])
def test_symbol_date_and_column_filters_return_exactly_the_matching_rows(tmp_path, partition_by) -> None:
    frame = _frame()
    write_features(str(tmp_path), frame, registry=_registry(), partition_by=partition_by)

    back = read_features(str(tmp_path), symbols=["BRK/B", "AAPL", "NOPE"], start="2020-02-03",
                         end=pd.Timestamp("2020-03-31"), columns=["label_fwd_ret_5", "ret1"])

    expected = _sorted(frame)
    expected = expected[expected["symbol"].isin(["BRK/B", "AAPL"])
                        & (expected["date"] >= "2020-02-03") & (expected["date"] <= "2020-03-31")]
    _assert_same(back, expected[["date", "symbol", "label_fwd_ret_5", "ret1"]])
    assert len(back) > 50


def test_a_symbol_read_opens_only_that_symbols_partition(tmp_path) -> None:
    write_features(str(tmp_path), _frame(100), registry=_registry())
    (tmp_path / "symbol=MSFT" / "part-0.parquet").write_bytes(b"not parquet")

    back = read_features(str(tmp_path), symbols=["AAPL"])

    assert set(back["symbol"]) == {"AAPL"}
    with pytest.raises(StoreError, match="symbol=MSFT"):
        read_features(str(tmp_path))


def test_a_year_read_opens_only_the_years_in_range(tmp_path) -> None:
    write_features(str(tmp_path), _frame(), registry=_registry(), partition_by="year")
    (tmp_path / "year=2019" / "part-0.parquet").unlink()

    back = read_features(str(tmp_path), start="2020-01-01", end="2020-12-31")

    assert back["date"].dt.year.unique().tolist() == [2020]
    with pytest.raises(StoreError, match="year=2019.*missing"):
        read_features(str(tmp_path), end="2019-12-31")


def test_an_empty_selection_has_the_columns_and_dtypes_of_the_set(tmp_path) -> None:
    write_features(str(tmp_path), _frame(30), registry=_registry())

    back = read_features(str(tmp_path), symbols=["NOPE"], columns=["range1"])

    assert list(back.columns) == ["date", "symbol", "range1"] and len(back) == 0
    assert str(back["date"].dtype) == "datetime64[ns]" and back["range1"].dtype == np.float64


def test_the_manifest_records_names_the_docs_hash_the_code_version_and_the_ranges(tmp_path) -> None:
    registry = _registry()
    frame = _frame(30)
    docs = {"label_fwd_ret_5": "close[t+5] / close[t] - 1"}

    manifest = write_features(str(tmp_path), frame, registry=registry, label_docs=docs, code_version="abc123",
                              metadata={"label_horizons": [5]})

    stored = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert stored["features"] == ["ret1", "range1", "ret1_rank", "label_fwd_ret_5"]
    assert stored["undocumented"] == [] and stored["code_version"] == "abc123"
    assert stored["metadata"] == {"label_horizons": [5]}
    assert (stored["start"], stored["end"]) == ("2019-06-03", "2019-07-12") and stored["rows"] == len(frame)
    assert read_manifest(str(tmp_path)) == manifest
    changed = FeatureRegistry()
    for name in ("ret1", "range1"):
        spec = registry.series(name)
        changed.register(name, window=spec.window, group=spec.group)(
            _with_doc(spec.fn, spec.doc + " (changed)") if name == "range1" else spec.fn)
    changed.add_cross_sectional("ret1_rank", "ret1", "rank", "rank of ret1 across symbols per date")
    other = write_features(str(tmp_path / "b"), frame, registry=changed, label_docs=docs)
    assert other.docs_sha256 != manifest.docs_sha256
    again = write_features(str(tmp_path / "c"), frame, registry=registry, label_docs=docs)
    assert again.docs_sha256 == manifest.docs_sha256


def _with_doc(fn, doc: str):
    def wrapper(inputs):
        return fn(inputs)

    wrapper.__doc__ = doc
    return wrapper


def test_columns_that_are_neither_registered_nor_documented_labels_are_listed_as_undocumented(tmp_path) -> None:
    manifest = write_features(str(tmp_path), _frame(30), registry=_registry())
    assert manifest.undocumented == ("label_fwd_ret_5",)


def test_a_rewrite_replaces_the_set_and_deletes_partitions_it_no_longer_has(tmp_path) -> None:
    frame = _frame(40)
    write_features(str(tmp_path), frame, registry=_registry())
    fewer = frame[frame["symbol"] != "MSFT"].drop(columns=["range1"])

    write_features(str(tmp_path), fewer, registry=_registry())

    assert not (tmp_path / "symbol=MSFT").exists()
    _assert_same(read_features(str(tmp_path)), _sorted(fewer))
    with pytest.raises(DataError, match="unknown columns \\['range1'\\]"):
        read_features(str(tmp_path), columns=["range1"])


def test_reading_where_nothing_was_written_says_so(tmp_path) -> None:
    with pytest.raises(DataError, match="no feature set.*_features.json is missing"):
        read_features(str(tmp_path / "nothing"))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda f: f.drop(columns=["symbol"]), "lacks the key columns \\['symbol'\\]"),
    (lambda f: f.assign(ret1=f["ret1"].astype("float32")), "must be float64, got \\{'ret1': 'float32'\\}"),
    (lambda f: f.assign(date=f["date"].dt.tz_localize("UTC")), "without a time zone"),
    (lambda f: f.assign(date=f["date"] + pd.Timedelta(hours=16)), "at midnight"),
    (lambda f: f.assign(date=f["date"].astype(str)), "must be datetime64"),
    (lambda f: pd.concat([f, f.iloc[:2]]), "2 rows repeat a \\(date, symbol\\)"),
    (lambda f: f.assign(symbol=f["symbol"].where(f.index != 3, "")), "non-empty strings"),
    (lambda f: f.rename(columns={"range1": "year"}), "not be"),
    (lambda f: f[["date", "symbol"]], "no feature columns"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_a_frame_that_breaks_the_layout_is_refused_naming_the_problem(tmp_path, mutate, message) -> None:
    with pytest.raises(DataError, match=message):
        write_features(str(tmp_path), mutate(_frame(20)), registry=_registry())
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_dates_of_any_datetime64_unit_are_stored_as_nanoseconds(tmp_path) -> None:
    frame = _frame(20)
    frame["date"] = frame["date"].astype("datetime64[s]")

    write_features(str(tmp_path), frame, registry=_registry())

    _assert_same(read_features(str(tmp_path)), _sorted(frame))


@pytest.mark.parametrize("partition_by", ["symbol", "year"])
def test_the_set_round_trips_through_s3(s3_server, partition_by) -> None:
    bucket, options = s3_server
    root = f"{bucket}/{uuid.uuid4().hex}/features"
    frame = _frame()

    manifest = write_features(root, frame, registry=_registry(), partition_by=partition_by,
                              storage_options=options)

    _assert_same(read_features(root, storage_options=options), _sorted(frame))
    filtered = read_features(root, symbols=["MSFT"], start="2020-06-01", columns=["range1"],
                             storage_options=options)
    expected = _sorted(frame)
    expected = expected[(expected["symbol"] == "MSFT") & (expected["date"] >= "2020-06-01")]
    _assert_same(filtered, expected[["date", "symbol", "range1"]])
    assert read_manifest(root, storage_options=options) == manifest
