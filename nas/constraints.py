"""Hard constraints: bounds a child must meet before it is trained (the ``constraints`` section).

A trial counts the child's parameters and MACs first, then measures its latency, and checks each
bound of :class:`Constraints` as soon as its number is known; a child over one ends ``rejected``
(:class:`nas.errors.TrialRejected`), untrained, and gives its trial back to the budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nas._checks import check_int, check_number, from_plain

__all__ = ["Constraints", "BOUNDS", "violation"]

BOUNDS = ("macs", "params", "latency_ms")  # in the order a trial knows them


@dataclass(frozen=True)
class Constraints:
    """Hard bounds checked before training (errors name ``constraints.<key>``).

    A trial counts the child's parameters and MACs first, then measures its latency, and checks
    each bound as soon as its number is known. A child over a bound ends ``rejected`` with the
    bound it broke (``metrics.constraint``): never trained, not counted against
    ``search.trials``, told to the controller as a failure or ``penalty``; more than
    ``max_rejections`` rejections per trial of the budget stop the search (exit 1).

    Args:
        latency_ms: the most milliseconds a child may take on the target device.
        macs: the most multiply-adds (``nas cost``'s count) a child may have.
        params: the most parameters.
        penalty: what the controller is told for a rejected child (None: a failure).
        max_rejections: rejections allowed per trial of the budget before the search stops.
    """

    latency_ms: float | None = None
    macs: float | None = None
    params: float | None = None
    penalty: float | None = None
    max_rejections: int = 10

    def __post_init__(self) -> None:
        for key in BOUNDS:
            check_number(f"constraints.{key}", getattr(self, key), strict=True, optional=True)
        check_number("constraints.penalty", self.penalty, minimum=None, optional=True)
        check_int("constraints.max_rejections", self.max_rejections)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Constraints:
        """From the ``constraints`` config section; an unknown key names the allowed ones."""
        return from_plain(cls, data or {}, "constraints")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        """Whether any bound is set."""
        return any(getattr(self, key) is not None for key in BOUNDS)

    def check(self, metrics: Mapping[str, Any], keys: tuple[str, ...] = BOUNDS
              ) -> dict[str, Any] | None:
        """The first of ``keys`` whose bound ``metrics`` break: ``{"bound", "value", "limit",
        "reason"}``, or None."""
        for key in keys:
            limit, value = getattr(self, key), metrics.get(key)
            if limit is not None and isinstance(value, int | float) and value > limit:
                return violation(key, float(value), float(limit))
        return None


def violation(key: str, value: float, limit: float) -> dict[str, Any]:
    """The record of one broken bound."""
    shown = f"{value:.4g}" if key == "latency_ms" else f"{value:,.0f}"
    bound = f"{limit:.4g}" if key == "latency_ms" else f"{limit:,.0f}"
    return {"bound": key, "value": value, "limit": limit,
            "reason": f"{key}={shown} over the bound constraints.{key}={bound}"}
