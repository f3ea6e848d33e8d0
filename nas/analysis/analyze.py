"""Analysis of a finished (or running) search: everything ``nas analyze`` reports.

Everything here works on the trials DataFrame of :func:`nas.results.trials_frame` and the run's
resolved config, never on trained models. Rankings, fronts and progress come from
:mod:`nas.analysis.ranking` (re-exported here); this module adds the failure summary, the decision
statistics, the warm-started children and :class:`Analysis`, the report of one run. Failed and
pruned trials are left out of rankings and fronts and counted in the failure summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from nas.analysis.ranking import (
    TOP_COLUMNS,
    _base,
    _view,
    complete_trials,
    finish_order,
    pareto_front,
    progress,
    rank_archs,
    rank_trials,
    reward_settings,
    score,
    top_k,
)
from nas.records import TrialStatus
from nas.reward import RewardConfig

__all__ = [
    "reward_settings",
    "score",
    "complete_trials",
    "rank_trials",
    "rank_archs",
    "top_k",
    "pareto_front",
    "progress",
    "failure_summary",
    "decision_stats",
    "decision_summary",
    "Analysis",
    "analyze",
    "finish_order",
    "records",
    "warm_children",
    "TOP_COLUMNS",
]

WARM_COLUMNS = ["trial_id", "status", "rank", "reward", "accuracy", "arch_key"]


def failure_summary(frame: pd.DataFrame) -> tuple[dict[str, int], pd.DataFrame]:
    """Counts per status and the failed/pruned trials grouped by error (most common first).

    Returns:
        ``({"complete": n, "failed": n, "pruned": n}, errors)``; ``errors`` has columns
        ``status``, ``error`` (first line), ``count`` and ``trial_ids``.
    """
    frame = _base(frame)
    counts = {s.value: int((frame["status"] == s.value).sum()) for s in TrialStatus}
    bad = frame[frame["status"] != TrialStatus.COMPLETE.value]
    rows: dict[tuple[str, str], list[Any]] = {}
    for _, row in bad.iterrows():
        error = row.get("error")
        text = str(error).splitlines()[0] if isinstance(error, str) and error else (
            "pruned by the scheduler" if row.get("status") == TrialStatus.PRUNED.value
            else "(no message)")
        rows.setdefault((str(row.get("status")), text), []).append(row.get("trial_id"))
    table = pd.DataFrame(
        [{"status": s, "error": e, "count": len(ids), "trial_ids": " ".join(map(str, ids))}
         for (s, e), ids in rows.items()],
        columns=["status", "error", "count", "trial_ids"])
    return counts, table.sort_values("count", ascending=False, kind="stable").reset_index(drop=True)


def decision_stats(frame: pd.DataFrame, reward: RewardConfig | None,
                   top_fraction: float = 0.25) -> pd.DataFrame:
    """Which decision values go with high reward, over the complete trials.

    For every decision (``arch.<label>`` column) and value: ``n`` trials, ``mean_reward``,
    ``best_reward``, ``top_n`` (how many of the top ``top_fraction`` of trials by reward have it)
    and ``lift`` (its share of the top trials over its share of all trials; > 1: favoured).
    """
    ranked = rank_trials(frame, reward)
    columns = ["decision", "value", "n", "mean_reward", "best_reward", "top_n", "lift"]
    if ranked.empty:
        return pd.DataFrame(columns=columns)
    n_top = max(1, math.ceil(len(ranked) * top_fraction))
    top = ranked["rank"] <= n_top
    rows = []
    for col in [c for c in ranked.columns if c.startswith("arch.")]:
        for value, group in ranked.groupby(col, sort=True, dropna=False):
            top_n = int(top[group.index].sum())
            rows.append({"decision": col[len("arch."):], "value": value, "n": len(group),
                         "mean_reward": float(group["reward"].mean()),
                         "best_reward": float(group["reward"].max()), "top_n": top_n,
                         "lift": (top_n / n_top) / (len(group) / len(ranked))})
    return pd.DataFrame(rows, columns=columns)


def decision_summary(stats: pd.DataFrame) -> pd.DataFrame:
    """One row per decision: the value with the highest mean reward, and the runner-up."""
    rows = []
    for decision, group in stats.groupby("decision", sort=False):
        group = group.sort_values(["mean_reward", "n"], ascending=False, kind="stable")
        best = group.iloc[0]
        second = group.iloc[1] if len(group) > 1 else None
        rows.append({"decision": decision, "best_value": best["value"],
                     "mean_reward": best["mean_reward"], "n": best["n"],
                     "top_n": best["top_n"], "lift": best["lift"],
                     "runner_up": None if second is None else second["value"],
                     "runner_up_mean": np.nan if second is None else second["mean_reward"]})
    return pd.DataFrame(rows, columns=["decision", "best_value", "mean_reward", "n", "top_n",
                                       "lift", "runner_up", "runner_up_mean"])


@dataclass
class Analysis:
    """Everything ``nas analyze`` reports about one run (see :func:`analyze`)."""

    name: str
    path: str
    reward: RewardConfig | None
    counts: dict[str, int]
    ranked: pd.DataFrame
    top: pd.DataFrame
    front_latency: pd.DataFrame
    front_macs: pd.DataFrame
    progress: pd.DataFrame
    failures: pd.DataFrame
    decisions: pd.DataFrame
    decision_summary: pd.DataFrame
    config: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    warm_start: pd.DataFrame = field(default_factory=pd.DataFrame)

    def tables(self) -> dict[str, pd.DataFrame]:
        """The report's tables by name (``top``, ``pareto_latency``, ...; ``warm_start`` only
        for a warm-started run)."""
        tables = {"top": self.top, "pareto_latency": self.front_latency,
                  "pareto_macs": self.front_macs, "progress": self.progress,
                  "failures": self.failures, "decisions": self.decision_summary,
                  "decision_values": self.decisions}
        if not self.warm_start.empty:
            tables["warm_start"] = self.warm_start
        return tables

    @property
    def chosen(self) -> dict[str, Any] | None:
        """The rank-1 trial's row (None when no trial is complete)."""
        return None if self.ranked.empty else self.ranked.iloc[0].to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready data (NaN becomes None)."""
        return {"run": self.name, "path": self.path,
                "reward": None if self.reward is None else self.reward.to_dict(),
                "counts": self.counts, "warnings": list(self.warnings),
                **{name: records(table) for name, table in self.tables().items()}}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with Python scalars; NaN becomes None."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, np.generic):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            clean[str(key)] = value
        out.append(clean)
    return out


def analyze(frame: pd.DataFrame, config: Mapping[str, Any], *, name: str = "run",
            path: str = "", k: int = 10, reward: RewardConfig | None = None) -> Analysis:
    """All tables of one run; ``reward``: the settings to rank with (:func:`reward_settings`)."""
    from nas.analysis.conditions import chance_warnings, latency_warnings

    counts, failures = failure_summary(frame)
    stats = decision_stats(frame, reward)
    top = top_k(frame, k, reward)
    return Analysis(
        name=name, path=path, reward=reward, counts=counts,
        warnings=latency_warnings(frame, top) + chance_warnings(frame, top),
        ranked=rank_trials(frame, reward), top=top,
        front_latency=pareto_front(frame, "latency_ms", reward),
        front_macs=pareto_front(frame, "macs", reward),
        progress=progress(frame, reward), failures=failures, decisions=stats,
        decision_summary=decision_summary(stats), config=dict(config),
        warm_start=warm_children(frame, reward))


def warm_children(frame: pd.DataFrame, reward: RewardConfig | None) -> pd.DataFrame:
    """The children a controller took from a warm-start source's knowledge (their records'
    ``origin`` is ``warm-start``), by trial id, with their architecture's rank in the run
    (:func:`rank_archs`); empty for a cold run."""
    if "origin" not in frame or frame.empty:
        return pd.DataFrame(columns=WARM_COLUMNS)
    warm = frame[frame["origin"] == "warm-start"]
    if warm.empty:
        return pd.DataFrame(columns=WARM_COLUMNS)
    ranked = rank_archs(frame, reward)
    ranks = dict(zip(ranked["arch_key"], ranked["rank"], strict=True)) if len(ranked) else {}
    scored = rank_trials(frame, reward, scored_only=False).set_index("trial_id")
    out = warm[["trial_id", "status", "arch_key"]].copy()
    out["rank"] = [ranks.get(k) for k in out["arch_key"]]
    for col in ("reward", "accuracy"):
        out[col] = [scored[col].get(t) if col in scored else np.nan for t in out["trial_id"]]
    return _view(out.sort_values("trial_id"), WARM_COLUMNS)

