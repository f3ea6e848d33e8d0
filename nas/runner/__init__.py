"""Everything that touches Ray. ``nas.runner`` is the only package of mnas that imports Ray.

- :mod:`nas.runner.driver`: a search from a config (run folder, Ray, Tune segments, the end);
- :mod:`nas.runner.resume`: continuing a run folder (checks, controller state, strays);
- :mod:`nas.runner.search`: the Tune ``Searcher`` adapter and the ``Tuner``;
- :mod:`nas.runner.tune_record`: a finished child as a trial record;
- :mod:`nas.runner.batching`: how many children one Tune trial evaluates;
- :mod:`nas.runner.trainable`: what runs in the workers for one child or a batch;
- :mod:`nas.runner.tasks`: the tasks executor (``search.executor: tasks``): trials as Ray tasks;
- :mod:`nas.runner.session`: starting, joining and cleaning up Ray;
- :mod:`nas.runner.latency_service`: the dedicated latency-measuring actor;
- :mod:`nas.runner.progress`: live progress (counters, ETA, the rich and line views);
- :mod:`nas.runner.output`: Ray's and Tune's own output into the run's ``ray.log``;
- :mod:`nas.runner.weights`: the best children's trained weights (``search.keep_weights``);
- :mod:`nas.runner.trackers`: TensorBoard and MLflow logging of every child.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# where each public name lives; imported on first use, so that a light command importing one
# submodule (``nas.runner.progress`` for ``nas status``) does not pull in Ray and torch
_WHERE = {
    "SearchResult": "nas.runner.driver",
    "start_search": "nas.runner.driver",
    "resume_search": "nas.runner.resume",
    "LATENCY_ACTOR": "nas.runner.latency_service",
    "LATENCY_RESOURCE": "nas.runner.latency_service",
    "LatencyClient": "nas.runner.latency_service",
    "space_ref": "nas.runner.latency_service",
    "start_latency_service": "nas.runner.latency_service",
    "stop_latency_service": "nas.runner.latency_service",
}

__all__ = [
    "SearchResult",
    "start_search",
    "resume_search",
    "LATENCY_ACTOR",
    "LATENCY_RESOURCE",
    "LatencyClient",
    "space_ref",
    "start_latency_service",
    "stop_latency_service",
]

if TYPE_CHECKING:
    from nas.runner.driver import SearchResult, start_search
    from nas.runner.latency_service import (
        LATENCY_ACTOR,
        LATENCY_RESOURCE,
        LatencyClient,
        space_ref,
        start_latency_service,
        stop_latency_service,
    )
    from nas.runner.resume import resume_search


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nas.runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
