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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray

from nas.runner.strays import MARKER

__all__ = ["MARKER", "RaySession", "start_ray", "ray_temp_dir"]

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
    # inherited by the Ray processes started below; the driver sets its own token first, and
    # left-over processes are found by it (nas.runner.strays), never by a command line
    os.environ.setdefault(MARKER, temp_dir)
    dashboard: dict[str, Any] = {"include_dashboard": bool(settings.dashboard)}
    if settings.dashboard:
        dashboard["dashboard_host"] = "127.0.0.1"
    custom = {**(settings.resources or {}), **(resources or {})}
    ray.init(address="local", num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
             resources=custom or None, _temp_dir=temp_dir, **dashboard, **common)
    return RaySession(True, None, temp_dir, time.perf_counter() - started)
