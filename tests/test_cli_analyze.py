"""``nas analyze`` and ``nas compare`` on crafted run folders: outputs, files, exit codes."""

from __future__ import annotations

import csv
import io
import json

import pytest

from nas.cli import main
from nas.results import RunDir

CONFIG = {"space": {"name": "nas.testing.fixtures:ToySpace", "options": {}},
          "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 1},
          "reward": {"preset": "hard", "target": 2.0}}
# id, status, accuracy, latency ms, MACs, step; hard reward at T=2: 0.9, 0.8, -, 0.475
ROWS = [(0, "complete", 0.90, 1.0, 100, 1), (1, "complete", 0.80, 0.5, 50, 2),
        (2, "failed", 0.99, 0.1, 10, 3), (3, "complete", 0.95, 4.0, 80, 4)]


def make_run(root, name, rows=ROWS, config=CONFIG):
    run = RunDir.create(root, name, config)
    for tid, status, acc, lat, macs, step in rows:
        run.append_trial({
            "trial_id": tid, "arch_key": f"k{tid}", "arch": {"width": 8 * (tid + 1), "depth": 1},
            "status": status, "error": "RuntimeError: boom" if status == "failed" else None,
            "metrics": {"accuracy": acc, "latency_ms": lat, "macs": macs, "params": macs // 10},
            "reward": 0.5 if status == "complete" else None, "step": step})
    return run.path


@pytest.fixture
def run_dir(tmp_path):
    return make_run(tmp_path, "crafted")


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("nas ")
    for needle in needles:
        assert needle in err, err
    return err


def test_analyze_json_reranked_without_files(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--format", "json", "--no-files"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["trial_id"] for r in data["top"]] == [0, 1, 3]
    assert [r["reward"] for r in data["top"]] == pytest.approx([0.9, 0.8, 0.475])
    assert data["counts"] == {"complete": 3, "failed": 1, "pruned": 0, "rejected": 0}
    assert [r["trial_id"] for r in data["pareto_latency"]] == [1, 0, 3]
    assert [r["trial_id"] for r in data["pareto_macs"]] == [1, 3]
    assert data["files"] == {} and not (run_dir / "analysis").exists()
    assert main(["analyze", str(run_dir), "--format", "json", "--no-files", "--target-ms", "0.5",
                 "--top", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["trial_id"] for r in data["top"]] == [1, 0]  # 0.8 vs 0.9 * 0.5 / 1.0
    assert data["reward"]["target"] == 0.5


def test_analyze_table_writes_report_figures_and_csvs(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "Top architectures" in out and "Failed and pruned trials" in out
    assert "RuntimeError: boom" in out and "wrote 11 files" in out
    folder = run_dir / "analysis"
    for name in ("pareto.png", "progress.png", "report.html", "top.csv", "analysis.json"):
        assert (folder / name).stat().st_size > 0
    rows = list(csv.DictReader(io.StringIO((folder / "top.csv").read_text())))
    assert [r["trial_id"] for r in rows] == ["0", "1"]


def test_analyze_csv_and_markdown(run_dir, tmp_path, capsys):
    assert main(["analyze", str(run_dir), "--format", "csv", "--out", str(tmp_path / "a")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(
        "# top\nrank,trial_id,reward,accuracy,latency_ms,latency_cond,params,macs,evals")
    assert "wrote" in captured.err and (tmp_path / "a" / "report.html").exists()
    assert main(["analyze", str(run_dir), "--format", "markdown", "--no-files",
                 "--alpha", "-0.07", "--beta", "-0.07"]) == 0
    out = capsys.readouterr().out
    assert "## Top architectures" in out and "| rank | trial_id |" in out


@pytest.mark.parametrize("argv, needles", [
    (["--format", "xml"], ["--format", "xml"]),
    (["--top", "0"], ["--top 0"]),
    (["--target-ms", "-1"], ["--target-ms=-1.0: must be a finite number > 0"]),
    (["--target-ms", "nan"], ["--target-ms=nan"]),
    (["--alpha", "inf"], ["--alpha=inf: must be a finite number"]),
])
def test_analyze_bad_flags_exit_2(run_dir, capsys, argv, needles):
    assert main(["analyze", str(run_dir), "--no-files", *argv]) == 2
    one_line_error(capsys, *needles)


def test_analyze_bad_runs_exit_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    one_line_error(capsys, "no such folder")
    (tmp_path / "plain").mkdir()
    assert main(["analyze", str(tmp_path / "plain")]) == 2
    one_line_error(capsys, "not a run folder")
    empty = RunDir.create(tmp_path, "empty", CONFIG).path
    assert main(["analyze", str(empty)]) == 2
    one_line_error(capsys, "no finished trials")
    no_reward = make_run(tmp_path, "noreward",
                         config={k: v for k, v in CONFIG.items() if k != "reward"})
    assert main(["analyze", str(no_reward), "--alpha", "-0.1", "--no-files"]) == 2
    one_line_error(capsys, "--alpha", "--target-ms")
    assert main(["analyze", str(no_reward), "--format", "json", "--no-files"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reward"] is None and [r["trial_id"] for r in data["top"]] == [0, 1, 3]


def test_compare_two_runs(tmp_path, capsys):
    a = make_run(tmp_path, "evolution")
    b = make_run(tmp_path, "random", rows=[(0, "complete", 0.7, 0.4, 60, 1),
                                           (1, "complete", 0.85, 1.0, 90, 2)])
    out_dir = tmp_path / "cmp"
    assert main(["compare", str(a), str(b), "--out", str(out_dir), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    summary = {row["run"]: row for row in data["summary"]}
    assert summary["evolution"]["best_trial"] == 0 and summary["evolution"]["failed"] == 1
    assert summary["random"]["best_reward"] == pytest.approx(0.85)
    assert summary["random"]["found_at"] == 2
    for name in ("compare.png", "compare.csv", "compare.html", "compare.json"):
        assert (out_dir / name).stat().st_size > 0
    assert main(["compare", str(a), str(b), "--target-ms", "0.5", "--no-files"]) == 0
    out = capsys.readouterr().out
    assert "Final bests" in out and "evolution" in out and "random" in out


def test_compare_needs_two_runs(run_dir, capsys):
    assert main(["compare", str(run_dir)]) == 2
    one_line_error(capsys, "at least two")
