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
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from amcp.data.schemas import BAR_SCHEMA
from amcp.store.audit import AuditLog
from pipelines import trade
from tests.ray._live_market import (
    KEY,
    LIVE_DAYS,
    SECRET,
    SYMBOLS,
    WAIT_S,
    WARM_UP_SESSIONS,
    alpaca_servers,
    checkpointed_cycles,
    close_ns,
    live_config,
    minute_bars,
    stored_orders,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

GAP = ("AAPL", LIVE_DAYS[1])  # the stream loses this symbol's high minute that day; REST backfill has it
RUN_ID = "live-job"


def test_live_job_warms_up_then_trades_each_streamed_session_through_the_broker(
        ray_local, tmp_path, monkeypatch, capsys) -> None:
    raw, config, panel = live_config(tmp_path)
    monkeypatch.setenv("AMCP_TEST_KEY", KEY)
    monkeypatch.setenv("AMCP_TEST_SECRET", SECRET)
    journal_url = f"sqlite:///{tmp_path / 'runs' / RUN_ID / 'journal.sqlite'}"
    gap_bar = next(bar for bar in minute_bars(panel, GAP[1]) if bar.symbol == GAP[0] and bar.volume == 0.0)
    errors: list[BaseException] = []

    with alpaca_servers(config, panel) as (stream, rest, paper):
        rest.add_bars(pa.table({"symbol": [gap_bar.symbol], "ts": [gap_bar.ts_ns], "open": [gap_bar.open],
                                "high": [gap_bar.high], "low": [gap_bar.low], "close": [gap_bar.close],
                                "volume": [gap_bar.volume], "vwap": [None], "trade_count": [None]}, schema=BAR_SCHEMA),
                      timeframe="1Min")
        path = write_config(raw, (stream, rest, paper), tmp_path / "live.yaml")

        def play_the_market() -> None:
            try:
                if not stream.wait_subscribed(SYMBOLS, WAIT_S, channel="bars"):
                    raise TimeoutError(f"the job's feed did not subscribe to bars within {WAIT_S} s")
                for done, day in enumerate(LIVE_DAYS, start=1):
                    index = WARM_UP_SESSIONS + done - 1
                    paper.advance(panel.batch(index), session_closed=True)
                    for bar in minute_bars(panel, day):
                        if bar != gap_bar:
                            stream.publish_bar(bar.symbol, bar.ts_ns, bar.open, bar.high, bar.low, bar.close,
                                               bar.volume)
                    stream.publish_bar("SPY", close_ns(day), 1.0, 1.0, 1.0, 1.0, 1.0)  # after hours: closes it
                    wait_until(lambda: checkpointed_cycles(journal_url, RUN_ID) >= done,
                               f"the job did not run session {day}")
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
    local = stored_orders(state_url)
    assert {cid for cid, status in local.items() if status != "rejected"} == set(server_orders)
    statement = json.loads(Path(summary["broker"]["statement"]).read_text())
    assert statement["local_positions"] == statement["broker_positions"] != {}
    assert AuditLog(state_url).verify().ok


def test_live_job_refuses_history_that_ends_before_a_closed_session(tmp_path, monkeypatch, capsys) -> None:
    raw, _, _ = live_config(tmp_path)
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(raw))

    code = trade.main(["--config", str(path), "--quiet"])
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert code == 2 and not summary["ok"]
    assert "ends 2010-07-02, but the next XNYS session, 2010-07-06, has closed already" in summary["error"]
