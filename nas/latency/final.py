"""Finalists re-measured: interleaved passes in quiet windows, more repeats, one final number.

A latency taken during a search may be slowed by what ran beside it (see
:mod:`nas.latency.conditions`) and drifts with the machine over a long search. At the end of a
search (and with ``nas remeasure``) the finalists are measured again, all in one session:
``passes`` passes over every architecture, each pass in a fresh random order (so drift and bursts
of load spread over all of them rather than biasing the ones measured last), every measurement in
a quiet window. An architecture's final latency is the median of the round medians of all its
passes, after the rounds slower than the fastest by more than ``round_tolerance`` are dropped as
disturbed (as within one measurement, :func:`nas.latency.measure.robust_stats`): ``passes`` times
the search's repeats, over minutes rather than seconds. Its p10 and p90 are the 10th and 90th
percentiles of the same round medians, so they bracket the median they sit beside and the spread
shows how much the rounds of all passes disagreed (not single runs' extremes, which on a loaded
machine can lie far from any round's median).

With ``latency.paired`` (the default) every measurement is paired with the space's reference network
(:mod:`nas.latency.paired`): an architecture's final latency is the median of its passes' ratio
rounds times the reference's undisturbed latency in the same session, and its unpaired number is
kept beside it (``latency_unpaired_ms``). A later session's ratios are put in the first session's
milliseconds with :func:`rescale`, so finalists measured in different rounds compare.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from nas._checks import check_int
from nas.latency.conditions import measuring
from nas.latency.lut import latency_space
from nas.latency.measure import LatencyConfig, LatencyResult, measure_latency
from nas.latency.paired import PairedResult, measure_paired, reference_arch, reference_latency
from nas.space import Arch, Space

__all__ = ["remeasure_archs", "combine_passes", "combine_paired", "rescale"]


def _percentiles(rounds: Sequence[float]) -> tuple[float, float, float]:
    """(median, p10, p90) of one set of round medians: the percentiles come from the very
    values the median does, so p10 <= median <= p90."""
    values = np.asarray(rounds, dtype=float)
    median = float(np.median(values))
    p10, p90 = (float(v) for v in np.percentile(values, [10, 90]))
    return median, min(p10, median), max(p90, median)  # min/max: rounding only


def combine_passes(results: Sequence[LatencyResult], conditions: Sequence[Mapping[str, Any]],
                   tolerance: float) -> dict[str, Any]:
    """One final measurement from several passes over the same model (see the module doc)."""
    rounds = [r for res in results for r in res.rounds]
    fastest = min(rounds)
    kept = [r for r in rounds if r <= fastest * (1.0 + tolerance)]
    median, p10, p90 = _percentiles(kept)
    busy = [c.get("training_children") for c in conditions if c.get("training_children")
            is not None]
    loads = [c["load_1m"] for c in conditions if c.get("load_1m") is not None]
    quiet = [c.get("quiet") for c in conditions]
    return {
        "latency_ms": median, "latency_p10_ms": p10, "latency_p90_ms": p90,
        "latency_spread": (p90 - p10) / median if median > 0 else float("nan"),
        "latency_n": int(sum(res.n for res in results)), "passes": len(results),
        "pass_medians": [res.median_ms for res in results],
        "rounds_kept": len(kept), "rounds_total": len(rounds),
        "device": results[0].device,
        "conditions": {"training_children": max(busy) if busy else None,
                       "load_1m": max(loads) if loads else None,
                       "cpus": (conditions[0] if conditions else {}).get("cpus"),
                       "quiet": all(q is True for q in quiet) if quiet else None},
    }


def combine_paired(results: Sequence[PairedResult], conditions: Sequence[Mapping[str, Any]],
                   tolerance: float, reference_ms: float, reference_key: str) -> dict[str, Any]:
    """One final measurement from several paired passes over the same model: the passes' ratio
    rounds' median times ``reference_ms`` (see the module doc), the unpaired number beside it."""
    plain = combine_passes([r.model for r in results], conditions, tolerance)
    rounds = [r for res in results for r in res.ratio["rounds"]]
    ratio, low, high = _percentiles(rounds)
    median, p10, p90 = ratio * reference_ms, low * reference_ms, high * reference_ms
    return {**plain, "latency_ms": median, "latency_p10_ms": p10, "latency_p90_ms": p90,
            "latency_spread": (p90 - p10) / median if median > 0 else float("nan"),
            "pass_medians": [res.ratio["median_ms"] * reference_ms for res in results],
            "rounds_kept": len(rounds), "rounds_total": len(rounds), "method": "paired",
            "ratio": ratio, "latency_unpaired_ms": plain["latency_ms"],
            "reference": {"arch_key": reference_key, "latency_ms": reference_ms}}


def rescale(result: Mapping[str, Any], reference_ms: float) -> dict[str, Any]:
    """A paired result in the milliseconds of a session whose reference took ``reference_ms``
    (an unpaired result is returned as it is)."""
    ref = result.get("reference")
    if result.get("method") != "paired" or not isinstance(ref, Mapping):
        return dict(result)
    factor = reference_ms / float(ref["latency_ms"])
    out = dict(result)
    for key in ("latency_ms", "latency_p10_ms", "latency_p90_ms"):
        out[key] = float(result[key]) * factor
    out["pass_medians"] = [float(v) * factor for v in result.get("pass_medians", [])]
    out["reference"] = {**ref, "latency_ms": reference_ms, "session_ms": ref["latency_ms"]}
    return out


def remeasure_archs(space: Space, archs: Sequence[Arch], config: LatencyConfig, *,
                    passes: int = 3, seed: int = 0, activity: str | None = None,
                    on_measured: Callable[[str, int, int], None] | None = None,
                    paired: bool | None = None) -> dict[str, dict[str, Any]]:
    """Final latencies of ``archs`` (by architecture key), measured interleaved on this device.

    Args:
        space: the run's space (built at ``config.input_size`` when that is set).
        archs: the finalists (repeats are measured once).
        config: the search's latency settings; each pass times ``config.repeats`` runs.
        passes: passes over all of them, each in a new seeded random order.
        activity: the run's training-marker folder (quiet windows and conditions), or None.
        on_measured: called with (architecture key, measurements done, measurements in all)
            after each one.
        paired: pair every measurement with the space's reference network
            (:mod:`nas.latency.paired`); False: plain measurements; None: ``config.paired``.
    """
    check_int("passes", passes)
    target = latency_space(space, config)
    unique = {arch.key: arch for arch in archs}
    models = {key: target.build(arch) for key, arch in unique.items()}
    paired = config.paired if paired is None else paired
    reference = target.build(reference_arch(target)) if paired else None
    results, conditions = _passes(models, reference, target.input_shape(), config, passes,
                                  random.Random(seed), activity, on_measured)
    if reference is None:
        return {key: combine_passes(results[key], conditions[key], config.round_tolerance)
                for key in models}
    ref_ms = reference_latency([r for rs in results.values() for r in rs],
                               config.round_tolerance)
    ref_key = reference_arch(target).key
    return {key: combine_paired(results[key], conditions[key], config.round_tolerance, ref_ms,
                                ref_key) for key in models}


def _passes(models: dict[str, Any], reference: Any, shape: tuple[int, ...],
            config: LatencyConfig, passes: int, rng: random.Random, activity: str | None,
            on_measured: Callable[[str, int, int], None] | None,
            ) -> tuple[dict[str, list[Any]], dict[str, list[dict[str, Any]]]]:
    """Every model measured once per pass, each pass in a new order, each in a quiet window;
    returns (results, conditions) per model key."""
    results: dict[str, list[Any]] = {key: [] for key in models}
    conditions: dict[str, list[dict[str, Any]]] = {key: [] for key in models}
    order, done = list(models), 0
    for _ in range(passes):
        rng.shuffle(order)
        for key in order:
            with measuring(activity, quiet=config.quiet,
                           timeout_s=config.quiet_timeout_s) as cond:
                results[key].append(_measure(models[key], reference, shape, config))
            conditions[key].append(cond)
            done += 1
            if on_measured is not None:
                on_measured(key, done, passes * len(models))
    return results, conditions


def _measure(model: Any, reference: Any, shape: tuple[int, ...],
             config: LatencyConfig) -> LatencyResult | PairedResult:
    if reference is None:
        return measure_latency(model, shape, config)
    return measure_paired(model, reference, shape, config)
