"""The one trial record: its status enum and its shape, from the evaluator to ``trials.jsonl``.

An evaluation (:func:`nas.evaluation.evaluate.evaluate_arch`) returns a flat result whose
``status`` is a
:class:`TrialStatus` and whose ``error`` says why a child failed. The runner turns it into a
:class:`TrialRecord` (ids, architecture, raw metrics, reward, where and when it ran), which the
run folder stores as one JSON line (:meth:`TrialRecord.to_dict`) and reads back checked
(:meth:`TrialRecord.from_dict`); the analysis DataFrame has one row per record. Statuses are
compared through the enum only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from nas.errors import UsageError

__all__ = ["TrialStatus", "TrialRecord", "STATUSES", "best_of", "budgeted", "metric_problem",
           "number_problem", "chance_bound", "at_chance"]


class TrialStatus(str, Enum):
    """How a trial ended. The value is what ``trials.jsonl`` stores."""

    COMPLETE = "complete"  # trained and scored
    FAILED = "failed"  # an exception, a NaN loss, a time budget, a dead worker
    PRUNED = "pruned"  # stopped early by the scheduler (ASHA)
    REJECTED = "rejected"  # over a hard constraint, never trained (nas.constraints)

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any, where: str = "status") -> TrialStatus:
        """The status named ``value``; a UsageError naming ``where`` and the allowed ones."""
        try:
            return cls(value)
        except ValueError:
            raise UsageError(f"{where}: status {value!r}; allowed: {', '.join(STATUSES)}") from None


STATUSES = tuple(s.value for s in TrialStatus)

_TYPES: dict[str, type | tuple[type, ...]] = {
    "trial_id": int, "arch_key": str, "arch": dict, "metrics": dict}
# optional fields: what each may hold besides null
_OPTIONAL: dict[str, tuple[str, tuple[type, ...]]] = {
    "error": ("a string", (str,)), "tune_trial_id": ("a string", (str,)),
    "latency_by": ("a string", (str,)), "origin": ("a string", (str,)),
    "timings": ("an object", (dict,)),
    "device": ("an object", (dict,)), "node": ("an object", (dict,)),
    "step": ("an integer", (int,)), "reward": ("a number", (int, float)),
    "started_at": ("a number", (int, float)), "finished_at": ("a number", (int, float))}


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def number_problem(key: str, value: Any) -> str | None:
    """What is wrong with the raw metric ``key`` (None: nothing, or not a checked metric).

    Accuracy is a fraction in [0, 1]; latencies are finite and > 0 milliseconds (their
    percentiles and spread >= 0); params and MACs (and their ``zc_`` copies) are non-negative
    integers; a zero-cost score (``zc_score``, :mod:`nas.evaluation.zero_cost_evaluator`) is a
    finite number >= 0. Null is allowed (a failed child has no accuracy).
    """
    if value is None:
        return None
    if key in ("accuracy", "chance_accuracy"):
        ok, allowed = _is_number(value) and 0 <= value <= 1, "a number in [0, 1]"
    elif key == "latency_ms":
        ok, allowed = _is_number(value) and value > 0, "a finite number > 0"
    elif key in ("latency_p10_ms", "latency_p90_ms", "latency_spread"):
        ok, allowed = _is_number(value) and value >= 0, "a finite number >= 0"
    elif key == "zc_score":
        ok, allowed = _is_number(value) and value >= 0, "a finite number >= 0"
    elif key in ("params", "macs", "zc_params", "zc_macs"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        allowed = "a non-negative integer"
    else:
        return None
    return None if ok else f"{key}={value!r:.40}: must be {allowed}"


def metric_problem(metrics: Mapping[str, Any]) -> str | None:
    """The first problem of a record's raw metrics (see :func:`number_problem`), or None."""
    for key, value in metrics.items():
        problem = number_problem(key, value)
        if problem:
            return f"metrics.{problem}"
    return None


def _check_optional(data: Mapping[str, Any], where: str) -> None:
    for key, (words, kinds) in _OPTIONAL.items():
        value = data.get(key)
        if value is None:
            continue
        bad = not isinstance(value, kinds) or isinstance(value, bool)
        if not bad and kinds[0] in (int, float):
            bad = not math.isfinite(value)
        if bad:
            raise UsageError(f"{where}: {key} {value!r:.40} is not {words}")


@dataclass
class TrialRecord:
    """One finished trial, as stored in ``trials.jsonl`` (one JSON object per line).

    Attributes:
        trial_id: the controller's proposal id (unique in a run).
        arch_key, arch: the architecture's canonical key and its decisions.
        status: how it ended; ``error`` says why when it failed.
        metrics: raw metrics (accuracy, latency_ms and its spread, params, macs, ...).
        reward: MnasNet's reward from the raw metrics (None unless complete).
        step: the controller's tell count when it was told (1-based).
        tune_trial_id, timings, device, node, latency_by, started_at, finished_at: provenance.
        origin: ``"warm-start"`` for a child the controller took from a warm-start source's
            knowledge (:class:`nas.search.controller.Proposal`), else None.
    """

    trial_id: int
    arch_key: str
    arch: dict[str, Any]
    status: TrialStatus
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    reward: float | None = None
    step: int | None = None
    tune_trial_id: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    node: dict[str, Any] = field(default_factory=dict)
    latency_by: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    origin: str | None = None

    @property
    def complete(self) -> bool:
        return self.status is TrialStatus.COMPLETE

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the JSON line (the status as its string value)."""
        out = asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> TrialRecord:
        """A checked record; a UsageError naming ``where`` for anything malformed."""
        if not isinstance(data, dict):
            raise UsageError(f"{where} is {type(data).__name__}, not a trial record "
                             "(a JSON object)")
        for key in ("trial_id", "status", "arch_key", "arch", "metrics"):
            if key not in data:
                raise UsageError(f"{where}: {key} missing")
        for key, kind in _TYPES.items():
            value = data[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise UsageError(f"{where}: {key} {value!r} is not a {kind.__name__}")
        _check_optional(data, where)
        problem = metric_problem(data["metrics"])
        if problem:
            raise UsageError(f"{where}: {problem}")
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = TrialStatus.parse(data["status"], where)
        for key in ("timings", "device", "node"):
            values[key] = dict(values.get(key) or {})
        return cls(**values)


def chance_bound(num_classes: int, n_val: int) -> float | None:
    """The validation accuracy at or under which a child learned nothing: chance (1/K) plus two
    standard errors of guessing on ``n_val`` images (None without two classes and an image)."""
    if num_classes < 2 or n_val < 1:
        return None
    chance = 1.0 / num_classes
    return chance + 2.0 * math.sqrt(chance * (1.0 - chance) / n_val)


def at_chance(metrics: Mapping[str, Any]) -> bool:
    """Whether a record's accuracy is at or under its ``chance_accuracy`` (see
    :func:`chance_bound`; the evaluation stores it with every child)."""
    bound, accuracy = metrics.get("chance_accuracy"), metrics.get("accuracy")
    return _is_number(bound) and _is_number(accuracy) and accuracy <= bound


def budgeted(records: list[TrialRecord]) -> int:
    """The trials that count against ``search.trials``: every one but the rejected (never
    trained) children."""
    return sum(r.status is not TrialStatus.REJECTED for r in records)


def best_of(records: list[TrialRecord]) -> dict[str, Any] | None:
    """Reward, id, accuracy and latency of the best complete, scored record (None: none)."""
    scored = [r for r in records if r.complete and r.reward is not None]
    if not scored:
        return None
    top = max(scored, key=lambda r: r.reward)
    return {"reward": top.reward, "trial_id": top.trial_id, "arch_key": top.arch_key,
            "accuracy": top.metrics.get("accuracy"), "latency_ms": top.metrics.get("latency_ms"),
            "at_chance": at_chance(top.metrics)}
