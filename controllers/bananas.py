"""BANANAS: Bayesian optimisation with a neural predictor ensemble, over local neighbourhoods.

White, Neiswanger & Savani, "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search" (AAAI 2021, arXiv:1910.11858): an ensemble of small MLPs is fitted on the
architectures evaluated so far, and the next child is the candidate with the best acquisition value
computed from the ensemble's mean and spread. The candidates are the neighbours of the best
architectures found so far (every one-decision change, the neighbourhood of local search, which
White et al., "Local Search is State of the Art for NAS Benchmarks", arXiv:2005.02960, found as
strong as the best model-based methods) plus fresh uniform samples, so the search both refines
and explores.

The encoding is one-hot per decision, so the controller works on any space; a space that offers
:meth:`nas.space.Space.features` (e.g. the path encoding of NAS-Bench-201 cells, BANANAS section
4) adds those features. Any number of proposals may be in flight: outstanding and evaluated
architectures are never proposed again, and successive asks without new results take the next
best candidates.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from controllers._threads import one_thread
from controllers._warm import ranked_records
from controllers.predictor import MLPEnsemble
from nas.registry import register_controller
from nas.search.controller import (
    Controller,
    Proposal,
    check_bool,
    check_choice,
    check_int,
    check_number,
)
from nas.search.warm import MIN_AGREEMENT_N, ORIGIN, agreement, normal_scores, trust
from nas.space import Arch, Space

__all__ = ["BananasController"]

log = logging.getLogger(__name__)

ACQUISITIONS = ("its", "ucb", "ei", "mean")


@register_controller("bananas")
class BananasController(Controller):
    """Predictor-guided search (BANANAS) with a neighbourhood-plus-random candidate pool.

    After ``n_init`` uniformly random children, every ask fits the ensemble (when results arrived
    since the last fit) and proposes the unseen candidate with the best acquisition:

    * ``"its"``: independent Thompson sampling, a draw from N(mean, spread) per candidate
      (BANANAS' default);
    * ``"ucb"``: ``mean + ucb_beta * spread``;
    * ``"ei"``: expected improvement over the best result so far;
    * ``"mean"``: the ensemble mean alone (greedy).

    Defaults are the best of a sweep on the real NAS-Bench-201 CIFAR-10 table at 25-300 trials,
    noise-free and with noise of NB201's seed-to-seed spread (``benchmarks/controller_sweep.py``;
    figures in docs/reference/controllers.md): predictors of 2 x 16 units trained 100 Adam
    steps at lr 0.02 beat BANANAS' wider, longer-trained ones here and fit 4x faster;
    refitting after every 10% more results keeps the median ask + tell at a few ms.

    Args:
        space: the search space (at least two architectures).
        seed: seed of the controller's ``numpy.random.Generator``; each predictor fit is seeded
            from it and the number of results.
        n_init: random children before the predictor is used (>= 2).
        acquisition: one of ``its``, ``ucb``, ``ei``, ``mean``.
        ucb_beta: spread weight of ``ucb`` (>= 0).
        num_parents: best architectures whose neighbourhoods are candidates (>= 1).
        num_random: fresh uniform samples added to the candidates (>= 0).
        members: predictors in the ensemble (>= 2).
        width: hidden units per predictor layer (>= 1).
        layers: hidden layers per predictor (>= 1).
        epochs: Adam steps per fit (>= 1).
        lr: Adam learning rate (> 0).
        refit_growth: the predictor is refitted once the results grew by this fraction since
            the last fit (at least one new result; 0 refits after every result). Between fits,
            asks reuse the fitted ensemble (fresh Thompson draws, fresh random candidates).
        encoding: ``"auto"`` (one-hot plus the space's features where it has them) or
            ``"onehot"``.
        warm_first: with warm-start sources, how many of their best architectures are proposed
            first (>= 0; default 5).
        bootstrap: fit each predictor of the ensemble on its own Bayesian-bootstrap reweighting
            of the rows (default ``True``; ``False``: the members differ only in their random
            initialisation). A belief that rests on a few rows (an option the results hold
            only twice, both poor) then differs between members, so it shows as spread, which
            the acquisition explores, instead of a confident prediction that is never
            checked. Measured on NAS-Bench-201 (figures in docs/how-to/warm-start.md): fewer
            searches stuck in a local optimum at 100 trials (CIFAR-100, 60 seeds: 3 against 7),
            and the same with warm-start sources, whose rows are another search's biased
            sample; with noise on the results, a wash.

    **Warm start.** Given sources (:meth:`Controller.warm_start`), the controller proposes the
    sources' ``warm_first`` best architectures first, then fits its ensemble on its own results
    and the sources' together: every value becomes the normal score of its rank within its own
    search (so a source of another metric, unit or reward still counts through its order), and
    each source's rows are weighted by its trust (:func:`nas.search.warm.trust`): the prior
    weight until ``5`` results are in, then the lower edge of Spearman's rho between a
    predictor fitted on that source alone and the target's results. A source that does not agree
    with what the target observes drops to weight 0 (the controller then searches as from a cold
    start); a good one keeps counting, and since the source's rows are fixed while the target's
    grow, the target's own results weigh more and more. While a source is trusted, the predictor
    is used from the first ask (no random ``n_init`` phase) and the candidates include the
    neighbours of the sources' best architectures.
    """

    def __init__(
        self,
        space: Space,
        *,
        seed: int | None = None,
        n_init: int = 10,
        acquisition: str = "its",
        ucb_beta: float = 1.0,
        num_parents: int = 10,
        num_random: int = 100,
        members: int = 5,
        width: int = 16,
        layers: int = 2,
        epochs: int = 100,
        lr: float = 0.02,
        refit_growth: float = 0.1,
        encoding: str = "auto",
        warm_first: int = 5,
        bootstrap: bool = True,
    ) -> None:
        o = "bananas option "
        options = {
            "n_init": check_int(o + "n_init", n_init, minimum=2),
            "acquisition": check_choice(o + "acquisition", acquisition, ACQUISITIONS),
            "ucb_beta": check_number(o + "ucb_beta", ucb_beta, minimum=0.0),
            "num_parents": check_int(o + "num_parents", num_parents, minimum=1),
            "num_random": check_int(o + "num_random", num_random, minimum=0),
            "members": check_int(o + "members", members, minimum=2),
            "width": check_int(o + "width", width, minimum=1),
            "layers": check_int(o + "layers", layers, minimum=1),
            "epochs": check_int(o + "epochs", epochs, minimum=1),
            "lr": check_number(o + "lr", lr, minimum=0.0, strict=True),
            "refit_growth": check_number(o + "refit_growth", refit_growth, minimum=0.0),
            "encoding": check_choice(o + "encoding", encoding, ("auto", "onehot")),
            "warm_first": check_int(o + "warm_first", warm_first, minimum=0),
            "bootstrap": check_bool(o + "bootstrap", bootstrap),
        }
        super().__init__(space, seed=seed, options=options)
        self.hp = options
        self._init_model_state()

    def _init_model_state(self) -> None:
        """The encoding and an empty history: nothing told, no surrogate fitted yet."""
        space, options = self.space, self.hp
        self._sizes = [len(c) for c in space.choices().values()]
        self._offsets = np.cumsum([0] + self._sizes[:-1])
        self._told: list[tuple[tuple[int, ...], float | None]] = []
        self._seen: set[tuple[int, ...]] = set()
        self._features: dict[tuple[int, ...], list[float]] = {}
        probe = space.features(space.sample(np.random.default_rng(0)))
        self._has_features = options["encoding"] == "auto" and probe is not None
        self._model: MLPEnsemble | None = None
        self._model_at = -1  # number of successes the model was fitted on
        self._model_pooled = False  # fitted on normal scores with the sources' rows
        self._source_models: list[MLPEnsemble] | None = None  # one per warm source, lazily
        self._warm_made = 0  # warm-start proposals handed out

    # -- warm start ----------------------------------------------------------------------------
    def _warm_start(self) -> None:
        self._source_models = None

    def _source_predictors(self) -> list[MLPEnsemble]:
        """A predictor per source fitted on its rows alone (seeded by the source's position)."""
        if self._source_models is None:
            self._source_models = []
            for n, source in enumerate(self._warm):
                rows = np.array([r.indices for r in source.records])
                seed = int(np.random.SeedSequence([self.seed, 0xA11, n]).generate_state(1)[0])
                model = MLPEnsemble(members=self.hp["members"], width=self.hp["width"],
                                    layers=self.hp["layers"], epochs=self.hp["epochs"],
                                    lr=self.hp["lr"], bootstrap=self.hp["bootstrap"])
                scores = normal_scores([r.value for r in source.records])
                self._source_models.append(model.fit(self._encode_many(rows), scores, seed=seed))
        return self._source_models

    def source_trusts(self, good: list[tuple[tuple[int, ...], float]] | None = None
                      ) -> list[float]:
        """The weight each warm source has on ``good`` (default: every result so far; see the
        class docstring)."""
        good = self._successes() if good is None else good
        if not self._warm:
            return []
        if len(good) < MIN_AGREEMENT_N:
            return [trust(None, len(good), s.weight) for s in self._warm]
        rows = self._encode_many(np.array([idx for idx, _ in good]))
        observed = [v for _, v in good]
        with one_thread():
            preds = [m.predict(rows).mean(0) for m in self._source_predictors()]
        return [trust(agreement(p, observed), len(good), s.weight)
                for p, s in zip(preds, self._warm, strict=True)]

    def _next_warm(self, taken: set[tuple[int, ...]]) -> Arch | None:
        """The next of the sources' best architectures to propose first, if any is left."""
        if self._warm_made >= self.hp["warm_first"]:
            return None
        for record in ranked_records(self._warm, self.hp["warm_first"])[self._warm_made:]:
            self._warm_made += 1
            if record.indices not in taken:
                return self.space.decode(list(record.indices))
        return None

    # -- encoding ------------------------------------------------------------------------------
    def _encode_many(self, rows: np.ndarray) -> np.ndarray:
        """Features of architectures given as an ``N x decisions`` array of option indices."""
        onehot = np.zeros((len(rows), sum(self._sizes)), dtype=np.float32)
        onehot[np.arange(len(rows))[:, None], self._offsets + rows] = 1.0
        if not self._has_features:
            return onehot
        extra = np.array([self._features_of(tuple(int(i) for i in row)) for row in rows],
                         dtype=np.float32)
        return np.concatenate([onehot, extra], axis=1)

    def _features_of(self, indices: tuple[int, ...]) -> list[float]:
        cached = self._features.get(indices)
        if cached is None:
            cached = self._features[indices] = list(self.space.features(
                self.space.decode(list(indices))) or [])
        return cached

    # -- ask / tell ----------------------------------------------------------------------------
    def _taken(self) -> set[tuple[int, ...]]:
        return self._seen | {arch.indices for arch, _ in self._outstanding.values()}

    def _successes(self) -> list[tuple[tuple[int, ...], float]]:
        return [(idx, v) for idx, v in self._told if v is not None]

    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        taken = self._taken()
        good = self._successes()
        trusted: list[float] = []
        if self._warm:
            first = self._next_warm(taken)
            if first is not None:
                return first, {"random": False, "origin": ORIGIN}
            trusted = self.source_trusts()
        if len(good) < self.hp["n_init"] and not any(t > 0 for t in trusted):
            return self._random_unseen(taken), {"random": True}
        candidates = self._candidates(good, taken, trusted)
        if not len(candidates):
            return self._random_unseen(taken), {"random": True}
        with one_thread():
            model = self._fitted(good)
            preds = model.predict(self._encode_many(candidates))
        if self._model_pooled:
            best = float(normal_scores([v for _, v in good]).max()) if good else 0.0
        else:
            best = max(v for _, v in good)
        score = self._acquire(preds, best)
        best = candidates[int(np.argmax(score))]
        return self.space.decode([int(i) for i in best]), {"random": False}

    def _fitted(self, good: list[tuple[tuple[int, ...], float]]) -> MLPEnsemble:
        due = self._model_at < 0 or len(good) >= self._model_at + max(
            1, math.floor(self.hp["refit_growth"] * self._model_at))
        if due:
            self._model_at = len(good)
            self._model = None
        if self._model is None:  # due, or restored from a state (refit on the same data)
            self._model = self._fit(good[: self._model_at])
        return self._model

    def _fit(self, good: list[tuple[tuple[int, ...], float]]) -> MLPEnsemble:
        hp = self.hp
        model = MLPEnsemble(members=hp["members"], width=hp["width"], layers=hp["layers"],
                            epochs=hp["epochs"], lr=hp["lr"], bootstrap=hp["bootstrap"])
        # seeded by the data size, not drawn from the generator: a restored controller refits
        # the same ensemble and its generator stays in step
        seed = int(np.random.SeedSequence([self.seed, len(good)]).generate_state(1)[0])
        trusts = self.source_trusts(good)
        self._model_pooled = any(t > 0 for t in trusts)
        if not self._model_pooled:
            return model.fit(self._encode_many(np.array([idx for idx, _ in good])),
                             np.array([v for _, v in good]), seed=seed)
        rows = [idx for idx, _ in good]
        y = [normal_scores([v for _, v in good])]
        w = [np.ones(len(good))]
        for source, t in zip(self._warm, trusts, strict=True):
            if t > 0:
                rows += [r.indices for r in source.records]
                y.append(normal_scores([r.value for r in source.records]))
                w.append(np.full(len(source.records), t))
        return model.fit(self._encode_many(np.array(rows)), np.concatenate(y), seed=seed,
                         weights=np.concatenate(w))

    def _acquire(self, preds: np.ndarray, best: float) -> np.ndarray:
        mean, spread = preds.mean(0), preds.std(0)
        kind = self.hp["acquisition"]
        if kind == "its":
            return mean + spread * self.rng.standard_normal(len(mean))
        if kind == "ucb":
            return mean + self.hp["ucb_beta"] * spread
        if kind == "ei":
            z = (mean - best) / np.maximum(spread, 1e-12)
            cdf = 0.5 * (1.0 + np.vectorize(math.erf)(z / math.sqrt(2.0)))
            pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
            return (mean - best) * cdf + spread * pdf
        return mean

    def _candidates(self, good: list[tuple[tuple[int, ...], float]],
                    taken: set[tuple[int, ...]], trusts: list[float] | None = None) -> np.ndarray:
        """Neighbours of the best ``num_parents`` results (and of the trusted sources' best)
        and fresh samples, none taken, as an ``N x decisions`` array of option indices (first
        occurrence order)."""
        parents = sorted(good, key=lambda item: item[1], reverse=True)[: self.hp["num_parents"]]
        blocks = [self._neighbours(np.array(idx)) for idx, _ in parents]
        usable = [s for s, t in zip(self._warm, trusts or [], strict=False) if t > 0]
        for record in ranked_records(usable, self.hp["num_parents"]) if usable else []:
            blocks.append(np.array([record.indices]))  # a source's best itself, if unseen
            blocks.append(self._neighbours(np.array(record.indices)))
        if self.hp["num_random"]:
            blocks.append(self.rng.integers(0, self._sizes, size=(self.hp["num_random"],
                                                                   len(self._sizes))))
        pool = np.concatenate(blocks)
        seen: set[tuple[int, ...]] = set(taken)
        keep = []
        for i, row in enumerate(map(tuple, pool.tolist())):
            if row not in seen:
                seen.add(row)
                keep.append(i)
        return pool[keep]

    def _neighbours(self, idx: np.ndarray) -> np.ndarray:
        """Every architecture that differs from ``idx`` in exactly one decision."""
        rows = []
        for d, n in enumerate(self._sizes):
            block = np.repeat(idx[None, :], n - 1, axis=0)
            block[:, d] = [k for k in range(n) if k != idx[d]]
            rows.append(block)
        return np.concatenate(rows)

    def _random_unseen(self, taken: set[tuple[int, ...]]) -> Arch:
        if len(taken) < self.space.size():
            for _ in range(1000):
                arch = self.space.sample(self.rng)
                if arch.indices not in taken:
                    return arch
        log.warning("bananas: every architecture tried has been proposed; proposing a repeat")
        return self.space.sample(self.rng)

    def _replay_extra(self, arch: Arch) -> dict[str, Any]:
        return {"random": True}

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        self._told.append((proposal.arch.indices, value))
        self._seen.add(proposal.arch.indices)

    # -- state ---------------------------------------------------------------------------------
    def load_state_dict(self, state: Any) -> None:
        """As :meth:`Controller.load_state_dict`; a state saved before the ``bootstrap`` option
        existed was fitted without it, and resumes so (exactly) unless ``bootstrap`` was set."""
        saved = state.get("options") if isinstance(state, dict) else None
        if isinstance(saved, dict) and "bootstrap" not in saved and self.hp["bootstrap"]:
            self.hp["bootstrap"] = self.options["bootstrap"] = False
            self._source_models = None
            state = {**state, "options": {**saved, "bootstrap": False}}
        super().load_state_dict(state)

    def _algorithm_state(self) -> dict[str, Any]:
        return {"told": [{"indices": list(idx), "value": v} for idx, v in self._told],
                "fitted_on": self._model_at, "warm_made": self._warm_made}

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        self._told = [(tuple(int(i) for i in item["indices"]),
                       None if item["value"] is None else float(item["value"]))
                      for item in state["told"]]
        self._seen = {idx for idx, _ in self._told}
        self._model, self._model_at = None, int(state["fitted_on"])
        self._warm_made = int(state.get("warm_made", 0))
        self._source_models = None
