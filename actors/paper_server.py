"""PaperServerActor: amcp's Alpaca-compatible paper server in a Ray actor (``paper_server`` mode).

The actor starts an :class:`~serve.alpaca_paper.AlpacaPaperServer` (REST and ``trade_updates``
on free local ports) in its constructor and fills its orders against the bar batches the live
broker actor replays into it with :meth:`PaperServerHost.advance`. Fills, fees and slippage
come from the run's ``venue:`` config and the account from ``account:``, as in ``paper`` mode.
The server's state lives only in this process, so the actor is not restarted.

The server is the run's venue and must outlive the orchestrator, as a real broker does: the
driver creates it (:func:`actors.planes.start_paper_server`, a named actor it owns), the
orchestrator finds it by name, and a restarted orchestrator finds the same server with every
order and position the crashed one left there. Cycles a restarted orchestrator runs again
replay batches the server has already seen: :meth:`PaperServerHost.advance` ignores a batch at or
before the last one it filled against, so nothing fills twice.

:class:`PaperServerReplay` is the live broker service's replay venue over the actor handle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ray

from amcp.config import AccountConfig, VenueConfig
from amcp.domain.data import BarBatch
from serve.alpaca_paper import AlpacaPaperServer


@dataclass(frozen=True)
class PaperServerConnection:
    """Where and how a client reaches the paper server (local ports, a per-run key pair)."""

    url: str
    stream_url: str
    api_key: str = field(repr=False)
    secret_key: str = field(repr=False)


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
        self._last_batch_ns: int | None = None  # the last batch filled against, UTC ns

    def connection(self) -> PaperServerConnection:
        """The REST base URL, the ``trade_updates`` websocket URL and the key pair."""
        server = self._server
        return PaperServerConnection(server.url, server.ws_url, server.api_key, server.secret_key)

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        """Fill working orders against ``batch``; return the trade updates produced since start.

        A batch at or before the last one filled against changes nothing (a restarted
        orchestrator runs the cycles after its checkpoint again; the server saw their bars).
        """
        if self._last_batch_ns is None or batch.ts_ns > self._last_batch_ns:
            self._server.advance(batch, session_closed)
            self._last_batch_ns = batch.ts_ns
        return self.update_count()

    def update_count(self) -> int:
        """The trade updates produced since start (REST requests' included)."""
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

    def order_requests(self) -> list[tuple[str, int]]:
        """Every order submission the server answered, in order: (client order id, HTTP status);
        a client order id sent twice shows twice."""
        return [(str((record.body or {}).get("client_order_id", "")), record.status)
                for record in self._server.requests if record.method == "POST" and record.path == "/v2/orders"]

    def close(self) -> None:
        self._server.close()


PaperServerActor = ray.remote(num_cpus=0, max_restarts=0)(PaperServerHost)


class PaperServerReplay:
    """The live broker service's replay venue (``BarReplayVenue``) over a PaperServerActor handle.

    It counts the server's trade updates from its own creation, not the server's start: a live
    broker service built after a restart of the orchestrator (whose ``trade_updates`` client
    connects after the updates the old one received) then waits only for the updates its feed
    can receive. Picklable (the handle and that count), so a restarted live broker actor gets it back.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._produced_before = int(ray.get(handle.update_count.remote()))

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        """Fill against ``batch``; return the trade updates produced since this replay was created."""
        return int(ray.get(self._handle.advance.remote(batch, session_closed))) - self._produced_before

    def wait_stream_listening(self, count: int, timeout_s: float) -> bool:
        return bool(ray.get(self._handle.wait_stream_listening.remote(count, timeout_s)))
