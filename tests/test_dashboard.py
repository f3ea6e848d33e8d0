"""``nas dashboard``: the payload of a real run folder, the loopback-only read-only server, the
live ``/api/run``, the CLI's errors and Ctrl-C, and the same views inlined into report.html.

The run folder holds real evaluations (toy MLPs on the digits, latency measured, two epochs of
training through ``evaluate_arch``) stored by ``RunDir``, plus a failed and a pruned trial as the
runner records them; no Ray. The browser checks are in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager

import numpy as np
import pytest

import nas
from nas.analysis.analyze import rank_trials
from nas.cli import main
from nas.dashboard.data import load_payload
from nas.dashboard.page import payload_script, standalone_page
from nas.dashboard.payload import build_payload, plain
from nas.dashboard.server import is_loopback, make_server
from nas.errors import UsageError
from nas.results import RunDir
from nas.testing.fixtures import TOY_SEARCH

COMPLETE = 5  # real evaluations in the run; plus one failed and one pruned trial


def _record(proposal, result, step):
    keep = ("accuracy", "latency_ms", "latency_spread", "latency_n", "params", "macs", "train")
    return {"trial_id": proposal.id, "arch_key": proposal.arch.key,
            "arch": dict(proposal.arch.items()), "status": result["status"],
            "error": result["error"], "metrics": {k: result[k] for k in keep if k in result},
            "reward": result.get("reward"), "step": step, "timings": result.get("timings"),
            "device": result.get("device"), "finished_at": time.time()}


def make_real_run(root, name="real", warm=0):
    """A run folder as a running search leaves it: 5 evaluated trials, 1 failed, 1 pruned
    (``warm``: the first ``warm`` trials came from a warm-start source, as run.json says)."""
    from nas.config import parse_config
    from nas.evaluation.evaluate import evaluate_arch
    from nas.experiment import build_experiment

    cfg = {**TOY_SEARCH, "results_dir": str(root), "search": {"trials": 8, "concurrency": 1},
           "evaluator": {"dataset": "digits", "epochs": 2, "threads": 1},
           "latency": {"repeats": 3, "warmup": 1, "rounds": 1, "threads": 1}}
    exp = build_experiment(parse_config(cfg))
    run = RunDir.create(root, name, {**cfg, "space": {**cfg["space"],
                                                      "options": dict(exp.space.options)}})
    for step in range(1, COMPLETE + 1):
        proposal = exp.controller.ask()
        result = evaluate_arch(exp.space, proposal.arch, exp.settings, dataset=exp.dataset)
        origin = {"origin": "warm-start"} if step <= warm else {}
        run.append_trial({**_record(proposal, result, step), **origin})
        exp.controller.tell(proposal, result["reward"])
    for step, status in ((COMPLETE + 1, "failed"), (COMPLETE + 2, "pruned")):
        proposal = exp.controller.ask()
        run.append_trial({"trial_id": proposal.id, "arch_key": proposal.arch.key,
                          "arch": dict(proposal.arch.items()), "status": status,
                          "error": "RuntimeError: boom <b>\nTraceback ..." if status == "failed"
                          else None, "metrics": {"accuracy": 0.2, "epochs": 1}, "step": step})
    sources = [{"name": "results/pilot", "metric": "reward", "weight": 1.0, "records": 12,
                "best": 0.93}] if warm else []
    run.write_meta({"status": "running", "segments": 1,
                    **({"warm_start": sources} if warm else {})})
    return run


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    return make_real_run(tmp_path_factory.mktemp("dash"))


@contextmanager
def serving(path, **settings):
    """A dashboard server on a free loopback port, in a thread, for the block's length.

    ``settings`` are set on the server before it serves (``conn_timeout=1``, ``max_handlers=4``).
    """
    server = make_server(path, port=0)
    for name, value in settings.items():
        assert hasattr(server, name), name
        setattr(server, name, value)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(real_run):
    with serving(real_run.path) as server:
        yield server


def get(server, path, headers=None, method="GET"):
    """(status, headers, body) of a raw request (the path is sent as written)."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


# -- the payload -----------------------------------------------------------------------------
def test_payload_of_a_real_run(real_run):
    payload = load_payload(real_run.path)
    json.dumps(payload, allow_nan=False)  # plain JSON, no NaN
    run = payload["run"]
    assert (run["done"], run["complete"], run["failed"], run["pruned"]) == (7, 5, 1, 1)
    assert (run["state"], run["target"], run["name"]) == ("running", 8, "real")
    assert payload["decisions"] == ["width", "depth"]
    trials = payload["trials"]
    assert [t["id"] for t in trials] == sorted(r.trial_id for r in real_run.trials())
    facade = nas.load_run(real_run.path)
    ranked = rank_trials(facade.trials, facade.reward())  # every scored trial, best first
    by_id = {t["id"]: t for t in trials}
    assert len(ranked) == COMPLETE
    for row in ranked.itertuples():
        assert by_id[row.trial_id]["reward"] == pytest.approx(row.reward)
        assert by_id[row.trial_id]["rank"] == row.rank
    assert run["best"]["trial_id"] == int(ranked["trial_id"][0])
    assert payload["front"] == [int(i) for i in facade.pareto()["trial_id"]]
    done = [t for t in trials if t["status"] == "complete"]
    assert all([h["epoch"] for h in t["history"]] == [1, 2] for t in done)
    assert all(0 <= t["history"][-1]["val_accuracy"] <= 1 and t["latency_ms"] > 0 for t in done)
    failed = next(t for t in trials if t["status"] == "failed")
    assert failed["error"] == "RuntimeError: boom <b>" and failed["reward"] is None
    assert set(failed["decisions"]) == {"width", "depth"} and failed["history"] == []


def test_importance_is_the_spread_of_mean_reward(real_run):
    payload = load_payload(real_run.path)
    stats = nas.load_run(real_run.path).analyze().decisions
    for entry in payload["importance"]:
        means = stats[stats["decision"] == entry["decision"]]["mean_reward"]
        assert entry["spread"] == pytest.approx(means.max() - means.min())
    spreads = [e["spread"] for e in payload["importance"]]
    assert spreads == sorted(spreads, reverse=True) and len(spreads) == 2


def test_payload_from_the_analysis_alone(real_run):
    analysis = nas.load_run(real_run.path).analyze()
    payload = build_payload(analysis)
    assert not payload["has_history"] and len(payload["trials"]) == 7
    statuses = {t["id"]: t["status"] for t in payload["trials"]}
    assert sorted(statuses.values()).count("complete") == COMPLETE
    assert all(t["decisions"] for t in payload["trials"] if t["status"] == "complete")


def test_payload_of_a_run_that_just_started(tmp_path):
    run = RunDir.create(tmp_path, "new", {"space": {"name": "nas.testing.fixtures:ToySpace"},
                                          "search": {"trials": 4}})
    payload = load_payload(run.path)
    assert payload["run"]["state"] == "created" and payload["run"]["done"] == 0
    assert payload["trials"] == payload["front"] == payload["importance"] == []
    assert payload["run"]["best"] is None and payload["run"]["target"] == 4


def test_plain_values():
    assert plain(np.float32(0.5)) == 0.5 and type(plain(np.int64(3))) is int
    assert plain(float("nan")) is None and plain(np.float64(math.inf)) is None
    assert plain(True) is True and plain(None) is None and plain((1, 2)) == "(1, 2)"


def test_inlined_payload_cannot_close_its_script_element():
    payload = {"trials": [{"error": "</script><script>alert(1)</script> & <!--"}]}
    tag = payload_script(payload)
    assert tag.lower().count("</script") == 1 and "<!--" not in tag
    body = tag[tag.index(">") + 1: tag.rindex("<")]
    assert json.loads(body) == payload
    page = standalone_page(payload)
    assert "http://" not in page and "https://" not in page and "<script src" not in page


# -- the server ------------------------------------------------------------------------------
def test_is_loopback():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "10.0.0.1", "192.168.1.2", "::", "example.com", ""):
        assert not is_loopback(host), host


def test_binds_loopback_and_refuses_other_hosts(real_run, served):
    assert served.server_address[0] == "127.0.0.1"
    assert served.url == f"http://127.0.0.1:{served.server_address[1]}/"
    for host in ("0.0.0.0", "192.168.1.2", "example.com"):
        with pytest.raises(UsageError, match="not a loopback address"):
            make_server(real_run.path, port=0, host=host)
    status, _, _ = get(served, "/", {"Host": f"evil.example:{served.server_address[1]}"})
    assert status == 403  # a rebinding DNS name


def test_page_and_assets(served):
    status, headers, body = get(served, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"/static/dashboard.js" in body and b"http" not in body.replace(b"http-equiv", b"")
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    status, headers, js = get(served, "/static/dashboard.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"fetch('/api/run'" in js and b"http://" not in js and b"https://" not in js
    assert get(served, "/static/dashboard.css")[0] == 200
    status, _, charts = get(served, "/static/charts.js")
    assert status == 200 and b"window.mnasCharts" in charts and b"http" not in charts
    status, headers, body = get(served, "/static/dashboard.js", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(js)


@pytest.mark.parametrize("path", ["/nope", "/static/", "/static/../server.py",
                                  "/static/%2e%2e/page.py", "/static/../../results.py",
                                  "/static/dashboard.js/x", "/static//etc/passwd", "/api/run/x"])
def test_unknown_paths_and_traversal_are_404(served, path):
    assert get(served, path)[0] == 404


def test_api_is_live_and_cached(real_run, served):
    status, _, body = get(served, "/api/run")
    assert status == 200 and json.loads(body)["run"]["done"] == 7
    reads = served.source.reads
    assert json.loads(get(served, "/api/run")[2])["run"]["done"] == 7
    assert served.source.reads == reads  # nothing changed: nothing re-read
    before = real_run.trials_path.read_text()
    try:
        extra = {**real_run.trials()[0].to_dict(), "trial_id": 99, "step": 8}
        real_run.append_trial(extra)  # a trial finishing while the page is open
        data = json.loads(get(served, "/api/run")[2])
        assert data["run"]["done"] == 8 and data["trials"][-1]["id"] == 99
        with open(real_run.trials_path, "a") as fh:
            fh.write("{oops\n")
        status, _, body = get(served, "/api/run")
        assert status == 503 and "line 9 is not valid JSON" in json.loads(body)["error"]
    finally:
        real_run.trials_path.write_text(before)
    assert json.loads(get(served, "/api/run")[2])["run"]["done"] == 7


def test_the_server_never_writes_into_the_run(real_run):
    before = {p.name: p.stat().st_mtime_ns for p in real_run.path.iterdir()}
    server = make_server(real_run.path, port=0)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        for path in ("/", "/api/run", "/static/dashboard.js", "/nope"):
            get(server, path)
    finally:
        server.shutdown()
        server.server_close()
    assert {p.name: p.stat().st_mtime_ns for p in real_run.path.iterdir()} == before
    assert not (real_run.path / "driver.lock").exists()  # the lock was never taken


# -- the command -----------------------------------------------------------------------------
def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("nas dashboard: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_cli_errors_exit_2(tmp_path, real_run, capsys):
    assert main(["dashboard", str(tmp_path / "missing")]) == 2
    one_line_error(capsys, "no such folder")
    assert main(["dashboard", str(tmp_path)]) == 2
    one_line_error(capsys, "is not a run folder (no config.yaml)")
    bad = RunDir.create(tmp_path, "bad", {"search": {"trials": 2}})
    bad.trials_path.write_text("{oops\n{}\n")
    assert main(["dashboard", str(bad.path), "--port", "0"]) == 2
    one_line_error(capsys, "trials.jsonl: line 1 is not valid JSON")
    assert main(["dashboard", str(real_run.path), "--host", "0.0.0.0"]) == 2
    one_line_error(capsys, "--host 0.0.0.0: not a loopback address")
    assert main(["dashboard", str(real_run.path), "--port", "70000"]) == 2
    one_line_error(capsys, "--port 70000")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["dashboard", str(real_run.path), "--port",
                     str(busy.getsockname()[1])]) == 2
    one_line_error(capsys, "cannot listen on 127.0.0.1 port")


def _first_line(proc, deadline):
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            return line
        if proc.poll() is not None:
            break
    raise AssertionError(f"no URL printed (exit {proc.poll()}): {proc.stderr.read()}")


def test_cli_serves_until_ctrl_c(real_run):
    proc = subprocess.Popen([sys.executable, "-m", "nas.cli", "dashboard", str(real_run.path),
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        line = _first_line(proc, time.monotonic() + 60)
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "api/run", timeout=10) as resp:
            assert json.loads(resp.read())["run"]["done"] == 7
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopped" in out


# -- the static report -----------------------------------------------------------------------
def test_report_inlines_the_dashboard(real_run, tmp_path):
    from nas.analysis.report import write_analysis

    facade = nas.load_run(real_run.path)
    page = write_analysis(facade.analyze(), tmp_path / "out", records=facade.records,
                          meta=real_run.meta())["report.html"].read_text()
    blob = re.search(r'<script type="application/json" id="mnas-data">(.*?)</script>', page)
    data = json.loads(blob.group(1))
    assert len(data["trials"]) == 7 and data["has_history"] and data["run"]["state"] == "running"
    assert "<div id='mnas-dash'>" in page and "window.mnasCharts = " in page
    assert page.count("src='data:image/png;base64,") == 2 and "Top architectures" in page
    assert "http://" not in page and "https://" not in page and "<script src" not in page
