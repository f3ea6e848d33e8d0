"""``nas bench``: controllers against a lookup table, in process (see :mod:`nas.search.bench`)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from nas.errors import UsageError

__all__ = ["register"]

EXAMPLE = """examples:
  nas bench --table ../shared/data/nb201_cifar10.csv --key arch_str --metric cifar10_test_acc \\
      --controllers all --trials 100 --seeds 30 --out results/bench
  nas bench --table ../shared/data/nb201_cifar10.csv --metric cifar10_test_acc --noise 0.3
  nas bench --table ../shared/data/nb201_cifar10.csv --metric cifar10_test_acc \\
      --cost params --controllers nsga2,bananas,tpe --trials 300 --seeds 10
  a cost (--latency-column COL or --cost params) makes the reward MnasNet's and adds
  hypervolumes; --target (default: the table's median cost) and --alpha/--beta set the reward;
  pass controller options with --set evolution.population_size=20 (values are JSON)"""


def register(subparsers: Any) -> None:
    """Add the ``bench`` command."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark controllers on a lookup table (no training)",
        description="Run controllers against a CSV lookup table over many seeds and print the "
        "mean +- std of the best metric found after 10, 25, 50, 100, ... trials (with a cost: "
        "the metric of the best-reward architecture, which can go down).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", default="nasbench201", help="registered space (default nasbench201)")
    p.add_argument("--table", required=True, help="CSV file, one row per architecture")
    p.add_argument("--key", default="arch_str",
                   help="column of the space's canonical strings (default arch_str)")
    p.add_argument("--metric", required=True, help="column to maximize (e.g. cifar10_test_acc)")
    p.add_argument("--latency-column",
                   help="latency column: the cost; the reward becomes MnasNet's")
    p.add_argument("--cost", choices=["params"],
                   help="the space's parameter count as the cost (instead of a latency column)")
    p.add_argument("--target", "--target-ms", dest="target", type=float,
                   help="cost target T of the reward (default: the table's median cost)")
    p.add_argument("--alpha", type=float, default=-0.07, help="exponent under T (default -0.07)")
    p.add_argument("--beta", type=float, default=-0.07, help="exponent over T (default -0.07)")
    p.add_argument("--controllers", default="all",
                   help="comma-separated controller names, or all (default: every registered one)")
    p.add_argument("--trials", type=int, default=100, help="trials per search (default 100)")
    p.add_argument("--seeds", type=int, default=30, help="searches per controller (default 30)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="proposals outstanding at once, told in random order (default 1)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="std of seeded Gaussian noise on the accuracy told to controllers "
                   "(curves report the true value; default 0)")
    p.add_argument("--dedup", choices=["on", "off", "both"], default="on",
                   help="answer repeated proposals from the records so a trial is a new "
                   "architecture (on, default), re-evaluate them (off), or report both")
    p.add_argument("--warm-start", metavar="[shuffled:|inverted:][FILE:]COLUMN",
                   help="per seed, a source search of --warm-start-trials on COLUMN (of --table, "
                   "or of FILE, a table of the same space keyed by --key) by the same "
                   "controller, then the target search warm-started from it; curves NAME "
                   "(cold) and NAME+ws side by side. shuffled: permutes the column across "
                   "cells (a source that knows nothing); inverted: negates it (one that "
                   "misleads)")
    p.add_argument("--warm-start-trials", type=int, default=100, metavar="N",
                   help="trials of each source search (default 100)")
    p.add_argument("--set", action="append", default=[], metavar="NAME.OPTION=VALUE",
                   help="controller option, e.g. rl.lr=0.005 (repeatable; VALUE is JSON)")
    p.add_argument("--out", help="folder for curves.csv, curves.png and summary.csv")
    p.set_defaults(func=run)


def parse_sets(items: list[str], controllers: list[str]) -> dict[str, dict[str, Any]]:
    """``["evolution.population_size=20"]`` -> ``{"evolution": {"population_size": 20}}``."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, raw = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key:
            raise UsageError(f"--set {item!r}: expected NAME.OPTION=VALUE")
        if name not in controllers:
            raise UsageError(f"--set {item!r}: controller {name!r} is not in --controllers")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare word is a string
        options.setdefault(name, {})[key] = value
    return options


def _check_args(args: argparse.Namespace) -> list[str]:
    """The controllers to run; the flags only the command line has (the library checks the rest)."""
    from nas import CONTROLLERS

    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    if controllers == ["all"]:
        controllers = CONTROLLERS.names()
    if not controllers:
        raise UsageError(f"--controllers={args.controllers!r}: give at least one controller name")
    if args.latency_column is not None and args.cost is not None:
        raise UsageError("--cost: give either --latency-column or --cost, not both")
    has_cost = args.latency_column is not None or args.cost is not None
    if not has_cost and args.target is not None:
        raise UsageError("--target: only meaningful with a cost (--latency-column or --cost)")
    if args.target is not None and (not math.isfinite(args.target) or args.target <= 0):
        raise UsageError(f"--target={args.target}: must be positive")
    if args.warm_start is None and args.warm_start_trials != 100:
        raise UsageError("--warm-start-trials: only meaningful with --warm-start")
    if args.warm_start_trials < 1:
        raise UsageError(f"--warm-start-trials={args.warm_start_trials}: must be >= 1")
    for flag, value in (("--alpha", args.alpha), ("--beta", args.beta)):
        if not math.isfinite(value):
            raise UsageError(f"{flag}={value}: must be finite")
    return controllers


def _objective(args: argparse.Namespace, space: Any, table: Any) -> tuple[Any, Any]:
    """The lookup-table objective, and the hypervolume normalisation when a cost is given."""
    import numpy as np

    from nas.search.bench import TableObjective
    from nas.search.bench_report import HVNorm

    columns = {"key": args.key, "metric": args.metric}
    if not (args.latency_column or args.cost):
        return TableObjective(space, table, **columns), None
    costs = TableObjective(space, table, **columns, latency_column=args.latency_column,
                           cost=args.cost, target_ms=1.0).costs()
    target = args.target if args.target is not None else float(np.nanmedian(costs))
    objective = TableObjective(space, table, **columns, latency_column=args.latency_column,
                               cost=args.cost, target_ms=target, alpha=args.alpha, beta=args.beta)
    print(f"reward: {args.metric} * ({objective.cost_name} / {target:.6g}) ^ w, "
          f"w = {args.alpha:g} at or under the target, {args.beta:g} over it")
    return objective, HVNorm.of(objective.metrics(), costs)


def _curves(args: argparse.Namespace, objective: Any, controllers: list[str],
            options: dict[str, dict[str, Any]]) -> Any:
    """Every controller's curves, once per ``--dedup`` mode."""
    import pandas as pd

    from nas.search.bench import run_bench

    modes = {"on": [True], "off": [False], "both": [True, False]}[args.dedup]
    frames = []
    spec = warm_spec(args, objective.space) if args.warm_start else None
    for dedup in modes:
        common = dict(trials=args.trials, seeds=args.seeds, first_seed=args.first_seed,
                      workers=args.workers, noise=args.noise, dedup=dedup, options=options)
        if spec is None:
            curves = run_bench(objective, controllers, **common)
        else:
            from nas.search.bench_warm import run_warm_bench

            curves = run_warm_bench(objective, spec, controllers, **common)
        if len(modes) > 1 and not dedup:
            curves["controller"] = curves["controller"] + " (no dedup)"
        frames.append(curves)
    return pd.concat(frames, ignore_index=True)


def warm_spec(args: argparse.Namespace, space: Any) -> Any:
    """The source of ``--warm-start [shuffled:|inverted:][FILE:]COLUMN``: a column of
    ``--table``, or of another table of the same space (read like ``--table``, keyed by
    ``--key``); shuffled across cells per seed, or negated."""
    from pathlib import Path

    from nas.search.bench import TableObjective, load_table
    from nas.search.bench_warm import WarmSpec

    text = rest = args.warm_start
    modes = {"shuffled": False, "inverted": False}
    while rest.partition(":")[0] in modes:
        mode, _, rest = rest.partition(":")
        modes[mode] = True
    path, sep, column = rest.rpartition(":")
    if not column:
        raise UsageError(f"--warm-start={text!r}: expected [shuffled:|inverted:][FILE:]COLUMN")
    if sep and not Path(path).is_file():
        raise UsageError(f"--warm-start={text!r}: {path!r} is not a file (give a column of "
                         "--table, or FILE:COLUMN of a table of the same space)")
    source = path if sep else args.table
    try:
        table = load_table(source, key=args.key, metric=column)
    except UsageError as exc:
        raise UsageError(f"--warm-start={text!r}: {exc}") from None
    objective = TableObjective(space, table, key=args.key, metric=column)
    name = f"{Path(path).name}:{column}" if sep else column
    return WarmSpec(objective, trials=args.warm_start_trials, name=name, **modes)


def run(args: argparse.Namespace) -> int:
    """Handler of ``nas bench``."""
    from nas import get_space
    from nas.search.bench import load_table
    from nas.search.bench_report import (
        curve_label,
        hypervolume,
        hypervolume_table,
        summarize,
        write_outputs,
    )

    controllers = _check_args(args)
    options = parse_sets(args.set, controllers)
    table = load_table(args.table, key=args.key, metric=args.metric,
                       latency_column=args.latency_column)
    objective, norm = _objective(args, get_space(args.space), table)
    curves = _curves(args, objective, controllers, options)
    summary = summarize(curves)
    label = curve_label(args.metric, cost=norm is not None, noise=bool(args.noise))
    _print_summary(summary, args, objective.best_metric, label)
    hv = None
    if norm is not None:
        hv = hypervolume_table(curves, norm)
        _print_hv(hv, norm, hypervolume(objective.metrics(), objective.costs(), norm))
    if args.out:
        paths = write_outputs(curves, summary, args.out, metric=args.metric, hv=hv, label=label)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _print_summary(summary: Any, args: argparse.Namespace, table_best: float,
                   label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = [c[len("best@"):-len(" mean")] for c in summary.columns if c.endswith(" mean")
             and c.startswith("best@")]
    noise = f", told with noise std {args.noise:g}" if args.noise else ""
    # Two plain lines above the table: a rich title wraps (and splits phrases) at the table's width.
    heading = (f"{label} after N trials\n"
               f"mean +- standard error over {args.seeds} seeds{noise}; "
               f"table best {table_best:.4g}")
    if args.warm_start:
        heading += (f"\nNAME+ws: warm-started, per seed, from the records of a "
                    f"{args.warm_start_trials}-trial search by NAME on {args.warm_start} "
                    "(trials count the target's own only)")
    table = Table()
    table.add_column("controller")
    for mark in marks:
        table.add_column(f"@{mark}", justify="right")
    table.add_column("final reward", justify="right")
    for name in ("failed", "repeats", "distinct last 100"):
        table.add_column(f"{name}/search", justify="right")
    digits = 2 if abs(table_best) >= 10 else 4  # accuracy in percent or as a fraction
    for _, row in summary.iterrows():
        cells = [f"{row[f'best@{m} mean']:.{digits}f} +- {row[f'best@{m} se']:.{digits}f}"
                 for m in marks]
        final = f"{row['final reward mean']:.{digits}f} +- {row['final reward se']:.{digits}f}"
        table.add_row(str(row["controller"]), *cells, final, f"{row['failed']:.1f}",
                      f"{row['repeats']:.1f}", f"{row['distinct_late']:.1f}")
    console = Console(width=max(110, 22 * (len(marks) + 4)))
    console.print(heading, soft_wrap=True, highlight=False, markup=False)
    console.print(table)


def _print_hv(hv: Any, norm: Any, best: float) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = [c[len("hv@"):-len(" mean")] for c in hv.columns if c.endswith(" mean")]
    table = Table(title=f"hypervolume of the accuracy-cost points found (mean +- standard error); "
                  f"the whole table's front: {best:.4f}", caption=norm.describe())
    table.add_column("controller")
    for mark in marks:
        table.add_column(f"HV@{mark}", justify="right")
    for _, row in hv.iterrows():
        table.add_row(str(row["controller"]),
                      *[f"{row[f'hv@{m} mean']:.4f} +- {row[f'hv@{m} se']:.4f}" for m in marks])
    Console(width=110).print(table)
