"""``nas dashboard``: the page and the run's payload over HTTP, on a loopback address only.

Routes (GET and HEAD): ``/`` the page; ``/static/<name>`` one of the packaged assets
(:data:`nas.dashboard.page.ASSETS`; any other name, ``..`` included, is 404); ``/api/run`` the
payload as JSON, re-read from the folder when its files changed (503 with ``{"error": ...}`` while
a file is malformed). Everything else is 404. The server is read-only: it never writes into the
run folder and never takes its lock.

It binds 127.0.0.1 by default and refuses an address that is not a loopback one unless the caller
passes ``allow_remote=True``; on a loopback address it also refuses (403) requests whose ``Host``
header is not exactly a loopback name with an optional port (``127.0.0.1:8080``, ``localhost``,
``[::1]:8080``), so a web page cannot reach it through a rebinding DNS name.

Under load: the listen backlog holds :attr:`DashboardServer.request_queue_size` waiting
connections, at most :attr:`DashboardServer.max_handlers` connections are served at once (the rest
wait in the backlog), and a connection idle for :attr:`DashboardServer.conn_timeout` seconds is
closed, so half-open or forgotten keep-alive connections cannot pin threads for ever.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nas.dashboard.data import RunSource
from nas.dashboard.page import ASSETS, asset, served_page
from nas.errors import UsageError

__all__ = ["DashboardServer", "make_server", "is_loopback", "host_allowed", "DEFAULT_HOST",
           "DEFAULT_PORT"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# the page may run its own script and style and fetch from its own origin, nothing else
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
          "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def host_allowed(value: str) -> bool:
    """Whether a ``Host`` header value is exactly a loopback name with an optional port.

    Args:
        value: the header's value, e.g. ``127.0.0.1:8080``, ``localhost`` or ``[::1]:8080``.

    Returns:
        True for ``NAME`` or ``NAME:PORT`` where NAME passes :func:`is_loopback` (an IPv6 one in
        brackets) and PORT is a decimal port; False for anything else, empty included.
    """
    try:
        parts = urlsplit("//" + value)
        name, port = parts.hostname, parts.port
    except ValueError:  # a bad port, an unclosed bracket
        return False
    if not name or not is_loopback(name):
        return False
    shown = f"[{name}]" if ":" in name else name
    return value.lower() == (shown if port is None else f"{shown}:{port}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, ``[::1]`` or ``localhost``) names this machine only."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "mnas-dashboard"
    protocol_version = "HTTP/1.1"
    # headers and body go out as two writes: without this, Nagle's algorithm and the client's
    # delayed ACK hold every keep-alive response back by ~40 ms
    disable_nagle_algorithm = True

    def setup(self) -> None:
        """Apply the server's idle timeout to this connection (before the stdlib's setup)."""
        self.timeout = self.server.conn_timeout
        super().setup()

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if not self.server.allow_remote and not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"Host not allowed\n", "text/plain", body)
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            page = served_page(f"mnas dashboard: {self.server.source.dir.name}")
            return self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8", body)
        if path == "/api/run":
            return self._api(body)
        name = path[len("/static/"):] if path.startswith("/static/") else None
        data = asset(name) if name is not None else None
        if data is None:
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body)
        return self._send(HTTPStatus.OK, data, ASSETS[name], body)

    def _host_ok(self) -> bool:
        """No ``Host`` header (HTTP/1.0), or exactly one that :func:`host_allowed` accepts."""
        hosts = self.headers.get_all("Host") or []
        return not hosts or (len(hosts) == 1 and host_allowed(hosts[0].strip()))

    def _api(self, body: bool) -> None:
        status, text = self.server.api_body()
        self._send(status, text, "application/json", body)

    def _send(self, status: HTTPStatus, data: bytes, ctype: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", POLICY)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()


class DashboardServer(ThreadingHTTPServer):
    """A threading HTTP server for one run folder (:func:`make_server` builds it).

    Attributes:
        request_queue_size: the listen backlog (set before the server is bound).
        conn_timeout: seconds a connection may sit idle (mid-request or between keep-alive
            requests) before it is closed; set it before serving.
        max_handlers: connections served at once; further ones wait in the backlog.
        handlers: connections being served now; ``peak_handlers`` the most at once so far.
    """

    daemon_threads = True
    request_queue_size = 256
    conn_timeout: float = 10.0
    max_handlers = 64

    def __init__(self, source: RunSource, host: str, port: int, allow_remote: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.source, self.allow_remote = source, allow_remote
        self.handlers = self.peak_handlers = 0
        self._slots = threading.Condition()
        self._stopping = False
        self._api_cache: tuple[object, bytes] = (None, b"")
        super().__init__((host.strip("[]"), port), _Handler)

    def api_body(self) -> tuple[HTTPStatus, bytes]:
        """``/api/run``'s status and JSON body, serialised once per new payload."""
        try:
            data = self.source.payload()
        except UsageError as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, _dumps({"error": str(exc)})
        cached, text = self._api_cache
        if cached is not data:  # RunSource hands back the same object until a file changes
            text = _dumps(data)
            self._api_cache = (data, text)
        return HTTPStatus.OK, text

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` (see :class:`socketserver.BaseServer`)."""
        self._stopping = False
        super().serve_forever(poll_interval)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever`, also while it waits for a free handler."""
        with self._slots:
            self._stopping = True
            self._slots.notify_all()
        super().shutdown()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread once fewer than ``max_handlers`` are busy."""
        with self._slots:
            while self.handlers >= self.max_handlers and not self._stopping:
                self._slots.wait()
            stopping = self._stopping
            if not stopping:
                self.handlers += 1
                self.peak_handlers = max(self.peak_handlers, self.handlers)
        if stopping:
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its handler slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._slots:
            self.handlers -= 1
            self._slots.notify_all()

    def wait_handlers(self, at_most: int, timeout: float) -> bool:
        """Wait until at most ``at_most`` connections are being served; False on timeout."""
        with self._slots:
            return self._slots.wait_for(lambda: self.handlers <= at_most, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a client that went away or stalled at debug level; anything else as the stdlib."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            log.debug("%s: connection lost", client_address, exc_info=True)
        else:
            super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` of the bound address."""
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"


def make_server(run_dir: str | Path, *, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
                allow_remote: bool = False) -> DashboardServer:
    """A bound (not yet serving) dashboard server for ``run_dir``; ``port=0`` picks a free port.

    Raises:
        UsageError: a host that is not a loopback address (unless ``allow_remote``), a port out
            of range or in use, or a missing or malformed run folder.
    """
    if not allow_remote and not is_loopback(host):
        raise UsageError(f"host {host!r} is not a loopback address; the dashboard serves this "
                         "machine only (127.0.0.1, ::1 or localhost)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise UsageError(f"port {port!r}: must be an integer from 0 to 65535 (0: a free port)")
    if not Path(run_dir).is_dir():
        raise UsageError(f"run folder {str(run_dir)!r}: no such folder")
    source = RunSource(run_dir)
    try:
        return DashboardServer(source, host, port, allow_remote)
    except OSError as exc:
        hint = ("; choose another --port, or --port 0 for a free one"
                if exc.errno == errno.EADDRINUSE and port != 0 else "")
        raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}{hint}"
                         ) from None
