"""Tree-structured Parzen Estimator search through Optuna's ``TPESampler``.

TPE (Bergstra, Bardenet, Bengio & Kegl, "Algorithms for Hyper-Parameter Optimization", NeurIPS
2011) splits the observed children into the best ``gamma`` fraction and the rest, fits a Parzen
density to each (``l(x)`` and ``g(x)``), and proposes the candidate, among ``n_ei_candidates``
drawn from ``l``, with the largest ``l(x) / g(x)``: the expected-improvement maximiser under that
model. This controller does not re-implement it: it drives Optuna's sampler (Akiba, Sano,
Yanase, Ohta & Koyama, "Optuna: A Next-generation Hyperparameter Optimization Framework", KDD
2019, arXiv:1907.10902) through an in-memory study in ask-and-tell form.

Every decision of the space is one categorical parameter named by its label, whose choices are
the option indices ``0..n-1`` (so options of any type work). With ``objectives`` the study is
multi-objective and Optuna's multi-objective TPE ranks children by non-dominated sorting.

What this controller adds to the sampler:

* **No re-evaluation.** Failed children are told to Optuna as ``FAIL`` (invisible to its model)
  and, like every architecture already told or outstanding, are never proposed again: a TPE draw
  of a known architecture is finished as a throwaway ``FAIL`` trial and TPE draws again, up to
  ``max_retries`` times; then a uniformly random unseen architecture is proposed instead. Only
  when every architecture of the space has been proposed is one repeated (a warning is logged).
  Retrying stops early when a draw repeats an earlier draw of the same ask: the history has not
  changed, so TPE's pick is deterministic there and further draws would repeat it too.
* **Many proposals in flight.** Outstanding proposals are ``RUNNING`` Optuna trials and the
  constant liar (on by default) keeps concurrent asks from piling onto one point.
* **Exact resume from plain data.** The state is the trial history (indices, state and values of
  every Optuna trial in number order) plus the sampler's two ``numpy.random.RandomState``
  states; loading it replays the trials into a fresh in-memory study and restores the RNGs, so a
  resumed controller proposes exactly what an uninterrupted one would. No Optuna storage file or
  pickle is involved.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.samplers import TPESampler
from optuna.trial import TrialState

from controllers.nsga2 import _parse_objectives as _parse_nsga2_objectives
from controllers.tpe_warm import TPEWarmStart
from nas.errors import ConfigError, InvalidArchError
from nas.registry import register_controller
from nas.reward import pareto_mask
from nas.search.controller import Controller, Proposal, check_bool, check_int
from nas.search.warm import ORIGIN, SourceModel
from nas.space import Arch, Space

__all__ = ["TPEController"]

log = logging.getLogger(__name__)

_STATES = {"COMPLETE": TrialState.COMPLETE, "FAIL": TrialState.FAIL,
           "RUNNING": TrialState.RUNNING}
_ENUMERATE_LIMIT = 1 << 20  # spaces up to this size are enumerated to find an unseen arch


def _parse_objectives(objectives: Any) -> list[list[str]] | None:
    """nsga2's validation of ``(metric, "max" | "min")`` pairs, with this controller's name."""
    if objectives is None:
        return None
    try:
        return _parse_nsga2_objectives(objectives)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("nsga2 option", "tpe option", 1)) from None


def _rng_state(rng: np.random.RandomState) -> list[Any]:
    """A ``RandomState``'s state as plain data (str, list of ints, int, int, float)."""
    name, keys, pos, has_gauss, gauss = rng.get_state(legacy=True)
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(gauss)]


def _set_rng_state(rng: np.random.RandomState, state: Sequence[Any]) -> None:
    name, keys, pos, has_gauss, gauss = state
    if name != "MT19937" or len(keys) != 624:
        raise ValueError(f"not an MT19937 state: {name!r} with {len(keys)} keys")
    rng.set_state((str(name), np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss),
                   float(gauss)))


@register_controller("tpe")
class TPEController(TPEWarmStart, Controller):
    """TPE (Bergstra et al., NeurIPS 2011) via Optuna's ``TPESampler`` (arXiv:1907.10902).

    By default a scalar controller (``tell`` takes the reward, maximised). With ``objectives``
    it is multi-objective: ``wants_metrics`` is ``True`` on the instance and ``tell`` takes the
    raw metrics mapping, as for ``nsga2``; a missing or non-finite objective is a failure.

    The first ``n_startup_trials`` successful children are uniformly random (Optuna's TPE counts
    only completed trials, so failures do not shorten the random phase). Failed, told and
    outstanding architectures are never proposed again until the space is exhausted.

    ``multivariate=True`` is the default here. ``multivariate=False`` (Optuna's default)
    samples each decision on its own and keeps, per
    decision, the candidate with the best ``l(x) / g(x)``; with categorical decisions of at most
    a few dozen options every option is among the candidates, so the pick is the per-decision
    argmax, a deterministic function of the history. Once TPE has proposed that architecture it
    keeps drawing it, and most later proposals are the random fallback. ``multivariate=True``
    draws whole architectures from a joint estimator: its draws stay diverse, and it is several
    times cheaper per ask on spaces with many decisions (one estimator instead of one per
    decision).

    Args:
        space: the search space.
        seed: seed of the controller's ``numpy.random.Generator``; the sampler's seed is derived
            from it.
        n_startup_trials: completed children before TPE takes over (>= 0; Optuna's default 10).
        constant_liar: treat outstanding proposals as bad results while sampling, so that many
            asks in flight spread out (default ``True``; Optuna's ``constant_liar``).
        multivariate: one joint Parzen estimator over all decisions instead of one per decision
            (default ``True``; Optuna's default is ``False``, see above).
        n_ei_candidates: candidates drawn from ``l(x)`` per proposal (>= 1; Optuna's default 24).
        max_retries: TPE draws retried when one is a known architecture, before proposing a
            random unseen one instead (>= 0; default 100).
        objectives: ``None`` (a scalar reward) or ``(metric, "max" | "min")`` pairs, as for
            ``nsga2``.

    **Warm start.** The sources' records become prior observations: completed Optuna trials
    numbered before the controller's own, never proposals (so TPE's model starts from them and
    its first draw is already informed; a proposal that repeats a source's architecture is
    marked ``origin: warm-start``). Their values are put on the target's scale, record by
    record (:func:`controllers._warm.prior_values`): the normal score of the record's rank in
    its source, times the source's trust and the standard deviation of the target's results so
    far, plus their mean. The trust (:func:`nas.search.warm.trust`) is Spearman's rho between a
    nearest-neighbour model of the source and the target's results; a source that stops agreeing
    is made invisible (its prior trials become failed trials). The priors are re-valued after
    each of the first 8 results, then whenever the results grew by a quarter: the study is
    rebuilt from its plain-data state, so the sampler's RNG and the trial numbers carry over.
    """

    def __init__(
        self,
        space: Space,
        *,
        seed: int | None = None,
        n_startup_trials: int = 10,
        constant_liar: bool = True,
        multivariate: bool = True,
        n_ei_candidates: int = 24,
        max_retries: int = 100,
        objectives: Sequence[Sequence[str]] | None = None,
    ) -> None:
        o = "tpe option "
        options = {
            "n_startup_trials": check_int(o + "n_startup_trials", n_startup_trials, minimum=0),
            "constant_liar": check_bool(o + "constant_liar", constant_liar),
            "multivariate": check_bool(o + "multivariate", multivariate),
            "n_ei_candidates": check_int(o + "n_ei_candidates", n_ei_candidates, minimum=1),
            "max_retries": check_int(o + "max_retries", max_retries, minimum=0),
            "objectives": _parse_objectives(objectives),
        }
        super().__init__(space, seed=seed, options=options)
        self.max_retries: int = options["max_retries"]
        self.objectives: list[list[str]] | None = options["objectives"]
        self.wants_metrics = self.objectives is not None  # instance attribute: read per instance
        self._labels = space.labels()
        self._sizes = [len(c) for c in space.choices().values()]
        self._size = space.size()
        self._distributions = {
            label: CategoricalDistribution(tuple(range(n)))
            for label, n in zip(self._labels, self._sizes, strict=True)
        }
        self._study = self._new_study()
        # index tuples proposed so far (told, failed or outstanding): never proposed again
        self._known: set[tuple[int, ...]] = set()
        self._priors = 0  # prior trials (warm start), numbered first
        self._priors_at = -1  # number of own results the priors were last valued on
        self._source_models: list[SourceModel] = []
        self._prior_indices: set[tuple[int, ...]] = set()

    # -- public ------------------------------------------------------------------------------
    @property
    def required_metrics(self) -> tuple[str, ...]:
        if self.objectives is None:
            return ()
        return tuple(name for name, _ in self.objectives)

    @property
    def study(self) -> optuna.Study:
        """The in-memory Optuna study (read it, do not ask or tell it directly)."""
        return self._study

    def pareto_front(self) -> list[tuple[Arch, dict[str, float]]]:
        """Non-dominated children told so far with their objective values.

        For a scalar controller the objective is ``"reward"`` and the front is the best child
        (every child tied for best).
        """
        names = self.required_metrics or ("reward",)
        own = [t for t in self._study.best_trials if t.number >= self._priors]  # not the priors
        if self._priors and len(own) < len(self._study.best_trials):  # a prior dominates some
            trials = self._own()
            if not trials:
                return []
            if self.objectives is None:
                top = max(t.values[0] for t in trials)
                own = [t for t in trials if t.values[0] == top]
            else:
                sense = [s == "max" for _, s in self.objectives]
                mask = pareto_mask([list(t.values) for t in trials], sense)
                own = [t for t, keep in zip(trials, mask, strict=True) if keep]
        return [(self.space.decode(self._indices(t)), dict(zip(names, t.values, strict=True)))
                for t in own]

    # -- optuna ------------------------------------------------------------------------------
    def _new_study(self) -> optuna.Study:
        """A fresh in-memory study whose sampler is seeded from the controller's seed."""
        if optuna.logging.get_verbosity() < optuna.logging.WARNING:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler_seed = int(np.random.SeedSequence([self.seed, 0x7E5]).generate_state(1)[0])
        with warnings.catch_warnings():  # constant_liar / multivariate are "experimental"
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = TPESampler(
                n_startup_trials=self.options["n_startup_trials"],
                n_ei_candidates=self.options["n_ei_candidates"],
                multivariate=self.options["multivariate"],
                constant_liar=self.options["constant_liar"],
                seed=sampler_seed,
            )
        if self.objectives is None:
            return optuna.create_study(sampler=sampler, direction="maximize")
        directions = ["maximize" if sense == "max" else "minimize" for _, sense in self.objectives]
        return optuna.create_study(sampler=sampler, directions=directions)

    @staticmethod
    def _sampler_rngs(study: optuna.Study) -> tuple[np.random.RandomState, np.random.RandomState]:
        """The sampler's own RandomState and that of its startup RandomSampler (Optuna 4/5)."""
        sampler = study.sampler
        try:
            return sampler._rng.rng, sampler._random_sampler._rng.rng  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - guards against an Optuna refactor
            raise RuntimeError(
                f"tpe: optuna {optuna.__version__} keeps TPESampler's RNGs elsewhere; "
                "exact resume needs updating"
            ) from None

    def _indices(self, trial: optuna.trial.FrozenTrial) -> tuple[int, ...]:
        return tuple(int(trial.params[label]) for label in self._labels)

    def _ask_tpe(self) -> tuple[int, tuple[int, ...]]:
        """One TPE draw: a new RUNNING trial's number and its option indices."""
        trial = self._study.ask(self._distributions)
        params = trial.params
        return trial.number, tuple(int(params[label]) for label in self._labels)

    def _add_running(self, indices: Sequence[int]) -> int:
        """Add a RUNNING trial with these indices (not sampled by TPE); its number."""
        self._study.add_trial(optuna.trial.create_trial(
            state=TrialState.RUNNING, distributions=self._distributions,
            params=dict(zip(self._labels, indices, strict=True))))
        return len(self._study.get_trials(deepcopy=False)) - 1

    def _random_unseen(self) -> tuple[int, ...] | None:
        """A uniformly random architecture not proposed yet (drawn with ``self.rng``)."""
        for _ in range(64):
            indices = self.space.sample(self.rng).indices
            if indices not in self._known:
                return indices
        if math.prod(self._sizes) <= _ENUMERATE_LIMIT:  # nearly exhausted: pick among the rest
            unseen = [i for i in itertools.product(*map(range, self._sizes))
                      if i not in self._known]
            while unseen:
                pick = unseen.pop(int(self.rng.integers(len(unseen))))
                try:
                    return self.space.decode(list(pick)).indices
                except InvalidArchError:  # a constrained space's invalid index combination
                    continue
            return None
        for _ in range(100_000):  # a huge space with a vanishing unseen fraction
            indices = self.space.sample(self.rng).indices
            if indices not in self._known:
                return indices
        return None

    # -- hooks -------------------------------------------------------------------------------
    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        number, indices = self._ask_tpe()
        source = "tpe"
        if len(self._known) >= self._size:
            log.warning("tpe: all %d architectures proposed; repeating", self._size)
            source = "repeat"
        else:
            drawn, retries, repeated = {indices}, 0, False
            while indices in self._known:
                self._study.tell(number, state=TrialState.FAIL)  # throwaway: unseen by TPE
                if retries == self.max_retries or repeated:
                    unseen = self._random_unseen()
                    if unseen is None:  # every valid architecture was proposed
                        log.warning("tpe: no unseen architecture left; repeating")
                        number, indices = self._ask_tpe()
                        source = "repeat"
                    else:
                        indices = unseen
                        number = self._add_running(indices)
                        source = "random"
                    break
                retries += 1
                number, indices = self._ask_tpe()
                # the history is unchanged, so a draw repeating an earlier one of this ask means
                # TPE's pick is deterministic here (independent sampling: every option of every
                # decision is among the candidates): more retries would repeat it too
                repeated = indices in drawn
                drawn.add(indices)
        self._known.add(indices)
        extra: dict[str, Any] = {"trial": number, "source": source}
        if indices in self._prior_indices:
            extra["origin"] = ORIGIN
        return self.space.decode(list(indices)), extra

    def _replay_extra(self, arch: Arch) -> dict[str, Any]:
        self._known.add(arch.indices)
        return {"trial": self._add_running(arch.indices), "source": "replay"}

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        number = int(extra["trial"])
        if value is None:
            self._study.tell(number, state=TrialState.FAIL)
        elif self.objectives is None:
            self._study.tell(number, float(value))
        else:
            self._study.tell(number, [float(value[name]) for name in self.required_metrics])
        if self._priors:
            self._revalue_priors()

    def _algorithm_state(self) -> dict[str, Any]:
        trials = []
        for t in self._study.get_trials(deepcopy=False):
            values = None if t.values is None else [float(v) for v in t.values]
            trials.append({"number": t.number, "state": t.state.name,
                           "params": list(self._indices(t)), "values": values})
        tpe_rng, random_rng = self._sampler_rngs(self._study)
        return {"optuna": optuna.__version__, "trials": trials, "priors": self._priors,
                "priors_at": self._priors_at, "sampler_rng": _rng_state(tpe_rng),
                "random_sampler_rng": _rng_state(random_rng)}

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        study = self._new_study()
        known: set[tuple[int, ...]] = set()
        priors = int(state.get("priors", 0))
        for number, item in enumerate(state["trials"]):
            if int(item["number"]) != number:
                raise ValueError(f"trial {item['number']} stored as number {number}")
            indices = tuple(self.space.decode(item["params"]).indices)
            kind = _STATES[item["state"]]
            values = item["values"]
            if (values is None) != (kind != TrialState.COMPLETE):
                raise ValueError(f"trial {number}: state {item['state']} with values {values!r}")
            study.add_trial(optuna.trial.create_trial(
                state=kind, distributions=self._distributions,
                params=dict(zip(self._labels, indices, strict=True)),
                values=None if values is None else [float(v) for v in values]))
            if number >= priors:  # a prior (warm start) is no proposal: it may be proposed
                known.add(indices)  # throwaway FAIL trials are known archs: a no-op
        tpe_rng, random_rng = self._sampler_rngs(study)
        _set_rng_state(tpe_rng, state["sampler_rng"])
        _set_rng_state(random_rng, state["random_sampler_rng"])
        if state.get("optuna") != optuna.__version__:
            log.warning("tpe: state saved with optuna %s, running %s: the search resumes but may "
                        "not propose exactly what the saved run would have", state.get("optuna"),
                        optuna.__version__)
        self._study, self._known = study, known
        self._priors, self._priors_at = priors, int(state.get("priors_at", -1))
        self._source_models = [SourceModel(s) for s in self._warm]
        self._prior_indices = {r.indices for s in self._warm for r in s.records}
