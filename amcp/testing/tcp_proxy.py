"""A threaded TCP proxy that can cut or black-hole the connection to a service, for fault tests.

Put it between a client and a real service (PostgreSQL, Redis, the paper broker's REST or
stream) and point the client at the proxy::

    with TcpProxy("127.0.0.1", 5432) as proxy:       # listens on 127.0.0.1:<proxy.port>
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.cut()        # the service "restarts": every connection drops, new ones are refused
        proxy.restore()    # it is back
        proxy.blackhole()  # a network partition: connections stay open, nothing gets through
        proxy.restore()

Modes:

- ``forward`` (the start): bytes flow both ways, each client connection has its own upstream
  connection.
- ``cut``: every live connection is reset at once, and every new connection is accepted and
  reset at once (the client sees a refused or dropped connection immediately, as when the
  service's process is down).
- ``blackhole``: live connections stay open but every byte, either way, is dropped; new
  connections are accepted and never reach the service. The client waits until its own timeout,
  as in a partition. Bytes are dropped rather than held, so a request in flight when the
  partition starts may or may not have reached the service: exactly the unknown outcome.
- :meth:`TcpProxy.restore` returns to ``forward``; connections that lived through a black hole
  have lost bytes and are reset then (their clients reconnect).

One accept thread plus two pump threads per live connection; :meth:`TcpProxy.close` resets every
connection and joins every thread it started.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from types import TracebackType
from typing import Literal

from amcp.errors import AmcpError

Mode = Literal["forward", "cut", "blackhole"]

_CHUNK = 65_536
_JOIN_TIMEOUT_S = 5.0
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


class ProxyError(AmcpError):
    """A TCP proxy used wrongly (not started, started twice) or unable to listen."""


def _reset(sock: socket.socket) -> None:
    """Close ``sock`` with an RST, waking any thread blocked on it first."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class _Link:
    """One client connection and its upstream connection (None while black-holed from the start)."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None, blackholed: bool) -> None:
        self.client = client
        self.upstream = upstream
        self.blackholed = blackholed
        self.threads: list[threading.Thread] = []
        self.pumps_left = 0
        self.closed = False


class TcpProxy:
    """Forward TCP connections from a local port to ``target_host:target_port``, with faults.

    Args:
        target_host: the service's host.
        target_port: the service's port.
        listen_host: the interface the proxy listens on.
        listen_port: the port to listen on; 0 picks a free one (read it from :attr:`port`).
        connect_timeout_s: how long opening the upstream connection may take, in seconds; a
            failure resets the client's connection.

    Raises:
        ProxyError: if a port or timeout is out of range.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        connect_timeout_s: float = 5.0,
    ) -> None:
        for name, value, low in (("target_port", target_port, 1), ("listen_port", listen_port, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65_535:
                raise ProxyError(f"tcp proxy: {name} must be an int from {low} to 65535, got {value!r}")
        if not connect_timeout_s > 0:
            raise ProxyError(
                f"tcp proxy: connect_timeout_s must be positive seconds, got {connect_timeout_s!r}")
        self.target = (target_host, target_port)
        self._listen = (listen_host, listen_port)
        self._connect_timeout_s = connect_timeout_s
        self._lock = threading.Lock()
        self._mode: Mode = "forward"
        self._links: set[_Link] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None
        self._port: int | None = None
        self.accepted = 0
        self.bytes_upstream = 0
        self.bytes_downstream = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> int:
        """Listen and start accepting; return the port to connect to.

        Raises:
            ProxyError: if already started or the address cannot be bound.
        """
        if self._listener is not None:
            raise ProxyError(f"tcp proxy: already listening on port {self._port}")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(self._listen)
            listener.listen(128)
        except OSError as exc:
            listener.close()
            host, port = self._listen
            raise ProxyError(f"tcp proxy: cannot listen on {host}:{port}: {exc}") from exc
        listener.setblocking(False)
        self._listener = listener
        self._port = int(listener.getsockname()[1])
        self._wake = socket.socketpair()
        self._accept_thread = threading.Thread(target=self._accept_loop, args=(listener, self._wake[0]),
                                               name=f"tcp-proxy-{self._port}", daemon=True)
        self._accept_thread.start()
        return self._port

    def close(self) -> None:
        """Stop listening, reset every connection and join every thread (idempotent).

        Raises:
            ProxyError: if a thread is still alive after 5 s (a bug: it would leak).
        """
        if self._listener is None or self._wake is None or self._accept_thread is None:
            return
        self._wake[1].send(b"x")
        self._accept_thread.join(_JOIN_TIMEOUT_S)
        self._listener.close()
        for end in self._wake:
            end.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            self._drop(link)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT_S)
        alive = [t.name for t in [self._accept_thread, *threads] if t.is_alive()]
        self._listener = None
        self._wake = None
        self._accept_thread = None
        if alive:
            raise ProxyError(f"tcp proxy on port {self._port}: threads still running after close: {alive}")

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the proxy listens on.

        Raises:
            ProxyError: if not started.
        """
        if self._port is None:
            raise ProxyError("tcp proxy: not started; call start() or use it as a context manager")
        return self._port

    @property
    def mode(self) -> Mode:
        """``forward``, ``cut`` or ``blackhole``."""
        with self._lock:
            return self._mode

    @property
    def connections(self) -> int:
        """Client connections open now."""
        with self._lock:
            return len(self._links)

    # ------------------------------------------------------------------ faults

    def cut(self) -> int:
        """Reset every live connection and refuse new ones until :meth:`restore`; return how many
        connections were reset. When it returns, no byte passes any more."""
        with self._lock:
            self._mode = "cut"
            links = list(self._links)
        for link in links:
            self._drop(link)
        return len(links)

    def blackhole(self) -> int:
        """Drop every byte from now on, either way, keeping connections open (a partition); new
        connections are accepted and never forwarded. Return how many live connections it caught."""
        with self._lock:
            self._mode = "blackhole"
            for link in self._links:
                link.blackholed = True
            return len(self._links)

    def restore(self) -> int:
        """Forward again; reset the connections that lived through a black hole (they lost bytes).
        Return how many were reset."""
        with self._lock:
            self._mode = "forward"
            lost = [link for link in self._links if link.blackholed]
        for link in lost:
            self._drop(link)
        return len(lost)

    # ------------------------------------------------------------------ threads

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if wake in ready:
                    return
                try:
                    client, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                client.setblocking(True)
                self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        with self._lock:
            mode = self._mode
            self.accepted += 1
        if mode == "cut":
            _reset(client)
            return
        upstream = None
        if mode == "forward":
            try:
                upstream = socket.create_connection(self.target, timeout=self._connect_timeout_s)
            except OSError:
                _reset(client)
                return
            upstream.settimeout(None)
        link = _Link(client, upstream, blackholed=upstream is None)
        pumps = [(client, upstream, True)]
        if upstream is not None:
            pumps.append((upstream, client, False))
        with self._lock:
            if self._mode != mode:  # a fault began while connecting: the client sees a reset
                self._drop_sockets(link)
                return
            self._links.add(link)
            link.pumps_left = len(pumps)
            for source, sink, up in pumps:
                thread = threading.Thread(target=self._pump, args=(link, source, sink, up),
                                          name=f"tcp-proxy-{self._port}-pump", daemon=True)
                link.threads.append(thread)
                self._threads.add(thread)
            for thread in link.threads:
                thread.start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None, up: bool) -> None:
        """Copy ``source`` to ``sink`` until EOF, an error or a drop; drop bytes while black-holed."""
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                if link.blackholed or sink is None:
                    continue
                with self._lock:  # counted before they are sent: whoever has read them sees them counted
                    if up:
                        self.bytes_upstream += len(data)
                    else:
                        self.bytes_downstream += len(data)
                sink.sendall(data)
            if sink is not None and not link.blackholed:
                sink.shutdown(socket.SHUT_WR)  # pass the half-close on; the other pump ends the link
        except OSError:
            self._drop(link)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                link.pumps_left -= 1
                done = link.pumps_left == 0
            if done or link.blackholed:
                self._drop(link)

    def _drop(self, link: _Link) -> None:
        """Reset both sockets of ``link`` (its pumps wake and exit) and forget it."""
        with self._lock:
            if link.closed:
                return
            link.closed = True
            self._links.discard(link)
        self._drop_sockets(link)

    @staticmethod
    def _drop_sockets(link: _Link) -> None:
        link.closed = True
        _reset(link.client)
        if link.upstream is not None:
            _reset(link.upstream)
