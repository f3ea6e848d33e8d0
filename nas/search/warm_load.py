"""Reading warm-start sources: run folders and CSV tables of the same space, checked like any
run folder (:mod:`nas.readback`) or lookup table (:func:`nas.search.bench.load_table`).

A source entry (``controller.warm_start`` of a config, parsed by
:func:`nas.config.parse_warm_start`) names a path:

* a **run folder** (it holds ``trials.jsonl``): its complete trials, each architecture checked
  against the target's space (a record of another space is named and refused), valued by
  ``metric`` (default ``accuracy``; ``reward`` or any raw metric the records carry), with every
  finite raw metric kept; the folder's ``config.yaml`` must name the same space;
* a **CSV table** (``.csv``): one row per architecture, ``key`` (default ``arch_str``) holding
  the space's canonical strings (as ``nas bench`` reads them) and ``metric`` the value (required);
  rows whose key does not parse or whose value is missing are skipped (counted in the log).

``goal: min`` makes a lower value better (a latency table). Nothing is executed and no name read
from a source is imported: a source only yields architectures and numbers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nas._fs import read_text
from nas.errors import ConfigError, UsageError
from nas.readback import TRIALS, read_trials
from nas.search.bench import load_table
from nas.search.warm import WarmRecord, WarmSource
from nas.space import Space

__all__ = ["load_source", "load_sources"]

log = logging.getLogger(__name__)

CONFIG_CAP = 4 << 20


def load_sources(entries: Sequence[Mapping[str, Any]], space: Space,
                 key: str = "controller.warm_start", space_name: str | None = None
                 ) -> list[WarmSource]:
    """Every entry read (:func:`load_source`); a problem is one ConfigError naming the entry."""
    out = []
    for n, entry in enumerate(entries):
        try:
            out.append(load_source(entry, space, space_name))
        except UsageError as exc:
            raise ConfigError(f"{key}[{n}] ({entry.get('path')}): {exc}") from None
    return out


def load_source(entry: Mapping[str, Any], space: Space, space_name: str | None = None
                ) -> WarmSource:
    """One source (see the module docstring); ``space_name``: the name the target's config
    gives its space (a run folder's config must give the same, or the space's own name).

    Raises:
        UsageError: the path is neither a run folder nor a CSV file, a line or row is malformed,
            the metric is absent, another space's run, or no usable record.
    """
    path = Path(entry["path"])
    weight = float(entry.get("weight", 1.0))
    sign = -1.0 if entry.get("goal", "max") == "min" else 1.0
    if path.is_dir():
        records, metric = _from_run(path, space, entry.get("metric") or "accuracy", sign,
                                    {space.name, space_name or space.name})
    elif path.is_file() and path.suffix.lower() == ".csv":
        if not entry.get("metric"):
            raise UsageError("a table needs metric: the column to learn from")
        records, metric = _from_table(path, space, entry.get("key") or "arch_str",
                                      entry["metric"], sign)
    elif not path.exists():
        raise UsageError(f"no such run folder or table: {path}")
    else:
        raise UsageError(f"{path.name}: not a run folder (with {TRIALS}) nor a .csv table")
    if not records:
        raise UsageError(f"no usable record (complete, with a finite {metric!r})")
    return WarmSource(str(path), tuple(records), weight, metric)


def _from_run(path: Path, space: Space, metric: str, sign: float, names: set[str]
              ) -> tuple[list[WarmRecord], str]:
    if not (path / TRIALS).is_file():
        raise UsageError(f"{path}: no {TRIALS}; not a run folder")
    _check_run_space(path, space, names)
    records = []
    for rec in read_trials(path):
        if not rec.complete:
            continue
        value = rec.reward if metric == "reward" else rec.metrics.get(metric)
        if not _finite(value):
            continue
        try:
            arch = space.validate(rec.arch)
        except UsageError as exc:
            raise UsageError(f"{path / TRIALS}: trial {rec.trial_id}: {exc}") from None
        metrics = {k: float(v) for k, v in rec.metrics.items() if _finite(v)}
        if _finite(rec.reward):
            metrics["reward"] = float(rec.reward)
        records.append(WarmRecord(arch.indices, sign * float(value), metrics))
    return records, metric


def _check_run_space(path: Path, space: Space, names: set[str]) -> None:
    """The run's ``config.yaml`` names the target's space (only that name is read, and
    never imported)."""
    config = path / "config.yaml"
    try:
        data = yaml.safe_load(read_text(config, "config", cap=CONFIG_CAP))
    except FileNotFoundError:
        return  # a bare trials.jsonl folder: its architectures are checked one by one
    except (yaml.YAMLError, RecursionError):
        raise UsageError(f"{config}: not a readable config") from None
    name = (data.get("space") or {}).get("name") if isinstance(data, Mapping) else None
    if not isinstance(name, str) or name not in names:
        raise UsageError(f"{config}: a search of space {name!r:.80}, not "
                         f"{' or '.join(sorted(map(repr, names)))}")


def _from_table(path: Path, space: Space, key: str, metric: str, sign: float
                ) -> tuple[list[WarmRecord], str]:
    import pandas as pd

    frame = load_table(path, key=key, metric=metric)
    values = pd.to_numeric(frame[metric], errors="coerce").astype(float)
    records, skipped = [], 0
    for text, value in zip(frame[key].astype(str), values.tolist(), strict=True):
        if not _finite(value):
            skipped += 1
            continue
        try:
            arch = space.from_string(text)
        except (UsageError, ValueError, KeyError):
            skipped += 1
            continue
        records.append(WarmRecord(arch.indices, sign * float(value), {metric: float(value)}))
    if skipped:
        log.info("%s: %d rows skipped (key not of space %r, or %s missing)", path, skipped,
                 space.name, metric)
    if not records and len(frame):
        raise UsageError(f"{path.name}: no row's {key!r} parses as an architecture of space "
                         f"{space.name!r} (first: {str(frame[key].iloc[0])!r:.60})")
    return records, metric


def _finite(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
