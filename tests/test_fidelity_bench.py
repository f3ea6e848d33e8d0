"""``benchmarks/evaluator_fidelity.py`` in its smoke mode: every row, the JSON, the cache, errors.

The smoke mode scores a few cells with tiny recipes on generated images: it checks the script
runs end to end and reports every row; the real numbers come from a full run (README)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "evaluator_fidelity.py"
TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar10.csv"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not TABLE.is_file(),
                                 reason=f"NAS-Bench-201's table is not at {TABLE}")]


def run(*argv):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, argv)], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


def test_smoke_reports_every_row_and_the_cache_saves_the_work(tmp_path):
    cache = tmp_path / "scores.json"
    first = run("--smoke", "--json", "--workers", "1", "--cache", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = {r["name"]: r for r in json.loads(first.stdout)}
    expected = {"params", "macs", "train", "supernet:accuracy", "supernet:loss",
                "combo:train+nwot+synflow", "combo:supernet+nwot+synflow", *(f"zc:{p}" for p in
                                              ("nwot", "synflow", "jacob_cov", "snip",
                                               "grad_norm"))}
    assert expected <= set(rows), sorted(rows)
    for row in rows.values():
        assert {"name", "spearman", "kendall", "cells", "seconds_per_cell",
                "top10_precision"} <= set(row)
        assert -1.0 <= row["spearman"] <= 1.0 and row["seconds_per_cell"] >= 0
    assert rows["params"]["cells"] == 12 and rows["train"]["cells"] == 4
    assert rows["train"]["recipe"]["epochs"] == 1
    # a combination with the supernet carries the supernet's training in its cost and recipe
    assert rows["combo:supernet+nwot+synflow"]["recipe"]["supernet_cpu_s"] == \
        rows["supernet:accuracy"]["recipe"]["supernet_cpu_s"] > 0
    again = run("--smoke", "--json", "--workers", "1", "--cache", cache, "--rows", "cost,zc,train")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "cells scored" not in again.stderr  # every score came from the cache
    assert {r["name"]: r["spearman"] for r in json.loads(again.stdout)}["zc:nwot"] == \
        rows["zc:nwot"]["spearman"]


def test_bad_flags_are_one_line():
    out = run("--rows", "cost,bogus")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "--rows: unknown ['bogus']" in out.stderr


@pytest.mark.parametrize("options, named", [
    ('{"paths": "non_isomorphic"}', "paths: unknown key"),  # a builder option at the top
    ('{"supernet": {"paths": "bogus"}}', "bogus"),  # refused by the NB201 supernet's builder
])
def test_bad_supernet_options_are_one_line_before_anything_runs(tmp_path, options, named):
    cache = tmp_path / "scores.json"
    out = run("--rows", "supernet", "--supernet-options", options, "--cache", cache,
              "--supernet-dir", tmp_path / "supernet")
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr[-2000:]
    assert "--supernet-options" in out.stderr and named in out.stderr
    assert not cache.exists() and not (tmp_path / "supernet").exists()


def test_combinations_use_only_the_rows_asked_for():
    """``combo`` without ``train`` trains nothing: only the zero-cost combination is built."""
    out = run("--smoke", "--json", "--workers", "1", "--rows", "cost,combo")
    assert out.returncode == 0, out.stderr[-3000:]
    names = {r["name"] for r in json.loads(out.stdout)}
    assert "combo:nwot+synflow" in names
    assert not {n for n in names if n == "train" or n.startswith(("combo:train", "supernet",
                                                                 "combo:supernet"))}, names
