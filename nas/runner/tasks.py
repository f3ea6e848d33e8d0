"""The tasks executor (``search.executor: tasks``): a search's trials as plain Ray tasks.

A Tune trial has a cost of its own that cheap children (a second or less: supernet or zero-cost
scoring) notice: Tune's start-up, a new worker process per trial actor (Tune gives its actors a
runtime environment, so they never land on Ray's pre-started workers), the imports of torch and
the evaluation code in it, and a round trip per trial. Here each trial is one Ray generator task
that evaluates a batch of children (:func:`nas.runner.trainable.batch_task`) and streams its
reports back as they come; Ray keeps the worker processes between tasks, and :func:`prewarm`
has them import what children need while the driver is still getting ready.

The driver side is the same :class:`nas.runner.search.ControllerSearcher` that Tune drives:
:func:`run_tasks` calls its ``suggest``, ``on_trial_result`` and ``on_trial_complete`` exactly as
Tune does (at most ``search.concurrency`` trials at once), so records, tells, the saved controller
state, batching, dedup, the pre-filter and the progress view behave the same. A task whose worker
died is retried by Ray (``search.max_failures``); after that the searcher runs its unreported
children once more in a new task before it records them failed. There is no scheduler (ASHA
stops Tune trials), which the config refuses up front. Ctrl-C stops the running tasks and ends
the segment as Tune does (the run is ``interrupted``; ``nas resume`` re-runs what was in flight).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import ray
from ray.exceptions import RayError
from ray.tune.search import Searcher

from nas.runner.trainable import batch_task, warm_worker

__all__ = ["run_tasks", "prewarm", "WAIT_S"]

log = logging.getLogger(__name__)

WAIT_S = 1.0  # the driver's longest wait for a report (it wakes up for Ctrl-C in between)


def _resources(search: Any) -> dict[str, Any]:
    return {"num_cpus": search.cpus_per_trial, "num_gpus": search.gpus_per_trial}


def prewarm(search: Any) -> list[Any]:
    """Start ``search.concurrency`` tasks that import torch and the evaluation code in the
    workers the trials' tasks will run in (the same resources), without waiting for them."""
    task = ray.remote(warm_worker).options(**_resources(search), max_retries=0)
    return [task.remote() for _ in range(search.concurrency)]


def run_tasks(searcher: Any, payload: dict[str, Any], *, search: Any, segment: int) -> int:
    """Drive ``searcher`` with Ray tasks until it has handed out its budget and every task has
    ended, or Ctrl-C; returns the number of tasks started."""
    task = ray.remote(batch_task).options(**_resources(search), num_returns="streaming",
                                          max_retries=search.max_failures,
                                          retry_exceptions=False)
    payload_ref = ray.put(payload)
    running: dict[Any, str] = {}  # generator -> its trial id
    started, finished = 0, False
    with _interrupts() as stop:
        try:
            while not stop.is_set():
                while not finished and len(running) < search.concurrency:
                    trial_id = f"task-{segment}-{started + 1:05d}"
                    config = searcher.suggest(trial_id)
                    if config is None:  # nothing now: a child in flight may give one back
                        break
                    if config == Searcher.FINISHED:
                        finished = True
                        break
                    running[task.remote(config, payload_ref)] = trial_id
                    started += 1
                if not running:
                    return started
                ready, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_S)
                for generator in ready:
                    _take(searcher, generator, running)
            log.warning("interrupted: %d running task(s) stopped; their unreported children "
                        "run again on resume", len(running))
            return started
        finally:
            for generator in running:  # Ctrl-C or a crash: these children are lost (in flight)
                _cancel(generator)


@contextmanager
def _interrupts() -> Iterator[threading.Event]:
    """Ctrl-C sets the event the loop checks between reports, as Tune's handler does, so that
    it never lands inside a record's write or a tell; a second one interrupts at once. (Off the
    main thread, where Python delivers no signal, the event is never set.)"""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _take(searcher: Any, generator: Any, running: dict[Any, str]) -> None:
    """The next item of a task that has one: a report, its end, or its worker's death."""
    trial_id = running[generator]
    try:
        report = ray.get(next(generator))
    except StopIteration:
        del running[generator]
        searcher.on_trial_complete(trial_id, None)
        return
    except RayError as exc:  # the worker died (Ray's retries spent), or the task could not run
        log.warning("task %s failed: %s", trial_id, str(exc).strip().splitlines()[0][:200])
        del running[generator]
        searcher.on_trial_complete(trial_id, None, error=True)
        return
    searcher.on_trial_result(trial_id, report)


def _cancel(generator: Any) -> None:
    try:
        ray.cancel(generator)
    except Exception as exc:  # noqa: BLE001  (best effort: Ray shuts down next anyway)
        log.debug("could not cancel a task: %s", exc)
