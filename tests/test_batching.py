"""Batches of cheap children (``search.batch_children``): sizes, and the searcher recording,
telling and counting every child of a batch on its own; then in real searches on Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nas
from nas.config import SearchSettings
from nas.constraints import Constraints
from nas.errors import ConfigError
from nas.records import TrialRecord, TrialStatus
from nas.results import RunDir
from nas.runner.batching import AUTO_BATCH_S, AUTO_MAX, BatchSizer
from nas.runner.search import ControllerSearcher, SearchProgress, make_record
from nas.testing.fixtures import TOY_SEARCH, ToySpace


def complete(seconds, trial_id=0):
    return TrialRecord(trial_id=trial_id, arch_key="k", arch={}, status=TrialStatus.COMPLETE,
                       metrics={"accuracy": 0.5}, reward=0.5, timings={"total_s": seconds})


def test_auto_batches_about_two_seconds_of_children_and_splits_the_last_ones():
    sizer = BatchSizer("auto", concurrency=2)
    assert sizer.batching and sizer.size(100) == 1  # nothing measured yet: one child
    for _ in range(5):
        sizer.see(complete(0.1))
    assert sizer.size(100) == round(AUTO_BATCH_S / 0.1) == 20
    assert sizer.size(7) == 4  # 7 left over 2 slots: at most ceil(7 / 2)
    assert sizer.size(1) == 1 and sizer.size(0) == 0
    failed = TrialRecord(trial_id=9, arch_key="k", arch={}, status=TrialStatus.FAILED,
                         timings={"total_s": 1e-4})
    sizer.see(failed)  # a quick failure says nothing about what a child costs
    assert sizer.size(100) == 20
    fast = BatchSizer("auto", records=[complete(1e-5, i) for i in range(3)])  # a resumed run
    assert fast.size(10_000) == AUTO_MAX
    slow = BatchSizer("auto", records=[complete(30.0)])
    assert slow.size(100) == 1


def test_a_fixed_size_is_a_maximum_and_one_means_no_batches():
    assert BatchSizer(5, concurrency=2).size(100) == 5
    assert BatchSizer(5, concurrency=2).size(6) == 3
    assert not BatchSizer(1).batching and BatchSizer(1).size(50) == 1


def test_batch_children_is_checked_and_asha_runs_one_child_per_trial():
    assert SearchSettings().batch_children == "auto"
    assert SearchSettings(scheduler="asha").batch_setting == 1
    assert SearchSettings(batch_children=8).batch_setting == 8
    for bad in (0, -1, 2.5, True, "many", 10**6):
        with pytest.raises(ConfigError, match="search.batch_children=.*auto or an integer"):
            SearchSettings(batch_children=bad)
    with pytest.raises(ConfigError, match="ASHA"):
        SearchSettings(batch_children=4, scheduler="asha")


def recording(controller):
    """``controller``, remembering what it is told in ``controller.told``."""
    controller.told = []
    tell = controller.tell

    def told(proposal, result):
        controller.told.append((proposal.id, result))
        tell(proposal, result)

    controller.tell = told
    return controller


def child(proposal_id, status="complete", accuracy=0.8, error=None, total_s=0.1, **extra):
    raw = {"status": status, "error": error, "accuracy": accuracy,
           "reward": accuracy if status == "complete" else None, "timings": {"total_s": total_s},
           "started_at": 1.0, "finished_at": 1.0 + total_s, **extra}
    return {"proposal_id": proposal_id, "record_json": json.dumps(raw)}


@pytest.fixture
def batched(tmp_path):
    def make(max_new, batch=3, concurrency=1, **kw):
        run = RunDir.create(tmp_path, f"r{max_new}-{batch}", {"search": {"trials": max_new}})
        controller = recording(nas.CONTROLLERS.create("random", space=ToySpace(), seed=0))
        searcher = ControllerSearcher(controller, run, pending=[], max_new=max_new,
                                      record_fn=make_record,
                                      progress=SearchProgress(total=max_new), dedup=False,
                                      batch=batch, concurrency=concurrency, **kw)
        return searcher, run, controller
    return make


def ids(config):
    return [c["proposal_id"] for c in config["children"]]


def test_a_batch_is_one_trial_of_several_children_each_recorded_and_told(batched):
    searcher, run, controller = batched(7)
    first, second, third = (searcher.suggest(f"t{i}") for i in range(3))
    assert ids(first) == [0, 1, 2] and ids(second) == [3, 4, 5] and ids(third) == [6]
    # 7 children handed out, all in flight: nothing now (a dead worker may give one back)
    assert searcher.suggest("t3") is None
    assert all(set(c) == {"arch", "proposal_id"} for c in first["children"])
    assert searcher.progress.running == 7
    # t0 reports two children at once, one failed; the state is saved after both tells
    searcher.on_trial_result("t0", {"children": [child(0), child(1, "failed", None, "boom")],
                                    "epochs": []})
    records = run.trials()
    assert [(r.trial_id, r.status, r.tune_trial_id) for r in records] == [
        (0, TrialStatus.COMPLETE, "t0"), (1, TrialStatus.FAILED, "t0")]
    assert records[1].error == "boom" and [r.step for r in records] == [1, 2]
    assert controller.told == [(0, 0.8), (1, None)]
    state = run.load_controller_state()
    assert state["num_told"] == 2  # saved: a crash now loses only the children in flight
    assert sorted(o["id"] for o in state["outstanding"]) == [2, 3, 4, 5, 6]
    assert searcher.progress.live["t0"]["trial_id"] == 2  # the batch's running child
    # a worker that died is retried by Tune: its children are reported again, recorded once
    searcher.on_trial_result("t0", {"children": [child(0), child(1), child(2)], "epochs": []})
    assert [r.trial_id for r in run.trials()] == [0, 1, 2]
    searcher.on_trial_complete("t0", {"children": [child(2)]})  # Tune's copy of the last one
    # t1's worker dies for good after one child: the others run once more in a new trial...
    searcher.on_trial_result("t1", {"children": [child(4)], "epochs": []})
    searcher.on_trial_complete("t1", None, error=True)
    assert {r.trial_id for r in run.trials()} == {0, 1, 2, 4}
    assert sorted(ids(searcher.suggest("t4"))) == [3, 5]
    searcher.on_trial_complete("t4", None, error=True)  # ...and are failed when it dies again
    by_id = {r.trial_id: r for r in run.trials()}
    assert by_id[4].status is TrialStatus.COMPLETE
    assert by_id[3].status is by_id[5].status is TrialStatus.FAILED
    assert "worker failed" in by_id[3].error
    searcher.on_trial_result("t2", {"children": [child(6)]})
    searcher.on_trial_complete("t2", {"children": [child(6)]})
    records = run.trials()
    assert sorted(r.trial_id for r in records) == list(range(7)) and len(records) == 7
    assert [r.step for r in records] == list(range(1, 8))
    assert sorted(i for i, _ in controller.told) == list(range(7))
    assert run.load_controller_state()["outstanding"] == []
    p = searcher.progress
    assert (p.done, p.failed, p.running, p.live) == (7, 3, 0, {})
    assert searcher.suggest("t5") == ControllerSearcher.FINISHED  # nothing in flight


def test_batched_epochs_reach_the_live_view_and_the_trackers(batched):
    class Trackers:
        def __init__(self):
            self.epochs, self.trials = [], []

        def on_epoch(self, trial_id, arch_key, arch, epoch, metrics):
            self.epochs.append((trial_id, epoch, metrics["val_accuracy"]))

        def on_trial(self, record):
            self.trials.append(record.trial_id)

    trackers = Trackers()
    searcher, _, _ = batched(2, batch=2, trackers=trackers)
    searcher.suggest("t0")
    epoch = {"val_accuracy": 0.5, "epoch": 1, "train_loss": 1.0, "lr": 0.1, "node": "n"}
    searcher.on_trial_result("t0", {"children": [child(0)],
                                    "epochs": [{**epoch, "proposal_id": 0},
                                               {**epoch, "proposal_id": 1, "epoch": 1}]})
    assert trackers.epochs == [(0, 1, 0.5), (1, 1, 0.5)] and trackers.trials == [0]
    live = searcher.progress.live["t0"]
    assert live["trial_id"] == 1  # child 1 runs now
    searcher.on_trial_result("t0", {"children": [], "epochs": [{**epoch, "proposal_id": 1,
                                                                 "epoch": 2}]})
    assert live["epoch"] == 2 and len(live["epoch_at"]) == 2  # child 1's epoch 1 counted


def test_a_rejected_child_of_the_last_batch_gets_its_trial_back(batched, monkeypatch):
    """With bounds, the budget is spent only when no child in flight can still give its trial
    back: the searcher waits (None) instead of finishing the run short."""
    monkeypatch.setattr(RunDir, "save_controller", lambda self, c: None)
    searcher, run, _ = batched(2, batch=2, constraints=Constraints(macs=100, max_rejections=5))
    assert ids(searcher.suggest("t0")) == [0, 1]
    assert searcher.suggest("t1") is None  # budget out, but t0's children may be rejected
    rejected = child(1, "rejected", None, "macs over the bound", macs=500,
                     constraint={"bound": "macs", "value": 500, "limit": 100})
    searcher.on_trial_result("t0", {"children": [child(0), rejected]})
    searcher.on_trial_complete("t0", None)
    assert ids(searcher.suggest("t1")) == [2]  # the rejected child's trial, handed out again
    searcher.on_trial_complete("t1", {"children": [child(2)]})
    assert searcher.suggest("t2") == ControllerSearcher.FINISHED
    statuses = [r.status for r in run.trials()]
    assert statuses.count(TrialStatus.COMPLETE) == 2 and statuses.count(TrialStatus.REJECTED) == 1


def test_one_child_per_trial_without_batches(batched):
    searcher, run, _ = batched(2, batch=1)
    config = searcher.suggest("t0")
    assert set(config) == {"arch", "proposal_id"}
    final = {"final": True, "record_json": child(0)["record_json"]}
    searcher.on_trial_complete("t0", final)
    assert [r.trial_id for r in run.trials()] == [0]



def test_children_carry_the_weight_keepers_bar_once_it_has_one(batched):
    """With ``search.keep_weights`` each child handed out carries the lowest reward its weights
    need to be kept (its worker then sends none below it); none while any child may be kept."""
    from nas.runner.weights import WeightKeeper

    class Keeper(WeightKeeper):
        def __init__(self):  # the bar alone: no run folder needed
            self.k, self.margin, self.kept = 1, 0, {}

        def settle(self, record):
            self.kept = {record.trial_id: record.reward}
            return True

    searcher, _, _ = batched(4, batch=2, keeper=Keeper())
    assert all("weights_bar" not in c for c in searcher.suggest("t0")["children"])
    searcher.on_trial_result("t0", {"children": [child(0)], "epochs": []})
    assert [c["weights_bar"] for c in searcher.suggest("t1")["children"]] == [0.8, 0.8]

# -- on Ray -------------------------------------------------------------------------------------
def search_config(tmp_path, **patch):
    data = {**TOY_SEARCH, **patch, "results_dir": str(tmp_path / "results")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_search(cfg, name):
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(cfg), "--name", name],
                         capture_output=True, text=True, timeout=300)
    return out, Path(cfg).parent / "results" / name


def lines(run_dir):
    return [json.loads(line) for line in (run_dir / "trials.jsonl").read_text().splitlines()]


@pytest.mark.ray
@pytest.mark.slow
def test_a_failing_child_fails_alone_in_its_batch(tmp_path):
    # the four fault modes, one batch of four distinct children (dedup parks repeats of those
    # in flight): raise, NaN and a blown time budget fail, the ok child completes
    cfg = search_config(tmp_path, space={"name": "nas.testing.fixtures:FaultSpace",
                                         "options": {"slow_s": 0.2}},
                        controller={"name": "random"},
                        evaluator={"dataset": "digits", "epochs": 1, "time_budget_s": 1.0},
                        latency={"mode": "skip"}, reward={"target": 1e6, "metric": "params"},
                        search={"trials": 4, "concurrency": 1, "batch_children": 4,
                                "keep_weights": 0})
    out, run_dir = run_search(cfg, "faults")
    assert out.returncode == 0, out.stderr[-3000:]
    records = lines(run_dir)
    assert len({r["tune_trial_id"] for r in records}) == 1  # one Tune trial
    by_mode = {r["arch"]["mode"]: r for r in records}
    assert len(records) == 4 and set(by_mode) == {"ok", "raise", "nan", "slow"}
    assert by_mode["ok"]["status"] == "complete" and by_mode["ok"]["reward"] > 0
    assert all(by_mode[m]["status"] == "failed" for m in ("raise", "nan", "slow"))
    assert "raises on purpose" in by_mode["raise"]["error"]
    state = json.loads((run_dir / "controller.json").read_text())["state"]
    assert state["num_told"] >= 4 and state["outstanding"] == []


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("executor", ["tune", "tasks"])
def test_batched_search_spends_the_budget_exactly_one_record_per_child(tmp_path, executor):
    cfg = search_config(tmp_path, controller={"name": "random"},
                        evaluator={"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                                   "options": {"seconds": 0.02}},
                        latency={"mode": "skip"}, reward={"target": 5.0},
                        search={"trials": 11, "concurrency": 2, "batch_children": "auto",
                                "dedup": False, "executor": executor, "keep_weights": 2})
    out, run_dir = run_search(cfg, "auto")
    assert out.returncode == 0, out.stderr[-3000:]
    records = lines(run_dir)
    assert len(records) == 11 and len({r["trial_id"] for r in records}) == 11
    assert sorted(r["step"] for r in records) == list(range(1, 12))
    assert all(r["status"] == "complete" for r in records)
    trials = {r["tune_trial_id"] for r in records}
    assert 1 < len(trials) < 11  # batches after the first children
    state = json.loads((run_dir / "controller.json").read_text())["state"]
    assert state["num_told"] == 11 and state["outstanding"] == []
    assert len(list((run_dir / "weights").glob("trial-*.safetensors"))) == 2
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    if executor == "tasks":  # plain Ray tasks, on workers kept between them: no Tune at all
        assert all(t.startswith("task-1-") for t in trials)
        assert not (run_dir / "tune").exists()
        return
    tune_files = {p.name for p in (run_dir / "tune").rglob("*") if p.is_file()}
    assert not tune_files & {"result.json", "progress.csv"}  # Tune's loggers are off
    assert not any(name.startswith("events.out.tfevents") for name in tune_files)
