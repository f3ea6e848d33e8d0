"""The search's Searcher: a Ray Tune ``Searcher`` adapter around any controller.

Tune runs it in :mod:`nas.runner.tuner` (``search.executor: tune``) and :mod:`nas.runner.tasks`
drives it with plain Ray tasks (``tasks``). The trainable that runs in the workers is
:mod:`nas.runner.trainable`; a finished child becomes a record in :mod:`nas.runner.tune_record`;
batch sizes come from :mod:`nas.runner.batching`.

The controller lives in the driver. :class:`ControllerSearcher` maps Tune's ``suggest`` to
``controller.ask()`` and a finished child to ``controller.tell()``. A Tune trial carries one child
or, with ``search.batch_children``, a batch of them that its worker evaluates in sequence and
reports as they finish (several at once when the driver was busy). Every finished child is
appended to ``trials.jsonl`` (one fsynced line) before it is told, and the controller state is
saved after the tells of each report, before anything else is asked: a crash loses at most the
children in flight (those running and those still queued in a batch), which a resume re-runs.
Resuming rebuilds the controller from its saved state (not a replay), re-runs the proposals that
were in flight, then asks for new ones.

Tune's experiment checkpoints are never read back (they hold pickles): resuming starts a new
experiment segment from our own JSON state.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from ray.tune.search import Searcher

from nas._fs import write_atomic
from nas.records import TrialRecord, TrialStatus, at_chance, best_of
from nas.results import RunDir
from nas.runner.batching import BatchSizer
from nas.runner.progress import SearchProgress
from nas.runner.rejections import Rejections
from nas.runner.trainable import trial_payload
from nas.runner.tune_record import make_record
from nas.search.controller import Controller, Proposal

__all__ = ["ControllerSearcher", "SearchProgress", "trial_payload", "make_record"]

log = logging.getLogger(__name__)
MAX_FILTERED = 10_000  # proposals the pre-filter may reject in a row before one runs anyway

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


def _child_config(proposal: Proposal, weights_bar: float | None = None) -> dict[str, Any]:
    """What a worker needs of one child (``weights_bar``: :meth:`WeightKeeper.bar`)."""
    config = {"arch": dict(proposal.arch.items()), "proposal_id": proposal.id}
    return config if weights_bar is None else {**config, "weights_bar": weights_bar}


class ControllerSearcher(Searcher):
    """Tune ``Searcher`` adapter around a controller (driver side).

    Args:
        controller: any registered controller, fresh or restored.
        run: the run folder (trials store and controller state).
        pending: proposals to re-run first (in flight when a previous segment stopped).
        max_new: proposals this segment may hand out (pending ones included).
        record_fn: turns (proposal, Tune trial id, result, error flag) into a trial record.
        progress: counters updated on every event.
        on_progress: called with ``progress`` after every finished child.
        records: the run's finished trials so far (what repeated proposals are answered from).
        trackers: experiment trackers (per-epoch and final metrics), or None.
        keeper: files the kept weights of a recorded child (``search.keep_weights``), or None.
        dedup: answer a proposal of an architecture already evaluated (or in flight) from the
            records instead of spending a trial on it; ``max_repeats`` in a row at most.
        constraints: the hard bounds (:class:`nas.constraints.Constraints`): a rejected child
            gives its trial back to the budget, and more than ``max_rejections`` per trial of
            ``budget`` stop the segment (``stopped`` says why).
        budget: the run's ``search.trials`` (what the rejection cap is relative to).
        batch: ``search.batch_children`` as the search uses it: ``"auto"`` or a size (1: one
            child per Tune trial; otherwise every trial carries a batch, of one child or more).
        concurrency: trials running at once (the last children are split over them).
        prefilter: a :class:`nas.evaluation.prefilter.ProxyFilter` (``search.prefilter``): a new
            proposal it filters out is recorded ``rejected`` and the controller asked again.
        batches: every trial carries a batch, whatever ``batch`` (the tasks executor's trials).
    """

    def __init__(self, controller: Controller, run: RunDir, *, pending: list[Proposal],
                 max_new: int, record_fn: Callable[..., TrialRecord],
                 progress: SearchProgress, on_progress: ProgressFn | None = None,
                 records: list[TrialRecord] | None = None, dedup: bool = True,
                 max_repeats: int = 100, trackers: Any = None, keeper: Any = None,
                 constraints: Any = None, budget: int | None = None, batch: int | str = 1,
                 concurrency: int = 1, prefilter: Any = None, batches: bool = False) -> None:
        super().__init__(metric=None, mode=None)
        self.controller = controller
        self.run = run
        self._pending = list(pending)
        self._budget = max_new  # children still to hand out
        self._live: dict[str, Proposal] = {}  # Tune trial -> its one child
        self._batches: dict[str, dict[int, Proposal]] = {}  # Tune trial -> children not recorded
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
        self._sizer = BatchSizer(batch, concurrency, records or [], always=batches)
        self._requeued: set[int] = set()  # proposals whose dead worker they were run again for
        self._prefilter = prefilter
        self._proxy: dict[int, float] = {}  # handed-out proposal -> its pre-filter score
        self.stopped: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its searcher into ``tuner.pkl`` (never read back: mnas resumes from
        JSON); the live view and the trackers hold locks and files, so they stay out."""
        state = self.__dict__.copy()
        state["_on_progress"] = state["trackers"] = None
        return state

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._budget <= 0:
            return self._spent()
        proposals = [self._hand_out() for _ in range(self._sizer.size(self._budget))]
        self.progress.live[trial_id] = self._live_entry(proposals[0])
        bar = self.keeper.bar() if self.keeper is not None else None
        if not self._sizer.batching:
            self._live[trial_id] = proposals[0]
            return _child_config(proposals[0], bar)
        self._batches[trial_id] = {p.id: p for p in proposals}
        return {"children": [_child_config(p, bar) for p in proposals]}

    def _spent(self) -> str | None:
        """The budget is handed out: finished, unless a child in flight may still be rejected
        and give its trial back (then nothing now, and Tune asks again)."""
        if self._live or self._batches:  # a rejection, or a dead worker, may give one back
            return None
        return Searcher.FINISHED

    def _hand_out(self) -> Proposal:
        self._budget -= 1
        proposal = self._next_proposal()
        self._parked.setdefault(proposal.arch.key, [])
        self.progress.running += 1
        return proposal

    def _live_entry(self, proposal: Proposal) -> dict[str, Any]:
        return {"trial_id": proposal.id, "arch_key": proposal.arch.key, "node": None, "epoch": 0,
                "epochs": self.progress.epochs, "val_accuracy": None, "started": time.time(),
                "epoch_at": []}

    def _in_flight(self, key: str) -> bool:
        """Whether a child of architecture ``key`` is running or queued in a batch."""
        return any(p.arch.key == key for p in self._live.values()) or any(
            p.arch.key == key for batch in self._batches.values() for p in batch.values())

    def _next_proposal(self) -> Proposal:
        """The next proposal to run: a new one the pre-filter (if any) lets through; those it
        filters out are recorded ``rejected`` (with their score) and told."""
        for _ in range(MAX_FILTERED):
            proposal, fresh = self._next_unique()
            if self._prefilter is None or not fresh:
                return proposal
            score, reason = self._prefilter.verdict(proposal.arch)
            if reason is None:
                self._proxy[proposal.id] = score
                return proposal
            self._filter_out(proposal, score, reason)
        return proposal

    def _filter_out(self, proposal: Proposal, score: float, reason: str) -> None:
        """Record a proposal the pre-filter rejected (never trained) and tell the controller."""
        record = self._prefilter.record(proposal, score, reason, self.controller.num_told + 1)
        self.run.append_trial(record)
        self.controller.tell(proposal, _metric_value(self.controller, record, self._penalty))
        self.run.save_controller(self.controller)
        self._known[proposal.arch.key] = record
        self.progress.rejected += 1
        if self._on_progress is not None:
            self._on_progress(self.progress)

    def _next_unique(self) -> tuple[Proposal, bool]:
        """The next proposal and whether it is new (not a pending one run again); repeats of
        evaluated or running architectures are answered from the records (or parked until the
        running one finishes), ``max_repeats`` at most."""
        repeats, fresh = 0, True
        for attempt in range(self._max_repeats + 1):
            fresh = not self._pending
            proposal = self._pending.pop(0) if self._pending else self.controller.ask()
            key = proposal.arch.key
            if not self._dedup or attempt == self._max_repeats or proposal.id in self._requeued:
                break  # (a child run again after its worker died is no repeat)
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
        return proposal, fresh

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """A report of a running trial: an epoch of its child, or a batch's finished children
        and the epochs of its running one."""
        if trial_id in self._batches:
            self._batch_report(trial_id, result, epochs=True)
            return
        proposal = self._live.get(trial_id)
        if proposal is not None and not result.get("final"):
            self._epoch(trial_id, proposal, result)

    def _epoch(self, trial_id: str, proposal: Proposal, result: dict[str, Any]) -> None:
        """A per-epoch report of a running child: the live view and the trackers see it."""
        child = self.progress.live.get(trial_id)
        if child is None:
            return
        if child["trial_id"] != proposal.id:  # the next child of a batch
            child.update(self._live_entry(proposal))
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

    def _batch_report(self, trial_id: str, result: dict[str, Any], epochs: bool) -> None:
        """A batch's report: its epochs (``epochs``), then its finished children, each once (a
        batch retried after its worker died runs every child again)."""
        batch = self._batches.get(trial_id, {})
        for event in (result.get("epochs") or []) if epochs else []:
            proposal = batch.get(event.get("proposal_id"))
            if proposal is not None:
                self._epoch(trial_id, proposal, event)
        done = [(batch.pop(c["proposal_id"]), {"final": True, "record_json": c["record_json"]},
                 False) for c in result.get("children") or [] if c.get("proposal_id") in batch]
        self._finish(trial_id, done)
        running = next(iter(batch.values()), None)  # the batch's children run in order
        live = self.progress.live.get(trial_id)
        if running is not None and live is not None and live["trial_id"] != running.id:
            live.update(self._live_entry(running))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """A trial ended: its child is recorded; a batch's children not reported yet fail.

        A child whose worker died (Tune's retries spent: a lost node can spend them before the
        cluster knows the node is gone) is run once more in a new trial before it is recorded
        failed, so losing a node loses no child."""
        if trial_id in self._batches:
            self._batch_report(trial_id, result or {}, epochs=False)
            left = self._batches.pop(trial_id)
            self.progress.live.pop(trial_id, None)
            self._finish(trial_id, [(p, None, True) for p in left.values()
                                    if not self._requeue(p)])
            return
        proposal = self._live.pop(trial_id, None)
        self.progress.live.pop(trial_id, None)
        if proposal is not None and not (error and self._requeue(proposal)):
            self._finish(trial_id, [(proposal, result, error)])

    def _requeue(self, proposal: Proposal) -> bool:
        """Hand ``proposal`` out again (first in line) unless it was requeued before."""
        if proposal.id in self._requeued:
            return False
        self._requeued.add(proposal.id)
        self._pending.insert(0, proposal)
        self._budget += 1
        self.progress.running = max(0, self.progress.running - 1)
        log.warning("trial %s: its worker died; running it again in a new trial", proposal.id)
        return True

    def _finish(self, trial_id: str, done: list[tuple[Proposal, Any, bool]]) -> None:
        """Finished children: each appended to ``trials.jsonl`` and told in turn, then the
        controller state saved once, then weights, trackers and counters."""
        if not done:
            return
        records = [self._store(proposal, trial_id, result, error)
                   for proposal, result, error in done]
        self.run.save_controller(self.controller)
        for record in records:
            if self.keeper is not None:
                self.keeper.settle(record)
            if self.trackers is not None:
                self.trackers.on_trial(record)
            self._sizer.see(record)
            self._count(record)

    def _store(self, proposal: Proposal, trial_id: str, result: Any, error: bool) -> TrialRecord:
        record = self._record_fn(proposal, trial_id, result, error)
        record.step = self.controller.num_told + 1
        score = self._proxy.pop(proposal.id, None)
        if score is not None and self._prefilter is not None:  # a resume rebuilds the quantile
            record.metrics[self._prefilter.metric] = self._prefilter.stored(score)
        self.run.append_trial(record)  # first: a finished child is never lost
        value = _metric_value(self.controller, record, self._penalty)
        self.controller.tell(proposal, value)
        if not self._in_flight(proposal.arch.key):
            for parked in self._parked.pop(proposal.arch.key, []):
                self.controller.tell(parked, value)
        self._known[proposal.arch.key] = record
        return record

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
