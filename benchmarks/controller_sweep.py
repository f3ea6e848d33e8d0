"""Small sweeps of controller options on the real NAS-Bench-201 table: where the defaults come from.

Each ``--grid`` entry is ``NAME`` or ``NAME:{json options}``; every entry searches the table for
``--trials`` trials over ``--seeds`` seeds (repeated proposals answered from the records) and the
table shows the mean +- standard error of the best test accuracy at 25, 50, 100, 200, 300 trials,
and the distinct architectures proposed in the last 100 trials. Run from the repository root::

    python benchmarks/controller_sweep.py --grid evolution 'evolution:{"population_size": 20}' \\
        --trials 300 --seeds 30
    python benchmarks/controller_sweep.py --grid rl 'rl:{"entropy_weight": 0.01}' --noise 0.3

The defaults shipped are the best entries of the sweeps recorded in docs/reference/controllers.md.

``--smoke`` runs the same path at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--grid random 'evolution:{"population_size": 10}' --trials 30 --seeds 2`` unless
given otherwise. It reads the real table as ever.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
from _smoke import parse_with_smoke

from nas import get_space
from nas.search.bench import TableObjective, checkpoints, load_table, run_bench
from nas.search.bench_report import summarize

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_cifar10.csv"


def parse_entry(text: str) -> tuple[str, str, dict]:
    """``"rl:{...}"`` -> (label, controller name, options)."""
    name, sep, raw = text.partition(":")
    options = json.loads(raw) if sep else {}
    if not isinstance(options, dict):
        raise SystemExit(f"--grid {text!r}: options must be a JSON object")
    return text, name, options


SMOKE = {"grid": ["random", 'evolution:{"population_size": 10}'], "trials": 30, "seeds": 2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", nargs="+", help="NAME or NAME:{json options} (required)")
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--metric", default="cifar10_test_acc")
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parse_with_smoke(parser, argv, SMOKE)
    if not args.grid:
        parser.error("the following arguments are required: --grid")

    space = get_space("nasbench201")
    table = load_table(args.table, key="arch_str", metric=args.metric)
    objective = TableObjective(space, table, key="arch_str", metric=args.metric)
    marks = [m for m in checkpoints(args.trials) if m >= 25] or [args.trials]
    rows = []
    for label, name, options in map(parse_entry, args.grid):
        started = time.perf_counter()
        curves = run_bench(objective, [name], trials=args.trials, seeds=args.seeds,
                           noise=args.noise, workers=args.workers, options={name: options})
        s = summarize(curves, marks).iloc[0]
        row = {"entry": label}
        row.update({f"@{m}": f"{s[f'best@{m} mean']:.2f} +- {s[f'best@{m} se']:.2f}"
                    for m in marks})
        row["distinct last 100"] = f"{s['distinct_late']:.0f}"
        row["repeats"] = f"{s['repeats']:.0f}"
        row["s"] = f"{time.perf_counter() - started:.0f}"
        rows.append(row)
        print(pd.DataFrame([row]).to_string(index=False, header=len(rows) == 1), flush=True)
    print(f"\n{args.seeds} seeds, {args.trials} trials, noise {args.noise:g}, "
          f"workers {args.workers}, table {Path(args.table).name}")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
