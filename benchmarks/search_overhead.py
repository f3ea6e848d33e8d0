"""Overhead of the search machinery: a fixed 1 s evaluator, 40 trials at concurrency 2.

Runs, in one process, (1) `nas` search (controller, Searcher adapter, trainable, run folder) and
(2) plain Ray Tune with a function that sleeps the same time, and prints wall time of the search
phase against the ideal (trials x duration / concurrency), with Ray start-up on its own line.

    python benchmarks/search_overhead.py [--trials 40] [--seconds 1.0] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import ray
from ray import tune

from nas.config import parse_config
from nas.results import read_trials
from nas.runner.driver import start_search


def ours(trials: int, seconds: float, concurrency: int, root: str) -> tuple[float, float, float]:
    cfg = parse_config({
        "results_dir": root,
        "space": {"name": "nas.testing.fixtures:ToySpace"},
        "controller": {"name": "random"},
        "evaluator": {"dataset": "digits", "name": "nas.testing.fixtures:fixed_time",
                      "options": {"seconds": seconds}},
        "latency": {"mode": "skip"},
        "reward": {"target": 5.0},
        "search": {"trials": trials, "concurrency": concurrency, "cpus_per_trial": 1},
        "ray": {"num_cpus": concurrency},
    })
    result = start_search(cfg, name="overhead")
    assert result.trials == trials and result.failed == 0, result
    records = read_trials(result.run_dir)
    span = max(r["finished_at"] for r in records) - min(r["started_at"] for r in records)
    return result.ray_startup_s, result.search_s, span


def _sleeper(config: dict) -> None:
    time.sleep(config["seconds"])
    tune.report({"accuracy": 0.5 + config["width"] / 1000.0})


def plain_tune(trials: int, seconds: float, concurrency: int, root: str) -> tuple[float, float]:
    began = time.perf_counter()
    ray.init(address="local", num_cpus=concurrency, include_dashboard=False,
             log_to_driver=False)
    startup = time.perf_counter() - began
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        tuner = tune.Tuner(
            tune.with_resources(_sleeper, {"cpu": 1}),
            param_space={"seconds": seconds, "width": tune.choice([8, 16, 32, 64]),
                         "depth": tune.choice([1, 2, 3])},
            tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=concurrency,
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=root, name="plain", verbose=0))
        began = time.perf_counter()
        grid = tuner.fit()
        elapsed = time.perf_counter() - began
        assert len(grid) == trials and not grid.errors
    finally:
        ray.shutdown()
    return startup, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="mnas-overhead-")
    try:
        ideal = args.trials * args.seconds / args.concurrency
        startup, search, span = ours(args.trials, args.seconds, args.concurrency, root)
        rows = [("nas search", startup, search),
                ("plain Ray Tune", *plain_tune(args.trials, args.seconds, args.concurrency, root))]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    tune_s = rows[1][2]
    print(f"\n{args.trials} trials x {args.seconds:g} s at concurrency {args.concurrency}: "
          f"ideal search phase {ideal:.1f} s")
    print(f"{'runner':<16}{'ray start-up s':>16}{'search s':>10}{'efficiency':>12}{'vs Tune':>9}")
    for name, startup, search in rows:
        print(f"{name:<16}{startup:>16.1f}{search:>10.1f}{ideal / search:>12.2f}"
              f"{search / tune_s:>9.2f}")
    print(f"nas search, first trial start to last trial end: {span:.1f} s "
          f"(efficiency {ideal / span:.2f}; the rest is Tune start-up and worker imports)")
    print("efficiency = ideal / search phase (target >= 0.9); "
          "vs Tune = ours / Tune (target <= 1.2)")


if __name__ == "__main__":
    main()
