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

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from nas.errors import UsageError

__all__ = ["TrialStatus", "TrialRecord", "STATUSES", "best_of", "budgeted"]


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
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        values["status"] = TrialStatus.parse(data["status"], where)
        for key in ("timings", "device", "node"):
            values[key] = dict(values.get(key) or {})
        return cls(**values)


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
            "accuracy": top.metrics.get("accuracy"), "latency_ms": top.metrics.get("latency_ms")}
