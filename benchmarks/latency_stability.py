"""Stability of latency measurements on this machine (target: Spearman >= 0.95 between passes).

Samples N MnasNet-space architectures (arXiv:1807.11626) and measures every one twice, the 2N
measurements in one random interleaved order (so slow drifts of the machine hit both passes
alike). Prints the Spearman rank correlation between the two passes and the median relative
difference |a - b| / mean(a, b), for the robust measurement of ``nas.latency.measure`` (warm-up,
rounds,
MAD outlier rejection, median of round medians) and, from the same run, for a naive estimate
(the mean of a few runs, one warm-up run) for comparison.

The naive estimate runs in the same process, so it shares the allocator setting
(``--no-steady-malloc`` shows both without it).

    python benchmarks/latency_stability.py [--archs 30] [--input-size 224] [--runtime torch]
                                           [--warmup 10] [--repeats 50] [--rounds 5]
                                           [--no-steady-malloc]

``--smoke`` runs the same path at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--archs 3 --input-size 32 --warmup 1 --repeats 6 --rounds 2`` unless given otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from _smoke import parse_with_smoke

from nas import get_space
from nas.latency.lut import spearman
from nas.latency.measure import LatencyConfig, measure_latency


def naive_ms(model: torch.nn.Module, shape: tuple[int, ...], runs: int) -> float:
    """Mean of ``runs`` timed forward passes after one warm-up run."""
    x = torch.randn(1, *shape)
    model.eval()
    with torch.inference_mode():
        model(x)
        t0 = time.perf_counter()
        for _ in range(runs):
            model(x)
    return (time.perf_counter() - t0) / runs * 1e3


def summary(a: list[float], b: list[float]) -> tuple[float, float, float]:
    rel = [abs(x - y) / ((x + y) / 2) for x, y in zip(a, b, strict=True)]
    return spearman(a, b), statistics.median(rel), max(rel)


def measure_twice(models: list, shape: tuple[int, ...], cfg: LatencyConfig, threads: int,
                  rng: np.random.Generator) -> tuple[dict[str, list[list[float]]], list[float]]:
    """Every model measured twice, all 2N measurements in one random order."""
    order = [(i, p) for i in range(len(models)) for p in (0, 1)]
    order = [order[j] for j in rng.permutation(len(order))]
    est = {k: [[0.0] * len(models) for _ in range(2)] for k in ("median", "p10", "naive")}
    spreads = []
    for i, p in order:
        r = measure_latency(models[i], shape, cfg)
        est["median"][p][i], est["p10"][p][i] = r.median_ms, r.p10_ms
        spreads.append(r.spread)
        torch.set_num_threads(threads)
        est["naive"][p][i] = naive_ms(models[i], shape, runs=5)
    return est, spreads


SMOKE = {"archs": 3, "input_size": 32, "warmup": 1, "repeats": 6, "rounds": 2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=30)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", default="torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-steady-malloc", action="store_true",
                        help="leave glibc malloc as is (see nas.latency.measure.steady_allocator)")
    defaults = LatencyConfig()
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    args = parse_with_smoke(parser, argv, SMOKE)
    cfg = LatencyConfig(threads=args.threads, runtime=args.runtime, warmup=args.warmup,
                        repeats=args.repeats, rounds=args.rounds,
                        steady_malloc=not args.no_steady_malloc)
    space = get_space("mnasnet", input_size=args.input_size)
    rng = np.random.default_rng(args.seed)
    models = [space.build(space.sample(rng)) for _ in range(args.archs)]
    load, t0 = os.getloadavg()[0], time.perf_counter()
    est, spreads = measure_twice(models, space.input_shape(), cfg, args.threads, rng)
    print(f"mnasnet space, {args.archs} archs, input {args.input_size}, batch 1, "
          f"{args.threads} thread(s), runtime {args.runtime}, steady_malloc {cfg.steady_malloc}; "
          f"robust = warmup {cfg.warmup}, {cfg.repeats} runs in {cfg.rounds} rounds; "
          f"naive = eager-torch mean of 5 runs; wall {time.perf_counter() - t0:.0f} s; "
          f"load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end "
          f"({os.cpu_count()} CPUs)")
    lat = sorted(est["median"][0])
    print(f"latency range over archs: {lat[0]:.2f} .. {lat[-1]:.2f} ms "
          f"(median {statistics.median(lat):.2f}); median in-measurement spread "
          f"(p90-p10)/median: {statistics.median(spreads):.1%}")
    print(f"{'estimator':22s} {'spearman':>9s} {'median rel diff':>16s} {'max rel diff':>13s}")
    for name, key in (("median_ms (nas)", "median"), ("p10_ms (nas)", "p10"),
                      ("naive mean of 5", "naive")):
        rho, med, worst = summary(*est[key])
        print(f"{name:22s} {rho:9.4f} {med:16.2%} {worst:13.2%}")


if __name__ == "__main__":
    main()
