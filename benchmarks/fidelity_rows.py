"""How each evaluator of ``benchmarks/evaluator_fidelity.py`` scores one NAS-Bench-201 cell.

Every function here runs in a worker process (one torch thread) and returns
``{"score": float, "cpu_s": float}`` per cell, where ``cpu_s`` is the process's CPU time spent on
that cell (``time.process_time``: what the cell cost on this machine's cores, whatever else runs).

- :func:`cost_scores`: the parameter count and MACs of the benchmark's own network (16 channels,
  5 cells per stage, 32x32 inputs: the network whose 200-epoch accuracy the table holds).
- :func:`zero_cost_row_scores`: the zero-cost proxies of that network, untrained, on one seeded
  batch of CIFAR-10 training images (:mod:`nas.evaluation.zero_cost`).
- :func:`trained_score`: the validation accuracy after proxy training at a recipe (channels,
  cells per stage, image size, images, epochs, batch, lr), as ``nas search`` trains a child.
- :func:`supernet_scores`: the accuracy and loss of the cell cut out of a trained NB201
  supernet, BN recalibrated (:func:`nas.supernet.score_child`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch

from nas.evaluation.data import AnyDataset, load_dataset
from nas.evaluation.images import ImageOptions
from nas.registry import get_space
from nas.space import Space

__all__ = ["BENCH_NETWORK", "load_data", "bench_space", "cost_scores", "zero_cost_row_scores",
           "trained_score", "supernet_scores", "ZC_PROXIES"]

BENCH_NETWORK = {"channels": 16, "cells_per_stage": 5, "input_size": 32, "num_classes": 10}
ZC_PROXIES = ("nwot", "synflow", "jacob_cov", "snip", "grad_norm")
_DATA: dict[tuple[Any, ...], AnyDataset] = {}


def load_data(image_size: int | None, max_train: int | None, root: str | None,
              dataset: str = "cifar10", val_fraction: float = 0.1) -> AnyDataset:
    """The dataset (kept per process): CIFAR-10 at ``image_size`` px (None: 32), ``max_train``
    training images (a seeded subset), a seeded 10% validation split."""
    key = (dataset, image_size, max_train, root, val_fraction)
    if key not in _DATA:
        _DATA[key] = load_dataset(dataset, val_fraction=val_fraction, seed=0, root=root,
                                  max_train=max_train, images=ImageOptions(image_size=image_size))
    return _DATA[key]


def bench_space(**options: Any) -> Space:
    """The ``nasbench201`` space at ``options`` (default: the benchmark's own network)."""
    return get_space("nasbench201", **{**BENCH_NETWORK, **options})


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.process_time()
    value = fn(*args)
    return value, time.process_time() - t0


def cost_scores(arch_str: str, network: Mapping[str, Any] | None = None
                ) -> dict[str, dict[str, float]]:
    """``{"params": ..., "macs": ...}`` of the benchmark's network of ``arch_str`` (``network``:
    other space options, for a smoke run)."""
    from nas.evaluation.cost import count_cost

    space = bench_space(**(network or {}))
    t0 = time.process_time()
    torch.manual_seed(0)
    model = space.build(space.from_string(arch_str))
    params = float(sum(p.numel() for p in model.parameters()))
    built = time.process_time() - t0
    cost, seconds = _timed(count_cost, model, space.input_shape())
    return {"params": {"score": params, "cpu_s": built},
            "macs": {"score": float(cost.macs), "cpu_s": built + seconds}}


def zero_cost_row_scores(arch_str: str, root: str | None, dataset: str = "cifar10",
                         network: Mapping[str, Any] | None = None, batch_size: int = 64,
                         seed: int = 0) -> dict[str, dict[str, float]]:
    """Each zero-cost proxy of the benchmark's untrained network on one seeded batch of
    ``batch_size`` CIFAR-10 training images (32 px); ``cpu_s`` per proxy."""
    from nas.evaluation.zero_cost import zero_cost_scores

    network = dict(network or {})
    data = load_data(network.get("input_size"), None, root, dataset)
    space = bench_space(**network)
    torch.manual_seed(seed)
    model = space.build(space.from_string(arch_str))
    out = {}
    for name in ZC_PROXIES:
        t0 = time.process_time()
        value = zero_cost_scores(model, data, (name,), seed=seed, batch_size=batch_size)[name]
        out[f"zc:{name}"] = {"score": float(value), "cpu_s": time.process_time() - t0}
    return out


def trained_score(arch_str: str, recipe: Mapping[str, Any], root: str | None,
                  dataset: str = "cifar10", seed: int = 0) -> dict[str, dict[str, float]]:
    """The validation accuracy of ``arch_str`` after proxy training at ``recipe`` (keys:
    ``channels``, ``cells_per_stage``, ``image_size``, ``max_train``, ``epochs``,
    ``batch_size``, ``lr``, ``weight_decay``), its weights seeded as a search seeds them."""
    from nas.errors import TrialFailed
    from nas.evaluation.train import TrainConfig, train

    data = load_data(recipe["image_size"], recipe["max_train"], root, dataset)
    space = bench_space(channels=recipe["channels"], cells_per_stage=recipe["cells_per_stage"],
                        input_size=data.input_shape[-1])
    config = TrainConfig(epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                         lr=recipe["lr"], weight_decay=recipe["weight_decay"],
                         schedule="cosine", threads=1, seed=seed)
    t0 = time.process_time()
    torch.manual_seed(seed)
    model = space.build(space.from_string(arch_str))
    try:
        accuracy = train(model, data, config).val_accuracy
    except TrialFailed:  # a diverging child ranks last, as a failed trial would
        accuracy = 0.0
    return {"train": {"score": float(accuracy), "cpu_s": time.process_time() - t0}}


def supernet_scores(arch_str: str, folder: str, recipe: Mapping[str, Any], root: str | None,
                    options: Mapping[str, Any], dataset: str = "cifar10"
                    ) -> dict[str, dict[str, float]]:
    """The cell cut out of the supernet in ``folder`` (trained at ``recipe``'s network and
    data), BN recalibrated: ``{"supernet:accuracy": ..., "supernet:loss": ...}`` (the loss
    negated, so that higher is better for every row)."""
    from nas.supernet import SupernetOptions, load_supernet, score_child

    key = ("supernet", folder)
    if key not in _DATA:
        _DATA[key] = load_supernet(folder)[0]  # type: ignore[assignment]
    data = load_data(recipe["image_size"], recipe["max_train"], root, dataset)
    space = bench_space(channels=recipe["channels"], cells_per_stage=recipe["cells_per_stage"],
                        input_size=data.input_shape[-1])
    t0 = time.process_time()
    scored = score_child(_DATA[key], space.from_string(arch_str), data,
                         SupernetOptions.from_dict({**options, "threads": 1}))
    seconds = time.process_time() - t0
    return {"supernet:accuracy": {"score": scored.accuracy, "cpu_s": seconds},
            "supernet:loss": {"score": -scored.loss, "cpu_s": seconds}}
