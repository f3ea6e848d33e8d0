"""Validated settings of one evaluation (:class:`EvalSettings`): data, training, latency, reward,
evaluator and hard constraints, from plain (YAML) data and back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from nas._checks import check_bool, check_int, check_number
from nas.constraints import Constraints
from nas.errors import ConfigError, unknown_key
from nas.evaluation.images import ImageOptions
from nas.evaluation.train import TrainConfig
from nas.latency.measure import LatencyConfig
from nas.reward import RewardConfig

__all__ = ["EvalSettings"]

_IMAGE_KEYS = ("image_size", "stream", "stream_above_mb", "num_workers", "augment")


@dataclass(frozen=True)
class EvalSettings:
    """Validated settings of one evaluation.

    Args:
        dataset: ``digits``, ``cifar10``, ``npz:PATH``, ``folder:PATH`` or ``torchvision:NAME``
            (see :mod:`nas.evaluation.data`).
        val_fraction: share of the training data held out for validation.
        data_seed: seed of the validation split (the same for every child of a run).
        max_train: keep at most this many training samples (None: all).
        data_root: CIFAR-10 / torchvision folder (None: ``$MNAS_DATA_DIR`` or ``~/.cache/mnas``).
        download: download CIFAR-10 or a torchvision dataset if missing.
        image_size: side of the square inputs: ``folder:PATH`` images are resized to it, an
            array dataset (``cifar10``, ``npz:``) is downscaled to it once (None: as stored).
        stream: ``folder:PATH`` only: ``auto``, ``true`` (always stream from disk) or ``false``.
        stream_above_mb: the ``auto`` streaming threshold in MiB.
        num_workers: DataLoader worker processes when streaming.
        augment: random crop and flip of streamed training batches
            (:class:`nas.evaluation.images.ImageOptions`).
        train: proxy-training settings (its ``seed`` also seeds weight initialisation).
        latency: latency settings.
        reward: reward settings, or None for raw metrics only.
        evaluator: registered evaluator name or ``"package.module:function"``.
        evaluator_options: plain data for a custom evaluator (``ctx.settings.evaluator_options``).
        lut_path: JSON file of a latency lookup table (``latency.mode="lut"``), read if present
            and rewritten with new units.
        constraints: hard bounds checked before training (:class:`nas.constraints.Constraints`);
            a child over one ends ``rejected``, untrained.
    """

    dataset: str = "digits"
    val_fraction: float = 0.2
    data_seed: int = 0
    max_train: int | None = None
    data_root: str | None = None
    download: bool = False
    image_size: int | None = None
    stream: str | bool = "auto"
    stream_above_mb: float = 1024.0
    num_workers: int = 2
    augment: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    reward: RewardConfig | None = None
    evaluator: str = "default"
    evaluator_options: dict[str, Any] = field(default_factory=dict)
    lut_path: str | None = None
    constraints: Constraints = field(default_factory=Constraints)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset={self.dataset!r}: must be a dataset name")
        check_number("val_fraction", self.val_fraction, strict=True, maximum=1.0, strict_max=True)
        check_int("data_seed", self.data_seed, minimum=0)
        check_int("max_train", self.max_train, optional=True)
        check_bool("download", self.download)
        self.image_options()  # validates the image keys
        for key, cls in (("train", TrainConfig), ("latency", LatencyConfig),
                         ("reward", RewardConfig), ("constraints", Constraints)):
            value = getattr(self, key)
            if not isinstance(value, cls) and not (key == "reward" and value is None):
                raise ConfigError(f"{key}={value!r}: must be a {cls.__name__}")
        if not isinstance(self.evaluator, str) or not self.evaluator:
            raise ConfigError(f"evaluator={self.evaluator!r}: must be a name or 'module:function'")
        if not isinstance(self.evaluator_options, Mapping):
            raise ConfigError(f"evaluator_options={self.evaluator_options!r}: must be a mapping")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EvalSettings:
        """From plain (e.g. YAML) data with sections ``train``, ``latency`` and ``reward``.

        ``reward`` is ``{"target", "alpha", "beta", "metric"}`` or ``{"preset": "soft"|"hard",
        "target", "metric"}``. Unknown keys raise :class:`ConfigError` naming them.
        """
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise unknown_key(key, key, sorted(known))
        values = dict(data)
        if isinstance(values.get("train"), Mapping):
            values["train"] = TrainConfig.from_dict(values["train"])
        if isinstance(values.get("latency"), Mapping):
            values["latency"] = LatencyConfig.from_dict(values["latency"])
        if isinstance(values.get("reward"), Mapping):
            values["reward"] = RewardConfig.from_dict(values["reward"])
        if isinstance(values.get("constraints"), Mapping):
            values["constraints"] = Constraints.from_dict(values["constraints"])
        return cls(**values)

    def image_options(self) -> ImageOptions:
        """The image-folder keys as :class:`~nas.evaluation.images.ImageOptions`."""
        return ImageOptions(**{k: getattr(self, k) for k in _IMAGE_KEYS})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (round-trips through :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["train"], out["latency"] = self.train.to_dict(), self.latency.to_dict()
        out["reward"] = None if self.reward is None else self.reward.to_dict()
        out["evaluator_options"] = dict(self.evaluator_options)
        out["constraints"] = self.constraints.to_dict()
        return out
