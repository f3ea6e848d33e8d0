"""Issue 24.3: Ray's workers run in other working folders, so the driver resolves every path it
hands them once, against its own folder: the run folder of a relative ``results_dir`` (a search
and a resume) and a relative ``evaluator.options.checkpoint`` (no Ray here: the driver's calls
are caught before Ray would start)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import nas.runner.driver
import nas.runner.resume
import nas.runner.supernet
from nas.config import parse_config
from nas.evaluation.data import load_dataset
from nas.experiment import build_experiment
from nas.registry import get_space
from nas.results import RunDir
from nas.runner.phases import DONE
from nas.supernet import train_supernet
from nas.testing.fixtures import TOY_SEARCH
from tests.test_supernet import TINY_SPACE


class Caught(Exception):
    """Raised where Ray would start, with what the driver was about to hand on."""


@pytest.fixture
def no_ray(monkeypatch):
    seen = {}

    def start_ray(exp, address, path):
        seen["path"] = path
        raise Caught

    monkeypatch.setattr(nas.runner.driver, "_start_ray", start_ray)
    monkeypatch.setattr(nas.runner.resume, "_start_ray", start_ray)
    return seen


def test_a_relative_results_dir_becomes_an_absolute_run_folder(tmp_path, monkeypatch, no_ray):
    monkeypatch.chdir(tmp_path)
    config = parse_config({**TOY_SEARCH, "results_dir": "results"})
    with pytest.raises(Caught):
        nas.runner.driver.start_search(config, name="rel")
    assert no_ray["path"] == tmp_path / "results" / "rel" and no_ray["path"].is_absolute()

    RunDir.create("results", "old", {**TOY_SEARCH, "results_dir": "results"})
    with pytest.raises(Caught):
        nas.runner.resume.resume_search("results/old")
    assert no_ray["path"] == tmp_path / "results" / "old"


def test_a_relative_supernet_checkpoint_reaches_the_trials_absolute(tmp_path, monkeypatch):
    space = get_space("mnasnet", **TINY_SPACE)
    data = load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)
    options = {"epochs": 1, "batch_size": 32, "calib_batches": 2, "calib_batch_size": 32,
               "threads": 1}
    info = train_supernet(space, data, options, tmp_path / "trained" / "supernet")
    monkeypatch.chdir(tmp_path)
    exp = build_experiment(parse_config({
        **TOY_SEARCH, "space": {"name": "mnasnet", "options": TINY_SPACE},
        "evaluator": {"dataset": "digits", "max_train": 64, "name": "supernet",
                      "options": {**options, "checkpoint": "trained"}}}))
    handed = []

    class Task:  # what ray.remote(...).options(...) gives: the task's arguments caught
        def remote(self, *args):
            handed.append(args[-1])
            return [(DONE, info)]  # the generator task's last item: the checkpoint's info

    fake = SimpleNamespace(
        remote=lambda fn: SimpleNamespace(options=lambda **kw: Task()),
        get_runtime_context=lambda: SimpleNamespace(get_node_id=lambda: "node"),
        util=SimpleNamespace(scheduling_strategies=SimpleNamespace(
            NodeAffinitySchedulingStrategy=lambda **kw: None)))
    monkeypatch.setattr(nas.runner.supernet, "ray", fake)
    run = RunDir.create(tmp_path / "results", "r", {})
    new, blob = nas.runner.supernet.prepare_supernet(run, exp, local=True)
    folder = str(tmp_path / "trained" / "supernet")
    assert handed == [folder] and blob is None  # trained (finished) where the driver found it
    assert new.settings.evaluator_options["checkpoint"] == folder  # what the trials get
