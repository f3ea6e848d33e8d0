"""Scoring a child with inherited weights: extract, recalibrate BN, validation accuracy and loss.

The running BN statistics a supernet accumulates mix every path that trained, so before a child
is scored its own are recomputed (SPOS, arXiv:1904.00420, section 3.3): reset, then the cumulative
average (``momentum=None``) over a few training batches forwarded in train mode without gradients.
The child is then measured on the validation split: top-1 accuracy and mean cross-entropy. Ning et
al. (NeurIPS 2021, "Evaluating Efficient Performance Estimators of Neural Architectures") found
that a one-shot supernet's validation loss ranks children better than its accuracy in large
spaces; the ``supernet`` evaluator ranks by either (``score``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from contextlib import closing
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nas._devices import torch_threads
from nas.evaluation.data import AnyDataset
from nas.space import Arch
from nas.supernet.base import extract
from nas.supernet.options import SupernetOptions

__all__ = ["recalibrate_bn", "score_child", "validate", "ChildScore", "EVAL_BATCH"]

EVAL_BATCH = 512
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _device(model: nn.Module) -> torch.device:
    return next(itertools.chain(model.parameters(), model.buffers())).device


def _recalibrate(model: nn.Module, source: Any, batches: int, batch_size: int,
                 seed: int) -> None:
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    order = torch.Generator().manual_seed(seed)
    model.train()
    try:
        with torch.no_grad(), closing(
                source.train_epoch(min(batch_size, source.num_train), order)) as stream:
            for x, _ in itertools.islice(stream, batches):
                model(x)
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def recalibrate_bn(model: nn.Module, dataset: AnyDataset, batches: int, batch_size: int,
                   seed: int = 0) -> nn.Module:
    """Recompute every BatchNorm's running statistics of ``model`` from ``batches`` training
    batches of ``batch_size`` (a seeded random draw: the same seed, the same statistics), and
    leave it in eval mode. ``batches=0`` keeps the statistics as they are. Returns ``model``."""
    if batches > 0:
        _recalibrate(model, dataset.batch_source(_device(model)), batches, batch_size, seed)
    return model.eval()


class ChildScore(NamedTuple):
    """What :func:`score_child` returns."""

    child: nn.Module
    """``space.build(arch)`` with the inherited weights and recalibrated BN, in eval mode."""
    accuracy: float
    """Top-1 accuracy on the validation split."""
    loss: float
    """Mean cross-entropy on the validation split (nats per sample)."""


def validate(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
             ) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``model`` (eval mode, no gradients) over
    ``(x, y)`` batches on the model's device."""
    model.eval()
    correct = total_loss = None
    total = 0
    with torch.no_grad():
        for x, y in batches:
            logits = model(x)
            hits = (logits.argmax(dim=1) == y).sum()
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            correct = hits if correct is None else correct + hits
            total_loss = loss if total_loss is None else total_loss + loss
            total += len(y)
    if correct is None or total_loss is None:
        return 0.0, float("nan")
    return correct.item() / total, total_loss.item() / total


def score_child(supernet: nn.Module, arch: Arch | Any, dataset: AnyDataset,
                options: SupernetOptions | None = None) -> ChildScore:
    """``(child, validation accuracy, validation loss)`` of ``arch`` with the supernet's
    weights: the child is :func:`~nas.supernet.base.extract`'s (``space.build(arch)``), its BN
    recalibrated with ``options.calib_batches`` batches of ``options.calib_batch_size`` (seed
    ``options.seed``), in eval mode."""
    options = options or SupernetOptions()
    with torch_threads(options.threads):
        child = extract(supernet, arch)
        source = dataset.batch_source(_device(child))
        if options.calib_batches > 0:
            _recalibrate(child, source, options.calib_batches, options.calib_batch_size,
                         options.seed)
        accuracy, loss = validate(child, source.val_batches(EVAL_BATCH))
    return ChildScore(child, float(accuracy), float(loss))
