"""Resuming a run folder: lock, read and check every file, stop what a dead driver left, go on.

A resume locks the folder first (one writer; a config naming code from outside mnas is refused
before even that, unless the caller trusts it), then reads and checks every file in it,
restores the controller (or rebuilds it from ``trials.jsonl``), stops the Ray processes a dead
driver of this very folder left behind (:mod:`nas.runner.strays`), and continues the search with
the driver's own segment loop (:mod:`nas.runner.driver`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nas._faults import crash_point
from nas.config import SearchConfig, parse_config
from nas.errors import UsageError
from nas.experiment import Experiment, build_experiment
from nas.records import TrialRecord, budgeted
from nas.registry import code_names, names_from, untrusted_error
from nas.results import RunDir
from nas.runner.driver import ReadyFn, _finish, _search, _start_ray, _trackers
from nas.runner.output import LOG_NAME, RayOutput
from nas.runner.result import SearchResult, search_result
from nas.runner.search import ProgressFn, _metric_value
from nas.runner.strays import cleanup_plan, kill_stray_ray, recorded_pids
from nas.search.controller import Controller

__all__ = ["resume_search"]

log = logging.getLogger(__name__)


def resume_search(run_path: str | Path, *, address: str | None = None,
                  progress: ProgressFn | None = None, rebuild_state: bool = False,
                  on_ready: ReadyFn | None = None, trust_code: bool = False) -> SearchResult:
    """Continue a run folder to its configured number of trials from the saved controller state.

    ``rebuild_state`` replays ``trials.jsonl`` into a fresh controller (and rewrites ``run.json``)
    instead of loading ``controller.json``: the repair for a lost or corrupt state.
    ``trust_code`` imports the ``module:attr`` names of the folder's ``config.yaml`` (refused
    otherwise: the folder may come from someone else).
    """
    run = RunDir.open(Path(run_path).absolute())  # workers run elsewhere: absolute paths only
    _check_trust(run, trust_code)  # before the lock: a refusal writes nothing
    run.lock("resume")
    try:
        # the saved controller state holds the warm-start sources: read them again only to
        # rebuild a lost state
        exp = _experiment(run, trust_code,
                          warm=rebuild_state or not run.controller_path.exists())
        controller, target = exp.controller, exp.config.search.trials
        if run.repair_trials():
            log.warning("%s: dropped a torn last line of trials.jsonl", run.trials_path)
        records = run.trials()
        penalty = exp.config.constraints.penalty
        if rebuild_state:
            _clean_strays(run, unreadable_ok=True)  # before the rebuild rewrites run.json
            _rebuild(run, controller, records, penalty)
        else:
            _restore(run, controller, records, penalty)
            _clean_strays(run)
        if budgeted(records) >= target:
            _finish(run, target)
            return search_result(run, target, 0.0, 0.0)
        crash_point("before_ray")
        trackers = _trackers(exp, run.path)
        with RayOutput(run.path / LOG_NAME):
            session = _start_ray(exp, address, run.path)
            try:
                return _search(run, exp, session, progress, on_ready, trackers)
            finally:
                session.stop()
    finally:
        run.unlock()


def _check_trust(run: RunDir, trust_code: bool) -> None:
    """Every ``module:attr`` name of the run's config refused at once unless ``trust_code``
    (the folder may come from someone else)."""
    names = code_names(run.read_config())
    if names and not trust_code:
        raise untrusted_error(names, run.config_path)


def _experiment(run: RunDir, trust_code: bool, warm: bool = True) -> Experiment:
    """The run's experiment, its names read from its ``config.yaml`` (see :func:`_check_trust`)."""
    config = _read_config(run)
    with names_from(run.config_path, trust_code=trust_code), _naming(run.config_path):
        return build_experiment(config, warm=warm)


def _read_config(run: RunDir) -> SearchConfig:
    with _naming(run.config_path):
        return parse_config(run.read_config())


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A usage error about the run's config names the file it came from."""
    try:
        yield
    except UsageError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise UsageError(f"{path}: {exc}", params=exc.params) from None


def _restore(run: RunDir, controller: Controller, records: list[TrialRecord],
             penalty: float | None = None) -> None:
    """Load ``controller.json`` and check it agrees with the trials store."""
    run.meta()  # a corrupt run.json fails here, naming the fix
    fix = f"rebuild it from trials.jsonl with `nas resume {run.path} --rebuild-state`"
    try:
        state = run.load_controller_state()
    except UsageError as exc:
        raise UsageError(f"{exc}; {fix}") from None
    if state is None:
        if records:
            raise UsageError(f"{run.controller_path} is missing but trials.jsonl holds "
                             f"{len(records)} trials; {fix}")
        return
    try:
        controller.load_state_dict(state)
    except UsageError as exc:
        raise UsageError(f"{run.controller_path}: {exc}; {fix}") from None
    unknown = [r.trial_id for r in records if r.trial_id >= controller.num_asked]
    if unknown:
        raise UsageError(f"{run.controller_path} is older than trials.jsonl (trial "
                         f"{unknown[0]} was never proposed by it); {fix}")
    _reconcile(controller, records, penalty)


def _rebuild(run: RunDir, controller: Controller, records: list[TrialRecord],
             penalty: float | None = None) -> None:
    """Replay every stored trial into the fresh ``controller``; rewrite the bookkeeping."""
    space = controller.space
    for record in sorted(records, key=lambda r: r.step or 0):
        try:
            arch = space.validate(record.arch)
        except UsageError as exc:
            raise UsageError(f"{run.trials_path}: trial {record.trial_id}: {exc}") from None
        controller.replay(record.trial_id, arch, _metric_value(controller, record, penalty))
    run.save_controller(controller)
    try:
        segments = int(run.meta().get("segments", 0))
    except UsageError:
        segments = len(list(run.tune_dir.glob("segment-*"))) if run.tune_dir.exists() else 0
    run.reset_meta({"status": "interrupted", "segments": segments, "driver_pid": None,
                    "rebuilt_at": time.time()})
    log.warning("rebuilt the controller state from %d trials of %s", len(records),
                run.trials_path)


def _reconcile(controller: Controller, records: list[TrialRecord],
               penalty: float | None = None) -> None:
    """Tell proposals that finished but whose tell was not saved (crash between the two)."""
    by_id = {r.trial_id: r for r in records}
    for proposal in controller.outstanding():
        record = by_id.get(proposal.id)
        if record is not None and record.arch_key == proposal.arch.key:
            controller.tell(proposal, _metric_value(controller, record, penalty))


def _clean_strays(run: RunDir, unreadable_ok: bool = False) -> None:
    """Stop the Ray processes a dead driver of this very folder left behind (lock held).

    By the rule of :mod:`nas.runner.strays`: only when ``run.json`` records this folder, this
    boot and a driver no longer running (else one warning, and nothing is stopped); then the
    processes carrying the recorded token and their Ray descendants started since the segment
    began. The recorded pids are hints, never authority. ``unreadable_ok``: a ``run.json`` that
    cannot be read (the reason for a rebuild) stops nothing instead of raising.
    """
    if not run.locked:
        return
    try:
        meta = run.meta()
    except UsageError:
        if not unreadable_ok:
            raise
        return
    plan = cleanup_plan(meta, run.path)
    if plan.why:
        log.warning("%s: %s", run.path, plan.why)
    if plan.marker is None:
        return
    killed = kill_stray_ray(plan.marker, since=plan.since,
                            hints=recorded_pids(meta.get("ray_pids")))
    if killed:
        log.warning("stopped %d Ray processes left behind by an earlier driver", killed)
