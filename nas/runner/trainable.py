"""The trainable: what runs in the workers (Tune's, or the tasks executor's) for one child.

:func:`trial_payload` is the plain data a worker needs (the space's reference and options, the
evaluation settings, where to send kept weights, the latency service, the supernet's files);
:func:`evaluate_trial` rebuilds the space and settings once per worker process, evaluates the
child (:func:`nas.evaluation.evaluate.evaluate_arch`), reports each epoch to Tune and ends with
one final record. A batch (``search.batch_children``) is several children evaluated in sequence
on a thread of the trial, each reported with its own record as it finishes, without waiting for
the driver (:func:`batch_reports`; the tasks executor's task, :func:`batch_task`, streams the
same reports). A broken child is a failed record, never a failed search or a failed batch. Tune
is imported only where a function reports to it, so that a tasks worker never imports it.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any

import ray

from nas.records import TrialStatus

__all__ = ["trial_payload", "evaluate_trial", "batch_reports", "batch_task", "warm_worker",
           "may_keep"]

_CACHE: dict[str, Any] = {}
log = logging.getLogger(__name__)


def trial_payload(space: Any, settings: Any, *, latency_service: bool,
                  weight_store: dict[str, Any] | None = None,
                  activity: str | None = None,
                  supernet: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plain data the trainable needs to rebuild the space and the evaluation settings
    (``supernet``: the supernet checkpoint's files, for workers on other nodes)."""
    from nas.runner.latency_service import space_ref

    return {"space": space_ref(space), "space_options": dict(space.options),
            "settings": settings.to_dict(), "latency_service": latency_service,
            "weight_store": weight_store, "activity": activity, "supernet": supernet}


def _worker_state(payload: dict[str, Any]) -> tuple[Any, Any]:
    from nas.evaluation.evaluate import EvalSettings
    from nas.registry import SPACES

    key = json.dumps([payload["space"], payload["space_options"], payload["settings"]],
                     sort_keys=True, default=str)
    if _CACHE.get("key") != key:
        from nas.runner.supernet import materialize

        settings = materialize(EvalSettings.from_dict(payload["settings"]),
                               payload.get("supernet"))
        _CACHE.update(key=key, space=SPACES.create(payload["space"], **payload["space_options"]),
                      settings=settings)
    return _CACHE["space"], _CACHE["settings"]


def _node() -> dict[str, Any]:
    """Where a child ran (outside Ray, as in a unit test, no node id: Ray is never started)."""
    if not ray.is_initialized():
        return {"node_id": None, "hostname": socket.gethostname(), "ip": None,
                "pid": os.getpid()}
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "hostname": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "pid": os.getpid()}


def _weights_sender(config: dict[str, Any], payload: dict[str, Any]) -> Callable[..., None] | None:
    """Sends a finished child's weights to the run folder (``search.keep_weights``): written
    directly on the driver's node, through the weight-store actor from another node."""
    where = payload.get("weight_store")
    if not where:
        return None

    def send(model: Any) -> None:
        from nas.runner.weights import serialize_weights, write_incoming

        epochs = str(payload["settings"]["train"].get("epochs"))
        data = serialize_weights(model, {"trial": str(config["proposal_id"]), "epochs": epochs})
        if not where["store"] or ray.get_runtime_context().get_node_id() == where["node"]:
            write_incoming(where["dir"], config["proposal_id"], data)
        else:
            ray.get(ray.get_actor(where["store"]).put.remote(config["proposal_id"], data))

    return send


def may_keep(record: dict[str, Any], bar: float | None) -> bool:
    """Whether the driver could keep this child's weights: complete, with a finite reward of at
    least ``bar`` (the lowest reward the driver kept when it handed the child out; None: any
    reward). Kept rewards only rise, so a child under the bar would be dropped on arrival:
    its weights are never serialized or written."""
    from nas.runner.tune_record import finite

    reward = record.get("reward")
    if record.get("status") != TrialStatus.COMPLETE.value or not finite(reward):
        return False
    return bar is None or reward >= bar


def _send_weights(send: Callable[..., None], model: Any, record: dict[str, Any],
                  bar: float | None) -> None:
    """``send(model)`` when the driver may keep it; a failure is only logged (keeping weights
    is a service, never a reason to fail a child)."""
    if not may_keep(record, bar):
        return
    try:
        send(model)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not send the trained model: %s: %s", type(exc).__name__, exc)


def evaluate_trial(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """Tune function trainable: one child (``arch``, ``proposal_id``) reported per epoch and then
    as one final record, or a batch (``children``: a list of them, see :func:`_run_batch`)."""
    if "children" in config:
        _run_batch(config["children"], payload)
        return
    from ray import tune  # here: the tasks executor's workers never import Tune

    record = _evaluate_child(config, payload, _tune_epoch, time.time())
    accuracy = record.get("accuracy")
    tune.report({"final": True, "record_json": json.dumps(record, default=str),
                 "val_accuracy": float(accuracy) if isinstance(accuracy, int | float) else 0.0})


def _epoch_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return {"val_accuracy": float(metrics.get("val_accuracy", 0.0)), "epoch": metrics.get("epoch"),
            "train_loss": metrics.get("train_loss"), "lr": metrics.get("lr"),
            "node": socket.gethostname()}


def _tune_epoch(metrics: dict[str, Any]) -> None:
    """A single child's epoch, reported to Tune (ASHA decides on it)."""
    from ray import tune

    tune.report({**_epoch_metrics(metrics), "final": False})


def _evaluate_child(config: dict[str, Any], payload: dict[str, Any],
                    report: Callable[[dict[str, Any]], Any], started: float) -> dict[str, Any]:
    """One child's flat record (``evaluate_arch``'s result, where and when it ran); a broken
    child is a failed record, never an exception."""
    from nas.evaluation.evaluate import evaluate_arch

    record: dict[str, Any]
    try:
        space, settings = _worker_state(payload)
        latency_fn = None
        if payload["latency_service"]:
            from nas.runner.latency_service import LatencyClient

            latency_fn = LatencyClient.connect(activity=payload.get("activity")).latency_fn()
        send, models = _weights_sender(config, payload), []
        record = evaluate_arch(space, space.validate(config["arch"]), settings, report=report,
                               latency_fn=latency_fn, on_model=models.append if send else None,
                               activity=payload.get("activity"))
        if send is not None and models:
            _send_weights(send, models[0], record, config.get("weights_bar"))
    except Exception as exc:  # a broken child must not take the search down
        record = {"status": TrialStatus.FAILED.value, "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=5)}
    record["node"] = _node()
    record["latency_by"] = "service" if payload["latency_service"] else \
        payload["settings"]["latency"].get("mode", "measure")
    record["started_at"], record["finished_at"] = started, time.time()
    return record


def _run_batch(children: list[dict[str, Any]], payload: dict[str, Any]) -> None:
    """A batch in a Tune trial: each of :func:`batch_reports` reported to Tune (reporting blocks
    until the driver has taken the report; the evaluation never waits for it)."""
    from ray import tune

    with closing(batch_reports(children, payload)) as reports:
        for report in reports:
            tune.report(report)


def batch_reports(children: list[dict[str, Any]],
                  payload: dict[str, Any]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Evaluate ``children`` in sequence on a thread of their own, and yield whatever has
    finished each time the consumer asks: the children's records (``children``) and their epochs
    (``epochs``, for the live view and the trackers). Closing the generator stops the batch
    after the running child."""
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
    stop = threading.Event()
    worker = threading.Thread(target=_batch_worker, args=(children, payload, events, stop),
                              name="mnas-batch", daemon=True)
    worker.start()
    try:
        ended = False
        while not ended:
            items = [events.get()]
            while not events.empty():
                items.append(events.get_nowait())
            ended = items[-1] is None  # the worker's last word
            report: dict[str, list[dict[str, Any]]] = {"children": [], "epochs": []}
            for kind, item in filter(None, items):
                report[kind].append(item)
            if report["children"] or report["epochs"]:
                yield report
    finally:
        stop.set()  # the consumer went away: no further child starts
        worker.join()


def batch_task(config: dict[str, Any],
               payload: dict[str, Any]) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """The tasks executor's task body (a Ray generator task): a batch's reports, streamed."""
    yield from batch_reports(config["children"], payload)


def warm_worker() -> int:
    """A task that imports what every child needs (torch, the evaluation code), so that the
    worker process it ran in, which Ray keeps for the next tasks, starts its children warm."""
    import nas.evaluation.evaluate  # noqa: F401  (torch, the evaluators)

    return os.getpid()


def _batch_worker(children: list[dict[str, Any]], payload: dict[str, Any],
                  events: queue.Queue[tuple[str, dict[str, Any]] | None],
                  stop: threading.Event) -> None:
    try:
        for child in children:
            if stop.is_set():
                break
            pid = child["proposal_id"]

            def report(metrics: dict[str, Any], pid: Any = pid) -> None:
                events.put(("epochs", {**_epoch_metrics(metrics), "proposal_id": pid}))

            record = _evaluate_child(child, payload, report, time.time())
            events.put(("children", {"proposal_id": pid,
                                     "record_json": json.dumps(record, default=str)}))
    finally:
        events.put(None)
