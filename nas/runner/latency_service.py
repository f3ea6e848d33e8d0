"""The latency service: one dedicated Ray actor that does every latency measurement.

MnasNet (Tan et al., arXiv:1807.11626, section 3) measures each child's real latency on the
target device. With many trials training in parallel, timing must neither overlap other timings
nor run on the wrong machine. :func:`start_latency_service` starts ONE dedicated actor that does
every measurement, one at a time (``max_concurrency=1``), placed by a custom resource (by default
``{"latency_device": 1}``, which only the node holding the target device advertises, e.g.
``ray start --resources='{"latency_device": 1}'``). Results are cached by (architecture key, space
options, batch size, device fingerprint) in the actor, so repeated children are timed once. Trials
reach the actor by name through :class:`LatencyClient`; the measuring itself is Ray-free
(:mod:`nas.latency.measure`, :mod:`nas.latency.lut`).

Every answer says who measured it: its device fingerprint carries ``"measured_by"``, ``{"pid",
"node_id", "actor_id", "request", "measurement", "cached"}`` (the actor's process, node and id, the
running count of requests it answered, the ordinal of the timing the answer comes from, and whether
it came from the cache). The fingerprint is what a trial record keeps as ``device``, so
``trials.jsonl`` shows which trials the service timed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ray

from nas.latency.conditions import measuring
from nas.latency.lut import LatencyCache
from nas.latency.measure import LatencyConfig
from nas.registry import SPACES
from nas.runner.phases import collect, stream_steps
from nas.space import Arch, Space

__all__ = ["LATENCY_RESOURCE", "LATENCY_ACTOR", "LatencyClient", "start_latency_service",
           "stop_latency_service", "space_ref"]

log = logging.getLogger(__name__)

LATENCY_RESOURCE = "latency_device"
LATENCY_ACTOR = "mnas-latency"


# -- latency service -----------------------------------------------------------------------------
class _LatencyWorker:
    """The actor body: rebuilds the space, measures with a :class:`LatencyCache`."""

    def __init__(self) -> None:
        self._cache = LatencyCache()
        self._spaces: dict[str, Space] = {}
        self._requests = 0
        ctx = ray.get_runtime_context()
        self._me = {"pid": os.getpid(), "node_id": ctx.get_node_id(),
                    "actor_id": ctx.get_actor_id()}

    def _space(self, ref: str, options: Mapping[str, Any]) -> Space:
        key = repr((ref, sorted(options.items())))
        if key not in self._spaces:
            self._spaces[key] = SPACES.create(ref, **dict(options))
        return self._spaces[key]

    def measure(self, request: dict[str, Any]) -> dict[str, Any]:
        space = self._space(request["space"], request["options"])
        arch = None if request["arch"] is None else space.validate(request["arch"])
        config = LatencyConfig.from_dict(request["config"])
        folder = request.get("activity")

        def window() -> Any:  # a quiet window on this node, conditions recorded
            return measuring(folder, quiet=config.quiet, timeout_s=config.quiet_timeout_s)

        result = self._cache.measure(space, arch, config, preset=request["preset"],
                                     window=window if folder else None)
        self._requests += 1
        stamp = {**self._me, "request": self._requests, "measurement": result["measurement"],
                 "cached": result["cached"]}
        return {**result, "device": {**result["device"], "measured_by": stamp}}

    def remeasure(self, request: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """The finalists' final latencies, measured on this node (:mod:`nas.latency.final`): a
        generator of each measurement as it ends, then the results
        (:func:`nas.runner.phases.stream_steps`)."""
        from nas.latency.final import remeasure_archs

        space = self._space(request["space"], request["options"])
        archs = [space.validate(a) for a in request["archs"]]
        config = LatencyConfig.from_dict(request["config"])

        def run(report: Callable[..., None]) -> dict[str, dict[str, Any]]:
            results = remeasure_archs(space, archs, config, passes=request["passes"],
                                      activity=request.get("activity"), on_measured=report)
            for result in results.values():
                result["device"] = {**result["device"], "measured_by": dict(self._me)}
            return results

        yield from stream_steps(run)

    def stats(self) -> dict[str, int]:
        return self._cache.stats()


_OWN_PACKAGES = ("nas", "search_spaces", "controllers")


def space_ref(space: Space) -> str:
    """A name that recreates ``space`` in another process (a Ray worker).

    A space of mnas's own packages goes by its registered name. Any other goes by
    ``module:Class``, even when the driver knows it by a registered name: a name registered by
    importing the user's module (``@register_space``) exists only in processes that imported
    it, and a worker would not know it."""
    cls = type(space)
    registered = space.name in SPACES and isinstance(space, SPACES.get(space.name))
    own = cls.__module__.split(".")[0] in _OWN_PACKAGES or cls.__module__ == "__main__"
    if registered and own:
        return space.name
    return f"{cls.__module__}:{cls.__qualname__}"


class LatencyClient:
    """Sends measurement requests to the latency actor and waits for the answers.

    Args:
        actor: the actor handle (see :func:`start_latency_service` and :meth:`connect`).
    """

    def __init__(self, actor: Any, activity: str | None = None) -> None:
        self.actor = actor
        self.activity = activity

    @classmethod
    def connect(cls, name: str = LATENCY_ACTOR, namespace: str | None = None, *,
                activity: str | None = None) -> LatencyClient:
        """Find a running latency service by name (from a trial or the driver); ``activity``:
        the run's training-marker folder, so the service measures in quiet windows of the run's
        trainers on its node and records the conditions (:mod:`nas.latency.conditions`)."""
        return cls(ray.get_actor(name, namespace=namespace), activity)

    def measure(
        self, space: Space, arch: Arch | None, config: LatencyConfig, *, preset: str | None = None
    ) -> dict[str, Any]:
        """Latency of ``arch`` (or ``preset``) as :meth:`LatencyResult.to_dict` plus ``cached``
        and ``measurement`` (see :class:`LatencyCache`); ``device["measured_by"]`` names the actor
        that answered (see the module docstring)."""
        request = {
            "space": space_ref(space),
            "options": dict(space.options),
            "arch": None if arch is None else arch.to_dict()["decisions"],
            "preset": preset,
            "config": config.to_dict(),
            "activity": self.activity,
        }
        return ray.get(self.actor.measure.remote(request))

    def latency_fn(self) -> Callable[..., dict[str, Any]]:
        """A ``latency_fn`` for :func:`nas.evaluation.evaluate.evaluate_arch` that uses this
        service."""

        def fn(space: Space, arch: Arch | None, preset: str | None,
               config: LatencyConfig) -> dict[str, Any]:
            return self.measure(space, arch, config, preset=preset)

        return fn

    def remeasure(self, space: Space, archs: list[Arch], config: LatencyConfig, passes: int,
                  on_measured: Callable[[str, int, int], None] | None = None,
                  ) -> dict[str, dict[str, Any]]:
        """Final latencies of ``archs`` measured by the service on its node (a
        :data:`nas.runner.remeasure.MeasureFn`); ``on_measured`` gets each measurement as it
        ends (the architecture key, measurements done, in all)."""
        request = {"space": space_ref(space), "options": dict(space.options),
                   "archs": [a.to_dict()["decisions"] for a in archs],
                   "config": config.to_dict(), "passes": passes, "activity": self.activity}
        return collect(self.actor.remeasure.remote(request), on_measured or (lambda *_: None))

    def stats(self) -> dict[str, int]:
        """Cache statistics of the service: ``{"entries", "hits", "misses"}``."""
        return ray.get(self.actor.stats.remote())


def start_latency_service(
    *,
    resource: str = LATENCY_RESOURCE,
    num_cpus: float = 1,
    name: str = LATENCY_ACTOR,
    namespace: str | None = None,
) -> LatencyClient:
    """Start (or reuse) the dedicated latency actor on the node that offers ``resource``.

    Ray must be initialised. The actor runs one measurement at a time and lives as long as the
    driver (or until :func:`stop_latency_service`).

    Args:
        resource: custom resource the actor requires one unit of.
        num_cpus: CPUs reserved for the actor (keep >= the latency threads so no trial shares them).
        name: actor name trials connect to.
        namespace: Ray namespace of the actor (default: the job's).
    """
    if not ray.is_initialized():
        raise RuntimeError("start_latency_service needs ray.init() first")
    if ray.cluster_resources().get(resource, 0) < 1:
        log.warning("no node offers resource %r yet; the latency actor will wait for one", resource)
    actor_cls = ray.remote(_LatencyWorker).options(
        name=name, namespace=namespace, get_if_exists=True, max_concurrency=1,
        num_cpus=num_cpus, resources={resource: 1},
    )
    return LatencyClient(actor_cls.remote())


def stop_latency_service(client: LatencyClient) -> None:
    """Terminate the latency actor."""
    ray.kill(client.actor)
