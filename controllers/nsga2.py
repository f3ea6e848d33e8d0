"""NSGA-II for the accuracy-latency Pareto front (Deb, Pratap, Agarwal & Meyarivan, "A fast and
elitist multiobjective genetic algorithm: NSGA-II", IEEE TEC 6(2), 2002).

Instead of folding latency into one scalar as MnasNet's reward does (arXiv:1807.11626, eq. 2),
this controller searches the Pareto front of the raw metrics directly. Members are ranked by
non-dominated sorting and, within a front, by crowding distance; parents are chosen by binary
tournaments on (rank, crowding), recombined by uniform crossover (each decision from either
parent, the usual operator for categorical genes) and mutated decision by decision.

Workers finish out of order, so this is the steady-state (mu + 1) form of NSGA-II: each finished
child joins the population and, when it is over size, the member of the last front with the
smallest crowding distance leaves. The elitism and diversity rules are Deb et al.'s. A child
identical to a living member (a parent copied when neither crossover nor mutation changed it) is
mutated again, up to 10 times, so trials are not spent re-evaluating known architectures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nas.errors import ConfigError
from nas.registry import register_controller
from nas.reward import pareto_mask
from nas.search.controller import Controller, Proposal, check_int, check_number
from nas.search.warm import ORIGIN, WarmRecord, normal_scores
from nas.space import Arch, Space

__all__ = ["NSGA2Controller", "nondominated_ranks", "crowding_distance"]

DEFAULT_OBJECTIVES = (("accuracy", "max"), ("latency_ms", "min"))


def nondominated_ranks(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Front index (0 = Pareto front) of every row: Deb et al.'s fast non-dominated sort.

    The domination matrix is built in one vectorized step, then fronts are peeled by counting
    each row's remaining dominators; it agrees with peeling :func:`nas.reward.pareto_mask`.
    """
    pts = np.asarray(points, dtype=float) * np.where(np.asarray(maximize), 1.0, -1.0)
    if len(pts) == 0:
        return np.zeros(0, dtype=int)
    ge = (pts[:, None, :] >= pts[None, :, :]).all(-1)
    gt = (pts[:, None, :] > pts[None, :, :]).any(-1)
    dominates = ge & gt  # dominates[i, j]: row i dominates row j
    dominators = dominates.sum(0)
    ranks = np.full(len(pts), -1, dtype=int)
    rank = 0
    while (ranks < 0).any():
        front = np.flatnonzero((dominators == 0) & (ranks < 0))
        ranks[front] = rank
        dominators = dominators - dominates[front].sum(0)
        rank += 1
    return ranks


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """Deb et al.'s crowding distance of the rows of one front (boundary points: inf)."""
    n, k = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(points[:, j], kind="stable")
        col = points[order, j]
        distance[order[[0, -1]]] = np.inf
        span = col[-1] - col[0]
        if span > 0:
            distance[order[1:-1]] += (col[2:] - col[:-2]) / span
    return distance


def _parse_objectives(objectives: Any) -> list[list[str]]:
    allowed = "a non-empty list of (metric name, 'max' or 'min') pairs with distinct names"
    if isinstance(objectives, str) or not isinstance(objectives, Sequence) or not objectives:
        raise ConfigError(f"nsga2 option objectives={objectives!r}: must be {allowed}")
    parsed = []
    for item in objectives:
        ok = isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2
        if not ok or not isinstance(item[0], str) or not item[0] or item[1] not in ("max", "min"):
            raise ConfigError(f"nsga2 option objectives={objectives!r}: must be {allowed}")
        parsed.append([item[0], item[1]])
    if len({name for name, _ in parsed}) != len(parsed):
        raise ConfigError(f"nsga2 option objectives={objectives!r}: must be {allowed}")
    return parsed


@register_controller("nsga2")
class NSGA2Controller(Controller):
    """Multi-objective search with NSGA-II; ``tell`` takes the metrics mapping, not a scalar.

    ``wants_metrics`` is ``True``: tell each proposal the raw metrics, e.g.
    ``{"accuracy": 0.72, "latency_ms": 11.8}``; a missing or non-finite objective is a failure.

    Defaults: crossover probability 0.9 and mutation probability ``1 / n`` per decision (``n``
    decisions) from Deb et al. 2002 (section VI); population 20, not their 100: at 100 the first
    100 children are random search, and on NAS-Bench-201 (accuracy against parameters) 20 gave
    the largest hypervolume at 300 children of {10, 20, 50, 100} and tied 10 at 100 children.

    Args:
        space: the search space (at least two architectures).
        seed: seed of the controller's ``numpy.random.Generator``.
        objectives: ``(metric, "max" | "min")`` pairs (default accuracy up, latency_ms down).
        population_size: N, members kept (>= 2; default 20).
        crossover_prob: probability that a child mixes two parents (0..1; default 0.9).
        mutation_prob: per-decision mutation probability (0..1; default ``1 / n``).
        warm_seeds: with warm-start sources, how many children of the first population are
            the sources' best architectures, proposed first (0..N; default ``None``: half).

    **Warm start.** The first population is seeded with the sources' best architectures; the
    rest stays random. "Best" is the non-dominated order of a source's records on this
    controller's objectives where the source recorded them all (a latency-aware source seeds
    its front), else the order of the source's own value (an accuracy search seeding an
    accuracy-latency search: its most accurate cells); sources are interleaved by their weight.
    The seeds are evaluated like any child, so misleading ones are dominated and leave.
    """

    wants_metrics = True

    def __init__(
        self,
        space: Space,
        *,
        seed: int | None = None,
        objectives: Sequence[Sequence[str]] = DEFAULT_OBJECTIVES,
        population_size: int = 20,
        crossover_prob: float = 0.9,
        mutation_prob: float | None = None,
        warm_seeds: int | None = None,
    ) -> None:
        n_decisions = len(space.choices()) if isinstance(space, Space) else 1
        o = "nsga2 option "
        options = {
            "objectives": _parse_objectives(objectives),
            "population_size": check_int(o + "population_size", population_size, minimum=2),
            "crossover_prob": check_number(o + "crossover_prob", crossover_prob, maximum=1.0),
            "mutation_prob": 1.0 / n_decisions if mutation_prob is None
            else check_number(o + "mutation_prob", mutation_prob, maximum=1.0),
            "warm_seeds": check_int(o + "warm_seeds", warm_seeds, minimum=0, optional=True),
        }
        super().__init__(space, seed=seed, options=options)
        if space.size() < 2:
            raise ConfigError(f"nsga2: space {space.name!r} has a single architecture")
        self.names = tuple(name for name, _ in options["objectives"])
        self.maximize = [sense == "max" for _, sense in options["objectives"]]
        self.population_size = options["population_size"]
        self._sizes = np.array([len(c) for c in space.choices().values()])
        self._members: list[tuple[int, Arch, list[float]]] = []  # (id, arch, objective values)
        self._cache: tuple[np.ndarray, np.ndarray] | None = None
        self._warm_made = 0

    def _seeds(self) -> list[WarmRecord]:
        """The sources' records in seeding order (see the class docstring), distinct."""
        keyed = []
        for s, source in enumerate(self._warm):
            if source.weight <= 0:
                continue
            recs = source.records
            if all(all(n in r.metrics for n in self.names) for r in recs):
                points = np.array([[r.metrics[n] for n in self.names] for r in recs])
                ranks = nondominated_ranks(points, self.maximize)
                order = np.lexsort((-normal_scores([r.value for r in recs]), ranks))
            else:
                order = np.argsort(-normal_scores([r.value for r in recs]), kind="stable")
            keyed += [((pos + 1) / source.weight, s, recs[int(i)]) for pos, i in
                      enumerate(order)]
        keyed.sort(key=lambda item: item[:2])
        out, seen = [], set()
        for *_, rec in keyed:
            if rec.indices not in seen:
                seen.add(rec.indices)
                out.append(rec)
        return out

    def _next_seed(self) -> Arch | None:
        if not self._warm:
            return None
        wanted = self.options["warm_seeds"]
        wanted = (self.population_size + 1) // 2 if wanted is None else wanted
        if self._warm_made >= wanted:
            return None
        seeds = self._seeds()
        if self._warm_made >= len(seeds):
            return None
        self._warm_made += 1
        return self.space.decode(list(seeds[self._warm_made - 1].indices))

    @property
    def required_metrics(self) -> tuple[str, ...]:
        return self.names

    def pareto_front(self) -> list[tuple[Arch, dict[str, float]]]:
        """Non-dominated members of the current population with their objective values."""
        if not self._members:
            return []
        mask = pareto_mask(self._points(), self.maximize)
        return [(arch, dict(zip(self.names, vals, strict=True)))
                for (_, arch, vals), keep in zip(self._members, mask, strict=True) if keep]

    def _points(self) -> np.ndarray:
        return np.array([vals for _, _, vals in self._members], dtype=float)

    def _ranking(self) -> tuple[np.ndarray, np.ndarray]:
        """Rank and crowding distance of every member (cached until the population changes)."""
        if self._cache is not None:
            return self._cache
        points = self._points()
        ranks = nondominated_ranks(points, self.maximize)
        crowd = np.zeros(len(points))
        for r in np.unique(ranks):
            idx = np.flatnonzero(ranks == r)
            crowd[idx] = crowding_distance(points[idx])
        self._cache = (ranks, crowd)
        return self._cache

    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        pending_random = sum(1 for _, extra in self._outstanding.values() if extra["random"])
        if not self._members or len(self._members) + pending_random < self.population_size:
            seed = self._next_seed()
            if seed is not None:
                return seed, {"random": True, "origin": ORIGIN}
            return self.space.sample(self.rng), {"random": True}
        ranks, crowd = self._ranking()
        p1, p2 = self._tournament(ranks, crowd), self._tournament(ranks, crowd)
        child = p1.copy()
        if self.rng.random() < self.options["crossover_prob"]:
            take = self.rng.random(len(child)) < 0.5
            child[take] = p2[take]
        flips = np.flatnonzero(self.rng.random(len(child)) < self.options["mutation_prob"])
        for pos in flips:
            if self._sizes[pos] > 1:
                child[pos] = (child[pos] + 1 + self.rng.integers(self._sizes[pos] - 1)) % \
                    self._sizes[pos]
        arch = self.space.decode(child.tolist())
        known = {m[1].indices for m in self._members}
        for _ in range(10):  # don't spend a trial re-evaluating a living member
            if arch.indices not in known:
                break
            arch = self.space.mutate(arch, self.rng)
        return arch, {"random": False}

    def _tournament(self, ranks: np.ndarray, crowd: np.ndarray) -> np.ndarray:
        """Binary tournament: lower rank wins, then larger crowding distance, then the first."""
        a, b = (int(i) for i in self.rng.integers(len(self._members), size=2))
        better = a if (ranks[a], -crowd[a]) <= (ranks[b], -crowd[b]) else b
        return np.array(self._members[better][1].indices)

    def _replay_extra(self, arch: Arch) -> dict[str, Any]:
        return {"random": True}

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        if value is None:
            return
        self._members.append((proposal.id, proposal.arch, [value[name] for name in self.names]))
        self._cache = None
        if len(self._members) > self.population_size:
            ranks, crowd = self._ranking()
            last = np.flatnonzero(ranks == ranks.max())
            # the most crowded member of the worst front leaves; ties: the oldest one
            worst = min(last, key=lambda i: (crowd[i], self._members[i][0]))
            del self._members[int(worst)]
            self._cache = None

    def _algorithm_state(self) -> dict[str, Any]:
        return {"population": [{"id": i, "indices": list(arch.indices), "objectives": vals}
                               for i, arch, vals in self._members],
                "warm_made": self._warm_made}

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        self._cache = None
        self._members = [
            (int(m["id"]), self.space.decode(m["indices"]), [float(v) for v in m["objectives"]])
            for m in state["population"]
        ]
        self._warm_made = int(state.get("warm_made", 0))
