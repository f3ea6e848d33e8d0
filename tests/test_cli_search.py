"""`nas search` rejects bad configs with exit 2, before Ray starts, without a run folder."""

from __future__ import annotations

import pytest
import yaml

import nas.runner.driver
from nas.cli import main

GOOD = {
    "space": {"name": "nas.testing.fixtures:ToySpace"},
    "controller": {"name": "random"},
    "evaluator": {"dataset": "digits", "epochs": 1},
    "search": {"trials": 2},
}


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start for an invalid config")

    monkeypatch.setattr(nas.runner.driver, "start_ray", refuse)


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
])
def test_invalid_config_exit_2(tmp_path, capsys, patch, extra, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **patch, "results_dir": str(tmp_path / "results")}))
    code = main(["search", str(path), "--name", "x", *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists()


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
