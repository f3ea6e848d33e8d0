"""Every mnas controller next to Optuna's samplers, side by side on the real NAS-Bench-201 table.

Run from the repository root (the table is ``../shared/data/nb201_cifar10.csv``)::

    python benchmarks/controllers_bench.py                  # 30 seeds, 300 trials: ~15 min, 2 cores
    python benchmarks/controllers_bench.py --seeds 10 --sections quality,overhead   # quicker

Sections (``--sections``, comma-separated):

* ``quality``: mean +- standard error over seeds of the best CIFAR-10 test accuracy found after
  10, 25, 50, 100, 200, 300 trials. mnas controllers run through :mod:`nas.search.bench` (a trial
  is a new
  architecture: repeated proposals are answered from the records); the peers, Optuna's
  ``TPESampler`` and ``RandomSampler`` with default settings, are driven directly with Optuna's
  own ask/tell (every ask is a trial, as a user of Optuna gets). Same seeds, same budgets. Also:
  distinct architectures proposed in trials 201-300, and Welch's t-test of bananas against the
  TPE peer at 50 and 100 trials.
* ``noise``: the same with seeded Gaussian noise (std ``--noise``, default 0.3 points, NB201's
  seed-to-seed spread) on what every searcher is told; curves report the true accuracy of the
  architecture the searcher was told was best.
* ``mo``: accuracy against the parameter count of the network: hypervolume of the points found
  at 100 and 300 trials (normalisation printed) for nsga2, bananas and tpe (multi-objective), with
  random search and MnasNet's scalar reward for the scalar controllers.
* ``overhead``: median and p95 wall time of one trial's ask + tell (repeats answered included)
  over a 300-trial search, per controller, on NAS-Bench-201 and on the default MnasNet space.

``--smoke`` runs every section at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--trials 12 --seeds 2 --mo-seeds 2`` unless given otherwise, on the real table.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from _smoke import parse_with_smoke
from scipy import stats

from nas import CONTROLLERS, get_space
from nas.search.bench import TableObjective, checkpoints, load_table, run_bench
from nas.search.bench_report import HVNorm, hypervolume, hypervolume_table

TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_cifar10.csv"
METRIC = "cifar10_test_acc"
PEERS = {"optuna-tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
         "optuna-random": lambda seed: optuna.samplers.RandomSampler(seed=seed)}


def peer_curves(objective: TableObjective, name: str, trials: int, seeds: int,
                noise: float) -> pd.DataFrame:
    """An Optuna sampler driven directly: one categorical parameter per edge, ask/tell."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = objective.space
    labels = {label: [str(v) for v in c.options] for label, c in space.choices().items()}
    frames = []
    for seed in range(seeds):
        study = optuna.create_study(direction="maximize", sampler=PEERS[name](seed))
        noise_rng = np.random.default_rng([seed, 3571])
        true, best_told, incumbent = [], -math.inf, math.nan
        curve = np.empty(trials)
        for t in range(trials):
            trial = study.ask()
            values = {k: trial.suggest_categorical(k, opts) for k, opts in labels.items()}
            metrics = objective.evaluate(space.validate(values))
            if metrics is None:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                told = metrics["accuracy"] + (noise_rng.normal(0, noise) if noise else 0.0)
                study.tell(trial, told)
                true.append(metrics["accuracy"])
                if told > best_told:
                    best_told, incumbent = told, metrics["accuracy"]
            curve[t] = incumbent
        frames.append(pd.DataFrame({"controller": name, "seed": seed,
                                    "trial": np.arange(1, trials + 1), "best_metric": curve}))
    return pd.concat(frames, ignore_index=True)


def quality(objective: TableObjective, trials: int, seeds: int, noise: float) -> None:
    """Every registered controller and both peers; mean +- se at each mark."""
    marks = checkpoints(trials)
    started = time.perf_counter()
    ours = run_bench(objective, CONTROLLERS.names(), trials=trials, seeds=seeds, noise=noise)
    peers = pd.concat([peer_curves(objective, p, trials, seeds, noise) for p in PEERS])
    curves = pd.concat([ours, peers], ignore_index=True)
    rows, finals = [], {}
    for name, group in curves.groupby("controller", sort=False):
        row = {"controller": name}
        for m in marks:
            values = group.loc[group["trial"] == m, "best_metric"]
            finals[(name, m)] = values.to_numpy()
            row[f"@{m}"] = f"{values.mean():.2f} +- {values.std(ddof=1) / np.sqrt(len(values)):.2f}"
        if "distinct_late" in group and group["distinct_late"].notna().any() and trials >= 300:
            row["distinct 201-300"] = f"{group.groupby('seed')['distinct_late'].first().mean():.0f}"
        rows.append(row)
    print(pd.DataFrame(rows).fillna("").to_string(index=False))
    for m in (50, 100):
        if ("bananas", m) in finals:
            a, b = finals[("bananas", m)], finals[("optuna-tpe", m)]
            p = stats.ttest_ind(a, b, equal_var=False).pvalue
            print(f"bananas - optuna-tpe @{m}: {a.mean() - b.mean():+.3f} points "
                  f"(Welch p = {p:.3g})")
    print(f"({len(rows)} searchers x {seeds} seeds x {trials} trials in "
          f"{time.perf_counter() - started:.0f} s)")


def multi_objective(space, table, trials: int, seeds: int) -> None:
    """Hypervolume of the accuracy-parameters points found, scalar and multi-objective."""
    probe = TableObjective(space, table, key="arch_str", metric=METRIC, cost="params",
                           target_ms=1.0)
    target = float(np.median(probe.costs()))
    objective = TableObjective(space, table, key="arch_str", metric=METRIC, cost="params",
                               target_ms=target)
    norm = HVNorm.of(objective.metrics(), objective.costs())
    print(f"cost: parameters of the network; MnasNet reward ACC * (params / {target:.0f}) ^ -0.07 "
          "for the scalar controllers; nsga2 and tpe search both objectives")
    print(norm.describe())
    curves = run_bench(objective, ["random", "evolution", "bananas", "nsga2", "tpe"],
                       trials=trials, seeds=seeds)
    hv = hypervolume_table(curves, norm, marks=(100, 300))
    cols = [c for c in hv.columns if c.endswith(" mean")]
    for col in cols:
        se = hv[col.replace(" mean", " se")]
        hv[col.replace(" mean", "")] = [f"{m:.4f} +- {s:.4f}" for m, s in zip(hv[col], se,
                                                                              strict=True)]
    shown = ["controller"] + [c.replace(" mean", "") for c in cols]
    print(hv[shown].to_string(index=False))
    best = hypervolume(objective.metrics(), objective.costs(), norm)
    print(f"the whole table's front: {best:.4f}")


def overhead(space_name: str, table: TableObjective | None, trials: int) -> None:
    """Median and p95 ms of one trial's ask + tell (repeats answered included)."""
    space = get_space(space_name)
    rows = []
    for name in CONTROLLERS.names():
        ctrl = CONTROLLERS.create(name, space=space, seed=0)
        times = np.empty(trials)
        seen: dict = {}
        for t in range(trials):
            start = time.perf_counter()
            while True:
                proposal = ctrl.ask()
                if proposal.arch.indices not in seen:
                    break
                ctrl.tell(proposal, seen[proposal.arch.indices])
            score = _score(table, proposal.arch)
            result = {"accuracy": score, "latency_ms": 1.0 + sum(proposal.arch.indices[::3]),
                      "params": 1.0 + sum(proposal.arch.indices[::2])} \
                if ctrl.wants_metrics else score
            ctrl.tell(proposal, result)
            seen[proposal.arch.indices] = result
            times[t] = time.perf_counter() - start
        ms = times * 1e3
        rows.append({"controller": name, "median ms": f"{np.median(ms):.2f}",
                     "p95 ms": f"{np.percentile(ms, 95):.1f}", "mean ms": f"{ms.mean():.2f}",
                     "median <= 20 ms": "yes" if np.median(ms) <= 20 else "NO"})
    print(f"space {space_name!r}: {len(space.choices())} decisions, {trials} trials told")
    print(pd.DataFrame(rows).to_string(index=False))


def _score(table: TableObjective | None, arch) -> float:
    if table is not None:
        metrics = table.evaluate(arch)
        return metrics["accuracy"] if metrics else 10.0
    return float(sum((k * (d + 3)) % 5 for d, k in enumerate(arch.indices)))


SMOKE = {"trials": 12, "seeds": 2, "mo_seeds": 2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(TABLE))
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--mo-seeds", type=int, default=10)
    parser.add_argument("--sections", default="quality,noise,mo,overhead")
    args = parse_with_smoke(parser, argv, SMOKE)
    sections = set(args.sections.split(","))

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}, optuna {optuna.__version__}")
    space = get_space("nasbench201")
    table = load_table(args.table, key="arch_str", metric=METRIC)
    objective = TableObjective(space, table, key="arch_str", metric=METRIC)
    print(f"table {Path(args.table).name}: {len(table)} cells, best {objective.best_metric:.2f}")
    if "quality" in sections:
        print(f"\n== best test accuracy (%) after N trials, mean +- se over {args.seeds} seeds")
        quality(objective, args.trials, args.seeds, 0.0)
    if "noise" in sections:
        print(f"\n== the same, told with Gaussian noise of std {args.noise:g} points")
        quality(objective, args.trials, args.seeds, args.noise)
    if "mo" in sections:
        print(f"\n== multi-objective: hypervolume, mean +- se over {args.mo_seeds} seeds")
        multi_objective(space, table, args.trials, args.mo_seeds)
    if "overhead" in sections:
        print("\n== overhead: one trial's ask + tell")
        overhead("nasbench201", objective, args.trials)
        overhead("mnasnet", None, args.trials)


if __name__ == "__main__":
    main()
