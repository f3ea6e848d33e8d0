"""``controller.warm_start``: the config key (one-line errors, exit 2), sources read from run
folders and CSV tables with every line checked, and the controller of a search warm-started."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from nas.cli import main
from nas.config import parse_config, parse_warm_start
from nas.errors import ConfigError, UsageError
from nas.experiment import build_experiment
from nas.records import TrialRecord, TrialStatus
from nas.search.warm_load import load_source, load_sources
from nas.testing.fixtures import ToySpace

BASE = {"space": {"name": "nas.testing.fixtures:ToySpace"}, "controller": {"name": "evolution"},
        "evaluator": {"dataset": "digits"}, "reward": {"target": 1.0}, "search": {"trials": 2}}


pytestmark = pytest.mark.usefixtures("no_ray")


@pytest.fixture
def space():
    return ToySpace()


def record(trial_id, width, depth, accuracy, status=TrialStatus.COMPLETE, reward=None):
    arch = {"width": width, "depth": depth}
    return TrialRecord(trial_id=trial_id, arch_key=json.dumps(arch), arch=arch, status=status,
                       metrics={"accuracy": accuracy, "latency_ms": 1.0 + depth},
                       reward=reward).to_dict()


def make_run(folder, records, space_name="nas.testing.fixtures:ToySpace"):
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"space": {"name": space_name}}))
    (folder / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


# -- the config key ---------------------------------------------------------------------------
def test_parse_warm_start_entries_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_warm_start(["results/pilot", {"path": "t.csv", "metric": "acc",
                                                 "weight": 0.5, "goal": "min"}])
    assert parsed[0] == {"path": str(tmp_path / "results/pilot"), "weight": 1.0,
                         "metric": None, "key": None, "goal": "max"}
    assert parsed[1]["weight"] == 0.5 and parsed[1]["goal"] == "min"


@pytest.mark.parametrize(("value", "needle"), [
    ("results/pilot", "controller.warm_start='results/pilot': must be a list"),
    ([3], "controller.warm_start[0]=3: must be a path or a mapping"),
    ([{"weight": 1}], "controller.warm_start[0].path=None"),
    ([{"path": "a", "weight": -1}], "controller.warm_start[0].weight=-1"),
    ([{"path": "a", "goal": "up"}], "controller.warm_start[0].goal='up': allowed: max, min"),
    ([{"path": "a", "colour": 1}], "controller.warm_start[0]"),
])
def test_parse_warm_start_errors_are_one_line_naming_the_key(value, needle):
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "controller": {"name": "random", "warm_start": value}})
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- sources --------------------------------------------------------------------------------------
def test_run_folder_source_keeps_complete_trials_with_their_raw_metrics(tmp_path, space):
    run = make_run(tmp_path / "pilot", [
        record(0, 8, 1, 0.5, reward=0.4), record(1, 64, 3, 0.9, reward=0.7),
        record(2, 16, 2, 0.6, status=TrialStatus.FAILED)])
    source = load_source({"path": str(run)}, space, "nas.testing.fixtures:ToySpace")
    assert source.metric == "accuracy" and source.name == str(run)
    assert [(r.indices, r.value) for r in source.records] == [((0, 0), 0.5), ((3, 2), 0.9)]
    assert source.records[1].metrics == {"accuracy": 0.9, "latency_ms": 4.0, "reward": 0.7}
    by_latency = load_source({"path": str(run), "metric": "latency_ms", "goal": "min"}, space,
                             "nas.testing.fixtures:ToySpace")
    assert [r.value for r in by_latency.records] == [-2.0, -4.0]  # lower latency ranks higher


def test_run_folder_source_bad_line_and_other_space_are_named(tmp_path, space):
    run = make_run(tmp_path / "bad", [record(0, 8, 1, 0.5)])
    with (run / "trials.jsonl").open("a") as fh:
        fh.write('{"trial_id": 1, "status": "complete"}\n')
    with pytest.raises(UsageError, match=r"trials.jsonl: line 2: arch_key missing"):
        load_source({"path": str(run)}, space, "nas.testing.fixtures:ToySpace")
    other = make_run(tmp_path / "other", [record(0, 8, 1, 0.5)], space_name="mnasnet")
    with pytest.raises(UsageError, match="a search of space 'mnasnet', not"):
        load_source({"path": str(other)}, space)
    wrong = make_run(tmp_path / "wrong", [record(0, 7, 1, 0.5)], space_name="toy")
    with pytest.raises(UsageError, match="trial 0: "):
        load_source({"path": str(wrong)}, space)


def test_table_source_reads_the_key_and_metric_columns(tmp_path, space):
    path = tmp_path / "t.csv"
    keys = [space.to_string(space.decode([w, d])) for w in range(4) for d in range(3)]
    rows = [f'"{k}",{i}' for i, k in enumerate(keys)] + ['"junk",1', '"width=8,depth=1",']
    path.write_text("\n".join(["arch,score", *rows]) + "\n")  # an unparsed key, a missing value
    source = load_source({"path": str(path), "key": "arch", "metric": "score"}, space)
    assert len(source.records) == 12 and source.best(1)[0].indices == (3, 2)
    with pytest.raises(UsageError, match="a table needs metric"):
        load_source({"path": str(path), "key": "arch"}, space)
    with pytest.raises(UsageError, match="column 'nope' is not in t.csv"):
        load_source({"path": str(path), "key": "arch", "metric": "nope"}, space)
    with pytest.raises(ConfigError, match=r"controller.warm_start\[0\] \(.*missing\): no such"):
        load_sources([{"path": str(tmp_path / "missing")}], space)


# -- a search's controller ------------------------------------------------------------------------
def test_build_experiment_hands_the_sources_to_the_controller(tmp_path):
    run = make_run(tmp_path / "pilot", [record(0, 8, 1, 0.5), record(1, 64, 3, 0.9)])
    config = parse_config({**BASE, "controller": {"name": "evolution",
                                                  "warm_start": [str(run)]}})
    exp = build_experiment(config)
    (source,) = exp.controller.warm_sources
    assert len(source.records) == 2
    first = exp.controller.ask()
    assert first.origin == "warm-start" and dict(first.arch.items()) == {"width": 64, "depth": 3}
    assert not build_experiment(config, warm=False).controller.warm_sources


def test_nas_config_check_exits_2_on_a_missing_source(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    data = {**BASE, "controller": {"name": "bananas", "warm_start": [str(tmp_path / "gone")]}}
    path.write_text(yaml.safe_dump(data))
    assert main(["config", "check", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "controller.warm_start[0]" in err and "no such run folder or table" in err
    assert len(err.splitlines()) == 1


def test_records_keep_their_origin():
    rec = record(0, 8, 1, 0.5)
    assert TrialRecord.from_dict({**rec, "origin": "warm-start"}).origin == "warm-start"
    with pytest.raises(UsageError, match="origin 3 is not a string"):
        TrialRecord.from_dict({**rec, "origin": 3})
    assert math.isclose(TrialRecord.from_dict(rec).metrics["accuracy"], 0.5)


def test_analysis_and_dashboard_mark_the_children_from_the_sources():
    from nas.analysis.analyze import analyze
    from nas.dashboard.payload import build_payload
    from nas.frame import trials_frame

    dicts = [{**record(0, 64, 3, 0.9, reward=0.8), "origin": "warm-start"},
             {**record(1, 8, 1, 0.4, reward=0.3), "origin": "warm-start"},
             record(2, 32, 2, 0.7, reward=0.6)]
    records = [TrialRecord.from_dict(d) for d in dicts]
    config = {"space": {"name": "toy"}, "controller": {"name": "bananas"}}
    analysis = analyze(trials_frame(records), config)
    warm = analysis.warm_start
    assert warm["trial_id"].tolist() == [0, 1] and warm["rank"].tolist() == [1, 3]
    assert "warm_start" in analysis.tables() and "warm_start" in analysis.to_dict()
    cold = analyze(trials_frame([TrialRecord.from_dict(dicts[2])]), config)
    assert cold.warm_start.empty and "warm_start" not in cold.tables()
    meta = {"warm_start": [{"name": "/runs/pilot", "records": 12, "best": 0.9, "weight": 1.0}]}
    payload = build_payload(analysis, records, meta)
    assert payload["run"]["warm_start"][0]["name"] == "/runs/pilot"
    assert payload["run"]["warm_children"] == 2
    origins = {t["id"]: t["origin"] for t in payload["trials"]}
    assert origins == {0: "warm-start", 1: "warm-start", 2: None}
    assert build_payload(cold, [records[2]], {})["run"]["warm_start"] == []
