"""The MLflow tracker: one MLflow run per child, through ``MlflowClient`` (see
:mod:`nas.runner.trackers`)."""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote, urlparse

from nas.errors import UsageError
from nas.records import TrialStatus
from nas.runner.tracking import EPOCH, FINAL, first_line

__all__ = ["MlflowTracker", "absolute_uri", "run_tags"]


def absolute_uri(uri: str) -> str:
    """A local file store (a path or a ``file:`` URI) as an absolute ``file://`` URI, so that
    it does not depend on the working directory later; other URIs unchanged."""
    parsed = urlparse(uri)
    if parsed.scheme == "" or (parsed.scheme == "file" and not parsed.netloc):
        return Path(unquote(parsed.path)).expanduser().resolve().as_uri()
    return uri


def run_tags(run_path: Path) -> dict[str, str]:
    """Tags that tie an MLflow run to its run folder (the key finds them again on a resume)."""
    folder = str(run_path.resolve())
    return {"mnas.run_folder": folder,
            "mnas.run_key": hashlib.sha1(folder.encode()).hexdigest()[:16],
            "mnas.run": run_path.name}


# --- MLflow --------------------------------------------------------------------------------

_MLFLOW_STATUS = {TrialStatus.COMPLETE: "FINISHED", TrialStatus.FAILED: "FAILED",
                  TrialStatus.PRUNED: "KILLED"}
_MAX_PARAM, _MAX_TAG, _MAX_KEY = 6000, 8000, 250  # MLflow's length limits


def _import_mlflow(uri: str) -> SimpleNamespace:
    # Defaults that a user's own environment overrides. Telemetry is read when MLflow is
    # imported: none leaves this machine. MLflow 3 keeps the file store behind an opt-in.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if uri.startswith(("http:", "https:")):  # a dead server costs seconds, not MLflow's minutes
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # per child
    try:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise UsageError(f"logging.mlflow needs the mlflow library ({exc}); "
                         "pip install 'mlflow-skinny>=3.0' (or pip install -e '.[mlflow]')"
                         ) from None
    return SimpleNamespace(Metric=Metric, Param=Param, RunTag=RunTag, MlflowClient=MlflowClient)


def _mlflow_key(key: str) -> str:
    """``key`` with the characters MLflow refuses in names replaced by ``_``."""
    return re.sub(r"[^\w\-. /:]", "_", key)[:_MAX_KEY]


class MlflowTracker:
    """One MLflow run per child (``trial-<id>``) in ``experiment``: params, ``epoch/<name>``
    metrics at step = epoch, ``final/<name>`` metrics, tags ``status`` and ``error``, and the
    run's end status. A resumed run folder (same ``mnas.run_key`` tag) reuses its children's
    runs."""

    name = "mlflow"

    def __init__(self, uri: str, experiment: str, tags: Mapping[str, str],
                 shown: str | None = None) -> None:
        self._ml = _import_mlflow(uri)
        self._tags = dict(tags)
        self._active: set[int] = set()
        try:
            self._client = self._ml.MlflowClient(tracking_uri=uri)
            self._experiment_id = self._experiment(experiment)
            self._runs = self._resumable()
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is the config's
            raise UsageError(f"logging.mlflow.tracking_uri={shown or uri!r}: MLflow cannot "
                             f"open this store ({first_line(exc)}); allowed: a "
                             "writable file: folder, sqlite:///FILE.db or a reachable server"
                             ) from None

    def _experiment(self, name: str) -> str:
        found = self._client.get_experiment_by_name(name)
        if found is None:
            return self._client.create_experiment(name)
        if found.lifecycle_stage != "active":
            raise UsageError(f"logging.mlflow.experiment={name!r}: this MLflow experiment is "
                             "deleted; restore it or choose another name")
        return found.experiment_id

    def _resumable(self) -> dict[int, str]:
        query = f"tags.`mnas.run_key` = '{self._tags['mnas.run_key']}'"
        runs: dict[int, str] = {}
        token: str | None = None
        while True:
            page = self._client.search_runs([self._experiment_id], filter_string=query,
                                            max_results=1000, page_token=token)
            for run in page:
                trial = run.data.tags.get("mnas.trial_id", "")
                if trial.isdigit():
                    runs[int(trial)] = run.info.run_id
            token = page.token
            if not token:
                return runs

    def open(self, trial_id: int, params: Mapping[str, Any]) -> None:
        run_id = self._runs.get(trial_id)
        logged: Mapping[str, str] = {}
        if run_id is None:
            tags = {**self._tags, "mnas.trial_id": str(trial_id)}
            run = self._client.create_run(self._experiment_id, run_name=f"trial-{trial_id}",
                                          tags=tags)
            run_id = self._runs[trial_id] = run.info.run_id
        else:  # a resumed child: params are immutable in MLflow, log only the new ones
            self._client.update_run(run_id, status="RUNNING")
            logged = self._client.get_run(run_id).data.params
        fresh = {_mlflow_key(k): str(v)[:_MAX_PARAM] for k, v in params.items()}
        self._log(run_id, params=[self._ml.Param(k, v) for k, v in fresh.items()
                                  if k not in logged])
        self._active.add(trial_id)

    def epoch(self, trial_id: int, epoch: int, values: Mapping[str, float]) -> None:
        self._log(self._runs[trial_id], metrics=self._metrics(EPOCH, values, epoch))

    def finish(self, trial_id: int, status: TrialStatus, error: str | None,
               values: Mapping[str, float]) -> None:
        run_id = self._runs[trial_id]
        tags = {"status": str(status), **({"error": error[:_MAX_TAG]} if error else {})}
        self._log(run_id, metrics=self._metrics(FINAL, values, 0),
                  tags=[self._ml.RunTag(k, v) for k, v in tags.items()])
        self._client.set_terminated(run_id, _MLFLOW_STATUS.get(status, "FAILED"))
        self._active.discard(trial_id)

    def close(self) -> None:
        """Children still open end as killed runs."""
        while self._active:
            self._client.set_terminated(self._runs[self._active.pop()], "KILLED")

    def _metrics(self, prefix: str, values: Mapping[str, float], step: int) -> list[Any]:
        now = int(time.time() * 1000)
        return [self._ml.Metric(_mlflow_key(prefix + k), v, now, step) for k, v in values.items()]

    def _log(self, run_id: str, **batches: list[Any]) -> None:
        """``log_batch`` within MLflow's limits (100 params or tags, 1000 metrics a call)."""
        for kind, items in batches.items():
            size = 1000 if kind == "metrics" else 100
            for start in range(0, len(items), size):
                self._client.log_batch(run_id, **{kind: items[start:start + size]})
