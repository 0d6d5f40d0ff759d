"""The ingest job: bars (and option chains, corporate actions) into the Parquet market-data store.

Run:
    python -m pipelines.ingest --config configs/ingest.yaml            # the bundled sample file
    python -m pipelines.ingest --config configs/ingest_alpaca.yaml     # Alpaca (APCA_API_KEY_ID/SECRET)

Sources: a CSV/Parquet file (``source.kind: file``) or Alpaca's historical API
(``source.kind: alpaca``). Symbols fan out as Ray tasks (``ray.symbols_per_task`` each, at most
``ray.max_tasks_in_flight`` at once) with a progress bar; every task checks quality on the way
in (repair, quarantine or strict), writes idempotently, and reports per symbol. Alpaca requests
from all tasks share one token bucket (a Ray actor, ``rate_limit_per_minute``), and a rerun after
a crash resumes at the first unfinished window (``--restart`` starts over). Ends with a one-line
JSON summary: rows written, symbols, failures with reasons; the per-symbol report (rows and
defects of every symbol) goes to ``runs/<run-id>/ingest_report.json``. Exit code 0 when every symbol
succeeded, 1 when some failed (the rest are stored), 2 for a bad config or input file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from actors.cluster import connect_ray
from amcp.config import AlpacaSourceConfig, FileSourceConfig, IngestConfig, load_config
from amcp.data.ingest import (
    IngestCheckpoint,
    QualityPolicy,
    Quarantine,
    SymbolIngest,
    date_windows,
    ingest_alpaca_symbol,
    job_key,
    store_bars,
    summarize,
)
from amcp.errors import ConfigError
from pipelines._common import guarded, new_run_id, run_bounded

EXIT_PARTIAL = 1

_KIND_OF_TIMEFRAME = {"1Day": "equities/daily", "1Min": "equities/intraday", "tick": "equities/tick"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Ingest market data into the Parquet store.")
    parser.add_argument("--config", default="configs/ingest.yaml", help="YAML config (default: configs/ingest.yaml)")
    parser.add_argument("--restart", action="store_true", help="forget finished windows and fetch everything again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar: only the JSON summary")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- Ray tasks


def _store(url: str, options: dict[str, Any]) -> Any:
    from amcp.data.store import MarketDataStore

    return MarketDataStore(url, storage_options=options)


def _file_task(url: str, options: dict[str, Any], kind: str, table: pa.Table, quality: QualityPolicy,
               key: str, daily: bool) -> list[SymbolIngest]:
    store = _store(url, options)
    quarantine = Quarantine(url, options, key) if quality.policy == "quarantine" else None
    return list(store_bars(store, kind, table, quality, quarantine, daily=daily).values())


def _alpaca_task(url: str, options: dict[str, Any], source_args: dict[str, Any], limiter: Any, symbols: Sequence[str],
                 windows: Sequence[tuple[date, date]], kind: str, timeframe: str, quality: QualityPolicy, key: str,
                 today: date, progress: Any) -> list[SymbolIngest]:
    from actors.rate_limiter import RemoteRateLimiter
    from amcp.data.alpaca_source import AlpacaHistoricalSource

    store = _store(url, options)
    source = AlpacaHistoricalSource(**source_args, rate_limiter=RemoteRateLimiter(limiter))
    checkpoint = IngestCheckpoint(url, options, key)
    quarantine = Quarantine(url, options, key) if quality.policy == "quarantine" else None

    def fetch(symbol: str, lo: date, hi: date) -> pa.Table:
        if timeframe == "tick":
            return source.trades([symbol], lo, hi)
        return source.bars([symbol], lo, hi, timeframe=timeframe, adjustment="raw")

    results = []
    try:
        for symbol in symbols:
            results.append(
                ingest_alpaca_symbol(store, fetch, checkpoint, symbol, windows, kind, quality, quarantine,
                                     daily=timeframe == "1Day", today=today,
                                     on_window=lambda: progress.tick.remote(1))
            )
    finally:
        source.close()
    return results


def _reference_task(url: str, options: dict[str, Any], source_args: dict[str, Any], limiter: Any, what: str,
                    names: Sequence[str], start: date, end: date) -> list[SymbolIngest]:
    """Corporate actions for ``names`` (one request set) or option chain snapshots per underlying."""
    from actors.rate_limiter import RemoteRateLimiter
    from amcp.data.alpaca_source import AlpacaHistoricalSource
    from amcp.errors import AmcpError

    store = _store(url, options)
    source = AlpacaHistoricalSource(**source_args, rate_limiter=RemoteRateLimiter(limiter))
    results = []
    try:
        if what == "corporate_actions":
            kind = "reference/corporate_actions"
            try:
                table = source.corporate_actions(list(names), start, end)
                written = store.write(kind, table) if table.num_rows else None
                results.append(SymbolIngest("*", kind, rows_in=table.num_rows,
                                            rows_written=written.rows_written if written else 0,
                                            rows_replaced=written.rows_replaced if written else 0))
            except AmcpError as exc:
                results.append(SymbolIngest("*", kind, error=str(exc)))
        else:
            kind = "options/chains"
            for underlying in names:
                try:
                    table = source.option_chain(underlying)
                    written = store.write(kind, table) if table.num_rows else None
                    results.append(SymbolIngest(underlying, kind, rows_in=table.num_rows,
                                                rows_written=written.rows_written if written else 0,
                                                rows_replaced=written.rows_replaced if written else 0))
                except AmcpError as exc:
                    results.append(SymbolIngest(underlying, kind, error=str(exc)))
    finally:
        source.close()
    return results


class _Progress:
    """Counts finished windows across tasks, so the driver's bar moves inside long tasks."""

    def __init__(self) -> None:
        self.done = 0

    def tick(self, n: int) -> None:
        self.done += n

    def value(self) -> int:
        return self.done


# --------------------------------------------------------------------------- driver


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


@dataclass(frozen=True)
class _Unit:
    """One Ray task to run: ``submit()`` starts it; ``symbols`` fail with its error if it dies."""

    submit: Callable[[], Any]
    weight: int
    symbols: Sequence[str]
    kind: str


def _run_units(ray: Any, units: list[_Unit], limit: int, bar: tqdm, poll: Callable[[], int] | None = None
               ) -> list[SymbolIngest]:
    """Run ``units`` with at most ``limit`` in flight; their results in completion order.

    A task that fails outright (a worker crash, an unexpected error) fails its symbols with the
    reason; the other tasks carry on. The bar moves by each unit's weight, or to ``poll()``.
    """
    def failed(unit: _Unit, reason: str) -> list[SymbolIngest]:
        return [SymbolIngest(symbol, unit.kind, error=f"task failed: {reason}") for symbol in unit.symbols]

    batches = run_bounded(ray, units, lambda unit: unit.submit(), limit, on_error=failed, timeout=0.5,
                          on_done=(lambda unit: bar.update(unit.weight)) if poll is None else None,
                          poll=(lambda: bar.update(max(0, poll() - bar.n))) if poll is not None else None)
    return [result for batch in batches for result in batch]


def _file_job(config: IngestConfig, source: FileSourceConfig, ray: Any, quiet: bool) -> tuple[list[SymbolIngest], dict[str, Any]]:
    from amcp.data.files import read_daily_bar_file, read_intraday_bar_file

    options = config.store.storage_options()
    kind = _KIND_OF_TIMEFRAME[source.timeframe]
    reader = read_daily_bar_file if source.timeframe == "1Day" else read_intraday_bar_file
    print(f"ingest: reading {source.path}", file=sys.stderr)
    file_options = options if source.path.startswith(("s3://", "s3a://")) else None  # a file in the same bucket
    table = reader(source.path, symbol=source.symbol, storage_options=file_options)
    if source.symbols:
        present = set(pc.unique(table.column("symbol")).to_pylist())
        missing = sorted(set(source.symbols) - present)
        if missing:
            raise ConfigError(f"source.symbols: not in {source.path}: {missing}")
        table = table.filter(pc.is_in(table.column("symbol"), pa.array(list(source.symbols))))
    table = table.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    symbols = pc.unique(table.column("symbol")).to_pylist()
    quality = QualityPolicy(config.quality.policy, config.quality.max_abs_return)
    key = job_key({"source": source.model_dump(mode="json"), "kind": kind, "quality": config.quality.model_dump()})
    task = ray.remote(num_cpus=config.ray.task_num_cpus)(_file_task)
    counts = {c["values"]: c["counts"] for c in pc.value_counts(table.column("symbol")).to_pylist()}
    units, offset = [], 0
    daily = source.timeframe == "1Day"
    for group in _chunks(symbols, config.ray.symbols_per_task):
        n = sum(counts[s] for s in group)
        ref = ray.put(table.slice(offset, n))
        offset += n
        units.append(_Unit(lambda ref=ref: task.remote(config.store.url, options, kind, ref, quality, key, daily),
                           len(group), group, kind))
    with tqdm(total=len(symbols), desc="ingest", unit="symbol", disable=quiet, file=sys.stderr) as bar:
        results = _run_units(ray, units, config.ray.max_tasks_in_flight, bar)
    return results, {"kind": kind, "job_key": key}


def _alpaca_job(config: IngestConfig, source: AlpacaSourceConfig, ray: Any, quiet: bool, restart: bool
                ) -> tuple[list[SymbolIngest], dict[str, Any]]:
    from actors.rate_limiter import RateLimiterActor

    api_key, secret = os.environ.get(source.key_env), os.environ.get(source.secret_env)
    if not api_key or not secret:
        raise ConfigError(f"source: the Alpaca key pair is read from ${source.key_env} and ${source.secret_env}; "
                          "set both in the environment")
    options = config.store.storage_options()
    kind = _KIND_OF_TIMEFRAME[source.timeframe]
    today = datetime.now(timezone.utc).date()
    end = source.end or today
    windows = date_windows(source.start, end, source.chunk_days)
    quality = QualityPolicy(config.quality.policy, config.quality.max_abs_return)
    identity = source.model_dump(mode="json", exclude={"rate_limit_per_minute", "max_retries", "key_env", "secret_env",
                                                       "corporate_actions", "option_underlyings"})
    key = job_key({"source": identity, "kind": kind, "quality": config.quality.model_dump(), "end": end.isoformat()})
    if restart:
        IngestCheckpoint(config.store.url, options, key).clear()
    source_args = {"api_key": api_key, "secret_key": secret, "url_override": source.url_override,
                   "max_retries": source.max_retries, "feed": source.feed}
    limiter = RateLimiterActor.remote(source.rate_limit_per_minute)
    progress = ray.remote(num_cpus=0)(_Progress).remote()
    task = ray.remote(num_cpus=config.ray.task_num_cpus)(_alpaca_task)
    symbols = list(source.symbols)
    units = []
    for group in _chunks(symbols, config.ray.symbols_per_task):
        units.append(_Unit(lambda group=group: task.remote(config.store.url, options, source_args, limiter, group,
                                                           windows, kind, source.timeframe, quality, key, today,
                                                           progress),
                           len(group) * len(windows), group, kind))
    reference = ray.remote(num_cpus=config.ray.task_num_cpus)(_reference_task)
    if source.corporate_actions:
        units.append(_Unit(lambda: reference.remote(config.store.url, options, source_args, limiter,
                                                    "corporate_actions", symbols, source.start, end),
                           0, ["*"], "reference/corporate_actions"))
    if source.option_underlyings:
        underlyings = list(source.option_underlyings)
        units.append(_Unit(lambda: reference.remote(config.store.url, options, source_args, limiter,
                                                    "option_chains", underlyings, source.start, end),
                           0, underlyings, "options/chains"))
    with tqdm(total=sum(u.weight for u in units), desc="ingest", unit="window", disable=quiet, file=sys.stderr) as bar:
        results = _run_units(ray, units, config.ray.max_tasks_in_flight, bar,
                             poll=lambda: ray.get(progress.value.remote()))
    return results, {"kind": kind, "job_key": key, "windows_per_symbol": len(windows)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def job() -> int:
        import ray

        started_at = time.perf_counter()
        config = load_config(args.config, IngestConfig)
        started = connect_ray(config.ray.address, "amcp")
        try:
            if isinstance(config.source, FileSourceConfig):
                results, extra = _file_job(config, config.source, ray, args.quiet)
            else:
                results, extra = _alpaca_job(config, config.source, ray, args.quiet, args.restart)
        finally:
            if started:
                ray.shutdown()
        summary = summarize(results)
        failures = summary["failures"]
        run_id = new_run_id(config.run.name)
        report = Path(config.run.output_dir) / run_id / "ingest_report.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"run_id": run_id, **extra, **summary,
                                      "per_symbol": [r.to_dict() for r in sorted(results, key=lambda r: (r.kind, r.symbol))]},
                                     indent=1, default=str))
        out = {"ok": not failures, "job": "ingest", "run_id": run_id, "source": config.source.kind,
               "store": config.store.url, **extra, **summary, "report": str(report),
               "elapsed_s": round(time.perf_counter() - started_at, 3)}
        if not args.quiet:
            print(f"ingest: {summary['symbols']} symbols, {summary['rows_written']} rows written, "
                  f"{summary['rows_replaced']} replaced, {summary['rows_quarantined']} quarantined, "
                  f"{len(failures)} failed", file=sys.stderr)
            for failure in failures[:20]:
                print(f"  failed {failure['symbol']}: {failure['reason']}", file=sys.stderr)
        print(json.dumps(out, default=str))
        return 0 if not failures else EXIT_PARTIAL

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
