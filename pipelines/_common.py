"""What every job shares: argument parsing, clear errors, run folders, reports, summaries."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from amcp.backtest.report import write_report
from amcp.config import load_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.quality import QualityReport
from amcp.engine.recorder import RunResult
from amcp.errors import AmcpError

ConfigT = TypeVar("ConfigT")
ItemT = TypeVar("ItemT")

EXIT_BAD_INPUT = 2


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (0 or a negative count is refused, not ignored)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(description: str, default_config: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=default_config, help=f"YAML config file (default: {default_config})")
    parser.add_argument("--run-id", default=None, help="run id (default: <run.name>-<UTC timestamp>)")
    parser.add_argument("--output-dir", default=None,
                        help="folder for run folders, overriding run.output_dir (use an absolute path under ray job submit)")
    parser.add_argument("--max-cycles", type=positive_int, default=None, help="stop after this many cycles (a short slice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or table: only the JSON summary")
    return parser.parse_args(argv)


def fail(message: str, exit_code: int = EXIT_BAD_INPUT) -> int:
    """Print an error (no traceback) and a JSON summary line; return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    print(json.dumps({"ok": False, "error": message.splitlines()[0][:500]}))
    return exit_code


def guarded(job: Callable[[], int]) -> int:
    """Run a job; turn any AmcpError into a clear message and its exit code: 2 for bad input
    (config, data), or the error's own ``exit_code`` (1 for a run that failed on the way)."""
    try:
        return job()
    except AmcpError as exc:
        return fail(str(exc), getattr(exc, "exit_code", EXIT_BAD_INPUT))


def run_bounded(
    ray: Any,
    items: Iterable[ItemT],
    submit: Callable[[ItemT], Any],
    limit: int,
    *,
    on_error: Callable[[ItemT, str], Any],
    on_done: Callable[[ItemT], None] | None = None,
    poll: Callable[[], None] | None = None,
    timeout: float | None = None,
) -> list[Any]:
    """Run one Ray task per item, at most ``limit`` in flight; one result per item, in completion order.

    ``submit(item)`` starts an item's task and returns its object ref; items are submitted in
    ``items`` order, topping up to ``limit`` whenever a task finishes. Each round waits (``ray.wait``,
    one ref, ``timeout`` seconds; None blocks) for a task to finish and takes its value
    (``ray.get``). A task that raised (a worker crash, an unexpected error) gives
    ``on_error(item, reason)`` instead, ``reason`` being ``"<ExceptionType>: <first line, at most
    300 characters>"`` of the task's own error (the ``cause`` Ray wraps); the other tasks carry on.
    If ``on_error`` raises, the tasks still in flight are cancelled (``ray.cancel``) and its
    exception propagates. ``on_done(item)`` runs after each item's result (or ``on_error`` answer)
    is collected, ``poll()`` after every wait round, finished task or not (for progress reporting).
    """
    queue = deque(items)
    pending: dict[Any, ItemT] = {}
    results: list[Any] = []
    while queue or pending:
        while queue and len(pending) < limit:
            item = queue.popleft()
            pending[submit(item)] = item
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=timeout)
        for ref in ready:
            item = pending.pop(ref)
            try:
                results.append(ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - on_error decides: a failed result or a raise
                cause = getattr(exc, "cause", None) or exc
                reason = f"{type(cause).__name__}: {str(cause).splitlines()[0][:300] if str(cause) else ''}"
                try:
                    results.append(on_error(item, reason))
                except BaseException:
                    for other in pending:
                        ray.cancel(other)
                    raise
            if on_done is not None:
                on_done(item)
        if poll is not None:
            poll()
    return results


def new_run_id(name: str) -> str:
    return f"{name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%fZ}"


def load_config_and_data(
    path: str, model: type[ConfigT], output_dir: str | None = None
) -> tuple[ConfigT, BarPanel, QualityReport]:
    config = load_config(path, model)  # type: ignore[type-var]
    if output_dir:
        config = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": output_dir})})  # type: ignore[attr-defined]
    panel, quality = load_daily_bars(config.data)  # type: ignore[attr-defined]
    return config, panel, quality


def finish(
    *,
    result: RunResult,
    mode: str,
    config: Any,
    panel: BarPanel,
    quality: QualityReport,
    run_dir: Path,
    quiet: bool,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the report, print the summary table, and print the one-line JSON summary last."""
    run_dir.mkdir(parents=True, exist_ok=True)
    starting = float(config.account.starting_cash_usd)
    summary = result.summary(mode=mode, symbols=len(panel.symbols), starting_equity=starting, report_path=None)
    metrics = result.metrics(starting)
    html = write_report(
        run_dir,
        summary | {"metrics": metrics},
        result.ts_ns,
        result.equity,
        result.fill_records(),
        result.denials_by_reason(),
        quality.to_dict(),
        title=f"amcp {mode} run {run_dir.name}",
    )
    summary["report"] = str(html)
    summary["data_repairs"] = quality.to_dict().get("counts", {})
    if extra:
        summary.update(extra)
    if not quiet:
        print_table(summary, metrics)
    print(json.dumps(summary, default=str))
    return summary


def print_table(summary: dict[str, Any], metrics: dict[str, float]) -> None:
    rows = [
        ("mode", summary["mode"]),
        ("period", f"{summary['start']} → {summary['end']}"),
        ("symbols / cycles / bars", f"{summary['symbols']} / {summary['cycles']} / {summary['bars']}"),
        ("orders / fills", f"{summary['orders']} / {summary['fills']}"),
        ("denials", ", ".join(f"{k}={v}" for k, v in summary["denials"].items()) or "none"),
        ("final equity", f"{summary['final_equity']:,.2f} USD"),
        ("total return", f"{metrics['total_return']:.2%}"),
        ("CAGR", f"{metrics['cagr']:.2%}"),
        ("Sharpe / Sortino", f"{metrics['sharpe']:.2f} / {metrics['sortino']:.2f}"),
        ("max drawdown / Calmar", f"{metrics['max_drawdown']:.2%} / {metrics['calmar']:.2f}"),
        ("turnover / hit rate / exposure", f"{metrics['turnover']:.2f} / {metrics['hit_rate']:.2%} / {metrics['exposure']:.2%}"),
        ("report", summary["report"]),
    ]
    width = max(len(k) for k, _ in rows)
    print("─" * (width + 50))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("─" * (width + 50))
