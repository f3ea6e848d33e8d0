"""Warnings about the conditions latencies were measured under (``latency_conditions``).

A latency measured while other children trained on the same node is slower and noisier, and a
ranking that rests on such measurements can be reordered by it. :func:`latency_warnings` says so
for the trials a ranking puts on top.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["latency_warnings", "latency_condition", "chance_warnings", "BUSY", "LATENCY_NOTE"]

BUSY = "latency_conditions.training_children"
LOAD = "latency_conditions.load_1m"


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


LATENCY_NOTE = ("latency_cond: final = re-measured after the search (RUN/remeasured.jsonl); "
                "search = as measured during it (busy N: N other children trained meanwhile)")


def latency_condition(rows: pd.DataFrame) -> pd.Series:
    """Per row, which latency it shows and how it was taken: ``final`` (re-measured at the end),
    or the search's: ``search, quiet`` (in a quiet window), ``search, busy N`` (N other children
    trained meanwhile), ``search, idle`` or ``search`` (conditions not recorded); ``-`` where the
    row has no latency (``latency.mode: skip``)."""
    def one(row: pd.Series) -> str:
        if "latency_ms" in row and _number(row.get("latency_ms")) is None:
            return "-"
        if bool(row.get("latency_final", False) is True):
            return "final"
        busy = _number(row.get(BUSY))
        if busy is not None and busy > 0:
            return f"search, busy {int(busy)}"
        if row.get("latency_conditions.quiet") is True:
            return "search, quiet"
        return "search, idle" if busy == 0 else "search"

    return rows.apply(one, axis=1) if len(rows) else pd.Series([], dtype=object)


def latency_warnings(frame: pd.DataFrame, top: pd.DataFrame) -> list[str]:
    """One line when some of ``top``'s trials had their latency measured while other children
    trained on their node (the count and the worst case); no line when none did, or the run
    predates the record."""
    if BUSY not in frame or "trial_id" not in top or top.empty:
        return []
    rows = frame[frame["trial_id"].isin(top["trial_id"])]
    busy = [b for b in (_number(v) for v in rows[BUSY]) if b is not None]
    contended = [b for b in busy if b > 0]
    if not contended:
        return []
    loads = [x for x in (_number(v) for v in rows.get(LOAD, [])) if x is not None]
    worst = f"up to {int(max(contended))} training at once"
    if loads:
        worst += f", load average up to {max(loads):.1f}"
    return [f"{len(contended)} of the top {len(top)} latencies were measured while other children "
            f"trained on the same node ({worst}): their ranking may be reordered by contention"]


def chance_warnings(frame: pd.DataFrame, top: pd.DataFrame) -> list[str]:
    """One line when complete children scored at chance (accuracy at or under the bound their
    evaluation stored, ``chance_accuracy``): they learned nothing, and ranking them ranks noise.
    No line when none did, or the run predates the record."""
    if "chance_accuracy" not in frame or "accuracy" not in frame or "status" not in frame:
        return []
    done = frame[frame["status"] == "complete"]
    bound = pd.to_numeric(done["chance_accuracy"], errors="coerce")
    accuracy = pd.to_numeric(done["accuracy"], errors="coerce")
    chance = done[(accuracy <= bound) & bound.notna()]
    if chance.empty:
        return []
    in_top = int(chance["trial_id"].isin(top.get("trial_id", [])).sum())
    return [f"{len(chance)} of {len(done)} complete children scored at chance (accuracy <= "
            f"{float(bound.max()):.4f}), {in_top} of them in the top {len(top)}: they learned "
            "nothing, so their ranking is noise; train longer or check evaluator.lr, "
            "evaluator.batch_size and the data"]
