"""Experiment trackers: each child's per-epoch and final metrics in TensorBoard and MLflow.

The driver makes one :class:`Trackers` before Ray starts (a missing library or an MLflow store
that cannot be opened is a UsageError then), feeds it epochs and finished records in any
interleaving, and closes it. A child is one TensorBoard run (``RUN/tensorboard/trial-<id>/``,
TensorBoard's own event writer) and one MLflow run (``MlflowClient``), with the trial id,
architecture key, decisions (``arch.<label>``) and flattened config (``config.<path>``) as
hyperparameters, ``epoch/<name>`` metrics at step = epoch and ``final/<name>`` metrics. A tracker
that fails logs one warning and is switched off; the search goes on. No servers, no telemetry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nas._fs import safe_dir, user_dir
from nas.config import LoggingSettings
from nas.errors import UsageError
from nas.records import TrialRecord, TrialStatus
from nas.runner.mlflow_tracker import MlflowTracker, absolute_uri, run_tags
from nas.runner.tracking import EPOCH, FINAL, first_line, flatten, history, numbers, plain

__all__ = ["Trackers", "flatten", "numbers"]  # the two helpers: nas.runner.tracking

log = logging.getLogger(__name__)

class Trackers:
    """The search's experiment trackers (none, TensorBoard, MLflow or both), fed by the driver.

    Events for one child may come before its record and interleaved with other children's; the
    first event of an unknown child opens its runs. Epochs that never arrived through
    :meth:`on_epoch` are taken from the record's ``train.history``. Events for a child that
    already finished are ignored. Safe to call from several threads. A tracker is any object
    with ``name`` and ``open(trial_id, params)``, ``epoch(trial_id, epoch, values)``,
    ``finish(trial_id, status, error, values)`` and ``close()``.
    """

    def __init__(self, trackers: list[Any], config: Mapping[str, Any] | None = None) -> None:
        self._trackers = list(trackers)
        self._config = {f"config.{k}": plain(v) for k, v in flatten(config or {}).items()}
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._done: set[int] = set()
        self._last_epoch: dict[int, int] = {}

    @classmethod
    def create(cls, settings: LoggingSettings, run_path: Path,
               config: Mapping[str, Any]) -> Trackers:
        """The trackers ``settings`` asks for; a UsageError (before anything is written) when a
        library is missing or the MLflow store cannot be opened."""
        run_path = Path(run_path)
        trackers: list[Any] = []
        if settings.mlflow is not None:
            mlflow = dict(settings.mlflow)
            uri = absolute_uri(mlflow["tracking_uri"])
            experiment = mlflow.get("experiment") or run_path.name
            trackers.append(MlflowTracker(uri, experiment, run_tags(run_path),
                                          shown=mlflow["tracking_uri"]))
        if settings.tensorboard:
            trackers.append(TensorBoardTracker(run_path / "tensorboard"))
        return cls(trackers, config)

    @property
    def names(self) -> list[str]:
        """The trackers still on (``tensorboard``, ``mlflow``)."""
        return [t.name for t in self._trackers]

    def on_epoch(self, trial_id: int, arch_key: str, arch: Mapping[str, Any], epoch: int,
                 metrics: Mapping[str, Any]) -> None:
        """One epoch of one child: every numeric metric as ``epoch/<name>`` at step ``epoch``."""
        with self._lock:
            if not self._trackers or trial_id in self._done:
                return
            self._ensure_open(trial_id, arch_key, arch)
            self._epoch(trial_id, int(epoch), metrics)

    def on_trial(self, record: TrialRecord) -> None:
        """A finished child: missed epochs, final metrics and reward, status and error; closes
        its runs."""
        with self._lock:
            trial_id = record.trial_id
            if not self._trackers or trial_id in self._done:
                return
            self._ensure_open(trial_id, record.arch_key, record.arch)
            for epoch, metrics in history(record):
                if epoch > self._last_epoch.get(trial_id, 0):
                    self._epoch(trial_id, epoch, metrics)
            final = numbers(record.metrics)
            if record.reward is not None:
                final["reward"] = float(record.reward)
            self._each("finish", trial_id, record.status, record.error, final)
            self._open.discard(trial_id)
            self._done.add(trial_id)

    def close(self) -> None:
        """Closes every tracker (children still open end unknown / killed). Idempotent."""
        with self._lock:
            trackers, self._trackers = self._trackers, []
            for tracker in trackers:
                try:
                    tracker.close()
                except Exception as exc:  # noqa: BLE001 - a tracker never kills the search
                    _warn(tracker, "close", exc)

    def __enter__(self) -> Trackers:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _ensure_open(self, trial_id: int, arch_key: str, arch: Mapping[str, Any]) -> None:
        if trial_id in self._open:
            return
        params: dict[str, Any] = {"trial_id": int(trial_id), "arch_key": str(arch_key)}
        params.update({f"arch.{label}": plain(value) for label, value in arch.items()})
        params.update(self._config)
        self._each("open", trial_id, params)
        self._open.add(trial_id)

    def _epoch(self, trial_id: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        values = {k: v for k, v in numbers(metrics).items() if k != "epoch"}
        self._last_epoch[trial_id] = max(self._last_epoch.get(trial_id, 0), epoch)
        self._each("epoch", trial_id, epoch, values)

    def _each(self, method: str, *args: Any) -> None:
        """Calls ``method`` on every tracker; one that raises is warned about and switched off."""
        for tracker in list(self._trackers):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - a tracker never kills the search
                _warn(tracker, method, exc)
                self._trackers.remove(tracker)
                try:
                    tracker.close()
                except Exception:  # noqa: BLE001 - already reported
                    log.debug("closing the failed tracker %s also failed", tracker.name,
                              exc_info=True)


def _warn(tracker: Any, method: str, exc: BaseException) -> None:
    log.warning("experiment tracker %s failed in %s (%s); it is off for the rest of this search",
                tracker.name, method, first_line(exc))


# --- TensorBoard ---------------------------------------------------------------------------

# HParams knows success, failure, running and unknown: a pruned child ran as designed.
_TB_STATUS = {TrialStatus.COMPLETE: "STATUS_SUCCESS", TrialStatus.FAILED: "STATUS_FAILURE",
              TrialStatus.PRUNED: "STATUS_SUCCESS"}


def _import_tensorboard() -> SimpleNamespace:
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
        from tensorboard.plugins.text.summary_v2 import text_pb
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as exc:
        raise UsageError(f"logging.tensorboard: true needs the tensorboard library ({exc}); "
                         "pip install 'tensorboard>=2.14' (or pip install -e '.[tensorboard]')"
                         ) from None
    return SimpleNamespace(event_pb2=event_pb2, summary_pb2=summary_pb2, api_pb2=api_pb2,
                           metadata=metadata, plugin_data_pb2=plugin_data_pb2, text_pb=text_pb,
                           EventFileWriter=EventFileWriter)


class TensorBoardTracker:
    """One TensorBoard run per child, ``root/trial-<id>/``: the hyperparameters as an HParams
    session (its end status from the record), the decisions as text, scalars ``epoch/<name>``
    at step = epoch and ``final/<name>``, and the status (and error) as text."""

    name = "tensorboard"

    def __init__(self, root: Path) -> None:
        self._tb = _import_tensorboard()
        self._root = Path(root)
        self._writers: dict[int, Any] = {}

    def open(self, trial_id: int, params: Mapping[str, Any]) -> None:
        # RUN/tensorboard/trial-<id>: made below the run folder (the driver's, or a bare path
        # given here), refused when a link
        run = user_dir(self._root.parent, "run folder")
        folder = safe_dir(self._root / f"trial-{trial_id}", root=run)
        self._writers[trial_id] = self._tb.EventFileWriter(str(folder))
        start = self._tb.plugin_data_pb2.SessionStartInfo(start_time_secs=time.time())
        for key, value in params.items():
            slot = start.hparams[key]
            if isinstance(value, bool):
                slot.bool_value = value
            elif isinstance(value, (int, float)):
                slot.number_value = value
            else:
                slot.string_value = str(value)
        session = self._hparams(self._tb.metadata.SESSION_START_INFO_TAG, session_start_info=start)
        self._write(trial_id, 0, session, self._tb.text_pb("arch", _arch_table(params)))

    def epoch(self, trial_id: int, epoch: int, values: Mapping[str, float]) -> None:
        self._write(trial_id, epoch, self._scalars(EPOCH, values))

    def finish(self, trial_id: int, status: TrialStatus, error: str | None,
               values: Mapping[str, float]) -> None:
        text = str(status) + (f"\n\n```\n{error}\n```" if error else "")
        self._write(trial_id, 0, self._scalars(FINAL, values), self._tb.text_pb("status", text),
                    self._session_end(_TB_STATUS.get(status, "STATUS_UNKNOWN")))
        self._writers.pop(trial_id).close()

    def close(self) -> None:
        """Children still open end as sessions of unknown status."""
        while self._writers:
            trial_id = next(iter(self._writers))
            try:
                self._write(trial_id, 0, self._session_end("STATUS_UNKNOWN"))
            finally:
                self._writers.pop(trial_id).close()

    def _write(self, trial_id: int, step: int, *summaries: Any) -> None:
        writer = self._writers[trial_id]
        for summary in summaries:
            if summary.value:
                writer.add_event(self._tb.event_pb2.Event(wall_time=time.time(), step=step,
                                                          summary=summary))
        writer.flush()  # visible to a live TensorBoard now; a write error surfaces here

    def _scalars(self, prefix: str, values: Mapping[str, float]) -> Any:
        value = self._tb.summary_pb2.Summary.Value
        return self._tb.summary_pb2.Summary(
            value=[value(tag=prefix + key, simple_value=number) for key, number in values.items()])

    def _hparams(self, tag: str, **data: Any) -> Any:
        tb = self._tb
        meta = tb.metadata.create_summary_metadata(tb.plugin_data_pb2.HParamsPluginData(**data))
        return tb.summary_pb2.Summary(value=[tb.summary_pb2.Summary.Value(
            tag=tag, metadata=meta, tensor=tb.metadata.NULL_TENSOR)])

    def _session_end(self, status: str) -> Any:
        end = self._tb.plugin_data_pb2.SessionEndInfo(
            status=self._tb.api_pb2.Status.Value(status), end_time_secs=time.time())
        return self._hparams(self._tb.metadata.SESSION_END_INFO_TAG, session_end_info=end)


def _arch_table(params: Mapping[str, Any]) -> str:
    rows = [f"| {key[len('arch.'):]} | {value} |" for key, value in params.items()
            if key.startswith("arch.")]
    return "\n".join([f"trial {params['trial_id']}, architecture `{params['arch_key']}`", "",
                      "| decision | value |", "|---|---|", *rows])
