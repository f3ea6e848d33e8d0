"""benchmarks/supernet_rank.py: the ground truth trained in worker processes equals the one
trained in process, and a cut of the dataset is kept apart in the cache."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench(monkeypatch):
    # importable by name, as the spawned workers import it (they get this sys.path)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("supernet_rank")


@pytest.mark.slow
def test_workers_train_the_same_ground_truth_and_the_cut_is_keyed(bench, tmp_path):
    argv = ["--child-epochs", "1", "--max-train", "320", "--gt-seeds", "2", "--json"]
    args = bench.parse_args([*argv, "--cache", str(tmp_path / "one.json")])
    data = bench.load_data(args)
    assert len(data.y_train) == 320
    space = bench.space_for_dataset("mnasnet", data, **bench.QUICKSTART_SPACE)
    # the two cheapest of six children: the workers must train the children they are given
    children = sorted(bench.sample_children(space, 6, 0),
                      key=lambda a: sum(p.numel() for p in space.build(a).parameters()))[:2]
    alone, _ = bench.ground_truth(space, children, data, args)
    pooled_args = bench.parse_args([*argv, "--workers", "2", "--cache", str(tmp_path / "two.json")])
    pooled, _ = bench.ground_truth(space, children, data, pooled_args)
    assert alone.shape == (2, 2) and len(np.unique(alone)) > 1  # the seeds differ
    np.testing.assert_array_equal(alone, pooled)
    keys = json.loads((tmp_path / "two.json").read_text())
    assert len(keys) == 4 and all(k.startswith("digits,max_train=320|1|") for k in keys)


def test_bad_arguments_exit_2(bench, capsys):
    for argv in (["--workers", "0"], ["--val-fraction", "1.5"], ["--max-train", "-1"]):
        assert bench.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("supernet_rank: error: --") and len(err.strip().splitlines()) == 1
