"""PaperServerActor: amcp's Alpaca-compatible paper server in a Ray actor (``paper_server`` mode).

The actor starts an :class:`~serve.alpaca_paper.AlpacaPaperServer` (REST and ``trade_updates``
on free local ports) in its constructor and fills its orders against the bar batches the live
broker actor replays into it with :meth:`PaperServerHost.advance`. Fills, fees and slippage
come from the run's ``venue:`` config and the account from ``account:``, as in ``paper`` mode.
The server's state lives only in this process, so the actor is not restarted.

:class:`PaperServerReplay` is the live broker service's replay venue over the actor handle.
"""

from __future__ import annotations

from typing import Any

import ray

from amcp.config import AccountConfig, VenueConfig
from amcp.domain.data import BarBatch
from serve.alpaca_paper import AlpacaPaperServer


class PaperServerHost:
    """Start an Alpaca-compatible paper server and replay bars into it.

    Args:
        start_ts_ns: the server's simulated clock at start, UTC ns (before the first batch).
        venue: fills, latency, participation cap, fees and slippage.
        account: starting cash and account type.
        symbols: the tradable universe.
        api_key, secret_key: the key pair clients must send.
    """

    def __init__(self, *, start_ts_ns: int, venue: VenueConfig, account: AccountConfig, symbols: tuple[str, ...],
                 api_key: str, secret_key: str) -> None:
        self._server = AlpacaPaperServer(start_ts_ns=start_ts_ns, api_key=api_key, secret_key=secret_key,
                                         venue_config=venue, account_config=account, symbols=symbols).start()

    def urls(self) -> tuple[str, str]:
        """The REST base URL and the ``trade_updates`` websocket URL."""
        return self._server.url, self._server.ws_url

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        """Fill working orders against ``batch``; return the trade updates produced since start."""
        self._server.advance(batch, session_closed)
        return len(self._server.trade_updates)

    def wait_stream_listening(self, count: int, timeout_s: float) -> bool:
        """Whether ``count`` clients listen to ``trade_updates`` within ``timeout_s`` seconds."""
        return self._server.wait_stream_listening(count, timeout_s)

    def orders(self) -> dict[str, dict[str, str]]:
        """Every order the server accepted, by client order id: its last status and filled
        quantity, from the trade updates (each accepted order produced at least one)."""
        final: dict[str, dict[str, str]] = {}
        for update in self._server.trade_updates:
            order = update["order"]
            final[str(order["client_order_id"])] = {"status": str(order["status"]),
                                                    "filled_qty": str(order["filled_qty"])}
        return final

    def close(self) -> None:
        self._server.close()


PaperServerActor = ray.remote(num_cpus=0, max_restarts=0)(PaperServerHost)


class PaperServerReplay:
    """The live broker service's replay venue (``BarReplayVenue``) over a PaperServerActor handle.

    Picklable (it holds only the handle), so a restarted live broker actor gets it back.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        return int(ray.get(self._handle.advance.remote(batch, session_closed)))

    def wait_stream_listening(self, count: int, timeout_s: float) -> bool:
        return bool(ray.get(self._handle.wait_stream_listening.remote(count, timeout_s)))
