"""``mode: live`` end to end: the job warms up on history, then trades one cycle per streamed session.

Three local servers stand in for Alpaca: the market-data stream (AlpacaStreamServer) and REST
API (AlpacaMarketDataServer, for the feed's gap backfill), and the paper trading server
(AlpacaPaperServer) as the broker. The test plays the market: for each live session it moves
the paper server to the session's close (orders of the previous cycle fill at its open), streams
the session's minute bars, then one after-hours bar that closes the session, and waits for the
job's checkpoint of that cycle. After three sessions it sends SIGTERM; the job stops cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa
import yaml

from amcp.config import TradeConfig, parse_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.calendar import TradingCalendar
from amcp.data.schemas import BAR_SCHEMA
from amcp.domain.data import Bar
from amcp.store.audit import AuditLog
from amcp.testing.alpaca_rest import AlpacaMarketDataServer
from amcp.testing.alpaca_stream import AlpacaStreamServer
from pipelines import trade
from serve.alpaca_paper import AlpacaPaperServer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "live-key", "live-secret"
SYMBOLS = ["AAPL", "AMZN", "BA", "CSCO", "IBM", "JPM", "MSFT", "SPY"]
HISTORY_END = date(2010, 7, 2)
LIVE_DAYS = (date(2010, 7, 6), date(2010, 7, 7), date(2010, 7, 8))  # Monday 5 July was a holiday
WARM_UP_SESSIONS = 126  # 2010-01-04 .. 2010-07-02; momentum's first rebalance falls on the first live day
GAP = ("AAPL", LIVE_DAYS[1])  # the stream loses this symbol's high minute that day; REST backfill has it
MINUTE_NS = 60_000_000_000
RUN_ID = "live-job"
WAIT_S = 120.0


def _close_ns(day: date) -> int:
    return int(TradingCalendar().opens_closes_ns(day, day)[1][0])


def _minute_bars(panel: BarPanel, day: date) -> list[Bar]:
    """The session's last four minutes, whose aggregate is the panel's daily bar (open, high, low,
    close; the volume in two whole parts, exact in floating point), in time order."""
    index = int(np.flatnonzero(panel.dates == np.datetime64(day))[0])
    batch, close_ns = panel.batch(index), _close_ns(day)
    bars = []
    for i, symbol in enumerate(panel.symbols):
        daily = batch.bar(i)
        assert daily is not None, f"{symbol} has no bar on {day}"
        first_volume = float(daily.volume // 2)
        for minute, (price, volume) in enumerate(((daily.open, first_volume), (daily.high, 0.0), (daily.low, 0.0),
                                                  (daily.close, daily.volume - first_volume))):
            bars.append(Bar(symbol, close_ns - (4 - minute) * MINUTE_NS, price, price, price, price, volume))
    return sorted(bars, key=lambda bar: (bar.ts_ns, bar.symbol))


def _checkpointed_cycles(journal_url: str) -> int:
    """The highest cycle count the job has checkpointed (0 before its first checkpoint table exists)."""
    engine = sa.create_engine(journal_url)
    try:
        with engine.connect() as connection:
            value = connection.execute(sa.text("select max(cycles_done) from checkpoints where run_id = :run"),
                                       {"run": RUN_ID}).scalar()
    except sa.exc.OperationalError:  # not created yet, or locked by a writer for a moment
        return 0
    finally:
        engine.dispose()
    return int(value or 0)


def _stored_orders(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("select client_order_id, status from trading_orders")).all()
    engine.dispose()
    return {str(cid): str(status) for cid, status in rows}


def test_live_job_warms_up_then_trades_each_streamed_session_through_the_broker(
        ray_local, tmp_path, monkeypatch, capsys) -> None:
    raw = yaml.safe_load((ROOT / "configs/live.yaml").read_text())
    raw["data"].update(path=str(ROOT / raw["data"]["path"]), symbols=SYMBOLS, end=HISTORY_END.isoformat())
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    config = parse_config(raw, TradeConfig)
    panel, _ = load_daily_bars(config.data.model_copy(update={"end": LIVE_DAYS[-1]}))  # history + the live days
    monkeypatch.setenv("AMCP_TEST_KEY", KEY)
    monkeypatch.setenv("AMCP_TEST_SECRET", SECRET)
    journal_url = f"sqlite:///{tmp_path / 'runs' / RUN_ID / 'journal.sqlite'}"
    gap_bar = next(bar for bar in _minute_bars(panel, GAP[1]) if bar.symbol == GAP[0] and bar.volume == 0.0)
    errors: list[BaseException] = []

    with AlpacaStreamServer(KEY, SECRET) as stream, AlpacaMarketDataServer(KEY, SECRET) as rest, \
            AlpacaPaperServer(start_ts_ns=int(panel.ts_ns[WARM_UP_SESSIONS - 1]), api_key=KEY, secret_key=SECRET,
                              venue_config=config.venue, account_config=config.account,
                              symbols=panel.symbols) as paper:
        rest.add_bars(pa.table({"symbol": [gap_bar.symbol], "ts": [gap_bar.ts_ns], "open": [gap_bar.open],
                                "high": [gap_bar.high], "low": [gap_bar.low], "close": [gap_bar.close],
                                "volume": [gap_bar.volume], "vwap": [None], "trade_count": [None]}, schema=BAR_SCHEMA),
                      timeframe="1Min")
        raw["broker"].update(url_override=paper.url, stream_url_override=paper.ws_url, key_env="AMCP_TEST_KEY",
                             secret_env="AMCP_TEST_SECRET", rate_limit_per_minute=600_000)
        raw["live_data"].update(stream_url_override=stream.url, rest_url_override=rest.url, close_grace_s=None,
                                poll_timeout_s=0.2)  # historical bars: sessions close by bars, not the wall clock
        path = tmp_path / "live.yaml"
        path.write_text(yaml.safe_dump(raw))

        def play_the_market() -> None:
            try:
                if not stream.wait_subscribed(SYMBOLS, WAIT_S, channel="bars"):
                    raise TimeoutError(f"the job's feed did not subscribe to bars within {WAIT_S} s")
                for done, day in enumerate(LIVE_DAYS, start=1):
                    index = WARM_UP_SESSIONS + done - 1
                    paper.advance(panel.batch(index), session_closed=True)
                    for bar in _minute_bars(panel, day):
                        if bar != gap_bar:
                            stream.publish_bar(bar.symbol, bar.ts_ns, bar.open, bar.high, bar.low, bar.close,
                                               bar.volume)
                    stream.publish_bar("SPY", _close_ns(day), 1.0, 1.0, 1.0, 1.0, 1.0)  # after hours: closes it
                    deadline = time.monotonic() + WAIT_S
                    while _checkpointed_cycles(journal_url) < done:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the job did not run session {day} within {WAIT_S} s")
                        time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGTERM)  # the job stops after the cycle in progress
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
                os.kill(os.getpid(), signal.SIGINT)  # do not leave the job waiting for sessions

        market = threading.Thread(target=play_the_market, name="market", daemon=True)
        market.start()
        code = trade.main(["--config", str(path), "--run-id", RUN_ID, "--quiet"])
        market.join(WAIT_S)
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        server_orders = {str(u["order"]["client_order_id"]): u["order"] for u in paper.trade_updates}

    assert errors == []
    assert code == 0 and summary["mode"] == "live" and summary["cycles"] == len(LIVE_DAYS)
    live = summary["live"]
    assert live["warm_up_sessions"] == WARM_UP_SESSIONS and live["next_session"] == "2010-07-09"
    assert live["bars"]["sessions_emitted"] == 3 and live["bars"]["late_bars"] == 0
    assert live["feed"]["backfilled_bars"] == 1  # the lost minute came back over REST
    # orders only after the warm-up: the first live cycle bought momentum's five longs, none before
    assert summary["orders"] >= 5 and summary["start"].startswith(LIVE_DAYS[0].isoformat())
    created = sorted(order["created_at"] for order in server_orders.values())
    assert created and created[0] >= LIVE_DAYS[0].isoformat()
    # the state database and the broker agree on every order and position
    assert summary["broker"]["reconciled"] and summary["broker"]["position_breaks"] == 0
    state_url = summary["broker"]["state"]
    local = _stored_orders(state_url)
    assert {cid for cid, status in local.items() if status != "rejected"} == set(server_orders)
    statement = json.loads(Path(summary["broker"]["statement"]).read_text())
    assert statement["local_positions"] == statement["broker_positions"] != {}
    assert AuditLog(state_url).verify().ok


def test_live_job_refuses_history_that_ends_before_a_closed_session(tmp_path, monkeypatch, capsys) -> None:
    raw = yaml.safe_load((ROOT / "configs/live.yaml").read_text())
    raw["data"].update(path=str(ROOT / raw["data"]["path"]), symbols=SYMBOLS, end=HISTORY_END.isoformat())
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(raw))

    code = trade.main(["--config", str(path), "--quiet"])
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert code == 2 and not summary["ok"]
    assert "ends 2010-07-02, but the next XNYS session, 2010-07-06, has closed already" in summary["error"]
