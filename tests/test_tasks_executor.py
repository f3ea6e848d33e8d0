"""The tasks executor (``search.executor: tasks``): its config checks, the batch stream its tasks
run, and a search on Ray in which a worker dies (a whole batched search with it:
tests/test_batching.py; Ctrl-C and resume: tests/test_search_ray.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from nas.config import SearchSettings, parse_config
from nas.errors import ConfigError
from nas.experiment import build_experiment
from nas.runner.trainable import batch_reports, trial_payload
from nas.testing.fixtures import ToySpace
from tests.test_batching import lines, run_search, search_config


def test_executor_is_checked_and_has_no_scheduler():
    assert SearchSettings().executor == "tune"
    assert SearchSettings(executor="tasks").executor == "tasks"
    with pytest.raises(ConfigError, match=r"search.executor='ray': allowed values: tune, tasks"):
        SearchSettings(executor="ray")
    with pytest.raises(ConfigError, match=r"search.scheduler='asha': the tasks executor"):
        SearchSettings(executor="tasks", scheduler="asha")


def test_a_bad_executor_is_a_one_line_usage_error(tmp_path):
    cfg = search_config(tmp_path, search={"trials": 2, "executor": "threads"})
    out, run_dir = run_search(cfg, "bad")
    assert out.returncode == 2
    assert "search.executor='threads': allowed values: tune, tasks" in out.stderr
    assert not run_dir.exists()


def test_the_worker_side_never_imports_tune():
    """A tasks worker imports the trainable module (the task's body) but not Ray Tune, whose
    import costs a cheap child's worker most of a second."""
    code = ("import sys, nas.runner.trainable, nas.evaluation.evaluate; "
            "print('ray.tune' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def _payload(seconds):
    exp = build_experiment(parse_config({
        "space": {"name": "nas.testing.fixtures:ToySpace"}, "controller": {"name": "random"},
        "evaluator": {"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                      "options": {"seconds": seconds}},
        "latency": {"mode": "skip"}, "reward": {"target": 5.0}}))
    return trial_payload(exp.space, exp.settings, latency_service=False)


def _children(n):
    space = ToySpace()
    return [{"arch": dict(space.decode([i % 4, i % 3]).items()), "proposal_id": i}
            for i in range(n)]


def test_a_batch_streams_each_child_once_in_order_as_it_finishes():
    received = []  # when each report reached the consumer
    reports = []
    for report in batch_reports(_children(4), _payload(0.2)):
        received.append(time.time())
        reports.append(report)
    done = [c["proposal_id"] for r in reports for c in r["children"]]
    assert done == [0, 1, 2, 3]
    records = [json.loads(c["record_json"]) for r in reports for c in r["children"]]
    assert all(r["status"] == "complete" and r["finished_at"] > r["started_at"]
               for r in records)
    assert received[0] < records[-1]["finished_at"]  # streamed: not held until the batch ended


def test_closing_a_batch_stops_it_after_the_running_child(monkeypatch):
    import nas.evaluation.evaluate as evaluate

    calls = []
    real = evaluate.evaluate_arch

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_arch", counted)
    stream = batch_reports(_children(20), _payload(0.05))
    first = next(stream)
    stream.close()  # returns once the running child has finished
    assert [c["proposal_id"] for c in first["children"]] == [0]
    assert len(calls) <= 2  # the first child, and at most the one running when it closed


@pytest.mark.ray
@pytest.mark.slow
def test_a_task_whose_worker_died_runs_its_children_again(tmp_path):
    """No Ray retries (``max_failures: 0``): the searcher hands the dead task's unreported
    children out once more, in a new task, so nothing is lost and nothing is recorded twice.
    ``batch_children: 1`` still runs every task as a batch (of one child)."""
    marker = tmp_path / "died"
    cfg = search_config(tmp_path, controller={"name": "random"},
                        evaluator={"dataset": "digits", "name": "nas.testing.fixtures:dies_once",
                                   "options": {"seconds": 0.02, "marker": str(marker)}},
                        latency={"mode": "skip"}, reward={"target": 5.0},
                        search={"trials": 6, "concurrency": 2, "dedup": False,
                                "executor": "tasks", "max_failures": 0, "batch_children": 1})
    out, run_dir = run_search(cfg, "dies")
    assert out.returncode == 0, out.stderr[-3000:]
    assert marker.exists()  # a worker did die
    records = lines(run_dir)
    assert len(records) == 6 and len({r["trial_id"] for r in records}) == 6
    assert all(r["status"] == "complete" for r in records)
    assert len({r["tune_trial_id"] for r in records}) == 6  # one task each
