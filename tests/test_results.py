"""Run folders: the append-only trials store, torn lines, load_run, parquet."""

from __future__ import annotations

import json

import pytest

import nas
from nas.errors import UsageError
from nas.records import TrialStatus
from nas.results import RunDir, read_trials
from nas.run import load_run


def rec(i, status="complete", reward=0.5, **metrics):
    return {"trial_id": i, "status": status, "error": None if status == "complete" else "boom",
            "arch_key": f"k{i}", "arch": {"width": 8, "depth": i % 3 + 1},
            "metrics": {"accuracy": 0.9, "latency_ms": 1.0 + i, **metrics},
            "reward": reward if status == "complete" else None, "timings": {"train_s": 1.5},
            "node": {"node_id": "n1"}, "device": {"cpu": "x"}, "step": i + 1}


@pytest.fixture
def run(tmp_path):
    return RunDir.create(tmp_path, "r1", {"space": {"name": "toy"}, "search": {"trials": 3}})


def test_create_refuses_existing_folder(tmp_path, run):
    assert run.read_config()["space"]["name"] == "toy"
    with pytest.raises(UsageError, match="exists; continue it with `nas resume"):
        RunDir.create(tmp_path, "r1", {})
    with pytest.raises(UsageError, match="is not a run folder"):
        RunDir.open(tmp_path / "nothing")


def test_append_and_read_back(run):
    for i in range(3):
        run.append_trial(rec(i, status="failed" if i == 1 else "complete"))
    records = run.trials()
    assert [r.trial_id for r in records] == [0, 1, 2]
    assert records[1].status is TrialStatus.FAILED and records[1].reward is None
    text = run.trials_path.read_text()
    assert text.count("\n") == 3 and text.endswith("\n")


def test_nan_is_stored_as_null(run):
    run.append_trial(rec(0, reward=float("nan")))
    assert json.loads(run.trials_path.read_text())["reward"] is None


def test_torn_last_line_is_skipped_and_repaired(run):
    run.append_trial(rec(0))
    run.append_trial(rec(1))
    with open(run.trials_path, "a") as fh:
        fh.write('{"trial_id": 2, "status": "comp')  # crash mid-write
    assert [r.trial_id for r in read_trials(run.path)] == [0, 1]
    assert len(load_run(run.path)) == 2
    assert run.repair_trials() == 1
    run.append_trial(rec(2))
    assert [r.trial_id for r in run.trials()] == [0, 1, 2]


def test_corrupt_middle_line_is_an_error(run):
    run.trials_path.write_text(f"{json.dumps(rec(0))}\nnot json\n{json.dumps(rec(2))}\n")
    with pytest.raises(UsageError, match="line 2 is not valid JSON"):
        run.trials()


def test_load_run_frame_and_parquet(run):
    for i in (2, 0, 1):
        run.append_trial(rec(i))
    loaded = nas.load_run(run.path)
    frame = loaded.trials
    assert list(frame["trial_id"]) == [0, 1, 2]
    for col in ("status", "reward", "accuracy", "latency_ms", "time.train_s", "node.node_id",
                "arch.width", "arch.depth", "device.cpu"):
        assert col in frame.columns
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = run.write_parquet()
    assert pd.read_parquet(path)["trial_id"].tolist() == [0, 1, 2]


def test_meta_merges(run):
    run.write_meta({"status": "running", "driver_pid": 5})
    meta = run.write_meta({"status": "complete"})
    assert meta["driver_pid"] == 5 and meta["status"] == "complete" and meta["segments"] == 0
