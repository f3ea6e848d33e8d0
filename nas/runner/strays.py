"""Ray processes left behind by a killed driver of a run: finding and stopping them."""

from __future__ import annotations

import os
import signal
import time

MARKER = "MNAS_RAY_TEMP_DIR"

__all__ = ["MARKER", "stray_ray_processes", "kill_stray_ray"]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def stray_ray_processes(temp_dir: str) -> list[int]:
    """Live processes of the local Ray of this run (Linux ``/proc``; elsewhere ``[]``).

    Ray renames its processes (``ray::DashboardAgent``), so they are recognised by the marker
    variable :data:`MARKER` that the driver sets before starting Ray (inherited by every Ray
    process), or by ``temp_dir`` on their command line.
    """
    if not os.path.isdir("/proc"):
        return []
    me, marker = os.getpid(), f"{MARKER}={temp_dir}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me or not _alive(int(entry)):
            continue
        pid = int(entry)
        if temp_dir in _cmdline(pid) or marker in _environ(pid).split(b"\0"):
            pids.append(pid)
    return sorted(pids)


def kill_stray_ray(temp_dir: str, timeout_s: float = 10.0) -> int:
    """Stop Ray processes left behind by a killed driver of this run; returns how many."""
    found = stray_ray_processes(temp_dir)
    pids = list(found)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout_s / 2
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _alive(p)]
            if pids:
                time.sleep(0.1)  # waiting for processes to exit, not synchronising work
        if not pids:
            break
    return len(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = ""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
