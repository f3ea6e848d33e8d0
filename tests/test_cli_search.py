"""`nas search` rejects bad configs with exit 2, before Ray starts, without a run folder."""

from __future__ import annotations

import pytest
import yaml

from nas.cli import main

GOOD = {
    "space": {"name": "nas.testing.fixtures:ToySpace"},
    "controller": {"name": "random"},
    "evaluator": {"dataset": "digits", "epochs": 1},
    "search": {"trials": 2},
}


pytestmark = pytest.mark.usefixtures("no_ray")


@pytest.mark.parametrize("patch, extra, message", [
    ({"bogus": 1}, [], "config.bogus: unknown key"),
    ({"search": {"trials": "many"}}, [], "search.trials='many'"),
    ({"space": {"name": "resnet"}}, [], "unknown space 'resnet'"),
    ({"controller": {"name": "bayes"}}, [], "unknown controller 'bayes'"),
    ({"search": {"trials": 0}}, [], "search.trials=0"),
    ({}, ["--trials", "-1"], "search.trials=-1"),
    ({"evaluator": {"dataset": "npz:missing.npz"}}, [], "missing.npz"),
    ({}, ["--set", "evaluator.lr=-1"], "lr"),
    ({}, ["--set", "nonsense"], "expected key.path=value"),
    ({"evaluator": {"name": "magic"}}, [], "evaluator.name: unknown evaluator 'magic'"),
    ({"evaluator": {"name": "defualt"}}, [], "(did you mean 'default'?)"),
    ({"evaluator": {"options": {"x": 1}}}, [],
     "evaluator.options.x: not an option of evaluator 'default'; it takes: no options"),
    ({"evaluator": {"name": "nas.testing.fixtures:fixed_time", "options": {"secnds": 1}}}, [],
     "evaluator.options.secnds: not an option of evaluator 'nas.testing.fixtures:fixed_time' "
     "(did you mean 'seconds'?); it takes: seconds"),
    ({"evaluator": {"epoch": 3}}, [], "evaluator.epoch: unknown key (did you mean 'epochs'?); "
                                      "known: dataset,"),
    ({}, ["--set", "evaluator.epochs=0"], "evaluator.epochs=0: must be an integer >= 1"),
    ({}, ["--set", "evaluator.device=cuda"],
     "evaluator.device='cuda' needs search.gpus_per_trial > 0"),
    ({"latency": {"device": "cuda"}}, [], "latency.device='cuda' needs search.gpus_per_trial"),
    ({"space": {"name": "mnasnet", "options": {"widht_mult": 1.0}}}, [],
     "space.options.widht_mult: not an option of space 'mnasnet' (did you mean 'width_mult'?)"),
    ({"controller": {"name": "evolution", "options": {"population": 4}}}, [],
     "controller.options.population: not an option of controller 'evolution' (did you mean "
     "'population_size'?)"),
    ({"controller": {"name": "evolutoin"}}, [], "controller.name: unknown controller "
                                                "'evolutoin' (did you mean 'evolution'?)"),
    ({"serach": {}}, [], "config.serach: unknown key (did you mean 'search'?)"),
])
def test_invalid_config_exit_2(tmp_path, capsys, patch, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **patch, "results_dir": str(tmp_path / "results")}))
    code = main(["search", str(path), "--name", "x", *extra])
    out, err = capsys.readouterr()
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert out == ""  # no banner: nothing looks as if the search had started
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".", "/abs", "-x"])
def test_name_must_stay_inside_results_dir(tmp_path, capsys, name):
    path = tmp_path / "c.yaml"
    results = tmp_path / "deep" / "results"
    path.write_text(yaml.safe_dump({**GOOD, "results_dir": str(results)}))
    assert main(["search", str(path), f"--name={name}"]) == 2
    assert "must be one folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["c.yaml"]


def test_missing_config_and_run_dir(tmp_path, capsys):
    assert main(["search", str(tmp_path / "nope.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert main(["status", str(tmp_path)]) == 2


def test_existing_run_folder_is_refused(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "results_dir": str(tmp_path / "results")}))
    (tmp_path / "results" / "x").mkdir(parents=True)
    assert main(["search", str(path), "--name", "x"]) == 2
    assert "exists; continue it with `nas resume" in capsys.readouterr().err
