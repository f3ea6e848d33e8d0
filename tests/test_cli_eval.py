"""``nas latency`` and ``nas evaluate`` through ``nas.cli.main``: exit codes, JSON keys, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from nas import SPACES
from nas.cli import main

FAST = ["--repeats", "6", "--rounds", "2", "--warmup", "1"]
FAST_EVAL = ["--latency-repeats", "6", "--latency-rounds", "2", "--latency-warmup", "1"]
TINY = ["-o", "channels=4", "-o", "cells_per_stage=1"]


@pytest.fixture
def arch_file(tmp_path):
    space = SPACES.create("nasbench201")
    path = tmp_path / "arch.json"
    path.write_text(space.sample(np.random.default_rng(0)).to_json())
    return str(path)


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_latency_json_keys(arch_file, capsys):
    code = main(["latency", "--arch", arch_file, *TINY, "--input-size", "8", "--json", *FAST])
    assert code == 0
    out = _json(capsys)
    assert {"median_ms", "p10_ms", "p90_ms", "n", "device"} <= set(out)
    assert out["n"] > 0 and out["device"]["threads"] == 1 and out["input_shape"] == [3, 8, 8]


def test_latency_table_output(arch_file, capsys):
    assert main(["latency", "--arch", arch_file, *TINY, "--input-size", "8", *FAST]) == 0
    out = capsys.readouterr().out
    assert "median ms" in out and "nasbench201" in out


@pytest.mark.skipif("mnasnet" not in SPACES, reason="the mnasnet space is not available")
def test_latency_preset_batch_and_onnxruntime(capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    args = ["latency", "--space", "mnasnet", "--preset", "mnasnet_a1", "--input-size", "32",
            "--batch-size", "2", "--threads", "1", "--runtime", "onnxruntime", "--json", *FAST]
    assert main(args) == 0
    out = _json(capsys)
    assert out["runtime"] == "onnxruntime" and out["batch_size"] == 2


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--runtime", "tvm"], "--runtime 'tvm'"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--threads", "0"], "--threads 0"),
        (["--batch-size", "-2"], "--batch-size -2"),
        (["--repeats", "2", "--rounds", "5"], "rounds"),
    ],
)
def test_latency_bad_arguments_exit_2(arch_file, capsys, extra, flag):
    assert main(["latency", "--arch", arch_file, *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1


def test_latency_bad_preset_and_missing_file(tmp_path, capsys):
    assert main(["latency", "--space", "nasbench201", "--preset", "resnet50"]) == 2
    assert "preset 'resnet50'" in capsys.readouterr().err
    assert main(["latency", "--arch", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["latency", "--space", "nope", "--preset", "x"]) == 2


def test_latency_needs_preset_or_arch(capsys):
    with pytest.raises(SystemExit) as info:
        main(["latency", "--space", "nasbench201"])
    assert info.value.code == 2


def test_evaluate_json(arch_file, capsys):
    code = main(["evaluate", "--arch", arch_file, *TINY, "--dataset", "digits", "--epochs", "1",
                 "--reward-target", "5", "--reward-preset", "hard", "--json", *FAST_EVAL])
    assert code == 0
    out = _json(capsys)
    assert out["status"] == "complete" and out["dataset"] == "digits"
    for key in ("accuracy", "latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread",
                "latency_n", "params", "macs", "timings", "device", "reward"):
        assert key in out, key
    assert out["reward_config"]["beta"] == -1.0


def test_evaluate_table_output_and_no_latency(arch_file, capsys):
    code = main(["evaluate", "--arch", arch_file, *TINY, "--epochs", "1", "--no-latency"])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy (val)" in out and "digits" in out


def test_evaluate_failed_trial_exits_1(arch_file, capsys):
    code = main(["evaluate", "--arch", arch_file, *TINY, "--epochs", "1", "--lr", "1e9",
                 "--no-latency", "--json"])
    assert code == 1
    out = _json(capsys)
    assert out["status"] == "failed" and "loss" in out["error"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--dataset", "npz:/no/such/file.npz"], "does not exist"),
        (["--optimizer", "adam"], "--optimizer 'adam'"),
        (["--epochs", "0"], "--epochs 0"),
        (["--schedule", "linear"], "--schedule 'linear'"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--latency-runtime", "tvm"], "--latency-runtime 'tvm'"),
        (["--reward-target", "5", "--reward-preset", "medium"], "--reward-preset 'medium'"),
        (["--reward-target", "-5"], "--reward-target -5"),
        (["--reward-target", "5", "--reward-metric", "flops"], "--reward-metric 'flops'"),
        (["--evaluator", "nowhere"], "unknown evaluator 'nowhere'"),
        (["--val-fraction", "2"], "--val-fraction 2"),
        (["--latency-input-size", "0"], "--latency-input-size 0"),
    ],
)
def test_evaluate_bad_arguments_exit_2(arch_file, capsys, extra, message):
    assert main(["evaluate", "--arch", arch_file, *TINY, "--no-latency", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif("mnasnet" not in SPACES, reason="the mnasnet space is not available")
def test_evaluate_preset_with_latency_at_deployment_size(capsys):
    code = main(["evaluate", "--space", "mnasnet", "--preset", "mnasnet_a1", "-o",
                 "width_mult=0.25", "--evaluator", "latency_only", "--latency-input-size", "32",
                 "--json", *FAST_EVAL])
    assert code == 0
    out = _json(capsys)
    assert out["preset"] == "mnasnet_a1" and out["latency_ms"] > 0 and "accuracy" not in out


def test_evaluate_preset_of_a_space_without_presets(capsys):
    assert main(["evaluate", "--space", "nasbench201", "--preset", "x"]) == 2
    assert "known presets: (none)" in capsys.readouterr().err


TOY = ["--space", "nas.testing.fixtures:ToySpace"]


@pytest.fixture
def toy_arch(tmp_path):
    path = tmp_path / "toy.json"
    path.write_text(json.dumps({"space": "nas.testing.fixtures:ToySpace",
                                "decisions": {"width": 16, "depth": 1}}))
    return str(path)


def test_evaluate_prints_one_line_per_epoch_on_stderr(toy_arch, capsys):
    code = main(["evaluate", "--arch", toy_arch, "--epochs", "2", "--max-train", "128",
                 "--no-latency", "--json"])
    out, err = capsys.readouterr()
    record = json.loads(out)  # stdout holds only the JSON
    assert code == 0 and record["status"] == "complete"
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    pattern = r"epoch (\d)/2: train loss \d+\.\d{4}, val accuracy (\d\.\d{4}), \d+\.\d s"
    assert [re.fullmatch(pattern, line).group(1) for line in lines] == ["1", "2"], err
    history = record["train"]["history"]
    assert [float(re.fullmatch(pattern, line).group(2)) for line in lines] == \
        [round(h["val_accuracy"], 4) for h in history]


def test_warnings_for_a_spread_over_25_percent_and_a_child_at_chance():
    from nas.cli.eval_cmds import warnings_for

    lat = {"latency_ms": 1.0, "latency_p10_ms": 0.9, "latency_p90_ms": 1.16}
    assert warnings_for({**lat, "latency_spread": 0.25}) == []
    (line,) = warnings_for({**lat, "latency_spread": 0.26})
    assert line.startswith("warning: latency spread 26% > 25% (p10 0.900 ms")
    # 10 classes, 400 validation images: chance 0.1 + 2 * sqrt(0.1 * 0.9 / 400) = 0.13
    assert warnings_for({"accuracy": 0.131}, 10, 400) == []
    (line,) = warnings_for({"accuracy": 0.13}, 10, 400)
    assert line.startswith("warning: accuracy 0.1300 is at chance (1/10 = 0.1000")
    assert "on 400 validation images = 0.1300)" in line
    assert warnings_for({"accuracy": 0.05, "status": "failed"}, 10, 400) == []  # failed: no warning


def test_evaluate_warns_on_stderr(toy_arch, capsys, monkeypatch):
    import nas.evaluation.evaluate as evaluate

    def fake(space, arch, settings, *, report=None, dataset=None, **kwargs):
        report({"epoch": 1, "train_loss": 2.3, "val_accuracy": 0.1, "epoch_s": 0.5})
        return {"space": space.name, "arch_key": arch.key, "preset": None, "dataset": "digits",
                "status": "complete", "error": None, "accuracy": 0.1, "latency_ms": 1.0,
                "latency_p10_ms": 0.8, "latency_p90_ms": 1.3, "latency_spread": 0.5,
                "params": 1, "macs": 1, "timings": {"total_s": 1.0}}

    monkeypatch.setattr(evaluate, "evaluate_arch", fake)
    assert main(["evaluate", "--arch", toy_arch]) == 0
    out, err = capsys.readouterr()
    assert "accuracy (val)" in out
    assert err.splitlines() == [
        "epoch 1/1: train loss 2.3000, val accuracy 0.1000, 0.5 s",
        "warning: latency spread 50% > 25% (p10 0.800 ms, median 1.000 ms, p90 1.300 ms): the "
        "timing was disturbed, likely by other processes; rerun on idle cores or with more repeats",
        "warning: accuracy 0.1000 is at chance (1/10 = 0.1000, + 2 standard errors on 288 "
        "validation images = 0.1354): the child learned nothing; train longer or check the "
        "learning rate and the data",
    ]
