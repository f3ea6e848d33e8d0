"""A run folder read into the dashboard's payload, again whenever its files change.

Reading goes through the run-folder store only (:class:`nas.results.RunDir`: ``config.yaml``,
``trials.jsonl``, ``run.json``) and the analysis (:func:`nas.analysis.analyze.analyze` under the
run's own reward settings). Nothing is written into the folder and its lock is never taken, so a
dashboard can watch a search while the driver appends to it: a torn last line (a trial being
written) is skipped by the store and read on the next change.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nas.analysis.analyze import analyze, reward_settings
from nas.dashboard.payload import build_payload
from nas.results import RunDir, trials_frame

__all__ = ["load_payload", "RunSource", "WATCHED"]

WATCHED = ("trials.jsonl", "run.json", "config.yaml", "remeasured.jsonl")


def load_payload(path: str | Path, *, stamp: str | None = None) -> dict[str, Any]:
    """The payload of the run folder ``path`` (see :mod:`nas.dashboard.payload`).

    Raises:
        UsageError: not a run folder, or one of its files is malformed (file and line named).
    """
    run = RunDir.open(path)
    config, records, meta = run.read_config(), run.trials(), run.meta()
    frame = trials_frame(records, run.final_latencies())
    result = analyze(frame, config, name=run.name, path=str(run.path),
                     reward=reward_settings(config))
    return build_payload(result, records, meta, stamp=stamp)


class RunSource:
    """The payload of one run folder, re-read only when a watched file's size or mtime changed.

    Safe to share between the server's threads. The folder is read once on creation, so that a
    missing or malformed one fails at once (``UsageError``).
    """

    def __init__(self, path: str | Path) -> None:
        self.dir = RunDir.open(path)
        self.path = self.dir.path
        self._lock = threading.Lock()
        self._stamp: str | None = None
        self._payload: dict[str, Any] = {}
        self.reads = 0
        self.payload()

    def stamp(self) -> str:
        """The watched files' sizes and mtimes (``-`` for one that does not exist)."""
        parts = []
        for name in WATCHED:
            try:
                st = (self.path / name).stat()
            except FileNotFoundError:
                parts.append(f"{name}:-")
            else:
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        return "|".join(parts)

    def payload(self) -> dict[str, Any]:
        """The current payload (the cached one when no watched file changed).

        Raises:
            UsageError: a file became malformed; the last good payload stays cached.
        """
        with self._lock:
            stamp = self.stamp()
            if stamp != self._stamp:
                self._payload = load_payload(self.path, stamp=stamp)
                self._stamp = stamp
                self.reads += 1
            return self._payload
