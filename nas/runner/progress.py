"""Live progress of a search: the counters, an ETA from the running children, and two views.

:class:`SearchProgress` is updated by the Tune searcher on every per-epoch result and every
finished trial. :class:`LiveView` draws it with rich on a terminal (the running children with
their node, epoch and validation accuracy; counts; the best so far; elapsed time and ETA);
:class:`LinePrinter` prints one line per finished child where the output is not a terminal.
The best's latency is labelled ``search-time``: the finalists are re-measured after the view
closes, and the end-of-search summary (``nas search``, ``nas status``) shows the best by the
final numbers, labelled ``final`` (:func:`best_text` of :func:`nas.analysis.best.final_best`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["SearchProgress", "LiveView", "LinePrinter", "make_view", "progress_line",
           "duration", "best_text", "latency_text"]


@dataclass
class SearchProgress:
    """Live counters of a search, handed to the progress view after every event.

    ``live`` maps a running Tune trial to its child: ``trial_id``, ``arch_key``, ``node``,
    ``epoch``, ``epochs``, ``val_accuracy``, ``started`` and ``epoch_at`` (the times of its epoch
    reports). ``child_s`` holds the wall times of the
    children that finished in this segment (what the ETA extrapolates).
    """

    total: int
    done: int = 0
    failed: int = 0
    pruned: int = 0
    rejected: int = 0
    at_chance: int = 0
    running: int = 0
    started_at: float = field(default_factory=time.time)
    done_at_start: int = 0
    repeats: int = 0
    best: dict[str, Any] | None = None
    last_failure: str | None = None
    concurrency: int = 1
    epochs: int = 1
    live: dict[str, dict[str, Any]] = field(default_factory=dict)
    child_s: list[float] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float:
        return time.time() - self.started_at

    def child_estimate_s(self) -> float | None:
        """Wall time of one child: the mean of the finished ones; before any finished, the
        running children's pace (start-up to the first epoch, then the time between epochs).
        None until a child has reported two epochs or finished."""
        if self.child_s:
            return sum(self.child_s) / len(self.child_s)
        guesses = []
        for c in self.live.values():
            pace = _pace(c)
            if pace is not None:
                start_up = max(0.0, c["epoch_at"][0] - c["started"] - pace)
                guesses.append(start_up + pace * max(1, c.get("epochs") or 1))
        return sum(guesses) / len(guesses) if guesses else None

    @property
    def eta_s(self) -> float | None:
        """Remaining wall time: the unstarted children plus the epochs the running ones have
        left, spread over ``concurrency`` slots (None until a child has shown its pace)."""
        per_child = self.child_estimate_s()
        if per_child is None:
            return None
        if self.done >= self.total:
            return 0.0
        left = 0.0
        for c in self.live.values():
            pace, epochs, epoch = _pace(c), max(1, c.get("epochs") or 1), c.get("epoch") or 0
            left += (epochs - epoch) * pace if pace is not None else \
                per_child * (1.0 - min(1.0, epoch / epochs))
        unstarted = max(0, self.total - self.done - len(self.live))
        return (per_child * unstarted + left) / max(1, self.concurrency)


def _pace(child: dict[str, Any]) -> float | None:
    """Seconds per epoch of a running child, from the times of its epoch reports."""
    times = child.get("epoch_at") or []
    if len(times) < 2:
        return None
    return (times[-1] - times[0]) / (len(times) - 1)


def duration(seconds: float | None) -> str:
    """``1m05s``, ``2h03m``; ``?`` for None."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def latency_text(best: dict[str, Any]) -> str:
    """``1.188 ms search-time``, or for a best whose latency was re-measured after the search
    (``latency_source: final``, :func:`nas.analysis.best.final_best`) ``1.477 ms final,
    re-measured; at search time 1.188 ms gave reward 1.0174``."""
    text = f"{_fmt(best.get('latency_ms'), '.3f')} ms"
    if best.get("latency_source") != "final":
        return f"{text} search-time"
    was, reward = best.get("search_latency_ms"), best.get("search_reward")
    if was is None:
        return f"{text} final, re-measured"
    scored = f" gave reward {reward:.4f}" if reward is not None else ""
    return f"{text} final, re-measured; at search time {was:.3f} ms{scored}"


def best_text(best: dict[str, Any] | None) -> str:
    """The best child in one line, its latency labelled search-time or final."""
    if not best:
        return "-"
    flag = ", AT CHANCE: learned nothing" if best.get("at_chance") else ""
    return (f"{best['reward']:.4f} (trial {best['trial_id']}, acc "
            f"{_fmt(best.get('accuracy'), '.4f')}, lat {latency_text(best)}{flag})")


def chance_text(p: SearchProgress) -> str:
    """`` at chance N`` when complete children scored at chance (they learned nothing)."""
    return f"at chance {p.at_chance} " if p.at_chance else ""


def progress_line(p: SearchProgress) -> str:
    """One line of progress."""
    rejected = f"rejected {p.rejected} " if p.rejected else ""
    line = (f"[{p.done:>{len(str(p.total))}}/{p.total}] failed {p.failed} pruned {p.pruned} "
            f"{rejected}{chance_text(p)}running {len(p.live) or p.running} | best reward "
            f"{best_text(p.best)} | elapsed {duration(p.elapsed_s)} ETA {duration(p.eta_s)}")
    if p.failed and p.last_failure:
        line += f" | last failure: {p.last_failure}"
    return line


class LinePrinter:
    """One line per finished child (not per epoch): for logs and pipes."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._shown: tuple[int, int] = (-1, -1)

    def __call__(self, p: SearchProgress) -> None:
        if (p.done, p.rejected) == self._shown:
            return
        self._shown = (p.done, p.rejected)
        print(progress_line(p), file=self.stream or sys.stdout, flush=True)

    def close(self) -> None:
        pass


class LiveView:
    """A rich live display redrawn on every event (and four times a second for the clock)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.progress: SearchProgress | None = None
        self.console = Console(file=stream)  # None: sys.stdout at the time of each write
        self._live = Live(get_renderable=self._render, console=self.console,
                          refresh_per_second=4, transient=False, redirect_stdout=False,
                          redirect_stderr=False)
        self._started = False

    def __call__(self, p: SearchProgress) -> None:
        self.progress = p
        if not self._started:
            self._live.start()
            self._started = True
        self._live.refresh()

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        p = self.progress
        if p is None:
            return Text("starting...")
        rejected = f"rejected {p.rejected}  " if p.rejected else ""
        head = Text(f"done {p.done}/{p.total}  failed {p.failed}  pruned {p.pruned}  {rejected}"
                    f"{chance_text(p)}running {len(p.live)}   elapsed {duration(p.elapsed_s)}  "
                    f"ETA {duration(p.eta_s)}")
        parts: list[Any] = [head, Text(f"best so far: {best_text(p.best)}")]
        if p.failed and p.last_failure:
            parts.append(Text(f"latest failure: {p.last_failure}", style="red"))
        if p.live:
            table = Table(box=None, pad_edge=False, header_style="bold")
            for col in ("trial", "arch", "node", "epoch", "val acc", "running"):
                table.add_column(col)
            for c in sorted(p.live.values(), key=lambda c: c.get("trial_id") or 0):
                table.add_row(str(c.get("trial_id")), str(c.get("arch_key") or "")[:16],
                              str(c.get("node") or "-"),
                              f"{c.get('epoch') or 0}/{c.get('epochs') or '?'}",
                              _fmt(c.get("val_accuracy"), ".4f"),
                              duration(time.time() - c["started"]) if c.get("started") else "-")
            parts.append(table)
        return Group(*parts)

    def close(self) -> None:
        if self._started:
            self._live.refresh()
            self._live.stop()
            self._started = False


def make_view(mode: str, stream: TextIO | None = None) -> LiveView | LinePrinter | None:
    """The view for ``search.progress``: ``auto`` (live on a terminal, lines otherwise),
    ``rich``, ``lines`` or ``none``. Without ``stream`` the views write to whatever
    ``sys.stdout`` is when they draw (so they follow :class:`nas.runner.output.RayOutput`)."""
    if mode == "none":
        return None
    tty = getattr(stream or sys.stdout, "isatty", lambda: False)()
    if mode == "rich" or (mode == "auto" and tty):
        return LiveView(stream)
    return LinePrinter(stream)
