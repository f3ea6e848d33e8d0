"""The best architecture of a run as one summary, saying which latency it stands on.

A search ranks its children by the latency measured while it ran; at its end the finalists are
re-measured (``remeasured.jsonl``), and from then on ``nas analyze``, ``nas export`` and the final
tables rank by the final numbers. :func:`final_best` gives the best architecture the way they do
(rank 1 of :func:`nas.analysis.analyze.top_k` on the trials frame with the final latencies
applied), with the search-time latency and reward of the same trial beside the final ones, so a
summary can show one number and explain the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nas.analysis.analyze import score, top_k
from nas.analysis.conditions import _number
from nas.reward import RewardConfig

__all__ = ["final_best", "FINAL", "SEARCH"]

FINAL = "final"  # the latency re-measured after the search
SEARCH = "search"  # the latency measured while the search ran


def _true(value: Any) -> bool:
    """True for a True cell (Python or numpy), False for False, None or NaN."""
    return isinstance(value, bool | np.bool_) and bool(value)


def final_best(frame: pd.DataFrame, reward: RewardConfig | None) -> dict[str, Any] | None:
    """Rank 1 of ``frame`` (a trials frame, final latencies applied) as
    :func:`nas.records.best_of` describes a best: ``reward`` (recomputed from the latency shown),
    ``trial_id``, ``arch_key``, ``accuracy``, ``latency_ms``, ``at_chance``; plus
    ``latency_source`` (:data:`FINAL` or :data:`SEARCH`) and, for a final one,
    ``search_latency_ms`` and ``search_reward`` (the trial's latency as the search measured it,
    and the reward under the same settings from that). None when no complete trial has a
    reward."""
    top = top_k(frame, 1, reward)
    if top.empty:
        return None
    row = top.iloc[0]
    trial = frame[frame["trial_id"] == row["trial_id"]].iloc[0]
    accuracy, bound = _number(row["accuracy"]), _number(trial.get("chance_accuracy"))
    best = {"reward": float(row["reward"]), "trial_id": int(row["trial_id"]),
            "arch_key": row["arch_key"], "accuracy": accuracy,
            "latency_ms": _number(row["latency_ms"]),
            "at_chance": accuracy is not None and bound is not None and accuracy <= bound,
            "latency_source": FINAL if _true(trial.get("latency_final")) else SEARCH}
    if best["latency_source"] == FINAL:  # the same trial scored with its search-time latency
        searched = _number(trial.get("latency_search_ms"))
        as_searched = trial.to_frame().T.assign(latency_ms=searched)
        best["search_latency_ms"] = searched
        best["search_reward"] = _number(score(as_searched, reward).iloc[0])
    return best
