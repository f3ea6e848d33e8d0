"""Analysis on a crafted trials file with hand-computed answers (no Ray, no training).

The crafted run (toy space, reward ``hard`` = alpha 0, beta -1, target 2 ms, so the reward is the
accuracy at or under the target and ``acc * T / lat`` over it):

    id  status    acc   lat ms  MACs  step  reward(T=2)  reward(T=0.5)
    0   complete  0.90  1.0     100   1     0.90         0.45
    1   complete  0.80  0.5     50    3     0.80         0.80
    2   failed    0.99  0.1     10    2     -            -      (would dominate everything)
    3   complete  0.95  4.0     80    4     0.475        0.11875
    4   complete  0.85  1.5     200   5     0.85         0.28333
    5   pruned    0.50  -       -     6     -            -
    6   complete  0.70  0.3     120   7     0.70         0.70
    +   a torn last line (a crash mid-write)

Stored rewards are all 0.5 on purpose: rankings must come from the raw metrics.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import nas
from nas.analysis.analyze import (
    analyze,
    decision_stats,
    decision_summary,
    failure_summary,
    pareto_front,
    progress,
    rank_trials,
    reward_settings,
    top_k,
)
from nas.errors import UsageError
from nas.results import RunDir

ROWS = [  # id, status, acc, lat, macs, params, step, width, depth
    (0, "complete", 0.90, 1.0, 100, 10, 1, 8, 1),
    (1, "complete", 0.80, 0.5, 50, 5, 3, 16, 1),
    (2, "failed", 0.99, 0.1, 10, 1, 2, 64, 3),
    (3, "complete", 0.95, 4.0, 80, 8, 4, 8, 2),
    (4, "complete", 0.85, 1.5, 200, 20, 5, 8, 3),
    (5, "pruned", 0.50, None, None, None, 6, 32, 1),
    (6, "complete", 0.70, 0.3, 120, 12, 7, 16, 2),
]
CONFIG = {"space": {"name": "nas.testing.fixtures:ToySpace",
                    "options": {"input_size": 8, "in_channels": 1, "num_classes": 10}},
          "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 1},
          "reward": {"preset": "hard", "target": 2.0}, "search": {"trials": 8}}


def crafted_records() -> list[dict]:
    out = []
    for tid, status, acc, lat, macs, params, step, width, depth in ROWS:
        metrics = {"accuracy": acc}
        if lat is not None:
            metrics.update(latency_ms=lat, latency_p10_ms=lat * 0.9, latency_p90_ms=lat * 1.1,
                           latency_spread=0.2, latency_n=10, macs=macs, params=params)
        out.append({"trial_id": tid, "tune_trial_id": f"t{tid}", "arch_key": f"key{tid}",
                    "arch": {"width": width, "depth": depth}, "status": status,
                    "error": {"failed": "RuntimeError: boom\ntraceback", "pruned": None}.get(
                        status), "metrics": metrics, "reward": 0.5 if status == "complete"
                    else None, "timings": {}, "device": {"key": "dev"}, "node": {}, "step": step})
    return out


@pytest.fixture
def crafted(tmp_path):
    run = RunDir.create(tmp_path, "crafted", CONFIG)
    for record in crafted_records():
        run.append_trial(record)
    with open(run.trials_path, "a") as fh:
        fh.write('{"trial_id": 7, "status": "comp')  # torn by a crash
    return nas.load_run(run.path)


def hard(target):
    return reward_settings(CONFIG, target_ms=target)


def test_torn_line_skipped_and_run_config_reward(crafted):
    assert len(crafted) == 7
    reward = reward_settings(crafted.config)
    assert (reward.target, reward.alpha, reward.beta, reward.metric) == (2.0, 0.0, -1.0, "latency")


def test_ranking_recomputed_from_raw_metrics_and_failed_rows_excluded(crafted):
    ranked = rank_trials(crafted.trials, reward_settings(crafted.config))
    assert list(ranked["trial_id"]) == [0, 4, 1, 6, 3]
    assert list(ranked["rank"]) == [1, 2, 3, 4, 5]
    assert np.allclose(ranked["reward"], [0.90, 0.85, 0.80, 0.70, 0.475])


def test_rerank_for_a_new_target(crafted):
    top = crafted.best(5, target_ms=0.5)
    assert list(top["trial_id"]) == [1, 6, 0, 4, 3]
    assert np.allclose(top["reward"], [0.80, 0.70, 0.45, 0.85 * 0.5 / 1.5, 0.95 * 0.5 / 4.0])
    assert list(top.columns) == ["rank", "trial_id", "reward", "accuracy", "latency_ms",
                                 "latency_cond", "params", "macs", "evals", "reward_std",
                                 "arch_key"]
    # far target: everything is under it, so reward = accuracy
    assert list(crafted.best(2, target_ms=5.0)["trial_id"]) == [3, 0]


def test_rerank_with_new_exponents(crafted):
    soft = crafted.best(5, target_ms=1.0, alpha=-0.07, beta=-0.07)
    by_id = dict(zip(soft["trial_id"], soft["reward"], strict=True))
    assert by_id[0] == pytest.approx(0.9)  # exactly on target
    assert by_id[1] == pytest.approx(0.8397739, abs=1e-6)  # 0.8 * 2 ** 0.07
    assert by_id[3] == pytest.approx(0.95 * 4 ** -0.07)


def test_pareto_membership(crafted):
    lat = crafted.pareto()
    assert list(lat["trial_id"]) == [6, 1, 0, 3]  # 4 is dominated by 0; failed 2 excluded
    assert list(lat.columns) == ["trial_id", "evals", "accuracy", "latency_ms", "latency_cond",
                                 "reward", "arch_key"]
    macs = crafted.pareto("macs")
    assert list(macs["trial_id"]) == [1, 3]
    with pytest.raises(UsageError, match="cost='flops'"):
        pareto_front(crafted.trials, "flops")


def test_progress_best_so_far_in_finish_order(crafted):
    prog = progress(crafted.trials, hard(2.0))
    assert list(prog["trial_id"]) == [0, 2, 1, 3, 4, 5, 6]  # by step
    assert list(prog["n"]) == list(range(1, 8))
    assert np.allclose(prog["best_reward"], [0.9] * 7)
    assert math.isnan(prog["reward"][1]) and math.isnan(prog["reward"][5])
    prog = crafted.progress(target_ms=0.5)
    assert list(prog["best_trial_id"]) == [0, 0, 1, 1, 1, 1, 1]
    assert np.allclose(prog["best_reward"], [0.45, 0.45, 0.8, 0.8, 0.8, 0.8, 0.8])


def test_failure_summary(crafted):
    counts, table = failure_summary(crafted.trials)
    assert counts == {"complete": 5, "failed": 1, "pruned": 1, "rejected": 0}
    rows = {(r.status, r.error, r.count, r.trial_ids) for r in table.itertuples()}
    assert rows == {("failed", "RuntimeError: boom", 1, "2"),
                    ("pruned", "pruned by the scheduler", 1, "5")}


def test_decision_values_that_go_with_high_reward(crafted):
    stats = decision_stats(crafted.trials, hard(2.0))  # top 25% of 5 -> trials 0 and 4
    width = stats[stats["decision"] == "width"].set_index("value")
    assert set(width.index) == {8, 16}  # 32 (pruned) and 64 (failed) are not counted
    assert width.loc[8, "n"] == 3 and width.loc[8, "top_n"] == 2
    assert width.loc[8, "mean_reward"] == pytest.approx((0.9 + 0.475 + 0.85) / 3)
    assert width.loc[8, "lift"] == pytest.approx((2 / 2) / (3 / 5))
    assert width.loc[16, "top_n"] == 0 and width.loc[16, "mean_reward"] == pytest.approx(0.75)
    summary = decision_summary(stats).set_index("decision")
    assert summary.loc["width", "best_value"] == 16 and summary.loc["width", "runner_up"] == 8
    assert summary.loc["depth", "best_value"] == 1  # (0.9 + 0.8) / 2 beats depth 3's 0.85


def test_reward_settings_rules():
    with pytest.raises(UsageError, match="not both"):
        reward_settings(CONFIG, target_ms=1.0, target=2.0)
    with pytest.raises(UsageError, match="target_ms=-1"):
        reward_settings(CONFIG, target_ms=-1)
    with pytest.raises(UsageError, match="alpha"):
        reward_settings(CONFIG, alpha=float("nan"))
    no_reward = {k: v for k, v in CONFIG.items() if k != "reward"}
    with pytest.raises(UsageError, match="no reward target"):
        reward_settings(no_reward, alpha=-0.1)
    assert reward_settings(no_reward) is None
    soft = reward_settings(no_reward, target_ms=3.0)  # default exponents: MnasNet's soft
    assert (soft.alpha, soft.beta, soft.target) == (-0.07, -0.07, 3.0)
    macs = reward_settings({"reward": {"target": 100, "metric": "macs"}}, target=50)
    assert macs.metric == "macs" and macs.target == 50
    assert reward_settings({"reward": {"target": 100, "metric": "macs"}},
                           target_ms=2).metric == "latency"


def test_macs_metric_reranks_on_macs(crafted):
    config = {**CONFIG, "reward": {"target": 100, "alpha": 0, "beta": -1, "metric": "macs"}}
    ranked = rank_trials(crafted.trials, reward_settings(config))
    # MACs 100, 50, 80, 200, 120 -> rewards 0.9, 0.8, 0.95, 0.425, 0.5833
    assert list(ranked["trial_id"]) == [3, 0, 1, 6, 4]


def test_without_reward_settings_the_stored_reward_ranks(crafted):
    frame = crafted.trials.copy()
    frame.loc[frame["trial_id"] == 6, "reward"] = 0.99
    assert list(top_k(frame, 2, None)["trial_id"]) == [6, 0]  # ties broken by trial id
    with pytest.raises(UsageError, match="top=0"):
        top_k(frame, 0, None)


def test_analysis_to_dict_is_json(crafted):
    result = analyze(crafted.trials, crafted.config, name="crafted", k=3,
                     reward=reward_settings(crafted.config))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert [r["trial_id"] for r in data["top"]] == [0, 4, 1]
    assert data["counts"] == {"complete": 5, "failed": 1, "pruned": 1, "rejected": 0}
    assert result.chosen["trial_id"] == 0
    assert data["progress"][1]["reward"] is None  # NaN -> null


def test_empty_and_all_failed_runs(tmp_path):
    run = RunDir.create(tmp_path, "empty", CONFIG)
    empty = nas.load_run(run.path)
    assert empty.best(3).empty and empty.pareto().empty and empty.progress().empty
    run.append_trial(crafted_records()[2])  # the failed one only
    failed = nas.load_run(run.path)
    result = failed.analyze()
    assert result.top.empty and result.counts["failed"] == 1 and result.chosen is None
    assert list(result.progress["status"]) == ["failed"]


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_figures_and_self_contained_report(crafted, tmp_path):
    from nas.analysis.report import write_analysis

    result = crafted.analyze(k=3, target_ms=0.5)
    written = write_analysis(result, tmp_path / "out")
    assert {"pareto.png", "progress.png", "report.html", "analysis.json", "top.csv",
            "pareto_latency.csv", "pareto_macs.csv", "progress.csv", "failures.csv",
            "decisions.csv", "decision_values.csv"} <= set(written)
    width, height = _png_size(written["pareto.png"])
    assert width > 1.5 * height  # two panels side by side
    _png_size(written["progress.png"])
    page = written["report.html"].read_text()
    assert page.count("src='data:image/png;base64,") == 2
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    for title in ("Top architectures", "Pareto front: accuracy vs latency", "Failed and pruned",
                  "RuntimeError: boom", "T = 0.5 ms"):
        assert title in page
    assert [r["trial_id"] for r in json.loads(written["analysis.json"].read_text())["top"]] == \
        [1, 6, 0]
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes left no temporaries


def test_repeated_architectures_are_one_row_with_mean_and_spread():
    """The same architecture evaluated twice is one row (its mean), ranked by the mean."""
    frame = pd.DataFrame({
        "trial_id": [0, 1, 2, 3], "status": ["complete"] * 3 + ["failed"],
        "error": [None, None, None, "boom"], "arch_key": ["a", "b", "a", "a"],
        "reward": [0.8, 0.75, 0.6, None], "accuracy": [0.8, 0.75, 0.6, None],
        "latency_ms": [1.0, 2.5, 3.0, None], "macs": [10, 20, 10, None],
        "params": [5, 6, 5, None]})
    top = top_k(frame, 5, None)
    assert list(top["arch_key"]) == ["b", "a"] and list(top["evals"]) == [1, 2]
    a = top.iloc[1]
    assert a["trial_id"] == 0  # the architecture's best trial represents it
    assert a["reward"] == pytest.approx(0.7) and a["latency_ms"] == pytest.approx(2.0)
    assert a["reward_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert math.isnan(top.iloc[0]["reward_std"])  # one evaluation: no spread
    front = pareto_front(frame)
    assert sorted(front["arch_key"]) == ["a", "b"] and front["arch_key"].is_unique


def test_children_at_chance_are_named_in_the_warnings(tmp_path):
    """Accuracy at or under the stored chance bound: the analysis says how many, and how many
    of them the top table holds."""
    from nas.records import chance_bound

    bound = chance_bound(10, 288)
    assert bound == pytest.approx(0.1 + 2 * math.sqrt(0.1 * 0.9 / 288))
    run = RunDir.create(tmp_path, "chance", CONFIG)
    for record in crafted_records():
        record["metrics"]["chance_accuracy"] = bound
        if record["trial_id"] in (0, 6):
            record["metrics"]["accuracy"] = 0.1
        run.append_trial(record)
    result = nas.load_run(run.path).analyze(k=3)
    warned = [w for w in result.warnings if "at chance" in w]
    assert len(warned) == 1 and warned[0].startswith("2 of 5 complete children scored at chance")
    assert "in the top 3" in warned[0]
    assert not [w for w in analyze_warnings(tmp_path) if "at chance" in w]


def analyze_warnings(tmp_path):
    run = RunDir.create(tmp_path, "fine", CONFIG)
    for record in crafted_records():
        record["metrics"]["chance_accuracy"] = 0.15
        run.append_trial(record)
    return nas.load_run(run.path).analyze().warnings
