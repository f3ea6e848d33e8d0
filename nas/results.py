"""Run folders: ``results/<run>/`` and its append-only trials store.

A run folder holds:

- ``config.yaml``: the resolved configuration (written once, at creation);
- ``trials.jsonl``: one JSON line per finished trial, appended and flushed (and fsynced) by the
  driver only; a torn last line (a crash mid-write) is skipped on read;
- ``controller.json`` (+ ``controller.<hash>.pt`` for tensors, weights-only): the state after
  every tell, written atomically;
- ``run.json``: bookkeeping (status, segments, the driver's pid, its Ray's temp folder and token);
- ``driver.lock``: the OS lock of the one process writing the folder, and who holds it;
- ``tune/``: Ray Tune's experiment folders (one per search segment); ``trials.parquet`` at the end.

mnas writes no pickles and unpickles nothing. Ray Tune writes its own experiment state into
``tune/`` while a segment runs (``tuner.pkl``, ``params.pkl``, ... are pickles); mnas never reads
them, resumes from its own JSON, and deletes them when a segment ends.

Every file is checked when read: a malformed line of ``trials.jsonl``, ``run.json`` or
``config.yaml`` raises :class:`UsageError` naming the file and the line.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import math
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nas._faults import crash_point
from nas._fs import (
    SymlinkError,
    append_line,
    check_writable_folder,
    open_lock,
    read_bytes,
    read_text,
    remove_files,
    user_dir,
    write_atomic,
)
from nas.config import check_run_name
from nas.errors import RunLockedError, UsageError
from nas.frame import trials_frame
from nas.readback import JSONL_CAP, TRIALS, read_final, read_trials
from nas.records import TrialRecord

__all__ = ["RunDir", "read_trials", "trials_frame", "clean_json"]

log = logging.getLogger(__name__)

CONFIG = "config.yaml"
CONTROLLER = "controller.json"
META = "run.json"
LOCK = "driver.lock"
FINAL = "remeasured.jsonl"
TEXT_CAP = 16 << 20  # config.yaml, run.json


def clean_json(obj: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, tuples lists, keys strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean_json(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


class RunDir:
    """One run folder. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    @staticmethod
    def new_path(results_dir: str | Path, name: str) -> Path:
        """``results_dir/name`` for a new run: one folder name (:func:`nas.config.check_run_name`),
        inside a ``results_dir`` that is (or can be made) a writable folder, unused."""
        check_run_name(name)
        check_writable_folder(results_dir, "results_dir")
        path = Path(results_dir) / name
        if os.path.lexists(path):
            raise UsageError(f"run folder {str(path)!r} exists; continue it with `nas resume "
                             f"{path}` or choose another name", params=("name",))
        return path

    @classmethod
    def create(cls, results_dir: str | Path, name: str, config: Mapping[str, Any], *,
               lock: str | None = None) -> RunDir:
        """Make ``results_dir/name`` (which must not exist) and write ``config.yaml``; with
        ``lock`` (the command's name), hold the folder's lock from the start."""
        path = cls.new_path(results_dir, name)
        user_dir(path.parent, "results_dir")  # the user's folder: a link there is their choice
        try:
            path.mkdir()  # never through a link: one planted under the name fails as existing
        except FileExistsError:
            raise UsageError(f"run folder {str(path)!r} exists; choose another --name") from None
        run = cls(path)
        if lock:
            run.lock(lock)
        write_atomic(run.config_path, yaml.safe_dump(clean_json(config), sort_keys=False))
        run.write_meta({"status": "created", "segments": 0})
        return run

    # -- the one writer ----------------------------------------------------------------------
    def lock(self, command: str) -> None:
        """Hold the folder's OS lock for this process (released when it exits or dies).

        Raises:
            RunLockedError: another process holds it; the message names its pid, host, since.
        """
        if self._lock_fd is not None:
            return
        fd = open_lock(self.path / LOCK)  # a planted link or pipe is refused
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self.lock_holder() or {}
            os.close(fd)
            since = holder.get("since")
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
            raise RunLockedError(
                f"run folder {str(self.path)!r} is in use by `nas {holder.get('command', '?')}` "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}); "
                "wait for it to end or stop that process") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.time(), "command": command}).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock (the OS also does when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def lock_holder(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lock: ``{pid, host, since, command}``."""
        try:
            data = json.loads(read_bytes(self.path / LOCK, "lock file", cap=TEXT_CAP))
        except (OSError, ValueError, UsageError):
            return None
        return data if isinstance(data, dict) else None

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (probed without taking it for long)."""
        if self._lock_fd is not None:
            return False
        try:
            fd = os.open(self.path / LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._lock_fd is not None

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

    @property
    def weights_dir(self) -> Path:
        """The trained weights kept by ``search.keep_weights`` (``trial-<id>.safetensors``)."""
        return self.path / "weights"

    def weights_path(self, trial_id: int) -> Path:
        """Where the kept weights of trial ``trial_id`` are (they may not exist)."""
        return self.weights_dir / f"trial-{int(trial_id)}.safetensors"

    # -- contents ----------------------------------------------------------------------------
    def read_config(self) -> dict[str, Any]:
        """The resolved configuration (a YAML mapping; errors name the file and line)."""
        try:
            data = yaml.safe_load(read_text(self.config_path, "run config", cap=TEXT_CAP))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark is not None else ""
            raise UsageError(f"{self.config_path}: invalid YAML{line}") from None
        except FileNotFoundError:
            raise UsageError(f"{self.config_path}: no such file") from None
        except RecursionError:
            raise UsageError(f"{self.config_path}: nested too deeply to be ours") from None
        if not isinstance(data, dict):
            raise UsageError(f"{self.config_path}: must hold a mapping of config sections")
        return data

    def append_trial(self, record: TrialRecord | Mapping[str, Any]) -> None:
        """Append one finished trial (one line, flushed and fsynced); a mapping is checked."""
        if not isinstance(record, TrialRecord):
            record = TrialRecord.from_dict(clean_json(dict(record)), "append_trial")
        line = json.dumps(clean_json(record.to_dict()), allow_nan=False, separators=(",", ":"))
        append_line(self.trials_path, line)

    def trials(self) -> list[TrialRecord]:
        """Finished trial records, in the order they finished."""
        return read_trials(self.trials_path)

    @property
    def final_path(self) -> Path:
        """``remeasured.jsonl``: the finalists' re-measured latencies (append-only)."""
        return self.path / FINAL

    def append_final_latency(self, entry: Mapping[str, Any]) -> None:
        """Append one architecture's final latency (``arch_key``, ``latency_ms``, ...)."""
        if not isinstance(entry.get("arch_key"), str):
            raise UsageError(f"append_final_latency: entry needs an arch_key, got {entry!r:.80}")
        line = json.dumps(clean_json(dict(entry)), allow_nan=False, separators=(",", ":"))
        append_line(self.final_path, line)

    def final_latencies(self) -> dict[str, dict[str, Any]]:
        """Architecture key -> its latest final latency (empty when none was re-measured)."""
        return read_final(self.final_path)

    def repair_trials(self) -> int:
        """Drop a torn last line (after a crash) so appends start on a clean line."""
        try:
            data = read_bytes(self.trials_path, "run file", cap=JSONL_CAP)
        except FileNotFoundError:
            return 0
        if not data or data.endswith(b"\n"):
            return 0
        write_atomic(self.trials_path, data[: data.rfind(b"\n") + 1])
        return 1

    def save_controller(self, controller: Any) -> None:
        """The controller state after a tell (JSON + weights-only tensors, atomic)."""
        from nas.search.controller import save_state

        save_state(controller, self.controller_path)

    def load_controller_state(self) -> dict[str, Any] | None:
        """The saved controller state, or None if none was saved yet."""
        from nas.search.controller import load_state

        return load_state(self.controller_path) if self.controller_path.exists() else None

    def meta(self) -> dict[str, Any]:
        """``run.json`` contents (errors name the file and line)."""
        path = self.path / META
        try:
            data = json.loads(read_bytes(path, "run file", cap=TEXT_CAP))
        except FileNotFoundError:
            return {}
        except (ValueError, RecursionError) as exc:
            line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise UsageError(f"{path}: not valid JSON{line}; `nas resume {self.path} "
                             "--rebuild-state` rewrites it") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: not a JSON object; `nas resume {self.path} "
                             "--rebuild-state` rewrites it")
        return data

    def reset_meta(self, updates: Mapping[str, Any]) -> None:
        """Replace ``run.json`` (a rebuild)."""
        write_atomic(self.path / META, json.dumps(clean_json(updates), indent=2))

    def write_meta(self, updates: Mapping[str, Any]) -> dict[str, Any]:
        """Merge ``updates`` into ``run.json``."""
        meta = {**self.meta(), **clean_json(updates)}
        write_atomic(self.path / META, json.dumps(meta, indent=2))
        return meta

    def write_parquet(self) -> Path | None:
        """``trials.parquet`` from the trials store (None if pyarrow is unavailable)."""
        frame = trials_frame(self.trials(), self.final_latencies())
        out = self.path / "trials.parquet"
        buffer = io.BytesIO()
        try:
            frame.to_parquet(buffer, index=False)
        except ImportError:
            log.warning("pyarrow is not installed: skipping %s", out)
            return None
        crash_point("final_write")
        return write_atomic(out, buffer.getvalue())  # a kill leaves the old file (or none)

    def drop_tune_pickles(self) -> int:
        """Delete the pickles Ray Tune wrote into ``tune/`` (mnas never reads them); a linked
        ``tune/`` is left alone and linked sub-folders are not entered."""
        try:
            return remove_files(self.tune_dir, ".pkl")
        except SymlinkError as exc:  # refused before Tune started; runs in a finally block
            log.warning("%s", exc)
            return 0
