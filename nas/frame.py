"""The trials DataFrame: one row per trial, with the finalists' re-measured latencies applied.

``remeasured.jsonl`` (see :mod:`nas.latency.final`) holds the final latencies of the finalists,
the latest per architecture winning. :func:`trials_frame` applies them: ``latency_ms`` (and its
p10/p90, spread, n and conditions) become the final values (missing where the final
measurement has none: never the search's beside a final median), ``latency_search_ms`` keeps the
number the search measured, and ``latency_final`` says which rows were re-measured. Rankings,
fronts, rewards (recomputed from ``latency_ms``) and exports read this frame, so they all use the
final number, and the records in ``trials.jsonl`` keep the search's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from nas.records import TrialRecord

__all__ = ["trials_frame", "FINAL_COLUMNS"]

FINAL_COLUMNS = ("latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread", "latency_n")


def _flat(prefix: str, obj: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, Mapping):
            yield from _flat(f"{prefix}{key}.", value)
        elif not isinstance(value, list):
            yield f"{prefix}{key}", value


def _apply_final(row: dict[str, Any], final: Mapping[str, Any]) -> None:
    """Overlay one architecture's final latency on its trial's row."""
    row["latency_search_ms"] = row.get("latency_ms")
    for column in FINAL_COLUMNS:  # all from the final measurement: none of the search's kept
        row[column] = final.get(column)
    for key in [k for k in row if k.startswith("latency_conditions.")]:
        row["latency_search_conditions." + key.split(".", 1)[1]] = row.pop(key)
    row.update(dict(_flat("latency_conditions.", final.get("conditions") or {})))
    row["latency_final"] = True
    row["latency_final_passes"] = final.get("passes")


def trials_frame(records: list[TrialRecord],
                 final: Mapping[str, Mapping[str, Any]] | None = None) -> Any:
    """A pandas DataFrame, one row per trial: ids, status, reward, raw metrics, decisions.

    Columns: ``trial_id``, ``status``, ``error``, ``reward``, ``arch_key``, the raw metrics
    (``accuracy``, ``latency_ms``, ``latency_p10_ms``, ``latency_p90_ms``, ``params``, ``macs``,
    ...), ``time.<phase>`` timings, ``node.<field>``, ``device.<field>`` and one ``arch.<label>``
    column per decision. ``final`` (architecture key -> final latency, e.g.
    :meth:`nas.results.RunDir.final_latencies`) replaces the latencies of the re-measured
    architectures' complete trials (module docstring); ``latency_final`` is False elsewhere.
    """
    import pandas as pd

    rows = []
    for record in records:
        rec = record.to_dict()
        row: dict[str, Any] = {k: v for k, v in rec.items()
                               if not isinstance(v, Mapping | list)}
        row.update(dict(_flat("", rec.get("metrics") or {})))
        for section, prefix in (("timings", "time."), ("node", "node."), ("device", "device."),
                                ("arch", "arch.")):
            row.update(dict(_flat(prefix, rec.get(section) or {})))
        if final and record.complete and record.arch_key in final:
            _apply_final(row, final[record.arch_key])
        elif final:
            row["latency_final"] = False
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "trial_id" in frame:
        frame = frame.sort_values("trial_id", kind="stable").reset_index(drop=True)
    return frame
