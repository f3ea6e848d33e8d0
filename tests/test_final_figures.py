"""One number per child, explained (issue 24.4): once the finalists are re-measured, the end of a
search, ``nas status``, ``nas analyze``, ``nas export`` and the dashboard payload show the final
latency (and the reward from it), say which figure they show, and print percentiles of the same
measurement as the median beside them. Run folders are made by hand: no Ray, no search."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from nas.cli import main
from nas.latency.final import combine_passes
from nas.latency.measure import LatencyResult
from nas.latency.paired import PairedResult
from nas.results import RunDir
from nas.reward import mnas_reward

TARGET = 1.2
CONFIG = {"space": {"name": "nas.testing.fixtures:ToySpace",
                    "options": {"input_size": 8, "in_channels": 1, "num_classes": 10}},
          "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 1},
          "reward": {"preset": "soft", "target": TARGET}, "search": {"trials": 3}}
# id, accuracy, search-time latency (p10, p90), width, depth: trial 0 is the search's best
ROWS = [(0, 0.9965, 1.188, 1.15, 1.25, 32, 2), (1, 0.97, 1.30, 1.2, 1.4, 16, 1),
        (2, 0.95, 0.90, 0.85, 0.95, 8, 1)]
REFERENCE_MS = 1.477  # the reference network's latency: trial 0's ratio is about 1


def reward(accuracy, latency):
    return mnas_reward(accuracy, latency, TARGET, -0.07, -0.07)


def make_run(root):
    run = RunDir.create(root, "run", CONFIG)
    for tid, acc, lat, p10, p90, width, depth in ROWS:
        run.append_trial({
            "trial_id": tid, "arch_key": f"key{tid}", "arch": {"width": width, "depth": depth},
            "status": "complete", "error": None, "step": tid + 1, "reward": reward(acc, lat),
            "metrics": {"accuracy": acc, "latency_ms": lat, "latency_p10_ms": p10,
                        "latency_p90_ms": p90, "latency_spread": (p90 - p10) / lat,
                        "params": 3_912_345, "macs": 312_456_789, "dataset": "digits",
                        "latency_conditions": {"training_children": 1}}})
    return run


def timing(rounds, p10, p90):
    return LatencyResult(median_ms=sorted(rounds)[len(rounds) // 2], p10_ms=p10, p90_ms=p90,
                         spread=(p90 - p10), n=30, rejected=0, rounds=tuple(rounds),
                         rounds_kept=len(rounds), batch_size=1, runtime="torch",
                         device={"key": "k"})


def loaded_passes():
    """Three paired passes on a loaded machine: every round's ratio near 1, but single runs'
    ratios (a reference run pre-empted, or the model's) as low as 0.34 and as high as 1.24."""
    rounds = [(1.0, 1.02, 0.98), (0.99, 1.01, 1.03), (1.0, 0.97, 1.01)]
    return [PairedResult(ratio={"rounds": r, "median_ms": sorted(r)[1], "p10_ms": 0.34,
                                "p90_ms": 1.24}, model=timing([x * 1.5 for x in r], 0.5, 2.0),
                         reference=timing([1.5, 1.5, 1.5], 1.4, 1.6)) for r in rounds]


def final_entry():
    from nas.latency.final import combine_paired

    conditions = [{"training_children": 0, "load_1m": 8.0, "cpus": 2, "quiet": True}] * 3
    out = combine_paired(loaded_passes(), conditions, 0.1, REFERENCE_MS, "ref")
    return {"arch_key": "key0", "trial_ids": [0], **out, "search_latency_ms": 1.188,
            "by": "search", "at": 0.0}


def test_final_percentiles_come_from_the_rounds_the_median_comes_from():
    """The export printed ``latency 1.477 ms (p10 0.500, p90 1.834)``: the median of the passes'
    round ratios beside the extremes of single runs' ratios (0.34 and 1.24 x 1.477)."""
    entry = final_entry()
    rounds = [x * REFERENCE_MS for r in loaded_passes() for x in r.ratio["rounds"]]
    assert entry["latency_ms"] == pytest.approx(REFERENCE_MS)
    assert min(rounds) <= entry["latency_p10_ms"] <= entry["latency_ms"]
    assert entry["latency_ms"] <= entry["latency_p90_ms"] <= max(rounds)
    assert entry["latency_spread"] < 0.1  # the rounds agree within a few percent
    plain = combine_passes([timing((1.0, 1.02, 0.98), 0.3, 1.9),
                            timing((1.01, 0.99, 1.0), 0.4, 2.2)], [{}, {}], 0.1)
    assert 0.98 <= plain["latency_p10_ms"] <= plain["latency_ms"] <= plain["latency_p90_ms"]
    assert plain["latency_p90_ms"] <= 1.02


def printed_latency(text):
    """(median, p10, p90, search median) of the export's latency line (None where absent)."""
    line = next(x for x in text.splitlines() if x.strip().startswith("latency "))
    number = r"([0-9.]+)"
    median = float(re.search(rf"latency {number} ms", line).group(1))
    p10 = re.search(rf"p10 {number}", line)
    p90 = re.search(rf"p90 {number}", line)
    was = re.search(rf"the search measured {number} ms", line)
    return (median, p10 and float(p10.group(1)), p90 and float(p90.group(1)),
            was and float(was.group(1))), line


def test_export_prints_the_final_latency_with_its_own_percentiles(tmp_path, capsys):
    run = make_run(tmp_path)
    run.append_final_latency(final_entry())
    assert main(["export", str(run.path), "--format", "json", "--out", str(tmp_path / "c")]) == 0
    (median, p10, p90, was), line = printed_latency(capsys.readouterr().out)
    assert "final (re-measured after the search" in line
    assert median == pytest.approx(1.477, abs=1e-3) and was == pytest.approx(1.188)
    assert p10 is not None and p90 is not None and p10 <= median <= p90
    assert p10 > 1.4  # not 0.500: the same rounds as the median
    card = json.loads((tmp_path / "c" / "arch.json").read_text())
    m = card["metrics"]
    assert m["latency_p10_ms"] <= m["latency_ms"] <= m["latency_p90_ms"]


def test_a_final_latency_without_percentiles_keeps_none_of_the_searchs(tmp_path, capsys):
    """A final entry with no percentiles (written by hand, or by an older mnas) sat beside the
    search's p10/p90 (1.15, 1.25), both under its median of 1.477."""
    import nas

    run = make_run(tmp_path)
    run.append_final_latency({"arch_key": "key0", "latency_ms": 1.477, "passes": 3})
    row = nas.load_run(run.path).trials.set_index("trial_id").loc[0]
    assert row["latency_ms"] == 1.477 and pd.isna(row["latency_p90_ms"])
    assert main(["export", str(run.path), "--format", "json", "--out", str(tmp_path / "c")]) == 0
    (median, p10, p90, _), line = printed_latency(capsys.readouterr().out)
    assert median == 1.477 and p10 is None and p90 is None, line
    metrics = json.loads((tmp_path / "c" / "arch.json").read_text())["metrics"]
    assert metrics["latency_p10_ms"] is None and metrics["latency_p90_ms"] is None
    assert main(["export", str(run.path), "--trial", "1", "--format", "json", "--out",
                 str(tmp_path / "d")]) == 0
    (median, p10, p90, _), line = printed_latency(capsys.readouterr().out)
    assert "search-time" in line and (median, p10, p90) == (1.3, 1.2, 1.4)


def status(run, capsys, *flags):
    assert main(["status", str(run.path), *flags]) == 0
    out = capsys.readouterr().out
    return json.loads(out) if flags else " ".join(out.replace("│", " ").split())


def test_status_switches_to_the_final_figure_once_remeasured(tmp_path, capsys):
    run = make_run(tmp_path)
    searched = reward(0.9965, 1.188)
    best = status(run, capsys, "--json")["best"]
    assert (best["trial_id"], best["latency_ms"], best["latency_source"]) == (0, 1.188, "search")
    assert best["reward"] == pytest.approx(searched)
    assert "1.188 ms search-time" in status(run, capsys)
    run.append_final_latency(final_entry())
    best = status(run, capsys, "--json")["best"]
    final = reward(0.9965, best["latency_ms"])
    assert best["latency_source"] == "final" and best["latency_ms"] == pytest.approx(1.477)
    assert best["reward"] == pytest.approx(final) and final < searched
    assert best["search_latency_ms"] == 1.188 and best["search_reward"] == pytest.approx(searched)
    text = status(run, capsys)
    assert f"trial 0 reward {final:.4f}" in text
    assert (f"1.477 ms final, re-measured; at search time 1.188 ms gave reward {searched:.4f}"
            in text)


def summary(run, capsys, remeasured):
    from nas.cli.search_cmds import _summary
    from nas.records import best_of
    from nas.runner.result import SearchResult

    records = run.trials()
    result = SearchResult(run_dir=run.path, trials=3, target=3, failed=0, best=best_of(records),
                          complete=True, remeasured=remeasured)
    assert _summary(result) == 0
    return capsys.readouterr().out


def test_the_end_of_search_summary_shows_the_final_figure_and_says_so(tmp_path, capsys):
    run = make_run(tmp_path)
    searched = reward(0.9965, 1.188)
    out = summary(run, capsys, [])
    assert f"best: {searched:.4f} (trial 0, acc 0.9965, lat 1.188 ms search-time)" in out
    entry = final_entry()
    run.append_final_latency(entry)
    out = summary(run, capsys, [entry])
    final = reward(0.9965, entry["latency_ms"])
    assert (f"best: {final:.4f} (trial 0, acc 0.9965, lat 1.477 ms final, re-measured; at "
            f"search time 1.188 ms gave reward {searched:.4f})") in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert "final" in rows[0] and "1.477" in rows[0]  # the top table's rank 1
    assert all("search, busy 1" in row for row in rows[1:])
    assert "final = re-measured after the search" in out
    assert "median change +24.3%" in out


def test_analyze_tables_say_which_latency_they_show(tmp_path, capsys):
    run = make_run(tmp_path)
    run.append_final_latency(final_entry())
    assert main(["analyze", str(run.path), "--format", "json", "--no-files"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["latency_cond"] for r in data["top"]] == ["final", "search, busy 1",
                                                        "search, busy 1"]
    assert {r["trial_id"]: r["latency_cond"] for r in data["pareto_latency"]}[0] == "final"
    assert main(["analyze", str(run.path), "--no-files"]) == 0
    out = capsys.readouterr().out
    assert "latency_cond: final = re-measured after the search" in out


def test_the_dashboard_payload_shows_the_final_latency_and_says_so(tmp_path):
    import nas
    from nas.dashboard.payload import build_payload

    run = make_run(tmp_path)
    run.append_final_latency(final_entry())
    loaded = nas.load_run(run.path)
    analysis = loaded.analyze()
    for records in (loaded.records, None):
        payload = build_payload(analysis, records)
        by_id = {t["id"]: t for t in payload["trials"]}
        assert by_id[0]["latency_source"] == "final"
        assert by_id[0]["latency_ms"] == pytest.approx(1.477)
        assert by_id[0]["latency_search_ms"] == 1.188
        assert by_id[1]["latency_source"] == "search" and by_id[1]["latency_ms"] == 1.3
        assert payload["run"]["best"]["latency_source"] == "final"
