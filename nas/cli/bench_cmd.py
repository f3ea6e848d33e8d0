"""``nas bench``: controllers against a lookup table, in process (see :mod:`nas.bench`)."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from nas.errors import UsageError

__all__ = ["register"]

EXAMPLE = """example:
  nas bench --space nasbench201 --table nb201.csv --key arch_str --metric cifar10_test_acc \\
      --controllers random,evolution,rl --trials 100 --seeds 30 --out results/bench
  add --latency-column latency_ms --target-ms 8 [--alpha -0.07 --beta -0.07] for MnasNet's reward;
  pass controller options with --set evolution.population_size=20 (values are JSON)"""


def register(subparsers: Any) -> None:
    """Add the ``bench`` command."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark controllers on a lookup table (no training)",
        description="Run controllers against a CSV lookup table over many seeds and print the "
        "mean +- std of the best metric found after 10, 25, 50, 100, ... trials.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--space", default="nasbench201", help="registered space (default nasbench201)")
    p.add_argument("--table", required=True, help="CSV file, one row per architecture")
    p.add_argument("--key", default="arch_str",
                   help="column of the space's canonical strings (default arch_str)")
    p.add_argument("--metric", required=True, help="column to maximize (e.g. cifar10_test_acc)")
    p.add_argument("--latency-column", help="latency column: the reward becomes MnasNet's")
    p.add_argument("--target-ms", type=float, help="latency target T (with --latency-column)")
    p.add_argument("--alpha", type=float, default=-0.07, help="exponent under T (default -0.07)")
    p.add_argument("--beta", type=float, default=-0.07, help="exponent over T (default -0.07)")
    p.add_argument("--controllers", default="random,evolution,rl",
                   help="comma-separated controller names (default random,evolution,rl)")
    p.add_argument("--trials", type=int, default=100, help="trials per search (default 100)")
    p.add_argument("--seeds", type=int, default=30, help="searches per controller (default 30)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--workers", type=int, default=1,
                   help="proposals outstanding at once, told in random order (default 1)")
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
    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    if not controllers:
        raise UsageError(f"--controllers={args.controllers!r}: give at least one controller name")
    for flag, value, low in (("--trials", args.trials, 1), ("--seeds", args.seeds, 1),
                             ("--first-seed", args.first_seed, 0), ("--workers", args.workers, 1)):
        if value < low:
            raise UsageError(f"{flag}={value}: must be an integer >= {low}")
    if args.latency_column is None and args.target_ms is not None:
        raise UsageError("--target-ms: only meaningful with --latency-column")
    if args.latency_column is not None and (
        args.target_ms is None or not math.isfinite(args.target_ms) or args.target_ms <= 0
    ):
        raise UsageError(f"--target-ms={args.target_ms}: a positive latency target is required "
                         "with --latency-column")
    for flag, value in (("--alpha", args.alpha), ("--beta", args.beta)):
        if not math.isfinite(value):
            raise UsageError(f"{flag}={value}: must be finite")
    return controllers


def run(args: argparse.Namespace) -> int:
    """Handler of ``nas bench``."""
    from nas import CONTROLLERS, get_space
    from nas.bench import TableObjective, load_table, run_bench, summarize, write_outputs

    controllers = _check_args(args)
    for name in controllers:
        if name not in CONTROLLERS:
            raise UsageError(f"--controllers: unknown controller {name!r}; "
                             f"known: {', '.join(CONTROLLERS.names())}")
    options = parse_sets(args.set, controllers)
    space = get_space(args.space)
    table = load_table(args.table, key=args.key, metric=args.metric,
                       latency_column=args.latency_column)
    objective = TableObjective(space, table, key=args.key, metric=args.metric,
                               latency_column=args.latency_column, target_ms=args.target_ms,
                               alpha=args.alpha, beta=args.beta)
    curves = run_bench(objective, controllers, trials=args.trials, seeds=args.seeds,
                       first_seed=args.first_seed, workers=args.workers, options=options)
    summary = summarize(curves)
    _print_summary(summary, args, objective.best_metric)
    if args.out:
        paths = write_outputs(curves, summary, args.out, metric=args.metric)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _print_summary(summary: Any, args: argparse.Namespace, table_best: float) -> None:
    from rich.console import Console
    from rich.table import Table

    marks = [c[len("best@"):-len(" mean")] for c in summary.columns if c.endswith(" mean")
             and c.startswith("best@")]
    title = (f"best {args.metric} after N trials (mean +- std over {args.seeds} seeds); "
             f"table best {table_best:.4g}")
    table = Table(title=title)
    table.add_column("controller")
    for mark in marks:
        table.add_column(f"@{mark}", justify="right")
    table.add_column("final reward", justify="right")
    table.add_column("failed/search", justify="right")
    digits = 2 if abs(table_best) >= 10 else 4  # accuracy in percent or as a fraction
    for _, row in summary.iterrows():
        cells = [f"{row[f'best@{m} mean']:.{digits}f} +- {row[f'best@{m} std']:.{digits}f}"
                 for m in marks]
        final = f"{row['final reward mean']:.{digits}f} +- {row['final reward std']:.{digits}f}"
        table.add_row(str(row["controller"]), *cells, final, f"{row['failed']:.1f}")
    Console(width=max(100, 24 * (len(marks) + 2))).print(table)
