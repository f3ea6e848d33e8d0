"""The benchmark scripts still run: their smoke modes, end to end (no timings asserted)."""

from __future__ import annotations

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
    for column in ("runner", "ideal s", "search s", "efficiency", "vs Tune"):
        assert column in lines[head]
    rows = [line.split() for line in lines[head + 2:head + 4]]
    assert [r[0] for r in rows] == ["0.05", "0.05"] and [r[1] for r in rows] == ["4", "4"]
    assert rows[0][2:5] == ["nas", "batch", "auto"] and " ".join(rows[1][2:5]) == "plain Ray Tune"
    assert not list(tmp_path.iterdir())  # its run folders were temporary
