"""The dashboard's payload: one run as plain JSON data, from its analysis and its trial records.

:func:`build_payload` takes an :class:`nas.analysis.analyze.Analysis` (read through its attributes
only, so that this module sits below :mod:`nas.analysis`, whose ``report.html`` inlines the
payload) and the run's :class:`nas.records.TrialRecord` objects (for the per-epoch histories the
trials DataFrame leaves out). Rewards and ranks are the analysis' own, recomputed from the raw
metrics under the run's reward settings. Every number is a finite Python number or None.

Keys: ``schema``; ``run`` (name, path, state from ``run.json``, target trials, ``done``,
``complete``, ``failed``, ``pruned``, space, controller, reward, the best trial); ``decisions``
(labels in the space's order); ``trials`` (one entry per finished trial, by id: decisions, raw
metrics, reward, rank, status, error, history; ``latency_ms`` is the final, re-measured latency
where there is one, as the reward and the front use, with ``latency_source`` ``final`` and the
search's number in ``latency_search_ms``, else the search's, ``latency_source`` ``search``);
``front`` (ids on the accuracy-latency front); ``importance`` (per decision: the spread of mean
reward over its values, largest first); ``progress`` (best-so-far reward per finished trial);
``has_history``; ``stamp``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from nas.records import TrialStatus

__all__ = ["build_payload", "plain", "trial_entry", "importance", "SCHEMA", "METRICS"]

SCHEMA = 1
METRICS = ("accuracy", "latency_ms", "latency_spread", "params", "macs")
HISTORY_KEYS = ("epoch", "val_accuracy", "train_loss", "lr", "elapsed_s")


def plain(value: Any) -> Any:
    """A JSON-safe scalar: numpy scalars unwrapped, NaN and infinities as None, others as text."""
    if value is not None and not isinstance(value, str | int | float | bool):
        item = getattr(value, "item", None)
        value = item() if callable(item) else str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


def _rows(frame: Any) -> list[dict[str, Any]]:
    return [] if frame is None or len(frame) == 0 else frame.to_dict(orient="records")


def _first_line(text: Any) -> str | None:
    return str(text).splitlines()[0] if isinstance(text, str) and text.strip() else None


def _history(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    train = metrics.get("train")
    history = train.get("history") if isinstance(train, Mapping) else None
    if not isinstance(history, list):
        return []
    return [{k: plain(h[k]) for k in HISTORY_KEYS if k in h}
            for h in history if isinstance(h, Mapping)]


def _latency(metrics: Mapping[str, Any], final: Mapping[str, Any] | None) -> dict[str, Any]:
    """The latency a trial shows: the final (re-measured) one where there is one, with the
    search's beside it, and which of the two it is (``latency_source``)."""
    if final is None:
        source = "search" if plain(metrics.get("latency_ms")) is not None else None
        return {"latency_source": source}
    return {"latency_ms": plain(final.get("latency_ms")),
            "latency_spread": plain(final.get("latency_spread")), "latency_source": "final",
            "latency_search_ms": plain(metrics.get("latency_ms"))}


def trial_entry(record: Mapping[str, Any], scores: Mapping[int, tuple[int, Any]],
                finals: Mapping[int, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """One trial of the payload from a record's ``to_dict()``; ``scores``: id -> (rank, reward);
    ``finals``: id -> the final latency of a re-measured trial (the one its reward is from)."""
    metrics = record.get("metrics") or {}
    rank, reward = scores.get(int(record["trial_id"]), (None, None))
    return {"id": int(record["trial_id"]), "key": record.get("arch_key"),
            "status": str(record.get("status")), "error": _first_line(record.get("error")),
            "decisions": {str(k): plain(v) for k, v in (record.get("arch") or {}).items()},
            **{m: plain(metrics.get(m)) for m in METRICS},
            **_latency(metrics, (finals or {}).get(int(record["trial_id"]))),
            "reward": plain(reward), "stored_reward": plain(record.get("reward")), "rank": rank,
            "step": plain(record.get("step")), "node": (record.get("node") or {}).get("hostname"),
            "started_at": plain(record.get("started_at")),
            "finished_at": plain(record.get("finished_at")), "history": _history(metrics),
            "origin": record.get("origin") if isinstance(record.get("origin"), str) else None}


def _finals(analysis: Any) -> dict[int, dict[str, Any]]:
    """Trial id -> the final latency of every ranked trial whose latency was re-measured."""
    return {int(row["trial_id"]): {k: row.get(k) for k in ("latency_ms", "latency_spread")}
            for row in _rows(analysis.ranked) if plain(row.get("latency_final")) is True}


def _from_analysis(analysis: Any, scores: Mapping[int, tuple[int, Any]]) -> list[dict[str, Any]]:
    """Trials without records: the ranked rows, then the status of every other finished trial."""
    trials, finals = {}, _finals(analysis)
    for row in _rows(analysis.ranked):
        record = {"trial_id": row["trial_id"], "arch_key": row.get("arch_key"),
                  "status": TrialStatus.COMPLETE.value, "step": row.get("step"),
                  "arch": {k[len("arch."):]: v for k, v in row.items() if k.startswith("arch.")},
                  "metrics": {m: row.get(m) for m in METRICS}}
        if plain(row.get("latency_final")) is True:  # the row holds the final latency already
            record["metrics"]["latency_ms"] = row.get("latency_search_ms")
        trials[int(row["trial_id"])] = trial_entry(record, scores, finals)
    for row in _rows(analysis.progress):
        tid = int(row["trial_id"])
        trials.setdefault(tid, trial_entry({"trial_id": tid, "status": row.get("status")}, {}))
    return list(trials.values())


def importance(stats: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per decision, from ``decision_stats`` rows: its values' mean rewards and their spread."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in stats:
        groups.setdefault(str(row["decision"]), []).append(
            {"value": plain(row["value"]), "n": plain(row["n"]),
             "mean_reward": plain(row["mean_reward"]), "lift": plain(row["lift"])})
    out = []
    for decision, values in groups.items():
        means = [v["mean_reward"] for v in values if v["mean_reward"] is not None]
        best = max(values, key=lambda v: -math.inf if v["mean_reward"] is None
                   else v["mean_reward"])
        out.append({"decision": decision, "spread": max(means) - min(means) if means else None,
                    "best_value": best["value"], "values": values})
    return sorted(out, key=lambda d: -(d["spread"] or 0.0))


def _summary(analysis: Any, meta: Mapping[str, Any], trials: list[dict[str, Any]]
             ) -> dict[str, Any]:
    config, chosen, reward = analysis.config or {}, analysis.chosen or {}, analysis.reward
    finished = [t["finished_at"] for t in trials if t["finished_at"] is not None]
    latency_target = reward is not None and reward.metric == "latency"
    return {"name": analysis.name, "path": analysis.path,
            "state": str(meta.get("status") or "unknown"),
            "target": plain((config.get("search") or {}).get("trials")),
            "done": len(trials), **{k: int(v) for k, v in analysis.counts.items()},
            "space": (config.get("space") or {}).get("name"),
            "controller": (config.get("controller") or {}).get("name"),
            "reward": reward.describe() if reward is not None else "stored reward",
            "latency_target": plain(reward.target) if latency_target else None,
            "best": {**{k: plain(chosen[k]) for k in ("trial_id", "reward", "accuracy",
                                                       "latency_ms") if k in chosen},
                     "latency_source": "final" if plain(chosen.get("latency_final")) is True
                     else "search"} if chosen else None,
            "last_finished_at": max(finished) if finished else None,
            "warm_start": _warm_sources(meta),
            "warm_children": sum(1 for t in trials if t.get("origin") == "warm-start")}


def _warm_sources(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The warm-start sources ``run.json`` records (name, records, best), plain and short."""
    items = meta.get("warm_start")
    if not isinstance(items, list):
        return []
    return [{"name": str(s.get("name"))[:200], "records": plain(s.get("records")),
             "best": plain(s.get("best")), "weight": plain(s.get("weight"))}
            for s in items if isinstance(s, Mapping)]


def _labels(trials: list[dict[str, Any]]) -> list[str]:
    labels: dict[str, None] = {}
    for trial in trials:
        labels.update(dict.fromkeys(trial["decisions"]))
    return list(labels)


def build_payload(analysis: Any, records: Iterable[Any] | None = None,
                  meta: Mapping[str, Any] | None = None, *, stamp: str | None = None
                  ) -> dict[str, Any]:
    """The payload of one run (see the module docstring).

    Args:
        analysis: the run's :class:`nas.analysis.analyze.Analysis`.
        records: its trial records (``TrialRecord`` or their dicts); without them the trials come
            from the analysis' tables, with no decisions for failed trials and no histories.
        meta: the run's ``run.json`` (its ``status`` is shown as the state).
        stamp: a version of the files read, so that a page redraws only when it changes.
    """
    scores = {int(row["trial_id"]): (int(row["rank"]), row["reward"])
              for row in _rows(analysis.ranked)}
    if records is None:
        trials = _from_analysis(analysis, scores)
    else:
        finals = _finals(analysis)
        trials = [trial_entry(r.to_dict() if hasattr(r, "to_dict") else r, scores, finals)
                  for r in records]
    trials.sort(key=lambda t: t["id"])
    return {"schema": SCHEMA, "run": _summary(analysis, meta or {}, trials),
            "decisions": _labels(trials), "trials": trials,
            "front": [int(row["trial_id"]) for row in _rows(analysis.front_latency)],
            "importance": importance(_rows(analysis.decisions)),
            "progress": [{"n": int(r["n"]), "trial_id": plain(r["trial_id"]),
                          "best_reward": plain(r["best_reward"])}
                         for r in _rows(analysis.progress)],
            "has_history": records is not None, "generated_at": time.time(), "stamp": stamp}
