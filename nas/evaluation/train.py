"""Proxy training of a child network on an in-memory or a streamed dataset.

MnasNet (Tan et al., arXiv:1807.11626, section 4) trains each sampled child briefly on a proxy task
and scores it by its accuracy on a held-out split of the training data. :func:`train` does that:
``epochs`` passes over the training data in seeded random order, read through the dataset's batch
source (in-memory tensors sliced by an index permutation, or a streamed image folder's DataLoader:
see :mod:`nas.evaluation.data`), SGD with momentum, RMSprop or AdamW, a cosine or step schedule
with linear warm-up, weight decay, label smoothing, automatic mixed precision on CUDA, validation
accuracy after every epoch (handed to a callback, e.g. for early-stopping schedulers), and failure
on a NaN/inf loss, divergence or an exhausted wall-time budget (:class:`nas.errors.TrialFailed`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from nas._checks import (
    check_bool,
    check_choice,
    check_device,
    check_int,
    check_number,
    from_plain,
)
from nas._devices import resolve_device, torch_threads
from nas.errors import TrialFailed
from nas.evaluation.data import AnyDataset

__all__ = ["TrainConfig", "TrainResult", "train", "evaluate_accuracy", "batch_accuracy",
           "make_optimizer", "lr_factor", "OPTIMIZERS", "SCHEDULES"]

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "step", "constant")
BUDGET_ACTIONS = ("fail", "stop")

EpochCallback = Callable[[dict[str, Any]], "bool | None"]


@dataclass(frozen=True)
class TrainConfig:
    """Validated proxy-training settings (errors name the key as ``train.<key>``).

    Args:
        epochs: passes over the training data.
        batch_size: samples per step.
        optimizer: ``sgd`` (with momentum, Nesterov), ``rmsprop`` (MnasNet's) or ``adamw``.
        lr: peak learning rate (after warm-up).
        momentum: SGD/RMSprop momentum (ignored by AdamW).
        weight_decay: L2 / decoupled decay on weights with >= 2 dimensions (not biases, not BN).
        schedule: ``cosine`` (to 0 at the end), ``step`` (x ``step_gamma`` every ``step_epochs``)
            or ``constant``; applied per step after a linear warm-up of ``warmup_epochs``.
        warmup_epochs: linear warm-up length in epochs (may be fractional).
        step_epochs: the step schedule's period in epochs.
        step_gamma: the step schedule's factor.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        time_budget_s: wall-time budget of training (None: no budget).
        budget_action: ``fail`` (raise TrialFailed) or ``stop`` (keep the model trained so far).
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        threads: torch intra-op threads while training (None: leave as is).
        seed: seed of the batch order.
        amp: automatic mixed precision (float16 autocast + grad scaling), used on CUDA only.
        divergence_factor: fail when the windowed mean loss exceeds this times the first window's.
        check_every: steps between loss checks (each check synchronises with the device).
        eval_batch_size: batch size of validation passes.
    """

    epochs: int = 1
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_epochs: int = 1
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    time_budget_s: float | None = None
    budget_action: str = "fail"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0
    amp: bool = True
    divergence_factor: float = 10.0
    check_every: int = 10
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        k = "train."
        check_int(k + "epochs", self.epochs)
        check_int(k + "batch_size", self.batch_size)
        check_choice(k + "optimizer", self.optimizer, OPTIMIZERS)
        check_number(k + "lr", self.lr, strict=True)
        check_number(k + "momentum", self.momentum, maximum=1.0, strict_max=True)
        check_number(k + "weight_decay", self.weight_decay)
        check_choice(k + "schedule", self.schedule, SCHEDULES)
        check_number(k + "warmup_epochs", self.warmup_epochs)
        check_int(k + "step_epochs", self.step_epochs)
        check_number(k + "step_gamma", self.step_gamma, strict=True, maximum=1.0)
        check_number(k + "label_smoothing", self.label_smoothing, maximum=1.0, strict_max=True)
        check_number(k + "time_budget_s", self.time_budget_s, strict=True, optional=True)
        check_choice(k + "budget_action", self.budget_action, BUDGET_ACTIONS)
        check_device(self.device, k + "device")
        check_int(k + "threads", self.threads, optional=True)
        check_int(k + "seed", self.seed, minimum=0)
        check_bool(k + "amp", self.amp)
        check_number(k + "divergence_factor", self.divergence_factor, minimum=1.0, strict=True)
        check_int(k + "check_every", self.check_every)
        check_int(k + "eval_batch_size", self.eval_batch_size)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "train") -> TrainConfig:
        """Build from plain data; an unknown key raises ConfigError naming it."""
        return from_plain(cls, data, prefix)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


@dataclass
class TrainResult:
    """What :func:`train` measured.

    Attributes:
        val_accuracy: validation accuracy after the last epoch (0..1).
        train_loss: mean training loss of the last epoch.
        epochs: epochs completed (fewer than asked when stopped early).
        steps: optimizer steps taken.
        seconds: wall time of training (validation passes included).
        images_per_s: training images per second (validation passes excluded).
        stopped: ``completed``, ``callback`` (early stop requested) or ``budget``.
        history: per-epoch metrics, as given to the callback.
    """

    val_accuracy: float
    train_loss: float
    epochs: int
    steps: int
    seconds: float
    images_per_s: float
    stopped: str = "completed"
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer; weight decay applies to tensors with >= 2 dims only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise TrialFailed("the model has no trainable parameters")
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.momentum > 0)
    if config.optimizer == "rmsprop":  # MnasNet: decay 0.9, momentum 0.9 (TF eps ~ 1e-3)
        return torch.optim.RMSprop(groups, lr=config.lr, alpha=0.9, eps=1e-3,
                                   momentum=config.momentum)
    return torch.optim.AdamW(groups, lr=config.lr)


def lr_factor(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer step ``t`` (warm-up then schedule)."""
    warmup = round(config.warmup_epochs * steps_per_epoch)
    total = max(config.epochs * steps_per_epoch, 1)

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if config.schedule == "cosine":
            progress = (t - warmup) / max(total - warmup, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        if config.schedule == "step":
            return config.step_gamma ** (t // (config.step_epochs * steps_per_epoch))
        return 1.0

    return factor


class _Monitor:
    """Accumulates the loss on the device; checks NaN/inf, divergence and the time budget."""

    def __init__(self, config: TrainConfig, device: torch.device) -> None:
        self.config = config
        self.start = time.perf_counter()
        self.window = torch.zeros((), device=device)
        self.epoch_sum = torch.zeros((), device=device)
        self.count = 0
        self.reference: float | None = None

    def add(self, loss: torch.Tensor) -> None:
        self.window += loss
        self.count += 1

    def check(self, epoch: int, step: int) -> bool:
        """Raise TrialFailed on a bad loss; return True when the budget says stop."""
        if self.count:
            mean = self.window.item() / self.count
            self.epoch_sum += self.window
            self.window.zero_()
            self.count = 0
            where = f"epoch {epoch + 1}, step {step + 1}"
            if not math.isfinite(mean):
                raise TrialFailed(f"training loss is {mean} at {where}")
            if self.reference is None:
                self.reference = max(mean, 1e-6)
            elif mean > self.config.divergence_factor * self.reference:
                raise TrialFailed(
                    f"training loss diverged at {where}: {mean:.4g} > "
                    f"{self.config.divergence_factor:g} x initial {self.reference:.4g}"
                )
        budget = self.config.time_budget_s
        if budget is not None and time.perf_counter() - self.start > budget:
            if self.config.budget_action == "fail":
                raise TrialFailed(f"time budget of {budget:g} s exceeded at epoch {epoch + 1}")
            return True
        return False

    def epoch_loss(self, steps: int) -> float:
        value = self.epoch_sum.item() / max(steps, 1)
        self.epoch_sum.zero_()
        return value


def evaluate_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 512, amp: bool = False
) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` (tensors already on the model's device)."""
    batches = ((x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size))
    return batch_accuracy(model, batches, amp=amp)


@torch.inference_mode()
def batch_accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                   amp: bool = False) -> float:
    """Top-1 accuracy of ``model`` over ``(x, y)`` batches on the model's device."""
    was_training = model.training
    model.eval()
    correct, total = None, 0
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=amp):
            logits = model(x)
        hits = (logits.argmax(dim=1) == y).sum()
        correct = hits if correct is None else correct + hits
        total += len(y)
    model.train(was_training)
    return 0.0 if correct is None else correct.item() / max(total, 1)


def train(
    model: nn.Module,
    data: AnyDataset,
    config: TrainConfig | None = None,
    *,
    callback: EpochCallback | None = None,
    pause: Callable[[], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` and return its validation accuracy and training statistics.

    Args:
        model: the child network (moved to ``config.device``).
        data: a dataset from :func:`nas.evaluation.data.load_dataset` (in memory or streamed).
        config: training settings (defaults: 1 epoch of SGD).
        callback: called after every epoch with ``{"epoch", "train_loss", "val_accuracy", "lr",
            "epoch_s", "elapsed_s"}``; returning True stops training (early stopping).
        pause: called before every optimisation step; it may block, e.g. while a latency is
            measured in a quiet window (:meth:`nas.latency.conditions.TrainingMarker.pause_point`).

    Raises:
        TrialFailed: NaN/inf or diverging loss, time budget exceeded (``budget_action="fail"``).
        ConfigError: the device is not available.
    """
    config = config or TrainConfig()
    device = resolve_device(config.device, "train.device")
    with torch_threads(config.threads):
        return _Trainer(model, data, config, device, pause).run(callback)


class _Trainer:
    """One training run; the hot loop lives in :meth:`_epoch`."""

    def __init__(self, model: nn.Module, data: AnyDataset, config: TrainConfig,
                 device: torch.device, pause: Callable[[], None] | None = None) -> None:
        self.model = model.to(device)
        self.pause = pause
        self.config = config
        self.amp = config.amp and device.type == "cuda"
        self.source = data.batch_source(device)
        n, bs = self.source.num_train, config.batch_size
        self.batch = min(bs, n)
        self.steps_per_epoch = max(n // self.batch, 1)  # the last partial batch is dropped
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_factor(config, self.steps_per_epoch))
        self.loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp)
        self.monitor = _Monitor(config, device)

    def run(self, callback: EpochCallback | None) -> TrainResult:
        history: list[dict[str, Any]] = []
        steps, train_time, stopped = 0, 0.0, "completed"
        start = time.perf_counter()
        for epoch in range(self.config.epochs):
            t0 = time.perf_counter()
            done, budget_hit = self._epoch(epoch)
            steps += done
            train_time += time.perf_counter() - t0
            metrics = {
                "epoch": epoch + 1,
                "train_loss": self.monitor.epoch_loss(done),
                "val_accuracy": batch_accuracy(
                    self.model, self.source.val_batches(self.config.eval_batch_size),
                    amp=self.amp),
                "lr": self.optimizer.param_groups[0]["lr"],
                "epoch_s": time.perf_counter() - t0,
                "elapsed_s": time.perf_counter() - start,
            }
            history.append(metrics)
            log.debug("epoch %d: %s", epoch + 1, metrics)
            if budget_hit:
                stopped = "budget"
                break
            if callback is not None and callback(dict(metrics)) and epoch + 1 < self.config.epochs:
                stopped = "callback"
                break
        return TrainResult(
            val_accuracy=history[-1]["val_accuracy"], train_loss=history[-1]["train_loss"],
            epochs=len(history), steps=steps, seconds=time.perf_counter() - start,
            images_per_s=steps * self.batch / max(train_time, 1e-9), stopped=stopped,
            history=history,
        )

    def _epoch(self, epoch: int) -> tuple[int, bool]:
        """One pass; returns (steps done, budget exhausted)."""
        model, opt = self.model, self.optimizer
        model.train()
        every, done = self.config.check_every, 0
        # closing: a streamed epoch left early shuts its DataLoader workers down at once
        with closing(self.source.train_epoch(self.batch, self.generator)) as batches:
            for step, (x, y) in enumerate(batches):
                if self.pause is not None:
                    self.pause()
                with torch.autocast(x.device.type, dtype=torch.float16, enabled=self.amp):
                    loss = self.loss_fn(model(x), y)
                opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(opt)
                self.scaler.update()
                self.scheduler.step()
                self.monitor.add(loss.detach().float())
                done = step + 1
                if done % every == 0 and self.monitor.check(epoch, step):
                    return done, True
        return done, self.monitor.check(epoch, done - 1)
