"""A JSON-over-HTTP server on ``http.server`` threads, started and stopped from a test.

The base of the Alpaca-compatible REST servers (market data in :mod:`amcp.testing.alpaca_rest`,
trading in ``serve.alpaca_paper``), as :mod:`amcp.testing.ws_server` is of their streams:
start/close of a :class:`~http.server.ThreadingHTTPServer` in a daemon thread, the bound URL, the
per-request latency, reading a request (path, query, raw body) and writing the answer. A subclass
implements :meth:`ThreadedJsonHttpServer._answer`: one :class:`HttpRequest` in, one
:class:`HttpAnswer` out, or None to close the connection without answering.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, urlsplit

from amcp.errors import AmcpError

logger = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
POLL_INTERVAL_S = 0.05
"""How often the serving thread checks for a shutdown request."""
JOIN_TIMEOUT_S = 5.0
"""How long :meth:`ThreadedJsonHttpServer.close` waits for the serving thread."""


@dataclass(frozen=True)
class HttpRequest:
    """One request as read from the connection.

    Attributes:
        method: the HTTP method, e.g. ``GET``.
        target: the request target as sent (path and query string).
        path: the URL path, e.g. ``/v2/orders``.
        query: the query parameters, last value per key (blank values kept).
        headers: the request headers.
        body: the raw body, ``Content-Length`` bytes (empty without one).
    """

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass(frozen=True)
class HttpAnswer:
    """One response: status, body bytes, extra headers, and the ``Content-Type`` (None: no such header)."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = JSON_CONTENT_TYPE


def json_answer(status: int, value: Any, headers: Mapping[str, str] | None = None) -> HttpAnswer:
    """``value`` as a JSON response; a 204 has neither body nor ``Content-Type``.

    Raises:
        ValueError: if ``value`` holds NaN or an infinity (not JSON).
    """
    if status == HTTPStatus.NO_CONTENT:
        return HttpAnswer(status, b"", dict(headers or {}), None)
    return HttpAnswer(status, json.dumps(value, allow_nan=False).encode(), dict(headers or {}))


def status_phrase(status: int) -> str:
    """The lower-case reason phrase of ``status`` (``"too many requests"`` for 429).

    An unknown status gets ``"injected error"``.
    """
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "injected error"


class ThreadedJsonHttpServer:
    """Serve HTTP on ``host:port`` (0 picks a free port) from a daemon thread, a thread per request.

    Args:
        host: interface to bind.
        port: TCP port; 0 picks a free one (read :attr:`url` after :meth:`start`).
        latency_s: seconds every request sleeps, after its body is read, before it is answered.

    Class attributes:
        error: the exception raised for a start/URL misuse (the subclass's package error).
        label: the server's name in messages, logs and its thread's name.
        server_version: the ``Server`` response header's product.
        protocol_version: ``HTTP/1.0`` (a connection per request) or ``HTTP/1.1`` (keep-alive).
        http_methods: the methods answered; any other gets 501, as from ``http.server``.
    """

    error: ClassVar[type[AmcpError]] = AmcpError
    label: ClassVar[str] = "http server"
    server_version: ClassVar[str] = "amcp-http/1"
    protocol_version: ClassVar[str] = "HTTP/1.0"
    http_methods: ClassVar[frozenset[str]] = frozenset({"GET"})

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self._host = host
        self._requested_port = port
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve in a daemon thread; return ``self``.

        Raises:
            error: if already running or ``host:port`` cannot be bound.
        """
        if self._http is not None:
            raise self.error(f"{self.label}: already running at {self.url}")
        try:
            http = ThreadingHTTPServer((self._host, self._requested_port), _handler_for(self))
        except OSError as exc:
            address = f"{self._host}:{self._requested_port}"
            raise self.error(f"{self.label}: cannot listen on {address}: {exc}") from exc
        http.daemon_threads = True
        self._http = http
        self._http_thread = threading.Thread(
            target=http.serve_forever, args=(POLL_INTERVAL_S,), name=self.label, daemon=True
        )
        self._http_thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(JOIN_TIMEOUT_S)
            self._http_thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server: pass it as alpaca-py's ``url_override``.

        Raises:
            error: if not started.
        """
        if self._http is None:
            raise self.error(f"{self.label}: not started; call start() or use it as a context manager")
        return f"http://{self._host}:{self._http.server_port}"

    def _answer(self, request: HttpRequest) -> HttpAnswer | None:
        """The response to ``request``; None closes the connection without one. Runs on a request thread."""
        raise NotImplementedError


class _JsonHandler(BaseHTTPRequestHandler):
    """Reads a request, asks :attr:`app` for the answer, writes it.

    TCP_NODELAY on: headers and body go out in separate writes, and on a kept-alive connection
    Nagle's algorithm would hold the body back for the client's delayed ACK (~40 ms a request,
    measured by benchmarks/oms.py) — latency real Alpaca does not add.
    """

    app: ClassVar[ThreadedJsonHttpServer]
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        app = self.app
        if method not in app.http_methods:
            self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({method!r})")
            return
        split = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(split.query, keep_blank_values=True).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if app.latency_s > 0:
            time.sleep(app.latency_s)
        answer = app._answer(HttpRequest(method, self.path, split.path, query, self.headers, body))
        if answer is None:
            self.close_connection = True
            return
        self.send_response(answer.status)
        if answer.content_type is not None:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        logger.debug(f"{self.app.label}: " + format, *args)


def _handler_for(app: ThreadedJsonHttpServer) -> type[BaseHTTPRequestHandler]:
    """A handler class of ``app``'s own (so tuning one server's handler class leaves others alone)."""

    class Handler(_JsonHandler):
        server_version = app.server_version
        protocol_version = app.protocol_version

    Handler.app = app
    return Handler


__all__ = ["HttpAnswer", "HttpRequest", "ThreadedJsonHttpServer", "json_answer", "status_phrase"]
