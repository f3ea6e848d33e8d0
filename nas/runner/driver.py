"""Driver side of a search: validation, the run folder and its lock, Ray, Tune segments.

The order is the contract: everything that can be checked is checked before anything starts.
A new search validates the config, starts (or joins) Ray, checks the cluster can place the trials,
and only then creates and locks the run folder. A resume (:mod:`nas.runner.resume`) locks the
folder first, checks its files, stops what a dead driver left, and runs the same segment loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from nas._faults import crash_point
from nas.config import SearchConfig, check_run_name, parse_config
from nas.experiment import Experiment, build_experiment
from nas.latency.conditions import activity_dir
from nas.records import TrialRecord, TrialStatus, best_of, budgeted
from nas.results import RunDir
from nas.runner.output import LOG_NAME, RayOutput
from nas.runner.remeasure import final_ranking, remeasure_at_end
from nas.runner.result import SearchResult, count, search_result
from nas.runner.search import (
    ControllerSearcher,
    ProgressFn,
    SearchProgress,
    make_record,
    trial_payload,
)
from nas.runner.session import RaySession, remove_activity_dir, run_tag, start_ray
from nas.runner.strays import (
    MARKER,
    new_marker,
    segment_clock,
    segment_record,
    snapshot,
)
from nas.runner.supernet import check_named_supernet, prepare_supernet
from nas.runner.tasks import prewarm, run_tasks
from nas.runner.tuner import run_trials

__all__ = ["SearchResult", "start_search", "default_run_name"]

log = logging.getLogger(__name__)

ReadyFn = Callable[[SearchConfig, Path], None]


def default_run_name(config_path: str | Path | None) -> str:
    """``<config stem>-<YYYYmmdd-HHMMSS>``."""
    stem = Path(config_path).stem if config_path else "search"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def start_search(config: SearchConfig, *, name: str | None = None, address: str | None = None,
                 progress: ProgressFn | None = None, config_path: str | Path | None = None,
                 on_ready: ReadyFn | None = None) -> SearchResult:
    """Validate everything, create the run folder, and search until ``search.trials`` trials.

    ``on_ready(config, run_path)`` is called once every check passed, before the first child.

    Raises:
        ConfigError / UsageError: before the run folder is created and before any child starts.
    """
    if name is not None:
        check_run_name(name)  # an empty --name is refused, not ignored
    exp = build_experiment(config)
    name = name or config.name or default_run_name(config_path)
    # resolved once, here: every path handed to Ray's workers (whose working folder is not
    # this one) is absolute; a link the user put on the way stays theirs
    results_dir = Path(config.results_dir).absolute()
    path = RunDir.new_path(results_dir, name)
    resolved = config.to_dict()
    resolved["name"] = name
    resolved["space"]["options"] = dict(exp.space.options)  # sized for the dataset
    exp = exp.with_config(parse_config(resolved))
    check_named_supernet(exp)  # a reused supernet fits the space and data (before Ray starts)
    trackers = _trackers(exp, path)
    with RayOutput() as output:
        session = _start_ray(exp, address, path)
        run = None
        try:
            if config.auto_target:
                exp, resolved = _measure_target(exp, resolved, progress)
            run = RunDir.create(results_dir, name, resolved, lock="search")
            if exp.controller.warm_sources:  # what the search was warm-started from
                run.write_meta({"warm_start": [s.summary()
                                               for s in exp.controller.warm_sources]})
            output.move_to(run.path / LOG_NAME)
            return _search(run, exp, session, progress, on_ready, trackers)
        finally:
            session.stop()
            if run is not None:
                run.unlock()


def _start_ray(exp: Experiment, address: str | None, path: Path) -> RaySession:
    """Start or join Ray, with this driver's marker; check the cluster can place the trials."""
    from nas.runner.preflight import check_cluster

    config = exp.config
    extra = {}
    if config.latency_service and "latency_device" not in (config.ray.resources or {}):
        extra["latency_device"] = 1.0  # the local Ray holds the target device
    os.environ[MARKER] = new_marker()
    began = segment_clock()  # before any Ray process starts: the bound on their start times
    session = start_ray(config.ray, address=address, run_path=path, resources=extra)
    session.began = began
    try:
        check_cluster(config, exp.settings)
    except BaseException:
        session.stop()
        raise
    if config.search.executor == "tasks":  # the workers import while the driver gets ready
        session.warming = prewarm(config.search)
    return session


def _measure_target(exp: Experiment, resolved: dict[str, Any],
                    view: ProgressFn | None = None) -> tuple[Experiment, dict]:
    """``reward.target: auto`` resolved by measuring sampled children (the number is stored),
    each shown as it is measured (like ``view``)."""
    from nas.runner.calibrate import auto_target

    payload = trial_payload(exp.space, exp.settings, latency_service=exp.config.latency_service)
    target = auto_target(exp, payload, view=view)
    resolved = {**resolved, "reward": {**resolved["reward"], "target": target}}
    return exp.with_config(parse_config(resolved)), resolved


def _trackers(exp: Experiment, path: Path) -> Any:
    """The experiment trackers of ``logging:`` (checked now, before anything starts), or None."""
    settings = exp.config.logging
    if not settings.tensorboard and not settings.mlflow:
        return None
    from nas.runner.trackers import Trackers

    return Trackers.create(settings, path, exp.config.to_dict())


def _search(run: RunDir, exp: Experiment, session: RaySession, progress_fn: ProgressFn | None,
            on_ready: ReadyFn | None, trackers: Any = None) -> SearchResult:
    records = run.trials()
    segment = _begin_segment(run, session)
    if on_ready is not None:
        on_ready(exp.config, run.path)
    search_s, remeasured, stopped = 0.0, [], None
    try:
        actors = _actors(run, exp, session)  # keep the handles: named actors live meanwhile
        exp, supernet = prepare_supernet(run, exp, local=session.local, view=progress_fn)
        payload = trial_payload(exp.space, exp.settings, weight_store=actors.get("weights"),
                                latency_service=exp.config.latency_service,
                                activity=activity_dir(run_tag(run.path)), supernet=supernet)
        searcher = _searcher(run, exp, records, progress_fn, trackers)
        if progress_fn is not None:
            progress_fn(searcher.progress)  # shown at once, before the first child reports
        begin = time.perf_counter()
        if exp.config.search.executor == "tasks":
            run_tasks(searcher, payload, search=exp.config.search, segment=segment)
        else:
            run_trials(searcher, payload, run=run, segment=segment, search=exp.config.search,
                       epochs=exp.settings.train.epochs)
        search_s = time.perf_counter() - begin
        stopped = searcher.stopped
        _close(progress_fn)  # the search's view ends here; the re-measurement shows its own
        remeasured = remeasure_at_end(run, exp, actors, payload["activity"], view=progress_fn)
        if searcher.keeper is not None and budgeted(run.trials()) >= exp.config.search.trials:
            searcher.keeper.finalize(final_ranking(run, exp))
        del actors
    finally:
        _close(progress_fn, trackers)
        session.stop()
        remove_activity_dir(run.path)  # this node's quiet-window folder: nothing uses it now
        crash_point("after_trials")
        run.drop_tune_pickles()
        _finish(run, exp.config.search.trials)
    result = search_result(run, exp.config.search.trials, session.startup_s, search_s)
    result.remeasured, result.stopped = remeasured, stopped
    return result


def _actors(run: RunDir, exp: Experiment, session: RaySession) -> dict[str, Any]:
    """The latency service and where children send their weights (``search.keep_weights``):
    straight into the run folder on this node, through the weight-store actor from others (a
    joined cluster only; a local Ray has no other node)."""
    actors: dict[str, Any] = {}
    if exp.config.latency_service:
        from nas.runner.latency_service import start_latency_service

        actors["latency"] = start_latency_service(num_cpus=exp.settings.latency.threads)
    if exp.config.search.keep_weights > 0:
        from nas.runner.weights import incoming_dir, start_weight_store

        name = None if session.local else f"mnas-weights-{uuid.uuid4().hex[:12]}"
        if name is not None:
            actors["weights_handle"] = start_weight_store(run.path, name)
        actors["weights"] = {"dir": str(incoming_dir(run.path)), "store": name,
                             "node": ray.get_runtime_context().get_node_id()}
    return actors


def _close(*things: Any) -> None:
    """Close the progress view and the trackers (whatever has a ``close``)."""
    for thing in things:
        close = getattr(thing, "close", None)
        if close is not None:
            close()


def _begin_segment(run: RunDir, session: RaySession) -> int:
    """Record a new segment and this driver's Ray in ``run.json``: its token, its processes
    (hints), and ``ray_segment`` (when it began, this folder's identity, this driver)."""

    segment = int(run.meta().get("segments", 0)) + 1
    marker = os.environ.get(MARKER) if session.local else None
    run.write_meta({"status": "running", "segments": segment, "driver_pid": os.getpid(),
                    "ray_temp_dir": session.temp_dir, "ray_address": session.address,
                    "ray_marker": marker, "ray_pids": snapshot(marker) if marker else None,
                    "ray_segment": segment_record(run.path, session.began),
                    "ray_startup_s": round(session.startup_s, 3)})
    return segment


def _searcher(run: RunDir, exp: Experiment, records: list[TrialRecord],
              progress_fn: ProgressFn | None, trackers: Any = None) -> ControllerSearcher:
    """The Tune searcher over the experiment's controller, resuming the run's progress."""
    from nas.runner.weights import WeightKeeper

    search = exp.config.search
    remaining = search.trials - budgeted(records)
    progress = SearchProgress(total=search.trials, done=budgeted(records),
                              done_at_start=budgeted(records),
                              rejected=count(records, TrialStatus.REJECTED),
                              failed=count(records, TrialStatus.FAILED),
                              pruned=count(records, TrialStatus.PRUNED),
                              concurrency=search.concurrency, epochs=exp.settings.train.epochs)
    progress.best = best_of(records)
    progress.started_at = time.time()
    return ControllerSearcher(exp.controller, run,
                              pending=exp.controller.outstanding()[: max(0, remaining)],
                              max_new=remaining, record_fn=make_record, progress=progress,
                              on_progress=progress_fn, records=records, dedup=search.dedup,
                              max_repeats=search.max_repeats, trackers=trackers,
                              keeper=WeightKeeper(run.path, search.keep_weights, records,
                                                  margin=_margin(exp)),
                              constraints=exp.config.constraints, budget=search.trials,
                              batch=search.batch_setting, concurrency=search.concurrency,
                              prefilter=_prefilter(exp, records),
                              batches=search.executor == "tasks")


def _prefilter(exp: Experiment, records: list[TrialRecord]) -> Any:
    """The zero-cost pre-filter of ``search.prefilter`` (None: off), its quantile rebuilt from
    the scores the run's records store."""
    settings = exp.config.search.prefilter
    if not settings:
        return None
    from nas.evaluation.prefilter import ProxyFilter

    metric = f"zc_{settings['proxy']}"
    seen = [r.metrics[metric] if isinstance(r.metrics.get(metric), int | float) else -math.inf
            for r in records if metric in r.metrics]
    return ProxyFilter(exp.space, exp.dataset, seed=exp.settings.train.seed, seen=seen,
                       **settings)


def _margin(exp: Experiment) -> int:
    """Weights kept beyond ``search.keep_weights`` while the finalists may still be reordered."""
    search = exp.config.search
    return search.remeasure_top if exp.settings.latency.mode == "measure" else 0


def _finish(run: RunDir, target: int) -> None:
    """``trials.parquet`` first, then the status: a run marked complete always has both."""
    run.write_parquet()
    done = budgeted(run.trials())
    run.write_meta({"status": "complete" if done >= target else "interrupted",
                    "driver_pid": None})
