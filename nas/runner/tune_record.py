"""A finished Tune trial (or one child of a batch) as a :class:`nas.records.TrialRecord`.

The trainable (:mod:`nas.runner.trainable`) reports a child's flat result as JSON
(``record_json``); :func:`make_record` checks it and keeps what ``trials.jsonl`` stores: a NaN
or impossible accuracy fails the child, a result without ``final`` is a child stopped by ASHA
(``PRUNED``), a worker that died is a failed child.
"""

from __future__ import annotations

import json
import math
from typing import Any

from nas.records import TrialRecord, TrialStatus, metric_problem, number_problem
from nas.search.controller import Proposal

__all__ = ["make_record", "RAW_METRICS", "finite"]

RAW_METRICS = ("accuracy", "latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread",
               "latency_n", "params", "macs", "chance_accuracy")
SCORE_PREFIXES = ("zc_",)  # the zero-cost evaluator's proxies and its score (zc_score)


def make_record(proposal: Proposal, tune_id: str, result: dict[str, Any] | None, error: bool,
                ) -> TrialRecord:
    """The ``trials.jsonl`` record of one finished child (``tune_id``: its Tune trial's id)."""
    base = {"trial_id": proposal.id, "tune_trial_id": tune_id, "arch_key": proposal.arch.key,
            "arch": dict(proposal.arch.items()), "origin": proposal.origin}
    result = result or {}
    if error or not result:
        return TrialRecord(**base, status=TrialStatus.FAILED, error="the trial's worker failed "
                           "(see the Tune logs in the run folder's tune/ directory)")
    if not result.get("final"):
        return TrialRecord(**base, status=TrialStatus.PRUNED, metrics={
            "accuracy": result.get("val_accuracy"), "epochs": result.get("epoch")})
    raw = json.loads(result["record_json"])
    metrics = {k: raw.get(k) for k in RAW_METRICS if k in raw}
    metrics.update({k: v for k, v in raw.items() if k.startswith(SCORE_PREFIXES)})
    for extra in ("train", "dataset", "latency_source", "latency_conditions", "constraint",
                  "supernet"):
        if extra in raw:
            metrics[extra] = raw[extra]
    status, reason = TrialStatus.parse(raw.get("status")), raw.get("error")
    problem = metric_problem(metrics)
    score = (raw.get("reward_config") or {}).get("accuracy_key") or "accuracy"
    if status is TrialStatus.COMPLETE and not finite(_nested(metrics, score)):
        status, reason = TrialStatus.FAILED, f"{score} is NaN or missing"
    elif problem and status is TrialStatus.COMPLETE:  # e.g. a custom evaluator's percent
        status, reason = TrialStatus.FAILED, f"the evaluator reported {problem}"
    if problem:  # what is stored always reads back (nas.records checks every number)
        metrics = {k: v for k, v in metrics.items() if number_problem(k, v) is None}
    reward = raw.get("reward") if status is TrialStatus.COMPLETE else None
    keep_error = status in (TrialStatus.FAILED, TrialStatus.REJECTED)
    return TrialRecord(
        **base, status=status, error=reason if keep_error else None,
        metrics=metrics, reward=reward if finite(reward) else None,
        timings=raw.get("timings") or {}, device=raw.get("device") or {},
        node=raw.get("node") or {}, latency_by=raw.get("latency_by"),
        started_at=raw.get("started_at"), finished_at=raw.get("finished_at"))


def _nested(metrics: dict[str, Any], key: str) -> Any:
    """``metrics[key]``, a dotted key reading nested metrics (``supernet.val_likelihood``)."""
    value: Any = metrics
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def finite(x: Any) -> bool:
    """A real number (not a bool), neither NaN nor infinite."""
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
