"""Small spaces and evaluators for tests and benchmarks (importable by Ray workers).

Name them in a config as ``nas.testing.fixtures:ToySpace`` / ``nas.testing.fixtures:fixed_time``.

- :class:`ToySpace`: a tiny MLP space for 8x8 digits (``width`` x ``depth``).
- :class:`FaultSpace`: one decision ``mode`` in {ok, raise, nan, slow}: ``raise`` builds a model
  whose forward raises, ``nan`` one whose output is NaN (so its loss is NaN), ``slow`` one that
  takes ``slow_s`` per forward pass (to run over a training time budget).
- :func:`fixed_time`: an evaluator that takes a fixed wall time (``options.seconds``, default 1 s)
  and returns deterministic metrics, to measure the search machinery's own overhead.
- :func:`dies_once`: an evaluator whose worker process exits (as if killed) the first time it
  runs, recorded by creating ``options.marker``, and that acts as :func:`fixed_time` after that.
- :func:`scripted_epochs`: an evaluator that measures latency, then reports the per-epoch
  validation accuracies :func:`scripted_curve` gives the architecture instead of training, so an
  early-stopping scheduler's decisions can be predicted.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch
from torch import nn

from nas.registry import evaluator
from nas.space import Arch, Choice, Space

__all__ = ["ToySpace", "FaultSpace", "fixed_time", "dies_once", "scripted_curve", "scripted_epochs",
           "TOY_SEARCH"]

# a small real search (tiny MLPs on digits), used by tests that need a run folder
TOY_SEARCH: dict[str, Any] = {
    "space": {"name": "nas.testing.fixtures:ToySpace"},
    "controller": {"name": "evolution", "options": {"population_size": 3, "sample_size": 2}},
    "evaluator": {"dataset": "digits", "epochs": 2},
    "latency": {"repeats": 6, "warmup": 1, "rounds": 2},
    "reward": {"preset": "soft", "target": 0.05},
    "search": {"trials": 6, "concurrency": 2, "remeasure_top": 0},  # tests that re-measure say so
    "ray": {"num_cpus": 2},
}


class _Input(Space):
    def input_shape(self) -> tuple[int, int, int]:
        size = self.options["input_size"]
        return (self.options["in_channels"], size, size)


def _mlp(in_features: int, width: int, depth: int, classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(depth):
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return nn.Sequential(*layers, nn.Linear(in_features, classes))


class ToySpace(_Input):
    """``width`` in {8, 16, 32, 64}, ``depth`` in {1, 2, 3}: 12 MLPs."""

    name = "toy"

    def __init__(self, *, input_size: int = 8, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__([Choice("width", (8, 16, 32, 64)), Choice("depth", (1, 2, 3))],
                         options={"input_size": input_size, "in_channels": in_channels,
                                  "num_classes": num_classes})

    def build(self, arch: Arch) -> nn.Module:
        arch = self.validate(arch)
        o = self.options
        return _mlp(o["in_channels"] * o["input_size"] ** 2, int(arch["width"]),
                    int(arch["depth"]), o["num_classes"])


class _Faulty(nn.Module):
    def __init__(self, body: nn.Module, mode: str, slow_s: float) -> None:
        super().__init__()
        self.body, self.mode, self.slow_s = body, mode, slow_s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "raise":
            raise RuntimeError("this child's forward pass raises on purpose")
        if self.mode == "slow":
            time.sleep(self.slow_s)  # simulates a slow child (its work, not synchronisation)
        y = self.body(x)
        return y * float("nan") if self.mode == "nan" else y


class FaultSpace(_Input):
    """``mode`` in {ok, raise, nan, slow}: children that fail in each way a trial can fail."""

    name = "fault"

    def __init__(self, *, input_size: int = 8, in_channels: int = 1, num_classes: int = 10,
                 slow_s: float = 0.05) -> None:
        super().__init__([Choice("mode", ("ok", "raise", "nan", "slow"))],
                         options={"input_size": input_size, "in_channels": in_channels,
                                  "num_classes": num_classes, "slow_s": slow_s})

    def build(self, arch: Arch) -> nn.Module:
        o = self.options
        body = _mlp(o["in_channels"] * o["input_size"] ** 2, 32, 1, o["num_classes"])
        return _Faulty(body, str(self.validate(arch)["mode"]), float(o["slow_s"]))


@evaluator(options=("seconds",))
def fixed_time(arch: Arch | None, model: nn.Module, ctx: Any) -> dict[str, Any]:
    """Evaluator that takes ``options.seconds`` (default 1.0) and returns stable metrics."""
    options = getattr(ctx.settings, "evaluator_options", None) or {}
    seconds = float(options.get("seconds", 1.0))
    time.sleep(seconds)  # the simulated evaluation itself
    key = int(arch.key[:8], 16) if arch is not None else 0
    return {"accuracy": 0.5 + (key % 1000) / 2000.0, "latency_ms": 1.0 + (key % 97) / 10.0}


@evaluator(options=("seconds", "marker"))
def dies_once(arch: Arch | None, model: nn.Module, ctx: Any) -> dict[str, Any]:
    """Evaluator: the first child to run (anywhere: ``options.marker`` is a file all workers
    see) takes its worker process down; every later one is :func:`fixed_time`'s."""
    options = getattr(ctx.settings, "evaluator_options", None) or {}
    try:
        with open(options["marker"], "x"):
            pass
    except FileExistsError:
        return fixed_time(arch, model, ctx)
    os._exit(1)  # the worker dies mid-child, as when killed


def scripted_curve(arch: Arch, epochs: int) -> list[float]:
    """Validation accuracy after each of ``epochs`` epochs: rising to a level set by ``arch``.

    The level is a hash of the architecture key in [0.1, 0.9]; every curve has the same shape, so
    architectures rank the same after every epoch.
    """
    level = 0.1 + 0.8 * (int(arch.key[:8], 16) % 997) / 996
    return [level * (0.5 + 0.5 * epoch / epochs) for epoch in range(1, epochs + 1)]


@evaluator
def scripted_epochs(arch: Arch | None, model: nn.Module, ctx: Any) -> dict[str, Any]:
    """Evaluator: the standard latency phase, then :func:`scripted_curve` reported per epoch.

    No training: epoch ``e`` reports ``{"epoch": e, "val_accuracy": curve[e - 1]}`` through
    ``ctx.report`` (which may stop it early by returning True, as after a real epoch), and the
    accuracy is the last one reported.
    """
    if arch is None:
        raise ValueError("scripted_epochs needs an architecture, not a preset")
    metrics = ctx.measure_latency(model)
    history: list[dict[str, Any]] = []
    for epoch, accuracy in enumerate(scripted_curve(arch, ctx.settings.train.epochs), 1):
        history.append({"epoch": epoch, "val_accuracy": accuracy})
        if ctx.report is not None and ctx.report(dict(history[-1])):
            break
    metrics.update(accuracy=history[-1]["val_accuracy"],
                   train={"epochs": len(history), "history": history})
    return metrics
