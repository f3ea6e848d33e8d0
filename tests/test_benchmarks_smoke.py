"""The benchmark scripts still run: their smoke modes, end to end (no timings asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.ray
@pytest.mark.slow
def test_search_overhead_smoke_prints_its_table(tmp_path):
    out = subprocess.run([sys.executable, str(BENCHMARKS / "search_overhead.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["child", "s"])
    for column in ("runner", "ideal s", "search s", "efficiency", "vs Tune", "build ms",
                   "count ms"):
        assert column in lines[head]
    rows = [line.split() for line in lines[head + 2:head + 5]]
    assert [r[0] for r in rows] == ["0.05"] * 3 and [r[1] for r in rows] == ["4"] * 3
    assert [" ".join(r[2:5]) for r in rows] == ["nas tune auto", "nas tasks auto",
                                                "plain Ray Tune"]
    # a nas child's build and MAC count, from its records; Tune's children have neither
    assert all(float(r[-3]) > 0 and float(r[-2]) > 0 for r in rows[:2])
    assert rows[2][-3:-1] == ["-", "-"]
    assert not list(tmp_path.iterdir())  # its run folders were temporary


ROOT = BENCHMARKS.parent
TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar10.csv"


def _smoke(script: str, cwd: Path, timeout: int, env: dict | None = None) -> list[str]:
    """``python benchmarks/SCRIPT --smoke`` in ``cwd``: its exit code 0, its stdout's lines."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke"],
                         capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.splitlines()


def _header(lines: list[str], *columns: str, start: int = 0) -> int:
    """The index of the first line from ``start`` that names every one of ``columns``."""
    found = [i for i in range(start, len(lines)) if all(c in lines[i] for c in columns)]
    assert found, f"no table with columns {columns} in:\n" + "\n".join(lines)
    return found[0]


def _needs_table() -> None:
    if not TABLE.is_file():
        pytest.skip(f"NAS-Bench-201's table absent: {TABLE}")


def test_controller_sweep_smoke_prints_its_table(tmp_path):
    _needs_table()
    lines = _smoke("controller_sweep.py", tmp_path, timeout=300)
    summary = _header(lines, "2 seeds, 30 trials, noise 0")
    head = _header(lines, "entry", "@25", "@30", "distinct last 100", "repeats", start=summary)
    assert lines[head].split()[-1] == "s"
    rows = [line.strip() for line in lines[head + 1:]]
    assert len(rows) == 2
    assert rows[0].startswith("random ") and rows[1].startswith('evolution:{"population_size": 10}')
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_controllers_bench_smoke_prints_every_section(tmp_path):
    _needs_table()
    from nas import CONTROLLERS

    ours = list(CONTROLLERS.names())
    lines = _smoke("controllers_bench.py", tmp_path, timeout=600)
    at = 0
    for title in ("== best test accuracy", "== the same, told with Gaussian noise"):
        head = _header(lines, "controller", "@10", "@12", start=_header(lines, title, start=at))
        names = [line.split()[0] for line in lines[head + 1:head + 3 + len(ours)]]
        assert names == [*ours, "optuna-tpe", "optuna-random"]
        at = head + 3 + len(ours)
        assert lines[at].startswith(f"({len(ours) + 2} searchers x 2 seeds x 12 trials")
    head = _header(lines, "controller", "hv@12", start=_header(lines, "== multi-objective"))
    assert [line.split()[0] for line in lines[head + 1:head + 6]] == \
        ["random", "evolution", "bananas", "nsga2", "tpe"]
    assert lines[head + 6].startswith("the whole table's front:")
    at = _header(lines, "== overhead")
    for space in ("nasbench201", "mnasnet"):
        at = _header(lines, f"space {space!r}:", "12 trials told", start=at)
        head = _header(lines, "controller", "median ms", "p95 ms", "mean ms", start=at)
        assert head == at + 1
        assert [line.split()[0] for line in lines[head + 1:head + 1 + len(ours)]] == ours
        at = head + 1 + len(ours)
    assert at == len(lines)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_latency_lut_smoke_prints_its_tables(tmp_path):
    lines = _smoke("latency_lut.py", tmp_path, timeout=300)
    assert lines[0].startswith("mnasnet space, 3 archs, input 32,")
    head = _header(lines, "table", "spearman", "median |rel err|", "max |rel err|")
    assert lines[head + 1].startswith("sum of units ")
    assert lines[head + 2].startswith("calibrated (x")
    assert lines[head + 3].split()[:5] == ["arch", "sum", "of", "units", "ms"]
    rows = [line.split() for line in lines[head + 4:]]
    assert len(rows) == 3 and all(len(r) == 4 and len(r[0]) == 16 for r in rows)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_latency_stability_smoke_prints_its_table(tmp_path):
    lines = _smoke("latency_stability.py", tmp_path, timeout=300)
    assert lines[0].startswith("mnasnet space, 3 archs, input 32,")
    head = _header(lines, "estimator", "spearman", "median rel diff", "max rel diff")
    rows = lines[head + 1:]
    assert len(rows) == 3
    for row, name in zip(rows, ("median_ms (nas)", "p10_ms (nas)", "naive mean of 5"),
                         strict=True):
        assert row.startswith(name) and len(row[len(name):].split()) == 3
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_latency_under_load_smoke_prints_both_tables(tmp_path):
    temp = tmp_path / "tmp"  # the script's temporary folders: removed when it ends
    temp.mkdir()
    lines = _smoke("latency_under_load.py", tmp_path, timeout=900,
                   env={**os.environ, "TMPDIR": str(temp)})
    head = _header(lines, "mode", "spearman", "med diff", "ratio", "contended", "seconds")
    modes = ("reference (quiet machine", "reference again (quiet, paired",
             "reference again (quiet, unpaired)", "as today", "quiet mode",
             "finalists re-measured, unpaired", "finalists re-measured (paired")
    rows = lines[head + 1:head + 1 + len(modes)]
    assert all(row.startswith(mode) for row, mode in zip(rows, modes, strict=True)), rows
    assert lines[head + 1 + len(modes)].startswith("training load: ")
    head = _header(lines, "quiet windows", "wall s", "train s", "paused s", "lost", "latency s",
                   start=head)
    assert "1 epochs on digits (64 images)" in lines[head - 1]
    assert [line.split()[0] for line in lines[head + 1:head + 3]] == ["off", "on"]
    assert lines[head + 3].startswith("wall time with quiet windows / without:")
    assert len(lines) == head + 4
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"]
    assert not list(temp.glob("mnas-*"))  # torch may leave its own caches there


@pytest.mark.slow
def test_train_throughput_smoke_prints_its_table(tmp_path):
    lines = _smoke("train_throughput.py", tmp_path, timeout=300)
    assert lines[0].startswith("digits train=64 batch=32 threads=1 reps=1 ")
    head = _header(lines, "model", "nas img/s", "minimal img/s", "ratio", "per-rep")
    assert set(lines[head + 1]) == {"-"}
    rows = lines[head + 2:]
    assert [row[:26].strip() for row in rows] == ["nasbench201 C16 N2", "mnasnet w0.5 (sampled)"]
    assert all(len(row[26:].split()) == 4 for row in rows)  # 3 numbers and one rep's ratio
    assert not list(tmp_path.iterdir())


def test_supernet_rank_smoke_prints_its_table(tmp_path):
    lines = _smoke("supernet_rank.py", tmp_path, timeout=300)
    head = _header(lines, "child", "stand-alone", "supernet", "sn loss", "params")
    assert len(lines[head + 1:head + 5]) == 4 and all(len(row.split()) == 5
                                                      for row in lines[head + 1:head + 5])
    rows = {line[:28].strip(): line[28:].strip() for line in lines[head + 6:]}
    for key in ("kendall tau", "by validation loss", "parameter count", "ground truth self-tau",
                "supernet training (s)"):
        assert key in rows, lines
    assert rows["n"] == "4" and rows["ground truth seeds"] == "2"
    assert not list(tmp_path.iterdir())  # the supernet's folder was temporary
