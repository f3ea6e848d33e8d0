"""A Ray cluster made with ``ray start`` on this machine, and the /proc helpers its tests use.

Nodes get 1 CPU each, token authentication and their own environment token; they are stopped
by pid (every process carrying the token, and their children), never with ``ray stop``, which
would stop every Ray of this user on the machine. Used by ``tests/test_cluster.py``.
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

from nas.runner.strays import MARKER, stray_ray_processes


def clean_env(**extra):
    """This environment without any Ray setting or Ray-process token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != MARKER}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra)
    return env


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
