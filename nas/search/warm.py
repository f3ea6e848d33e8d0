"""Warm-start sources: what earlier searches of the same space learned, as plain data.

A source is a list of architectures (option indices of the target's space) with the value the
earlier search ranked them by (higher is better) and their raw metrics, plus a prior ``weight``
the user gives it. :meth:`nas.search.controller.Controller.warm_start` takes a list of them
before the first ask; every controller uses them in its own way (see docs/how-to/warm-start.md)
and keeps them in its state, so a resumed search continues exactly.

Loading sources from run folders and CSV tables is :mod:`nas.search.warm_load`'s job; this module
only holds the data and the tools every controller shares to judge a source:

* :func:`normal_scores`: values as normal scores of their ranks (a source's scale, its outliers
  and its metric's unit drop out; only its order is kept);
* :class:`SourceModel`: a source as a predictor of any architecture (the mean normal score of its
  nearest recorded architectures in Hamming distance);
* :func:`agreement`: how well a source predicts what the target observed (Spearman's rho over the
  target's own results), the number that lets a controller discount a source that misleads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas.errors import UsageError

__all__ = ["WarmRecord", "WarmSource", "normal_scores", "SourceModel", "agreement", "trust",
           "MIN_AGREEMENT_N", "ORIGIN"]

#: the ``origin`` of a proposal taken from a source's knowledge (first proposals, seeds)
ORIGIN = "warm-start"
#: target results needed before a source's agreement is measured (before: its prior weight)
MIN_AGREEMENT_N = 5


@dataclass(frozen=True)
class WarmRecord:
    """One architecture a source evaluated.

    Args:
        indices: option indices in the target's space.
        value: what the source ranked it by (higher is better), a finite number.
        metrics: its raw metrics (finite numbers only), e.g. accuracy, latency_ms, params.
    """

    indices: tuple[int, ...]
    value: float
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WarmSource:
    """An earlier search (or table) of the same space.

    Args:
        name: where it came from (a run folder, ``table.csv:column``), for the run's metadata.
        records: its architectures, each once.
        weight: the user's prior weight (>= 0; 1 = trust as much as the data says).
        metric: what ``value`` is (``accuracy``, ``reward``, a table column).
    """

    name: str
    records: tuple[WarmRecord, ...]
    weight: float = 1.0
    metric: str = "value"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a controller's state)."""
        return {"name": self.name, "weight": self.weight, "metric": self.metric,
                "records": [{"indices": list(r.indices), "value": r.value,
                             "metrics": dict(r.metrics)} for r in self.records]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WarmSource:
        """The inverse of :meth:`to_dict` (values checked as :func:`check_source` does)."""
        records = tuple(WarmRecord(tuple(int(i) for i in r["indices"]), float(r["value"]),
                                   {str(k): float(v) for k, v in r["metrics"].items()})
                        for r in data["records"])
        return cls(str(data["name"]), records, float(data["weight"]), str(data["metric"]))

    def summary(self) -> dict[str, Any]:
        """What the run's metadata records: name, metric, weight, size and best value."""
        best = max((r.value for r in self.records), default=None)
        return {"name": self.name, "metric": self.metric, "weight": self.weight,
                "records": len(self.records), "best": best}

    def best(self, k: int | None = None) -> list[WarmRecord]:
        """Records by value, best first (ties: first recorded first); the first ``k``."""
        order = sorted(range(len(self.records)), key=lambda i: (-self.records[i].value, i))
        return [self.records[i] for i in order[:k]]


def check_source(source: Any, sizes: Sequence[int], where: str = "warm_start") -> WarmSource:
    """``source`` checked against a space with these decision sizes; duplicates merged (mean).

    Raises:
        UsageError: not a WarmSource, a bad weight, indices outside the space, a value or metric
            that is not a finite number (the message names the source and the record).
    """
    if not isinstance(source, WarmSource):
        raise UsageError(f"{where}: expected a nas.search.warm.WarmSource, got {source!r:.60}")
    w = source.weight
    if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
        raise UsageError(f"{where} {source.name!r}: weight={w!r}: must be a number >= 0")
    merged: dict[tuple[int, ...], list[WarmRecord]] = {}
    for n, rec in enumerate(source.records):
        idx = tuple(rec.indices)
        bad = len(idx) != len(sizes) or any(
            isinstance(i, bool) or not isinstance(i, int | np.integer) or not 0 <= i < s
            for i, s in zip(idx, sizes, strict=False))
        if bad:
            raise UsageError(f"{where} {source.name!r}: record {n}: indices {list(idx)!r:.60} "
                             f"are not an architecture of this space (sizes {list(sizes)})")
        if not _finite(rec.value):
            raise UsageError(f"{where} {source.name!r}: record {n}: value {rec.value!r:.40} "
                             "is not a finite number")
        for key, value in rec.metrics.items():
            if not isinstance(key, str) or not _finite(value):
                raise UsageError(f"{where} {source.name!r}: record {n}: metric {key!r:.40}="
                                 f"{value!r:.40} is not a finite number")
        merged.setdefault(tuple(int(i) for i in idx), []).append(rec)
    records = []
    for idx, recs in merged.items():
        value = float(np.mean([r.value for r in recs]))
        metrics = {k: float(np.mean([r.metrics[k] for r in recs if k in r.metrics]))
                   for k in sorted({k for r in recs for k in r.metrics})}
        records.append(WarmRecord(idx, value, metrics))
    return WarmSource(str(source.name), tuple(records), float(w), str(source.metric))


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float | np.number) and not isinstance(value, bool)
            and math.isfinite(float(value)))


def normal_scores(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Van der Waerden scores: ``Phi^-1((rank - 0.5) / n)``, ties sharing their mean rank."""
    from scipy.stats import norm, rankdata

    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return values
    return norm.ppf((rankdata(values) - 0.5) / len(values))


class SourceModel:
    """A source as a predictor: the mean normal score of the ``k`` recorded architectures
    nearest in Hamming distance (an architecture the source recorded is predicted as itself)."""

    def __init__(self, source: WarmSource, k: int = 5) -> None:
        self.source, self.k = source, k
        self.rows = np.array([r.indices for r in source.records], dtype=np.int64)
        self.scores = normal_scores([r.value for r in source.records])
        self._exact = {r.indices: float(s) for r, s in zip(source.records, self.scores,
                                                            strict=True)}

    def predict(self, rows: Iterable[Sequence[int]]) -> np.ndarray:
        rows = [tuple(int(i) for i in row) for row in rows]
        out = np.empty(len(rows))
        if not len(self.rows):
            out[:] = 0.0
            return out
        for n, row in enumerate(rows):
            exact = self._exact.get(row)
            if exact is not None:
                out[n] = exact
                continue
            dist = (self.rows != np.asarray(row)).sum(1)
            k = min(self.k, len(dist))
            near = np.argpartition(dist, k - 1)[:k]
            out[n] = float(self.scores[near].mean())
        return out


def agreement(predicted: Sequence[float], observed: Sequence[float]) -> float | None:
    """Spearman's rho between a source's predictions and the target's results (``None`` below
    :data:`MIN_AGREEMENT_N` results or when either side is constant)."""
    from scipy.stats import spearmanr

    if len(observed) < MIN_AGREEMENT_N:
        return None
    p, o = np.asarray(predicted, float), np.asarray(observed, float)
    if np.ptp(p) == 0 or np.ptp(o) == 0:
        return None
    return float(spearmanr(p, o).statistic)


def trust(rho: float | None, n: int, prior: float = 1.0) -> float:
    """How much a source counts, in [0, prior]: its prior weight until the target has
    :data:`MIN_AGREEMENT_N` results; then the lower edge of rho's one-sigma band
    (``rho - 1 / sqrt(n - 1)``, Fisher's large-sample spread) clipped at 0, so a source that
    does not agree (a shuffled one, rho ~ 0) or misleads (rho < 0) counts for nothing, and a
    good one counts more as the evidence grows."""
    if rho is None:
        return prior if n < MIN_AGREEMENT_N else 0.0
    return prior * float(np.clip(rho - 1.0 / math.sqrt(max(n - 1, 1)), 0.0, 1.0))
