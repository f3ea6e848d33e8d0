"""search.keep_weights: the driver keeps the best K children's weights and drops the rest."""

from __future__ import annotations

import pytest

from nas.records import TrialRecord, TrialStatus
from nas.results import RunDir
from nas.runner.weights import INCOMING, WeightKeeper


def record(trial_id, reward, status=TrialStatus.COMPLETE):
    return TrialRecord(trial_id=trial_id, arch_key=f"k{trial_id}", arch={}, status=status,
                       reward=reward if status is TrialStatus.COMPLETE else None)


def arrive(run, trial_id):
    folder = run.weights_dir / INCOMING
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"trial-{trial_id}.safetensors").write_bytes(b"w%d" % trial_id)


def kept(run):
    return sorted(int(p.stem.split("-")[1]) for p in run.weights_dir.glob("trial-*.safetensors"))


@pytest.fixture
def run(tmp_path):
    return RunDir(tmp_path)


def test_keeps_the_best_k_as_children_finish(run):
    keeper = WeightKeeper(run.path, 2)
    for tid, reward in [(0, 0.5), (1, 0.7), (2, 0.6), (3, 0.9), (4, 0.1)]:
        arrive(run, tid)
        keeper.settle(record(tid, reward))
    assert kept(run) == [1, 3]
    assert not list((run.weights_dir / INCOMING).iterdir())  # nothing left behind
    assert run.weights_path(3).read_bytes() == b"w3"


def test_failed_children_and_k_zero_keep_nothing(run):
    keeper = WeightKeeper(run.path, 3)
    arrive(run, 0)
    assert not keeper.settle(record(0, None, TrialStatus.FAILED))
    none = WeightKeeper(run.path, 0)
    arrive(run, 1)
    assert not none.settle(record(1, 0.9))
    assert kept(run) == [] and not list((run.weights_dir / INCOMING).iterdir())


def test_ties_keep_the_earlier_trial(run):
    keeper = WeightKeeper(run.path, 1)
    for tid in (5, 2):
        arrive(run, tid)
        keeper.settle(record(tid, 0.5))
    assert kept(run) == [2]


def test_resume_files_recorded_arrivals_and_drops_unrecorded_ones(run):
    """A driver that died between the store's write and its own bookkeeping: on resume the
    weights of recorded trials are filed, those of trials never recorded are deleted."""
    arrive(run, 0)
    arrive(run, 1)  # in flight when the driver died: never recorded
    run.weights_dir.mkdir(exist_ok=True)
    run.weights_path(7).write_bytes(b"stale")  # a trial the store no longer knows
    WeightKeeper(run.path, 2, records=[record(0, 0.4)])
    assert kept(run) == [0]
    assert not list((run.weights_dir / INCOMING).iterdir())


def test_a_margin_is_kept_until_the_final_ranking_picks_the_k(run):
    """While finalists may still be re-measured, ``margin`` more stay; ``finalize`` then keeps
    the first k of the final ranking that are there (here the re-measured order differs)."""
    keeper = WeightKeeper(run.path, 2, margin=2)
    for tid, reward in [(0, 0.5), (1, 0.7), (2, 0.6), (3, 0.9), (4, 0.1)]:
        arrive(run, tid)
        keeper.settle(record(tid, reward))
    assert kept(run) == [0, 1, 2, 3]  # the best 2 + 2
    assert keeper.finalize([9, 2, 0, 3, 1]) == [2, 0]  # 9 was never kept
    assert kept(run) == [0, 2]
    arrive(run, 5)
    keeper.settle(record(5, 0.95))  # after finalize: the plain best 2 again
    assert kept(run) == [2, 5]


def test_the_bar_is_the_lowest_kept_reward_once_k_and_the_margin_are_kept(run):
    keeper = WeightKeeper(run.path, 2, margin=1)
    for tid, reward in [(0, 0.5), (1, 0.7)]:
        arrive(run, tid)
        keeper.settle(record(tid, reward))
        assert keeper.bar() is None  # fewer than k + margin kept: any child may stay
    arrive(run, 2)
    keeper.settle(record(2, 0.6))
    assert keeper.bar() == 0.5
    arrive(run, 3)
    keeper.settle(record(3, 0.9))
    assert keeper.bar() == 0.6
    assert WeightKeeper(run.path, 0).bar() is None


def test_children_under_the_bar_send_nothing_and_the_same_weights_are_kept(run, tmp_path):
    """Each child is handed out with the bar of that moment; only those that may be kept send
    their weights (their reward can only rise above it later), and the keeper ends with exactly
    the weights it keeps when every child sends."""
    import numpy as np

    from nas.runner.trainable import may_keep

    rewards = np.random.default_rng(0).uniform(size=40).round(2)  # ties included
    everything = RunDir(tmp_path / "every")
    every = WeightKeeper(everything.path, 3, margin=2)
    some = WeightKeeper(run.path, 3, margin=2)
    sent = 0
    for tid, reward in enumerate(rewards):
        bar = some.bar()  # handed out: the bar goes with the child
        arrive(everything, tid)
        every.settle(record(tid, float(reward)))
        if may_keep({"status": "complete", "reward": float(reward)}, bar):
            arrive(run, tid)
            sent += 1
        some.settle(record(tid, float(reward)))
    assert kept(run) == kept(everything) and sent < 20
    assert not may_keep({"status": "failed", "reward": None}, None)
    assert not may_keep({"status": "complete", "reward": float("nan")}, None)
    assert may_keep({"status": "complete", "reward": 0.3}, None)
    assert may_keep({"status": "complete", "reward": 0.3}, 0.3)  # a tie may still be kept


@pytest.mark.parametrize("bar, sends", [(None, True), (0.0, True), (2.0, False)])
def test_a_worker_sends_a_childs_weights_only_when_they_may_be_kept(tmp_path, bar, sends):
    """The worker side, as a search runs it (no Ray: the weights are written straight into
    ``RUN/weights/incoming``): a child under its bar serializes and writes nothing."""
    import numpy as np

    from nas.config import parse_config
    from nas.experiment import build_experiment
    from nas.runner.trainable import _evaluate_child, trial_payload

    cfg = parse_config({
        "results_dir": str(tmp_path), "space": {"name": "nas.testing.fixtures:ToySpace"},
        "controller": {"name": "random"},
        "evaluator": {"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                      "options": {"seconds": 0.0}},
        "latency": {"mode": "skip"}, "reward": {"target": 5.0}})
    exp = build_experiment(cfg)
    incoming = RunDir(tmp_path / "run").weights_dir / INCOMING
    incoming.mkdir(parents=True)
    payload = trial_payload(exp.space, exp.settings, latency_service=False,
                            weight_store={"node": None, "store": None, "dir": str(incoming)})
    arch = exp.space.sample(np.random.default_rng(0)).to_dict()["decisions"]
    child = {"arch": arch, "proposal_id": 7, **({} if bar is None else {"weights_bar": bar})}
    rec = _evaluate_child(child, payload, lambda metrics: None, 0.0)
    assert rec["status"] == "complete" and 0.0 < rec["reward"] < 2.0
    assert (incoming / "trial-7.safetensors").exists() is sends
