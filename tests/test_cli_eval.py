"""``nas latency`` and ``nas evaluate`` through ``nas.cli.main``: exit codes, JSON keys, errors."""

from __future__ import annotations

import json

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
