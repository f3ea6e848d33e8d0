"""Driver-side search logic without a Ray cluster: records, the Searcher adapter, reconciling."""

from __future__ import annotations

import json
import math

import pytest

import nas
from nas.records import TrialRecord, TrialStatus
from nas.results import RunDir
from nas.runner.resume import _reconcile
from nas.runner.search import ControllerSearcher, SearchProgress, make_record
from nas.testing.fixtures import ToySpace


@pytest.fixture
def space():
    return ToySpace()


@pytest.fixture
def controller(space):
    return nas.CONTROLLERS.create("evolution", space=space, seed=3, population_size=3,
                                  sample_size=2)


def final(record):
    return {"final": True, "record_json": json.dumps(record), "val_accuracy": 0.0}


def test_make_record_complete_failed_pruned(controller):
    p = controller.ask()
    ok = make_record(p, "t1", final({"status": "complete", "accuracy": 0.9, "latency_ms": 2.0,
                                     "params": 10, "macs": 20, "reward": 0.88,
                                     "timings": {"train_s": 1.0}, "node": {"node_id": "a"}}), False)
    assert ok.status is TrialStatus.COMPLETE and ok.reward == 0.88 and ok.metrics["params"] == 10
    assert ok.trial_id == p.id and ok.arch_key == p.arch.key and ok.node["node_id"] == "a"
    failed = make_record(p, "t1", final({"status": "failed", "error": "loss is nan"}), False)
    assert failed.status is TrialStatus.FAILED and failed.error == "loss is nan"
    nan_acc = make_record(p, "t1", final({"status": "complete", "accuracy": math.nan,
                                          "reward": 1.0}), False)
    assert nan_acc.status is TrialStatus.FAILED and "NaN" in nan_acc.error
    assert nan_acc.reward is None
    pruned = make_record(p, "t1", {"final": False, "val_accuracy": 0.4, "epoch": 1}, False)
    assert pruned.status is TrialStatus.PRUNED and pruned.metrics["accuracy"] == 0.4
    crashed = make_record(p, "t1", None, True)
    assert crashed.status is TrialStatus.FAILED and "worker failed" in crashed.error


def test_searcher_asks_tells_and_stores(tmp_path, controller):
    run = RunDir.create(tmp_path, "r", {"search": {"trials": 3}})
    progress = SearchProgress(total=3)
    searcher = ControllerSearcher(controller, run, pending=[], max_new=3, record_fn=make_record,
                                  progress=progress)
    configs = [searcher.suggest(f"t{i}") for i in range(3)]
    assert searcher.suggest("t3") is None  # budget handed out, children in flight
    assert [c["proposal_id"] for c in configs] == [0, 1, 2]
    assert progress.running == 3
    # finish out of order; one fails
    searcher.on_trial_complete("t2", final({"status": "complete", "accuracy": 0.8, "reward": 0.8}))
    searcher.on_trial_complete("t0", final({"status": "failed", "error": "boom"}))
    searcher.on_trial_complete("t1", final({"status": "complete", "accuracy": 0.9, "reward": 0.95}))
    records = run.trials()
    assert [r.trial_id for r in records] == [2, 0, 1]
    assert [r.step for r in records] == [1, 2, 3]
    assert progress.done == 3 and progress.failed == 1 and progress.running == 0
    assert progress.best["reward"] == 0.95 and progress.best["trial_id"] == 1
    assert searcher.suggest("t4") == ControllerSearcher.FINISHED
    state = run.load_controller_state()
    assert state["num_told"] == 3 and state["outstanding"] == []


def test_pending_proposals_are_rerun_first(tmp_path, space, controller):
    first = [controller.ask() for _ in range(2)]
    run = RunDir.create(tmp_path, "r", {})
    searcher = ControllerSearcher(controller, run, pending=first, max_new=3,
                                  record_fn=make_record, progress=SearchProgress(total=3))
    ids = [searcher.suggest(f"t{i}")["proposal_id"] for i in range(3)]
    assert ids == [0, 1, 2]


def test_reconcile_tells_recorded_but_untold(controller):
    p = controller.ask()
    q = controller.ask()
    record = TrialRecord(trial_id=p.id, arch_key=p.arch.key, arch=dict(p.arch.items()),
                         status=TrialStatus.COMPLETE, reward=0.7, metrics={"accuracy": 0.7})
    _reconcile(controller, [record])
    assert [o.id for o in controller.outstanding()] == [q.id]
    assert controller.num_told == 1


def test_impossible_numbers_from_an_evaluator_fail_the_child_and_are_never_stored(controller):
    """An accuracy in percent (a custom evaluator's slip) is not a score: the child fails, naming
    the number, and the stored metrics read back (every read checks them)."""
    p = controller.ask()
    record = make_record(p, "t1", final({"status": "complete", "accuracy": 93.5,
                                         "latency_ms": 2.0, "params": 10, "reward": 0.9}), False)
    assert record.status is TrialStatus.FAILED and record.reward is None
    assert "accuracy=93.5: must be a number in [0, 1]" in record.error
    assert "accuracy" not in record.metrics and record.metrics["latency_ms"] == 2.0
    assert TrialRecord.from_dict(record.to_dict()).status is TrialStatus.FAILED
    bad_latency = make_record(p, "t1", final({"status": "failed", "error": "boom",
                                              "latency_ms": -1.0}), False)
    assert "latency_ms" not in bad_latency.metrics and bad_latency.error == "boom"


def test_children_at_chance_are_counted_and_flagged(tmp_path, controller):
    run = RunDir.create(tmp_path, "r", {"search": {"trials": 2}})
    progress = SearchProgress(total=2)
    searcher = ControllerSearcher(controller, run, pending=[], max_new=2, record_fn=make_record,
                                  progress=progress)
    searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.on_trial_complete("t0", final({"status": "complete", "accuracy": 0.12,
                                            "chance_accuracy": 0.15, "reward": 0.12}))
    assert progress.at_chance == 1 and progress.best["at_chance"] is True
    searcher.on_trial_complete("t1", final({"status": "complete", "accuracy": 0.9,
                                            "chance_accuracy": 0.15, "reward": 0.9}))
    assert progress.at_chance == 1 and progress.best["at_chance"] is False
    from nas.runner.progress import best_text, progress_line

    assert "at chance 1 " in progress_line(progress)
    assert "AT CHANCE" in best_text({**progress.best, "at_chance": True})


def test_a_score_other_than_accuracy_is_kept_and_checked(controller):
    """A zero-cost child has no accuracy: its score (``reward.accuracy_key``) and its proxies
    are kept, and a missing score fails it; a dotted key reads a nested metric."""
    p = controller.ask()
    zc = {"status": "complete", "zc_score": 3.5, "zc_nwot": 800.0, "zc_synflow": 1e30,
          "params": 10, "reward": 3.5, "reward_config": {"accuracy_key": "zc_score"}}
    record = make_record(p, "t1", final(zc), False)
    assert record.status is TrialStatus.COMPLETE and record.reward == 3.5
    assert record.metrics["zc_score"] == 3.5 and record.metrics["zc_nwot"] == 800.0
    lost = make_record(p, "t1", final({**zc, "zc_score": None}), False)
    assert lost.status is TrialStatus.FAILED and "zc_score is NaN or missing" in lost.error
    nested = {"status": "complete", "accuracy": 0.8, "supernet": {"val_likelihood": 0.4},
              "reward": 0.4, "reward_config": {"accuracy_key": "supernet.val_likelihood"}}
    assert make_record(p, "t1", final(nested), False).status is TrialStatus.COMPLETE
    broken = {**nested, "supernet": {"val_likelihood": float("nan")}}
    assert make_record(p, "t1", final(broken), False).status is TrialStatus.FAILED


def test_a_child_whose_worker_died_runs_once_more_then_fails(tmp_path, controller):
    """Tune's retries of a dead worker can be spent before the cluster knows a node is gone:
    the child is handed out once more in a new trial (nothing lost), then recorded failed."""
    run = RunDir.create(tmp_path, "r", {"search": {"trials": 2}})
    searcher = ControllerSearcher(controller, run, pending=[], max_new=2, record_fn=make_record,
                                  progress=SearchProgress(total=2))
    first = searcher.suggest("t0")
    searcher.suggest("t1")
    searcher.on_trial_complete("t0", None, error=True)
    assert run.trials() == [] and searcher.progress.running == 1
    again = searcher.suggest("t2")
    assert again["proposal_id"] == first["proposal_id"]  # the same child, first in line
    searcher.on_trial_complete("t2", None, error=True)
    searcher.on_trial_complete("t1", final({"status": "complete", "accuracy": 0.9,
                                            "reward": 0.9}))
    records = {r.trial_id: r for r in run.trials()}
    assert records[first["proposal_id"]].status is TrialStatus.FAILED and len(records) == 2
    assert searcher.suggest("t3") == ControllerSearcher.FINISHED
