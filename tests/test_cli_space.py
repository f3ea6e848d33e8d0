"""CLI: nas spaces, nas space show, nas cost (outputs and exit codes)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

import nas
from nas.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_spaces_json(capsys):
    code, out, _ = run(capsys, "spaces", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["nasbench201"]["size"] == 15_625
    assert rows["mnasnet"]["size"] == nas.get_space("mnasnet").size()
    assert "mnasnet_a1" in rows["mnasnet"]["presets"]


def test_spaces_table(capsys):
    code, out, _ = run(capsys, "spaces")
    assert code == 0 and "nasbench201" in out and "15,625" in out


def test_space_show(capsys):
    code, out, _ = run(
        capsys,
        "space",
        "show",
        "mnasnet",
        "--input-size",
        "32",
        "--num-classes",
        "10",
        "--samples",
        "3",
        "--json",
    )
    info = json.loads(out)
    assert code == 0
    assert info["decisions"]["b1.kernel"] == [3, 5]
    assert info["cost"]["macs_min"] <= info["cost"]["macs_median"] <= info["cost"]["macs_max"]
    code, out, _ = run(capsys, "space", "show", "nasbench201", "--samples", "2")
    assert code == 0 and "node3.from2" in out and "MACs over 2 samples" in out


def test_cost_preset_json(capsys):
    code, out, _ = run(
        capsys,
        "cost",
        "--space",
        "mnasnet",
        "--preset",
        "mobilenet_v2",
        "--input-size",
        "224",
        "--num-classes",
        "1000",
        "--json",
    )
    data = json.loads(out)
    assert code == 0
    assert data["params"] == 3_504_872
    assert data["macs"] == sum(r["macs"] for r in data["layers"])


def test_cost_arch_file(capsys, tmp_path):
    space = nas.get_space("nasbench201")
    arch = space.sample(np.random.default_rng(0))
    path = tmp_path / "arch.json"
    path.write_text(arch.to_json())
    code, out, _ = run(capsys, "cost", "--arch", str(path), "--json")
    data = json.loads(out)
    from nas.evaluation.cost import count_cost

    assert code == 0 and data["arch_key"] == arch.key
    assert data["macs"] == count_cost(space.build(arch), (3, 32, 32)).macs
    # a card with space options
    card = {
        "space": {"name": "nasbench201", "options": {"num_classes": 4}},
        "decisions": dict(arch.items()),
    }
    path.write_text(json.dumps(card))
    code, out, _ = run(capsys, "cost", "--arch", str(path), "--json")
    assert code == 0 and json.loads(out)["params"] == sum(
        p.numel() for p in nas.get_space("nasbench201", num_classes=4).build(arch).parameters()
    )
    code, out, _ = run(capsys, "cost", "--arch", str(path), "--layers")
    assert code == 0 and "per-layer cost" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["cost", "--space", "nope", "--preset", "x"], "unknown space 'nope'"),
        (["cost", "--space", "mnasnet", "--preset", "resnet50"], "preset 'resnet50' is not known"),
        (["cost", "--arch", "/no/such/file.json"], "no such file"),
        (
            ["cost", "--space", "mnasnet", "--preset", "mnasnet_a1", "-o", "width_mult"],
            "expected KEY=VALUE",
        ),
        (
            ["cost", "--space", "mnasnet", "--preset", "mnasnet_a1", "-o", "width_mult=-2"],
            "width_mult=-2",
        ),
        (["space", "show", "mnasnet", "--samples", "0"], "--samples 0"),
    ],
)
def test_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_invalid_arch_file_names_label(capsys, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "space": "nasbench201",
                "decisions": {
                    "node1.from0": "conv9",
                    "node2.from0": "none",
                    "node2.from1": "none",
                    "node3.from0": "none",
                    "node3.from1": "none",
                    "node3.from2": "none",
                },
            }
        )
    )
    code, _, err = run(capsys, "cost", "--arch", str(path))
    assert code == 2 and "node1.from0: value 'conv9' is not allowed" in err
    path.write_text("[1, 2]")
    code, _, err = run(capsys, "cost", "--arch", str(path))
    assert code == 2 and "expected a JSON object" in err
    path.write_text(json.dumps({"decisions": {}}))
    code, _, err = run(capsys, "cost", "--arch", str(path))
    assert code == 2 and "names no space" in err


def test_console_script_and_argparse_usage_error():
    out = subprocess.run(
        [sys.executable, "-m", "nas.cli", "cost", "--space", "mnasnet"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "one of the arguments --preset --arch is required" in out.stderr


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_space_show_draws_progress_on_a_terminal_only(capsys, monkeypatch):
    argv = ("space", "show", "nas.testing.fixtures:ToySpace", "--samples", "3", "--json")
    code, out, err = run(capsys, *argv)
    assert code == 0 and json.loads(out)["cost"]["samples"] == 3
    assert err == ""  # stderr is not a terminal: nothing extra
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run(capsys, *argv)
    assert code == 0 and json.loads(out)["cost"]["samples"] == 3  # stdout stays clean JSON
    drawn = terminal.getvalue()
    assert "costing 3 samples of toy" in drawn and "3/3" in drawn
