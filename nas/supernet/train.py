"""Training a supernet: single-path uniform sampling (SPOS) or the sandwich rule, resumable.

SPOS (Guo et al., arXiv:1904.00420) trains the weights of a supernet by running one uniformly
sampled path per step, so that every path's weights are trained about equally and a child's
accuracy with inherited weights ranks it among the others. The supernet is the space's
(``space.supernet(**options.supernet)``, :mod:`nas.supernet.base`), and so is the path of a step
(its ``sample``: uniform over the space unless the space says otherwise, e.g. NAS-Bench-201's
``paths: non_isomorphic``). ``sampling="sandwich"`` is BigNAS's rule (Yu et al.,
arXiv:2003.11142; OFA's progressive shrinking, arXiv:1908.09791, likewise trains the largest
network first): per step the largest path, the smallest path and ``sandwich_paths`` random paths,
their gradients summed, the others learning from the largest path's soft labels (``distill``);
the space's supernet names the largest and smallest (its ``extremes()``).

The data are read through the dataset's batch source (:mod:`nas.evaluation.data`), the optimizer
and the learning-rate schedule are the proxy trainer's (:func:`nas.evaluation.train.make_optimizer`,
SGD with Nesterov momentum, weight decay on weights only; :func:`~nas.evaluation.train.lr_factor`,
cosine to 0 per step). Epoch ``e``'s batch order, sampled paths and dropout come from generators
seeded by ``(seed, e)``, and the momentum buffers are checkpointed with the weights
(:mod:`nas.supernet.checkpoint`), so a run killed and resumed ends with the weights of a run that
never stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas._devices import resolve_device, torch_threads
from nas.errors import TrialFailed
from nas.evaluation.data import AnyDataset
from nas.evaluation.train import TrainConfig, lr_factor, make_optimizer
from nas.space import Arch, Space
from nas.supernet.base import extremes_of, make_supernet, names_extremes, sample_path
from nas.supernet.checkpoint import (
    FORMAT,
    MODEL_FILE,
    check_info,
    dataset_summary,
    load_tensors,
    read_info,
    read_json,
    save_checkpoint,
    write_info,
)
from nas.supernet.options import SupernetOptions

__all__ = ["train_supernet", "sandwich_archs", "count_params", "resolve_options",
           "supernet_device", "with_builder_defaults"]

log = logging.getLogger(__name__)

EpochCallback = Callable[[dict[str, Any]], "bool | None"]


def resolve_options(options: SupernetOptions | Mapping[str, Any] | None) -> SupernetOptions:
    """``options`` as :class:`SupernetOptions` (plain data validated, None the defaults)."""
    if options is None:
        return SupernetOptions()
    if isinstance(options, SupernetOptions):
        return options
    return SupernetOptions.from_dict(options)


def supernet_device(options: SupernetOptions) -> torch.device:
    """The options' device (``auto``: CUDA when available, else the CPU)."""
    if options.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(options.device, "supernet option device")


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def count_params(space: Space, arch: Arch) -> int:
    """Parameters of ``space.build(arch)`` (built on the CPU, faster than on the meta device for
    small networks; the caller's random state is kept)."""
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in space.build(arch).parameters())


def _meta_supernet(space: Space, options: SupernetOptions) -> torch.nn.Module:
    """The space's supernet on PyTorch's meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return make_supernet(space, options.supernet)


def with_builder_defaults(space: Space, options: SupernetOptions) -> SupernetOptions:
    """``options`` whose ``supernet`` is the space's builder's own (its defaults filled in), as
    checkpoints record it, checked: ConfigError for a space without the hook, an option its
    builder refuses, or ``sampling: sandwich`` for a supernet without extremes."""
    module = _meta_supernet(space, options)
    if options.sampling == "sandwich" and not names_extremes(module):
        extremes_of(module)  # raises the missing-extremes error
    builder = dict(getattr(module, "options", None) or options.supernet)
    return dataclasses.replace(options, supernet=builder)


def sandwich_archs(space: Space, supernet: Mapping[str, Any] | None = None) -> tuple[Arch, Arch]:
    """``(largest, smallest)`` paths of the sandwich rule: the ``extremes()`` of the space's
    supernet (built with the options ``supernet``)."""
    return extremes_of(_meta_supernet(space, SupernetOptions(supernet=dict(supernet or {}))))


class _Trainer:
    """The model, optimizer and data of one training call; :meth:`epoch` is the hot loop."""

    def __init__(self, space: Space, dataset: AnyDataset, options: SupernetOptions,
                 device: torch.device) -> None:
        self.space, self.options, self.device = space, options, device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(options.seed)
            self.model = make_supernet(space, options.supernet).to(device)
        self.source = dataset.batch_source(device)
        self.batch = min(options.batch_size, self.source.num_train)
        self.steps_per_epoch = max(self.source.num_train // self.batch, 1)
        config = TrainConfig(epochs=options.epochs, batch_size=self.batch, optimizer="sgd",
                             lr=options.lr, momentum=options.momentum,
                             weight_decay=options.weight_decay, schedule="cosine")
        self.optimizer = make_optimizer(self.model, config)
        self.factor = lr_factor(config, self.steps_per_epoch)
        self.extremes = extremes_of(self.model) if options.sampling == "sandwich" else None

    def restore(self, folder: Path) -> None:
        """Weights, BN buffers and momentum buffers of the checkpoint."""
        state, momentum = load_tensors(folder, self.device)
        self.model.load_state_dict(state, strict=True)
        for name, p in self.model.named_parameters():
            if name in momentum:
                self.optimizer.state[p]["momentum_buffer"] = momentum[name]

    def epoch(self, e: int) -> float:
        """One pass over the training data; returns the mean loss."""
        order = torch.Generator().manual_seed(_seed(self.options.seed, e, 0))
        rng = np.random.default_rng(_seed(self.options.seed, e, 1))
        torch.manual_seed(_seed(self.options.seed, e, 2))  # dropout
        self.model.train()
        total, steps = torch.zeros((), device=self.device), 0
        with closing(self.source.train_epoch(self.batch, order)) as batches:
            for step, (x, y) in enumerate(batches):
                lr = self.options.lr * self.factor(e * self.steps_per_epoch + step)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                total += self._step(x, y, rng)
                self.optimizer.step()
                steps += 1
        loss = total.item() / max(steps, 1)
        if not math.isfinite(loss):
            raise TrialFailed(f"supernet training loss is {loss} at epoch {e + 1}")
        return loss

    def _step(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Forward and backward of one step's paths; returns the mean loss (detached)."""
        if self.extremes is None:
            loss = F.cross_entropy(self.model(x, sample_path(self.model, rng)), y)
            loss.backward()
            return loss.detach()
        largest, smallest = self.extremes
        logits = self.model(x, largest)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        total = loss.detach()
        target = logits.detach().softmax(dim=1) if self.options.distill else y
        others = [smallest] + [sample_path(self.model, rng)
                               for _ in range(self.options.sandwich_paths)]
        for arch in others:
            loss = F.cross_entropy(self.model(x, arch), target)
            loss.backward()
            total = total + loss.detach()
        return total / (1 + len(others))


def _new_info(space: Space, dataset: AnyDataset, options: SupernetOptions) -> dict[str, Any]:
    return {"format": FORMAT, "space": {"name": space.name, "options": dict(space.options)},
            "dataset": dataset_summary(dataset), "options": options.to_dict(),
            "seed": options.seed, "epochs": options.epochs, "epochs_done": 0, "complete": False,
            "seconds": 0.0, "history": []}


def _existing(folder: Path, fresh: dict[str, Any]) -> dict[str, Any] | None:
    """The folder's info if it holds epochs of this supernet; None to start from scratch.
    Raises ConfigError when its JSON or tensor file names another supernet."""
    written = read_json(folder)
    if written is not None:
        check_info(folder, written, fresh)
    old = read_info(folder)
    if old is not None:
        check_info(folder, old, fresh)
    if old is None or not (folder / MODEL_FILE).is_file():
        write_info(folder, fresh)  # claims the folder before the first epoch ends
        return None
    if written != old:  # killed between the tensor file's move and the JSON's
        write_info(folder, old)
    return {**old, "options": fresh["options"]}  # device, threads, calibration may change


@contextmanager
def _rng_kept(device: torch.device) -> Iterator[None]:
    """The caller's global torch generators, restored after training reseeds them."""
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        yield


def train_supernet(space: Space, dataset: AnyDataset,
                   options: SupernetOptions | Mapping[str, Any] | None,
                   checkpoint_dir: str | os.PathLike[str], *,
                   on_epoch: EpochCallback | None = None) -> dict[str, Any]:
    """Train (or resume, or return) the supernet of ``space`` on ``dataset`` in
    ``checkpoint_dir``; returns the checkpoint's info (``supernet.json``'s content).

    Every finished epoch is checkpointed atomically. Called again on the same folder it continues
    from the last finished epoch; a finished folder returns at once. ``on_epoch`` gets
    ``{"epoch", "epochs", "loss", "seconds"}`` after each checkpoint; returning True stops there
    (the folder can be resumed later). Load the trained model with
    :func:`nas.supernet.load_supernet`.

    Raises:
        ConfigError: bad options, a space without the supernet hook, or a folder that holds
            another supernet (the message names the space, or every space option, dataset field
            or training option that differs).
        TrialFailed: a NaN or infinite training loss.
    """
    options = with_builder_defaults(space, resolve_options(options))
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fresh = _new_info(space, dataset, options)
    info = _existing(folder, fresh)
    if info is not None and info["epochs_done"] >= options.epochs:
        return info
    device = supernet_device(options)
    with torch_threads(options.threads), _rng_kept(device):
        trainer = _Trainer(space, dataset, options, device)
        if info is not None:
            trainer.restore(folder)
        return _run(trainer, folder, info or fresh, on_epoch)


def _run(trainer: _Trainer, folder: Path, info: dict[str, Any],
         on_epoch: EpochCallback | None) -> dict[str, Any]:
    epochs = trainer.options.epochs
    while info["epochs_done"] < epochs:
        e, t0 = info["epochs_done"], time.perf_counter()
        loss = trainer.epoch(e)
        seconds = time.perf_counter() - t0
        info = {**info, "epochs_done": e + 1, "complete": e + 1 >= epochs,
                "seconds": info["seconds"] + seconds,
                "history": [*info["history"], {"epoch": e + 1, "loss": loss, "seconds": seconds}]}
        save_checkpoint(folder, trainer.model, trainer.optimizer, info)
        log.info("supernet epoch %d/%d: loss %.4f (%.1f s)", e + 1, epochs, loss, seconds)
        if on_epoch is not None and on_epoch({"epoch": e + 1, "epochs": epochs, "loss": loss,
                                              "seconds": seconds}):
            break
    return info
