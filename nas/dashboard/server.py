"""``nas dashboard``: the page and the run's payload over HTTP, on a loopback address only.

Routes (GET and HEAD): ``/`` the page; ``/static/<name>`` one of the packaged assets
(:data:`nas.dashboard.page.ASSETS`; any other name, ``..`` included, is 404); ``/api/run`` the
payload as JSON, re-read from the folder when its files changed (503 with ``{"error": ...}`` while
a file is malformed). Everything else is 404. The server is read-only: it never writes into the
run folder and never takes its lock.

It binds 127.0.0.1 by default and refuses an address that is not a loopback one unless the caller
passes ``allow_remote=True``; on a loopback address it also refuses requests whose ``Host`` header
names another machine (a web page cannot reach it through a rebinding DNS name).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nas.dashboard.data import RunSource
from nas.dashboard.page import ASSETS, asset, served_page
from nas.errors import UsageError

__all__ = ["DashboardServer", "make_server", "is_loopback", "DEFAULT_HOST", "DEFAULT_PORT"]

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
# the page may run its own script and style and fetch from its own origin, nothing else
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
          "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


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

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        host = self._host_header()
        if host and not self.server.allow_remote and not is_loopback(host):
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

    def _host_header(self) -> str:
        host = self.headers.get("Host", "")
        if host.startswith("["):
            return host[: host.find("]") + 1]
        return host.rsplit(":", 1)[0] if host.count(":") == 1 else host

    def _api(self, body: bool) -> None:
        try:
            status, data = HTTPStatus.OK, self.server.source.payload()
        except UsageError as exc:
            status, data = HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)}
        text = json.dumps(data, allow_nan=False, separators=(",", ":")).encode()
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


class DashboardServer(ThreadingHTTPServer):
    """A threading HTTP server for one run folder (:func:`make_server` builds it)."""

    daemon_threads = True

    def __init__(self, source: RunSource, host: str, port: int, allow_remote: bool) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.source, self.allow_remote = source, allow_remote
        super().__init__((host.strip("[]"), port), _Handler)

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
        raise UsageError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None
