"""Starting, joining and cleaning up Ray for a search.

Embedded default: a local Ray started by the search (``address="local"``, so a dead cluster from a
killed run is never joined) with the dashboard off, in a temp folder unique to the run folder, so
Ray processes orphaned by a killed driver can be found and stopped when the run is resumed.
``--address``, the config's ``ray.address`` or ``RAY_ADDRESS`` connect to an existing cluster
instead (which we never stop). Ray's token authentication stays at its default (on).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

MARKER = "MNAS_RAY_TEMP_DIR"

__all__ = ["MARKER", "RaySession", "start_ray", "ray_temp_dir", "stray_ray_processes",
           "kill_stray_ray"]

log = logging.getLogger(__name__)


@dataclass
class RaySession:
    """What :func:`start_ray` did: ``local`` (we own the cluster) or joined ``address``."""

    local: bool
    address: str | None
    temp_dir: str | None
    startup_s: float

    def stop(self) -> None:
        """Disconnect; a local cluster we started is shut down with it."""
        if ray.is_initialized():
            ray.shutdown()


def ray_temp_dir(run_path: Path) -> str:
    """A short temp folder unique to a run (Ray's socket paths must stay under ~100 bytes)."""
    digest = hashlib.sha1(str(Path(run_path).resolve()).encode()).hexdigest()[:10]
    return os.path.join(tempfile.gettempdir(), f"mnas-ray-{digest}")


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


def start_ray(settings: Any, *, address: str | None, run_path: Path,
              env: dict[str, str] | None = None,
              resources: dict[str, float] | None = None) -> RaySession:
    """Join ``address`` (or ``settings.address`` or ``RAY_ADDRESS``), else start a local Ray.

    ``resources`` are custom resources the local Ray must offer (on top of ``settings.resources``).
    """
    env = dict(os.environ if env is None else env)
    target = address or settings.address or env.get("RAY_ADDRESS") or None
    started = time.perf_counter()
    common: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False,
                              "configure_logging": True}
    if target and target != "local":
        ray.init(address=target, **common)
        return RaySession(False, target, None, time.perf_counter() - started)
    temp_dir = ray_temp_dir(run_path)
    stray = stray_ray_processes(temp_dir)
    if stray:
        log.warning("stopping %d Ray processes left behind by an earlier driver", len(stray))
        kill_stray_ray(temp_dir)
    os.environ[MARKER] = temp_dir  # inherited by the Ray processes started below
    dashboard: dict[str, Any] = {"include_dashboard": bool(settings.dashboard)}
    if settings.dashboard:
        dashboard["dashboard_host"] = "127.0.0.1"
    custom = {**(settings.resources or {}), **(resources or {})}
    ray.init(address="local", num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
             resources=custom or None, _temp_dir=temp_dir, **dashboard, **common)
    return RaySession(True, None, temp_dir, time.perf_counter() - started)
