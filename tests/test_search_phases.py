"""Issue 24.3 and 24.5 end to end: a supernet search started from another folder with a relative
``results_dir`` (Ray's trials run in other working folders), the progress of its long phases
off a terminal, and the temp folders it leaves behind (none)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nas.latency.conditions import activity_dir
from nas.runner.session import run_tag
from nas.testing.fixtures import TOY_SEARCH
from tests.test_supernet import TINY_SPACE

FAST = {"epochs": 2, "batch_size": 32, "calib_batches": 2, "calib_batch_size": 32, "threads": 1}


@pytest.mark.ray
@pytest.mark.slow
def test_a_relative_results_dir_supernet_search_shows_its_phases_and_cleans_up(tmp_path):
    data = {**TOY_SEARCH, "space": {"name": "mnasnet", "options": TINY_SPACE},
            "controller": {"name": "random"}, "results_dir": "results",  # relative
            "evaluator": {"dataset": "digits", "max_train": 64, "name": "supernet",
                          "options": FAST, "epochs": 1, "batch_size": 32},
            "reward": {"preset": "soft", "target": "auto"},
            "search": {"trials": 2, "concurrency": 1, "keep_weights": 0, "remeasure_top": 2,
                       "remeasure_passes": 1}}
    (tmp_path / "sn.yaml").write_text(yaml.safe_dump(data))
    # started in tmp_path, stdout a pipe (not a terminal): one plain line per step
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", "sn.yaml", "--name", "rel"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run_dir = tmp_path / "results" / "rel"
    recs = [json.loads(x) for x in (run_dir / "trials.jsonl").read_text().splitlines()]
    # every child found the supernet the driver trained (resolved against the driver's folder)
    assert len(recs) == 2 and {r["status"] for r in recs} == {"complete"}, recs[0].get("error")
    assert {r["metrics"]["supernet"]["checkpoint"] for r in recs} == {str(run_dir / "supernet")}

    lines = out.stdout.splitlines()
    # reward.target: auto, a line per child measured (8), then the target
    children = [x for x in lines if re.match(r"reward\.target auto: child \d/8 [\d.e+-]+ ms ", x)]
    assert len(children) == 8 and "child 8/8" in children[-1], out.stdout
    assert any(x.startswith("reward.target auto: ") and "median of 8" in x for x in lines)
    # the supernet: a line per epoch with its loss and an ETA
    epochs = [x for x in lines if re.match(r"supernet: epoch \d/2 loss \d+\.\d{4} \| elapsed "
                                           r"\S+ ETA \S+$", x)]
    assert [x.split()[2] for x in epochs] == ["1/2", "2/2"], out.stdout
    # the finalists' re-measurement: a line per measurement (one pass: one per finalist)
    remeasured = [json.loads(x) for x in (run_dir / "remeasured.jsonl").read_text().splitlines()]
    shown = [x for x in lines if x.startswith("re-measure: measured ")]
    assert remeasured and len(shown) >= len(remeasured), out.stdout
    for entry in remeasured:
        assert any(f"finalist {entry['arch_key'][:12]}" in x for x in shown)

    # nothing of this run is left in the temp folder: Ray's session, the quiet-window folder
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["ray_temp_dir"] and not os.path.lexists(meta["ray_temp_dir"])
    assert not os.path.lexists(activity_dir(run_tag(run_dir)))
    assert Path(meta["ray_temp_dir"]).name == f"mnas-ray-{run_tag(run_dir)}"


@pytest.mark.ray
@pytest.mark.slow
def test_a_quiet_search_shows_no_phase(tmp_path):
    """``--quiet``: no line of any phase (the auto target here), only the summary."""
    data = {**TOY_SEARCH, "results_dir": str(tmp_path / "results"),
            "reward": {"preset": "soft", "target": "auto"},
            "search": {"trials": 1, "concurrency": 1, "remeasure_top": 1, "remeasure_passes": 1}}
    (tmp_path / "q.yaml").write_text(yaml.safe_dump(data))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(tmp_path / "q.yaml"),
                          "--name", "q", "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "reward.target auto" not in out.stdout and "re-measure:" not in out.stdout
    assert "[1/1]" not in out.stdout and "next: nas analyze" in out.stdout
