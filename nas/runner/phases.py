"""Progress of the long phases around the trials: ``reward.target: auto``, the supernet, the
finalists' re-measurement.

Each phase counts steps (children measured, supernet epochs, finalists measured) and is shown
the way the search's own view is (:func:`nas.runner.progress.make_view`): a rich progress bar
(steps, a note such as the loss, elapsed time, ETA) beside a :class:`~nas.runner.progress.LiveView`
on a terminal; one plain line per step beside any other view (logs, pipes); nothing without a
view (``--quiet``, ``search.progress: none``). The lines and the bar go to ``sys.stdout`` as it
is when they are written, so they follow :class:`nas.runner.output.RayOutput` like the views.

The steps happen in Ray tasks and actors, possibly on another node: such a task is a generator
(:func:`stream_steps` on the worker) whose items are the step reports and, last, the result, and
the driver reads them as they come (:func:`collect`), without polling.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from nas.runner.progress import LiveView, duration

__all__ = ["Phase", "start_phase", "stream_steps", "collect", "STEP", "DONE"]

T = TypeVar("T")
STEP, DONE = "step", "done"


class Phase:
    """A long phase shown nowhere (the base of the views below)."""

    def __init__(self, label: str, total: int, *, done: int = 0, unit: str = "") -> None:
        self.label, self.total, self.unit = label, max(0, int(total)), unit
        self.done = self.start_done = max(0, int(done))
        self.started = time.monotonic()

    def eta_s(self) -> float | None:
        """Remaining seconds at this phase's pace so far (None before its first step)."""
        steps = self.done - self.start_done
        if steps <= 0:
            return None
        return (time.monotonic() - self.started) / steps * max(0, self.total - self.done)

    def clock(self) -> str:
        return f"elapsed {duration(time.monotonic() - self.started)} ETA {duration(self.eta_s())}"

    def begin(self, intro: str) -> Phase:
        return self

    def step(self, done: int, note: str = "") -> None:
        self.done = done

    def finish(self, summary: str = "") -> None:
        pass

    def counted(self) -> str:
        unit = f"{self.unit} " if self.unit else ""
        return f"{unit}{self.done}/{self.total}"


class LinePhase(Phase):
    """One line when the phase begins, per step and when it ends."""

    def _print(self, text: str) -> None:
        print(f"{self.label}: {text}", file=sys.stdout, flush=True)

    def begin(self, intro: str) -> Phase:
        if intro:
            self._print(intro)
        return self

    def step(self, done: int, note: str = "") -> None:
        super().step(done, note)
        self._print(f"{self.counted()}{' ' + note if note else ''} | {self.clock()}")

    def finish(self, summary: str = "") -> None:
        if summary:
            self._print(summary)


class RichPhase(Phase):
    """A rich progress bar on the search view's console, its last state left on screen."""

    def __init__(self, console: Any, label: str, total: int, **kw: Any) -> None:
        super().__init__(label, total, **kw)
        self.console = console
        self._bar: Any = None
        self._task: Any = None

    def begin(self, intro: str) -> Phase:
        from rich.errors import LiveError
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        if intro:
            self.console.print(f"{self.label}: {intro}", highlight=False)
        self._bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
                             TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                             console=self.console, refresh_per_second=4, transient=False)
        self._task = self._bar.add_task(self.label, total=self.total or None,
                                        completed=self.done, note="", eta="?")
        try:
            self._bar.start()
        except LiveError:  # another live display on the console (rich < 14 nests none)
            self._bar = None
        return self

    def step(self, done: int, note: str = "") -> None:
        super().step(done, note)
        if self._bar is not None:
            self._bar.update(self._task, completed=done, note=note,
                             eta=duration(self.eta_s()))
        else:  # a line per step instead of the bar
            self.console.print(f"{self.label}: {self.counted()}{' ' + note if note else ''} | "
                               f"{self.clock()}", highlight=False)

    def finish(self, summary: str = "") -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        if summary:
            self.console.print(f"{self.label}: {summary}", highlight=False)


def start_phase(view: Any, label: str, total: int, *, intro: str = "", done: int = 0,
                unit: str = "") -> Phase:
    """A phase of ``total`` steps (``done`` already: a resumed one), begun (``intro`` shown),
    drawn like ``view``: rich beside a :class:`LiveView`, lines beside any other view, nothing
    without one (None)."""
    if view is None:
        phase: Phase = Phase(label, total, done=done, unit=unit)
    elif isinstance(view, LiveView):
        phase = RichPhase(view.console, label, total, done=done, unit=unit)
    else:
        phase = LinePhase(label, total, done=done, unit=unit)
    return phase.begin(intro)


# -- steps from a Ray task or actor ----------------------------------------------------------------
def stream_steps(call: Callable[[Callable[..., None]], T]) -> Iterator[tuple[str, Any]]:
    """Worker side, the body of a generator task: ``call(report)`` runs on a thread; every
    ``report(*args)`` it makes is yielded as ``(STEP, args)`` as it happens, then its result as
    ``(DONE, result)``; what it raises is raised here."""
    box: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def report(*args: Any) -> None:
        box.put((STEP, args))

    def run() -> None:
        try:
            box.put((DONE, call(report)))
        except BaseException as exc:  # handed to the generator, which raises it
            box.put(("error", exc))

    threading.Thread(target=run, name="mnas-phase", daemon=True).start()
    while True:
        kind, value = box.get()
        if kind == "error":
            raise value
        yield kind, value
        if kind == DONE:
            return


def collect(items: Iterable[Any], on_step: Callable[..., None]) -> Any:
    """Driver side: read a :func:`stream_steps` generator (Ray's object refs, or the items
    themselves), calling ``on_step(*args)`` for each step; returns the result."""
    import ray

    for item in items:
        kind, value = ray.get(item) if isinstance(item, ray.ObjectRef) else item
        if kind == DONE:
            return value
        on_step(*value)
    raise RuntimeError("the phase's task ended without a result")
