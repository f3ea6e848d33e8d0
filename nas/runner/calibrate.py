"""``reward.target: auto``: the reward target from the search's own children, measured first.

MnasNet's soft reward only trades accuracy against latency around its target T; a target below
every child's latency (or above all of them) makes the trade-off invisible. With ``auto`` the
driver, once Ray is up and before the run folder is written, samples ``AUTO_SAMPLES`` children of
the space with the search's seed and takes the median of their cost as T: latency measured like
a trial's (a Ray task with a trial's resources, the same latency settings), or MACs/params
counted. The resolved ``config.yaml`` stores the number, so a resume keeps it. Each child measured
is shown as it finishes (:mod:`nas.runner.phases`: one line per child off a terminal).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import ray

from nas.runner.phases import DONE, STEP, collect, start_phase

__all__ = ["AUTO_SAMPLES", "auto_target"]

log = logging.getLogger(__name__)

AUTO_SAMPLES = 8


def _archs(exp: Any, samples: int) -> list[Any]:
    rng = np.random.default_rng([exp.config.search.seed, 7211])
    return [exp.space.sample(rng) for _ in range(samples)]


def _measure(payload: dict[str, Any], decisions: list[dict[str, Any]]
             ) -> Iterator[tuple[str, Any]]:
    """Worker side, a generator task: the median latency (ms) of each architecture, as a trial
    measures it, reported as it is measured (:func:`nas.runner.phases.collect`), then all."""
    from nas.evaluation.evaluate import EvalSettings
    from nas.latency.lut import measure_arch
    from nas.registry import SPACES

    space = SPACES.create(payload["space"], **payload["space_options"])
    cfg = EvalSettings.from_dict(payload["settings"]).latency
    values = []
    for d in decisions:
        values.append(float(measure_arch(space, space.validate(d), cfg).median_ms))
        yield STEP, (values[-1],)
    yield DONE, values


def auto_target(exp: Any, payload: dict[str, Any], samples: int = AUTO_SAMPLES, *,
                view: Any = None) -> float:
    """The median cost of ``samples`` seeded children, in the unit of the reward's metric;
    each child shown as it is measured, like ``view`` (None: silent)."""
    archs = _archs(exp, samples)
    metric = exp.settings.reward.metric
    unit = {"macs": " MACs", "params": " params"}.get(metric, " ms")
    phase = start_phase(view, "reward.target auto", len(archs), unit="child",
                        intro=f"measuring the {metric} of {len(archs)} sampled children")
    values: list[float] = []

    def measured(value: float) -> None:
        values.append(value)
        phase.step(len(values), f"{value:.4g}{unit}")

    try:
        if metric in ("macs", "params"):
            from nas.evaluation.cost import count_cost

            for a in archs:
                cost = count_cost(exp.space.build(a), exp.space.input_shape())
                measured(float(cost.macs if metric == "macs" else cost.params))
        else:
            search = exp.config.search
            resources = {"latency_device": 1.0} if exp.config.latency_service else None
            task = ray.remote(_measure).options(num_cpus=search.cpus_per_trial,
                                                num_gpus=search.gpus_per_trial,
                                                resources=resources)
            values = collect(task.remote(payload, [dict(a.items()) for a in archs]), measured)
    except BaseException:
        phase.finish()  # the bar stops; the error says the rest
        raise
    target = float(np.median(values))
    phase.finish(f"{target:.4g}{unit} (the median of {len(values)} children)")
    log.info("reward.target: auto = %.6g (median of %d children: %s)", target, len(values),
             ", ".join(f"{v:.4g}" for v in values))
    return target
