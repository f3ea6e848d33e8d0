"""What else ran on the node while a latency was measured, and quiet measurement windows.

A search measures a child's latency on a worker while other children may train on the same
node, which slows and reorders the timings (issue 13: Spearman 0.91 against a quiet machine with
one training process beside the measurement). Every training phase holds a marker file in a
per-run folder of the node's temp directory (:func:`training`); a measurement records
:func:`node_conditions`: how many other children were training on the node (markers of live
processes that were not paused), the 1-minute load average and the CPU count.

Quiet windows (:func:`measuring` with ``quiet=True``, ``latency.quiet``, the default): the
measuring process takes the folder's ``measure.lock`` exclusively (one measurement at a time per
run and node), writes a ``quiet`` file and waits until every live trainer has acknowledged a pause
(``<marker>.paused``) or ``timeout_s`` passed. Trainers call :meth:`TrainingMarker.pause_point`
between optimisation steps: when a ``quiet`` file of a live process exists they acknowledge and
block on a shared lock of ``measure.lock`` until the measurement releases it (no polling on
their side). What a trainer lost waiting is its ``paused_s``; the measurement records how long it
waited for the trainers (``waited_s``) and whether the window was quiet. The OS releases the
locks of a killed process, and markers of dead processes are ignored, so a crash never blocks a
node.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nas._fs import open_lock, safe_dir, write_atomic

__all__ = ["activity_dir", "training", "TrainingMarker", "measuring", "node_conditions",
           "merge_conditions", "QUIET_TIMEOUT_S"]

QUIET_TIMEOUT_S = 10.0
_LOCK, _QUIET, _POLL_S = "measure.lock", "quiet", 0.002


def activity_dir(tag: str) -> str:
    """The folder (in this node's temp directory) where a run's training phases are marked."""
    return str(Path(tempfile.gettempdir()) / f"mnas-activity-{tag}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_in(path: Path) -> int | None:
    """The live process id a marker or quiet file names (None: none, dead, or this process)."""
    pid = path.name.split("-", 1)[0] if path.suffix == ".train" else _read(path)
    if not pid.isdigit() or int(pid) == os.getpid() or not _alive(int(pid)):
        return None
    return int(pid)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


class TrainingMarker:
    """This process's marker while it trains; :meth:`pause_point` yields to quiet windows."""

    def __init__(self, folder: str | None) -> None:
        self.folder = None if folder is None else Path(folder)
        self.paused_s = 0.0
        self.pauses = 0
        self.path: Path | None = None
        if self.folder is not None:
            safe_dir(self.folder)  # a shared temp folder: a planted link is refused
            self.path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.train"
            write_atomic(self.path, str(os.getpid()), fsync=False)

    def pause_point(self, before_pause: Callable[[], None] | None = None) -> None:
        """Called between steps: wait out a quiet window of another process, if one is open.

        ``before_pause`` runs before the pause is acknowledged (e.g. ``torch.cuda.synchronize``,
        so no queued kernel of this trainer runs during the measurement)."""
        if self.path is None or not (self.folder / _QUIET).exists():
            return
        if _pid_in(self.folder / _QUIET) is None:
            return
        if before_pause is not None:
            before_pause()
        t0 = time.perf_counter()
        ack = self.path.with_name(self.path.name + ".paused")
        write_atomic(ack, str(os.getpid()), fsync=False)
        try:
            with os.fdopen(open_lock(self.folder / _LOCK), "rb+") as lock:  # blocks meanwhile
                fcntl.flock(lock, fcntl.LOCK_SH)
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            ack.unlink(missing_ok=True)
        self.paused_s += time.perf_counter() - t0
        self.pauses += 1

    def close(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name + ".paused").unlink(missing_ok=True)


@contextmanager
def training(folder: str | None) -> Iterator[TrainingMarker]:
    """Mark a training (or other busy) phase of this process in ``folder`` meanwhile (None: no
    marking). A phase does not start inside another process's open quiet window: it waits for
    the window to close first."""
    marker = TrainingMarker(folder)
    try:
        marker.pause_point()
        yield marker
    finally:
        marker.close()


def _trainers(folder: Path) -> tuple[int, int]:
    """(running, paused) live trainers of other processes in ``folder``."""
    running = paused = 0
    for marker in folder.glob("*.train"):
        if _pid_in(marker) is None:
            continue
        if marker.with_name(marker.name + ".paused").exists():
            paused += 1
        else:
            running += 1
    return running, paused


def node_conditions(folder: str | None) -> dict[str, Any]:
    """``training_children`` (running, not paused; None when nothing marks training),
    ``load_1m`` and ``cpus``."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if folder is None:
        running = None
    else:
        running = _trainers(Path(folder))[0] if Path(folder).is_dir() else 0
    return {"training_children": running,
            "load_1m": None if load is None else round(load, 2), "cpus": os.cpu_count()}


def merge_conditions(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The worse of the conditions at the start and at the end of a measurement."""
    out = dict(before)
    for key in ("training_children", "load_1m"):
        values = [v for v in (before.get(key), after.get(key)) if v is not None]
        out[key] = max(values) if values else None
    return out


def _wait_for_pauses(folder: Path, timeout_s: float) -> tuple[bool, int]:
    """Wait until no other trainer runs (True) or ``timeout_s`` passed; and how many paused."""
    deadline = time.monotonic() + timeout_s
    while True:
        running, paused = _trainers(folder)
        if running == 0:
            return True, paused
        if time.monotonic() >= deadline:
            return False, paused
        time.sleep(_POLL_S)  # trainers acknowledge at their next step (milliseconds)


@contextmanager
def measuring(folder: str | None, *, quiet: bool = True,
              timeout_s: float = QUIET_TIMEOUT_S) -> Iterator[dict[str, Any]]:
    """Around one latency measurement: yields a dict filled on exit with the conditions.

    With ``quiet`` (and a folder) the measurement runs in a quiet window: the node's other
    trainers of this run pause until it ends (see the module docstring). The conditions are
    :func:`node_conditions` (the worse of start and end) plus ``quiet`` (True when no trainer
    ran during the window, None when quiet windows were not asked for), ``paused_children`` and
    ``waited_s``."""
    conditions: dict[str, Any] = {}
    if folder is None or not quiet:
        before = node_conditions(folder)
        yield conditions
        conditions.update(merge_conditions(before, node_conditions(folder)), quiet=None)
        return
    path = safe_dir(folder)  # files in a shared temp folder: never through a planted link
    t0 = time.perf_counter()
    with os.fdopen(open_lock(path / _LOCK), "rb+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one window at a time; released if this process dies
        write_atomic(path / _QUIET, str(os.getpid()), fsync=False)
        try:
            calm, paused = _wait_for_pauses(path, timeout_s)
            waited = time.perf_counter() - t0
            before = node_conditions(folder)
            yield conditions
            after = node_conditions(folder)
        finally:
            (path / _QUIET).unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)
    merged = merge_conditions(before, after)
    conditions.update(merged, quiet=calm and merged["training_children"] == 0,
                      paused_children=paused, waited_s=round(waited, 4))
