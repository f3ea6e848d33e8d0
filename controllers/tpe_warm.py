"""The warm start of the ``tpe`` controller: sources as re-valued prior trials (see
:class:`controllers.tpe.TPEController`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from controllers._warm import prior_values, source_trusts
from nas.search.warm import SourceModel

__all__ = ["TPEWarmStart"]


class TPEWarmStart:
    """Mixin of :class:`controllers.tpe.TPEController`: the priors are its study's first trials
    (``_priors`` of them), valued on the target's scale by :func:`controllers._warm.prior_values`
    and re-valued as the controller's own results arrive."""

    _priors: int
    _priors_at: int
    _study: optuna.Study
    _source_models: list[SourceModel]
    _prior_indices: set[tuple[int, ...]]
    _warm: list[Any]
    _labels: list[str]
    _distributions: dict[str, Any]
    objectives: list[list[str]] | None

    def _warm_start(self) -> None:
        self._source_models = [SourceModel(s) for s in self._warm]
        self._prior_indices = {r.indices for s in self._warm for r in s.records}
        values = self._prior_values()
        for source in self._warm:
            for record in source.records:
                value = values.pop(0)
                self._study.add_trial(optuna.trial.create_trial(
                    state=TrialState.FAIL if value is None else TrialState.COMPLETE,
                    distributions=self._distributions,
                    params=dict(zip(self._labels, record.indices, strict=True)),
                    values=value))
                self._priors += 1
        self._priors_at = 0

    def _own(self) -> list[optuna.trial.FrozenTrial]:
        """The controller's own completed trials (priors and throwaways excluded)."""
        trials = self._study.get_trials(deepcopy=False)[self._priors:]
        return [t for t in trials if t.state == TrialState.COMPLETE]

    def _prior_values(self) -> list[list[float] | None]:
        own = self._own()
        rows = [self._indices(t) for t in own]
        signs = [1.0] if self.objectives is None else [
            1.0 if sense == "max" else -1.0 for _, sense in self.objectives]
        first = [signs[0] * t.values[0] for t in own]  # the first objective, higher is better
        trusts = source_trusts(self._warm, self._source_models, rows, first)
        observed = np.array([list(t.values) for t in own], dtype=float).reshape(
            len(own), len(signs))
        names = None if self.objectives is None else [n for n, _ in self.objectives]
        values = prior_values(self._warm, trusts, observed, names)
        return values

    def _revalue_priors(self) -> None:
        """Re-value the priors on the target's results so far, when due (see the class)."""
        n = len(self._own())
        if not self._priors or n == self._priors_at or (n > 8 and n < 1.25 * self._priors_at):
            return
        values = self._prior_values()
        state = self._algorithm_state()
        for item, value in zip(state["trials"][: self._priors], values, strict=True):
            item["state"] = "FAIL" if value is None else "COMPLETE"
            item["values"] = value
        state["priors_at"] = n
        self._load_algorithm_state(state)
