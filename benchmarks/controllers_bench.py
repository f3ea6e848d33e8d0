"""Controller quality on a structured NAS-Bench-201 table, and controller overhead per trial.

Run from the repository root::

    python benchmarks/controllers_bench.py            # 100 trials x 30 seeds, ~30 s on 2 cores
    python benchmarks/controllers_bench.py --seeds 10 --overhead-trials 200   # quicker

Quality: a table generated over the whole NAS-Bench-201 space (15,625 cells) by
:func:`nas.bench.synthetic_table` (per-edge main effects + pairwise interactions + noise, not pure
noise); each controller searches it for ``--trials`` trials with ``--seeds`` seeds and the table
shows the mean +- std of the best accuracy found after 10, 25, 50, 100 trials, with the gain over
random search and its standard error. A second table uses MnasNet's reward with the latency column
(target: the table's median latency), nsga2 included.

Overhead: median, mean and 95th percentile of the wall time of one ask + tell on the default
MnasNet space (42 decisions) with a cheap synthetic reward; the rl mean includes its PPO updates.
Target: <= 20 ms per trial.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch

from nas import CONTROLLERS, get_space
from nas.bench import TableObjective, checkpoints, run_bench, synthetic_table

QUALITY = ("random", "evolution", "rl")
TARGET_MS = 20.0


def _fmt(mean: float, std: float) -> str:
    return f"{mean:6.2f} +- {std:4.2f}"


def quality_table(objective: TableObjective, controllers: tuple[str, ...], trials: int,
                  seeds: int, options: dict | None = None, column: str = "best_metric") -> str:
    """Run the controllers and format mean +- std at each checkpoint, plus the gain over random."""
    started = time.perf_counter()
    curves = run_bench(objective, list(controllers), trials=trials, seeds=seeds, options=options)
    marks = checkpoints(trials)
    final = curves[curves["trial"] == trials].groupby("controller", sort=False)[column]
    base = final.get_group("random") if "random" in controllers else None
    rows = []
    for name, group in curves.groupby("controller", sort=False):
        at = group[group["trial"].isin(marks)].groupby("trial")[column]
        row = {"controller": name}
        row.update({f"@{m}": _fmt(at.mean()[m], at.std(ddof=0)[m]) for m in marks})
        if base is not None:
            mine = final.get_group(name)
            se = np.sqrt(mine.var() / len(mine) + base.var() / len(base))
            row[f"gain@{trials} vs random"] = f"{mine.mean() - base.mean():+.2f} (se {se:.2f})"
        rows.append(row)
    elapsed = time.perf_counter() - started
    text = pd.DataFrame(rows).to_string(index=False)
    return f"{text}\n({len(controllers)} controllers x {seeds} seeds in {elapsed:.1f} s)"


def overhead_table(trials: int) -> str:
    """Median / mean / p95 ms per ask+tell of every registered controller on the MnasNet space."""
    try:
        space = get_space("mnasnet")
    except Exception:  # the mnasnet space may be missing in a stripped install
        space = get_space("nasbench201")
    rows = []
    for name in CONTROLLERS.names():
        ctrl = CONTROLLERS.create(name, space=space, seed=0)
        times = np.empty(trials)
        for t in range(trials):
            start = time.perf_counter()
            proposal = ctrl.ask()
            score = float(sum(proposal.arch.indices))
            latency = 1.0 + float(sum(proposal.arch.indices[::6]))
            result = {"accuracy": score, "latency_ms": latency} if ctrl.wants_metrics else score
            ctrl.tell(proposal, result)
            times[t] = time.perf_counter() - start
        ms = times * 1e3
        verdict = "ok" if np.median(ms) <= TARGET_MS and ms.mean() <= TARGET_MS else "SLOW"
        rows.append({"controller": name, "median ms": f"{np.median(ms):.2f}",
                     "mean ms": f"{ms.mean():.2f}", "p95 ms": f"{np.percentile(ms, 95):.2f}",
                     "max ms": f"{ms.max():.1f}", f"<= {TARGET_MS:g} ms": verdict})
    header = f"space {space.name!r}: {len(space.choices())} decisions, {trials} trials each"
    return header + "\n" + pd.DataFrame(rows).to_string(index=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--table-seed", type=int, default=0)
    parser.add_argument("--overhead-trials", type=int, default=500)
    args = parser.parse_args()

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"python {platform.python_version()}")
    space = get_space("nasbench201")
    table = synthetic_table(space, seed=args.table_seed)
    print(f"\n== quality: best accuracy (%) on a synthetic NAS-Bench-201 table "
          f"(seed {args.table_seed}, table best {table['accuracy'].max():.2f}, "
          f"median {table['accuracy'].median():.2f})")
    objective = TableObjective(space, table, key="arch_str", metric="accuracy")
    print(quality_table(objective, QUALITY, args.trials, args.seeds))

    target = float(table["latency_ms"].median())
    print(f"\n== quality: best MnasNet reward ACC * (LAT / {target:.2f} ms) ^ -0.07 "
          "(nsga2 tells accuracy and latency; population_size=20)")
    objective = TableObjective(space, table, key="arch_str", metric="accuracy",
                               latency_column="latency_ms", target_ms=target)
    print(quality_table(objective, (*QUALITY, "nsga2"), args.trials, args.seeds,
                        options={"nsga2": {"population_size": 20}}, column="best_reward"))

    print("\n== overhead: wall time of one ask + tell (rl: PPO updates included in the mean)")
    print(overhead_table(args.overhead_trials))


if __name__ == "__main__":
    main()
