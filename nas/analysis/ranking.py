"""Ranking a run's trials: the reward recomputed from the raw metrics, trials and architectures
ranked, the top K, Pareto fronts and the best-so-far progress.

The reward is MnasNet's ``ACC x (COST/T)^w`` (Tan et al., arXiv:1807.11626, equation 2)
recomputed from the RAW stored metrics (``accuracy`` and ``latency_ms``, ``macs`` or ``params``)
with :mod:`nas.reward`, so a run can be re-ranked for another latency target or other exponents
without re-running anything. Failed and pruned trials are left out of rankings and fronts.
:mod:`nas.analysis.analyze` builds the whole report on these.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from nas._checks import check_number
from nas.errors import UsageError
from nas.records import TrialStatus
from nas.reward import RewardConfig, mnas_reward, pareto_mask

__all__ = [
    "reward_settings",
    "score",
    "complete_trials",
    "rank_trials",
    "rank_archs",
    "top_k",
    "pareto_front",
    "progress",
    "finish_order",
    "TOP_COLUMNS",
]

# what a reader looks for first, the wide key last (``print(run.best(3))``)
TOP_COLUMNS = ["rank", "trial_id", "reward", "accuracy", "latency_ms", "latency_cond", "params",
               "macs", "evals", "reward_std", "arch_key"]
MEANS = ("reward", "accuracy", "latency_ms", "macs", "params")
COSTS = {"latency_ms": "latency (ms)", "macs": "MACs", "params": "parameters"}


def reward_settings(
    config: Mapping[str, Any],
    *,
    target_ms: float | None = None,
    target: float | None = None,
    alpha: float | None = None,
    beta: float | None = None,
) -> RewardConfig | None:
    """The reward to rank with: the run's own settings, overridden by the given values.

    Args:
        config: the run's resolved config (its ``reward`` section is the default).
        target_ms: a new latency target in ms (switches the cost metric to latency).
        target: a new target in the unit of the run's reward metric (ms, MACs or parameters).
        alpha, beta: new exponents (under / over the target).

    Returns:
        The settings, or None when the run has no reward settings and none are given (rankings
        then use the stored reward, or accuracy).

    Raises:
        UsageError: both targets given, a non-positive target, a non-finite exponent, or
            exponents without any target.
    """
    if target_ms is not None and target is not None:
        raise UsageError("target_ms and target: give one of them, not both",
                         params=("target_ms", "target"))
    section = config.get("reward")
    base = RewardConfig.from_dict(section) if section is not None else None
    if base is None and target_ms is None and target is None:
        if alpha is not None or beta is not None:
            raise UsageError("alpha/beta: the run has no reward target; give target_ms as well",
                             params=("alpha", "beta", "target_ms"))
        return None
    changes = _reward_changes(target_ms, target, alpha, beta)
    return replace(base or RewardConfig(target=changes["target"]), **changes)


def _reward_changes(target_ms: Any, target: Any, alpha: Any, beta: Any) -> dict[str, Any]:
    """The given overrides, checked, as RewardConfig fields."""
    changes: dict[str, Any] = {}
    if target_ms is not None:
        changes.update(target=check_number("target_ms", target_ms, strict=True), metric="latency")
    if target is not None:
        changes["target"] = check_number("target", target, strict=True)
    for name, value in (("alpha", alpha), ("beta", beta)):
        if value is not None:
            changes[name] = check_number(name, value, minimum=None)
    return changes


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce")
    return pd.Series(np.nan, index=frame.index, dtype=float)


def score(frame: pd.DataFrame, reward: RewardConfig | None) -> pd.Series:
    """Reward of every row recomputed from raw metrics (the stored reward when ``reward`` is None).

    Rows whose accuracy or cost is missing score NaN.
    """
    if reward is None:
        return _column(frame, "reward")
    acc, cost = _column(frame, reward.accuracy_key), _column(frame, reward.cost_key)
    values = [mnas_reward(a, c, reward.target, reward.alpha, reward.beta)
              for a, c in zip(acc, cost, strict=True)]
    return pd.Series(values, index=frame.index, dtype=float)


def _base(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the columns every analysis reads (an empty run has none)."""
    missing = [c for c in ("trial_id", "status", "error", "reward", "arch_key") if c not in frame]
    if not missing:
        return frame
    frame = frame.copy()
    for col in missing:
        frame[col] = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    return frame


def complete_trials(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of complete trials only (failed and pruned ones excluded)."""
    frame = _base(frame)
    return frame[frame["status"] == TrialStatus.COMPLETE.value]


def rank_trials(frame: pd.DataFrame, reward: RewardConfig | None, *,
                scored_only: bool = True) -> pd.DataFrame:
    """Complete trials with a finite reward, best first, with ``rank`` (1-based) and ``reward``.

    Ties are broken by the lower trial id. Without reward settings and stored rewards, trials are
    ranked by accuracy. ``scored_only=False`` keeps those without a reward too (ranked last).
    """
    done = complete_trials(frame).copy()
    values = score(done, reward)
    if reward is None and values.isna().all():
        values = _column(done, "accuracy")
    done["reward"] = values
    if scored_only:
        done = done[np.isfinite(done["reward"].to_numpy(dtype=float))]
    done = done.sort_values(["reward", "trial_id"], ascending=[False, True], kind="stable",
                            na_position="last")
    done.insert(0, "rank", np.arange(1, len(done) + 1))
    return done.reset_index(drop=True)


def rank_archs(frame: pd.DataFrame, reward: RewardConfig | None, *,
               scored_only: bool = True) -> pd.DataFrame:
    """One row per architecture, best first: the mean of its complete evaluations.

    ``evals`` counts them; ``reward``, ``accuracy``, ``latency_ms``, ``macs`` and ``params`` are
    means and ``reward_std``, ``accuracy_std``, ``latency_ms_std`` their standard deviations (NaN
    for a single evaluation); ``trial_id`` is the architecture's best trial (ties: the lower id),
    whose other columns the row keeps. Ranked by mean reward, ties by that trial id;
    ``scored_only=False`` keeps architectures without a reward (last).
    """
    trials = rank_trials(frame, reward, scored_only=scored_only).drop(columns="rank")
    if trials.empty:
        return trials.assign(rank=pd.Series(dtype=int), evals=pd.Series(dtype=int))
    for col in MEANS:
        trials[col] = _column(trials, col)
    groups = trials.groupby("arch_key", sort=False)
    best = groups.head(1).set_index("arch_key")  # rank_trials sorted: the first is the best
    best["evals"] = groups.size()
    for col in MEANS:
        best[col] = groups[col].mean()
    for col in ("reward", "accuracy", "latency_ms"):
        best[f"{col}_std"] = groups[col].std()
    best = best.reset_index().sort_values(["reward", "trial_id"], ascending=[False, True],
                                          kind="stable", na_position="last")
    best.insert(0, "rank", np.arange(1, len(best) + 1))
    return best.reset_index(drop=True)


def _view(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for col in columns:
        out[col] = frame[col] if col in frame else np.nan
    return out.reset_index(drop=True)


def top_k(frame: pd.DataFrame, k: int, reward: RewardConfig | None) -> pd.DataFrame:
    """The ``k`` best architectures (:func:`rank_archs`): rank, best trial, mean reward, accuracy,
    latency (``latency_cond``: final or search), params, MACs, evals, reward spread, key."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"top={k!r}: must be an integer >= 1", params=("top",))
    from nas.analysis.conditions import latency_condition

    top = rank_archs(frame, reward).head(k)
    top = top.assign(latency_cond=latency_condition(top).to_numpy() if len(top) else [])
    return _view(top, TOP_COLUMNS)


def pareto_front(frame: pd.DataFrame, cost: str = "latency_ms",
                 reward: RewardConfig | None = None) -> pd.DataFrame:
    """Non-dominated architectures (the means of their complete evaluations, one row each):
    accuracy (max) against ``cost`` (min), sorted by cost.

    Args:
        frame: the trials frame.
        cost: ``latency_ms``, ``macs`` or ``params``.
        reward: settings for the ``reward`` column of the result.
    """
    if cost not in COSTS:
        raise UsageError(f"cost={cost!r}: allowed values: {', '.join(COSTS)}")
    done = rank_archs(frame, reward, scored_only=False)
    done = done.assign(**{cost: _column(done, cost), "accuracy": _column(done, "accuracy")})
    points = np.column_stack([done["accuracy"], done[cost]])
    front = done[pareto_mask(points, maximize=(True, False))].copy()
    front = front.sort_values([cost, "trial_id"], kind="stable")
    columns = ["trial_id", "evals", "accuracy", cost, "reward", "arch_key"]
    if cost == "latency_ms":  # which latency each row shows: final or search-time
        from nas.analysis.conditions import latency_condition

        front = front.assign(latency_cond=latency_condition(front).to_numpy() if len(front) else [])
        columns.insert(4, "latency_cond")
    return _view(front, columns)


def finish_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they finished (``step``; trial id where steps are missing)."""
    if "step" in frame and frame["step"].notna().all():
        return frame.sort_values(["step", "trial_id"], kind="stable")
    return frame.sort_values("trial_id", kind="stable") if "trial_id" in frame else frame


def progress(frame: pd.DataFrame, reward: RewardConfig | None) -> pd.DataFrame:
    """Best-so-far reward after every finished trial (failed and pruned ones count as trials).

    Columns: ``n`` (trials finished), ``trial_id``, ``status``, ``reward`` (NaN unless complete),
    ``best_reward`` and ``best_trial_id`` (NaN until the first complete trial).
    """
    ordered = finish_order(_base(frame))
    values = score(ordered, reward)
    if reward is None and values.isna().all():
        values = _column(ordered, "accuracy")
    values = values.where(ordered["status"] == TrialStatus.COMPLETE.value)
    best, best_id, rows = -math.inf, None, []
    for (_, row), value in zip(ordered.iterrows(), values, strict=True):
        if np.isfinite(value) and value > best:
            best, best_id = float(value), row.get("trial_id")
        rows.append({"n": len(rows) + 1, "trial_id": row.get("trial_id"),
                     "status": row.get("status"), "reward": value,
                     "best_reward": best if best_id is not None else np.nan,
                     "best_trial_id": best_id})
    columns = ["n", "trial_id", "status", "reward", "best_reward", "best_trial_id"]
    return pd.DataFrame(rows, columns=columns)
