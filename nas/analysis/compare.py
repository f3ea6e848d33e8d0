"""Several runs side by side: final bests, best-so-far curves and Pareto fronts.

Every run is scored with the same reward settings (MnasNet's ``ACC x (LAT/T)^w``, Tan et al.,
arXiv:1807.11626), recomputed from raw metrics, so e.g. rl, evolution and random searches over the
same space compare fairly even when they were run with different reward settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nas.analysis.analyze import failure_summary, pareto_front, progress, rank_trials, records
from nas.reward import RewardConfig

__all__ = ["Comparison", "compare"]



@dataclass
class Comparison:
    """Several runs side by side (see :func:`compare`)."""

    reward: RewardConfig | None
    summary: pd.DataFrame
    progress: dict[str, pd.DataFrame]
    fronts: dict[str, pd.DataFrame]
    ranked: dict[str, pd.DataFrame]

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data."""
        return {"reward": None if self.reward is None else self.reward.to_dict(),
                "summary": records(self.summary),
                "progress": {name: records(t) for name, t in self.progress.items()}}


def _final_best(label: str, frame: pd.DataFrame, config: Mapping[str, Any],
                ranked: pd.DataFrame, curve: pd.DataFrame) -> dict[str, Any]:
    counts, _ = failure_summary(frame)
    row: dict[str, Any] = {"run": label,
                           "controller": (config.get("controller") or {}).get("name"),
                           "trials": len(frame), **counts}
    best = ranked.iloc[0] if not ranked.empty else None
    found = curve[curve["best_trial_id"] == best["trial_id"]]["n"] if best is not None else []
    row.update({"best_reward": best["reward"] if best is not None else np.nan,
                "best_trial": best["trial_id"] if best is not None else None,
                "found_at": int(found.iloc[0]) if len(found) else None})
    for col in ("accuracy", "latency_ms", "macs", "params"):  # of the best trial
        row[col] = best[col] if best is not None and col in best else np.nan
    return row


def compare(runs: Mapping[str, tuple[pd.DataFrame, Mapping[str, Any]]],
            reward: RewardConfig | None) -> Comparison:
    """Final bests, best-so-far curves and latency fronts of several runs, with one reward.

    The summary has one row per run: ``run``, ``controller``, ``trials``, ``complete``,
    ``failed``, ``pruned``, ``best_reward``, ``best_trial``, ``found_at`` (trials finished when
    the best was found) and the best trial's ``accuracy``, ``latency_ms``, ``macs``, ``params``.

    Args:
        runs: label -> (trials frame, resolved config), in display order.
        reward: the settings every run is scored with (e.g. the first run's).
    """
    summary, curves, fronts, ranked_all = [], {}, {}, {}
    for label, (frame, config) in runs.items():
        ranked = rank_trials(frame, reward)
        curve = progress(frame, reward)
        curves[label], ranked_all[label] = curve, ranked
        fronts[label] = pareto_front(frame, "latency_ms", reward)
        summary.append(_final_best(label, frame, config, ranked, curve))
    return Comparison(reward=reward, summary=pd.DataFrame(summary), progress=curves,
                      fronts=fronts, ranked=ranked_all)
