"""MnasNet's latency-aware reward and Pareto helpers.

MnasNet (Tan et al., arXiv:1807.11626, equation 2) scores a child ``m`` by

    ACC(m) * (LAT(m) / T) ** w,   w = alpha if LAT(m) <= T else beta

Presets from the paper (section 3): ``soft`` (alpha = beta = -0.07: a child twice as slow as the
target must be ~5% more accurate to tie) and ``hard`` (alpha = 0, beta = -1: no bonus under the
target, a steep penalty over it). The cost may be latency (ms), MACs or parameters. The reward is
always computed from raw stored metrics, so a finished run can be re-ranked for another target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from nas._checks import check_known
from nas.errors import ConfigError

__all__ = ["RewardConfig", "PRESETS", "COST_METRICS", "mnas_reward", "pareto_mask"]

PRESETS: dict[str, tuple[float, float]] = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0)}

# reward metric name -> the raw metric column it reads
COST_METRICS: dict[str, str] = {"latency": "latency_ms", "macs": "macs", "params": "params"}


def mnas_reward(accuracy: float, cost: float, target: float, alpha: float, beta: float) -> float:
    """``accuracy * (cost / target) ** w`` with ``w = alpha`` if ``cost <= target`` else ``beta``.

    Returns NaN when accuracy or cost is missing or not finite, or cost is not positive.

    Raises:
        ValueError: ``target`` is not a positive finite number (a negative base would make the
            power complex).
    """
    if not (isinstance(target, int | float) and math.isfinite(target) and target > 0):
        raise ValueError(f"reward target must be a positive finite number, got {target!r}")
    try:
        accuracy, cost = float(accuracy), float(cost)
    except (TypeError, ValueError):
        return math.nan
    if not (math.isfinite(accuracy) and math.isfinite(cost)) or cost <= 0:
        return math.nan
    w = alpha if cost <= target else beta
    return accuracy * (cost / target) ** w


@dataclass(frozen=True)
class RewardConfig:
    """Reward settings.

    Args:
        target: the target T, in the unit of the cost metric (ms, MACs or parameters).
        alpha: exponent when the cost is at or under the target.
        beta: exponent when the cost is over the target.
        metric: ``latency`` (column ``latency_ms``), ``macs`` or ``params``.
        accuracy_key: the raw metric that plays ACC (``accuracy`` by default; a dotted key
            reads a nested metric: ``supernet.val_likelihood`` when the supernet evaluator
            ranks by loss).
    """

    target: float
    alpha: float = -0.07
    beta: float = -0.07
    metric: str = "latency"
    accuracy_key: str = "accuracy"

    def __post_init__(self) -> None:
        if isinstance(self.target, bool) or not isinstance(self.target, int | float):
            raise ConfigError(f"reward.target={self.target!r}: must be a positive number")
        if not math.isfinite(self.target) or self.target <= 0:
            raise ConfigError(f"reward.target={self.target!r}: must be a positive number")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"reward.{name}={value!r}: must be a number")
            if not math.isfinite(value):
                raise ConfigError(f"reward.{name}={value!r}: must be finite")
        if not isinstance(self.accuracy_key, str) or not self.accuracy_key:
            raise ConfigError(f"reward.accuracy_key={self.accuracy_key!r}: must be a metric name")
        if self.metric not in COST_METRICS:
            raise ConfigError(
                f"reward.metric={self.metric!r}: allowed values: {', '.join(COST_METRICS)}"
            )

    @classmethod
    def from_preset(cls, preset: str, target: float, metric: str = "latency") -> RewardConfig:
        """``soft`` or ``hard`` preset at ``target``."""
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(f"reward.preset={preset!r}: allowed values: {', '.join(PRESETS)}")
        alpha, beta = PRESETS[preset]
        return cls(target=target, alpha=alpha, beta=beta, metric=metric)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardConfig:
        """The one parser of a config's ``reward`` section (and of :meth:`to_dict`'s output).

        ``{"target", "alpha", "beta", "metric", "accuracy_key"}`` (alpha/beta default to the soft
        preset) or ``{"preset": "soft"|"hard", "target", "metric"}``; an unknown key, a missing
        target or a preset given with exponents raises ConfigError naming the key.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"reward={data!r}: must be a mapping")
        check_known("reward", data, sorted(["preset", *(f.name for f in fields(cls))]))
        if data.get("target") is None:
            raise ConfigError("reward.target: missing (the latency/MACs/params target T)")
        if data.get("preset") is None:
            return cls(**{k: v for k, v in data.items() if k != "preset"})
        if "alpha" in data or "beta" in data:
            raise ConfigError("reward.preset: give either a preset or alpha/beta, not both")
        preset = cls.from_preset(data["preset"], data["target"], data.get("metric", "latency"))
        return replace(preset, accuracy_key=data.get("accuracy_key", "accuracy"))

    @property
    def cost_key(self) -> str:
        """The raw metric column holding the cost."""
        return COST_METRICS[self.metric]

    def __call__(self, metrics: Mapping[str, Any]) -> float:
        """Reward of one trial's raw metrics (NaN where accuracy or cost is missing). A dotted
        ``accuracy_key`` reads nested metrics (``supernet.val_likelihood``), as the trials
        frame's flattened columns name them."""
        return mnas_reward(
            _metric(metrics, self.accuracy_key),
            metrics.get(self.cost_key, math.nan),
            self.target,
            self.alpha,
            self.beta,
        )

    def describe(self) -> str:
        """One line, e.g. ``ACC x (latency_ms/T)^w, T = 1 ms, alpha = -0.07, beta = -0.07``."""
        unit = {"latency": "ms", "macs": "MACs", "params": "parameters"}[self.metric]
        return (f"ACC x ({self.cost_key}/T)^w, T = {self.target:g} {unit}, "
                f"alpha = {self.alpha:g}, beta = {self.beta:g}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data, e.g. for a resolved config."""
        return asdict(self)


def _metric(metrics: Mapping[str, Any], key: str) -> Any:
    """``metrics[key]``, or the nested value a dotted key names (NaN when missing)."""
    if key in metrics:
        return metrics[key]
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return math.nan
        value = value[part]
    return value


def pareto_mask(
    objectives: Sequence[Sequence[float]] | np.ndarray, maximize: Sequence[bool]
) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``objectives`` (n x k).

    Row ``a`` dominates row ``b`` when it is at least as good in every objective and strictly better
    in one. Rows with a NaN are never on the front. Duplicated points are all kept.
    """
    pts = np.asarray(objectives, dtype=float)
    if pts.size == 0:
        return np.zeros(len(pts), dtype=bool)
    if pts.ndim != 2 or pts.shape[1] != len(maximize):
        raise ValueError(f"objectives must be n x {len(maximize)}, got shape {pts.shape}")
    sign = np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)
    pts = pts * sign  # now every objective is maximised
    valid = ~np.isnan(pts).any(axis=1)
    mask = valid.copy()
    for i in np.flatnonzero(valid):
        others = pts[valid]
        dominated = np.all(others >= pts[i], axis=1) & np.any(others > pts[i], axis=1)
        mask[i] = not dominated.any()
    return mask
