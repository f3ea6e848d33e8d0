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

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from nas.runner.strays import MARKER, stray_ray_processes
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


def timed_config(tmp_path, *, trials, seconds, max_failures=1):
    """Children that take ``seconds`` each (nas.testing.fixtures:fixed_time), 1 CPU, 2 at once."""
    return config(tmp_path, controller={"name": "random"},
                  evaluator={"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                             "options": {"seconds": seconds}},
                  latency={"mode": "skip"}, reward={"target": 5.0},
                  search={"trials": trials, "concurrency": 2, "cpus_per_trial": 1,
                          "max_failures": max_failures},
                  ray={})


def clean_env(**extra):
    """This environment without any Ray setting or Ray-process token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != MARKER}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra)
    return env


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


# -- processes and their sockets (Linux /proc) -----------------------------------------------------
def children_of():
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(parent, []).append(int(entry))
    return kids


def with_descendants(pids):
    """``pids`` and all their descendants (Ray's agents rename themselves, which wipes the
    environment /proc shows, so they are found as the raylet's children)."""
    kids, seen, todo = children_of(), set(), list(pids)
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += kids.get(pid, [])
    return seen


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _address(hexaddr):
    ip, port = hexaddr.split(":")
    raw = bytes.fromhex(ip)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(struct.pack("<I", int(ip, 16)))), int(port, 16)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))  # four host-order words
    return str(ipaddress.IPv6Address(words)), int(port, 16)


def listening_sockets():
    """inode -> (protocol, ip, port) of every listening TCP / bound unconnected UDP socket."""
    table = {}
    for proto, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
        try:
            with open(f"/proc/net/{proto}") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == state:
                table[int(cols[9])] = (proto, *_address(cols[1]))
    return table


def sockets_of(pid, table):
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and int(link[8:-1]) in table:
            found.append(table[int(link[8:-1])])
    return found


def is_loopback(ip):
    addr = ipaddress.ip_address(ip)
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- a cluster made with `ray start` ---------------------------------------------------------------
@dataclass
class Node:
    name: str
    marker: str  # MNAS_RAY_OWNER of every process of this node
    temp_dir: str
    node_id: str = ""

    def processes(self):
        return with_descendants(stray_ray_processes(self.marker))

    @staticmethod
    def kill(pids, sig, timeout=20.0):
        """Signal ``pids``, wait for them to exit (never `ray stop`: it stops every Ray here)."""
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)  # waiting for the processes to exit


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Cluster:
    """``ray start --head`` and ``ray start --address`` nodes, 1 CPU each, token auth on."""

    def __init__(self):
        # Ray's socket paths (<temp>/session_<date>_<pid>/sockets/plasma_store) must stay under
        # ~100 bytes, hence a short folder of our own instead of pytest's tmp_path
        self.root = tempfile.mkdtemp(prefix="mnas-cl-", dir="/tmp")
        self.token = secrets.token_hex(32)  # the format `ray get-auth-token --generate` makes
        self.nodes: list[Node] = []
        self.address = ""
        self.added = 0  # nodes added so far (names and temp folders are never reused)

    def env(self, **extra):
        """The environment of every node and of the driver: RAY_AUTH_MODE=token + the token."""
        return clean_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, **extra)

    def _start(self, name, *args):
        node = Node(name, f"mnas-test-{name}-{secrets.token_hex(6)}", f"{self.root}/{name}")
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray) if ray.exists() else "ray", "start", *args, "--num-cpus", "1",
               "--num-gpus", "0", "--resources", json.dumps({f"node_{name}": 1}),
               "--temp-dir", node.temp_dir, "--dashboard-agent-listen-port", str(free_port())]
        self.nodes.append(node)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             env=self.env(**{MARKER: node.marker}))
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        raylets = [p for p in stray_ray_processes(node.marker) if "/raylet " in cmdline(p)]
        assert len(raylets) == 1, [cmdline(p)[:80] for p in stray_ray_processes(node.marker)]
        node.node_id = re.search(r"--node_id=([0-9a-f]+)", cmdline(raylets[0])).group(1)
        return node, out.stdout + out.stderr

    def start_head(self):
        port = free_port()
        head, output = self._start("head", "--head", "--port", str(port),
                                   "--include-dashboard", "false")
        ip = re.search(r"Local node IP: (\S+)", output).group(1)
        self.address = f"{ip}:{port}"
        return head

    def add_node(self):
        self.added += 1
        node, _ = self._start(f"worker{self.added}", "--address", self.address)
        gcs_log = Path(self.nodes[0].temp_dir, "session_latest", "logs", "gcs_server.out")
        deadline = time.monotonic() + 30
        while f"node_id={node.node_id}" not in gcs_log.read_text(errors="replace"):
            assert time.monotonic() < deadline, f"{node.name} never registered with the head"
            time.sleep(0.2)  # waiting for the head to register the node
        return node

    def remove(self, node, sig=signal.SIGTERM):
        """Stop every process of ``node`` by pid and, for a non-head node, wait until the head
        has it dead (so no later step sees a ghost node). SIGTERM: the raylet tells the head it
        leaves (what is left after 3 s is SIGKILLed); SIGKILL: a lost machine, which the head
        notices by its health checks (~15 s)."""
        pids = node.processes()  # once: the agents are found as the raylet's children
        if sig != signal.SIGKILL:
            node.kill(pids, sig, timeout=3.0)  # the head's GCS takes ~20 s to exit on SIGTERM
        node.kill(pids, signal.SIGKILL)
        if node is not self.nodes[0]:
            gcs_log = Path(self.nodes[0].temp_dir, "session_latest", "logs", "gcs_server.out")
            deadline = time.monotonic() + 60
            while not any(f"node_id={node.node_id}" in line and "death reason" in line
                          for line in gcs_log.read_text(errors="replace").splitlines()):
                assert time.monotonic() < deadline, f"the head never had {node.name} dead"
                time.sleep(0.2)  # waiting for the head to drop the node
        self.nodes.remove(node)

    def shutdown(self):
        for node in reversed(list(self.nodes)):
            self.remove(node)
        self.nodes.clear()
        shutil.rmtree(self.root, ignore_errors=True)


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
    cfg = timed_config(tmp_path, trials=4, seconds=2.0)
    out = run_nas("search", cfg, "--name", "both", "--address", cluster.address, timeout=240,
                  env=cluster.env())
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "results" / "both"
    recs = records(run_dir)
    assert len(recs) == 4 and {r["status"] for r in recs} == {"complete"}
    assert {r["node"]["node_id"] for r in recs} == {head_of(cluster).node_id, worker.node_id}
    assert all(r["node"]["ip"] == cluster.address.rsplit(":", 1)[0] for r in recs)
    assert json.loads((run_dir / "run.json").read_text())["ray_address"] == cluster.address


def test_search_survives_losing_a_node(cluster, worker, tmp_path):
    """The second node goes away (SIGTERM to every process of it, as `ray stop` there would)
    after a trial finished on it, mostly with another one running there: the search goes on on
    the head and ends with all 8 trials complete, none lost, none twice.

    ``max_failures: 3``: Tune 2.60 retries a trial only while its failures are fewer than
    max_failures and counts the one loss twice (error.txt: failures #1 and #2 on the same actor
    in the same second), so 2 would record the cut-off trial as failed. Not SIGKILL: until the
    head's health checks mark a killed node dead (~15 s) its actors are only "temporarily
    unavailable" and Tune spends the retries on them (recorded failed even with max_failures 4);
    a raylet stopped by SIGTERM tells the head at once."""
    cfg = timed_config(tmp_path, trials=8, seconds=1.5, max_failures=3)
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
