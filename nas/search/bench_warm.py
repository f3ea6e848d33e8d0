"""Warm starts on lookup tables: cold and warm-started searches side by side (``nas bench
--warm-start``).

Per controller and seed, three searches run on the same seed: the cold target search (as
:func:`nas.search.bench.run_bench` runs it), a *source* search of ``source_trials`` trials by the
same controller on the source objective (another column of the table, or of another table of the
same space, or that column shuffled across cells: a source that knows nothing), then the target
search warm-started from the source search's records
(:meth:`nas.search.controller.Controller.warm_start`). The target's trial budget counts only its
own trials; the source's records are never re-evaluated unless the target proposes one of them.
The warm curves are named ``<controller>+ws``.

Python use::

    from nas.search.bench_warm import WarmSpec, run_warm_bench

    curves = run_warm_bench(target, WarmSpec(source_objective), ["bananas"], trials=100, seeds=30)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nas._checks import check_int
from nas.errors import UsageError
from nas.registry import CONTROLLERS
from nas.search.bench import (
    TableObjective,
    _check_bench,
    _default_options,
    curve_frame,
    run_controller,
)
from nas.search.warm import WarmRecord, WarmSource

__all__ = ["WarmSpec", "WARM_SUFFIX", "shuffled_objective", "inverted_objective", "source_search",
           "run_warm_bench"]

WARM_SUFFIX = "+ws"


@dataclass(frozen=True)
class WarmSpec:
    """Where a warm start's source searches come from.

    Args:
        objective: the source's lookup table (same space as the target).
        trials: trials of each source search (>= 1; default 100).
        shuffled: shuffle the source's metric across the table's cells, per seed (a source that
            carries no information, for measuring what a useless source costs).
        inverted: negate the source's metric (a source that misleads: its best are the worst).
        name: how the source is named in the runs' sources (default: its metric).
    """

    objective: TableObjective
    trials: int = 100
    shuffled: bool = False
    inverted: bool = False
    name: str | None = None

    def label(self) -> str:
        base = self.name or self.objective.metric
        base = f"inverted:{base}" if self.inverted else base
        return f"shuffled:{base}" if self.shuffled else base


def shuffled_objective(objective: TableObjective, seed: int) -> TableObjective:
    """A copy of ``objective`` whose metric (and cost) rows are permuted across its cells."""
    keys = list(objective._rows)
    perm = np.random.default_rng([seed, 0x5AFF1E]).permutation(len(keys))
    return _with_rows(objective, [objective._rows[keys[i]] for i in perm])


def inverted_objective(objective: TableObjective) -> TableObjective:
    """A copy of ``objective`` whose metric is negated (its best cells become its worst)."""
    rows = []
    for row in objective._rows.values():
        row = row.copy()
        row[0] = -row[0]
        rows.append(row)
    return _with_rows(objective, rows)


def _with_rows(objective: TableObjective, rows: list[np.ndarray]) -> TableObjective:
    out = object.__new__(TableObjective)
    out.__dict__.update(objective.__dict__)
    out._rows = dict(zip(list(objective._rows), rows, strict=True))
    out._params = {}
    return out


def source_search(controller: str, spec: WarmSpec, *, seed: int, options: Mapping[str, Any],
                  workers: int = 1, noise: float = 0.0, dedup: bool = True) -> WarmSource:
    """One source search by ``controller`` on the spec's objective; its records as a source."""
    objective = inverted_objective(spec.objective) if spec.inverted else spec.objective
    objective = shuffled_objective(objective, seed) if spec.shuffled else objective
    ctrl = CONTROLLERS.create(controller, space=objective.space, seed=seed, **options)
    res = run_controller(ctrl, objective, trials=spec.trials, workers=workers, seed=seed,
                         noise=noise, dedup=dedup)
    records = tuple(WarmRecord(tuple(idx), float(value), metrics)
                    for idx, value, metrics in res["records"])
    return WarmSource(f"{spec.label()} ({controller}, seed {seed}, {spec.trials} trials)",
                      records, 1.0, spec.objective.metric)


def run_warm_bench(objective: TableObjective, spec: WarmSpec, controllers: Sequence[str], *,
                   trials: int = 100, seeds: int = 30, first_seed: int = 0, workers: int = 1,
                   noise: float = 0.0, dedup: bool = True,
                   options: Mapping[str, Mapping[str, Any]] | None = None, cold: bool = True,
                   progress: Callable[[str, int], None] | None = None) -> pd.DataFrame:
    """Cold (unless ``cold=False``) and warm-started curves of every controller on every seed,
    in long form (:data:`nas.search.bench.CURVE_COLUMNS`); warm ones named ``NAME+ws``.

    The noise (and ``dedup``, ``workers``) apply to the source searches as to the targets.
    """
    _check_bench(controllers, trials, seeds, first_seed, workers, noise, options)
    check_int("warm_start_trials", spec.trials, minimum=1)
    if spec.objective.space.name != objective.space.name:
        raise UsageError(f"warm_start: the source's space {spec.objective.space.name!r} is not "
                         f"the target's {objective.space.name!r}")
    frames = []
    for name in controllers:
        opts = {**_default_options(name, objective), **dict((options or {}).get(name, {}))}
        src_opts = {**_default_options(name, spec.objective),
                    **dict((options or {}).get(name, {}))}
        cold_frames, warm_frames = [], []
        for seed in range(first_seed, first_seed + seeds):
            if progress is not None:
                progress(name, seed)
            run = dict(workers=workers, seed=seed, noise=noise, dedup=dedup)
            if cold:
                ctrl = CONTROLLERS.create(name, space=objective.space, seed=seed, **opts)
                cold_frames.append(curve_frame(name, seed, run_controller(
                    ctrl, objective, trials=trials, **run)))
            source = source_search(name, spec, seed=seed, options=src_opts, workers=workers,
                                   noise=noise, dedup=dedup)
            ctrl = CONTROLLERS.create(name, space=objective.space, seed=seed, **opts)
            ctrl.warm_start([source])
            warm_frames.append(curve_frame(name + WARM_SUFFIX, seed, run_controller(
                ctrl, objective, trials=trials, **run)))
        frames += cold_frames + warm_frames
    return pd.concat(frames, ignore_index=True)
