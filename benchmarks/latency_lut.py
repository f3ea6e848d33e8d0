"""Accuracy of the latency lookup table against end-to-end measurement.

A lookup table (``nas.latency.lut.LatencyTable``) times every distinct unit (stem, each layer
configuration at its input resolution, head) of the sampled MnasNet-space architectures once and
predicts a network's latency as the sum of its units. This benchmark fills the table, measures the
same architectures end to end, and prints the Spearman rank correlation and the median relative
error |predicted - measured| / measured, plus the time each approach took; then it calibrates the
table's scale on ``--calibrate`` other architectures and prints the errors again.

    python benchmarks/latency_lut.py [--archs 20] [--calibrate 5] [--input-size 224]
                                     [--runtime torch] [--warmup 10] [--repeats 50] [--rounds 5]

``--smoke`` runs the same path at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--archs 3 --calibrate 2 --input-size 32 --warmup 1 --repeats 6 --rounds 2`` unless
given otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _smoke import parse_with_smoke

from nas import get_space
from nas.latency.lut import LatencyTable, lut_report, measure_arch
from nas.latency.measure import LatencyConfig


def _row(name: str, report: dict) -> None:
    rel = [r["rel_error"] for r in report["rows"]]
    print(f"{name:22s} {report['spearman']:9.4f} {report['median_rel_error']:17.2%} "
          f"{statistics.median(rel):18.2%} {max(abs(r) for r in rel):14.2%}")


def _rows(report: dict, n: int) -> None:
    print(f"{'arch':18s} {'sum of units ms':>16s} {'measured ms':>12s} {'rel err':>8s}")
    for row in sorted(report["rows"], key=lambda r: r["measured_ms"])[:: max(1, n // 8)]:
        print(f"{row['arch_key']:18s} {row['predicted_ms']:16.2f} {row['measured_ms']:12.2f} "
              f"{row['rel_error']:8.1%}")


SMOKE = {"archs": 3, "calibrate": 2, "input_size": 32, "warmup": 1, "repeats": 6, "rounds": 2}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", default="torch")
    parser.add_argument("--calibrate", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--save", help="write the table as JSON here")
    defaults = LatencyConfig()
    parser.add_argument("--warmup", type=int, default=defaults.warmup)
    parser.add_argument("--repeats", type=int, default=defaults.repeats)
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    args = parse_with_smoke(parser, argv, SMOKE)
    cfg = LatencyConfig(threads=args.threads, runtime=args.runtime, warmup=args.warmup,
                        repeats=args.repeats, rounds=args.rounds)
    space = get_space("mnasnet", input_size=args.input_size)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    table = LatencyTable(cfg)
    t0 = time.perf_counter()
    table.fill(space, archs)
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    measured = {a.key: measure_arch(space, a, cfg).median_ms for a in archs}
    measure_s = time.perf_counter() - t0
    report = lut_report(space, archs, table, measure=lambda a: measured[a.key])
    units = [len(space.latency_units(a)) for a in archs]
    print(f"mnasnet space, {args.archs} archs, input {args.input_size}, batch 1, "
          f"{args.threads} thread(s), runtime {args.runtime}; load average "
          f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    print(f"units per network: {statistics.median(units):.0f} (median); distinct units timed: "
          f"{len(table)}; table fill {fill_s:.1f} s, end-to-end measurement {measure_s:.1f} s")
    print(f"{'table':22s} {'spearman':>9s} {'median |rel err|':>17s} {'median signed err':>18s} "
          f"{'max |rel err|':>14s}")
    _row("sum of units", report)
    if args.calibrate:
        extra = [space.sample(rng) for _ in range(args.calibrate)]
        scale = table.calibrate(space, extra)
        calibrated = lut_report(space, archs, table, measure=lambda a: measured[a.key])
        _row(f"calibrated (x{scale:.3f})", calibrated)
    _rows(report, args.archs)
    if args.save:
        table.save(args.save)


if __name__ == "__main__":
    main()
