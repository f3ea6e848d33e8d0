"""Issue 24.5: a dashboard port in use says how to get a free one, in the same one line."""

from __future__ import annotations

import socket

from nas.cli import main
from nas.results import RunDir


def test_a_port_in_use_suggests_port_0(tmp_path, capsys):
    run = RunDir.create(tmp_path, "r", {"space": {"name": "nas.testing.fixtures:ToySpace"},
                                        "search": {"trials": 1}})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dashboard", str(run.path), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("nas dashboard: error: ")
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in err
    assert err.endswith("--port 0 for a free one")
