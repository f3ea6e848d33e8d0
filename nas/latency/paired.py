"""Latency paired with a reference network: rankings that survive a shared machine's speed changes.

On a shared machine the speed a process gets changes over seconds (another tenant on the sibling
hyperthread, the host's frequency), while it stays steady for the second or two of one
measurement. Measured on the 2-core sandbox these notes come from, idle: one MnasNet child at
224 px timed 20.1, 29.0, 30.4 and 20.9 ms in four passes minutes apart, each time with its five
rounds within 3% of each other; two such passes over 20 children ranked them with Spearman 0.71
to 0.85. The rounds-and-passes rules of :mod:`nas.latency.measure` and :mod:`nas.latency.final`
cannot remove a slow state that lasts a whole measurement.

So a paired measurement runs the model and a fixed reference network in turn, run for run
(:func:`nas.latency.measure.timed_rounds`), and keeps the ratio of each run to the reference run
right after it: both see the same moment of the machine, and its speed cancels. Measured the same
way (two passes over 20 children), the ratio ranked them with Spearman 0.94 to 0.97 against 0.71 to
0.85 for the plain medians; with three interleaved passes each
(``benchmarks/latency_under_load.py``) the paired procedure repeated agreed with itself at 0.995
(plain: 0.863), and measured beside a training process it kept 0.992 against the quiet ranking. A
ratio becomes milliseconds again by the reference's own latency in the same session, taken from its
undisturbed rounds (see :func:`reference_latency`), so a paired number reads like a plain one on an
undisturbed machine. It costs a second network's runs per measurement, which is why only the
finalists are measured this way (:func:`nas.latency.final.remeasure_archs`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from nas.errors import ConfigError
from nas.latency.measure import (
    LatencyConfig,
    LatencyResult,
    robust_stats,
    steady_allocator,
    timed_rounds,
)
from nas.space import Arch, Space

__all__ = ["PairedResult", "measure_paired", "reference_arch", "reference_latency",
           "REFERENCE_SEED"]

REFERENCE_SEED = 0  # the reference network: the space's sample from this seed


@dataclass(frozen=True)
class PairedResult:
    """One paired measurement.

    Attributes:
        ratio: robust statistics (:func:`nas.latency.measure.robust_stats`, every round kept) of
            the per-run ratios model/reference: ``median_ms`` is the median ratio (unitless).
        model: the model's own timings, as :func:`nas.latency.measure.measure_latency` gives.
        reference: the reference network's timings, run for run beside the model's.
    """

    ratio: dict[str, Any]
    model: LatencyResult
    reference: LatencyResult


def _result(rounds: list[list[float]], cfg: LatencyConfig) -> LatencyResult:
    stats = robust_stats(rounds, cfg.outlier_mads, cfg.round_tolerance)
    return LatencyResult(**stats, batch_size=cfg.batch_size, runtime=cfg.runtime,
                         device=cfg.fingerprint())


def measure_paired(model: nn.Module, reference: nn.Module, input_shape: Sequence[int],
                   config: LatencyConfig) -> PairedResult:
    """Time ``model`` and ``reference`` in turn, ``config.repeats`` runs each (see the module
    doc); both take one batch of shape ``(batch_size, *input_shape)``.

    Raises:
        ConfigError: a bad shape, CUDA missing, or ONNX Runtime not installed.
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ConfigError(f"input_shape={input_shape!r}: must be positive integers, e.g. (3, 8, 8)")
    if config.steady_malloc:
        steady_allocator()
    mine, ref = timed_rounds([model, reference], shape, config)
    ratios = [[a / b for a, b in zip(ra, rb, strict=True)] for ra, rb in zip(mine, ref,
                                                                               strict=True)]
    # a slow moment slows both runs of a pair, so no round of ratios is dropped as disturbed
    return PairedResult(ratio=robust_stats(ratios, config.outlier_mads, math.inf),
                        model=_result(mine, config), reference=_result(ref, config))


def reference_arch(space: Space) -> Arch:
    """The reference network of ``space``'s paired measurements: its seeded sample, the same one
    every time, so that ratios measured on different days compare."""
    return space.sample(np.random.default_rng(REFERENCE_SEED))


def reference_latency(results: Sequence[PairedResult], tolerance: float) -> float:
    """The reference's latency in ms over a session's paired measurements: the median of its
    rounds no slower than the fastest by more than ``tolerance`` (the undisturbed machine)."""
    rounds = [r for res in results for r in res.reference.rounds]
    if not rounds:
        raise ValueError("no paired measurements")
    fastest = min(rounds)
    return float(np.median([r for r in rounds if r <= fastest * (1.0 + tolerance)]))
