"""The options scan job: arbitrage and ranked multi-leg candidates in every chain, one Ray task per chain.

Run:
    python -m pipelines.scan --config configs/scan.yaml

Chains are synthetic by default (``source.kind: synthetic``: one arbitrage-free chain per listed
underlying, built by the driver with :func:`amcp.options.synthetic.synthetic_chain`, so the job
needs no data), or come from a vendor end-of-day file (``source.kind: vendor_file``, the
historicaloptiondata.com layout, read once by the driver and split into one chain per underlying
and quote date; ``configs/scan_vxx.yaml`` scans the VXX sample this way) or from the market-data
store (``source.kind: store``, each task reading its own chain). Each Ray task
fits an SVI surface to its chain (:func:`amcp.options.surface.fit_surface`), then runs
:func:`amcp.options.scanner.scan_chain`: the arbitrage checks over every expiry, the candidate
ranking over the expiries the surface was fitted to. A progress bar runs on stderr.

Writes ``<output_dir>/<run-id>/violations.<fmt>``, ``candidates.<fmt>`` (Parquet or CSV; one row
per violation or kept candidate, with the chain's underlying and quote time) and ``chains.csv``
(one row per chain: contracts, fitted expiries, candidates evaluated, violations, or the reason
it failed), and ends with a one-line JSON summary on stdout: chains, candidates evaluated,
violations by kind, the top opportunities, wall time. Exit code 0 when every chain was scanned,
1 when some failed (the rest are written), 2 for a bad config or input file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from tqdm import tqdm

from actors.cluster import connect_ray
from amcp.config import (
    MarketConfig,
    ScanJobConfig,
    ScannerConfig,
    SurfaceFitConfig,
    SyntheticSource,
    VendorFileSource,
    load_config,
)
from amcp.errors import AmcpError, DataError
from amcp.options.chain import OptionChain
from amcp.options.scanner import ChainScan, scan_chain
from pipelines._common import guarded, new_run_id, run_bounded

EXIT_PARTIAL = 1

_ChainJob = tuple[tuple[str, date], Any, dict[str, Any] | None]  # (underlying, quote date), chain, store args


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Scan option chains for arbitrage and ranked multi-leg candidates.")
    parser.add_argument("--config", default="configs/scan.yaml", help="YAML config (default: configs/scan.yaml)")
    parser.add_argument("--run-id", default=None, help="run id (default: <run.name>-<UTC timestamp>)")
    parser.add_argument("--output-dir", default=None, help="folder for run folders, overriding run.output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bar: only the JSON summary")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- the Ray task


@dataclass(frozen=True)
class ChainScanned:
    """A task's answer: the scan of one chain, or why there is none."""

    underlying: str
    quote_date: date
    scan: ChainScan | None = None
    fitted_expiries: int = 0
    surface_arbitrage_free: bool | None = None
    error: str | None = None


def _scan_task(chain: OptionChain | None, store_args: dict[str, Any] | None, underlying: str, quote_date: date,
               market: MarketConfig, surface: SurfaceFitConfig, scanner: ScannerConfig) -> ChainScanned:
    """Load (from the store, when ``chain`` is None), fit and scan one chain; errors become a reason."""
    from amcp.options.surface import fit_surface

    try:
        if chain is None:
            from amcp.data.store import MarketDataStore
            from amcp.options.chain_io import read_chain

            where = store_args or {}
            store = MarketDataStore(where["url"], storage_options=where.get("options"))
            chain = read_chain(store, underlying, quote_date, rate=market.rate, div_yield=market.div_yield).chain
        fit = fit_surface(chain, forward_method=surface.forward_method, min_quotes=surface.min_quotes,
                          min_t_years=surface.min_t_years)
        fitted = np.array([np.datetime64(f.expiry, "D") for f in fit.diagnostics.fits], dtype="datetime64[D]")
        scan = scan_chain(chain, fit.surface, scanner, candidate_expiries=fitted)
        return ChainScanned(underlying, quote_date, scan, len(fitted), fit.diagnostics.arbitrage_free)
    except AmcpError as exc:
        return ChainScanned(underlying, quote_date, error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


# --------------------------------------------------------------------------- driver


def _vendor_chains(source: VendorFileSource, market: MarketConfig) -> dict[tuple[str, date], OptionChain]:
    from amcp.options.chain_io import chains_from_vendor_frame

    path = Path(source.path)
    if not path.is_file():
        raise DataError(f"source.path: vendor file not found: {path}")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"source.path: cannot read {path}: {exc}") from None
    loaded = chains_from_vendor_frame(frame, rate=market.rate, div_yield=market.div_yield, source=str(path))
    print(f"scan: {path.name}: {loaded.report.summary()}", file=sys.stderr)
    chains = {key: chain for key, chain in sorted(loaded.chains.items())
              if (not source.underlyings or key[0] in source.underlyings)
              and (not source.quote_dates or key[1] in source.quote_dates)}
    missing = sorted(set(source.quote_dates) - {key[1] for key in chains})
    if missing:
        raise DataError(f"source.quote_dates: no chain in {path} on {[d.isoformat() for d in missing]}")
    if not chains:
        raise DataError(f"source: no chain in {path} matches underlyings={list(source.underlyings)}")
    keys = sorted(chains, key=lambda key: (key[1], key[0]))[: source.max_chains]
    return {key: chains[key] for key in keys}


def _synthetic_chains(source: SyntheticSource, market: MarketConfig) -> dict[tuple[str, date], OptionChain]:
    from amcp.options.synthetic import synthetic_chain

    quote_date = source.as_of.astimezone(ZoneInfo("America/New_York")).date()
    symbols = [u.symbol for u in source.underlyings]
    if len(set(symbols)) != len(symbols):
        raise DataError(f"source.underlyings: each symbol may appear once, got {symbols}")
    chains = {}
    for index, u in enumerate(source.underlyings):
        try:
            chains[(u.symbol, quote_date)] = synthetic_chain(
                underlying=u.symbol, as_of=source.as_of, spot=u.spot, strike_step=u.strike_step, rate=market.rate,
                div_yield=market.div_yield, expiries_days=source.expiries_days, strike_width=source.strike_width,
                atm_vol=u.atm_vol, skew=u.skew, curvature=u.curvature, term=u.term,
                half_spread_abs=source.half_spread_abs, half_spread_rel=source.half_spread_rel,
                open_interest=source.open_interest, volume=source.volume, seed=source.seed + index)
        except DataError as exc:
            raise DataError(f"source.underlyings[{index}] ({u.symbol}): {exc}") from None
    return chains


def _run_tasks(ray: Any, config: ScanJobConfig, quiet: bool) -> list[ChainScanned]:
    task = ray.remote(num_cpus=config.ray.task_num_cpus, max_retries=0)(_scan_task)
    source = config.source
    jobs: list[_ChainJob] = []
    if isinstance(source, SyntheticSource):
        jobs = [(key, chain, None) for key, chain in _synthetic_chains(source, config.market).items()]
    elif isinstance(source, VendorFileSource):
        jobs = [(key, chain, None) for key, chain in _vendor_chains(source, config.market).items()]
    else:
        store_args = {"url": source.store.url, "options": source.store.storage_options()}
        jobs = [((u.upper(), d), None, store_args) for u in source.underlyings for d in source.quote_dates]

    def submit(job: _ChainJob) -> Any:
        (underlying, day), chain, store_args = job
        return task.remote(chain, store_args, underlying, day, config.market, config.surface, config.scanner)

    def failed(job: _ChainJob, reason: str) -> ChainScanned:
        (underlying, day), _, _ = job  # a dead task fails its chain, the job carries on
        return ChainScanned(underlying, day, error=f"task failed: {reason}")

    with tqdm(total=len(jobs), desc="scan", unit="chain", disable=quiet, file=sys.stderr) as bar:
        results: list[ChainScanned] = run_bounded(ray, jobs, submit, config.ray.max_tasks_in_flight,
                                                  on_error=failed, on_done=lambda _: bar.update(1))
    return sorted(results, key=lambda r: (r.quote_date, r.underlying))


def _frame(results: list[ChainScanned], attribute: str) -> pd.DataFrame:
    parts = []
    for result in results:
        if result.scan is not None:
            table = pd.DataFrame(getattr(result.scan, attribute))
            table.insert(0, "as_of", pd.Timestamp(result.scan.as_of))
            table.insert(0, "underlying", result.underlying)
            parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _write(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    target = path.with_suffix(f".{fmt}")
    if fmt == "parquet":
        frame.to_parquet(target, index=False)
    else:
        frame.to_csv(target, index=False)
    return target


def _top(candidates: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    if candidates.empty or n == 0:
        return []
    best = candidates.sort_values("ev_per_risk", ascending=False, kind="stable").head(n)
    out = []
    for row in best.itertuples(index=False):
        legs = [f"{getattr(row, f'qty_{k}'):+d} {getattr(row, f'symbol_{k}')}" for k in range(1, 5)
                if getattr(row, f"symbol_{k}")]
        out.append({"underlying": row.underlying, "as_of": str(row.as_of), "structure": row.structure, "legs": legs,
                    "cost": round(float(row.cost), 4), "max_loss": round(float(row.max_loss), 4),
                    "ev": round(float(row.ev), 4), "ev_per_risk": round(float(row.ev_per_risk), 4)})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def job() -> int:
        import ray

        started_at = time.perf_counter()
        config = load_config(args.config, ScanJobConfig)
        if args.output_dir:
            config = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": args.output_dir})})
        started = connect_ray(config.ray.address, "amcp")
        try:
            results = _run_tasks(ray, config, args.quiet)
        finally:
            if started:
                ray.shutdown()
        run_id = args.run_id or new_run_id(config.run.name)
        run_dir = Path(config.run.output_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        violations, candidates = _frame(results, "violations"), _frame(results, "candidates")
        files = {"violations": str(_write(violations, run_dir / "violations", config.output.format)),
                 "candidates": str(_write(candidates, run_dir / "candidates", config.output.format))}
        per_chain = pd.DataFrame([{
            "underlying": r.underlying, "quote_date": r.quote_date.isoformat(),
            "contracts": r.scan.contracts if r.scan else None,
            "contracts_tradeable": r.scan.contracts_tradeable if r.scan else None,
            "fitted_expiries": r.fitted_expiries, "surface_arbitrage_free": r.surface_arbitrage_free,
            "candidates_evaluated": r.scan.total_candidates_evaluated if r.scan else 0,
            "violations": len(r.scan.violations) if r.scan else 0, "error": r.error,
        } for r in results])
        per_chain.to_csv(run_dir / "chains.csv", index=False)
        files["chains"] = str(run_dir / "chains.csv")
        failures = [{"underlying": r.underlying, "quote_date": r.quote_date.isoformat(), "reason": r.error}
                    for r in results if r.error]
        evaluated: Counter[str] = Counter()
        for r in results:
            if r.scan:
                evaluated.update(r.scan.candidates_evaluated)
        by_kind = dict(Counter(violations["kind"])) if not violations.empty else {}
        summary = {
            "ok": not failures, "job": "scan", "run_id": run_id, "source": config.source.kind,
            "chains": len(results), "chains_scanned": len(results) - len(failures), "failures": failures,
            "candidates_evaluated": sum(evaluated.values()), "candidates_by_structure": dict(evaluated),
            "violations": len(violations), "violations_by_kind": by_kind,
            "top": _top(candidates, config.output.top), "files": files,
            "elapsed_s": round(time.perf_counter() - started_at, 3),
        }
        if not args.quiet:
            print(f"scan: {summary['chains_scanned']}/{len(results)} chains, {summary['candidates_evaluated']:,} "
                  f"candidates evaluated, {len(violations)} violations; results in {run_dir}", file=sys.stderr)
            for failure in failures[:20]:
                print(f"  failed {failure['underlying']} {failure['quote_date']}: {failure['reason']}", file=sys.stderr)
        print(json.dumps(summary, default=str))
        return 0 if not failures else EXIT_PARTIAL

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
