"""Driver side of a search: run folder, controller state, Ray session, Tune segments, resume."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.config import SearchConfig, check, parse_config
from nas.controller import Controller
from nas.results import RunDir
from nas.runner.search import (
    ControllerSearcher,
    ProgressFn,
    SearchProgress,
    make_record,
    run_trials,
    trial_payload,
)
from nas.runner.session import start_ray

__all__ = ["SearchResult", "start_search", "resume_search", "default_run_name"]

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """Outcome of :func:`start_search` / :func:`resume_search`."""

    run_dir: Path
    trials: int
    target: int
    failed: int
    best: dict[str, Any] | None
    complete: bool
    ray_startup_s: float = 0.0
    search_s: float = 0.0


def default_run_name(config_path: str | Path | None) -> str:
    """``<config stem>-<YYYYmmdd-HHMMSS>``."""
    stem = Path(config_path).stem if config_path else "search"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def start_search(config: SearchConfig, *, name: str | None = None, address: str | None = None,
                 progress: ProgressFn | None = None,
                 config_path: str | Path | None = None) -> SearchResult:
    """Validate everything, create the run folder, and search until ``search.trials`` trials.

    Raises:
        ConfigError / UsageError: before Ray starts and before the run folder is created.
    """
    space, controller, settings = check(config)
    name = name or config.name or default_run_name(config_path)
    resolved = config.to_dict()
    resolved["name"] = name
    resolved["space"]["options"] = dict(space.options)  # sized for the dataset
    run = RunDir.create(config.results_dir, name, resolved)
    return _search(run, parse_config(resolved), controller, address, progress)


def resume_search(run_path: str | Path, *, address: str | None = None,
                  progress: ProgressFn | None = None) -> SearchResult:
    """Continue a run folder to its configured number of trials from the saved controller state."""
    run = RunDir.open(run_path)
    config = parse_config(run.read_config())
    _, controller, _ = check(config)
    state = run.load_controller_state()
    if state is not None:
        controller.load_state_dict(state)
    if run.repair_trials():
        log.warning("%s: dropped a torn last line of trials.jsonl", run.trials_path)
    return _search(run, config, controller, address, progress)


def _reconcile(controller: Controller, records: list[dict[str, Any]]) -> None:
    """Tell proposals that finished but whose tell was not saved (crash between the two)."""
    from nas.runner.search import _metric_value

    by_id = {r["trial_id"]: r for r in records}
    for proposal in controller.outstanding():
        record = by_id.get(proposal.id)
        if record is not None and record.get("arch_key") == proposal.arch.key:
            controller.tell(proposal, _metric_value(controller, record))


def _search(run: RunDir, config: SearchConfig, controller: Controller, address: str | None,
            progress_fn: ProgressFn | None) -> SearchResult:
    records = run.trials()
    _reconcile(controller, records)
    target = config.search.trials
    remaining = target - len(records)
    pending = controller.outstanding()[: max(0, remaining)]
    progress = SearchProgress(total=target, done=len(records), done_at_start=len(records),
                              failed=sum(r["status"] == "failed" for r in records),
                              pruned=sum(r["status"] == "pruned" for r in records))
    progress.best = _best(records)
    if remaining <= 0:
        _clean_strays(run)
        run.write_meta({"status": "complete", "driver_pid": None})
        return _result(run, target, progress, 0.0, 0.0)
    space, _, settings = check(config)
    meta = run.meta()
    segment = int(meta.get("segments", 0)) + 1
    extra = {}
    if config.latency_service and "latency_device" not in (config.ray.resources or {}):
        extra["latency_device"] = 1.0  # the local Ray holds the target device
    session = start_ray(config.ray, address=address, run_path=run.path, resources=extra)
    run.write_meta({"status": "running", "segments": segment, "driver_pid": os.getpid(),
                    "ray_temp_dir": session.temp_dir, "ray_address": session.address,
                    "ray_startup_s": round(session.startup_s, 3)})
    search_s = 0.0
    try:
        service = None  # keep the handle: the named actor lives as long as it is referenced
        if config.latency_service:
            from nas.runner.latency_service import start_latency_service

            service = start_latency_service(num_cpus=settings.latency.threads)
        payload = trial_payload(space, settings, latency_service=config.latency_service)
        searcher = ControllerSearcher(controller, run, pending=pending, max_new=remaining,
                                      record_fn=make_record, progress=progress,
                                      on_progress=progress_fn, records=records,
                                      dedup=config.search.dedup,
                                      max_repeats=config.search.max_repeats)
        begin = time.perf_counter()
        progress.started_at = time.time()
        run_trials(searcher, payload, run=run, segment=segment, search=config.search,
                   epochs=settings.train.epochs)
        search_s = time.perf_counter() - begin
        del service
    finally:
        session.stop()
        done = len(run.trials())
        run.write_meta({"status": "complete" if done >= target else "interrupted",
                        "driver_pid": None})
        run.write_parquet()
    return _result(run, target, progress, session.startup_s, search_s)


def _clean_strays(run: RunDir) -> None:
    """Stop Ray processes a killed driver of this run left behind."""
    from nas.runner.session import ray_temp_dir
    from nas.runner.strays import kill_stray_ray

    killed = kill_stray_ray(ray_temp_dir(run.path))
    if killed:
        log.warning("stopped %d Ray processes left behind by an earlier driver", killed)


def _best(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    done = [r for r in records if r["status"] == "complete" and r.get("reward") is not None]
    if not done:
        return None
    top = max(done, key=lambda r: r["reward"])
    return {"reward": top["reward"], "trial_id": top["trial_id"],
            "accuracy": top["metrics"].get("accuracy"),
            "latency_ms": top["metrics"].get("latency_ms")}


def _result(run: RunDir, target: int, progress: SearchProgress, startup: float,
            search_s: float) -> SearchResult:
    records = run.trials()
    return SearchResult(run_dir=run.path, trials=len(records), target=target,
                        failed=sum(r["status"] == "failed" for r in records),
                        best=_best(records), complete=len(records) >= target,
                        ray_startup_s=startup, search_s=search_s)
