"""The main job: paper trading through the Ray trading plane, replaying real daily bars.

Run locally (starts a local Ray if RAY_ADDRESS is not set):
    python -m pipelines.trade --config configs/paper.yaml

Or on a running cluster:
    ray start --head --port=6380
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m pipelines.trade --config configs/paper.yaml

What it does: connects to Ray, creates the named ``orchestrator`` actor (namespace ``amcp``),
which creates the MarketData, Strategy, Portfolio, Risk, OMS, Broker (simulated) and Journal
actors, then drives batched cycles over the bundled sample (a few dozen US stocks, 2010-2017)
with a progress bar. It prints a summary table, writes ``runs/<run-id>/report.html`` (equity
and drawdown pictures), ``report.json`` and ``journal.sqlite`` (every command and event), and
ends with a one-line JSON summary on stdout. Bad config or data: exit code 2, a clear message.

Live (``configs/live.yaml``, ``mode: live``; the key pair in the environment variables named by
``broker.key_env`` / ``broker.secret_env``):
    python -m pipelines.trade --config configs/live.yaml [--max-cycles SESSIONS]

The bars of ``data:`` (ending at the last closed session) warm the strategies up, nothing is
traded on them; then one cycle runs per exchange session, from Alpaca's minute-bar stream, at
the session's close, trading at Alpaca. It runs until ``--max-cycles`` sessions or SIGINT/SIGTERM
(the cycle in progress finishes), printing a line per session on stderr, then the summary.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

from tqdm import tqdm

from actors.cluster import connect_ray
from amcp.config import TradeConfig
from pipelines._common import finish, guarded, load_config_and_data, new_run_id, parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args("Trade through the Ray trading plane: a replay of daily bars (paper, paper_server) or live "
                      "sessions (live).", "configs/paper.yaml", argv)

    def job() -> int:
        import ray

        from actors.credentials import stop_credential_vault
        from actors.orchestrator import (
            drive_orchestrator,
            get_or_create_orchestrator,
            pin_data,
            trading_panel,
        )
        from actors.planes import (
            broker_statement,
            first_live_session,
            prepare_run,
            start_paper_server,
            start_run_credentials,
            stop_paper_server,
        )
        from amcp.engine.cycle import CycleReport
        from amcp.engine.recorder import RunRecorder

        config, history, quality = load_config_and_data(args.config, TradeConfig, args.output_dir)
        live = config.mode == "live"
        panel = trading_panel(history, config.mode, args.max_cycles)
        print(f"data: {quality.summary_line()}", file=sys.stderr)
        if live:
            history_end = date.fromisoformat(str(panel.dates[-1]))
            first = first_live_session(config, history_end, time.time_ns())
            print(f"live: {len(panel)} sessions through {history_end} warm the strategies up (no orders); "
                  f"first live session {first}", file=sys.stderr)
        run_id = args.run_id or new_run_id(config.run.name)
        run_dir = Path(config.run.output_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        journal_url = config.journal.url or f"sqlite:///{(run_dir / 'journal.sqlite').resolve()}"
        config = prepare_run(config, run_dir)  # live modes: the state database (and live: the key pair)
        started = connect_ray(config.ray.address, config.ray.namespace)
        vault = venue = None  # the driver's, so they outlive a crashed orchestrator; their handles are held
        try:  # for the whole run: Ray ends an actor nobody holds, named or not
            vault = start_run_credentials(config, run_id)  # live modes: the broker's key pair, in memory only
            if config.mode == "paper_server":
                venue = start_paper_server(config, panel.symbols, run_id)
            # the orchestrator loads the bars itself (as does a restart of it), pinned to those loaded here
            orchestrator = get_or_create_orchestrator(pin_data(config, history), run_id, journal_url,
                                                      max_cycles=args.max_cycles)
            reports: dict[int, CycleReport] = {}  # by cycle: a cycle re-run after a restart replaces its report
            if live:
                _drive_live(orchestrator, args.max_cycles, reports, config.ray.orchestrator_max_restarts,
                            quiet=args.quiet, run_id=run_id)
            else:
                total = len(panel)
                with tqdm(total=total, desc=f"paper {run_id}", unit="cycle", disable=args.quiet, file=sys.stderr) as bar:
                    drive_orchestrator(orchestrator, total, config.ray.cycles_per_call, reports,
                                       max_failures=config.ray.orchestrator_max_restarts, progress=bar.update)
            recorder = RunRecorder()
            recorder.add(reports[cycle] for cycle in sorted(reports))
            status = ray.get(orchestrator.status.remote())
            restarts = status["restarts"]
            live_extra = {"live": {"warm_up_sessions": status["warm_up_sessions"], "next_session": status["next_session"],
                                   "bars": status["live_bars"], "feed": status["feed"]}} if live else {}
            statement = broker_statement(config, run_id, run_dir)  # live modes: final reconciliation
            ray.get(orchestrator.shutdown.remote())
            ray.kill(orchestrator)
        finally:
            if venue is not None:
                stop_paper_server(run_id)
            if vault is not None:
                stop_credential_vault(run_id)
            if started:
                ray.shutdown()
        finish(result=recorder.result(), mode=config.mode, config=config, panel=panel, quality=quality,
               run_dir=run_dir, quiet=args.quiet, extra={"run_id": run_id, "journal": journal_url, "restarts": restarts, **statement, **live_extra})
        return 0

    return guarded(job)


def _drive_live(orchestrator: Any, max_cycles: int | None, reports: dict[int, Any], max_failures: int, *,
                quiet: bool, run_id: str) -> None:
    """Run live sessions until ``max_cycles`` (None: no limit) or SIGINT/SIGTERM, which stop the
    job after the cycle in progress (nothing is canceled or engaged); a line per session on stderr."""
    from actors.orchestrator import drive_live
    from amcp.engine.clock import session_date

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        print(f"{signal.Signals(signum).name}: stopping after the cycle in progress", file=sys.stderr)
        stop.set()

    handlers = (signal.SIGINT, signal.SIGTERM)
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = {signum: signal.signal(signum, on_signal) for signum in handlers} if main_thread else {}
    try:
        with tqdm(total=max_cycles, desc=f"live {run_id}", unit="session", disable=quiet, file=sys.stderr) as bar:
            def progress(new: list[Any]) -> None:
                for report in new:
                    bar.write(f"session {session_date(report.ts_ns)}: equity {report.equity:,.2f} USD, "
                              f"{report.orders_submitted} orders, {len(report.fills)} fills, "
                              f"{len(report.denials)} denials", file=sys.stderr)
                bar.update(len(new))

            drive_live(orchestrator, max_cycles, reports, max_failures, stop.is_set, progress)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
