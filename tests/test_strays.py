"""Left-over processes are recognised only by what the run recorded: its token in their
environment, a recorded pid whose start time still matches, or a descendant of these."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nas.runner.strays import MARKER, kill_stray_ray, snapshot, stray_ray_processes

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")

SLEEP = "import time; time.sleep(120)"


def spawn(tmp_path, marker=None, child=False):
    """A sleeper (with ``marker`` in its environment) and, with ``child``, a child of it whose
    environment is empty (as Ray's renamed agents look); returns (process, child pid)."""
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    if marker:
        env[MARKER] = marker
    pid_file = tmp_path / f"child-{marker}"
    code = SLEEP if not child else (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {SLEEP!r}], env={{}})\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    if not child:
        return proc, None
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None
    return proc, int(pid_file.read_text())


def test_token_descendants_and_recorded_pids(tmp_path):
    ours, child = spawn(tmp_path, "mnas-ours", child=True)
    other, _ = spawn(tmp_path, "mnas-other")
    plain, _ = spawn(tmp_path)
    try:
        found = stray_ray_processes("mnas-ours")
        assert found == sorted([ours.pid, child])  # the child has no token: found as a descendant
        recorded = snapshot("mnas-ours")
        assert sorted(pid for pid, _ in recorded) == found
        # a recorded pid counts only while its start time matches (pid reuse is not ours)
        assert stray_ray_processes("mnas-none", [[plain.pid, 0]]) == []
        start = next(s for p, s in snapshot("mnas-other"))
        assert stray_ray_processes("mnas-none", [[other.pid, start]]) == [other.pid]
        assert kill_stray_ray("mnas-ours", timeout_s=5) == 2
        ours.wait(timeout=10)
        assert stray_ray_processes("mnas-ours") == []
        assert other.poll() is None and plain.poll() is None
    finally:
        for proc in (ours, other, plain):
            proc.kill()
        if child:
            try:
                os.kill(child, 9)
            except ProcessLookupError:
                pass
