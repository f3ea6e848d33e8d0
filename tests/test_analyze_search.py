"""Analysis and export on a run folder made by one real small search (local Ray, toy space).

The search runs once for this module, through the Python API (``nas.search``), with the reward
target measured (``reward.target: auto``) and TensorBoard on; every test reads its run folder.
"""

from __future__ import annotations

import json
import shutil

import pytest

import nas
from nas.cli import main
from nas.testing.fixtures import TOY_SEARCH

pytestmark = [pytest.mark.ray, pytest.mark.slow]

TOY = TOY_SEARCH


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    run = nas.search(TOY, name="real", results_dir=root, progress=False,
                     overrides={"reward.target": "auto", "logging.tensorboard": True,
                                "search.remeasure_top": 5})
    assert len(run) == 6
    return run.path


def test_the_python_api_made_this_run(run_dir):
    """nas.search returned the Run; the target was measured and stored; every child has its
    TensorBoard folder; the best 3 children's weights are kept; nas.resume re-runs nothing."""
    from nas.run import Run

    run = nas.load_run(run_dir)
    assert run_dir.name == "real" and run.config["search"]["trials"] == 6
    target = run.config["reward"]["target"]  # measured from sampled children, then stored
    assert isinstance(target, float) and 0 < target < 1000 and run.reward().target == target
    events = {p.parent.name for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    assert events == {f"trial-{t}" for t in run.trials["trial_id"]}
    kept = {int(p.stem.split("-")[1]) for p in (run_dir / "weights").glob("trial-*")}
    assert kept == set(run.best(3)["trial_id"])
    again = nas.resume(run_dir, progress=False)  # already complete: nothing re-run
    assert isinstance(again, Run) and list(again.trials["trial_id"]) == list(run.trials["trial_id"])


def test_rewards_recomputed_from_raw_metrics_match_the_search(run_dir):
    run = nas.load_run(run_dir)
    assert len(run.trials) == 6
    ranked = run.best(6)
    rows = run.trials.set_index("trial_id")
    assert len(ranked) == (run.trials["status"] == "complete").sum() > 0
    # the search's stored reward comes from the search's latency; the ranking's from the final
    # (re-measured) one where there is one, the search's elsewhere
    reward = run.reward()
    searched = rows["latency_search_ms"].fillna(rows["latency_ms"])
    for tid, value in zip(ranked["trial_id"], ranked["reward"], strict=True):
        acc = rows.loc[tid, "accuracy"]
        assert reward({"accuracy": acc, "latency_ms": searched[tid]}) == \
            pytest.approx(rows.loc[tid, "reward"])
        assert reward({"accuracy": acc, "latency_ms": rows.loc[tid, "latency_ms"]}) == \
            pytest.approx(value)
    assert rows["latency_final"].any()  # the end of the search re-measured its finalists
    assert list(ranked["reward"]) == sorted(ranked["reward"], reverse=True)
    front = run.pareto()
    assert 1 <= len(front) <= len(ranked)
    assert int(ranked.iloc[0]["trial_id"]) in set(front["trial_id"])  # the best is non-dominated
    prog = run.progress()
    assert len(prog) == 6 and prog["best_reward"].iloc[-1] == pytest.approx(ranked["reward"][0])


def test_rerank_for_another_target_changes_only_the_scores(run_dir):
    run = nas.load_run(run_dir)
    latency = run.trials.set_index("trial_id")["latency_ms"]
    accuracy = run.trials.set_index("trial_id")["accuracy"]
    target = float(latency.median())
    top = run.best(6, target_ms=target, alpha=0.0, beta=-1.0)
    for tid, reward in zip(top["trial_id"], top["reward"], strict=True):
        lat, acc = latency[tid], accuracy[tid]
        assert reward == pytest.approx(acc if lat <= target else acc * target / lat)


def test_cli_analyze_writes_report(run_dir, capsys):
    assert main(["analyze", str(run_dir), "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "Top architectures" in out and "Pareto front: accuracy vs latency" in out
    for name in ("pareto.png", "progress.png", "report.html", "analysis.json"):
        assert (run_dir / "analysis" / name).stat().st_size > 0
    data = json.loads((run_dir / "analysis" / "analysis.json").read_text())
    assert data["counts"]["complete"] + data["counts"]["failed"] + data["counts"]["pruned"] == 6


def test_export_best_and_build_it_back(run_dir, tmp_path, capsys):
    out = tmp_path / "best"
    assert main(["export", str(run_dir), "--rank", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    card = json.loads((out / "arch.json").read_text())
    assert card["provenance"]["device"]["torch"] and card["provenance"]["dataset"] == "digits"
    assert card["provenance"]["epochs"] == 2 and card["metrics"]["latency_n"] > 0
    assert card["model"]["params"] == card["metrics"]["params"]
    assert (out / "model.pt2").exists() and (out / card["files"]["weights"]).exists()
    if "onnx" in card["files"]:
        assert "max abs diff" in text and card["checks"]["onnx"]["max_abs_diff"] < 1e-4
    model = nas.build_from_card(out)
    assert sum(p.numel() for p in model.parameters()) == card["metrics"]["params"]
    assert main(["build", str(out)]) == 0


def test_compare_with_a_shorter_run(run_dir, tmp_path, capsys):
    short = tmp_path / "short"
    shutil.copytree(run_dir, short, ignore=shutil.ignore_patterns("tune", "analysis"))
    lines = (short / "trials.jsonl").read_text().splitlines(keepends=True)
    (short / "trials.jsonl").write_text("".join(lines[:3]))
    assert main(["compare", str(run_dir), str(short), "--out", str(tmp_path / "cmp"),
                 "--format", "json"]) == 0
    summary = {row["run"]: row for row in json.loads(capsys.readouterr().out)["summary"]}
    assert summary["real"]["trials"] == 6 and summary["short"]["trials"] == 3
    assert summary["real"]["best_reward"] >= summary["short"]["best_reward"]
    assert (tmp_path / "cmp" / "compare.png").stat().st_size > 0
