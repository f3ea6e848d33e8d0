"""Latency conditions (issue 13.1): what else trained on the node while a latency was measured."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from nas.analysis.conditions import latency_warnings
from nas.evaluation.data import load_dataset
from nas.evaluation.evaluate import EvalSettings, evaluate_arch
from nas.evaluation.train import TrainConfig
from nas.latency.conditions import merge_conditions, node_conditions, training
from nas.latency.measure import LatencyConfig
from nas.testing.fixtures import ToySpace


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def hold_training(folder):
    """Another process inside a training phase until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from nas.latency.conditions import training
        with training({str(folder)!r}):
            print("in", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "in"  # the marker exists from here on
    return proc


def test_other_training_processes_are_counted_and_dead_ones_are_not(tmp_path):
    folder = tmp_path / "activity"
    assert node_conditions(None)["training_children"] is None
    assert node_conditions(str(folder))["training_children"] == 0
    with training(str(folder)):  # this process's own training is not "other"
        assert node_conditions(str(folder))["training_children"] == 0
    proc = hold_training(folder)
    try:
        conditions = node_conditions(str(folder))
        assert conditions["training_children"] == 1 and conditions["cpus"] >= 1
        assert conditions["load_1m"] is not None
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert node_conditions(str(folder))["training_children"] == 0  # its marker went with it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (folder / f"{dead}-abcd.train").write_text(dead)  # left by a killed trial
    assert node_conditions(str(folder))["training_children"] == 0
    worse = merge_conditions({"training_children": 0, "load_1m": 0.5, "cpus": 2},
                             {"training_children": 2, "load_1m": 0.2, "cpus": 2})
    assert worse == {"training_children": 2, "load_1m": 0.5, "cpus": 2}


def test_a_child_records_its_latency_conditions(tmp_path, digits):
    space = ToySpace()
    settings = EvalSettings(train=TrainConfig(epochs=1),
                            latency=LatencyConfig(repeats=6, warmup=1, rounds=2))
    arch = space.sample(np.random.default_rng(0))
    quiet = evaluate_arch(space, arch, settings, dataset=digits, activity=str(tmp_path / "a"))
    assert quiet["latency_conditions"]["training_children"] == 0
    proc = hold_training(tmp_path / "a")
    try:
        busy = evaluate_arch(space, arch, settings, dataset=digits, activity=str(tmp_path / "a"))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert busy["latency_conditions"]["training_children"] == 1
    assert "latency_conditions" not in evaluate_arch(  # nothing measured, nothing recorded
        space, arch, EvalSettings(train=TrainConfig(epochs=1),
                                  latency=LatencyConfig(mode="skip")), dataset=digits)


def test_analysis_warns_when_the_top_rests_on_contended_latencies():
    frame = pd.DataFrame({"trial_id": [0, 1, 2],
                          "latency_conditions.training_children": [0, 1, 3],
                          "latency_conditions.load_1m": [0.5, 1.5, 2.5]})
    assert latency_warnings(frame, pd.DataFrame({"trial_id": [0]})) == []
    (line,) = latency_warnings(frame, pd.DataFrame({"trial_id": [0, 1, 2]}))
    assert line.startswith("2 of the top 3 latencies were measured while other children")
    assert "up to 3 training at once, load average up to 2.5" in line
    assert latency_warnings(frame.drop(columns="latency_conditions.training_children"),
                            pd.DataFrame({"trial_id": [1]})) == []  # an older run: no record


def test_a_childs_training_phase_is_marked_while_it_trains(tmp_path, digits):
    """What other children's measurements count: this child's marker exists exactly while its
    proxy training runs (seen from the per-epoch callback), and is gone afterwards."""
    import os

    folder = tmp_path / "a"
    seen = []

    def report(metrics):
        seen.append(sorted(p.name.split("-")[0] for p in folder.glob("*.train")))

    space = ToySpace()
    settings = EvalSettings(train=TrainConfig(epochs=2), latency=LatencyConfig(mode="skip"))
    evaluate_arch(space, space.sample(np.random.default_rng(1)), settings, dataset=digits,
                  report=report, activity=str(folder))
    assert seen == [[str(os.getpid())]] * 2
    assert not list(folder.glob("*.train"))
