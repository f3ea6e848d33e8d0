"""Finalists re-measured (``nas remeasure RUN`` and the end of every search).

The finalists are the top ``top`` architectures by reward and every architecture on the
accuracy-latency Pareto front. A finalist's search latency was often luckily low (that is partly
why it ranks high), so once re-measured it may fall out and let another in: the finalists are
chosen again with the final numbers applied, and the new ones measured, up to ``MAX_ROUNDS``
rounds, until the top and the front hold only final numbers. They are measured again on the
target device with :func:`nas.latency.final.remeasure_archs` (interleaved passes, quiet
windows, more repeats): in
``nas remeasure``'s own process; at the end of a search in a Ray task with a trial's resources (so
measured the way the trials were), or by the latency service where the search used one. Every
result is appended to ``RUN/remeasured.jsonl`` with the search's number beside it;
``trials.jsonl`` is never rewritten.
Rankings, fronts and exports then use the final numbers (:func:`nas.frame.trials_frame`).
Every measurement is shown as it ends (finalist k/N, its pass, ETA; :mod:`nas.runner.phases`),
from a Ray task or the latency service too (their reports stream back to the driver).
"""

from __future__ import annotations

import inspect
import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from nas._checks import check_int
from nas.errors import UsageError
from nas.frame import trials_frame
from nas.latency.final import rescale
from nas.latency.measure import LatencyConfig
from nas.records import TrialRecord, budgeted
from nas.results import RunDir
from nas.runner.phases import collect, start_phase, stream_steps
from nas.space import Arch, Space

__all__ = ["finalists", "remeasure_finalists", "remeasure_run", "remeasure_at_end",
           "final_ranking", "quiet_training_lost", "MeasureFn"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 4  # re-measurement rounds: a finalist that fell out lets a new one in

# (space, finalists, latency settings, passes); one that also takes ``on_measured`` (a callback
# with the architecture key, the measurements done and in all) reports each measurement
MeasureFn = Callable[[Space, list[Arch], LatencyConfig, int], Mapping[str, dict[str, Any]]]
StepFn = Callable[[str, int, int], None]


def finalists(records: list[TrialRecord], reward: Any, top: int,
              final: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Architecture keys of the top ``top`` (by mean reward) and of the latency Pareto front,
    best first, each once, ranked with the search's latencies and ``final`` ones over them."""
    from nas.analysis.analyze import pareto_front, rank_archs

    frame = trials_frame(records, final)
    if frame.empty or "latency_ms" not in frame or "accuracy" not in frame:
        return []
    keys = list(rank_archs(frame, reward)["arch_key"].head(top)) if top > 0 else []
    front = pareto_front(frame, "latency_ms", reward)
    return list(dict.fromkeys([*keys, *front["arch_key"]]))


def _local_measure(activity: str | None) -> MeasureFn:
    from nas.latency.final import remeasure_archs

    def measure(space: Space, archs: list[Arch], config: LatencyConfig, passes: int,
                on_measured: StepFn | None = None) -> Mapping[str, dict[str, Any]]:
        return remeasure_archs(space, archs, config, passes=passes, activity=activity,
                               on_measured=on_measured)

    return measure


def _measured(measure: MeasureFn, phase: Any, passes: int) -> dict[str, Any]:
    """``on_measured`` for ``measure`` when it takes one (each measurement a step of
    ``phase``), else nothing: its results come all at once."""
    try:
        takes = "on_measured" in inspect.signature(measure).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return {}

    def step(key: str, done: int, total: int) -> None:
        per_pass = max(1, total // max(1, passes))
        phase.step(done, f"finalist {key[:12]} (pass {min(passes, (done - 1) // per_pass + 1)}"
                         f"/{passes})")

    return {"on_measured": step}


def remeasure_finalists(run: RunDir, space: Space, config: LatencyConfig, reward: Any, *,
                        top: int = 5, passes: int = 3, by: str = "remeasure",
                        measure: MeasureFn | None = None, activity: str | None = None,
                        say: Callable[[str], None] | None = None,
                        view: Any = None) -> list[dict[str, Any]]:
    """Re-measure the run's finalists and append the results (the caller holds the lock);
    each measurement is shown like ``view`` (:mod:`nas.runner.phases`; None: not shown).

    Returns the entries written, one per architecture: ``arch_key``, ``trial_ids``, the final
    ``latency_ms`` (p10, p90, spread, n), ``search_latency_ms``, ``passes``, ``conditions``,
    ``device``, ``by`` and ``at``."""
    check_int("top", top, minimum=0)
    check_int("passes", passes)
    if config.mode != "measure":
        raise UsageError(f"latency.mode={config.mode!r}: only measured latencies can be "
                         "re-measured", params=())
    records = [r for r in run.trials() if r.complete and r.arch_key]
    by_key: dict[str, list[TrialRecord]] = {}
    for record in records:
        by_key.setdefault(record.arch_key, []).append(record)
    measure = measure or _local_measure(activity)
    done: dict[str, dict[str, Any]] = {}
    reference_ms: float | None = None  # the first round's: later rounds' ratios in its ms
    for _ in range(MAX_ROUNDS):  # until the finalists by the final numbers are all final
        keys = [k for k in finalists(records, reward, top, done) if k not in done]
        if not keys:
            break
        what = (f"re-measuring the latency of {len(keys)} finalists ({passes} interleaved "
                f"passes{', paired with a reference network' if config.paired else ''})")
        if say is not None:
            say(what)
        phase = start_phase(view, "re-measure", passes * len(keys), unit="measured",
                            intro=what.removeprefix("re-measuring "))
        try:
            results = measure(space, [space.validate(by_key[k][0].arch) for k in keys],
                              config, passes, **_measured(measure, phase, passes))
        finally:
            phase.finish()
        measured = [k for k in keys if k in results]
        if reference_ms is None and measured:
            reference_ms = (results[measured[0]].get("reference") or {}).get("latency_ms")
        for key in measured:
            result = results[key] if reference_ms is None else rescale(results[key],
                                                                        reference_ms)
            done[key] = _write(run, key, by_key[key], result, by)
    return list(done.values())


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
                  say: Callable[[str], None] | None = None,
                  trust_code: bool = False, view: Any = None) -> list[dict[str, Any]]:
    """``nas remeasure RUN``: lock the run folder (one writer), rebuild its space and latency
    settings, and re-measure its finalists here, on this machine's target device (each
    measurement shown like ``view``). This node's quiet-window folder of the run is removed
    at the end.

    Raises:
        UsageError: not a run folder, bad ``top``/``passes``, or latency not measured; a
            ``module:attr`` space of its config without ``trust_code``.
        RunLockedError: a search or another command holds the folder.
    """
    from nas.analysis.analyze import reward_settings
    from nas.config import parse_config
    from nas.experiment import eval_settings
    from nas.latency.conditions import activity_dir
    from nas.registry import get_space, names_from
    from nas.runner.session import remove_activity_dir, run_tag

    check_int("top", top, minimum=0)
    check_int("passes", passes)
    run = RunDir.open(path)
    run.lock("remeasure")
    try:
        raw = run.read_config()
        settings = eval_settings(parse_config(raw))
        with names_from(run.config_path, trust_code=trust_code):
            space = get_space(raw["space"]["name"], **dict(raw["space"].get("options") or {}))
        return remeasure_finalists(run, space, settings.latency, reward_settings(raw), top=top,
                                   passes=passes, activity=activity_dir(run_tag(run.path)),
                                   say=say, view=view)
    finally:
        remove_activity_dir(run.path)
        run.unlock()


def remeasure_at_end(run: RunDir, exp: Any, actors: dict[str, Any], activity: str, *,
                     view: Any = None) -> list[dict[str, Any]]:
    """The finalists re-measured once every trial is done (``search.remeasure_top``), each
    measurement shown like ``view``; a failure is logged and costs only the final numbers (the
    search's stay in use)."""
    search, latency = exp.config.search, exp.settings.latency
    if search.remeasure_top == 0 or latency.mode != "measure" or \
            budgeted(run.trials()) < search.trials:
        return []
    service = actors.get("latency")
    if service is not None:
        service.activity = activity
        measure = service.remeasure  # reports its measurements (the service streams them)
    else:  # in a worker with a trial's resources: measured the way the trials were
        measure = _task_measure(search, activity)
    try:
        return remeasure_finalists(run, exp.space, latency, exp.settings.reward,
                                   top=search.remeasure_top, passes=search.remeasure_passes,
                                   by="search", measure=measure, activity=activity,
                                   say=log.info, view=view)
    except Exception as exc:  # never lose a finished search to its last step
        log.warning("could not re-measure the finalists: %s: %s", type(exc).__name__, exc)
        return []


def _remote_measure(ref: str, options: dict[str, Any], archs: list[dict[str, Any]],
                    config: dict[str, Any], passes: int,
                    activity: str | None) -> Iterator[tuple[str, Any]]:
    """The Ray task body, a generator: rebuild the space and re-measure the finalists on this
    worker, yielding each measurement as it ends, then the results
    (:func:`nas.runner.phases.stream_steps`)."""
    from nas.latency.final import remeasure_archs
    from nas.registry import SPACES

    def run(report: StepFn) -> Mapping[str, dict[str, Any]]:
        space = SPACES.create(ref, **options)
        return remeasure_archs(space, [space.validate(a) for a in archs],
                               LatencyConfig.from_dict(config), passes=passes,
                               activity=activity, on_measured=report)

    yield from stream_steps(run)


def _task_measure(search: Any, activity: str | None) -> MeasureFn:
    """A :data:`MeasureFn` that measures in one Ray task with a trial's resources."""
    import ray

    from nas.runner.latency_service import space_ref

    def measure(space: Space, archs: list[Arch], config: LatencyConfig, passes: int,
                on_measured: StepFn | None = None) -> Mapping[str, dict[str, Any]]:
        task = ray.remote(_remote_measure).options(num_cpus=search.cpus_per_trial,
                                                   num_gpus=search.gpus_per_trial, max_retries=0)
        return collect(task.remote(space_ref(space), dict(space.options),
                                   [a.to_dict()["decisions"] for a in archs], config.to_dict(),
                                   passes, activity), on_measured or (lambda *_: None))

    return measure


def final_ranking(run: RunDir, exp: Any) -> list[int]:
    """Trial ids of the run's architectures, best first, by the final latencies."""
    from nas.analysis.analyze import rank_archs

    frame = trials_frame(run.trials(), run.final_latencies())
    if frame.empty:
        return []
    return [int(t) for t in rank_archs(frame, exp.settings.reward)["trial_id"]]


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
