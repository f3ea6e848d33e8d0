"""What else ran on the node while a latency was measured.

A search measures a child's latency on a worker while other children may train on the same
node, which slows and reorders the timings. Every training phase holds a marker file in a
per-run folder of the node's temp directory (:func:`training`); a measurement records
:func:`node_conditions`: how many other children were training on the node (markers of live
processes), the 1-minute load average and the CPU count.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["activity_dir", "training", "node_conditions", "merge_conditions"]


def activity_dir(tag: str) -> str:
    """The folder (in this node's temp directory) where a run's training phases are marked."""
    return str(Path(tempfile.gettempdir()) / f"mnas-activity-{tag}")


@contextmanager
def training(folder: str | None) -> Iterator[None]:
    """Mark a training phase of this process in ``folder`` meanwhile (None: no marking)."""
    if folder is None:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    marker = Path(folder) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.train"
    marker.write_text(str(os.getpid()))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _training_now(folder: str) -> int:
    count = 0
    for marker in Path(folder).glob("*.train"):
        pid = marker.name.split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            count += 1
    return count


def node_conditions(folder: str | None) -> dict[str, Any]:
    """``training_children`` (None when nothing marks training), ``load_1m`` and ``cpus``."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    training_now = _training_now(folder) if folder is not None and Path(folder).is_dir() else (
        0 if folder is not None else None)
    return {"training_children": training_now,
            "load_1m": None if load is None else round(load, 2), "cpus": os.cpu_count()}


def merge_conditions(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The worse of the conditions at the start and at the end of a measurement."""
    out = dict(before)
    for key in ("training_children", "load_1m"):
        values = [v for v in (before.get(key), after.get(key)) if v is not None]
        out[key] = max(values) if values else None
    return out
