"""Smaller output bugs of issue 24: the end-of-search top table fits 120 columns, ``run.best(3)``
prints accuracy and latency, the decision table explains ``lift``, and ``nas bench`` says what
its columns are under a cost."""

from __future__ import annotations

import html
import json

import pandas as pd
import pytest

import nas
from nas.cli import main
from nas.results import RunDir

CONFIG = {"space": {"name": "nas.testing.fixtures:ToySpace",
                    "options": {"input_size": 8, "in_channels": 1, "num_classes": 10}},
          "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 1},
          "reward": {"preset": "hard", "target": 2.0}, "search": {"trials": 6}}
LONG_KEY = "custom-space-architecture-0123456789abcdef0123456789"


def make_run(root, rows, name="run"):
    """``rows``: (trial id, accuracy, latency ms, width, arch key, busy children)."""
    run = RunDir.create(root, name, CONFIG)
    for tid, acc, lat, width, key, busy in rows:
        run.append_trial({
            "trial_id": tid, "arch_key": key, "arch": {"width": width, "depth": 1},
            "status": "complete", "error": None, "step": tid + 1, "reward": None,
            "metrics": {"accuracy": acc, "latency_ms": lat, "params": 3_912_345 + tid,
                        "macs": 312_456_789 + tid,
                        "latency_conditions": {"training_children": busy}}})
    return run


@pytest.fixture
def wide_run(tmp_path):
    """Realistic widths: 16-hex keys (and one long custom key), 9-digit MACs, busy latencies."""
    rows = [(i, 0.9965 - i / 100, 1.188 + i / 10, 8, f"{i:04d}9f3c2b1a7e6d", 12)
            for i in range(5)]
    rows.append((5, 0.999, 1.0, 16, LONG_KEY, 3))
    return make_run(tmp_path, rows)


def table_end(text):
    return max(i for i, line in enumerate(text.splitlines()) if line.startswith("└"))


def test_the_end_of_search_top_table_fits_120_columns(wide_run, capsys):
    from nas.cli.search_cmds import _top

    _top(wide_run.path)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(len(line) <= 120 for line in table), out
    assert len(out.splitlines()[table_end(out) + 1]) <= 120  # the legend's first line
    header = next(line for line in table if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃").split("┃")] == [
        "#", "trial", "reward", "acc", "lat ms", "latency", "params", "MACs", "evals", "arch"]
    rows = [line for line in table if line.startswith("│")]
    assert len(rows) == 5, out  # one line per architecture: nothing wrapped
    assert "search, busy 12" in rows[1] and "312,456,789" in rows[1]  # trial 0, rank 2
    assert "00009f3c2b1a7e6d" in rows[1]  # a 16-digit key whole
    assert LONG_KEY[:8] in rows[0] and LONG_KEY not in out and "…" in rows[0]  # elided
    assert (f"full arch keys and every column: nas analyze {wide_run.path} (then "
            f"{wide_run.path}/analysis/top.csv)") in out
    assert LONG_KEY in (nas.load_run(wide_run.path).best(5)["arch_key"]).tolist()


def test_run_best_prints_rank_reward_accuracy_and_latency_in_80_columns(wide_run, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # what pandas reads as the terminal's width
    top = nas.load_run(wide_run.path).best(3)
    with pd.option_context("display.max_columns", 0, "display.width", 80):  # a terminal's
        text = str(top)
    head = text.splitlines()[0].split()
    assert head[:7] == ["rank", "trial_id", "reward", "accuracy", "latency_ms", "latency_cond",
                        "params"]
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "more columns: macs, evals, reward_std, arch_key" in text
    assert list(top.columns)[-1] == "arch_key" and len(top.columns) == 11
    assert top["arch_key"].tolist()[0] == LONG_KEY  # every column still in the frame
    assert LONG_KEY in top.to_string()
    with pd.option_context("display.max_columns", 0, "display.width", 250):
        monkeypatch.setenv("COLUMNS", "250")
        assert "arch_key" in str(top).splitlines()[0]  # room for all: all printed


# hard reward at T = 2 ms: 0.90, 0.80, 0.475, 0.85, 0.70; the top quarter (2 trials) are both
# width 8, but width 16 has the higher mean reward (0.75 against 0.742): its lift is 0
LIFT_ROWS = [(0, 0.90, 1.0, 8, "k0", 0), (1, 0.80, 0.5, 16, "k1", 0), (3, 0.95, 4.0, 8, "k3", 0),
             (4, 0.85, 1.5, 8, "k4", 0), (6, 0.70, 0.3, 16, "k6", 0)]
LIFT_NOTE = ("lift = the value's share of the top quarter of trials (by reward, top_n of them) / "
             "its share of all complete trials (n): 1 = no preference, > 1 = favoured, 0 = in "
             "none of the top trials")


def test_the_decision_table_explains_lift(tmp_path, capsys):
    run = make_run(tmp_path, LIFT_ROWS)
    assert main(["analyze", str(run.path), "--format", "json", "--no-files"]) == 0
    width = {r["decision"]: r for r in json.loads(capsys.readouterr().out)["decisions"]}["width"]
    assert (width["best_value"], width["n"], width["top_n"], width["lift"]) == (16, 2, 0, 0.0)
    for fmt in ("table", "markdown"):
        assert main(["analyze", str(run.path), "--no-files", "--format", fmt]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert LIFT_NOTE in out
        assert out.index("Decision values that go with high reward") < out.index(LIFT_NOTE)
    assert main(["analyze", str(run.path), "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    page = (tmp_path / "a" / "report.html").read_text()
    assert html.escape(LIFT_NOTE) in page


def test_bench_under_a_cost_says_its_values_are_the_best_reward_architectures(tmp_path, capsys):
    from nas.search.bench import synthetic_table

    table = synthetic_table(nas.get_space("nasbench201"), seed=0).head(3000)
    path = tmp_path / "t.csv"
    table.rename(columns={"accuracy": "acc"}).to_csv(path, index=False)
    base = ["bench", "--table", str(path), "--metric", "acc", "--controllers", "random",
            "--trials", "10", "--seeds", "1"]
    assert main([*base, "--latency-column", "latency_ms"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "acc of the best-reward architecture after N trials" in out
    assert "best acc after" not in out
    assert main(base) == 0
    assert "best acc after N trials" in " ".join(capsys.readouterr().out.split())


def test_analyze_top_table_fits_120_columns(wide_run, capsys):
    """``nas analyze``'s eleven top columns at realistic widths: one line per architecture with
    a 16-digit key (a longer custom key, shown whole here, folds onto a second line)."""
    assert main(["analyze", str(wide_run.path), "--no-files"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("Top architectures")
    header = lines[start + 1].split()
    assert header[:3] == ["rank", "trial_id", "reward"] and header[-1] == "arch_key"
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("latency_cond:"))
    body = lines[start + 3:end]
    assert all(len(line) <= 120 for line in lines[start:end + 2]), out
    rows = [line for line in body if len(line.split()) >= 10]  # a rank's first line
    assert [row.split()[0] for row in rows] == ["1", "2", "3", "4", "5", "6"], out
    assert body.index(rows[1]) == len(body) - 5  # the five 16-digit keys: one line each
    assert all(f"000{i}9f3c2b1a7e6d" in row and "search, busy 12" in row
               for i, row in enumerate(rows[1:])), out
    assert LONG_KEY in "".join(line.split()[-1] for line in body[:body.index(rows[1])])
