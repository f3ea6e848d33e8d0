"""No code from data: a ``module:attr`` name read from a card or a run folder is not even imported
without ``--trust-code``, and any name (typed in a config, or trusted) is kind-checked before
anything is called. Each payload would create a marker file if it ran; every command must refuse
it with exit 2 and one line naming the key and what was found, and the marker must not exist."""

from __future__ import annotations

import json

import pytest
import yaml

from nas.cli import main
from nas.results import RunDir

GOOD = {"space": {"name": "nas.testing.fixtures:ToySpace"},
        "controller": {"name": "random"},
        "evaluator": {"dataset": "digits", "epochs": 1},
        "latency": {"mode": "skip"},
        "search": {"trials": 2}}


def payloads(marker):
    """(name, options) pairs that would create ``marker`` if called with the options."""
    return [("os:system", {"command": f"touch {marker}"}),
            ("subprocess:getoutput", {"cmd": f"touch {marker}"}),
            ("subprocess:run", {"args": ["touch", str(marker)]}),
            ("builtins:exec", {"source": f"open({str(marker)!r}, 'w').close()"}),
            ("pathlib:Path.touch", {"self": str(marker)})]


pytestmark = pytest.mark.usefixtures("no_ray")


def refused(capsys, command, key, marker, trusted=True):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas {command}: error:") and "\n" not in err, err
    if trusted:  # imported, then refused for its kind
        assert key in err and "refusing to use it" in err and "found the" in err, err
    else:  # never imported
        assert key in err and "read from a file is not imported" in err, err
        assert "pass --trust-code" in err, err
    assert not marker.exists(), "the payload ran"


TRUST = pytest.mark.parametrize("trust", [[], ["--trust-code"]], ids=["untrusted", "trusted"])


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("argv", [["build"], ["cost", "--arch"], ["latency", "--arch"],
                                  ["evaluate", "--arch"]])
@TRUST
def test_cards(tmp_path, capsys, index, argv, trust):
    marker = tmp_path / "pwned"
    name, options = payloads(marker)[index]
    card = tmp_path / "arch.json"
    card.write_text(json.dumps({"format": "mnas-card/1", "space": {"name": name,
                                "options": options}, "decisions": {"width": 16, "depth": 1},
                                "input_shape": [1, 8, 8]}))
    assert main([*argv, str(card), *trust]) == 2
    key = f"space {name!r}: expected a nas.Space subclass" if trust else f"space {name!r} in"
    refused(capsys, argv[0], key, marker, trusted=bool(trust))


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("section", ["space", "controller", "evaluator"])
def test_search_configs(tmp_path, capsys, index, section):
    marker = tmp_path / "pwned"
    name, options = payloads(marker)[index]
    cfg = {**GOOD, "results_dir": str(tmp_path / "results")}
    cfg[section] = {**cfg[section], "name": name, "options": options}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--name", "x"]) == 2
    refused(capsys, "search", f"{section}.name:", marker)
    assert not (tmp_path / "results").exists()


def run_folder(tmp_path, section, name, options):
    cfg = {**GOOD, section: {**GOOD[section], "name": name, "options": options}}
    run = RunDir.create(tmp_path / "results", "r", cfg)
    run.append_trial({"trial_id": 0, "arch_key": "k0", "arch": {"width": 16, "depth": 1},
                      "status": "complete", "error": None, "reward": 0.5, "step": 1,
                      "metrics": {"accuracy": 0.5, "latency_ms": 1.0, "params": 10, "macs": 10}})
    return run


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("section, commands", [
    ("space", [["resume"], ["export"], ["analyze"]]),  # compare builds no space
    ("controller", [["resume"]]),
    ("evaluator", [["resume"]]),  # export trains with the standard loop, no evaluator
])
@TRUST
def test_run_folders(tmp_path, capsys, index, section, commands, trust):
    marker = tmp_path / "pwned"
    name, options = payloads(marker)[index]
    run = run_folder(tmp_path, section, name, options)
    for command in commands:
        extra = ["--out", str(tmp_path / "out")] if command[0] in ("analyze", "compare",
                                                                   "export") else []
        code = main([command[0], str(run.path), *command[1:], *extra, *trust])
        assert code == 2, command
        refused(capsys, command[0], name, marker, trusted=bool(trust))
