"""One driver per run folder, kills at three moments, and left-over Ray found only by its token.

Every wait here is on a condition the test forces: children block at a gate file the test opens
(``nas.testing.gates:gated``) and start detached processes that outlive a killed driver (as a
child's own subprocesses can: Ray's processes die with the driver), and crash points
(``MNAS_FAULT``) kill the driver at an exact moment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from nas.results import RunDir
from nas.runner.strays import MARKER, stray_ray_processes
from nas.testing.fixtures import TOY_SEARCH

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def config(tmp_path, evaluator, trials, concurrency=2):
    data = {**TOY_SEARCH, "evaluator": evaluator, "results_dir": str(tmp_path / "results"),
            "search": {"trials": trials, "concurrency": concurrency},
            "latency": {"mode": "skip"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def gated(gate, orphan=False):
    return {"name": "nas.testing.gates:gated", "epochs": 1,
            "options": {"gate": str(gate), "arrived": str(gate.parent / "arrived"),
                        "orphan": orphan}}


def arrived(gate):
    """Pids of the children waiting at the gate (each wrote its pid on arrival)."""
    folder = gate.parent / "arrived"
    return sorted(int(p.name) for p in folder.iterdir()) if folder.exists() else []


def orphans(gate):
    """Pids of the detached processes the children started (see ``gated``'s ``orphan``)."""
    return sorted(int(p.read_text()) for p in (gate.parent / "arrived").iterdir())


def nas_cmd(*args):
    return [sys.executable, "-m", "nas.cli", *map(str, args)]


def run_nas(*args, env=None, timeout=240):
    return subprocess.run(nas_cmd(*args), capture_output=True, text=True, timeout=timeout,
                          env=env)


def lines(run_dir):
    path = Path(run_dir) / "trials.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def wait_until(predicate, proc, what, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, f"ended before {what}: {proc.communicate()[1][-2000:]}"
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def holds_lock(run_dir, pid):
    holder = RunDir(run_dir).lock_holder() or {}
    return holder.get("pid") == pid


def marker_of(run_dir):
    path = Path(run_dir) / "run.json"
    return json.loads(path.read_text()).get("ray_marker") if path.exists() else None


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(")")[-1].split()[0] != "Z"


def start_decoys(tmp_path, run_dir):
    """A process naming the run's Ray temp folder on its command line, and one carrying another
    driver's token: neither is ours, so neither may be stopped."""
    temp_dir = json.loads((Path(run_dir) / "run.json").read_text())["ray_temp_dir"]
    sleeper = "import sys, time; time.sleep(600)"
    named = subprocess.Popen([sys.executable, "-c", sleeper, temp_dir, "raylet"])
    other = subprocess.Popen([sys.executable, "-c", sleeper],
                             env={**os.environ, MARKER: "mnas-someone-else"})
    return [named, other]


def test_one_writer_strays_and_concurrent_resumes(tmp_path):
    gate = tmp_path / "gate"
    cfg = config(tmp_path, gated(gate, orphan=True), trials=6)
    run_dir = tmp_path / "results" / "locked"
    search = subprocess.Popen(nas_cmd("search", cfg, "--name", "locked"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: len(arrived(gate)) == 2, search, "two children at the gate")
    assert holds_lock(run_dir, search.pid)
    status = json.loads(run_nas("status", run_dir, "--json").stdout)
    assert status["state"] == "running"  # the lock is held: a live driver

    # a second writer while the search lives: refused at once, naming the holder
    refused = run_nas("resume", run_dir)
    assert refused.returncode == 2, refused.stderr
    assert f"in use by `nas search` (pid {search.pid} on " in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    marker = marker_of(run_dir)
    left = stray_ray_processes(marker)
    assert left and all(alive(p) for p in left)  # the refused resume stopped nothing

    # kill the driver: Ray's own processes die with it, the children's detached ones do not
    search.kill()
    search.wait()
    left = stray_ray_processes(marker)
    assert len(orphans(gate)) == 2 and set(orphans(gate)) <= set(left)
    decoys = start_decoys(tmp_path, run_dir)
    try:
        first = subprocess.Popen(nas_cmd("resume", run_dir), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        wait_until(lambda: holds_lock(run_dir, first.pid), first, "the first resume's lock")
        second = run_nas("resume", run_dir)
        assert second.returncode == 2, second.stderr
        assert f"in use by `nas resume` (pid {first.pid} on " in second.stderr
        gate.touch()
        out, err = first.communicate(timeout=240)
        assert first.returncode == 0, err[-3000:]
        assert stray_ray_processes(marker) == [] and not any(alive(p) for p in left)
        assert all(d.poll() is None for d in decoys)  # not ours: still running
    finally:
        for d in decoys:
            d.kill()
    records = [json.loads(line) for line in lines(run_dir)]
    assert len(records) == 6 and len({r["trial_id"] for r in records}) == 6
    assert len({r["arch_key"] for r in records}) == 6
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    assert (run_dir / "trials.parquet").exists()
    assert not list((run_dir / "tune").rglob("*.pkl"))  # Tune's pickles are gone


def test_kill_before_ray_and_during_the_final_write(tmp_path):
    """(A kill mid-run is the test above.) A run with 3 of 4 trials done, as a crash leaves it."""
    from test_run_folder_checks import make_run

    run_dir = make_run(tmp_path, done=3, target=4).path
    state_file = run_dir / "controller.json"
    state = state_file.read_text()

    env = {**os.environ, "MNAS_FAULT": "before_ray"}
    died = run_nas("resume", run_dir, env=env)
    assert died.returncode == -signal.SIGKILL
    assert len(lines(run_dir)) == 3 and state_file.read_text() == state  # nothing changed

    env["MNAS_FAULT"] = "final_write"
    died = run_nas("resume", run_dir, env=env)
    assert died.returncode == -signal.SIGKILL
    assert len(lines(run_dir)) == 4 and not (run_dir / "trials.parquet").exists()
    status = json.loads(run_nas("status", run_dir, "--json").stdout)
    assert status["state"] == "interrupted" and status["trials"] == 4

    done = run_nas("resume", run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in lines(run_dir)]
    assert len(records) == 4 and len({r["arch_key"] for r in records}) == 4  # none retrained
    assert (run_dir / "trials.parquet").exists()
    assert not list(run_dir.glob("*.tmp"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
