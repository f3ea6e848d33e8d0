"""Issue 24.5: the long phases around the trials show progress (a bar beside the live view, a
line per step off a terminal, nothing when quiet), without Ray: the views, the auto target by
MACs, the finalists' re-measurement (``nas remeasure`` too), and the step stream of a task."""

from __future__ import annotations

import io
import os
import re

import pytest

import nas
from nas.cli import main
from nas.latency.conditions import activity_dir
from nas.latency.measure import LatencyConfig
from nas.runner.phases import DONE, STEP, collect, start_phase, stream_steps
from nas.runner.progress import LinePrinter, LiveView, make_view
from nas.runner.session import run_tag
from nas.testing.fixtures import TOY_SEARCH, ToySpace
from tests.test_remeasure import FAST, toy_run


def test_a_phase_is_a_line_per_step_a_bar_beside_the_live_view_and_nothing_when_quiet(capsys):
    phase = start_phase(LinePrinter(), "supernet", 3, unit="epoch", intro="training 3 epochs")
    for epoch in (1, 2, 3):
        phase.step(epoch, f"loss {1 / epoch:.4f}")
    phase.finish("ready")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "supernet: training 3 epochs" and lines[-1] == "supernet: ready"
    assert [re.sub(r" \| elapsed \S+ ETA \S+$", "", x) for x in lines[1:4]] == [
        "supernet: epoch 1/3 loss 1.0000", "supernet: epoch 2/3 loss 0.5000",
        "supernet: epoch 3/3 loss 0.3333"]

    quiet = start_phase(None, "supernet", 3, intro="training 3 epochs")
    quiet.step(1, "loss 1.0")
    quiet.finish("ready")
    assert capsys.readouterr().out == ""

    stream = io.StringIO()
    bar = start_phase(LiveView(stream), "re-measure", 4, intro="4 finalists")
    for done in range(1, 5):
        bar.step(done, f"finalist {done}")
    bar.finish("done")
    shown = stream.getvalue()
    assert "re-measure: 4 finalists" in shown and "4/4" in shown and "finalist 4" in shown
    assert shown.rstrip().endswith("re-measure: done") and capsys.readouterr().out == ""


def test_a_resumed_phase_counts_its_eta_from_the_steps_it_made():
    phase = start_phase(None, "supernet", 10, done=4, unit="epoch")
    assert phase.eta_s() is None  # no step of its own yet
    phase.started -= 6.0  # six seconds for the two epochs below
    phase.step(6)
    assert phase.eta_s() == pytest.approx(12.0, rel=0.05)  # 4 left at 3 s each


def test_the_auto_target_shows_each_child_it_measures(capsys):
    from nas.config import parse_config
    from nas.experiment import build_experiment
    from nas.runner.calibrate import AUTO_SAMPLES, auto_target

    exp = build_experiment(parse_config({**TOY_SEARCH, "reward": {
        "preset": "soft", "target": "auto", "metric": "macs"}}))
    target = auto_target(exp, payload={}, view=make_view("lines"))
    lines = capsys.readouterr().out.splitlines()
    shown = r"reward\.target auto: child \d/8 [\d.e+]+ MACs \|"
    children = [x for x in lines if re.match(shown, x)]
    assert len(children) == AUTO_SAMPLES
    assert lines[-1] == f"reward.target auto: {target:.4g} MACs (the median of 8 children)"
    assert auto_target(exp, payload={}, view=None) == target
    assert capsys.readouterr().out == ""  # quiet: nothing


def test_the_finalists_remeasurement_shows_each_measurement(tmp_path, capsys):
    from nas.runner.remeasure import remeasure_finalists

    run = toy_run(tmp_path)
    reward = nas.load_run(run.path).reward()
    entries = remeasure_finalists(run, ToySpace(), LatencyConfig(**FAST), reward, top=1,
                                  passes=2, view=make_view("lines"))
    lines = capsys.readouterr().out.splitlines()
    steps = [x for x in lines if x.startswith("re-measure: measured ")]
    assert len(steps) == 2 * len(entries) == 6
    assert [x.split()[2] for x in steps] == [f"{i}/6" for i in range(1, 7)]
    for entry in entries:  # each finalist in each pass
        key = entry["arch_key"][:12]
        assert sum(f"finalist {key} (pass" in x for x in steps) == 2

    def measure(space, archs, config, passes):  # a caller's own: no steps to show
        return {a.key: {"latency_ms": 1.0, "passes": passes} for a in archs}

    remeasure_finalists(run, ToySpace(), LatencyConfig(**FAST), reward, top=1, passes=1,
                        measure=measure, view=make_view("lines"))
    shown = capsys.readouterr().out
    assert "finalists" in shown and "re-measure: measured" not in shown


def test_nas_remeasure_shows_its_measurements_and_removes_its_activity_folder(tmp_path, capsys):
    run = toy_run(tmp_path)
    folder = activity_dir(run_tag(run.path))
    assert main(["remeasure", str(run.path), "--top", "1", "--passes", "1"]) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"^re-measure: measured \d/3 finalist ", out, re.M)) == 3
    assert not os.path.lexists(folder)  # the quiet windows' folder went with the command


def test_a_tasks_steps_stream_back_before_its_result():
    seen = []

    def work(report):
        for i in range(3):
            report(f"step {i}", i)
        return "result"

    items = stream_steps(work)
    assert collect(items, lambda *args: seen.append(args)) == "result"
    assert seen == [("step 0", 0), ("step 1", 1), ("step 2", 2)]
    assert [kind for kind, _ in stream_steps(work)] == [STEP, STEP, STEP, DONE]

    def fails(report):
        report("half-way")
        raise ValueError("boom")

    seen.clear()
    with pytest.raises(ValueError, match="boom"):
        collect(stream_steps(fails), lambda *args: seen.append(args))
    assert seen == [("half-way",)]


def test_a_bar_that_cannot_start_beside_another_live_display_prints_lines(monkeypatch):
    """rich < 14 refuses a second live display on a console: the phase prints lines there."""
    from rich.errors import LiveError
    from rich.progress import Progress

    def refuse(self):
        raise LiveError("Only one live display may be active at once")

    monkeypatch.setattr(Progress, "start", refuse)
    stream = io.StringIO()
    phase = start_phase(LiveView(stream), "re-measure", 2, unit="measured", intro="2 finalists")
    phase.step(1, "finalist a")
    phase.step(2, "finalist b")
    phase.finish("done")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "re-measure: 2 finalists" and lines[-1] == "re-measure: done"
    assert [x.split(" | ")[0] for x in lines[1:3]] == ["re-measure: measured 1/2 finalist a",
                                                      "re-measure: measured 2/2 finalist b"]
