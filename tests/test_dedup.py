"""No child trained twice: repeated proposals are answered from the run's records, in a search
(the Tune searcher adapter, driven directly and in a real search) and in ``nas bench``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas
from nas.records import TrialRecord, TrialStatus
from nas.search.bench import TableObjective, run_controller, synthetic_table
from nas.search.controller import Controller, Proposal, load_state
from nas.testing.fixtures import TOY_SEARCH, ToySpace


class FakeRun:
    """The two run-folder calls the searcher makes."""

    def __init__(self) -> None:
        self.lines: list[TrialRecord] = []
        self.saves = 0

    def append_trial(self, record: TrialRecord) -> None:
        self.lines.append(record)

    def save_controller(self, controller: Controller) -> None:
        self.saves += 1


def make_searcher(controller, *, dedup=True, max_repeats=100, records=(), max_new=50):
    from nas.runner.search import ControllerSearcher, SearchProgress

    def record_fn(proposal, trial_id, result, error):
        value = float(sum(proposal.arch.indices))
        return TrialRecord(trial_id=proposal.id, arch_key=proposal.arch.key,
                           arch=dict(proposal.arch.items()), status=TrialStatus.COMPLETE,
                           metrics={"accuracy": value}, reward=value)

    run = FakeRun()
    searcher = ControllerSearcher(controller, run, pending=[], max_new=max_new,
                                  record_fn=record_fn, progress=SearchProgress(total=max_new),
                                  records=list(records), dedup=dedup, max_repeats=max_repeats)
    return searcher, run


def random_controller(seed=0):
    return nas.CONTROLLERS.create("random", space=ToySpace(), seed=seed)  # 12 architectures


def test_searcher_never_runs_an_evaluated_architecture_again():
    ctrl = random_controller()
    searcher, run = make_searcher(ctrl)
    for i in range(12):  # one at a time: every repeat is of a finished trial
        assert searcher.suggest(f"t{i}") is not None
        searcher.on_trial_complete(f"t{i}", {"final": True})
    keys = [r.arch_key for r in run.lines]
    assert len(keys) == 12 and len(set(keys)) == 12  # the whole space, each child once
    assert ctrl.num_told > 12 and searcher.progress.repeats == ctrl.num_told - 12
    assert not ctrl.outstanding()  # every repeat was told (its stored result)


def test_repeats_of_a_running_trial_wait_for_it_and_get_its_result():
    ctrl = random_controller(seed=3)
    searcher, run = make_searcher(ctrl)
    for i in range(6):  # six in flight at once: repeats among them are parked
        searcher.suggest(f"t{i}")
    running = {p.arch.key for p in searcher._live.values()}
    assert len(running) == 6
    parked = len(ctrl.outstanding()) - 6
    assert parked > 0  # random sampling of 6+ from 12 repeats with this seed
    for i in range(6):
        searcher.on_trial_complete(f"t{i}", {"final": True})
    assert not ctrl.outstanding() and len(run.lines) == 6


def test_dedup_off_reevaluates_and_the_cap_ends_a_loop_on_an_exhausted_space():
    ctrl = random_controller()
    searcher, run = make_searcher(ctrl, dedup=False)
    for i in range(12):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"final": True})
    assert len({r.arch_key for r in run.lines}) < 12  # repeats were trained again
    assert ctrl.num_told == 12

    ctrl = random_controller()
    searcher, run = make_searcher(ctrl, max_repeats=5)
    for i in range(14):  # more trials than architectures: the cap lets a repeat run
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"final": True})
    assert len(run.lines) == 14 and len({r.arch_key for r in run.lines}) == 12


def test_a_resumed_searcher_answers_from_the_records_of_earlier_segments():
    first = random_controller()
    searcher, run = make_searcher(first)
    for i in range(5):
        searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"final": True})
    again = random_controller()  # a fresh controller proposes the same first five
    searcher, run2 = make_searcher(again, records=run.lines)
    for i in range(5):
        searcher.suggest(f"u{i}")
        searcher.on_trial_complete(f"u{i}", {"final": True})
    assert not {r.arch_key for r in run.lines} & {r.arch_key for r in run2.lines}


# -- nas bench follows the same rule ---------------------------------------------------------------
@pytest.fixture(scope="module")
def objective():
    space = nas.get_space("nasbench201")
    return TableObjective(space, synthetic_table(space, seed=1), key="arch_str",
                          metric="accuracy")


class Stuck(Controller):
    """Proposes the same architecture forever (a collapsed policy)."""

    name = "stuck"

    def _propose(self):
        return self.space.decode([0] * len(self.space.choices())), {}

    def _observe(self, proposal: Proposal, value, extra) -> None:
        return None


@pytest.mark.parametrize("workers", [1, 4])
def test_bench_trials_are_new_architectures(objective, workers):
    ctrl = nas.CONTROLLERS.create("evolution", space=objective.space, seed=0)
    res = run_controller(ctrl, objective, trials=150, workers=workers, seed=0)
    assert res["repeats"] > 0 and res["asks"] == 150 + res["repeats"]
    off = run_controller(nas.CONTROLLERS.create("evolution", space=objective.space, seed=0),
                         objective, trials=150, workers=workers, seed=0, dedup=False)
    assert off["repeats"] == 0 and off["asks"] == 150
    # a controller stuck on one architecture: the cap turns repeats into re-evaluations
    stuck = run_controller(Stuck(objective.space, seed=0), objective, trials=3, max_repeats=7)
    assert stuck["asks"] == 3 + 2 * 7 and stuck["distinct_late"] == 1


def test_bench_noise_is_told_but_curves_report_true_values(objective):
    ctrl = nas.CONTROLLERS.create("random", space=objective.space, seed=0)
    res = run_controller(ctrl, objective, trials=60, seed=0, noise=3.0)
    curve = res["curve"]
    told_best = curve[:, 3]
    assert set(np.unique(told_best)) <= set(curve[:, 0])  # incumbents are true table values
    # with large noise the incumbent is not always the true best seen so far
    assert (told_best < np.fmax.accumulate(curve[:, 0])).any()
    clean = run_controller(nas.CONTROLLERS.create("random", space=objective.space, seed=0),
                           objective, trials=60, seed=0)
    assert np.array_equal(clean["curve"][:, 3], np.fmax.accumulate(clean["curve"][:, 0]))


# -- a real search on Ray ------------------------------------------------------------------------
@pytest.mark.ray
@pytest.mark.slow
def test_search_trains_each_architecture_once(tmp_path):
    data = {**TOY_SEARCH, "results_dir": str(tmp_path / "results"),
            "controller": {"name": "random"},  # samples with replacement: repeats are certain
            "evaluator": {"dataset": "digits", "epochs": 1,
                          "name": "nas.testing.fixtures:fixed_time", "options": {"seconds": 0.05}},
            "search": {"trials": 10, "concurrency": 2}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(path), "--name", "d"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    run = Path(tmp_path / "results" / "d")
    lines = (run / "trials.jsonl").read_text().splitlines()
    keys = [json.loads(line)["arch_key"] for line in lines]
    assert len(keys) == 10 and len(set(keys)) == 10
    state = load_state(run / "controller.json")
    assert state["num_told"] > 10  # repeats were told from the records, not trained
