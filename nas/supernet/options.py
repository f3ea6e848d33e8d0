"""Validated settings of supernet training and child scoring (:class:`SupernetOptions`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nas._checks import check_bool, check_choice, check_device, check_int, check_number
from nas.errors import ConfigError, did_you_mean

__all__ = ["SupernetOptions", "SAMPLINGS", "SCORES", "TRAINING_KEYS", "LEGACY_KEYS"]

SAMPLINGS = ("uniform", "sandwich")
SCORES = ("accuracy", "loss")
PREFIX = "supernet option "
# the options that change the trained weights: a resumed folder must agree on all of them
TRAINING_KEYS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "seed", "sampling",
                 "sandwich_paths", "distill", "supernet")
# top-level keys of mnas before issue 23 that belong to a space's supernet options now (MnasNet's
# ``kernel``): configs and checkpoints written with them still read
LEGACY_KEYS = ("kernel",)


@dataclass(frozen=True)
class SupernetOptions:
    """How a weight-sharing supernet is trained (SPOS, arXiv:1904.00420) and children scored.

    Args:
        epochs: passes over the training data.
        batch_size: samples per step.
        lr: peak learning rate of SGD (momentum, Nesterov), cosine-annealed per step to 0.
        momentum: SGD momentum.
        weight_decay: L2 decay on weights with >= 2 dimensions (not biases, not BN).
        seed: seed of the initial weights, the batch order and the sampled paths.
        sampling: ``uniform`` (SPOS: one uniformly sampled path per step) or ``sandwich``
            (BigNAS/OFA: the largest, the smallest and ``sandwich_paths`` random paths per step,
            gradients summed).
        sandwich_paths: random paths per step besides the largest and smallest (``sandwich``).
        distill: with ``sandwich``, the other paths learn the largest path's soft labels
            (in-place distillation, BigNAS arXiv:2003.11142) instead of the hard labels.
        supernet: the space's own supernet options, passed to its hook
            (``space.supernet(**supernet)``): ``mnasnet`` takes ``kernel`` (``shared``: the 3x3
            kernel is the centre of the 5x5; ``separate``: own 3x3 and 5x5 weights, each with its
            own BN), ``nasbench201`` takes ``paths`` (``uniform`` or ``non_isomorphic``). A
            top-level ``kernel`` (mnas before issue 23) is read as ``supernet.kernel``.
        score: what ranks the children: ``accuracy`` (validation accuracy) or ``loss``
            (validation cross-entropy, which ranks better in large spaces: Ning et al., NeurIPS
            2021). Both are recorded; with ``loss`` the reward's ACC defaults to
            ``supernet.val_likelihood``, exp(-loss), and ``accuracy`` stays the accuracy.
        calib_batches: training batches that recalibrate a child's BN statistics before scoring.
        calib_batch_size: samples per calibration batch.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available).
        threads: torch intra-op threads while training and scoring (None: leave as is).

    The defaults were measured on digits with the quick start's space
    (``benchmarks/supernet_rank.py``): a supernet needs a few thousand single-path steps before
    most paths classify at all (after ~700 steps sampled children score ~20%, after 3,500 ~79%),
    hence 100 epochs of batch 32 (3,500 steps, a few CPU minutes); shared kernels beat separate
    ones at equal steps (79% against 40% mean child accuracy: each separate kernel trains half as
    often), and uniform sampling the sandwich rule at about equal time (79% against 76%).
    SPOS: arXiv:1904.00420.
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    seed: int = 0
    sampling: str = "uniform"
    sandwich_paths: int = 2
    distill: bool = True
    supernet: dict[str, Any] = field(default_factory=dict)
    score: str = "accuracy"
    calib_batches: int = 10
    calib_batch_size: int = 64
    device: str = "cpu"
    threads: int | None = None

    def __post_init__(self) -> None:
        k = PREFIX
        check_int(k + "epochs", self.epochs)
        check_int(k + "batch_size", self.batch_size)
        check_number(k + "lr", self.lr, strict=True)
        check_number(k + "momentum", self.momentum, maximum=1.0, strict_max=True)
        check_number(k + "weight_decay", self.weight_decay)
        check_int(k + "seed", self.seed, minimum=0)
        check_choice(k + "sampling", self.sampling, SAMPLINGS)
        check_int(k + "sandwich_paths", self.sandwich_paths, minimum=0)
        check_bool(k + "distill", self.distill)
        _check_plain(k + "supernet", self.supernet)
        object.__setattr__(self, "supernet", dict(self.supernet))
        check_choice(k + "score", self.score, SCORES)
        check_int(k + "calib_batches", self.calib_batches, minimum=0)
        check_int(k + "calib_batch_size", self.calib_batch_size)
        if self.device != "auto":
            try:
                check_device(self.device, k + "device")
            except ConfigError:
                raise ConfigError(f"{k}device={self.device!r}: allowed values: cpu, cuda, "
                                  "cuda:N, auto") from None
        check_int(k + "threads", self.threads, optional=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SupernetOptions:
        """From plain data; an unknown key raises ConfigError naming it and the allowed keys."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"supernet options: expected a mapping, got {data!r}")
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known and key not in LEGACY_KEYS:
                raise ConfigError(f"{PREFIX}{key}: unknown key{did_you_mean(key, known)}; "
                                  f"allowed keys: {', '.join(known)}")
        data = dict(data)
        legacy = {key: data.pop(key) for key in LEGACY_KEYS if key in data}
        if legacy:
            _check_plain(PREFIX + "supernet", data.get("supernet", {}))
            data["supernet"] = {**data.get("supernet", {}), **legacy}
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (round-trips through :meth:`from_dict`)."""
        return asdict(self)

    def training_dict(self) -> dict[str, Any]:
        """The options that change the trained weights (:data:`TRAINING_KEYS`)."""
        return {key: getattr(self, key) for key in TRAINING_KEYS}


def _check_plain(key: str, value: Any) -> None:
    """A mapping of plain data (JSON, string keys): it is written into checkpoints."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{key}={value!r:.80}: must be a mapping of the space's supernet "
                          "options (string keys)")
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r:.80}: must hold plain values (numbers, strings, "
                          "booleans, lists, mappings)") from None
