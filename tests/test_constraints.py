"""Hard constraints before training (issue 14.1): bounds, rejected children, the budget, the cap."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nas.config import parse_config
from nas.constraints import Constraints
from nas.errors import ConfigError
from nas.evaluation.data import load_dataset
from nas.evaluation.evaluate import EvalSettings, evaluate_arch
from nas.evaluation.train import TrainConfig
from nas.latency.measure import LatencyConfig
from nas.records import TrialStatus, budgeted
from nas.results import RunDir
from nas.runner.progress import SearchProgress, progress_line
from nas.runner.search import ControllerSearcher, make_record
from nas.testing.fixtures import TOY_SEARCH, ToySpace
from tests.test_search_ray import config, records, run_nas

FAST = LatencyConfig(repeats=6, warmup=1, rounds=2)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_bad_bounds_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"^constraints.macs=-5: must be a finite number > 0"):
        Constraints(macs=-5)
    with pytest.raises(ConfigError, match=r"constraints.latency: unknown key.*latency_ms"):
        parse_config({**TOY_SEARCH, "constraints": {"latency": 3}})
    assert parse_config({**TOY_SEARCH, "constraints": {"params": 1000}}).constraints.params == 1000


def test_a_child_over_a_cost_bound_is_rejected_before_latency_and_training(digits):
    space = ToySpace()
    arch = space.sample(np.random.default_rng(0))
    free = evaluate_arch(space, arch, EvalSettings(train=TrainConfig(epochs=1), latency=FAST),
                         dataset=digits)
    bound = Constraints(macs=free["macs"] - 1)
    out = evaluate_arch(space, arch, EvalSettings(train=TrainConfig(epochs=1), latency=FAST,
                                                  constraints=bound), dataset=digits)
    assert out["status"] == "rejected" and out.get("reward") is None
    assert out["constraint"]["bound"] == "macs" and out["constraint"]["value"] == free["macs"]
    assert "over the bound constraints.macs" in out["error"]
    assert "latency_ms" not in out and "train_s" not in out["timings"]  # nothing else was done
    assert "latency_s" not in out["timings"]


def test_a_child_over_the_latency_bound_is_measured_but_never_trained(digits):
    space = ToySpace()
    arch = space.sample(np.random.default_rng(1))
    settings = EvalSettings(train=TrainConfig(epochs=1), latency=FAST,
                            constraints=Constraints(latency_ms=1e-9, macs=1e12))
    out = evaluate_arch(space, arch, settings, dataset=digits)
    assert out["status"] == "rejected" and out["constraint"]["bound"] == "latency_ms"
    assert out["latency_ms"] > 0 and out["macs"] > 0  # measured: what the bound was checked on
    assert "train_s" not in out["timings"] and "accuracy" not in out
    ok = evaluate_arch(space, arch, EvalSettings(train=TrainConfig(epochs=1), latency=FAST,
                                                 constraints=Constraints(latency_ms=1e6)),
                       dataset=digits)
    assert ok["status"] == "complete" and ok["accuracy"] is not None


class Told:
    """A stand-in controller that records what it is told."""

    wants_metrics = False

    def __init__(self, space):
        self.space, self.told, self.num_told, self.num_asked = space, [], 0, 0

    def tell(self, proposal, value):
        self.told.append(value)
        self.num_told += 1

    def state_dict(self):
        return {}


def finished(proposal, status, **metrics):
    raw = {"status": status, "error": "over" if status == "rejected" else None,
           "accuracy": 0.5, "reward": 0.5 if status == "complete" else None, **metrics}
    return make_record(proposal, "t", {"final": True, "record_json": json.dumps(raw)}, False)


def test_rejections_give_their_trials_back_and_a_cap_stops_the_search(tmp_path, monkeypatch):
    from nas.search.controller import Proposal

    space = ToySpace()
    run = RunDir.create(tmp_path, "r", {**TOY_SEARCH})
    monkeypatch.setattr(RunDir, "save_controller", lambda self, c: None)
    told = Told(space)
    progress = SearchProgress(total=2)
    searcher = ControllerSearcher(told, run, pending=[], max_new=2, record_fn=finished,
                                  progress=progress,
                                  constraints=Constraints(macs=100, penalty=-1.0,
                                                          max_rejections=1), budget=2)
    rng = np.random.default_rng(0)
    proposals = [Proposal(i, space.sample(rng)) for i in range(5)]

    def finish(i, status, macs):
        searcher._live[f"t{i}"] = proposals[i]
        searcher._budget -= 1  # what suggest() spends
        searcher.record_fn = None
        searcher._record_fn = lambda p, t, r, e: finished(
            p, status, macs=macs, constraint={"bound": "macs", "value": macs, "limit": 100})
        searcher.on_trial_complete(f"t{i}")

    finish(0, "rejected", 500)
    assert searcher._budget == 2 and progress.rejected == 1 and progress.done == 0
    assert told.told == [-1.0]  # the penalty, not a failure
    assert "rejected 1" in progress_line(progress)
    finish(1, "complete", 50)
    assert searcher._budget == 1 and progress.done == 1
    finish(2, "rejected", 300)
    assert searcher.stopped is None  # 2 rejections: at the cap (1 per trial of 2), not over
    finish(3, "rejected", 200)
    assert searcher._budget == 0 and searcher.stopped.startswith("constraints.macs=100: 3 "
                                                                 "children rejected")
    assert "the smallest macs seen was 50" in searcher.stopped
    stored = run.trials()
    assert [r.status for r in stored].count(TrialStatus.REJECTED) == 3 and budgeted(stored) == 1
    assert stored[0].error == "over" and stored[0].metrics["constraint"]["bound"] == "macs"


@pytest.mark.ray
@pytest.mark.slow
def test_a_bound_nothing_meets_stops_the_search_with_exit_1(tmp_path):
    cfg = config(tmp_path, constraints={"macs": 1, "max_rejections": 1},
                 search={"trials": 2, "concurrency": 1})
    out = run_nas("search", cfg, "--name", "tight")
    assert out.returncode == 1, out.stderr[-3000:]
    recs = records(tmp_path / "results" / "tight")
    assert len(recs) == 3 and {r["status"] for r in recs} == {"rejected"}
    assert all("train_s" not in r["timings"] for r in recs)  # none trained
    smallest = min(r["metrics"]["macs"] for r in recs)
    assert "constraints.macs=1: 3 children rejected" in out.stderr
    assert f"the smallest macs seen was {smallest:.4g}" in out.stderr
    assert "0/2 trials" in out.stdout and "3 rejected by constraints" in out.stdout
    status = json.loads(run_nas("status", tmp_path / "results" / "tight", "--json").stdout)
    assert status["rejected"] == 3 and status["trials"] == 0
