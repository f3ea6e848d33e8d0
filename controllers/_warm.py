"""What the controllers share to use warm-start sources (:mod:`nas.search.warm`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nas.search.warm import (
    SourceModel,
    WarmRecord,
    WarmSource,
    agreement,
    normal_scores,
    trust,
)

__all__ = ["ranked_records", "source_trusts", "prior_values"]


def ranked_records(sources: Sequence[WarmSource], k: int | None = None) -> list[WarmRecord]:
    """The sources' best records, at most ``k``, distinct architectures, best first.

    Each source's records are ranked by their normal scores (:func:`nas.search.warm.normal_scores`,
    so sources of different metrics and sizes compare), scaled by the source's prior weight; a
    source of weight 0 gives none. Ties keep the sources' order.
    """
    scored: list[tuple[float, int, int, WarmRecord]] = []
    for s, source in enumerate(sources):
        if source.weight <= 0:
            continue
        scores = normal_scores([r.value for r in source.records])
        scored += [(-float(z) * source.weight, s, n, r)
                   for n, (z, r) in enumerate(zip(scores, source.records, strict=True))]
    scored.sort(key=lambda item: item[:3])
    out: list[WarmRecord] = []
    seen: set[tuple[int, ...]] = set()
    for *_, record in scored:
        if record.indices not in seen:
            seen.add(record.indices)
            out.append(record)
            if k is not None and len(out) >= k:
                break
    return out


def source_trusts(sources: Sequence[WarmSource], models: Sequence[SourceModel],
                  rows: Sequence[Sequence[int]], observed: Sequence[float]) -> list[float]:
    """Each source's trust (:func:`nas.search.warm.trust`) from how its nearest-neighbour model
    ranks the target's results ``observed`` (higher is better) of architectures ``rows``."""
    out = []
    for source, model in zip(sources, models, strict=True):
        rho = agreement(model.predict(rows), observed) if len(rows) else None
        out.append(trust(rho, len(rows), source.weight))
    return out


def prior_values(sources: Sequence[WarmSource], trusts: Sequence[float],
                 observed: np.ndarray, metrics: Sequence[str] | None = None
                 ) -> list[list[float] | None]:
    """The sources' records as prior observations on the target's scale, source by source,
    record by record: ``None`` for a record of an untrusted source (trust 0), else one value
    per objective column of ``observed`` (``n_target x objectives``, higher or lower is better
    as the target's objective says: a record's rank maps in the metric's own direction).

    A record's normal score ``z`` (its rank within its source, by the objective's metric when
    the source recorded it, else by the source's value; a source missing that metric gives the
    target's mean) maps to ``mean + trust * z * std`` of the target's results so far: the
    regression to the mean of a normal model whose correlation is the trust. Without target
    results a record is ``z`` itself (only the sources' order matters then).
    """
    columns = observed.shape[1] if observed.ndim == 2 else 1
    names = list(metrics) if metrics is not None else [None] * columns
    n = len(observed)
    mean = observed.mean(0) if n else np.zeros(columns)
    std = observed.std(0) if n >= 2 else (np.zeros(columns) if n else np.ones(columns))
    out: list[list[float] | None] = []
    for source, t in zip(sources, trusts, strict=True):
        if t <= 0:
            out += [None] * len(source.records)
            continue
        cols = []
        for name in names:
            if name is not None and all(name in r.metrics for r in source.records):
                z = normal_scores([r.metrics[name] for r in source.records])
            elif name is None or name in ("accuracy", "reward", source.metric):
                z = normal_scores([r.value for r in source.records])
            else:
                z = np.zeros(len(source.records))
            cols.append(z)
        z_all = np.stack(cols, 1)
        out += (mean + min(t, 1.0) * z_all * std).tolist() if n else z_all.tolist()
    return out
