"""The search on Ray Tune: a Searcher adapter around any controller, records, the Tuner.

The trainable that runs in Tune's workers is :mod:`nas.runner.trainable`.

The controller lives in the driver. :class:`ControllerSearcher` maps Tune's ``suggest`` to
``controller.ask()`` and ``on_trial_complete`` to ``controller.tell()``; after every tell the driver
appends the finished trial to ``trials.jsonl`` and saves the controller state, so a crash loses at
most the trials in flight. Resuming rebuilds the controller from its saved state (not a replay),
re-runs the proposals that were in flight, then asks for new ones.

Tune's own machinery does the rest: ``ConcurrencyLimiter``, ``ASHAScheduler`` over per-epoch
validation accuracy, ``FailureConfig`` (retries when a worker dies), ``reuse_actors=True``, and
storage inside the run folder. Tune's experiment checkpoints are never read back (they hold
pickles): resuming starts a new Tune experiment segment from our own JSON state.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from nas._fs import safe_dir, write_atomic
from nas.records import (
    TrialRecord,
    TrialStatus,
    at_chance,
    best_of,
    metric_problem,
    number_problem,
)
from nas.results import RunDir
from nas.runner.progress import SearchProgress
from nas.runner.rejections import Rejections
from nas.runner.trainable import evaluate_trial, trial_payload
from nas.search.controller import Controller, Proposal

__all__ = ["ControllerSearcher", "SearchProgress", "run_trials", "trial_payload", "make_record"]

log = logging.getLogger(__name__)

ProgressFn = Callable[["SearchProgress"], None]


def _metric_value(controller: Controller, record: TrialRecord,
                  penalty: float | None = None) -> Any:
    """What the controller is told: metrics for metric controllers, else the reward; for a
    rejected child ``penalty`` (``constraints.penalty``) to a reward controller, else a
    failure."""
    if record.status is TrialStatus.REJECTED and penalty is not None and \
            not controller.wants_metrics:
        return penalty
    if not record.complete:
        return None
    if controller.wants_metrics:
        return record.metrics
    return record.reward


class ControllerSearcher(Searcher):
    """Tune ``Searcher`` adapter around a controller (driver side).

    Args:
        controller: any registered controller, fresh or restored.
        run: the run folder (trials store and controller state).
        pending: proposals to re-run first (in flight when a previous segment stopped).
        max_new: proposals this segment may hand out (pending ones included).
        record_fn: turns (proposal, Tune result, error flag) into a trial record.
        progress: counters updated on every event.
        on_progress: called with ``progress`` after every finished trial.
        records: the run's finished trials so far (what repeated proposals are answered from).
        trackers: experiment trackers (per-epoch and final metrics), or None.
        keeper: files the kept weights of a recorded child (``search.keep_weights``), or None.
        dedup: answer a proposal of an architecture already evaluated (or in flight) from the
            records instead of spending a trial on it; ``max_repeats`` in a row at most.
        constraints: the hard bounds (:class:`nas.constraints.Constraints`): a rejected child
            gives its trial back to the budget, and more than ``max_rejections`` per trial of
            ``budget`` stop the segment (``stopped`` says why).
        budget: the run's ``search.trials`` (what the rejection cap is relative to).
    """

    def __init__(self, controller: Controller, run: RunDir, *, pending: list[Proposal],
                 max_new: int, record_fn: Callable[..., TrialRecord],
                 progress: SearchProgress, on_progress: ProgressFn | None = None,
                 records: list[TrialRecord] | None = None, dedup: bool = True,
                 max_repeats: int = 100, trackers: Any = None, keeper: Any = None,
                 constraints: Any = None, budget: int | None = None) -> None:
        super().__init__(metric=None, mode=None)
        self.controller = controller
        self.run = run
        self._pending = list(pending)
        self._budget = max_new
        self._live: dict[str, Proposal] = {}
        self._dedup, self._max_repeats = dedup, max_repeats
        self._known = {r.arch_key: r for r in records or []}
        self._parked: dict[str, list[Proposal]] = {}  # arch key in flight -> repeats waiting
        self._record_fn = record_fn
        self.progress = progress
        self._on_progress = on_progress
        self.trackers, self.keeper = trackers, keeper
        self.constraints = constraints
        self._penalty = getattr(constraints, "penalty", None)
        self._rejections = Rejections(constraints, budget if budget is not None else max_new,
                                      records or [])
        self.stopped: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its searcher into ``tuner.pkl`` (never read back: mnas resumes from
        JSON); the live view and the trackers hold locks and files, so they stay out."""
        state = self.__dict__.copy()
        state["_on_progress"] = state["trackers"] = None
        return state

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._budget <= 0:
            return Searcher.FINISHED
        self._budget -= 1
        proposal = self._next_proposal()
        self._live[trial_id] = proposal
        self._parked.setdefault(proposal.arch.key, [])
        self.progress.running += 1
        self.progress.live[trial_id] = {"trial_id": proposal.id, "arch_key": proposal.arch.key,
                                        "node": None, "epoch": 0, "epochs": self.progress.epochs,
                                        "val_accuracy": None, "started": time.time(),
                                        "epoch_at": []}
        return {"arch": dict(proposal.arch.items()), "proposal_id": proposal.id}

    def _next_proposal(self) -> Proposal:
        """The next proposal to run; repeats of evaluated or running architectures are answered
        from the records (or parked until the running one finishes), ``max_repeats`` at most."""
        repeats = 0
        for attempt in range(self._max_repeats + 1):
            proposal = self._pending.pop(0) if self._pending else self.controller.ask()
            key = proposal.arch.key
            if not self._dedup or attempt == self._max_repeats:
                break
            if key in self._known:
                self.controller.tell(proposal, _metric_value(self.controller, self._known[key],
                                                             self._penalty))
            elif key in self._parked:
                self._parked[key].append(proposal)
            else:
                break
            repeats += 1
        if repeats:
            self.progress.repeats += repeats
            self.run.save_controller(self.controller)
            log.debug("%d repeated proposals answered from the run's records", repeats)
        return proposal

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A per-epoch report of a running child: the live view and the trackers see it."""
        child = self.progress.live.get(trial_id)
        proposal = self._live.get(trial_id)
        if child is None or proposal is None or result.get("final"):
            return
        child.update(epoch=result.get("epoch") or child["epoch"], node=result.get("node"),
                     val_accuracy=result.get("val_accuracy"))
        child["epoch_at"].append(time.time())
        if self.trackers is not None:
            epoch_metrics = {k: result[k] for k in ("val_accuracy", "train_loss", "lr")
                             if k in result}
            self.trackers.on_epoch(proposal.id, proposal.arch.key, dict(proposal.arch.items()),
                                   int(child["epoch"] or 0), epoch_metrics)
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        proposal = self._live.pop(trial_id, None)
        self.progress.live.pop(trial_id, None)
        if proposal is None:
            return
        record = self._record_fn(proposal, trial_id, result, error)
        record.step = self.controller.num_told + 1
        self.run.append_trial(record)  # first: a finished trial is never lost
        value = _metric_value(self.controller, record, self._penalty)
        self.controller.tell(proposal, value)
        if not any(p.arch.key == proposal.arch.key for p in self._live.values()):
            for parked in self._parked.pop(proposal.arch.key, []):
                self.controller.tell(parked, value)
        self._known[proposal.arch.key] = record
        self.run.save_controller(self.controller)
        if self.keeper is not None:
            self.keeper.settle(record)
        if self.trackers is not None:
            self.trackers.on_trial(record)
        self._count(record)

    def _count(self, record: TrialRecord) -> None:
        p = self.progress
        p.running = max(0, p.running - 1)
        if record.status is TrialStatus.REJECTED:  # never trained: its trial is given back
            p.rejected += 1
            self._budget += 1
            self.stopped = self._rejections.add(record)
            if self.stopped is not None:
                self._budget = 0
            if self._on_progress is not None:
                self._on_progress(p)
            return
        self._rejections.see(record)
        p.done += 1
        p.failed += record.status is TrialStatus.FAILED
        if record.status is TrialStatus.FAILED:
            p.last_failure = str(record.error or "unknown").strip().splitlines()[0][:160]
        p.pruned += record.status is TrialStatus.PRUNED
        p.at_chance += record.complete and at_chance(record.metrics)
        if record.started_at and record.finished_at and record.status is not TrialStatus.PRUNED:
            p.child_s.append(record.finished_at - record.started_at)
        reward = record.reward
        if record.complete and reward is not None and (p.best is None or reward > p.best["reward"]):
            p.best = best_of([record])
        if self._on_progress is not None:
            self._on_progress(p)

    def save(self, checkpoint_path: str) -> None:
        """Tune's checkpoint hook: our state is in the run folder already (JSON, not pickle)."""
        state = {"controller_state": str(self.run.controller_path)}
        write_atomic(checkpoint_path, json.dumps(state))  # never through a link

    def restore(self, checkpoint_path: str) -> None:
        """Not used: ``nas resume`` restores from the run folder's JSON state."""
        raise NotImplementedError("resume with `nas resume RUN_DIR`")


# -- records -----------------------------------------------------------------------------------
RAW_METRICS = ("accuracy", "latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread",
               "latency_n", "params", "macs", "chance_accuracy")


def make_record(proposal: Proposal, tune_id: str, result: dict[str, Any] | None, error: bool,
                ) -> TrialRecord:
    """The ``trials.jsonl`` record of one finished Tune trial."""
    base = {"trial_id": proposal.id, "tune_trial_id": tune_id, "arch_key": proposal.arch.key,
            "arch": dict(proposal.arch.items())}
    result = result or {}
    if error or not result:
        return TrialRecord(**base, status=TrialStatus.FAILED, error="the trial's worker failed "
                           "(see the Tune logs in the run folder's tune/ directory)")
    if not result.get("final"):
        return TrialRecord(**base, status=TrialStatus.PRUNED, metrics={
            "accuracy": result.get("val_accuracy"), "epochs": result.get("epoch")})
    raw = json.loads(result["record_json"])
    metrics = {k: raw.get(k) for k in RAW_METRICS if k in raw}
    for extra in ("train", "dataset", "latency_source", "latency_conditions", "constraint",
                  "supernet"):
        if extra in raw:
            metrics[extra] = raw[extra]
    status, reason = TrialStatus.parse(raw.get("status")), raw.get("error")
    problem = metric_problem(metrics)
    if status is TrialStatus.COMPLETE and not _finite(metrics.get("accuracy")):
        status, reason = TrialStatus.FAILED, "accuracy is NaN or missing"
    elif problem and status is TrialStatus.COMPLETE:  # e.g. a custom evaluator's percent
        status, reason = TrialStatus.FAILED, f"the evaluator reported {problem}"
    if problem:  # what is stored always reads back (nas.records checks every number)
        metrics = {k: v for k, v in metrics.items() if number_problem(k, v) is None}
    reward = raw.get("reward") if status is TrialStatus.COMPLETE else None
    keep_error = status in (TrialStatus.FAILED, TrialStatus.REJECTED)
    return TrialRecord(
        **base, status=status, error=reason if keep_error else None,
        metrics=metrics, reward=reward if _finite(reward) else None,
        timings=raw.get("timings") or {}, device=raw.get("device") or {},
        node=raw.get("node") or {}, latency_by=raw.get("latency_by"),
        started_at=raw.get("started_at"), finished_at=raw.get("finished_at"))


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


# -- the Tuner ---------------------------------------------------------------------------------
def run_trials(searcher: ControllerSearcher, payload: dict[str, Any], *, run: RunDir,
               segment: int, search: Any, epochs: int) -> Any:
    """Run one Tune experiment segment until the searcher's budget is used up."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = None
    if search.scheduler == "asha":
        scheduler = ASHAScheduler(metric="val_accuracy", mode="max", time_attr="training_iteration",
                                  max_t=max(epochs, 1) + 1, grace_period=search.grace_period,
                                  reduction_factor=search.reduction_factor)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing
    # Tune writes into RUN/tune/segment-N: neither may be a link (refused before Tune starts)
    safe_dir(run.tune_dir, root=run.path)
    safe_dir(run.tune_dir / f"segment-{segment}", root=run.path, create=False)
    resources = {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(evaluate_trial, payload=payload),
                                    resources)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=search.concurrency),
            scheduler=scheduler, reuse_actors=True,
            # with bounds, rejected children give their trials back: the searcher ends the run
            num_samples=-1 if getattr(searcher.constraints, "active", False) else searcher._budget),
        run_config=tune.RunConfig(
            name=f"segment-{segment}", storage_path=str(run.tune_dir.resolve()),
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
            verbose=0),
    )
    return tuner.fit()
