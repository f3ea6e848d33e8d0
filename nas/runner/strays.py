"""Ray processes left behind by a killed driver of a run: finding and stopping them.

Before it starts a local Ray, the driver puts a fresh token in the environment variable
:data:`MARKER` (every Ray process it starts inherits it) and records the token in ``run.json``,
with the processes that carry it once Ray is up (pid and start time, because Ray's agents rename
themselves, which blanks their environment). Left-over processes are recognised only by that:
the exact token in their own environment, a recorded pid whose start time still matches, or a
descendant of either; never by a command line (which any process can imitate), and only by a
driver holding the run folder's lock, so never while the driver that started them lives.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

MARKER = "MNAS_RAY_OWNER"

__all__ = ["MARKER", "new_marker", "stray_ray_processes", "kill_stray_ray", "snapshot"]


def new_marker() -> str:
    """A fresh token for the Ray processes of one driver."""
    return f"mnas-{uuid.uuid4().hex}"


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def stray_ray_processes(marker: str, recorded: list[list[int]] | None = None) -> list[int]:
    """Live processes (other than this one) of the Ray that carries ``marker``.

    Those whose environment holds ``MARKER=marker``, the ``recorded`` ``[pid, start time]``
    pairs that still match, and every descendant of these. Linux ``/proc`` only (elsewhere
    ``[]``).
    """
    if not marker or not os.path.isdir("/proc"):
        return []
    me, wanted = os.getpid(), f"{MARKER}={marker}".encode()
    live = {int(e): st for e in os.listdir("/proc") if e.isdigit() and _alive(int(e))
            and (st := _stat(int(e))) is not None}
    live.pop(me, None)
    owned = {pid for pid in live if wanted in _environ(pid).split(b"\0")}
    owned |= {pid for pid, start in recorded or [] if live.get(pid, (0, -1))[1] == start}
    grown = True
    while grown:  # add descendants until nothing new
        more = {pid for pid, (ppid, _) in live.items() if ppid in owned} - owned
        owned |= more
        grown = bool(more)
    return sorted(owned)


def snapshot(marker: str) -> list[list[int]]:
    """``[pid, start time]`` of the processes carrying ``marker`` now (to record them)."""
    found = stray_ray_processes(marker)
    return [[pid, st[1]] for pid in found if (st := _stat(pid)) is not None]


def kill_stray_ray(marker: str, recorded: list[list[int]] | None = None,
                   timeout_s: float = 10.0) -> int:
    """Stop a dead driver's Ray (see :func:`stray_ray_processes`); returns how many."""
    found = stray_ray_processes(marker, recorded)
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
