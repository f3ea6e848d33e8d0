"""Finalists re-measured (issue 13.3): interleaved quiet passes, kept beside the search's number,
and used by rankings, fronts and exports."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nas
from nas.cli import main
from nas.latency.final import combine_passes, remeasure_archs
from nas.latency.measure import LatencyConfig, LatencyResult
from nas.results import RunDir
from nas.runner.remeasure import finalists, quiet_training_lost, remeasure_run
from nas.testing.fixtures import ToySpace

FAST = {"repeats": 6, "warmup": 1, "rounds": 2, "threads": 1}


def result(median, rounds, p10=None, p90=None, n=10):
    return LatencyResult(median_ms=median, p10_ms=p10 or median * 0.9, p90_ms=p90 or median * 1.1,
                         spread=0.2, n=n, rejected=0, rounds=tuple(rounds), rounds_kept=len(rounds),
                         batch_size=1, runtime="torch", device={"key": "k"})


def test_passes_combine_into_one_median_without_the_disturbed_rounds():
    passes = [result(1.0, [1.0, 1.02]), result(1.5, [1.5, 2.0]), result(1.01, [1.01, 0.99])]
    conds = [{"training_children": 0, "load_1m": 0.5, "cpus": 2, "quiet": True}] * 2 + [
        {"training_children": 1, "load_1m": 1.5, "cpus": 2, "quiet": False}]
    out = combine_passes(passes, conds, tolerance=0.1)
    assert out["latency_ms"] == pytest.approx(np.median([1.0, 1.02, 1.01, 0.99]))
    assert out["rounds_kept"] == 4 and out["rounds_total"] == 6 and out["latency_n"] == 30
    assert out["pass_medians"] == [1.0, 1.5, 1.01] and out["passes"] == 3
    assert out["conditions"] == {"training_children": 1, "load_1m": 1.5, "cpus": 2,
                                 "quiet": False}


def test_finalists_are_measured_interleaved_in_quiet_windows(tmp_path):
    space = ToySpace()
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(3)]
    order = []
    out = remeasure_archs(space, [*archs, archs[0]], LatencyConfig(**FAST), passes=2,
                          activity=str(tmp_path / "a"),
                          on_measured=lambda key, done, total: order.append((key, done, total)))
    assert set(out) == {a.key for a in archs}  # a repeat is measured once
    assert [(d, t) for _, d, t in order] == [(i, 6) for i in range(1, 7)]
    passes = [[k for k, _, _ in order[:3]], [k for k, _, _ in order[3:]]]
    assert all(sorted(p) == sorted(out) for p in passes)  # every pass covers every finalist
    given = [a.key for a in archs]
    assert passes[0] != given or passes[1] != given  # shuffled, not the order given
    for entry in out.values():
        assert entry["passes"] == 2 and entry["latency_ms"] > 0
        assert entry["conditions"]["quiet"] is True
        assert entry["conditions"]["training_children"] == 0


def toy_run(tmp_path, latencies=(1.0, 2.0, 3.0, 4.0), accuracy=(0.80, 0.85, 0.9, 0.5)):
    space = ToySpace()
    rng = np.random.default_rng(3)
    cfg = {"space": {"name": "nas.testing.fixtures:ToySpace", "options": dict(space.options)},
           "controller": {"name": "random"}, "evaluator": {"dataset": "digits", "epochs": 1},
           "latency": FAST, "reward": {"preset": "soft", "target": 2.0},
           "search": {"trials": len(latencies)}}
    run = RunDir.create(tmp_path, "r", cfg)
    seen = set()
    for tid, (lat, acc) in enumerate(zip(latencies, accuracy, strict=True)):
        arch = space.sample(rng)
        while arch.key in seen:
            arch = space.sample(rng)
        seen.add(arch.key)
        run.append_trial({"trial_id": tid, "arch_key": arch.key, "arch": dict(arch.items()),
                          "status": "complete", "error": None, "step": tid + 1,
                          "metrics": {"accuracy": acc, "latency_ms": lat,
                                      "latency_conditions": {"training_children": 1}},
                          "timings": {"train_s": 10.0, "train_paused_s": 0.5}})
    return run


def test_the_final_latency_is_what_rankings_and_fronts_use(tmp_path):
    run = toy_run(tmp_path)
    before = nas.load_run(run.path)
    assert list(before.best(4)["trial_id"]) == [2, 1, 0, 3]
    key0 = before.trials.loc[0, "arch_key"]
    run.append_final_latency({"arch_key": key0, "latency_ms": 0.1, "passes": 3,
                              "conditions": {"training_children": 0, "quiet": True}})
    after = nas.load_run(run.path)
    assert list(after.best(4)["trial_id"])[0] == 0  # 10x faster now: it ranks first
    row = after.trials.set_index("trial_id").loc[0]
    assert row["latency_ms"] == 0.1 and row["latency_search_ms"] == 1.0
    assert bool(row["latency_final"]) and row["latency_conditions.training_children"] == 0
    assert row["latency_search_conditions.training_children"] == 1
    assert not bool(after.trials.set_index("trial_id").loc[1, "latency_final"])
    assert 0 in list(after.pareto()["trial_id"])
    assert json.loads(run.trials_path.read_text().splitlines()[0])["metrics"]["latency_ms"] == 1.0


def test_finalists_are_the_top_k_and_the_latency_front(tmp_path):
    run = toy_run(tmp_path)
    records = run.trials()
    reward = nas.load_run(run.path).reward()
    keys = {r.trial_id: r.arch_key for r in records}
    # top 1 by reward is trial 2; the front (accuracy up, latency down) is trials 0, 1, 2
    assert finalists(records, reward, 1) == [keys[2], keys[0], keys[1]]
    assert finalists(records, reward, 0) == [keys[0], keys[1], keys[2]]
    assert quiet_training_lost(records) == pytest.approx(0.05)


def test_nas_remeasure_appends_both_numbers_and_exports_state_the_final_one(tmp_path, capsys):
    from nas.export.card import export_trial

    run = toy_run(tmp_path)
    assert main(["remeasure", str(run.path), "--top", "1", "--passes", "2"]) == 0
    out = capsys.readouterr().out
    assert "latency of 3 finalists re-measured (2 passes)" in out
    lines = [json.loads(x) for x in run.final_path.read_text().splitlines()]
    assert len(lines) == 3 and {e["passes"] for e in lines} == {2}
    by_trial = {e["trial_ids"][0]: e for e in lines}
    assert by_trial[1]["search_latency_ms"] == 2.0 and by_trial[1]["by"] == "remeasure"
    assert by_trial[1]["conditions"]["quiet"] is True
    loaded = nas.load_run(run.path)
    row = loaded.trials.set_index("trial_id").loc[1]
    assert row["latency_ms"] == by_trial[1]["latency_ms"] and row["latency_search_ms"] == 2.0
    card = export_trial(loaded, trial_id=1, out=tmp_path / "card", formats="json").card
    assert card["provenance"]["latency"]["source"] == "remeasured"
    assert card["provenance"]["latency"]["median_ms"] == by_trial[1]["latency_ms"]
    assert card["provenance"]["latency"]["search_median_ms"] == 2.0


def test_remeasure_refuses_bad_input_and_a_folder_in_use(tmp_path, capsys):
    run = toy_run(tmp_path)
    assert main(["remeasure", str(run.path), "--top", "-1"]) == 2
    assert "--top=-1: must be an integer >= 0" in capsys.readouterr().err
    other = RunDir.open(run.path)
    other.lock("search")
    try:
        with pytest.raises(Exception, match="in use by `nas search`"):
            remeasure_run(run.path)
    finally:
        other.unlock()
    assert not run.final_path.exists()


def test_a_finalist_that_falls_out_lets_the_next_one_in(tmp_path):
    """Chosen again with the final numbers applied: trial 2 re-measures 10x slower, so trial 3
    (dominated by trial 2 before) joins the front and is measured in a second round."""
    from nas.runner.remeasure import remeasure_finalists

    run = toy_run(tmp_path, latencies=(1.0, 2.0, 3.0, 5.0), accuracy=(0.80, 0.85, 0.90, 0.88))
    keys = {r.trial_id: r.arch_key for r in run.trials()}
    final = {keys[0]: 1.0, keys[1]: 2.0, keys[2]: 30.0, keys[3]: 5.0}
    calls = []

    def measure(space, archs, config, passes):
        calls.append(sorted(a.key for a in archs))
        return {a.key: {"latency_ms": final[a.key], "passes": passes} for a in archs}

    loaded = nas.load_run(run.path)
    entries = remeasure_finalists(run, ToySpace(), LatencyConfig(**FAST), loaded.reward(),
                                  top=1, measure=measure)
    assert calls == [sorted([keys[0], keys[1], keys[2]]), [keys[3]]]
    assert sorted(e["arch_key"] for e in entries) == sorted(keys.values())


def test_later_rounds_are_put_in_the_first_rounds_milliseconds(tmp_path):
    """Each round is a new paired session whose reference may run at another speed: a
    newcomer's ratio is multiplied by the first round's reference latency, not its own."""
    from nas.runner.remeasure import remeasure_finalists

    run = toy_run(tmp_path, latencies=(1.0, 2.0, 3.0, 5.0), accuracy=(0.80, 0.85, 0.90, 0.88))
    keys = {r.trial_id: r.arch_key for r in run.trials()}
    ratios = {keys[0]: 1.0, keys[1]: 2.0, keys[2]: 30.0, keys[3]: 5.0}
    sessions = iter([1.0, 2.0])  # the reference's ms: the second session ran twice as slow

    def measure(space, archs, config, passes):
        ref = next(sessions)
        return {a.key: {"latency_ms": ratios[a.key] * ref, "latency_p10_ms": ratios[a.key] * ref,
                        "latency_p90_ms": ratios[a.key] * ref, "method": "paired",
                        "ratio": ratios[a.key], "pass_medians": [ratios[a.key] * ref],
                        "reference": {"arch_key": "r", "latency_ms": ref}} for a in archs}

    loaded = nas.load_run(run.path)
    entries = remeasure_finalists(run, ToySpace(), LatencyConfig(**FAST), loaded.reward(),
                                  top=1, measure=measure)
    by_key = {e["arch_key"]: e for e in entries}
    assert by_key[keys[3]]["latency_ms"] == pytest.approx(5.0)  # not 10.0
    assert by_key[keys[3]]["reference"]["session_ms"] == 2.0
    assert by_key[keys[0]]["latency_ms"] == pytest.approx(1.0)
