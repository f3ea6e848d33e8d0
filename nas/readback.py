"""Reading a run folder's append-only files back: every line checked, nothing trusted.

``trials.jsonl`` and ``remeasured.jsonl`` are read as bytes (regular files only, size-capped)
and decoded line by line, so a bad byte, a line that is not JSON, a record of the wrong shape or
a number out of range (:func:`nas.records.number_problem`) is one :class:`UsageError` naming the
file and the line. Only a torn last line, what a crash mid-write leaves, is skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from nas._fs import read_bytes
from nas.errors import UsageError
from nas.records import TrialRecord, number_problem

__all__ = ["read_trials", "read_final", "TRIALS", "JSONL_CAP"]

log = logging.getLogger("nas.results")

TRIALS = "trials.jsonl"
JSONL_CAP = 4 << 30  # trials.jsonl of a very long search is megabytes


def _jsonl_lines(path: Path) -> list[str]:
    """The lines of an append-only JSON-lines file (none when it does not exist), each decoded
    as UTF-8 on its own so that a bad byte names its line."""
    try:
        data = read_bytes(path, "run file", cap=JSONL_CAP)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            if number == len(lines):  # a torn last line: left to the JSON check
                out.append(raw.decode("utf-8", "replace"))
                continue
            raise UsageError(f"{path}: line {number} is not UTF-8 text") from None
    return out


def _line_json(line: str, path: Path, number: int) -> Any:
    """One line's JSON value (``json.JSONDecodeError`` for a torn or garbled line)."""
    try:
        return json.loads(line)
    except RecursionError:
        raise UsageError(f"{path}: line {number} is nested too deeply to be ours") from None


def read_trials(path: str | Path) -> list[TrialRecord]:
    """Records of ``trials.jsonl`` (a file or a run folder), each checked.

    A torn last line (a crash mid-write) is skipped; any other bad line (not JSON, not an object,
    a missing key, an unknown status, a trial id seen before) raises :class:`UsageError` naming
    the file and the line.
    """
    path = Path(path)
    if path.is_dir() and path.name != TRIALS:
        path = path / TRIALS
    lines = _jsonl_lines(path)
    records: list[TrialRecord] = []
    seen: dict[int, int] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            data = _line_json(line, path, i + 1)
        except json.JSONDecodeError:
            if i == len(lines) - 1:  # the unterminated last line: torn by a crash
                log.warning("%s: skipping a torn last line", path)
                continue
            raise UsageError(f"{path}: line {i + 1} is not valid JSON") from None
        record = TrialRecord.from_dict(data, f"{path}: line {i + 1}")
        first = seen.setdefault(record.trial_id, i + 1)
        if first != i + 1:
            raise UsageError(f"{path}: line {i + 1} repeats trial_id {record.trial_id} of line "
                             f"{first}; remove one of them")
        records.append(record)
    return records


def _final_entry(entry: Any, where: str) -> dict[str, Any]:
    """A checked ``remeasured.jsonl`` entry: an object with an ``arch_key`` and a finite,
    positive ``latency_ms`` (and sane percentiles)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("arch_key"), str) or \
            entry.get("latency_ms") is None:
        raise UsageError(f"{where}: expected an object with arch_key and latency_ms")
    for key in ("latency_ms", "latency_p10_ms", "latency_p90_ms", "latency_spread"):
        problem = number_problem(key, entry.get(key))
        if problem:
            raise UsageError(f"{where}: {problem}")
    return entry


def read_final(path: Path) -> dict[str, dict[str, Any]]:
    """``remeasured.jsonl``: architecture key -> its latest final latency (empty when the file
    does not exist); a torn last line is skipped, any other bad line names the file and line."""
    out: dict[str, dict[str, Any]] = {}
    lines = _jsonl_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, start=1):
        try:
            entry = _line_json(line, path, number)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # a torn last line (a crash mid-write)
                break
            raise UsageError(f"{path}:{number}: not JSON ({exc.msg})") from None
        checked = _final_entry(entry, f"{path}:{number}")
        out[checked["arch_key"]] = checked
    return out
