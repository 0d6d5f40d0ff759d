"""What the broker-backed and live-mode job tests share: the sessions they play, the three
local servers that stand in for Alpaca, a player that feeds them to a job deterministically,
readers of what the job wrote, and the setup of the replayed recovery runs.

The market: 126 sessions of the sample's history (2010-01-04 .. 2010-07-02) warm the
strategies up; three live sessions follow, each streamed as four minute bars per symbol whose
aggregate is the panel's daily bar.

Determinism (:class:`LiveMarket`): nothing is pushed on a timer. Session ``k``'s bars go out only
after the job has checkpointed session ``k - 1`` and the job's broker holds every trade update
the venue produced so far (the fills and expiries of moving the venue to session ``k``), so what
each cycle sees depends on the session count alone, never on how fast the machine is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import ray
import sqlalchemy as sa
import yaml

from actors.orchestrator import NAMESPACE, ORCHESTRATOR_NAME
from actors.planes import live_broker_name
from amcp.config import TradeConfig, parse_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import Bar
from amcp.testing.alpaca_rest import AlpacaMarketDataServer
from amcp.testing.alpaca_stream import AlpacaStreamServer
from pipelines._common import load_config_and_data
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


class LiveMarket:
    """Plays the live sessions to a running job, one session at a time, in a deterministic order.

    For session ``k`` (:meth:`play_session`): move the paper server to the session's close (the
    orders of session ``k - 1`` fill at its open, DAY orders expire), wait until the job's broker
    has received every trade update the server produced since it connected, stream the session's
    minute bars and an after-hours bar that closes it, each to exactly one client (the job's feed),
    then wait for the job's checkpoint of cycle ``k``. Call :meth:`await_job` before the first
    session and again after the job's orchestrator was restarted (its feed and broker are new).

    Args:
        stream: the market-data stream the job's feed subscribes to.
        paper: the paper server the job's broker trades with.
        panel: the history plus the live days (:func:`live_config`).
        journal_url: the job's journal database (where it checkpoints).
        run_id: the job's run id.
    """

    def __init__(self, stream: AlpacaStreamServer, paper: AlpacaPaperServer, panel: BarPanel, journal_url: str,
                 run_id: str) -> None:
        self.stream = stream
        self.paper = paper
        self.panel = panel
        self.journal_url = journal_url
        self.run_id = run_id
        self.broker_pids: list[int] = []  # the process of the broker that took each session's trade updates
        self._generation = 0  # how many times the job's feed and broker came up
        self._updates_before_broker = 0  # trade updates the server produced before the current broker listened

    def await_job(self) -> None:
        """Wait until the job's next feed is subscribed to every symbol's bars and its next broker
        listens to ``trade_updates``; the broker's updates are counted from here.

        Raises:
            TimeoutError: if either is not up within ``WAIT_S`` seconds.
        """
        self._generation += 1
        generation = self._generation
        wait_until(lambda: self.paper.stream_listens >= generation,
                   f"broker {generation} of the job did not listen to trade_updates")
        wait_until(lambda: self.stream.connections >= generation,
                   f"market-data feed {generation} of the job did not connect")
        if not self.stream.wait_subscribed(SYMBOLS, WAIT_S, channel="bars"):
            raise TimeoutError(f"market-data feed {generation} of the job did not subscribe to bars within {WAIT_S} s")
        # the job produces updates only in cycles, which wait for this player's bars: none is in flight
        self._updates_before_broker = len(self.paper.trade_updates)

    def play_session(self, number: int) -> None:
        """Play live session ``number`` (1-based, see :data:`LIVE_DAYS`) and wait for its cycle.

        Raises:
            TimeoutError: the broker did not receive the venue's updates, or the job did not
                checkpoint the session, within ``WAIT_S`` seconds.
            RuntimeError: a bar did not reach exactly one client.
        """
        day = LIVE_DAYS[number - 1]
        self.paper.advance(self.panel.batch(WARM_UP_SESSIONS + number - 1), session_closed=True)
        self._await_broker_updates(day)
        for bar in minute_bars(self.panel, day):
            self._publish(bar)
        self._publish(Bar("SPY", close_ns(day), 1.0, 1.0, 1.0, 1.0, 1.0))  # after hours: closes the session
        wait_until(lambda: checkpointed_cycles(self.journal_url, self.run_id) >= number,
                   f"the job did not run session {day}")

    def _await_broker_updates(self, day: date) -> None:
        """Wait until the job's broker has received every update the server produced since it listened.

        The broker's stream receives in the background and a live cycle takes what has arrived
        (:meth:`amcp.execution.live_plane.LiveBrokerService.on_bars`); without this wait a fill
        could reach a cycle or the next one depending on the machine's load.
        """
        expected = len(self.paper.trade_updates) - self._updates_before_broker
        broker = ray.get_actor(live_broker_name(self.run_id))
        arrived = ray.get(broker.wait_for_trade_updates.remote(expected, WAIT_S))
        if not arrived:
            raise TimeoutError(f"the job's broker did not receive the {expected} trade updates of the paper server "
                               f"before session {day} within {WAIT_S} s")
        self.broker_pids.append(ray.get(broker.process_id.remote()))

    def _publish(self, bar: Bar) -> None:
        sent = self.stream.publish_bar(bar.symbol, bar.ts_ns, bar.open, bar.high, bar.low, bar.close, bar.volume)
        if sent != 1:
            raise RuntimeError(f"the {bar.symbol} bar at {bar.ts_ns} reached {sent} market-data clients; "
                               f"exactly one (the job's feed) must get every bar")


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


# ------------------------------------------------------------------- replayed recovery runs

def sliced_sample(config_file: str, tmp: Path, cycles: int, cycles_per_call: int) -> tuple[TradeConfig, BarPanel]:
    """``config_file`` (relative to the repository) loaded the way the job loads it, with
    ``ray.cycles_per_call`` set, and its panel's first ``cycles`` sessions (like ``--max-cycles``)."""
    raw = yaml.safe_load((ROOT / config_file).read_text())
    raw["data"]["path"] = str(ROOT / raw["data"]["path"])
    raw["ray"]["cycles_per_call"] = cycles_per_call
    path = tmp / Path(config_file).name
    path.write_text(yaml.safe_dump(raw))
    config, panel, _ = load_config_and_data(str(path), TradeConfig)
    return config, panel.slice(0, cycles)


def kill_leftover_orchestrator() -> None:
    """Kill an orchestrator an earlier run left on the cluster and wait until its name is free,
    so that the next ``get_or_create_orchestrator`` creates one instead of finding the dying one."""

    def alive() -> bool:
        try:
            ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE)
        except ValueError:
            return False
        return True

    if alive():
        ray.kill(ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE))
        wait_until(lambda: not alive(), "the leftover orchestrator did not go away")
