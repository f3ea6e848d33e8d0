"""Live progress (no Ray): the ETA from running children, the line and rich views, and Ray's
output sent to the run's log while ours stays on the terminal."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import time

import pytest
from rich.console import Console

import nas.runner.output
from nas.runner.progress import LinePrinter, LiveView, SearchProgress, make_view

OUTPUT = nas.runner.output.__file__


def child(trial, epoch, epochs=6, ago=10.0, acc=0.5, node="n1", epoch_at=()):
    now = time.time()
    return {"trial_id": trial, "arch_key": f"key{trial:012d}", "node": node, "epoch": epoch,
            "epochs": epochs, "val_accuracy": acc, "started": now - ago,
            "epoch_at": [now - ago + t for t in epoch_at]}


def test_eta_from_running_children_before_any_finished():
    p = SearchProgress(total=10, concurrency=2, epochs=6)
    assert p.eta_s is None  # no pace yet
    p.live["t0"] = child(0, epoch=1, ago=8.0, epoch_at=[8.0])
    assert p.eta_s is None  # one epoch: start-up and pace cannot be told apart
    # start-up 4 s, then 2 s an epoch: a child takes 4 + 6 x 2 = 16 s
    p.live["t0"] = child(0, epoch=3, ago=10.0, epoch_at=[6.0, 8.0, 10.0])
    assert p.child_estimate_s() == pytest.approx(16.0)
    # 9 children not started, 3 epochs (6 s) of the running one left, over 2 slots
    assert p.eta_s == pytest.approx((16.0 * 9 + 6.0) / 2)


def test_eta_from_finished_children_and_their_pace():
    p = SearchProgress(total=4, done=2, concurrency=1, epochs=5)
    p.child_s = [20.0, 40.0]
    p.live["t2"] = child(2, epoch=4, epochs=5)  # no pace of its own: a fifth of a child left
    assert p.eta_s == pytest.approx(30.0 * (1 + 0.2))
    p.live["t2"] = child(2, epoch=4, epochs=5, ago=20.0, epoch_at=[8.0, 11.0, 14.0, 17.0])
    assert p.eta_s == pytest.approx(30.0 + 3.0)  # one child, plus one 3-s epoch
    p.done, p.live = 4, {}
    assert p.eta_s == 0.0


def test_line_printer_prints_once_per_finished_child():
    out = io.StringIO()
    show = LinePrinter(out)
    p = SearchProgress(total=3)
    for done in (0, 0, 1, 1, 1, 2):  # epochs of running children repeat the count
        p.done = done
        show(p)
    lines = out.getvalue().splitlines()
    assert [line.split("]")[0] for line in lines] == ["[0/3", "[1/3", "[2/3"]


def test_live_view_shows_running_children_counts_best_and_failure():
    p = SearchProgress(total=8, done=3, failed=1, pruned=1, concurrency=2, epochs=6)
    p.best = {"reward": 0.91234, "trial_id": 2, "accuracy": 0.95, "latency_ms": 1.5}
    p.last_failure = "RuntimeError: nan loss"
    p.live = {"a": child(5, epoch=3, acc=0.8125, node="worker-7"), "b": child(6, epoch=1)}
    view = LiveView(io.StringIO())
    view.progress = p
    out = io.StringIO()
    Console(file=out, width=120, force_terminal=False).print(view._render())
    text = out.getvalue()
    assert "done 3/8  failed 1  pruned 1  running 2" in text
    assert "0.9123 (trial 2" in text and "RuntimeError: nan loss" in text
    assert "worker-7" in text and "3/6" in text and "0.8125" in text and "key000000000005" in text


def test_make_view_follows_the_mode_and_the_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert make_view("none") is None
    assert isinstance(make_view("auto", io.StringIO()), LinePrinter)
    assert isinstance(make_view("auto", Tty()), LiveView)
    assert isinstance(make_view("lines", Tty()), LinePrinter)
    assert isinstance(make_view("rich", io.StringIO()), LiveView)


def test_ray_output_goes_to_the_log_and_ours_to_the_terminal(tmp_path):
    """C-level writes and handlers bound to the old stderr (as Ray's and Tune's are) land in
    the log, in the temporary file first and then in the run's; print() stays on stdout."""
    script = tmp_path / "s.py"
    script.write_text(textwrap.dedent(f"""
        import importlib.util, logging, os, sys
        ray_log = logging.getLogger("ray.fake")
        ray_log.addHandler(logging.StreamHandler(sys.stderr))   # bound before, like Ray's
        # the module alone (nas.runner's package would import Ray: seconds for nothing here)
        spec = importlib.util.spec_from_file_location("output", {str(OUTPUT)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        RayOutput = module.RayOutput
        with RayOutput() as out:
            os.write(2, b"c-level before the run folder\\n")
            out.move_to({str(tmp_path / 'ray.log')!r})
            os.write(1, b"c-level stdout\\n")
            ray_log.warning("Token authentication is enabled")
            print("our progress line")
            print("our message", file=sys.stderr)
        print("after")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "ray.log").read_text()
    assert "c-level before the run folder" in log and "c-level stdout" in log
    assert "Token authentication" in log and "our progress line" not in log
    assert done.stdout.splitlines() == ["our progress line", "after"]
    assert done.stderr.strip() == "our message"
