"""``benchmarks/nb201_search.py`` in its smoke mode: one seed of a 3-child search on generated
images, its chosen cell looked up in NAS-Bench-201's table (the script, not the numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar10.csv"

pytestmark = [pytest.mark.ray, pytest.mark.slow,
              pytest.mark.skipif(not TABLE.is_file(),
                                 reason=f"NAS-Bench-201's table is not at {TABLE}")]


def test_smoke_search_reports_the_true_accuracy_of_its_pick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nb201_search.py"), "--smoke",
                          "--json", "--keep", str(tmp_path)], capture_output=True, text=True,
                         timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    (seed,) = summary["seeds"]
    truth = {}
    for line in TABLE.read_text().splitlines()[1:]:
        cell, acc = line.rsplit(",", 1)
        truth[cell] = float(acc)
    assert seed["children"] == 3 and seed["cell"] in truth
    assert seed["true_accuracy"] == truth[seed["cell"]] == summary["mean_true_accuracy"]
    assert seed["rank"] == 1 + sum(a > seed["true_accuracy"] for a in truth.values())
    assert summary["hours_per_seed"] > 0 and (tmp_path / "nb201-seed0" / "trials.jsonl").exists()


def test_a_missing_table_is_one_line(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nb201_search.py"),
                          "--table", str(tmp_path / "none.csv")], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "not found" in out.stderr
