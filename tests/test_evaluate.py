"""One trial end to end: raw metrics, reward, failures, custom evaluators, settings errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nas import SPACES
from nas.errors import ConfigError, UnknownNameError, UsageError
from nas.evaluation.cost import count_cost
from nas.evaluation.data import load_dataset
from nas.evaluation.evaluate import EvalSettings, evaluate_arch, space_for_dataset
from nas.evaluation.train import TrainConfig
from nas.latency.measure import LatencyConfig
from nas.registry import evaluator as nas_evaluator
from nas.reward import RewardConfig

FAST_LAT = LatencyConfig(warmup=1, repeats=6, rounds=2)
FAST = EvalSettings(train=TrainConfig(epochs=1, lr=0.05), latency=FAST_LAT)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def space(digits):
    return space_for_dataset("nasbench201", digits, channels=4, cells_per_stage=1)


@pytest.fixture(scope="module")
def arch(space):
    return space.validate({"node1.from0": "nor_conv_3x3", "node2.from0": "nor_conv_1x1",
                           "node2.from1": "skip_connect", "node3.from0": "skip_connect",
                           "node3.from1": "nor_conv_3x3", "node3.from2": "avg_pool_3x3"})


def test_record_holds_raw_metrics(space, arch, digits):
    rec = evaluate_arch(space, arch, FAST, dataset=digits)
    assert rec["status"] == "complete" and rec["error"] is None
    assert rec["arch_key"] == arch.key and rec["arch"] == arch.to_dict()["decisions"]
    assert 0.0 <= rec["accuracy"] <= 1.0
    cost = count_cost(space.build(arch), space.input_shape())
    assert (rec["params"], rec["macs"]) == (cost.params, cost.macs)
    assert 0 < rec["latency_p10_ms"] <= rec["latency_ms"] <= rec["latency_p90_ms"]
    assert rec["latency_n"] > 0 and rec["latency_spread"] >= 0
    assert rec["device"]["device"] == "cpu"
    assert set(rec["timings"]) == {"build_s", "cost_s", "latency_s", "train_s", "total_s"}
    assert rec["train"]["epochs"] == 1
    assert "reward" not in rec
    json.dumps(rec, allow_nan=False)  # storable as is


def test_reward_from_raw_metrics_and_recomputed(space, arch, digits):
    reward = RewardConfig.from_preset("hard", target=1e-6)  # every child is over the target
    settings = EvalSettings(train=FAST.train, latency=FAST_LAT, reward=reward)
    rec = evaluate_arch(space, arch, settings, dataset=digits)
    expected = rec["accuracy"] * (rec["latency_ms"] / 1e-6) ** -1.0
    assert rec["reward"] == pytest.approx(expected)
    assert rec["reward_config"]["beta"] == -1.0
    again = RewardConfig.from_preset("hard", target=1e6)(rec)  # another target, no retraining
    assert again == pytest.approx(rec["accuracy"])


def test_nan_child_is_a_failed_record(space, arch, digits):
    settings = EvalSettings(train=TrainConfig(epochs=1, lr=1e9, check_every=2), latency=FAST_LAT,
                            reward=RewardConfig(target=1.0))
    rec = evaluate_arch(space, arch, settings, dataset=digits)
    assert rec["status"] == "failed"
    assert "loss" in rec["error"] and ("nan" in rec["error"] or "diverged" in rec["error"])
    assert rec["reward"] is None
    assert rec["params"] > 0 and "latency_ms" in rec  # what was measured before is kept


class NaNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


@nas_evaluator
def nan_evaluator(arch, model, ctx):
    """A custom evaluator that trains a NaN-producing model through the context."""
    return ctx.train(NaNNet())


@nas_evaluator
def custom_evaluator(arch, model, ctx):
    """A custom evaluator: reports one epoch and returns its own metrics."""
    ctx.report({"epoch": 1, "val_accuracy": 0.5})
    return {"accuracy": 0.5, "latency_ms": 2.0, "seen": [ctx.space.name, ctx.dataset.name,
                                                         ctx.device, arch is not None]}


def test_custom_evaluator_by_import_path(space, arch, digits):
    reports = []
    settings = EvalSettings(evaluator=f"{__name__}:custom_evaluator",
                            reward=RewardConfig(target=2.0))
    rec = evaluate_arch(space, arch, settings, dataset=digits, report=reports.append)
    assert rec["seen"] == ["nasbench201", "digits", "cpu", True]
    assert rec["reward"] == pytest.approx(0.5)
    assert reports == [{"epoch": 1, "val_accuracy": 0.5}]
    assert rec["params"] > 0  # cost is counted for every evaluator


def test_custom_evaluator_nan_model_fails(space, arch, digits):
    rec = evaluate_arch(space, arch, EvalSettings(evaluator=f"{__name__}:nan_evaluator"),
                        dataset=digits)
    assert rec["status"] == "failed" and "nan" in rec["error"]


@nas_evaluator
def list_evaluator(arch, model, ctx):
    return [0.5]


def test_evaluator_must_return_a_dict(space, arch, digits):
    with pytest.raises(UsageError, match="returned list, expected a dict"):
        evaluate_arch(space, arch, EvalSettings(evaluator=f"{__name__}:list_evaluator"),
                      dataset=digits)


def test_unknown_evaluator(space, arch, digits):
    with pytest.raises(UnknownNameError, match="default, latency_only"):
        evaluate_arch(space, arch, EvalSettings(evaluator="magic"), dataset=digits)


def test_report_early_stop_and_latency_only(space, arch, digits):
    seen = []
    settings = EvalSettings(train=TrainConfig(epochs=3), latency=LatencyConfig(mode="skip"))
    rec = evaluate_arch(space, arch, settings, dataset=digits,
                        report=lambda m: seen.append(m["epoch"]) or True)
    assert seen == [1] and rec["train"]["stopped"] == "callback"
    assert "latency_ms" not in rec
    only = evaluate_arch(space, arch, EvalSettings(evaluator="latency_only", latency=FAST_LAT),
                         dataset=digits)
    assert "accuracy" not in only and only["latency_ms"] > 0


@nas_evaluator
def broken_evaluator(arch, model, ctx):
    return model(torch.zeros(1, 3, 8, 8))  # wrong channel count -> RuntimeError


def test_runtime_error_in_child_is_a_failed_record(digits):
    space = SPACES.create("nasbench201", channels=4, cells_per_stage=1, input_size=8,
                          in_channels=1, num_classes=10)
    arch = space.sample(np.random.default_rng(0))

    rec = evaluate_arch(space, arch, EvalSettings(evaluator=f"{__name__}:broken_evaluator"),
                        dataset=digits)
    assert rec["status"] == "failed" and rec["error"].startswith("RuntimeError")


def test_arch_and_preset_checks(space, arch, digits):
    with pytest.raises(UsageError, match="exactly one"):
        evaluate_arch(space, None, FAST, dataset=digits)
    with pytest.raises(UsageError, match="exactly one"):
        evaluate_arch(space, arch, FAST, preset="x", dataset=digits)
    with pytest.raises(UsageError, match="preset 'x' is not known"):
        evaluate_arch(space, None, FAST, preset="x", dataset=digits)
    with pytest.raises(UsageError, match="node1.from0: value 'conv_7x7' is not allowed"):
        evaluate_arch(space, {**arch, "node1.from0": "conv_7x7"}, FAST, dataset=digits)


def test_space_must_fit_the_dataset(arch, digits):
    wrong = SPACES.create("nasbench201", channels=4, cells_per_stage=1)  # 3x32x32 inputs
    with pytest.raises(ConfigError, match=r"expects inputs \(3, 32, 32\).*\(1, 8, 8\)"):
        evaluate_arch(wrong, wrong.validate(arch), FAST, dataset=digits)
    few = SPACES.create("nasbench201", channels=4, cells_per_stage=1, in_channels=1,
                        input_size=8, num_classes=3)
    with pytest.raises(ConfigError, match="num_classes=3"):
        evaluate_arch(few, few.validate(arch), FAST, dataset=digits)


def test_lut_mode_needs_latency_units(space, arch, digits):
    settings = EvalSettings(train=FAST.train, latency=LatencyConfig(mode="lut"))
    with pytest.raises(UsageError, match="lookup tables"):
        evaluate_arch(space, arch, settings, dataset=digits)


@pytest.mark.skipif("mnasnet" not in SPACES, reason="the mnasnet space is not available")
def test_mnasnet_lut_and_deployment_input_size(digits, tmp_path):
    space = space_for_dataset("mnasnet", digits, width_mult=0.25, head_channels=64)
    arch = space.sample(np.random.default_rng(0))
    lut_path = tmp_path / "lut.json"
    lat = LatencyConfig(warmup=1, repeats=4, rounds=2, input_size=32, mode="lut")
    settings = EvalSettings(train=TrainConfig(epochs=1), latency=lat, lut_path=str(lut_path))
    rec = evaluate_arch(space, arch, settings, dataset=digits)
    assert rec["status"] == "complete" and rec["latency_source"] == "lut" and rec["latency_ms"] > 0
    assert json.loads(lut_path.read_text())["entries"]  # the table was written
    measured = evaluate_arch(space, arch, EvalSettings(
        evaluator="latency_only", latency=LatencyConfig(warmup=1, repeats=4, rounds=2,
                                                       input_size=32)), dataset=digits)
    assert measured["latency_ms"] > 0
    preset = evaluate_arch(space, None, EvalSettings(evaluator="latency_only", latency=FAST_LAT),
                           preset="mnasnet_a1", dataset=digits)
    assert preset["preset"] == "mnasnet_a1" and preset["arch"] is None


def test_settings_from_dict_and_errors():
    s = EvalSettings.from_dict({"dataset": "digits", "train": {"epochs": 2, "lr": 0.1},
                                "latency": {"repeats": 10, "rounds": 2},
                                "reward": {"preset": "soft", "target": 30}})
    assert (s.train.epochs, s.latency.repeats, s.reward.alpha) == (2, 10, -0.07)
    assert EvalSettings.from_dict(s.to_dict()) == s
    cases = [
        ({"epochs": 2}, "epochs: unknown key"),
        ({"train": {"lr": -1}}, r"train\.lr=-1"),
        ({"train": {"optimizer": "lbfgs"}}, r"train\.optimizer='lbfgs'"),
        ({"latency": {"runtime": "tvm"}}, r"latency\.runtime='tvm'"),
        ({"latency": {"device": "npu"}}, r"latency\.device='npu'"),
        ({"reward": {"preset": "soft"}}, r"reward\.target: missing"),
        ({"reward": {"preset": "soft", "target": 1, "alpha": 0}}, "either a preset"),
        ({"reward": {"target": 1, "metric": "flops"}}, r"reward\.metric"),
        ({"reward": {"target": 1, "gamma": 2}}, r"reward\.gamma: unknown key"),
        ({"val_fraction": 1.5}, "val_fraction=1.5"),
        ({"max_train": 0}, "max_train=0"),
        ({"dataset": ""}, "dataset=''"),
        ({"evaluator": 3}, "evaluator=3"),
        ({"train": 5}, "train=5"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError, match=message):
            EvalSettings.from_dict(data)


def test_bad_dataset_name(space, arch):
    with pytest.raises(UsageError, match="unknown dataset 'imagenet'"):
        evaluate_arch(space, arch, EvalSettings(dataset="imagenet"))


def test_space_for_dataset(digits):
    space = space_for_dataset("nasbench201", digits, channels=4)
    assert space.input_shape() == (1, 8, 8) and space.options["num_classes"] == 10
    assert math.isfinite(space.size())
