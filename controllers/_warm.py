"""What the controllers share to use warm-start sources (:mod:`nas.search.warm`)."""

from __future__ import annotations

from collections.abc import Sequence

from nas.search.warm import WarmRecord, WarmSource, normal_scores

__all__ = ["ranked_records"]


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
