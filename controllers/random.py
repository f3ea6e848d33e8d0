"""Uniform random search: the baseline every NAS method must beat.

Random search is a strong baseline for NAS (Li & Talwalkar, arXiv:1902.07638; Yang et al.,
arXiv:1912.12522) and the reference line of every ``nas bench`` table.
"""

from __future__ import annotations

import logging
from typing import Any

from nas.registry import register_controller
from nas.search.controller import Controller, Proposal, check_bool, check_int
from nas.space import Arch, Space

__all__ = ["RandomController"]

log = logging.getLogger(__name__)


@register_controller("random")
class RandomController(Controller):
    """Samples every decision uniformly and independently; rewards are ignored.

    Args:
        space: the search space.
        seed: seed of the controller's ``numpy.random.Generator``.
        dedup: never propose an architecture twice (outstanding ones included). Off by default:
            the random-search baselines of the papers sample with replacement. When the space is
            exhausted, or ``max_retries`` draws in a row were all seen, a repeat is proposed and
            a warning is logged.
        max_retries: draws tried per ask before giving up de-duplication (>= 1; default 1000).
    """

    def __init__(
        self, space: Space, *, seed: int | None = None, dedup: bool = False, max_retries: int = 1000
    ) -> None:
        o = "random option "
        options = {
            "dedup": check_bool(o + "dedup", dedup),
            "max_retries": check_int(o + "max_retries", max_retries, minimum=1),
        }
        super().__init__(space, seed=seed, options=options)
        self.dedup = options["dedup"]
        self.max_retries = options["max_retries"]
        self._seen: set[tuple[int, ...]] = set()
        self._seen_order: list[list[int]] = []

    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        arch = self.space.sample(self.rng)
        if self.dedup:
            arch = self._unseen(arch)
            if arch.indices not in self._seen:
                self._seen.add(arch.indices)
                self._seen_order.append(list(arch.indices))
        return arch, {}

    def _unseen(self, arch: Arch) -> Arch:
        if len(self._seen) >= self.space.size():
            log.warning("random: all %d architectures proposed; repeating", len(self._seen))
            return arch
        for _ in range(self.max_retries - 1):
            if arch.indices not in self._seen:
                return arch
            arch = self.space.sample(self.rng)
        if arch.indices in self._seen:
            log.warning("random: %d draws in a row were all seen; repeating", self.max_retries)
        return arch

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        return None

    def _algorithm_state(self) -> dict[str, Any]:
        return {"seen": self._seen_order}

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        order = [[int(i) for i in item] for item in state["seen"]]
        self._seen_order = order
        self._seen = {tuple(item) for item in order}
