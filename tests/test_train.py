"""Proxy training: settings validation, schedules, learning, callbacks and failure modes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nas.errors import ConfigError, TrialFailed
from nas.evaluation.data import load_dataset
from nas.evaluation.train import TrainConfig, evaluate_accuracy, lr_factor, make_optimizer, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10),
    )


class InjectNaN(nn.Module):
    """Passes its input through, but makes everything NaN from the ``after``-th training call."""

    def __init__(self, after: int = 0) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        return x * float("nan") if self.training and self.calls > self.after else x


class Blowup(nn.Module):
    """Scales the logits up by 10x more at every training call: the loss diverges (finitely)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.scale = min(self.scale * 1.5, 1e6)
        return x * self.scale


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", 0), ("epochs", 1.5), ("batch_size", -1), ("optimizer", "adam"), ("lr", 0.0),
        ("lr", float("nan")), ("momentum", 1.5), ("weight_decay", -1e-4), ("schedule", "linear"),
        ("warmup_epochs", -1), ("step_epochs", 0), ("step_gamma", 0.0),
        ("label_smoothing", 1.0), ("time_budget_s", 0), ("budget_action", "ignore"),
        ("device", "tpu"), ("device", "cuda:x"), ("threads", 0), ("seed", -1), ("amp", "yes"),
        ("divergence_factor", 1.0), ("check_every", 0), ("eval_batch_size", 0),
    ],
)
def test_bad_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=rf"train\.{key}="):
        TrainConfig(**{key: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_unavailable_is_a_config_error_when_used(digits):
    config = TrainConfig(device="cuda")  # valid on a CPU driver: the device may be on a worker
    with pytest.raises(ConfigError, match="CUDA is not available"):
        train(tiny_net(), digits, config)


def test_from_dict_rejects_unknown_keys():
    assert TrainConfig.from_dict({"lr": 0.1}).lr == 0.1
    with pytest.raises(ConfigError, match="train.learning_rate: unknown key"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_lr_schedules():
    cos = lr_factor(TrainConfig(epochs=2, schedule="cosine", warmup_epochs=0.5), 10)
    assert [cos(t) for t in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert cos(5) == pytest.approx(1.0)
    assert cos(12) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert cos(19) < 0.02
    step = lr_factor(TrainConfig(epochs=3, schedule="step", step_epochs=1, step_gamma=0.5), 4)
    assert [step(t) for t in (0, 3, 4, 8, 11)] == pytest.approx([1, 1, 0.5, 0.25, 0.25])
    const = lr_factor(TrainConfig(schedule="constant"), 4)
    assert const(0) == const(100) == 1.0


def test_weight_decay_skips_biases_and_norms():
    opt = make_optimizer(tiny_net(), TrainConfig(weight_decay=1e-3))
    decayed = [p.ndim for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]]
    plain = [p.ndim for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert decayed and all(n >= 2 for n in decayed)
    assert plain and all(n == 1 for n in plain)


def test_training_learns_digits(digits):
    model = tiny_net()
    before = evaluate_accuracy(model, digits.x_val, digits.y_val)
    result = train(model, digits, TrainConfig(epochs=4, lr=0.1, batch_size=32, warmup_epochs=0.5))
    assert result.val_accuracy > max(0.6, before + 0.3)
    assert result.epochs == 4 and result.stopped == "completed"
    assert result.steps == 4 * (len(digits.y_train) // 32)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.images_per_s > 0


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw"])
def test_every_optimizer_trains(digits, optimizer):
    lr = {"sgd": 0.05, "rmsprop": 0.01, "adamw": 0.01}[optimizer]
    cfg = TrainConfig(epochs=1, optimizer=optimizer, lr=lr, label_smoothing=0.1, schedule="step")
    result = train(tiny_net(), digits, cfg)
    assert math.isfinite(result.train_loss) and 0.0 <= result.val_accuracy <= 1.0


def test_same_seed_same_result(digits):
    cfg = TrainConfig(epochs=1, seed=5)
    a, b = train(tiny_net(1), digits, cfg), train(tiny_net(1), digits, cfg)
    assert a.train_loss == b.train_loss and a.val_accuracy == b.val_accuracy


def test_callback_sees_every_epoch_and_can_stop(digits):
    seen = []
    result = train(tiny_net(), digits, TrainConfig(epochs=3),
                   callback=lambda m: seen.append(m) or m["epoch"] == 2)
    assert [m["epoch"] for m in seen] == [1, 2]
    assert set(seen[0]) >= {"epoch", "train_loss", "val_accuracy", "lr", "epoch_s"}
    assert result.stopped == "callback" and result.epochs == 2


def test_nan_loss_fails_the_trial(digits):
    model = nn.Sequential(tiny_net(), InjectNaN(after=3))
    with pytest.raises(TrialFailed, match="loss is nan") as info:
        train(model, digits, TrainConfig(epochs=2, check_every=5))
    assert "epoch 1" in info.value.reason


def test_huge_learning_rate_fails_the_trial(digits):
    with pytest.raises(TrialFailed, match="loss (is nan|is inf|diverged)"):
        train(tiny_net(), digits, TrainConfig(epochs=2, lr=1e9, momentum=0.9, check_every=2))


def test_divergence_fails_the_trial(digits):
    model = nn.Sequential(tiny_net(), Blowup())
    with pytest.raises(TrialFailed, match="diverged"):
        train(model, digits, TrainConfig(epochs=3, lr=1e-4, check_every=2, divergence_factor=3))


def test_time_budget_fail_and_stop(digits):
    with pytest.raises(TrialFailed, match="time budget"):
        train(tiny_net(), digits, TrainConfig(epochs=2, time_budget_s=1e-6))
    result = train(tiny_net(), digits,
                   TrainConfig(epochs=3, time_budget_s=1e-6, budget_action="stop"))
    assert result.stopped == "budget" and result.epochs == 1
    assert 0.0 <= result.val_accuracy <= 1.0


def test_threads_are_restored(digits):
    before = torch.get_num_threads()
    train(tiny_net(), digits, TrainConfig(threads=2 if before == 1 else 1))
    assert torch.get_num_threads() == before


def test_model_without_parameters_fails(digits):
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    with pytest.raises(TrialFailed, match="no trainable parameters"):
        train(model, digits, TrainConfig())


@pytest.mark.gpu
def test_cuda_with_mixed_precision(digits):
    result = train(tiny_net(), digits, TrainConfig(epochs=2, device="cuda", amp=True, lr=0.1))
    assert result.val_accuracy > 0.3
