"""``nas --version``, ``nas config show`` / ``check`` and the schema of :mod:`nas.schema`."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import pytest
import yaml

from nas._version import __version__
from nas.cli import build_parser, main
from nas.cli.config_cmds import check_config, yaml_value
from nas.config import parse_config
from nas.errors import ConfigError
from nas.experiment import _evaluator_keys, build_experiment
from nas.schema import REQUIRED, SETTINGS_CLASSES, config_keys, doc_args, resolved_config

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
BASE = {"space": {"name": "nas.testing.fixtures:ToySpace"}, "controller": {"name": "random"},
        "reward": {"target": 1.0}, "search": {"trials": 2}}
# values for the keys without a default
SAMPLES = {"space.name": "nas.testing.fixtures:ToySpace", "controller.name": "random",
           "reward.target": 1.0}


pytestmark = pytest.mark.usefixtures("no_ray")


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"nas {__version__}"


def test_every_field_of_every_settings_class_is_a_documented_key():
    rows = config_keys()
    sources = {r.source for r in rows}
    settings = set(SETTINGS_CLASSES)
    for cls in SETTINGS_CLASSES:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            # a field holding another settings class is that class's keys (EvalSettings.train)
            nested = {hints[f.name], *typing.get_args(hints[f.name])} & settings
            # a section of the config (SearchConfig.search) is the keys under it
            section = cls.__name__ == "SearchConfig" and any(
                r.key.startswith(f.name + ".") for r in rows)
            assert f"{cls.__name__}.{f.name}" in sources or nested or section, \
                f"{cls.__name__}.{f.name} is not in the schema"
    assert all(r.meaning for r in rows), [r.key for r in rows if not r.meaning]
    assert len({r.key for r in rows}) == len(rows)


def test_the_evaluator_keys_are_the_parsers():
    train, data = _evaluator_keys()
    schema = {r.key for r in config_keys() if r.key.startswith("evaluator.")}
    assert schema == {f"evaluator.{k}" for k in [*train, *data, "name", "options"]}


def test_every_documented_key_is_accepted_by_the_config_parser(tmp_path):
    path = write(tmp_path, BASE)
    rows = config_keys()
    assert {r.key for r in rows if r.default is REQUIRED} == set(SAMPLES)
    rejected = []
    for row in rows:
        value = SAMPLES.get(row.key, row.default)
        try:
            check_config(path, [f"{row.key}={yaml_value(value)}"])
        except ConfigError as exc:
            rejected.append(f"{row.key}: {exc}")
    assert not rejected, "\n".join(rejected)
    with pytest.raises(ConfigError, match="search.trialz: unknown key"):  # the check can fail
        check_config(path, ["search.trialz=3"])


def test_docstring_args_are_read_entry_by_entry():
    class Sample:
        """Title.

        Args:
            a, b: shared meaning
                continued here.
            c: see :class:`x.Y` and ``z``.

        Returns: nothing.
        """

    assert doc_args(Sample) == {"a": "shared meaning continued here.",
                                "b": "shared meaning continued here.", "c": "see `x.Y` and `z`."}


@pytest.fixture
def quickstart_ran(tmp_path, monkeypatch):
    """A working directory where the quick start has already run: ``results/quickstart`` exists
    (as it does in a checkout after the README's first command)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "quickstart").mkdir(parents=True)
    return tmp_path


def test_resolved_config_fills_defaults_and_round_trips(quickstart_ran):
    config, exp = check_config(QUICKSTART, [], new_run=False)
    resolved = resolved_config(config, exp.settings, exp.space.options, exp.controller.options)
    for row in config_keys():
        section, _, key = row.key.partition(".")
        assert (key in resolved[section]) if key else (section in resolved), row.key
    assert resolved["space"]["options"]["input_size"] == 8  # sized for the 8x8 digits
    assert resolved["evaluator"]["epochs"] == 6 and resolved["evaluator"]["momentum"] == 0.9
    assert resolved["reward"]["alpha"] == -0.07 and resolved["latency"]["service"] is False
    again = parse_config(yaml.safe_load(yaml.safe_dump(resolved)))
    exp2 = build_experiment(again)
    assert resolved_config(again, exp2.settings, exp2.space.options,
                           exp2.controller.options) == resolved


def test_config_show_lists_the_keys(capsys):
    code, out, _ = run(capsys, "config", "show")
    assert code == 0
    for key in ("search.trials", "evaluator.lr", "latency.repeats", "reward.preset", "ray.address"):
        assert key in out, key
    code, out, _ = run(capsys, "config", "show", "--json")
    rows = {r["key"]: r for r in json.loads(out)["keys"]}
    assert rows["search.trials"] == {"key": "search.trials", "type": "int", "required": False,
                                     "default": 20, "meaning": rows["search.trials"]["meaning"],
                                     "source": "SearchSettings.trials"}
    assert rows["space.name"]["required"] and rows["evaluator.max_train"]["type"] == "int | null"


def test_config_show_with_a_config_prints_it_resolved(capsys, quickstart_ran):
    code, out, _ = run(capsys, "config", "show", QUICKSTART, "--set", "evaluator.epochs=2",
                       "--json")
    resolved = json.loads(out)["resolved"]
    assert code == 0 and resolved["evaluator"]["epochs"] == 2
    assert resolved["space"]["options"]["in_channels"] == 1
    code, out, _ = run(capsys, "config", "show", QUICKSTART)
    shown = yaml.safe_load(out[out.index("\nname:"):])
    assert code == 0 and shown["evaluator"]["batch_size"] == 64
    assert run(capsys, "config", "show", "--set", "a=1")[0] == 2
    # check is what `nas search` would do: the quick start's run exists, so it is refused
    code, _, err = run(capsys, "config", "check", QUICKSTART)
    assert code == 2 and "results/quickstart' exists" in err
    assert run(capsys, "config", "check", QUICKSTART, "--set", "name=another")[0] == 0


def test_config_check_ok(tmp_path, capsys):
    path = write(tmp_path, BASE)
    code, out, _ = run(capsys, "config", "check", path, "--set", "search.trials=5")
    assert code == 0
    assert out.strip() == (f"ok: {path} (space nas.testing.fixtures:ToySpace, controller random, "
                           "5 trials)")


@pytest.mark.parametrize("patch, extra, message", [
    ({"serach": {}}, [], "config.serach: unknown key (did you mean 'search'?)"),
    ({}, ["--set", "evaluator.epoch=3"], "evaluator.epoch: unknown key (did you mean 'epochs'?)"),
    ({"search": {"trials": 0}}, [], "search.trials=0: must be an integer >= 1"),
    ({"space": {"name": "resnet"}}, [], "space.name: unknown space 'resnet'"),
    ({}, ["--set", "nonsense"], "--set 'nonsense': expected key.path=value"),
])
def test_config_check_gives_the_errors_of_search(tmp_path, capsys, patch, extra, message):
    path = write(tmp_path, {**BASE, **patch})
    code, _, err = run(capsys, "config", "check", path, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    search_code, _, search_err = run(capsys, "search", path, *extra)
    assert search_code == 2
    assert err.partition(": error: ")[2] == search_err.partition(": error: ")[2]


def test_config_check_refuses_an_existing_run_folder(tmp_path, capsys):
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    path = write(tmp_path, {**BASE, "name": "taken", "results_dir": str(tmp_path / "runs")})
    code, _, err = run(capsys, "config", "check", path)
    assert code == 2 and "exists" in err and "taken" in err


def test_config_check_of_a_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "config", "check", tmp_path / "none.yaml")
    assert code == 2 and "no such file" in err


@pytest.mark.parametrize("command", ["search", "resume"])
def test_search_flags_name_their_config_keys(command):
    keys = {r.key for r in config_keys()}
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices)
    for action in sub.choices[command]._actions:
        if not action.option_strings or action.dest in ("help", "overrides"):
            continue
        named = re.search(r"config key: ([\w.]+)", action.help or "")
        assert named or "no config key" in (action.help or ""), action.option_strings
        assert named is None or named.group(1) in keys, named.group(1)
