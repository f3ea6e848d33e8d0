"""End-to-end searches on a real local Ray (and a 2-node cluster): faults, kill, resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import nas
from nas.runner.strays import stray_ray_processes
from nas.testing.fixtures import TOY_SEARCH, ToySpace, scripted_curve

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOY = TOY_SEARCH


def config(tmp_path, **patch):
    data = {**TOY, **patch, "results_dir": str(tmp_path / "results")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def nas_cmd(*args, **kw):
    return [sys.executable, "-m", "nas.cli", *map(str, args)]


def run_nas(*args, timeout=240):
    return subprocess.run(nas_cmd(*args), capture_output=True, text=True, timeout=timeout)


def records(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "trials.jsonl").read_text().splitlines()]


def wait_for_lines(path, n, proc, timeout=180):
    """Poll the trials store until it has ``n`` lines (or the process ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") >= n:
            return path.read_text().count("\n")
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else "search ended early"
        time.sleep(0.1)
    raise AssertionError(f"{path} did not reach {n} lines")


def asha_stops(curves, *, rungs, reduction_factor):
    """Replay ASHA's rule (one bracket, as in Ray Tune's ASHAScheduler) over trials run one after
    another: at a rung (an iteration count), a trial stops when its value is below the
    ``1 - 1/reduction_factor`` quantile of the values recorded there before it (its own is
    recorded either way). ``curves``: trial -> value per iteration, in run order. Returns
    {trial: iteration it stopped at}."""
    seen = {rung: [] for rung in rungs}
    stops = {}
    for trial, curve in curves.items():
        for iteration, value in enumerate(curve, 1):
            if iteration in seen:
                earlier = seen[iteration]
                seen[iteration] = earlier + [value]
                if earlier and value < np.percentile(earlier, 100 * (1 - 1 / reduction_factor)):
                    stops[trial] = iteration
                    break
    return stops


def test_search_end_to_end_with_asha(tmp_path):
    # scripted per-epoch accuracies (no training), trials one at a time in a seeded order: what
    # ASHA must stop is known; 3 epochs + the final report = max_t 4, so the rungs are at 1 and 2
    cfg = config(tmp_path, controller={"name": "random"},
                 evaluator={"dataset": "digits", "epochs": 3,
                            "name": "nas.testing.fixtures:scripted_epochs"},
                 search={"trials": 6, "concurrency": 1, "scheduler": "asha", "seed": 3,
                         "grace_period": 1, "reduction_factor": 2, "remeasure_top": 5})
    out = run_nas("search", cfg, "--name", "e2e")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[6/6]" in out.stdout and "best reward" in out.stdout
    run_dir = tmp_path / "results" / "e2e"
    assert f"next: nas analyze {run_dir}" in out.stdout and "top 5" in out.stdout
    # Ray's and Tune's own messages are in the run's log, not on the terminal
    assert "Token authentication" not in out.stderr
    assert (run_dir / "ray.log").exists()  # what Ray printed (tests/test_progress.py shows where)
    recs = records(run_dir)  # in the order they ran
    assert len(recs) == 6 and len({r["trial_id"] for r in recs}) == 6
    assert len({r["arch_key"] for r in recs}) == 6
    assert {r["status"] for r in recs} <= {"complete", "pruned"}
    space = ToySpace()
    curves = {r["trial_id"]: scripted_curve(space.validate(r["arch"]), 3) for r in recs}
    expected = asha_stops(curves, rungs=(1, 2), reduction_factor=2)
    # seed 3: the 4th child is the best; 3 children stop at rung 1, one that passed it at rung 2
    assert sorted(expected.values()) == [1, 1, 1, 2], "this workload must make ASHA stop trials"
    pruned = {r["trial_id"]: r for r in recs if r["status"] == "pruned"}
    # exactly the trials below the rung's median of the earlier ones, stopped at that rung
    assert {t: r["metrics"]["epochs"] for t, r in pruned.items()} == expected
    assert all(r["metrics"]["accuracy"] == curves[t][expected[t] - 1] and r["reward"] is None
               for t, r in pruned.items())
    done = [r for r in recs if r["status"] == "complete"]
    assert len(done) == 2 and all(r["metrics"]["accuracy"] == curves[r["trial_id"]][-1]
                                  for r in done)
    assert done and all(r["metrics"]["latency_n"] > 0 and r["metrics"]["macs"] > 0 for r in done)
    # the conditions of each measurement: one trial at a time, so nothing else trained
    assert all(r["metrics"]["latency_conditions"]["training_children"] == 0 for r in done)
    assert all(r["metrics"]["latency_conditions"]["quiet"] is True for r in done)
    # the finalists (top 5 and the front: both complete children) re-measured at the end
    final = [json.loads(x) for x in (run_dir / "remeasured.jsonl").read_text().splitlines()]
    assert sorted(e["arch_key"] for e in final) == sorted(r["arch_key"] for r in done)
    assert all(e["by"] == "search" and e["passes"] == 3 and e["latency_ms"] > 0 for e in final)
    assert all(e["method"] == "paired" and e["latency_unpaired_ms"] > 0 for e in final)
    assert len({e["reference"]["latency_ms"] for e in final}) == 1  # one session's milliseconds
    assert "2 finalists re-measured quietly" in out.stdout
    assert all(r["node"]["node_id"] and r["device"]["torch"] for r in done)
    # search.keep_weights (3): both complete children's trained weights are kept, nothing else
    kept = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "weights").glob("trial-*"))
    assert kept == sorted(r["trial_id"] for r in done)
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["space"]["options"]["num_classes"] == 10 and resolved["search"]["trials"] == 6
    assert (run_dir / "trials.parquet").exists() and (run_dir / "controller.json").exists()
    assert len(nas.load_run(run_dir).trials) == 6
    status = json.loads(run_nas("status", run_dir, "--json").stdout)
    assert status["state"] == "complete" and status["trials"] == 6
    again = run_nas("resume", run_dir)
    assert again.returncode == 0 and len(records(run_dir)) == 6


def test_latency_service_measures_for_the_trials(tmp_path):
    cfg = config(tmp_path, latency={"repeats": 6, "warmup": 1, "rounds": 2, "service": True},
                 search={"trials": 3, "concurrency": 1, "remeasure_top": 5})
    out = run_nas("search", cfg, "--name", "svc")
    assert out.returncode == 0, out.stderr[-3000:]
    recs = records(tmp_path / "results" / "svc")
    assert [r["status"] for r in recs] == ["complete"] * 3
    assert len({r["arch_key"] for r in recs}) == 3  # dedup: three different children
    # what only the service's actor writes: its own process and id, and its running counts
    stamps = [r["device"].get("measured_by") for r in recs]
    assert None not in stamps, "a trial's latency was not measured by the service"
    assert len({s["pid"] for s in stamps}) == 1 and len({s["actor_id"] for s in stamps}) == 1
    assert all(s["pid"] != r["node"]["pid"] for s, r in zip(stamps, recs, strict=True))
    assert sorted(s["request"] for s in stamps) == [1, 2, 3]
    # three different children: three timings, none answered from the cache
    assert sorted((s["measurement"], s["cached"]) for s in stamps) == [(1, False), (2, False),
                                                                        (3, False)]
    assert all(r["metrics"]["latency_ms"] > 0 and r["metrics"]["latency_n"] > 0 for r in recs)
    assert len({r["metrics"]["latency_ms"] for r in recs}) == 3  # timed, not a canned number
    # the service records the conditions of its timings, and re-measures the finalists itself
    assert all(r["metrics"]["latency_conditions"]["quiet"] is True for r in recs)
    final = [json.loads(x) for x in
             (tmp_path / "results" / "svc" / "remeasured.jsonl").read_text().splitlines()]
    assert len(final) == 3 and {e["device"]["measured_by"]["pid"] for e in final} == \
        {stamps[0]["pid"]}


def test_failing_children_are_recorded_and_the_search_completes(tmp_path):
    cfg = config(tmp_path, space={"name": "nas.testing.fixtures:FaultSpace",
                                  "options": {"slow_s": 0.2}},
                 controller={"name": "random", "options": {"dedup": True}},
                 evaluator={"dataset": "digits", "epochs": 1, "time_budget_s": 1.0},
                 latency={"mode": "skip"}, reward={"target": 1e6, "metric": "params"},
                 search={"trials": 4, "concurrency": 2})
    out = run_nas("search", cfg, "--name", "faults")
    assert out.returncode == 0, out.stderr[-3000:]
    by_mode = {r["arch"]["mode"]: r for r in records(tmp_path / "results" / "faults")}
    assert set(by_mode) == {"ok", "raise", "nan", "slow"}
    assert by_mode["ok"]["status"] == "complete" and by_mode["ok"]["reward"] > 0
    assert by_mode["raise"]["status"] == "failed"
    assert "raises on purpose" in by_mode["raise"]["error"]
    assert by_mode["nan"]["status"] == "failed" and "nan" in by_mode["nan"]["error"].lower()
    assert by_mode["slow"]["status"] == "failed" and "budget" in by_mode["slow"]["error"]
    assert all(by_mode[m]["reward"] is None for m in ("raise", "nan", "slow"))


@pytest.mark.parametrize("executor", ["tune", "tasks"])
def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, executor):
    cfg = config(tmp_path, evaluator={"dataset": "digits", "epochs": 8},
                 search={"trials": 6, "concurrency": 2, "executor": executor})
    run_dir = tmp_path / "results" / "int"
    proc = subprocess.Popen(nas_cmd("search", cfg, "--name", "int"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for_lines(run_dir / "trials.jsonl", 2, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-2000:]
    assert f"nas resume {run_dir}" in output
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    marker = json.loads((run_dir / "run.json").read_text())["ray_marker"]
    assert marker and stray_ray_processes(marker) == []  # its own Ray stopped with it
    assert run_nas("resume", run_dir).returncode == 0
    recs = records(run_dir)  # ids may skip: repeats are answered from the records, no trial
    assert len(recs) == 6 and len({r["trial_id"] for r in recs}) == 6
    assert len({r["arch_key"] for r in recs}) == 6  # no child trained twice


def test_every_child_failing_exits_1_with_the_reasons(tmp_path):
    gate = tmp_path / "never"  # never opened: every child fails at once
    cfg = config(tmp_path, evaluator={"dataset": "digits", "epochs": 1,
                                      "name": "nas.testing.gates:gated",
                                      "options": {"gate": str(gate), "timeout_s": 0}},
                 latency={"mode": "skip"}, search={"trials": 3, "concurrency": 1})
    out = run_nas("search", cfg, "--name", "allfail")
    assert out.returncode == 1, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[1].startswith("[0/3] failed 0")  # progress shows at once, before any child
    first = lines[2]  # the failure is shown as it happens
    assert first.startswith("[1/3] failed 1") and f"last failure: gate {gate}" in first
    err = out.stderr.strip().splitlines()
    assert "every child failed; most common reasons:" in err
    assert f"  3 x gate {gate} did not open" in err
    recs = records(tmp_path / "results" / "allfail")
    assert [r["status"] for r in recs] == ["failed"] * 3
