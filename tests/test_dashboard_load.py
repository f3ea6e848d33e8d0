"""``nas dashboard`` under load, on 127.0.0.1: many concurrent requests all answered, a burst
waits in the listen backlog, idle half-open connections are closed after the server's timeout
and cannot pin more than ``max_handlers`` threads, the ``Host`` header is parsed strictly, and
keep-alive ``/api/run`` is not held back per request.

Every wait is bounded (socket timeouts, ``join`` and condition waits with deadlines); nothing
sleeps to synchronise.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
from test_dashboard import make_real_run, serving

from nas.dashboard.server import host_allowed, make_server

CLIENTS = 200  # concurrent requests
BURST = 120  # connections queued before the server accepts (below the old somaxconn of 128)
PARTIAL = b"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request never finished


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return make_real_run(tmp_path_factory.mktemp("load")).path


def _fetch(address, path, timeout=20.0, host=None):
    """(status, body) of one GET on a fresh connection."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host is not None else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _handler_threads():
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


def _half_open(address):
    """A connection that sent part of a request and then goes quiet."""
    sock = socket.create_connection(address, timeout=5)
    sock.sendall(PARTIAL)
    return sock


def _read_to_eof(sock, limit):
    """(bytes read, seconds taken) until the peer closes; raises TimeoutError after ``limit``."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    while chunk := sock.recv(4096):
        data += chunk
        sock.settimeout(max(0.01, limit - (time.monotonic() - start)))
    return data, time.monotonic() - start


def test_200_concurrent_requests_are_all_answered(run_path):
    results: dict[int, object] = {}
    start = threading.Barrier(CLIENTS + 1)

    def client(i, address):
        path = "/api/run" if i % 2 else "/static/charts.js"
        start.wait(timeout=30)
        try:
            results[i] = _fetch(address, path)
        except Exception as exc:  # noqa: BLE001 (reported below, with the others)
            results[i] = exc

    with serving(run_path) as server:
        address = server.server_address[:2]
        threads = [threading.Thread(target=client, args=(i, address), daemon=True)
                   for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        start.wait(timeout=30)
        deadline = time.monotonic() + 60
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        assert server.peak_handlers <= server.max_handlers
    failed = {i: r for i, r in results.items() if not isinstance(r, tuple) or r[0] != 200}
    assert len(results) == CLIENTS and not failed, failed
    for i, (_, body) in results.items():
        if i % 2:
            assert json.loads(body)["run"]["done"] == 7
        else:
            assert b"window.mnasCharts" in body


def test_a_burst_waits_in_the_backlog(run_path):
    server = make_server(run_path, port=0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    address, socks = server.server_address[:2], []
    try:
        for _ in range(BURST):  # nobody accepts yet: each one must be queued by the kernel
            sock = socket.create_connection(address, timeout=3)
            socks.append(sock)
            sock.sendall(b"GET /static/dashboard.css HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Connection: close\r\n\r\n")
        thread.start()
        for sock in socks:
            data, _ = _read_to_eof(sock, 20)
            assert data.startswith(b"HTTP/1.1 200 "), data[:80]
    finally:
        for sock in socks:
            sock.close()
        if thread.is_alive():  # shutdown() waits for ever on a server that never served
            server.shutdown()
        server.server_close()


def test_an_idle_half_open_connection_is_closed(run_path):
    with serving(run_path, conn_timeout=1.0) as server:
        assert server.wait_handlers(0, 10)
        baseline = _handler_threads()
        with _half_open(server.server_address[:2]) as sock:
            data, took = _read_to_eof(sock, 15)  # no timeout on the server: TimeoutError here
        assert data == b"" and 0.5 <= took < 10, (data, took)
        assert server.wait_handlers(0, 10), server.handlers
        for thread in _handler_threads() - baseline:
            thread.join(timeout=10)
            assert not thread.is_alive()
        # the server still answers afterwards
        assert _fetch(server.server_address[:2], "/api/run")[0] == 200


def test_idle_connections_cannot_pin_more_than_max_handlers(run_path):
    with serving(run_path, conn_timeout=1.0, max_handlers=4) as server:
        address = server.server_address[:2]
        idle = [_half_open(address) for _ in range(8)]
        try:
            start = time.monotonic()
            status, body = _fetch(address, "/api/run")  # waits in the backlog, then served
            took = time.monotonic() - start
            assert status == 200 and json.loads(body)["run"]["done"] == 7
            assert server.peak_handlers <= 4 and took < 15, (server.peak_handlers, took)
            for sock in idle:
                assert _read_to_eof(sock, 15)[0] == b""  # each timed out, none was dropped
        finally:
            for sock in idle:
                sock.close()
        assert server.wait_handlers(0, 10), server.handlers


REFUSED = ["[::1]evil.com", "[::1]:80evil", "127.0.0.1.evil.com", "evil.com", "evil.com:{port}",
           "localhost.evil.com", "127.0.0.1:80:80", "", "127.1", "2130706433", "[::1",
           "127.0.0.1:", "127.0.0.1:{port}/x", "user@127.0.0.1", "127.0.0.1:99999", "10.0.0.1"]
ACCEPTED = ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}", "127.0.0.1", "localhost",
            "[::1]", "LOCALHOST:{port}", "127.0.0.2:{port}"]


@pytest.fixture(scope="module")
def load_served(run_path):
    with serving(run_path) as server:
        yield server


@pytest.mark.parametrize("value", REFUSED)
def test_host_header_refused(load_served, value):
    host = value.format(port=load_served.server_address[1])
    assert not host_allowed(host)
    assert _fetch(load_served.server_address[:2], "/api/run", host=host)[0] == 403


@pytest.mark.parametrize("value", ACCEPTED)
def test_host_header_accepted(load_served, value):
    host = value.format(port=load_served.server_address[1])
    assert host_allowed(host)
    assert _fetch(load_served.server_address[:2], "/api/run", host=host)[0] == 200


def test_two_host_headers_are_refused(load_served):
    conn = http.client.HTTPConnection(*load_served.server_address[:2], timeout=10)
    try:
        conn.putrequest("GET", "/api/run", skip_host=True)
        conn.putheader("Host", "127.0.0.1")
        conn.putheader("Host", "evil.com")
        conn.endheaders()
        assert conn.getresponse().status == 403
    finally:
        conn.close()


def test_keep_alive_api_is_serialised_once(load_served):
    """300 requests on one kept-alive connection get the same cached bytes (how fast is a
    benchmark's question, not a test's: Nagle's delay cost ~40 ms a response here)."""
    status, first = load_served.api_body()
    assert status == 200 and load_served.api_body()[1] is first  # cached bytes, not re-encoded
    conn = http.client.HTTPConnection(*load_served.server_address[:2], timeout=10)
    try:
        for _ in range(300):
            conn.request("GET", "/api/run")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == first
    finally:
        conn.close()
