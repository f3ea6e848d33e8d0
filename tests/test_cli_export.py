"""``nas export`` and ``nas build`` through ``nas.cli.main``: outputs, files, exit codes."""

from __future__ import annotations

import json

import pytest

from nas.cli import main
from nas.results import RunDir

CONFIG = {"space": {"name": "nas.testing.fixtures:ToySpace",
                    "options": {"input_size": 8, "in_channels": 1, "num_classes": 10}},
          "controller": {"name": "random", "options": {}},
          "evaluator": {"dataset": "digits", "epochs": 1},
          "reward": {"preset": "hard", "target": 1.0}}
# id, status, accuracy, latency ms, width, depth; hard reward at T=1 ms: 0.6, 0.9, -, 0.4
ROWS = [(0, "complete", 0.6, 0.5, 8, 1), (1, "complete", 0.9, 0.9, 32, 2),
        (2, "failed", None, None, 64, 3), (3, "complete", 0.8, 2.0, 16, 1)]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = RunDir.create(tmp_path_factory.mktemp("runs"), "toy", CONFIG)
    for tid, status, acc, lat, width, depth in ROWS:
        metrics = {} if acc is None else {"accuracy": acc, "latency_ms": lat, "params": 100,
                                          "macs": 100, "dataset": "digits"}
        run.append_trial({"trial_id": tid, "arch_key": f"k{tid}",
                          "arch": {"width": width, "depth": depth}, "status": status,
                          "error": "TrialFailed: nan loss" if acc is None else None,
                          "metrics": metrics, "reward": None, "step": tid + 1})
    return run.path


def one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("nas export: error:"), err
    for needle in needles:
        assert needle in err, err


def test_export_then_build(run_dir, tmp_path, capsys):
    out = tmp_path / "card"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "exported trial 1 (rank 1, reward 0.9000)" in text
    card = json.loads((out / "arch.json").read_text())
    assert "files: arch.json" in text and card["files"]["weights"] in text
    assert card["decisions"] == {"width": 32, "depth": 2}
    assert card["space"]["name"] == "nas.testing.fixtures:ToySpace"
    if "onnx" in card["files"]:
        assert "model.onnx: ONNX Runtime" in text and "max abs diff" in text
        assert card["checks"]["onnx"]["max_abs_diff"] < 1e-4
    assert main(["build", str(out)]) == 0
    text = capsys.readouterr().out
    assert "params 3,466 (card 3,466: match)" in text  # 64*32+32 + 32*32+32 + 32*10+10
    assert "max abs diff 0 (match)" in text
    assert main(["build", str(out / "arch.json"), "--json", "--no-weights"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ok"] and info["weights"] is None and info["outputs_match"] is None


def test_export_rank_and_target_and_json(run_dir, tmp_path, capsys):
    # at T = 0.5 ms: 0.6, 0.9 * 0.5 / 0.9 = 0.5, 0.8 * 0.5 / 2 = 0.2 -> trial 0 first
    assert main(["export", str(run_dir), "--target-ms", "0.5", "--format", "json", "--json",
                 "--out", str(tmp_path / "a")]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["provenance"]["trial_id"] == 0 and card["selection"]["reward"] == pytest.approx(0.6)
    assert main(["export", str(run_dir), "--trial", "3", "--format", "json",
                 "--out", str(tmp_path / "b")]) == 0
    assert "exported trial 3 (rank 3, reward 0.4000)" in capsys.readouterr().out


def test_build_reports_a_parameter_mismatch(run_dir, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["export", str(run_dir), "--format", "json", "--out", str(out)]) == 0
    card = json.loads((out / "arch.json").read_text())
    card["model"]["params"] += 1
    (out / "arch.json").write_text(json.dumps(card))
    capsys.readouterr()
    assert main(["build", str(out)]) == 1
    assert "MISMATCH" in capsys.readouterr().out


@pytest.mark.parametrize("argv, needles", [
    (["--rank", "9"], ["--rank=9: the run has only 3 complete architectures"]),
    (["--rank", "0"], ["--rank=0: must be an integer >= 1"]),
    (["--trial", "77"], ["--trial=77: no such trial"]),
    (["--trial", "2"], ["--trial=2: the trial is failed", "nan loss"]),
    (["--format", "json,savedmodel"], ["--format: unknown format 'savedmodel'", "allowed: json"]),
    (["--train-epochs", "0"], ["--train-epochs=0: must be an integer >= 1"]),
    (["--from-scratch"], ["--from-scratch: needs --train-epochs E"]),
    (["--target-ms", "0"], ["--target-ms=0.0: must be a finite number > 0"]),
])
def test_export_bad_input_exits_2_and_writes_nothing(run_dir, tmp_path, capsys, argv, needles):
    out = tmp_path / "never"
    assert main(["export", str(run_dir), "--out", str(out), *argv]) == 2
    one_line_error(capsys, *needles)
    assert not out.exists()


def test_export_bad_run_folders(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    one_line_error(capsys, "no such folder")
    empty = RunDir.create(tmp_path, "empty", CONFIG).path
    assert main(["export", str(empty)]) == 2
    one_line_error(capsys, "no finished trials")


def test_export_refuses_an_existing_folder_without_force(run_dir, tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["export", str(run_dir), "--format", "json", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "json", "--out", str(out)]) == 2
    one_line_error(capsys, "exists", "--force")
    assert main(["export", str(run_dir), "--format", "json", "--out", str(out), "--force"]) == 0


@pytest.mark.parametrize("content", [
    {"notes.txt": "my thesis"},                                   # not an export at all
    {"arch.json": '{"format": "something-else/1"}'},              # another tool's card
    {"arch.json": "not json"},
    "export+",                                                    # an export plus a user file
])
def test_force_replaces_only_an_export_folder(run_dir, tmp_path, capsys, content):
    out = tmp_path / "mine"
    if content == "export+":
        assert main(["export", str(run_dir), "--format", "json", "--out", str(out)]) == 0
        content = {"keep.txt": "not written by an export"}
    out.mkdir(exist_ok=True)
    for name, text in content.items():
        (out / name).write_text(text)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "json", "--out", str(out), "--force"]) == 2
    one_line_error(capsys, "--force replaces only a folder holding an export card",
                   "nothing was deleted")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_rank_and_trial_together_is_an_argparse_error(run_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run_dir), "--rank", "1", "--trial", "1"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_build_bad_card_exits_2(tmp_path, capsys):
    assert main(["build", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file" in err
