"""Rejected children (``constraints``) counted, and the search stopped when nearly all are.

A child over a hard bound (:class:`nas.constraints.Constraints`) is never trained and gives its
trial back to the budget; :class:`Rejections` counts them per bound and keeps the smallest
latency, MACs and parameters seen, so that a search whose bounds reject more than
``max_rejections`` per trial of ``search.trials`` stops with a message naming the bound and the
smallest value seen.
"""

from __future__ import annotations

from typing import Any

from nas.records import TrialRecord, TrialStatus

__all__ = ["Rejections"]


class Rejections:
    """Counts rejected children and stops a search whose bounds reject nearly everything."""

    def __init__(self, constraints: Any, budget: int, records: list[TrialRecord]) -> None:
        self.per_trial = getattr(constraints, "max_rejections", 10)
        self.budget = max(1, budget)
        self.cap = self.per_trial * self.budget
        self.count = 0
        self.by_bound: dict[str, int] = {}
        self.smallest: dict[str, float] = {}
        for record in records:
            self.see(record)

    def see(self, record: TrialRecord) -> None:
        """Note a finished child (its cost and latency; a rejection and its bound)."""
        if record.status is not TrialStatus.REJECTED:
            for key in ("latency_ms", "macs", "params"):
                self._low(key, (record.metrics or {}).get(key))
            return
        self.count += 1
        broken = (record.metrics or {}).get("constraint") or {}
        bound = broken.get("bound", "?")
        self.by_bound[bound] = self.by_bound.get(bound, 0) + 1
        for key in ("latency_ms", "macs", "params"):
            self._low(key, (record.metrics or {}).get(key))

    def _low(self, key: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.smallest[key] = min(self.smallest.get(key, float("inf")), float(value))

    def add(self, record: TrialRecord) -> str | None:
        """Count one rejection; the reason to stop when the cap is passed, else None."""
        self.see(record)
        if self.count <= self.cap:
            return None
        bound = max(self.by_bound, key=self.by_bound.get)
        limit = ((record.metrics or {}).get("constraint") or {}).get("limit")
        seen = self.smallest.get(bound)
        seen_text = "none measured" if seen is None else f"{seen:.4g}"
        return (f"constraints.{bound}={limit:.4g}: {self.count} children rejected, over the cap "
                f"of {self.cap} (constraints.max_rejections={self.per_trial} per trial of "
                f"search.trials={self.budget}); the smallest {bound} seen was {seen_text}; "
                "loosen the bound or change the space")
