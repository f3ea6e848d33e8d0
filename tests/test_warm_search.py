"""A warm start end to end on a real local Ray: a search warm-starts another, through the CLI
and the Python API; the children from the source's knowledge are marked, analyzed and resumed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nas
from nas.testing.fixtures import TOY_SEARCH

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FAST = {"name": "nas.testing.fixtures:fixed_time", "dataset": "digits",
        "options": {"seconds": 0.01}}


def write_config(tmp_path, name, **patch):
    data = {**TOY_SEARCH, "evaluator": FAST, "latency": {"mode": "skip"},
            "reward": {"target": 5.0}, "search": {"trials": 6, "concurrency": 1},
            **patch, "results_dir": str(tmp_path / "results")}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def lines(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "trials.jsonl").read_text().splitlines()]


def test_a_search_warm_starts_another_cli_and_api(tmp_path):
    source_cfg = write_config(tmp_path, "source", controller={"name": "random"})
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(source_cfg), "--name",
                          "pilot", "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    pilot = tmp_path / "results" / "pilot"
    done = [r for r in lines(pilot) if r["status"] == "complete"]
    best = max(done, key=lambda r: r["metrics"]["accuracy"])

    target_cfg = write_config(tmp_path, "target", controller={
        "name": "bananas", "options": {"warm_first": 2}, "warm_start": [str(pilot)]})
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(target_cfg), "--name",
                          "warm", "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    warm = tmp_path / "results" / "warm"
    records = sorted(lines(warm), key=lambda r: r["trial_id"])
    assert len(records) == 6  # the budget counts the target's own children only
    assert records[0]["origin"] == "warm-start" and records[0]["arch"] == best["arch"]
    assert [r.get("origin") for r in records[2:]] == [None] * 4
    meta = json.loads((warm / "run.json").read_text())
    assert meta["warm_start"][0]["name"] == str(pilot)
    assert meta["warm_start"][0]["records"] == len({r["arch_key"] for r in done})

    shown = subprocess.run([sys.executable, "-m", "nas.cli", "analyze", str(warm), "--no-files",
                            "--format", "json"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    analysis = json.loads(shown.stdout)
    assert [row["trial_id"] for row in analysis["warm_start"]] == [0, 1]

    run = nas.search(target_cfg, name="warm-api", trials=4, progress=False)
    assert run.analyze().warm_start["trial_id"].tolist() == [0, 1]
    state = json.loads((run.path / "controller.json").read_text())["state"]
    assert len(state["warm_start"]) == 1  # a resume continues from the saved sources
