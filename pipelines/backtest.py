"""The event-driven backtest job (in-process, no Ray).

Run:
    python -m pipelines.backtest --config configs/backtest.yaml

Replays the configured daily bars through strategies → risk → OMS → simulated venue →
portfolio, writes ``runs/<run-id>/report.html`` and ``report.json``, and ends with a one-line
JSON summary on stdout. A bad config or data file exits with code 2 and a clear message.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from amcp.backtest.engine import BacktestEngine
from amcp.config import BacktestConfig
from pipelines._common import finish, guarded, load_config_and_data, new_run_id, parse_args


def main(argv: list[str] | None = None) -> int:
    args = parse_args("Run the event-driven backtest.", "configs/backtest.yaml", argv)

    def job() -> int:
        config, panel, quality = load_config_and_data(args.config, BacktestConfig, args.output_dir)
        if args.max_cycles:
            panel = panel.slice(0, args.max_cycles)
        print(f"data: {quality.summary_line()}", file=sys.stderr)
        run_id = args.run_id or new_run_id(config.run.name)
        engine = BacktestEngine(config, panel)
        with tqdm(total=len(panel), desc="backtest", unit="cycle", disable=args.quiet, file=sys.stderr) as bar:
            result = engine.run(progress=lambda done, total: bar.update(done - bar.n))
        finish(result=result, mode="backtest", config=config, panel=panel, quality=quality,
               run_dir=Path(config.run.output_dir) / run_id, quiet=args.quiet)
        return 0

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
