"""Ray processes left behind by a killed driver of a run: finding and stopping them.

Before it starts a local Ray, the driver puts a fresh token in the environment variable
:data:`MARKER` (every Ray process it starts inherits it) and records the token in ``run.json``.
Left-over processes are recognised only by that exact token in their own environment, never by
their command line (which any process can imitate), and only by a driver holding the run folder's
lock, so never while the driver that started them lives.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

MARKER = "MNAS_RAY_OWNER"

__all__ = ["MARKER", "new_marker", "stray_ray_processes", "kill_stray_ray"]


def new_marker() -> str:
    """A fresh token for the Ray processes of one driver."""
    return f"mnas-{uuid.uuid4().hex}"


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def stray_ray_processes(marker: str) -> list[int]:
    """Live processes (other than this one) whose environment holds ``MARKER=marker``.

    Linux ``/proc`` only (elsewhere ``[]``). Ray renames its processes (``ray::IDLE``), which is
    why the environment, not the name, identifies them.
    """
    if not marker or not os.path.isdir("/proc"):
        return []
    me, wanted = os.getpid(), f"{MARKER}={marker}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me or not _alive(int(entry)):
            continue
        if wanted in _environ(int(entry)).split(b"\0"):
            pids.append(int(entry))
    return sorted(pids)


def kill_stray_ray(marker: str, timeout_s: float = 10.0) -> int:
    """Stop the processes carrying ``marker`` (a dead driver's Ray); returns how many."""
    found = stray_ray_processes(marker)
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
