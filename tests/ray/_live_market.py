"""What the live-mode job tests share: the sessions they play, the three local servers that
stand in for Alpaca, and readers of what the job wrote.

The market: 126 sessions of the sample's history (2010-01-04 .. 2010-07-02) warm the
strategies up; three live sessions follow, each streamed as four minute bars per symbol whose
aggregate is the panel's daily bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
import yaml

from amcp.config import TradeConfig, parse_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import Bar
from amcp.testing.alpaca_rest import AlpacaMarketDataServer
from amcp.testing.alpaca_stream import AlpacaStreamServer
from serve.alpaca_paper import AlpacaPaperServer

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "live-key", "live-secret"
SYMBOLS = ["AAPL", "AMZN", "BA", "CSCO", "IBM", "JPM", "MSFT", "SPY"]
HISTORY_END = date(2010, 7, 2)
LIVE_DAYS = (date(2010, 7, 6), date(2010, 7, 7), date(2010, 7, 8))  # Monday 5 July was a holiday
WARM_UP_SESSIONS = 126  # 2010-01-04 .. 2010-07-02; momentum's first rebalance falls on the first live day
MINUTE_NS = 60_000_000_000
WAIT_S = 120.0


def close_ns(day: date) -> int:
    """The session's close, UTC ns."""
    return int(TradingCalendar().opens_closes_ns(day, day)[1][0])


def minute_bars(panel: BarPanel, day: date) -> list[Bar]:
    """The session's last four minutes, whose aggregate is the panel's daily bar (open, high, low,
    close; the volume in two whole parts, exact in floating point), in time order."""
    index = int(np.flatnonzero(panel.dates == np.datetime64(day))[0])
    batch, close = panel.batch(index), close_ns(day)
    bars = []
    for i, symbol in enumerate(panel.symbols):
        daily = batch.bar(i)
        assert daily is not None, f"{symbol} has no bar on {day}"
        first_volume = float(daily.volume // 2)
        for minute, (price, volume) in enumerate(((daily.open, first_volume), (daily.high, 0.0), (daily.low, 0.0),
                                                  (daily.close, daily.volume - first_volume))):
            bars.append(Bar(symbol, close - (4 - minute) * MINUTE_NS, price, price, price, price, volume))
    return sorted(bars, key=lambda bar: (bar.ts_ns, bar.symbol))


def live_config(tmp_path: Path) -> tuple[dict[str, Any], TradeConfig, BarPanel]:
    """configs/live.yaml on the sample up to HISTORY_END (raw and parsed), and the panel of the
    history plus the live days."""
    raw = yaml.safe_load((ROOT / "configs/live.yaml").read_text())
    raw["data"].update(path=str(ROOT / raw["data"]["path"]), symbols=SYMBOLS, end=HISTORY_END.isoformat())
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    config = parse_config(raw, TradeConfig)
    panel, _ = load_daily_bars(config.data.model_copy(update={"end": LIVE_DAYS[-1]}))
    return raw, config, panel


@contextmanager
def alpaca_servers(config: TradeConfig, panel: BarPanel
                   ) -> Iterator[tuple[AlpacaStreamServer, AlpacaMarketDataServer, AlpacaPaperServer]]:
    """The market-data stream, the market-data REST API and the paper broker, started at the
    last warm-up session."""
    with AlpacaStreamServer(KEY, SECRET) as stream, AlpacaMarketDataServer(KEY, SECRET) as rest, \
            AlpacaPaperServer(start_ts_ns=int(panel.ts_ns[WARM_UP_SESSIONS - 1]), api_key=KEY, secret_key=SECRET,
                              venue_config=config.venue, account_config=config.account,
                              symbols=panel.symbols) as paper:
        yield stream, rest, paper


def write_config(raw: dict[str, Any], servers: tuple[Any, Any, Any], path: Path) -> Path:
    """Point ``raw`` at the local servers (keys from AMCP_TEST_KEY / AMCP_TEST_SECRET) and write it."""
    stream, rest, paper = servers
    raw["broker"].update(url_override=paper.url, stream_url_override=paper.ws_url, key_env="AMCP_TEST_KEY",
                         secret_env="AMCP_TEST_SECRET", rate_limit_per_minute=600_000)
    raw["live_data"].update(stream_url_override=stream.url, rest_url_override=rest.url, close_grace_s=None,
                            poll_timeout_s=0.2)  # historical bars: sessions close by bars, not the wall clock
    path.write_text(yaml.safe_dump(raw))
    return path


def checkpointed_cycles(journal_url: str, run_id: str) -> int:
    """The highest cycle count the job has checkpointed (0 before its first checkpoint table exists)."""
    engine = sa.create_engine(journal_url)
    try:
        with engine.connect() as connection:
            value = connection.execute(sa.text("select max(cycles_done) from checkpoints where run_id = :run"),
                                       {"run": run_id}).scalar()
    except sa.exc.OperationalError:  # not created yet, or locked by a writer for a moment
        return 0
    finally:
        engine.dispose()
    return int(value or 0)


def stored_orders(url: str) -> dict[str, str]:
    """Every order the state database holds: client order id -> status."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("select client_order_id, status from trading_orders")).all()
    finally:
        engine.dispose()
    return {str(cid): str(status) for cid, status in rows}


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``condition`` until true; TimeoutError naming ``what`` after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout_s} s")
        time.sleep(0.05)
