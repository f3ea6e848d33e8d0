"""Run folders: ``results/<run>/`` and its append-only trials store.

A run folder holds:

- ``config.yaml``: the resolved configuration (written once, at creation);
- ``trials.jsonl``: one JSON line per finished trial, appended and flushed (and fsynced) by the
  driver only; a torn last line (a crash mid-write) is skipped on read;
- ``controller.json`` (+ ``controller.<hash>.pt`` for tensors, weights-only): the state after
  every tell, written atomically;
- ``run.json``: bookkeeping (status, segments, the driver's pid and Ray temp folder);
- ``tune/``: Ray Tune's experiment folders (one per search segment); ``trials.parquet`` at the end.

Nothing here is pickled and nothing read from disk is unpickled.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from nas.errors import UsageError

__all__ = ["RunDir", "Run", "load_run", "read_trials", "trials_frame", "STATUSES"]

log = logging.getLogger(__name__)

STATUSES = ("complete", "failed", "pruned")
TRIALS = "trials.jsonl"
CONFIG = "config.yaml"
CONTROLLER = "controller.json"
META = "run.json"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples lists, keys strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def read_trials(path: str | Path) -> list[dict[str, Any]]:
    """Records of ``trials.jsonl`` (a file or a run folder); a torn last line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / TRIALS
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i >= len(lines) - 2:  # the last (possibly unterminated) line: torn by a crash
                log.warning("%s: skipping a torn last line", path)
                continue
            raise UsageError(f"{path}: line {i + 1} is not valid JSON") from None
    return records


class RunDir:
    """One run folder. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, results_dir: str | Path, name: str, config: Mapping[str, Any]) -> RunDir:
        """Make ``results_dir/name`` (which must not exist) and write ``config.yaml``."""
        path = Path(results_dir) / name
        if path.exists():
            raise UsageError(f"run folder {str(path)!r} exists; continue it with `nas resume "
                             f"{path}` or choose another --name")
        path.mkdir(parents=True)
        run = cls(path)
        _atomic_write(run.config_path, yaml.safe_dump(_clean(config), sort_keys=False))
        run.write_meta({"status": "created", "segments": 0})
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """An existing run folder (it must hold ``config.yaml``)."""
        run = cls(path)
        if not run.config_path.exists():
            raise UsageError(f"{str(path)!r} is not a run folder (no {CONFIG})")
        return run

    # -- paths -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def trials_path(self) -> Path:
        return self.path / TRIALS

    @property
    def controller_path(self) -> Path:
        return self.path / CONTROLLER

    @property
    def tune_dir(self) -> Path:
        return self.path / "tune"

    # -- contents ----------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The resolved configuration."""
        return yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}

    def append_trial(self, record: Mapping[str, Any]) -> None:
        """Append one finished trial (one line, flushed and fsynced)."""
        line = json.dumps(_clean(record), allow_nan=False, separators=(",", ":"))
        with open(self.trials_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def trials(self) -> list[dict[str, Any]]:
        """Finished trial records, in the order they finished."""
        return read_trials(self.trials_path)

    def repair_trials(self) -> int:
        """Drop a torn last line (after a crash) so appends start on a clean line."""
        if not self.trials_path.exists():
            return 0
        text = self.trials_path.read_text(encoding="utf-8")
        if not text or text.endswith("\n"):
            return 0
        keep = text[: text.rfind("\n") + 1]
        _atomic_write(self.trials_path, keep)
        return 1

    def save_controller(self, controller: Any) -> None:
        """The controller state after a tell (JSON + weights-only tensors, atomic)."""
        from nas.controller import save_state

        save_state(controller, self.controller_path)

    def load_controller_state(self) -> dict[str, Any] | None:
        """The saved controller state, or None if none was saved yet."""
        from nas.controller import load_state

        return load_state(self.controller_path) if self.controller_path.exists() else None

    def meta(self) -> dict[str, Any]:
        """``run.json`` contents."""
        path = self.path / META
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def write_meta(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into ``run.json``."""
        meta = {**self.meta(), **_clean(updates)}
        _atomic_write(self.path / META, json.dumps(meta, indent=2))
        return meta

    def write_parquet(self) -> Path | None:
        """``trials.parquet`` from the trials store (None if pyarrow is unavailable)."""
        frame = trials_frame(self.trials())
        out = self.path / "trials.parquet"
        try:
            frame.to_parquet(out, index=False)
        except ImportError:
            log.warning("pyarrow is not installed: skipping %s", out)
            return None
        return out


def _flat(prefix: str, obj: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, Mapping):
            yield from _flat(f"{prefix}{key}.", value)
        elif not isinstance(value, list):
            yield f"{prefix}{key}", value


def trials_frame(records: list[Mapping[str, Any]]) -> Any:
    """A pandas DataFrame, one row per trial: ids, status, reward, raw metrics, decisions.

    Columns: ``trial_id``, ``status``, ``error``, ``reward``, ``arch_key``, the raw metrics
    (``accuracy``, ``latency_ms``, ``latency_p10_ms``, ``latency_p90_ms``, ``params``, ``macs``,
    ...), ``time.<phase>`` timings, ``node.<field>``, ``device.<field>`` and one ``arch.<label>``
    column per decision.
    """
    import pandas as pd

    rows = []
    for rec in records:
        row: dict[str, Any] = {k: v for k, v in rec.items()
                               if not isinstance(v, Mapping | list)}
        row.update(dict(_flat("", rec.get("metrics") or {})))
        for section, prefix in (("timings", "time."), ("node", "node."), ("device", "device."),
                                ("arch", "arch.")):
            row.update(dict(_flat(prefix, rec.get(section) or {})))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if "trial_id" in frame:
        frame = frame.sort_values("trial_id", kind="stable").reset_index(drop=True)
    return frame


class Run:
    """A run folder loaded for analysis: ``run.trials`` is a pandas DataFrame.

    Analysis methods (:mod:`nas.analyze`) recompute MnasNet's reward from the raw stored metrics,
    with the run's own reward settings or with ``target_ms`` (a latency target in ms), ``target``
    (in the unit of the run's reward metric), ``alpha`` and ``beta`` overriding them::

        run = nas.load_run("results/quickstart")
        run.best(5)                         # top 5 complete trials, best first
        run.best(5, target_ms=0.5)          # re-ranked for a 0.5 ms target, nothing re-run
        run.pareto()                        # accuracy vs latency front ("macs" for MACs)
        run.export(rank=1)                  # arch.json, model.pt2, model.onnx, weights
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = RunDir.open(path)
        self.path = self.dir.path
        self.config = self.dir.read_config()
        self.records = self.dir.trials()
        self.trials = trials_frame(self.records)

    def reward(self, target_ms: float | None = None, *, target: float | None = None,
               alpha: float | None = None, beta: float | None = None) -> Any:
        """The :class:`nas.reward.RewardConfig` to rank with (None: the run has no reward)."""
        from nas.analyze import reward_settings

        return reward_settings(self.config, target_ms=target_ms, target=target, alpha=alpha,
                               beta=beta)

    def best(self, k: int = 1, target_ms: float | None = None, *, target: float | None = None,
             alpha: float | None = None, beta: float | None = None) -> Any:
        """Top ``k`` complete trials: rank, trial_id, accuracy, latency_ms, macs, params, reward."""
        from nas.analyze import top_k

        return top_k(self.trials, k, self.reward(target_ms, target=target, alpha=alpha,
                                                 beta=beta))

    def pareto(self, cost: str = "latency_ms") -> Any:
        """Non-dominated complete trials, accuracy (max) vs ``cost`` (``latency_ms``/``macs``)."""
        from nas.analyze import pareto_front

        return pareto_front(self.trials, cost, self.reward())

    def progress(self, target_ms: float | None = None, **reward: Any) -> Any:
        """Best-so-far reward after every finished trial (a DataFrame)."""
        from nas.analyze import progress

        return progress(self.trials, self.reward(target_ms, **reward))

    def analyze(self, k: int = 10, target_ms: float | None = None, **reward: Any) -> Any:
        """Every table of ``nas analyze`` as a :class:`nas.analyze.Analysis`."""
        from nas.analyze import analyze

        return analyze(self.trials, self.config, name=self.path.name, path=str(self.path), k=k,
                       reward=self.reward(target_ms, **reward))

    def export(self, rank: int | None = None, *, trial_id: int | None = None,
               target_ms: float | None = None, target: float | None = None,
               alpha: float | None = None, beta: float | None = None, **options: Any) -> Any:
        """Export one trial as an architecture card folder (see :func:`nas.export.export_trial`).

        ``rank`` counts under the reward settings given (default: the run's own). ``options``:
        ``formats``, ``out``, ``train_epochs``, ``opset``, ``overwrite``.
        """
        from nas.export import export_trial

        reward = self.reward(target_ms, target=target, alpha=alpha, beta=beta)
        return export_trial(self, rank=rank, trial_id=trial_id, reward=reward, **options)

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, trials={len(self)})"


def load_run(path: str | Path) -> Run:
    """Load a run folder, finished or not; ``load_run(p).trials`` is the trials DataFrame."""
    return Run(path)
