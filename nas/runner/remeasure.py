"""Finalists re-measured (``nas remeasure RUN`` and the end of every search).

The finalists are the top ``top`` architectures by reward and every architecture on the
accuracy-latency Pareto front. They are measured again on the target device with
:func:`nas.latency.final.remeasure_archs` (interleaved passes, quiet windows, more repeats): in
this process, or by the latency service where the search used one. Every result is appended to
``RUN/remeasured.jsonl`` with the search's number beside it; ``trials.jsonl`` is never rewritten.
Rankings, fronts and exports then use the final numbers (:func:`nas.frame.trials_frame`).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nas._checks import check_int
from nas.errors import UsageError
from nas.frame import trials_frame
from nas.latency.measure import LatencyConfig
from nas.records import TrialRecord, budgeted
from nas.results import RunDir
from nas.space import Arch, Space

__all__ = ["finalists", "remeasure_finalists", "remeasure_run", "remeasure_at_end",
           "quiet_training_lost", "MeasureFn"]

log = logging.getLogger(__name__)

MeasureFn = Callable[[Space, list[Arch], LatencyConfig, int], Mapping[str, dict[str, Any]]]


def finalists(records: list[TrialRecord], reward: Any, top: int) -> list[str]:
    """Architecture keys of the top ``top`` (by mean reward) and of the latency Pareto front,
    best first, each once. Uses the search's latencies (earlier re-measurements ignored)."""
    from nas.analysis.analyze import pareto_front, rank_archs

    frame = trials_frame(records)
    if frame.empty or "latency_ms" not in frame or "accuracy" not in frame:
        return []
    keys = list(rank_archs(frame, reward)["arch_key"].head(top)) if top > 0 else []
    front = pareto_front(frame, "latency_ms", reward)
    return list(dict.fromkeys([*keys, *front["arch_key"]]))


def _local_measure(activity: str | None) -> MeasureFn:
    from nas.latency.final import remeasure_archs

    def measure(space: Space, archs: list[Arch], config: LatencyConfig,
                passes: int) -> Mapping[str, dict[str, Any]]:
        return remeasure_archs(space, archs, config, passes=passes, activity=activity)

    return measure


def remeasure_finalists(run: RunDir, space: Space, config: LatencyConfig, reward: Any, *,
                        top: int = 5, passes: int = 3, by: str = "remeasure",
                        measure: MeasureFn | None = None, activity: str | None = None,
                        say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Re-measure the run's finalists and append the results (the caller holds the lock).

    Returns the entries written, one per architecture: ``arch_key``, ``trial_ids``, the final
    ``latency_ms`` (p10, p90, spread, n), ``search_latency_ms``, ``passes``, ``conditions``,
    ``device``, ``by`` and ``at``."""
    check_int("top", top, minimum=0)
    check_int("passes", passes)
    if config.mode != "measure":
        raise UsageError(f"latency.mode={config.mode!r}: only measured latencies can be "
                         "re-measured", params=())
    records = [r for r in run.trials() if r.complete and r.arch_key]
    keys = finalists(records, reward, top)
    if not keys:
        return []
    by_key: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_key.setdefault(record.arch_key, []).append(record)
    archs = [space.validate(by_key[key][0].arch) for key in keys]
    if say is not None:
        say(f"re-measuring the latency of {len(keys)} finalists ({passes} interleaved passes)")
    results = (measure or _local_measure(activity))(space, archs, config, passes)
    return [_write(run, key, by_key[key], results[key], by) for key in keys if key in results]


def _write(run: RunDir, key: str, records: list[TrialRecord], result: Mapping[str, Any],
           by: str) -> dict[str, Any]:
    searched = [r.metrics.get("latency_ms") for r in records
                if isinstance((r.metrics or {}).get("latency_ms"), int | float)]
    entry = {"arch_key": key, "trial_ids": sorted(r.trial_id for r in records), **result,
             "search_latency_ms": statistics.median(searched) if searched else None,
             "by": by, "at": time.time()}
    run.append_final_latency(entry)
    return entry


def remeasure_run(path: str | Path, *, top: int = 5, passes: int = 3,
                  say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """``nas remeasure RUN``: lock the run folder (one writer), rebuild its space and latency
    settings, and re-measure its finalists here, on this machine's target device.

    Raises:
        UsageError: not a run folder, bad ``top``/``passes``, or latency not measured.
        RunLockedError: a search or another command holds the folder.
    """
    from nas.analysis.analyze import reward_settings
    from nas.config import parse_config
    from nas.experiment import eval_settings
    from nas.latency.conditions import activity_dir
    from nas.registry import get_space
    from nas.runner.session import run_tag

    check_int("top", top, minimum=0)
    check_int("passes", passes)
    run = RunDir.open(path)
    run.lock("remeasure")
    try:
        raw = run.read_config()
        settings = eval_settings(parse_config(raw))
        space = get_space(raw["space"]["name"], **dict(raw["space"].get("options") or {}))
        return remeasure_finalists(run, space, settings.latency, reward_settings(raw), top=top,
                                   passes=passes, activity=activity_dir(run_tag(run.path)),
                                   say=say)
    finally:
        run.unlock()


def remeasure_at_end(run: RunDir, exp: Any, actors: dict[str, Any],
                     activity: str) -> list[dict[str, Any]]:
    """The finalists re-measured once every trial is done (``search.remeasure_top``); a
    failure is logged and costs only the final numbers (the search's stay in use)."""
    search, latency = exp.config.search, exp.settings.latency
    if search.remeasure_top == 0 or latency.mode != "measure" or \
            budgeted(run.trials()) < search.trials:
        return []
    service = actors.get("latency")
    measure = None
    if service is not None:
        service.activity = activity
        measure = service.remeasure
    try:
        return remeasure_finalists(run, exp.space, latency, exp.settings.reward,
                                   top=search.remeasure_top, passes=search.remeasure_passes,
                                   by="search", measure=measure, activity=activity,
                                   say=log.info)
    except Exception as exc:  # never lose a finished search to its last step
        log.warning("could not re-measure the finalists: %s: %s", type(exc).__name__, exc)
        return []


def quiet_training_lost(records: list[TrialRecord]) -> float | None:
    """The share of training time the children spent paused for quiet latency windows (None
    when no child recorded it)."""
    paused = [r.timings.get("train_paused_s") for r in records if r.timings]
    trained = [r.timings.get("train_s") for r in records if r.timings]
    paused_s = sum(p for p in paused if isinstance(p, int | float))
    train_s = sum(t for t in trained if isinstance(t, int | float))
    if not any(isinstance(p, int | float) for p in paused) or train_s <= 0:
        return None
    return paused_s / train_s
