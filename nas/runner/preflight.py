"""Checks that need the cluster: run once Ray is up, before the run folder or any child exists.

Resources a trial asks for that no node can give would leave Tune waiting forever; a CUDA device
on a cluster without GPUs would fail every child. Both become one-line :class:`ConfigError`s.
"""

from __future__ import annotations

from typing import Any

import ray

from nas.config import SearchConfig, wants_cuda
from nas.errors import ConfigError

__all__ = ["check_cluster", "node_resources"]


def node_resources() -> list[dict[str, float]]:
    """The total resources of every live node of the connected cluster."""
    return [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]


def check_cluster(config: SearchConfig, settings: Any,
                  nodes: list[dict[str, float]] | None = None) -> None:
    """Raise ConfigError if the trials, the device or the latency service cannot be placed."""
    nodes = node_resources() if nodes is None else nodes
    s = config.search
    gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    where = f"the Ray cluster ({len(nodes)} node{'s' * (len(nodes) != 1)})"
    cuda = wants_cuda(config)
    if cuda and gpus == 0:
        raise ConfigError(f"{cuda}: {where} has no GPU; use device: cpu or a cluster with GPUs")
    if s.gpus_per_trial > 0 and gpus == 0:
        raise ConfigError(f"search.gpus_per_trial={s.gpus_per_trial:g}: {where} has no GPU; "
                          "set it to 0")
    if s.gpus_per_trial > gpus:
        raise ConfigError(f"search.gpus_per_trial={s.gpus_per_trial:g}: the largest node of "
                          f"{where} has {gpus:g} GPUs")
    if s.cpus_per_trial > cpus:
        raise ConfigError(f"search.cpus_per_trial={s.cpus_per_trial:g}: the largest node of "
                          f"{where} has {cpus:g} CPUs")
    if not any(n.get("CPU", 0.0) >= s.cpus_per_trial and n.get("GPU", 0.0) >= s.gpus_per_trial
               for n in nodes):
        raise ConfigError(f"search.cpus_per_trial={s.cpus_per_trial:g} with gpus_per_trial="
                          f"{s.gpus_per_trial:g}: no node of {where} has both")
    if config.latency_service:
        _check_service(nodes, where, float(settings.latency.threads))


def _check_service(nodes: list[dict[str, float]], where: str, threads: float) -> None:
    from nas.runner.latency_service import LATENCY_RESOURCE

    hosts = [n for n in nodes if n.get(LATENCY_RESOURCE, 0.0) >= 1]
    if not hosts:
        raise ConfigError(f"latency.service: no node of {where} offers the resource "
                          f"{LATENCY_RESOURCE!r}; start the target node with ray start "
                          f"--resources='{{\"{LATENCY_RESOURCE}\": 1}}'")
    if not any(n.get("CPU", 0.0) >= threads for n in hosts):
        raise ConfigError(f"latency.threads={threads:g}: the latency node has fewer CPUs")
