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
from nas.latency.conditions import measuring, merge_conditions, node_conditions, training
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
    loud = EvalSettings(train=TrainConfig(epochs=1),
                        latency=LatencyConfig(repeats=6, warmup=1, rounds=2, quiet=False))
    try:
        busy = evaluate_arch(space, arch, loud, dataset=digits, activity=str(tmp_path / "a"))
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert busy["latency_conditions"]["training_children"] == 1
    assert busy["latency_conditions"]["quiet"] is None  # no quiet window asked for
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


def run_trainer(folder, steps_file):
    """Another process that trains: a pause point before every step, its step count in a file;
    it stops when its stdin closes and prints the seconds it spent paused."""
    code = textwrap.dedent(f"""
        import sys, threading
        from pathlib import Path
        from nas.latency.conditions import training
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        with training({str(folder)!r}) as marker:
            steps = 0
            Path({str(steps_file)!r}).write_text("0")
            print("in", flush=True)
            synced = []  # before_pause: e.g. torch.cuda.synchronize on a GPU trainer
            while not stop.is_set():
                marker.pause_point(lambda: synced.append(1))
                steps += 1
                Path({str(steps_file)!r}).write_text(str(steps))
        print(marker.paused_s, marker.pauses, len(synced), flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "in"
    return proc


def test_a_quiet_window_pauses_the_other_trainers_until_it_ends(tmp_path):
    """Quiet measurement (issue 13.2): inside the window the other trainer has acknowledged a
    pause and takes no step (it blocks on the window's lock); afterwards it goes on, and the
    time it lost is what it reports."""
    folder, steps = tmp_path / "a", tmp_path / "steps"
    proc = run_trainer(folder, steps)
    try:
        with measuring(str(folder), quiet=True, timeout_s=60) as conditions:
            inside = [node_conditions(str(folder))["training_children"], steps.read_text()]
            inside.append(steps.read_text())
        assert inside[0] == 0 and inside[1] == inside[2]  # no step while the window is open
        assert conditions["quiet"] is True and conditions["paused_children"] == 1
        assert conditions["training_children"] == 0 and conditions["waited_s"] >= 0
    finally:
        proc.stdin.close()
        paused_s, pauses, synced = proc.stdout.read().split()
        proc.wait(timeout=60)
    assert int(steps.read_text()) > int(inside[1])  # it resumed after the window
    assert float(paused_s) > 0 and int(pauses) >= 1 and int(synced) == int(pauses)


def test_a_trainer_that_never_pauses_makes_the_window_time_out_as_not_quiet(tmp_path):
    proc = hold_training(tmp_path / "a")  # holds a marker, never reaches a pause point
    try:
        with measuring(str(tmp_path / "a"), quiet=True, timeout_s=0.05) as conditions:
            pass
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert conditions["quiet"] is False and conditions["training_children"] == 1
    assert conditions["paused_children"] == 0 and conditions["waited_s"] >= 0.05
    assert not (tmp_path / "a" / "quiet").exists()  # the window is closed again


def test_a_child_trains_through_quiet_windows_and_records_the_time_it_lost(tmp_path, digits):
    """The child's own training yields to a window that another process opens after the child's
    first epoch and holds for 0.3 s once the child has paused: the child's record says it
    waited at least that long (``timings.train_paused_s``)."""
    import time

    folder = tmp_path / "a"
    code = textwrap.dedent(f"""
        import time
        from nas.latency.conditions import measuring
        with measuring({str(folder)!r}, quiet=True, timeout_s=60) as conditions:
            time.sleep(0.3)  # the window's length, counted from the child's pause
        print(conditions["paused_children"], flush=True)
    """)
    holder = []

    def report(metrics):  # after epoch 1: a window opens; the child pauses at its next step
        if metrics["epoch"] == 1:
            holder.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                           text=True))
            deadline = time.monotonic() + 60
            while not (folder / "quiet").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # waits for the other process to open its window

    space = ToySpace()
    settings = EvalSettings(train=TrainConfig(epochs=2), latency=LatencyConfig(mode="skip"))
    record = evaluate_arch(space, space.sample(np.random.default_rng(1)), settings,
                           dataset=digits, report=report, activity=str(folder))
    assert holder[0].communicate(timeout=60)[0].strip() == "1"  # it saw the child paused
    assert record["status"] == "complete"
    assert record["timings"]["train_paused_s"] >= 0.3


def test_latency_condition_names_each_source_and_no_latency_as_a_dash():
    from nas.analysis.conditions import latency_condition

    frame = pd.DataFrame({"latency_ms": [1.2, 1.3, 1.4, float("nan"), 1.5],
                          "latency_final": [True, False, False, False, False],
                          "latency_conditions.training_children": [0, 2, 0, 0, None],
                          "latency_conditions.quiet": [None, None, True, None, None]})
    assert latency_condition(frame).tolist() == [
        "final", "search, busy 2", "search, quiet", "-", "search"]
