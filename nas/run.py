"""The ``Run`` facade: a run folder loaded for analysis and export (above storage and analysis)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

from nas.results import RunDir, trials_frame

__all__ = ["Run", "load_run", "Ranking"]

# what ``print(run.best(3))`` always shows, in this order, when not every column fits
LEAD = ("rank", "trial_id", "reward", "accuracy", "latency_ms", "latency_cond", "params")


class Ranking(pd.DataFrame):
    """A ranking (:meth:`Run.best`): a DataFrame whose printout keeps rank, trial, reward,
    accuracy, latency (final or search-time: ``latency_cond``) and params in view.

    Where pandas would drop middle columns behind ``...`` to fit the screen, it prints those
    columns and names the others below; every column is still in the frame (``to_string()``,
    ``to_csv()`` and indexing see them all).
    """

    @property
    def _constructor(self) -> type[Ranking]:
        return Ranking

    def __repr__(self) -> str:
        plain = pd.DataFrame(self)
        text = repr(plain)
        lead = [c for c in LEAD if c in plain.columns]
        shown = set(text.split())
        if len(lead) < len(LEAD) or all(str(c) in shown for c in plain.columns):
            return text
        rest = [str(c) for c in plain.columns if c not in lead]
        return f"{plain[lead]!r}\n(more columns: {', '.join(rest)})"


class Run:
    """A run folder loaded for analysis: ``run.trials`` is a pandas DataFrame.

    Analysis methods (:mod:`nas.analysis.analyze`) recompute MnasNet's reward from the raw stored
    metrics,
    with the run's own reward settings or with ``target_ms`` (a latency target in ms), ``target``
    (in the unit of the run's reward metric), ``alpha`` and ``beta`` overriding them::

        run = nas.load_run("results/quickstart")
        run.best(5)                         # top 5 complete trials, best first
        run.best(5, target_ms=0.5)          # re-ranked for a 0.5 ms target, nothing re-run
        run.pareto()                        # accuracy vs latency front ("macs" for MACs)
        run.export(rank=1)                  # arch.json, model.pt2, model.onnx, weights
    """

    def __init__(self, path: str | Path, *, trust_code: bool = False) -> None:
        self.trust_code = bool(trust_code)
        self.dir = RunDir.open(path)
        self.path = self.dir.path
        self.config = self.dir.read_config()
        self.records = self.dir.trials()
        self.final = self.dir.final_latencies()
        self.trials = trials_frame(self.records, self.final)

    def reward(self, target_ms: float | None = None, *, target: float | None = None,
               alpha: float | None = None, beta: float | None = None) -> Any:
        """The :class:`nas.reward.RewardConfig` to rank with (None: the run has no reward)."""
        from nas.analysis.analyze import reward_settings

        return reward_settings(self.config, target_ms=target_ms, target=target, alpha=alpha,
                               beta=beta)

    def best(self, k: int = 1, target_ms: float | None = None, *, target: float | None = None,
             alpha: float | None = None, beta: float | None = None) -> Any:
        """Top ``k`` architectures, best first (:func:`nas.analysis.analyze.top_k`): rank,
        trial_id, reward, accuracy, latency_ms, latency_cond, params, macs, evals, reward_std,
        arch_key, as a :class:`Ranking` (it prints the first seven in 80 columns)."""
        from nas.analysis.analyze import top_k

        return Ranking(top_k(self.trials, k, self.reward(target_ms, target=target, alpha=alpha,
                                                         beta=beta)))

    def pareto(self, cost: str = "latency_ms") -> Any:
        """Non-dominated complete trials, accuracy (max) vs ``cost`` (``latency_ms``/``macs``)."""
        from nas.analysis.analyze import pareto_front

        return pareto_front(self.trials, cost, self.reward())

    def progress(self, target_ms: float | None = None, **reward: Any) -> Any:
        """Best-so-far reward after every finished trial (a DataFrame)."""
        from nas.analysis.analyze import progress

        return progress(self.trials, self.reward(target_ms, **reward))

    def analyze(self, k: int = 10, target_ms: float | None = None, **reward: Any) -> Any:
        """Every table of ``nas analyze`` as a :class:`nas.analysis.analyze.Analysis`."""
        from nas.analysis.analyze import analyze

        return analyze(self.trials, self.config, name=self.path.name, path=str(self.path), k=k,
                       reward=self.reward(target_ms, **reward))

    def export(self, rank: int | None = None, *, trial_id: int | None = None,
               target_ms: float | None = None, target: float | None = None,
               alpha: float | None = None, beta: float | None = None, **options: Any) -> Any:
        """Export one trial as an architecture card folder (see
        :func:`nas.export.card.export_trial`).

        ``rank`` counts under the reward settings given (default: the run's own). ``options``:
        ``formats``, ``out``, ``train_epochs``, ``from_scratch``, ``opset``, ``overwrite``.
        """
        from nas.export.card import export_trial

        reward = self.reward(target_ms, target=target, alpha=alpha, beta=beta)
        with self.names():
            return export_trial(self, rank=rank, trial_id=trial_id, reward=reward, **options)

    def names(self) -> AbstractContextManager[None]:
        """A block in which the names of the run's config are read from its ``config.yaml``: a
        ``module:attr`` one is imported only if the run was loaded with ``trust_code=True``."""
        from nas.registry import names_from

        return names_from(self.dir.config_path, trust_code=self.trust_code)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, trials={len(self)})"


def load_run(path: str | Path, *, trust_code: bool = False) -> Run:
    """Load a run folder, finished or not; ``load_run(p).trials`` is the trials DataFrame.

    ``trust_code``: import the ``module:attr`` names its ``config.yaml`` holds (a custom space)
    when a method needs the space (export, block strings); registered names never need it.
    """
    return Run(path, trust_code=trust_code)
