"""Controllers against a lookup table, in process: no Ray, no training.

A tabular benchmark (NAS-Bench-201, arXiv:2001.00326, or any CSV with one row per architecture)
replaces training by a table lookup, so a controller's search quality can be measured over many
seeds in seconds. Each trial asks the controller, looks the architecture up by the space's canonical
string (:meth:`Space.to_string`), and tells the reward: the metric itself, or MnasNet's
``ACC * (COST / T) ** w`` (arXiv:1807.11626, eq. 2) when a cost is given (a latency column of the
table, or the parameter count of the space's network). Architectures missing from the table (or
with a missing metric) are failed trials.

As in a search, a trial is a *new* architecture evaluated: a proposal already evaluated in the
same search is answered with the stored result and the controller is asked again (``dedup``).
``noise`` adds seeded Gaussian noise to what the controller is told; the curves report the true
value of the architecture the controller was told was best.

Python use::

    from nas.registry import get_space
    from nas.search.bench import TableObjective, load_table, run_bench
    from nas.search.bench_report import summarize

    space = get_space("nasbench201")
    table = load_table("nb201_cifar10.csv", key="arch_str", metric="cifar10_test_acc")
    objective = TableObjective(space, table, key="arch_str", metric="cifar10_test_acc")
    curves = run_bench(objective, ["random", "evolution", "bananas"], trials=100, seeds=30)
    print(summarize(curves))
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nas._checks import check_int, check_number
from nas.errors import UsageError
from nas.registry import CONTROLLERS
from nas.search.bench_table import TableObjective, load_table, synthetic_table
from nas.search.controller import Controller, Proposal

__all__ = ["TableObjective", "load_table", "synthetic_table", "checkpoints", "run_controller",
           "run_bench", "curve_frame", "CURVE_COLUMNS", "MAX_REPEATS"]

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["controller", "seed", "trial", "metric", "cost", "reward", "best_metric",
                 "best_reward", "asks", "repeats", "distinct_late"]
MAX_REPEATS = 100  # repeated proposals in a row answered from the records before one is re-run


def checkpoints(trials: int) -> list[int]:
    """10, 25, 50, 100, 200, 300, 500, 1000, 2000, ... up to ``trials`` (ending with it)."""
    marks = [m for m in (10, 25, 50, 100, 200, 300) if m <= trials]
    scale = 1
    while 500 * scale <= trials:
        marks += [m * scale for m in (500, 1000) if m * scale <= trials]
        scale *= 10
    marks = sorted(set(marks))
    if not marks or marks[-1] != trials:
        marks.append(trials)
    return marks


class _Search:
    """One search's loop: asks, repeats answered from the records, noise, the incumbent."""

    def __init__(self, controller: Controller, objective: TableObjective, *, trials: int,
                 seed: int, noise: float, dedup: bool, max_repeats: int) -> None:
        self.ctrl, self.objective, self.trials = controller, objective, trials
        self.noise, self.dedup, self.max_repeats = noise, dedup, max_repeats
        self.noise_rng = np.random.default_rng([seed, 3571])
        self.known: dict[tuple[int, ...], Any] = {}  # told result of every evaluated arch
        self.live: dict[tuple[int, ...], list[Proposal]] = {}  # in flight -> parked repeats
        self.asks = self.repeats = 0
        self.late: set[tuple[int, ...]] = set()  # distinct proposals in the last 100 trials
        self.late_from = max(0, trials - 100)

    def next(self, t: int) -> Proposal:
        """A proposal to evaluate as trial ``t`` (0-based); repeats are answered, not re-run."""
        for attempt in range(self.max_repeats + 1):
            proposal = self.ctrl.ask()
            self.asks += 1
            idx = proposal.arch.indices
            if t >= self.late_from:
                self.late.add(idx)
            if not self.dedup or attempt == self.max_repeats:
                break
            if idx in self.known:
                self.repeats += 1
                self.ctrl.tell(proposal, self.known[idx])
            elif idx in self.live:
                self.repeats += 1
                self.live[idx].append(proposal)  # told when the one in flight finishes
            else:
                break
        self.live.setdefault(proposal.arch.indices, [])
        return proposal

    def told(self, metrics: dict[str, float] | None) -> tuple[Any, float]:
        """What the controller is told for ``metrics`` and the (noisy) reward it ranks by."""
        if metrics is None:
            return None, -math.inf
        accuracy = metrics["accuracy"]
        if self.noise > 0:
            accuracy += float(self.noise_rng.normal(0.0, self.noise))
        cost = metrics.get(self.objective.cost_name) if self.objective.cost_name else None
        reward = self.objective.reward(accuracy, cost)
        if self.ctrl.wants_metrics:
            return {**metrics, "accuracy": accuracy, "reward": reward}, reward
        return reward, reward

    def finish(self, proposal: Proposal, result: Any) -> None:
        """Tell ``proposal`` and the repeats parked behind it."""
        idx = proposal.arch.indices
        self.ctrl.tell(proposal, result)
        for parked in self.live.pop(idx, []):
            self.ctrl.tell(parked, result)
        self.known[idx] = result


def _check_metrics(controller: Controller, objective: TableObjective) -> None:
    missing = set(controller.required_metrics) - set(objective.metric_names)
    if missing:
        raise UsageError(f"controllers: {controller.name!r} needs metric(s) {sorted(missing)}; "
                         "give the objective a cost (latency_column, or cost='params')",
                         params=("controllers", "latency_column", "cost"))


def run_controller(controller: Controller, objective: TableObjective, *, trials: int,
                   workers: int = 1, seed: int = 0, noise: float = 0.0, dedup: bool = True,
                   max_repeats: int = MAX_REPEATS) -> dict[str, Any]:
    """Run one search of ``trials`` evaluated architectures.

    With ``workers > 1`` that many proposals stay outstanding and each step tells a random one
    of them (drawn with ``seed``), as finishing workers would. With ``dedup`` a proposal already
    evaluated (or in flight) is answered from the records instead of spending a trial, up to
    ``max_repeats`` in a row. ``noise`` is the standard deviation of Gaussian noise added to the
    accuracy the controller is told (seeded with ``seed``).

    Returns:
        ``{"curve": array trials x 6, "asks", "repeats", "distinct_late", "records"}``; the
        curve's columns are metric, cost, reward (true values of the trial's architecture), then
        the true metric and reward of the incumbent (the best by what the controller was told);
        ``distinct_late`` counts the distinct architectures proposed in the last 100 trials;
        ``records`` holds ``(indices, reward told, metrics told)`` of every successful trial, in
        order (what a warm start reads from a search).
    """
    _check_metrics(controller, objective)
    search = _Search(controller, objective, trials=trials, seed=seed, noise=noise, dedup=dedup,
                     max_repeats=max_repeats)
    order_rng = np.random.default_rng([seed, 7919])
    pending = [search.next(t) for t in range(min(workers, trials))]
    out = np.full((trials, 5), np.nan)
    best_told, incumbent = -math.inf, (math.nan, math.nan)
    records: list[tuple[tuple[int, ...], float, dict[str, float]]] = []
    for t in range(trials):
        proposal = pending.pop(int(order_rng.integers(len(pending))))
        metrics = objective.evaluate(proposal.arch)
        result, score = search.told(metrics)
        search.finish(proposal, result)
        if metrics is not None:
            told = result if isinstance(result, dict) else {
                **metrics, "reward": score, **({} if objective.cost_name else {"accuracy": score})}
            records.append((proposal.arch.indices, score, dict(told)))
        if t + len(pending) + 1 < trials:
            pending.append(search.next(t + len(pending) + 1))
        if metrics is not None:
            out[t, :3] = (metrics["accuracy"], metrics.get(objective.cost_name or "", math.nan),
                          metrics["reward"])
            if score > best_told:
                best_told, incumbent = score, (metrics["accuracy"], metrics["reward"])
        out[t, 3:] = incumbent
    return {"curve": out, "asks": search.asks, "repeats": search.repeats,
            "distinct_late": len(search.late), "records": records}


def _default_options(name: str, objective: TableObjective) -> dict[str, Any]:
    """Multi-objective controllers search accuracy against the objective's cost (accuracy alone
    for those that always want metrics, when the table gives no cost)."""
    cls = CONTROLLERS.get(name)
    if "objectives" not in inspect.signature(cls).parameters:
        return {}
    if objective.cost_name is not None:
        return {"objectives": [["accuracy", "max"], [objective.cost_name, "min"]]}
    return {"objectives": [["accuracy", "max"]]} if getattr(cls, "wants_metrics", False) else {}


def _check_bench(controllers: Sequence[str], trials: Any, seeds: Any, first_seed: Any,
                 workers: Any, noise: Any, options: Mapping[str, Any] | None) -> None:
    for name, value, low in (("trials", trials, 1), ("seeds", seeds, 1),
                             ("first_seed", first_seed, 0), ("workers", workers, 1)):
        check_int(name, value, minimum=low)
    check_number("noise", noise)
    unknown = set(options or {}) - set(controllers)
    if unknown:
        raise UsageError(f"options: given for {sorted(unknown)}, which are not in "
                         f"controllers {list(controllers)}", params=("options", "controllers"))
    for name in controllers:
        if name not in CONTROLLERS:
            raise UsageError(f"controllers: unknown controller {name!r}; "
                             f"known: {', '.join(CONTROLLERS.names())}", params=("controllers",))


def run_bench(objective: TableObjective, controllers: Sequence[str], *, trials: int = 100,
              seeds: int = 30, first_seed: int = 0, workers: int = 1, noise: float = 0.0,
              dedup: bool = True, options: Mapping[str, Mapping[str, Any]] | None = None,
              progress: Callable[[str, int], None] | None = None) -> pd.DataFrame:
    """Every controller on every seed; the per-trial curves in long form (:data:`CURVE_COLUMNS`).

    Args:
        objective: the lookup table.
        controllers: registered controller names.
        trials: evaluated architectures per search (>= 1).
        seeds: searches per controller (>= 1), seeded ``first_seed, first_seed + 1, ...``.
        first_seed: the first seed (>= 0).
        workers: proposals outstanding at once (>= 1).
        noise: standard deviation of the noise added to what controllers are told (>= 0).
        dedup: answer repeated proposals from the records (a trial is a new architecture).
        options: per-controller constructor options, e.g. ``{"evolution": {"sample_size": 5}}``;
            multi-objective controllers (those taking ``objectives``) get accuracy against the
            objective's cost unless given.
        progress: called with ``(controller, seed)`` before each search.
    """
    _check_bench(controllers, trials, seeds, first_seed, workers, noise, options)
    frames = []
    for name in controllers:
        opts = {**_default_options(name, objective), **dict((options or {}).get(name, {}))}
        for seed in range(first_seed, first_seed + seeds):
            if progress is not None:
                progress(name, seed)
            ctrl = CONTROLLERS.create(name, space=objective.space, seed=seed, **opts)
            res = run_controller(ctrl, objective, trials=trials, workers=workers, seed=seed,
                                 noise=noise, dedup=dedup)
            frames.append(curve_frame(name, seed, res))
    return pd.concat(frames, ignore_index=True)


def curve_frame(name: str, seed: int, res: Mapping[str, Any]) -> pd.DataFrame:
    """One search's curve (:func:`run_controller`'s result) in long form (:data:`CURVE_COLUMNS`)."""
    frame = pd.DataFrame(res["curve"], columns=CURVE_COLUMNS[3:8])
    frame.insert(0, "trial", np.arange(1, len(frame) + 1))
    frame.insert(0, "seed", seed)
    frame.insert(0, "controller", name)
    for stat in ("asks", "repeats", "distinct_late"):
        frame[stat] = res[stat]
    return frame
