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
