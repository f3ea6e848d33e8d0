"""What the experiment trackers share: metric name prefixes, flattening, a record's history."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nas.records import TrialRecord

__all__ = ["EPOCH", "FINAL", "flatten", "numbers", "plain", "first_line", "history"]

EPOCH, FINAL = "epoch/", "final/"  # metric name prefixes, the same in every tracker


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``search.trials``); lists and other objects as JSON text."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, path + "."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[path] = value
        else:
            out[path] = json.dumps(value, default=str)
    return out


def numbers(data: Mapping[str, Any]) -> dict[str, float]:
    """The numeric leaves of ``data`` as floats (dotted keys; booleans and lists left out)."""
    return {key: float(value) for key, value in flatten(data).items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)}


def plain(value: Any) -> Any:
    """A hyperparameter value: a number, a string or a boolean (None becomes ``"null"``)."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, default=str)


def first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def history(record: TrialRecord) -> list[tuple[int, Mapping[str, Any]]]:
    """``(epoch, metrics)`` of the record's ``train.history`` (malformed entries skipped)."""
    train = record.metrics.get("train")
    history = train.get("history") if isinstance(train, Mapping) else None
    return [(entry["epoch"], entry) for entry in (history if isinstance(history, list) else ())
            if isinstance(entry, Mapping) and type(entry.get("epoch")) is int]
