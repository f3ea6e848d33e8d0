"""Ray processes left behind by a killed driver of a run: finding and stopping them.

Before it starts a local Ray, the driver puts a fresh token in the environment variable
:data:`MARKER` (every process Ray starts inherits it) and reads its clock (:func:`segment_clock`);
once the run folder exists it records in ``run.json``: ``ray_marker`` (the token), ``ray_pids``
(``[pid, start ticks]`` of the processes carrying it: hints for people, never authority) and
``ray_segment`` (:func:`segment_record`: that clock, the folder's ``[st_dev, st_ino]``, the
driver's ``[pid, start ticks]``).

The rule. A process is stopped only if it is of this user (``/proc/PID``'s uid), is not pid 1,
this process or one of its ancestors, and either

- carries ``MARKER=<the run's token>`` in its own environment (``/proc/PID/environ``: the
  environment it was executed with), or
- is a Ray process (its executable or script under the installed ``ray`` package's folder, or a
  command line renamed ``ray::...``) descending from a process of the first kind, started
  (``/proc/PID/stat`` field 22: clock ticks since boot) at or after the recorded segment start.

Never because ``run.json`` lists its pid, and never by a command line alone. A resume applies the
rule only when ``run.json`` proves that this folder's driver left that Ray behind
(:func:`cleanup_plan`): it records this very folder (a copy, or a folder moved from another file
system, has another identity: its Ray, if any, belongs to the original), this boot, and a driver
that is no longer running (a Ray whose driver lives was not left behind). Otherwise, and for a
``run.json`` without that record (an older mnas), nothing is stopped, with one warning (none
after a restart of the machine: nothing of that Ray survives one). The resuming driver holds
the folder's lock. A signal goes through a pidfd after the start time is checked again, so a pid
reused meanwhile is never hit.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

MARKER = "MNAS_RAY_OWNER"

__all__ = ["MARKER", "Cleanup", "new_marker", "segment_clock", "segment_record", "cleanup_plan",
           "recorded_pids", "stray_ray_processes", "kill_stray_ray", "snapshot"]

log = logging.getLogger(__name__)

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def new_marker() -> str:
    """A fresh token for the Ray processes of one driver."""
    return f"mnas-{uuid.uuid4().hex}"


# -- /proc readers (Linux) -------------------------------------------------------------------------
def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time in clock ticks since boot) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().decode(errors="replace").split("\0")
    except OSError:
        return []


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    except OSError:
        return ""


def _boot_id() -> str | None:
    try:
        with open(_BOOT_ID) as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _ticks_now() -> int:
    """Clock ticks since boot now: the clock of ``/proc/PID/stat``'s start time (field 22)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _started(pid: int) -> int | None:
    """Start time (ticks since boot) of a live (not zombie) process, or None."""
    st = _stat(pid)
    return st[2] if st is not None and st[0] not in ("Z", "X") else None


# -- what a run records ----------------------------------------------------------------------------
def segment_clock() -> dict[str, Any]:
    """The driver's clock now, taken before it starts Ray: a lower bound on Ray's start times."""
    return {"started_at": time.time(), "started_ticks": _ticks_now(), "boot_id": _boot_id()}


def _folder_id(folder: str | Path) -> list[int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return [st.st_dev, st.st_ino]


def segment_record(folder: str | Path, clock: Mapping[str, Any] | None) -> dict[str, Any]:
    """``run.json``'s ``ray_segment``: ``clock`` (:func:`segment_clock`; now when None), the
    folder's ``[st_dev, st_ino]`` and this driver's ``[pid, start ticks]``."""
    clock = dict(clock or segment_clock())
    me = os.getpid()
    return {**clock, "folder": _folder_id(folder), "driver": [me, _started(me)]}


def _pair(value: object) -> tuple[int, int] | None:
    """``(a, b)`` when ``value`` is a list of two non-negative integers (bools are not)."""
    if (isinstance(value, list) and len(value) == 2
            and all(type(v) is int and v >= 0 for v in value)):
        return value[0], value[1]
    return None


def recorded_pids(value: object) -> list[tuple[int, int]]:
    """``run.json``'s ``ray_pids`` as ``(pid, start ticks)`` pairs: hints, never authority.

    Anything malformed is left out (one warning), never an exception.
    """
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    pairs = [p for p in map(_pair, items) if p is not None and p[0] > 0]
    if len(pairs) != len(items):
        log.warning("run.json: ray_pids holds %d entries that are not [pid, start time]; "
                    "ignored (they are only hints)", len(items) - len(pairs))
    return pairs


@dataclass(frozen=True)
class Cleanup:
    """What a resume may stop: the processes of ``marker`` and their Ray descendants started at
    or after ``since`` (ticks since boot). ``marker`` None: nothing, because of ``why`` (a
    warning to log; empty when there is nothing to say)."""

    marker: str | None
    since: int = 0
    why: str = ""


_OLD = ("run.json does not record which folder and driver started its Ray (written by an older "
        "mnas, or edited): no left-over Ray process is stopped; stop them by pid if a crash left "
        "some")


def cleanup_plan(meta: Mapping[str, Any], folder: str | Path) -> Cleanup:
    """Whether ``run.json`` (``meta``) of ``folder`` lets a resume stop left-over Ray, and which.

    Only when it records this folder (a copy's is another), this boot, and a
    driver that is no longer running (a Ray whose driver lives was not left behind).
    """
    marker = meta.get("ray_marker")
    if marker is None or marker == "" or not os.path.isdir("/proc"):
        return Cleanup(None)  # a joined cluster, Ray never started, or no /proc to look in
    seg = meta.get("ray_segment")
    seg = seg if isinstance(seg, Mapping) else {}
    since, driver = seg.get("started_ticks"), _pair(seg.get("driver"))
    folder_id = _pair(seg.get("folder"))
    if (not isinstance(marker, str) or type(since) is not int or since < 0 or driver is None
            or folder_id is None):
        return Cleanup(None, why=_OLD)
    if list(folder_id) != _folder_id(folder):
        return Cleanup(None, why="run.json was written for another folder (this one is a copy, "
                                 "or came from another file system): its Ray processes, if any, "
                                 "belong to the original run; none is stopped")
    if seg.get("boot_id") != _boot_id():
        return Cleanup(None)  # the machine restarted since: nothing of that Ray survives
    if _started(driver[0]) == driver[1]:
        return Cleanup(None, why=f"the driver that started this run's Ray (pid {driver[0]}) is "
                                 "still running: its processes were not left behind; none is "
                                 "stopped")
    return Cleanup(marker, since)


# -- finding ---------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _ray_dir() -> str | None:
    """The installed ``ray`` package's folder (found without importing Ray), or None."""
    try:
        spec = importlib.util.find_spec("ray")
    except (ImportError, ValueError):
        return None
    places = list(spec.submodule_search_locations or []) if spec is not None else []
    return os.path.realpath(places[0]) if places else None


def _is_ray(exe: str, argv: list[str], ray_dir: str | None) -> bool:
    """A Ray process: renamed ``ray::...``, or its executable or script under ``ray_dir``."""
    if argv and argv[0].startswith("ray::"):
        return True
    if not ray_dir:
        return False
    script = ""
    for arg in argv[1:]:  # the script of `python [-u ...] SCRIPT`; none for -c CODE, -m MODULE
        if arg in ("-c", "-m") or not arg.startswith("-"):
            script = "" if arg in ("-c", "-m") else arg
            break
    under = ray_dir.rstrip(os.sep) + os.sep
    return any(p.startswith(under) for p in (exe, argv[0] if argv else "", script) if p)


def _protected() -> set[int]:
    """Never stopped: pid 1, this process and its ancestors."""
    keep, pid = {1}, os.getpid()
    while pid > 1 and pid not in keep:
        keep.add(pid)
        st = _stat(pid)
        pid = st[1] if st is not None else 0
    return keep


def _found(marker: str, since: int | None) -> dict[int, int]:
    """``{pid: start ticks}`` of the processes :func:`stray_ray_processes` returns."""
    wanted, mine, keep = f"{MARKER}={marker}".encode(), os.getuid(), _protected()
    live = {int(e): st for e in os.listdir("/proc")
            if e.isdigit() and (st := _stat(int(e))) is not None and st[0] not in ("Z", "X")}
    ours = {pid for pid in live if pid not in keep and _uid(pid) == mine}
    roots = {pid for pid in ours if wanted in _environ(pid).split(b"\0")}
    found = {pid: live[pid][2] for pid in roots}
    if since is None:
        return found
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in live.items():
        children.setdefault(ppid, []).append(pid)
    todo, seen, ray_dir = list(roots), set(roots), _ray_dir()
    while todo:
        for kid in children.get(todo.pop(), []):
            if kid in seen:
                continue
            seen.add(kid)
            todo.append(kid)
            if kid in ours and live[kid][2] >= since and _is_ray(_exe(kid), _cmdline(kid),
                                                                  ray_dir):
                found[kid] = live[kid][2]
    return found


def stray_ray_processes(marker: str, *, since: int | None = None) -> list[int]:
    """Live processes of the Ray that carries ``marker``, by the module's rule.

    Those carrying ``MARKER=marker`` in their own environment and, when ``since`` (clock ticks
    since boot) is given, their descendants that are Ray processes started at or after it. Only
    this user's, never pid 1, this process or its ancestors. Linux ``/proc`` only (elsewhere
    ``[]``).
    """
    if not marker or not isinstance(marker, str) or not os.path.isdir("/proc"):
        return []
    return sorted(_found(marker, since))


def snapshot(marker: str) -> list[list[int]]:
    """``[pid, start ticks]`` of the processes carrying ``marker`` now (``ray_pids``: hints)."""
    if not marker or not os.path.isdir("/proc"):
        return []
    return [[pid, start] for pid, start in sorted(_found(marker, None).items())]


# -- stopping --------------------------------------------------------------------------------------
def _signal(pid: int, start: int, sig: int) -> None:
    """Send ``sig`` to ``pid`` only while it is the process that started at ``start`` (through a
    pidfd where the system has them, so a reused pid is never hit)."""
    if pid <= 1:
        return
    fd = None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        fd = None  # no pidfd here: the start time is checked just before os.kill
    try:
        if _started(pid) != start:
            return
        if fd is not None:
            signal.pidfd_send_signal(fd, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    finally:
        if fd is not None:
            os.close(fd)


def kill_stray_ray(marker: str, *, since: int | None = None,
                   hints: Iterable[tuple[int, int]] = (), timeout_s: float = 10.0) -> int:
    """Stop the processes :func:`stray_ray_processes` finds (SIGTERM, then SIGKILL for those
    still running after half of ``timeout_s``); returns how many were found.

    ``hints`` (``ray_pids``) are only reported when still running and not found: never stopped.
    """
    if not marker or not isinstance(marker, str) or not os.path.isdir("/proc"):
        return 0
    found = _found(marker, since)
    for pid, start in hints:
        if pid not in found and _started(pid) == start:
            log.info("pid %d, listed in run.json, carries no token of this run: left alone", pid)
    left = dict(found)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, start in left.items():
            _signal(pid, start, sig)
        deadline = time.monotonic() + timeout_s / 2
        while left and time.monotonic() < deadline:
            left = {p: s for p, s in left.items() if _started(p) == s}
            if left:
                time.sleep(0.1)  # waiting for processes to exit, not synchronising work
        if not left:
            break
    return len(found)
