"""TcpProxy against a local echo server: forwarding, cut, black hole, restore, clean shutdown."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from amcp.testing.tcp_proxy import ProxyError, TcpProxy

TIMEOUT_S = 2.0
SILENCE_S = 0.3  # how long a black-holed read is watched before calling it silent


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65_536):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(TIMEOUT_S)


@pytest.fixture
def proxy(echo: tuple[str, int]) -> Iterator[TcpProxy]:
    with TcpProxy(*echo) as running:
        yield running


def _connect(proxy: TcpProxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=TIMEOUT_S)


def _round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(65_536)
        if not chunk:
            break
        received += chunk
    return received


def _is_dead(sock: socket.socket) -> bool:
    """True if the peer closed or reset the connection (within TIMEOUT_S)."""
    try:
        sock.sendall(b"ping")
        return sock.recv(16) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def _is_refused(proxy: TcpProxy) -> bool:
    """True if a new connection is reset, whether during the handshake or at first use."""
    try:
        sock = _connect(proxy)
    except ConnectionError:
        return True
    with sock:
        return _is_dead(sock)


def _is_silent(sock: socket.socket) -> bool:
    """True if the connection is open and a request gets no answer (nor EOF) for SILENCE_S."""
    sock.settimeout(SILENCE_S)
    try:
        sock.sendall(b"ping")
        sock.recv(16)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(TIMEOUT_S)
    return False


def test_bytes_are_forwarded_both_ways_and_counted(proxy: TcpProxy) -> None:
    payload = bytes(range(256)) * 1000
    with _connect(proxy) as sock:
        assert _round_trip(sock, payload) == payload
        assert proxy.connections == 1
    assert proxy.bytes_upstream == len(payload) and proxy.bytes_downstream == len(payload)


def test_cut_resets_live_connections_and_refuses_new_ones_until_restored(proxy: TcpProxy) -> None:
    live = _connect(proxy)
    assert _round_trip(live, b"hello") == b"hello"

    assert proxy.cut() == 1
    assert proxy.mode == "cut" and proxy.connections == 0
    assert _is_dead(live)
    assert _is_refused(proxy)

    proxy.restore()
    with _connect(proxy) as again:
        assert _round_trip(again, b"back") == b"back"
    live.close()


def test_blackhole_keeps_connections_open_but_silent_and_restore_resets_them(proxy: TcpProxy) -> None:
    live = _connect(proxy)
    assert _round_trip(live, b"hello") == b"hello"

    assert proxy.blackhole() == 1
    assert _is_silent(live)
    with _connect(proxy) as partitioned:  # accepted, never forwarded
        assert _is_silent(partitioned)
        assert proxy.connections == 2

        assert proxy.restore() == 2
        assert _is_dead(live) and _is_dead(partitioned)
    with _connect(proxy) as healed:
        assert _round_trip(healed, b"healed") == b"healed"
    live.close()


def test_a_dead_target_resets_the_client_at_once() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        with TcpProxy("127.0.0.1", port) as proxy:
            assert _is_refused(proxy)


def test_close_joins_every_thread_and_is_idempotent(echo: tuple[str, int]) -> None:
    before = set(threading.enumerate())
    proxy = TcpProxy(*echo)
    proxy.start()
    socks = [_connect(proxy) for _ in range(3)]
    for sock in socks:
        assert _round_trip(sock, b"x") == b"x"
    proxy.blackhole()
    silent = _connect(proxy)
    assert _is_silent(silent)
    proxy.close()
    proxy.close()
    leaked = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("tcp-proxy")]
    assert leaked == []
    assert all(_is_dead(sock) for sock in [*socks, silent])
    for sock in [*socks, silent]:
        sock.close()


def test_misuse_is_refused_with_a_clear_error(echo: tuple[str, int]) -> None:
    with pytest.raises(ProxyError, match="target_port must be an int from 1 to 65535, got 0"):
        TcpProxy("127.0.0.1", 0)
    with pytest.raises(ProxyError, match="connect_timeout_s must be positive"):
        TcpProxy(*echo, connect_timeout_s=0)
    proxy = TcpProxy(*echo)
    with pytest.raises(ProxyError, match="not started"):
        _ = proxy.port
    with proxy, pytest.raises(ProxyError, match="already listening"):
        proxy.start()
