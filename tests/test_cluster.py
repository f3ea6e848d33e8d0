"""A real Ray cluster on this machine, made with ``ray start`` (a head and a second node, token
authentication on), joined with ``nas search --address``; what a driver gets for a cluster that
refuses its token or an address where nothing listens; and the sockets of the embedded local Ray.

Placement is forced, never left to the scheduler (the machine may be loaded by other work): each
node offers exactly 1 CPU, a trial takes 1 CPU and ``search.concurrency`` is 2, so two trials that
run at once are on different nodes, and both nodes are asserted by their Ray node ids.

Ray 2.60 cannot keep a cluster made with ``ray start`` on loopback (it rewrites 127.0.0.1 to the
machine's LAN address, see ``nas/runner/session.py``), so these nodes listen on the LAN address,
guarded by the token; they are stopped by pid (every process carrying the node's own environment
token, and their children), never with ``ray stop``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ray_cluster import (
    Cluster,
    clean_env,
    cmdline,
    free_port,
    is_loopback,
    listening_sockets,
    sockets_of,
    with_descendants,
)

from nas.testing.fixtures import TOY_SEARCH

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FAST_FAIL_S = 30  # an unreachable or refusing cluster is an error within this


# -- helpers shared with tests/test_search_ray.py --------------------------------------------------
def config(tmp_path, **patch):
    data = {**TOY_SEARCH, **patch, "results_dir": str(tmp_path / "results")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def nas_cmd(*args):
    return [sys.executable, "-m", "nas.cli", *map(str, args)]


def run_nas(*args, timeout=240, env=None):
    return subprocess.run(nas_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env)


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "trials.jsonl").read_text().splitlines()]


def timed_config(tmp_path, *, trials, seconds, max_failures=1, keep_weights=0):
    """Children that take ``seconds`` each (nas.testing.fixtures:fixed_time), 1 CPU, 2 at once."""
    return config(tmp_path, controller={"name": "random"},
                  evaluator={"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                             "options": {"seconds": seconds}},
                  latency={"mode": "skip"}, reward={"target": 5.0},
                  search={"trials": trials, "concurrency": 2, "cpus_per_trial": 1,
                          "max_failures": max_failures, "keep_weights": keep_weights},
                  ray={})


def one_line_error(out, command="search"):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]  # no traceback, none of Ray's own warnings
    assert lines[0].startswith(f"nas {command}: error: "), lines
    assert "Traceback" not in out.stderr + out.stdout
    return lines[0]


def no_run_folder(tmp_path):
    results = tmp_path / "results"
    return not results.exists() or not any(results.iterdir())


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        c.start_head()
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def worker(cluster):
    node = cluster.add_node()
    try:
        yield node
    finally:
        if node in cluster.nodes:
            cluster.remove(node)


def head_of(cluster):
    return cluster.nodes[0]


# -- an address where nothing listens --------------------------------------------------------------
def test_unreachable_address_is_a_usage_error_within_seconds(tmp_path):
    cfg = timed_config(tmp_path, trials=2, seconds=0.1)
    began = time.monotonic()
    out = run_nas("search", cfg, "--name", "dead", "--address", f"127.0.0.1:{free_port()}",
                  timeout=120, env=clean_env())
    took = time.monotonic() - began
    line = one_line_error(out)
    assert took < FAST_FAIL_S, f"{took:.1f} s"
    assert "connection refused" in line
    assert no_run_folder(tmp_path), list((tmp_path / "results").iterdir())


# -- the embedded local Ray: loopback only --------------------------------------------------------
def test_local_ray_listens_on_loopback_only(tmp_path):
    """Every listening socket of the local Ray (GCS, raylet, workers, agents, the driver) during a
    real search is on 127.0.0.1."""
    cfg = timed_config(tmp_path, trials=2, seconds=2.0)
    cfg.write_text(yaml.safe_dump({**yaml.safe_load(cfg.read_text()), "ray": {"num_cpus": 2}}))
    proc = subprocess.Popen(nas_cmd("search", cfg, "--name", "lo"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=clean_env())
    seen: dict[tuple, str] = {}
    try:
        while proc.poll() is None:
            table = listening_sockets()
            for pid in with_descendants([proc.pid]):
                for sock in sockets_of(pid, table):
                    seen.setdefault((pid, *sock), cmdline(pid)[:90])
            time.sleep(0.2)  # sampling the sockets while the search runs
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0, output[-3000:]
    kinds = {("gcs_server" if "gcs_server" in cmd else "raylet" if "/raylet " in cmd
              else "ray::" if cmd.startswith("ray::") else "driver" if "nas.cli" in cmd else cmd)
             for cmd in seen.values()}
    assert {"gcs_server", "raylet", "ray::", "driver"} <= kinds, seen
    wide = {key: cmd for key, cmd in seen.items() if not is_loopback(key[2])}
    assert not wide, f"sockets of the local Ray listening beyond loopback: {wide}"


# -- a cluster that refuses the driver's token -----------------------------------------------------
@pytest.mark.parametrize("auth", ["no token"])  # "wrong token" takes the same path
def test_driver_without_the_clusters_token_gets_the_fix(cluster, tmp_path, auth):
    home = tmp_path / "home"  # no ~/.ray/auth_token to fall back on
    home.mkdir()
    env = clean_env(HOME=str(home))
    if auth == "wrong token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    cfg = timed_config(tmp_path, trials=2, seconds=0.1)
    began = time.monotonic()
    out = run_nas("search", cfg, "--name", "auth", "--address", cluster.address, timeout=120,
                  env=env)
    took = time.monotonic() - began
    line = one_line_error(out)
    assert "authentication token" in line and "RAY_AUTH_MODE=token" in line, line
    assert "RAY_AUTH_TOKEN" in line and "~/.ray/auth_token" in line, line
    assert took < FAST_FAIL_S, f"{took:.1f} s"
    assert no_run_folder(tmp_path), list((tmp_path / "results").iterdir())


# -- a search on both nodes ----------------------------------------------------------------------
def test_search_runs_trials_on_both_nodes(cluster, worker, tmp_path):
    cfg = timed_config(tmp_path, trials=4, seconds=2.0, keep_weights=4)
    out = run_nas("search", cfg, "--name", "both", "--address", cluster.address, timeout=240,
                  env=cluster.env())
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "results" / "both"
    recs = records(run_dir)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"complete"}
    assert {r["node"]["node_id"] for r in recs} == {head_of(cluster).node_id, worker.node_id}
    assert all(r["node"]["ip"] == cluster.address.rsplit(":", 1)[0] for r in recs)
    assert json.loads((run_dir / "run.json").read_text())["ray_address"] == cluster.address
    # the trained weights of every child reach the run folder, from the second node through the
    # weight-store actor on the driver's node
    kept = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "weights").glob("trial-*"))
    assert kept == sorted(r["trial_id"] for r in recs)


def test_search_survives_losing_a_node(cluster, worker, tmp_path):
    """The second node goes away (SIGTERM to every process of it, as `ray stop` there would)
    after a trial finished on it, mostly with another one running there: the search goes on on
    the head and ends with all 8 trials complete, none lost, none twice.

    ``max_failures: 10``: Tune 2.60 retries a trial only while its failures are fewer than
    max_failures and counts the one loss twice (error.txt: failures #1 and #2 on the same actor
    in the same second), so 2 would record the cut-off trial as failed; 3 sufficed on a quiet
    machine, but loaded machines saw retries fail too before the head had marked the node dead
    (once with 4 allowed, once with 5), so the test allows many (none is spent on a healthy
    trial: what it asserts is that the cut-off trial ends complete, not how fast). Not SIGKILL:
    until the head's health checks mark a killed node dead (~15 s) its actors are only "temporarily
    unavailable" and Tune spends the retries on them (recorded failed even with max_failures 4);
    a raylet stopped by SIGTERM tells the head at once."""
    cfg = timed_config(tmp_path, trials=8, seconds=1.5, max_failures=10)
    run_dir = tmp_path / "results" / "lose"
    proc = subprocess.Popen(nas_cmd("search", cfg, "--name", "lose", "--address",
                                    cluster.address),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=cluster.env())
    try:
        deadline = time.monotonic() + 180
        while not any(r["node"].get("node_id") == worker.node_id for r in _done(run_dir)):
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no trial finished on the second node"
            time.sleep(0.2)  # polling the trials store
        before = (run_dir / "trials.jsonl").read_text()
        cluster.remove(worker)
        killed_at = time.time()
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    recs = records(run_dir)
    seen = [(r["trial_id"], r["status"], r.get("error"), r["node"].get("node_id", "")[:8],
             round(r["started_at"] - killed_at, 1) if r.get("started_at") else None)
            for r in recs]
    assert (run_dir / "trials.jsonl").read_text().startswith(before)
    assert len(recs) == 8 and len({r["trial_id"] for r in recs}) == 8, seen
    assert {r["status"] for r in recs} == {"complete"}, seen  # the trial cut off is retried
    assert len({r["arch_key"] for r in recs}) == 8, seen  # no child trained twice
    nodes = {head_of(cluster).node_id, worker.node_id}
    assert {r["node"]["node_id"] for r in recs} == nodes, (seen, worker.node_id[:8])
    late = [r for r in recs if (r.get("started_at") or 0) > killed_at]
    assert late and {r["node"]["node_id"] for r in late} == {head_of(cluster).node_id}, seen


def _done(run_dir):
    path = Path(run_dir) / "trials.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
