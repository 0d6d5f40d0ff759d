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
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from amcp.config import TradeConfig
from pipelines._common import connect_ray, finish, guarded, load_config_and_data, new_run_id, parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args("Paper-trade a replay of daily bars through the Ray trading plane.", "configs/paper.yaml", argv)

    def job() -> int:
        import ray

        from actors.orchestrator import drive_orchestrator, get_or_create_orchestrator
        from actors.planes import broker_statement, prepare_run
        from amcp.engine.cycle import CycleReport
        from amcp.engine.recorder import RunRecorder

        config, panel, quality = load_config_and_data(args.config, TradeConfig, args.output_dir)
        if args.max_cycles:
            panel = panel.slice(0, args.max_cycles)
        print(f"data: {quality.summary_line()}", file=sys.stderr)
        run_id = args.run_id or new_run_id(config.run.name)
        run_dir = Path(config.run.output_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        journal_url = config.journal.url or f"sqlite:///{(run_dir / 'journal.sqlite').resolve()}"
        config = prepare_run(config, run_dir)  # live modes: the state database; mode live is refused
        started = connect_ray(config.ray.address, config.ray.namespace)
        try:
            panel_ref = ray.put(panel)  # held for the whole run: a restarted orchestrator reads it again
            orchestrator = get_or_create_orchestrator(config, panel_ref, run_id, journal_url)
            reports: dict[int, CycleReport] = {}  # by cycle: a cycle re-run after a restart replaces its report
            total = len(panel)
            with tqdm(total=total, desc=f"paper {run_id}", unit="cycle", disable=args.quiet, file=sys.stderr) as bar:
                drive_orchestrator(orchestrator, total, config.ray.cycles_per_call, reports,
                                   max_failures=config.ray.orchestrator_max_restarts, progress=bar.update)
            recorder = RunRecorder()
            recorder.add(reports[cycle] for cycle in sorted(reports))
            restarts = ray.get(orchestrator.status.remote())["restarts"]
            statement = broker_statement(config, run_id, run_dir)  # live modes: final reconciliation
            ray.get(orchestrator.shutdown.remote())
            ray.kill(orchestrator)
        finally:
            if started:
                ray.shutdown()
        finish(result=recorder.result(), mode=config.mode, config=config, panel=panel, quality=quality,
               run_dir=run_dir, quiet=args.quiet, extra={"run_id": run_id, "journal": journal_url, "restarts": restarts, **statement})
        return 0

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
