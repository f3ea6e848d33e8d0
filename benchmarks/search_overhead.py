"""Overhead of the search machinery: a fixed-time evaluator at concurrency 2, ours against Tune.

For each children duration (``--seconds``, default 1.0 and 0.1) this runs, in one process,
(1) a ``nas`` search (controller, Searcher adapter, trainable, run folder, progress) of children
that take exactly that long (``nas.testing.fixtures:fixed_time``), and (2) plain Ray Tune with a
function that sleeps as long, one Tune trial per child. It prints one table, durations side by
side: the search phase's wall time (``tuner.fit`` for Tune, Tune start-up and worker imports
included), its efficiency (ideal / search phase, ideal = children x duration / concurrency) and
``vs Tune`` (our search phase / Tune's). Ray's own start-up is left out of both.

The children count keeps the ideal search phase the same for every duration: 40 children of 1 s,
400 of 0.1 s (``--work`` seconds of children per concurrency slot, default 20); ``--trials N``
fixes it instead. ``--executor tune tasks`` (the default: both) runs a nas search per
``search.executor`` value, and ``--batch auto 1`` one per ``search.batch_children`` value
(default ``auto``). ``--smoke`` is a few children of 0.05 s (the test suite runs it: the script
cannot rot). ``--torch-baseline`` adds plain Tune whose function imports torch first, as every
worker of a search of torch children must: the difference to it is our machinery alone.

    python benchmarks/search_overhead.py [--seconds 1.0 0.1] [--work 20] [--executor tune tasks]
        [--batch auto 1] [--torch-baseline] [--smoke]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import ray
from ray import tune

from nas.config import parse_config
from nas.results import read_trials
from nas.runner.driver import start_search
from nas.runner.progress import LinePrinter


@dataclass
class Timing:
    """One runner's search phase at one children duration."""

    runner: str
    seconds: float
    children: int
    search_s: float
    startup_s: float  # Ray's start-up (not in the search phase)
    runs: list[tuple[float, float, object]]  # each child's (start, end, worker process)
    parts: dict[str, float] | None = None  # nas: a child's median build and MAC count, in s

    @property
    def span_s(self) -> float:
        """First child's start to last child's end (without Tune's start-up and the end)."""
        return max(end for _, end, _ in self.runs) - min(start for start, _, _ in self.runs)

    def gap_s(self) -> float | None:
        """Median time between consecutive children of one worker process."""
        by_worker: dict[object, list[tuple[float, float, object]]] = {}
        for run in self.runs:
            by_worker.setdefault(run[2], []).append(run)
        gaps = []
        for runs in by_worker.values():
            runs.sort()
            gaps += [b[0] - a[1] for a, b in zip(runs, runs[1:], strict=False)]
        return statistics.median(gaps) if gaps else None

    def inside_s(self) -> float:
        """Median time a child took beyond the evaluator's (build, cost, weights, record)."""
        return statistics.median(end - start - self.seconds for start, end, _ in self.runs)


def ours(children: int, seconds: float, concurrency: int, root: str, batch: str,
         executor: str = "tune") -> Timing:
    """A ``nas`` search of ``children`` fixed-time children; its records checked."""
    # the defaults a user gets, but no dedup: 12 toy architectures stand for a large space
    search = {"trials": children, "concurrency": concurrency, "cpus_per_trial": 1,
              "dedup": False, "batch_children": int(batch) if batch.isdigit() else batch,
              "executor": executor}
    cfg = parse_config({
        "results_dir": root,
        "space": {"name": "nas.testing.fixtures:ToySpace"},
        "controller": {"name": "random"},
        "evaluator": {"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                      "options": {"seconds": seconds}},
        "latency": {"mode": "skip"},
        "reward": {"target": 5.0},
        "search": search,
        "ray": {"num_cpus": concurrency},
    })
    name = f"overhead-{seconds:g}-{time.time_ns()}"
    # the view the CLI draws where the output is not a terminal (one line per child)
    result = start_search(cfg, name=name, progress=LinePrinter(io.StringIO()))
    records = read_trials(result.run_dir)
    if len(records) != children or result.failed or len({r.trial_id for r in records}) != children:
        raise SystemExit(f"nas search at {seconds:g} s: {len(records)} records, "
                         f"{result.failed} failed, expected {children} complete")
    runs = [(r.started_at, r.finished_at, (r.node or {}).get("pid")) for r in records]
    parts = {key: statistics.median(float((r.timings or {}).get(f"{key}_s") or 0.0)
                                    for r in records) for key in ("build", "cost")}
    return Timing(f"nas {executor} {batch}", seconds, children, result.search_s,
                  result.ray_startup_s, runs, parts)


def _sleeper(config: dict) -> None:
    began = time.time()
    time.sleep(config["seconds"])
    tune.report({"accuracy": 0.5 + config["width"] / 1000.0, "began": began,
                 "ended": time.time(), "worker": os.getpid()})


def _torch_sleeper(config: dict) -> None:
    import torch  # noqa: F401  (what every worker of a search of torch children imports)

    _sleeper(config)


def plain_tune(children: int, seconds: float, concurrency: int, root: str,
               with_torch: bool = False) -> Timing:
    """Plain Ray Tune: one trial per child, sleeping ``seconds`` (``with_torch``: after
    importing torch, once per worker process)."""
    began = time.perf_counter()
    ray.init(address="local", num_cpus=concurrency, include_dashboard=False,
             log_to_driver=False)
    startup = time.perf_counter() - began
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        tuner = tune.Tuner(
            tune.with_resources(_torch_sleeper if with_torch else _sleeper, {"cpu": 1}),
            param_space={"seconds": seconds, "width": tune.choice([8, 16, 32, 64]),
                         "depth": tune.choice([1, 2, 3])},
            tune_config=tune.TuneConfig(num_samples=children, max_concurrent_trials=concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=root, name=f"plain-{time.time_ns()}",
                                      verbose=0))
        began = time.perf_counter()
        grid = tuner.fit()
        elapsed = time.perf_counter() - began
        if len(grid) != children or grid.errors:
            raise SystemExit(f"plain Tune at {seconds:g} s: {len(grid)} trials, errors "
                             f"{grid.errors}")
    finally:
        ray.shutdown()
    runs = [(r.metrics["began"], r.metrics["ended"], r.metrics["worker"]) for r in grid]
    name = "Tune + torch" if with_torch else "plain Ray Tune"
    return Timing(name, seconds, children, elapsed, startup, runs)


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def part(t: Timing, key: str) -> float | None:
    """A nas child's median ``build`` or ``cost`` (MAC count) time in ms; None for Tune's."""
    return None if t.parts is None else 1000.0 * t.parts[key]


def table(rows: list[Timing], concurrency: int) -> str:
    """The side-by-side table: one line per runner and duration."""
    tune_s = {t.seconds: t.search_s for t in rows if t.runner == "plain Ray Tune"}
    head = (f"{'child s':>7} {'children':>8} {'runner':<15}{'ideal s':>8}{'search s':>9}"
            f"{'efficiency':>11}{'vs Tune':>8}{'span s':>8}{'span eff':>9}{'fixed s':>8}"
            f"{'gap s':>7}{'inside s':>9}{'build ms':>9}{'count ms':>9}{'ray start s':>12}")
    lines = [head, "-" * len(head)]
    for t in rows:
        ideal = t.children * t.seconds / concurrency
        vs = t.search_s / tune_s[t.seconds] if t.seconds in tune_s else None
        lines.append(f"{t.seconds:>7g} {t.children:>8} {t.runner:<15}{ideal:>8.1f}"
                     f"{t.search_s:>9.2f}{ideal / t.search_s:>11.2f}{_cell(vs, '.2f'):>8}"
                     f"{t.span_s:>8.2f}{ideal / t.span_s:>9.2f}{t.search_s - t.span_s:>8.2f}"
                     f"{_cell(t.gap_s(), '.3f'):>7}{t.inside_s():>9.3f}"
                     f"{_cell(part(t, 'build'), '.1f'):>9}{_cell(part(t, 'cost'), '.1f'):>9}"
                     f"{t.startup_s:>12.1f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[1.0, 0.1],
                        help="children durations, side by side (default 1.0 0.1)")
    parser.add_argument("--work", type=float, default=20.0,
                        help="ideal search phase in seconds: children = work x concurrency / "
                             "duration (default 20: 40 children of 1 s at concurrency 2)")
    parser.add_argument("--trials", type=int, default=None, help="children per duration")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--batch", nargs="+", default=["auto"],
                        help="search.batch_children, one nas row each (default auto; "
                             "e.g. --batch auto 1)")
    parser.add_argument("--executor", nargs="+", choices=("tune", "tasks"),
                        default=["tune", "tasks"],
                        help="search.executor, one nas row each (default: both)")
    parser.add_argument("--torch-baseline", action="store_true",
                        help="also plain Tune whose function imports torch (as a search's "
                             "workers must): what is left of our fixed cost")
    parser.add_argument("--smoke", action="store_true",
                        help="a few children of 0.05 s (what the test suite runs)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.trials = [0.05], 4
    if min(args.seconds) <= 0 or args.concurrency < 1 or (args.trials or 1) < 1:
        parser.error("--seconds, --concurrency and --trials must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = tempfile.mkdtemp(prefix="mnas-overhead-")
    rows: list[Timing] = []
    try:
        for seconds in args.seconds:
            children = args.trials or max(1, round(args.work * args.concurrency / seconds))
            rows += [ours(children, seconds, args.concurrency, root, batch, executor)
                     for executor in args.executor for batch in args.batch]
            rows.append(plain_tune(children, seconds, args.concurrency, root))
            if args.torch_baseline:
                rows.append(plain_tune(children, seconds, args.concurrency, root, True))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nsearch phase at concurrency {args.concurrency} "
          f"(efficiency = ideal / search s, target >= 0.90; vs Tune = ours / Tune, target <= 1)")
    print(table(rows, args.concurrency))
    print("span: first child's start to last child's end; fixed s = search s - span s (Tune's "
          "start-up, the workers' imports, the end); gap s: median time between one worker's "
          "children; inside s: median time a child took beyond the evaluator's, of which build ms "
          "and count ms (its MAC count) are the medians of two parts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
