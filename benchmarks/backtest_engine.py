"""Benchmark: amcp's event-driven backtest against backtrader, same strategy, same data.

Run:
    .venv/bin/python benchmarks/backtest_engine.py [--symbols 20] [--start 2005-01-01] [--end 2017-11-10]

A moving-average crossover (SMA 10/30, buy 100 shares on an up-cross, sell them on a
down-cross; market orders at the next bar's open; no fees, slippage, volume cap or latency) on
real daily bars of the symbols in ``../shared/data/us_equities_daily.parquet`` that have a bar
on every session of the window. Both engines run in this process; data loading is excluded
from both timings. Prints JSON lines: ``bars_per_s`` (ours vs backtrader, ratio > 1 = faster),
``trades_match`` (1 when every trade — symbol, day, side, quantity, price — and the final equity
agree), then a summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _backtrader_peer import run_backtrader_ma_cross  # noqa: E402

from amcp.backtest.engine import BacktestEngine  # noqa: E402
from amcp.config import BacktestConfig, DataConfig, parse_config  # noqa: E402,F401
from amcp.data.bars import BarPanel, load_daily_bars  # noqa: E402
from amcp.engine.clock import session_date  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
FAST, SLOW, QUANTITY, CASH = 10, 30, 100, 100_000_000.0


def complete_symbols(path: Path, start: str, end: str, count: int) -> list[str]:
    frame = pd.read_parquet(path, columns=["symbol", "date", "asset_type"])
    frame = frame[(frame.date >= pd.Timestamp(start).date()) & (frame.date <= pd.Timestamp(end).date())]
    frame = frame[frame.asset_type == "stock"]
    sessions = frame.date.nunique()
    counts = frame.groupby("symbol").date.nunique()
    full = sorted(counts[counts == sessions].index)
    return full[:count]


def amcp_config(path: Path, symbols: list[str], start: str, end: str) -> BacktestConfig:
    big = 10**12
    return parse_config(
        {
            "data": {"path": str(path), "symbols": symbols, "start": start, "end": end, "quality_policy": "repair"},
            "account": {"starting_cash_usd": int(CASH), "account_type": "margin", "margin_multiplier": 4},
            "venue": {"participation_rate": None, "slippage": {"model": "none"}, "latency": {"mean_ms": 0, "jitter_ms": 0},
                      "fees": {"sec_fee_per_million_usd": 0, "finra_taf_per_share_usd": 0, "finra_taf_max_usd": 0}},
            "risk": {"max_order_quantity": big, "max_order_notional_usd": big, "max_position_notional_usd": big,
                     "max_gross_exposure_usd": big, "price_collar_pct": 1.0, "throttle_max_orders": 10**6,
                     "daily_loss_reduce_pct": 1.0, "daily_loss_halt_pct": 1.0},
            "sizing": {"min_trade_notional_usd": 0, "cash_buffer_pct": 0},
            "strategies": [{"kind": "ma_cross", "id": "sma-cross", "fast_bars": FAST, "slow_bars": SLOW, "quantity": QUANTITY}],
        },
        BacktestConfig,
        "benchmark",
    )


def frames_of(panel: BarPanel) -> dict[str, pd.DataFrame]:
    index = pd.to_datetime([session_date(int(t)) for t in panel.ts_ns])
    return {
        symbol: pd.DataFrame({name: getattr(panel, name)[:, j] for name in ("open", "high", "low", "close", "volume")}, index=index)
        for j, symbol in enumerate(panel.symbols)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=20, help="how many complete-history stocks to use")
    parser.add_argument("--start", default="2005-01-03")
    parser.add_argument("--end", default="2017-11-10")
    args = parser.parse_args()
    if not SHARED.is_file():
        print(json.dumps({"bench": "backtest_engine", "ok": False, "error": f"{SHARED} not found"}))
        return 1

    symbols = complete_symbols(SHARED, args.start, args.end, args.symbols)
    config = amcp_config(SHARED, symbols, args.start, args.end)
    panel, quality = load_daily_bars(config.data)
    if not quality.is_clean:
        print(f"# data: {quality.summary_line()}", file=sys.stderr)
    bars = int(np.isfinite(panel.close).sum())
    print(f"# {len(symbols)} symbols x {len(panel)} sessions = {bars} bars; running amcp", file=sys.stderr)

    engine = BacktestEngine(config, panel)
    started = time.perf_counter()
    result = engine.run()
    ours_s = time.perf_counter() - started
    ours_trades = sorted(
        (f.symbol, session_date(f.ts_ns).isoformat(), f.side.value, int(f.last_quantity), round(float(f.last_price), 6))
        for f in result.fills
    )
    ours_equity = float(engine.plane.portfolio.portfolio.equity)

    print("# running backtrader", file=sys.stderr)
    peer = run_backtrader_ma_cross(frames_of(panel), FAST, SLOW, QUANTITY, CASH)
    peer_trades = sorted((s, d, side, int(q), round(float(p), 6)) for s, d, side, q, p in peer["trades"])
    peer_s = peer["run_seconds"]

    match = int(ours_trades == peer_trades and abs(ours_equity - peer["final_value"]) < 0.01)
    if not match:
        diff = sorted(set(ours_trades) ^ set(peer_trades))[:5]
        print(f"# mismatch: ours {len(ours_trades)} trades, equity {ours_equity:.2f}; backtrader {len(peer_trades)} "
              f"trades, value {peer['final_value']:.2f}; first differences {diff}", file=sys.stderr)
    ours_rate, peer_rate = bars / ours_s, bars / peer_s
    lines = [
        {"bench": "backtest_engine", "metric": "bars_per_s", "ours": round(ours_rate, 1), "peer": "backtrader",
         "peer_value": round(peer_rate, 1), "ratio": round(ours_rate / peer_rate, 2), "unit": "bars/s"},
        {"bench": "backtest_engine", "metric": "trades_match", "ours": match, "peer": "backtrader", "peer_value": 1,
         "ratio": float(match), "unit": "bool"},
        {"bench": "backtest_engine", "metric": "trades", "ours": len(ours_trades), "peer": "backtrader",
         "peer_value": len(peer_trades), "ratio": round(len(ours_trades) / max(len(peer_trades), 1), 4), "unit": "count"},
    ]
    for line in lines:
        print(json.dumps(line))
    print(json.dumps({"bench": "backtest_engine", "summary": True, "symbols": len(symbols), "sessions": len(panel),
                      "bars": bars, "ours_s": round(ours_s, 3), "peer_s": round(peer_s, 3),
                      "final_equity_ours": round(ours_equity, 2), "final_equity_peer": round(peer["final_value"], 2),
                      "trades_match": match}))
    return 0 if match else 1


if __name__ == "__main__":
    sys.exit(main())
