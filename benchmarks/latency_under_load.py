"""Latency rankings while children train on the same machine: as today, quiet windows, finalists.

Issue 13: a search measures latencies while other children train beside them, and on a 2-core
machine one training process beside a measurement reorders children (Spearman 0.91 against a
quiet machine). This benchmark measures the same N MnasNet children (arXiv:1807.11626, default
skeleton, 224 px, batch 1, one thread), in one run:

- **reference**: on the quiet machine, the finalist procedure (interleaved passes, every run
  paired with a reference network: :mod:`nas.latency.paired`), and the same again, paired and
  unpaired (what the machine's own noise costs: the ceiling of every row below);
- with a training load beside them (a process training a quick-start child on digits, one
  thread, the way a second search worker does):
  - **as today**: one measurement each, no quiet window;
  - **quiet mode**: one measurement each in a quiet window (the trainer pauses meanwhile);
  - **finalists re-measured**: the end-of-search procedure (interleaved passes, quiet windows),
    unpaired and paired (the default);

and prints Spearman's rho and the median relative difference against the reference (target for
the final ranking: rho >= 0.98). Then it prices quiet windows with two worker processes that
evaluate quick-start children end to end as a 2-worker search does (latency at ``--input-size``,
then ``--epochs`` (six) epochs on digits, on ``--max-train`` of its training images (all)), once
without and once with quiet windows: the training time lost is the trainers' paused seconds over
their training seconds (target < 10%), beside the wall times.

    python benchmarks/latency_under_load.py [--children 20] [--input-size 224] [--passes 3]
                                            [--cost-children 6] [--epochs 6] [--max-train N]
                                            [--seed 0] [--only ranking|cost] [--json]

``--smoke`` runs both parts at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--children 3 --input-size 32 --warmup 1 --repeats 4 --rounds 2 --passes 1
--cost-children 2 --epochs 1 --max-train 64`` unless given otherwise.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _smoke import parse_with_smoke

from nas import get_space
from nas.latency.conditions import measuring, training
from nas.latency.final import remeasure_archs
from nas.latency.lut import spearman
from nas.latency.measure import LatencyConfig, measure_latency

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"


def _trainer(folder: str, stop: Any, out: Any) -> None:
    """The training load: a quick-start child trained on digits until ``stop`` is set."""
    from nas.evaluation.data import load_dataset
    from nas.evaluation.evaluate import space_for_dataset
    from nas.evaluation.train import TrainConfig, train

    data = load_dataset("digits")
    space = space_for_dataset("mnasnet", data, **_quickstart()["space"]["options"])
    model = space.build(space.sample(np.random.default_rng(0)))
    steps = [0]
    with training(folder) as marker:
        def pause() -> None:
            marker.pause_point()
            steps[0] += 1

        config = TrainConfig(epochs=100000, batch_size=64, lr=0.1, threads=1)
        out.put("ready")
        train(model, data, config, pause=pause, callback=lambda _m: stop.is_set())
    out.put({"steps": steps[0], "paused_s": marker.paused_s, "pauses": marker.pauses})


def _quickstart() -> dict[str, Any]:
    from nas.config import load_config

    return load_config(QUICKSTART).to_dict()


def once(models: dict[str, Any], shape: tuple[int, ...], cfg: LatencyConfig, folder: str,
         quiet: bool, rng: np.random.Generator) -> tuple[dict[str, float], list[dict]]:
    """One measurement of every model, in a random order (in quiet windows or not)."""
    keys = list(models)
    out, conditions = {}, []
    for i in rng.permutation(len(keys)):
        with measuring(folder, quiet=quiet, timeout_s=cfg.quiet_timeout_s) as cond:
            out[keys[i]] = measure_latency(models[keys[i]], shape, cfg).median_ms
        conditions.append(cond)
    return out, conditions


def compare(ref: dict[str, float], got: dict[str, float]) -> dict[str, float]:
    keys = sorted(ref)
    a, b = [ref[k] for k in keys], [got[k] for k in keys]
    return {"spearman": spearman(a, b),
            "median_diff": statistics.median(abs(y - x) / x for x, y in zip(a, b, strict=True)),
            "median_ratio": statistics.median(y / x for x, y in zip(a, b, strict=True))}


def ranking(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part one: the same children in every mode against the quiet reference."""
    space = get_space("mnasnet", input_size=args.input_size)
    rng = np.random.default_rng(args.seed)
    archs = {}
    while len(archs) < args.children:
        arch = space.sample(rng)
        archs[arch.key] = arch
    cfg = LatencyConfig(threads=1, warmup=args.warmup, repeats=args.repeats, rounds=args.rounds)
    models = {k: space.build(a) for k, a in archs.items()}
    with tempfile.TemporaryDirectory(prefix="mnas-bench-activity-",
                                     ignore_cleanup_errors=True) as folder:
        return _ranking(args, space, archs, models, cfg, folder, rng)


def _ranking(args: argparse.Namespace, space: Any, archs: dict[str, Any], models: dict[str, Any],
             cfg: LatencyConfig, folder: str, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    t0 = time.perf_counter()
    ref = remeasure_archs(space, list(archs.values()), cfg, passes=args.passes, activity=folder,
                          seed=args.seed, paired=True)
    reference = {k: v["latency_ms"] for k, v in ref.items()}
    rows.append({"mode": "reference (quiet machine, paired finalist procedure)", "load": False,
                 "seconds": time.perf_counter() - t0, **compare(reference, reference)})
    for name, paired in (("reference again (quiet, paired: the machine's noise)", True),
                         ("reference again (quiet, unpaired)", False)):
        t0 = time.perf_counter()  # the same procedure again: what the machine's own noise costs
        again = remeasure_archs(space, list(archs.values()), cfg, passes=args.passes,
                                activity=folder, seed=args.seed + 2, paired=paired)
        rows.append({"mode": name, "load": False, "seconds": time.perf_counter() - t0,
                     **compare(reference, {k: v["latency_ms"] for k, v in again.items()})})
    rows += under_load(space, archs, models, cfg, folder, reference, args, rng)
    return rows


def under_load(space: Any, archs: dict[str, Any], models: dict[str, Any], cfg: LatencyConfig,
               folder: str, reference: dict[str, float], args: argparse.Namespace,
               rng: np.random.Generator) -> list[dict[str, Any]]:
    """The three modes with the training load running beside the measurements."""
    ctx = mp.get_context("spawn")
    stop, queue = ctx.Event(), ctx.Queue()
    load = ctx.Process(target=_trainer, args=(folder, stop, queue))
    load.start()
    if queue.get(timeout=300) != "ready":
        raise SystemExit("the training load did not start")
    rows = []
    try:
        for name, quiet in (("as today (no quiet window)", False), ("quiet mode", True)):
            t0 = time.perf_counter()
            got, conds = once(models, space.input_shape(), cfg, folder, quiet, rng)
            busy = sum(1 for c in conds if c.get("training_children"))
            rows.append({"mode": name, "load": True, "seconds": time.perf_counter() - t0,
                         "contended": busy, **compare(reference, got)})
        for name, paired in (("finalists re-measured, unpaired", False),
                             ("finalists re-measured (paired, the default)", True)):
            t0 = time.perf_counter()
            final = remeasure_archs(space, list(archs.values()), cfg, passes=args.passes,
                                    activity=folder, seed=args.seed + 1, paired=paired)
            got = {k: v["latency_ms"] for k, v in final.items()}
            busy = sum(1 for v in final.values() if v["conditions"]["training_children"])
            rows.append({"mode": name, "load": True, "seconds": time.perf_counter() - t0,
                         "contended": busy, **compare(reference, got)})
    finally:
        stop.set()
        trainer = queue.get(timeout=300)
        load.join(timeout=300)
    rows[-1]["trainer"] = trainer
    return rows


def _worker(keys: list[dict], input_size: int, quiet: bool, folder: str, out: Any,
            epochs: int = 6, max_train: int | None = None) -> None:
    """One search worker: its children evaluated end to end (latency, then ``epochs``)."""
    from nas.config import parse_config
    from nas.evaluation.evaluate import evaluate_arch, get_dataset, space_for_dataset
    from nas.experiment import eval_settings

    raw = _quickstart()
    raw["latency"] = {**raw["latency"], "input_size": input_size, "quiet": quiet}
    raw["reward"] = {"preset": "soft", "target": 1.0}
    raw["evaluator"] = {**raw["evaluator"], "epochs": epochs, "max_train": max_train}
    settings = eval_settings(parse_config(raw))
    data = get_dataset(settings)
    space = space_for_dataset("mnasnet", data, **raw["space"]["options"])
    for decisions in keys:
        record = evaluate_arch(space, decisions, settings, dataset=data, activity=folder)
        out.put({k: record["timings"].get(k, 0.0) for k in ("train_s", "train_paused_s",
                                                           "latency_s", "total_s")})
    out.put(None)


def cost(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part two: two workers evaluating quick-start children, without and with quiet windows."""
    from nas.evaluation.data import load_dataset
    from nas.evaluation.evaluate import space_for_dataset

    space = space_for_dataset("mnasnet", load_dataset("digits"),
                              **_quickstart()["space"]["options"])
    rng = np.random.default_rng(args.seed)
    children = [space.sample(rng).to_dict()["decisions"] for _ in range(args.cost_children)]
    rows = []
    for quiet in (False, True):
        with tempfile.TemporaryDirectory(prefix="mnas-bench-cost-",
                                         ignore_cleanup_errors=True) as folder:
            ctx = mp.get_context("spawn")
            queue = ctx.Queue()
            procs = [ctx.Process(target=_worker, args=(children[w::2], args.input_size, quiet,
                                                       folder, queue, args.epochs,
                                                       args.max_train)) for w in range(2)]
            t0 = time.perf_counter()
            for p in procs:
                p.start()
            timings, ended = [], 0
            while ended < 2:
                item = queue.get(timeout=1800)
                ended += item is None
                if item is not None:
                    timings.append(item)
            for p in procs:
                p.join(timeout=300)
        train_s = sum(t["train_s"] for t in timings)
        paused = sum(t["train_paused_s"] for t in timings)
        rows.append({"quiet": quiet, "children": len(timings), "wall_s": time.perf_counter() - t0,
                     "train_s": train_s, "paused_s": paused, "lost": paused / train_s,
                     "latency_s": sum(t["latency_s"] for t in timings)})
    return rows


SMOKE = {"children": 3, "input_size": 32, "warmup": 1, "repeats": 4, "rounds": 2, "passes": 1,
         "cost_children": 2, "epochs": 1, "max_train": 64}


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--children", type=int, default=20)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--cost-children", type=int, default=6)
    p.add_argument("--epochs", type=int, default=6, help="training epochs of a cost child")
    p.add_argument("--max-train", type=int,
                   help="a cost child trains on this many digits images (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("ranking", "cost"), help="run one of the two parts")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parse_with_smoke(p, argv, SMOKE)
    for name in ("children", "input_size", "repeats", "rounds", "passes", "cost_children",
                 "epochs"):
        if getattr(args, name) < (2 if name in ("children", "cost_children") else 1):
            p.error(f"--{name.replace('_', '-')}={getattr(args, name)}: too small")
    if args.max_train is not None and args.max_train < 1:
        p.error(f"--max-train={args.max_train}: too small")
    if args.rounds > args.repeats:
        p.error(f"--rounds={args.rounds}: must be <= --repeats={args.repeats}")
    return args


def print_ranking(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    print(f"{args.children} MnasNet children at {args.input_size} px, batch 1, one thread; "
          f"{args.repeats} repeats in {args.rounds} rounds; finalists: {args.passes} passes")
    print(f"{'mode':53s} {'spearman':>8s} {'med diff':>8s} {'ratio':>6s} {'contended':>9s} "
          f"{'seconds':>7s}")
    for r in rows:
        print(f"{r['mode']:53s} {r['spearman']:8.3f} {r['median_diff']:8.1%} "
              f"{r['median_ratio']:6.3f} {r.get('contended', '-')!s:>9s} {r['seconds']:7.1f}")
    t = rows[-1]["trainer"]
    print(f"training load: {t['steps']} steps, paused {t['pauses']} times for "
          f"{t['paused_s']:.1f} s", flush=True)


def print_cost(args: argparse.Namespace, prices: list[dict[str, Any]]) -> None:
    images = "" if args.max_train is None else f" ({args.max_train} images)"
    print(f"\n2 workers x {args.cost_children // 2} quick-start children (latency at "
          f"{args.input_size} px, {args.epochs} epochs on digits{images}):")
    print(f"{'quiet windows':14s} {'wall s':>7s} {'train s':>8s} {'paused s':>8s} "
          f"{'lost':>6s} {'latency s':>9s}")
    for r in prices:
        print(f"{'on' if r['quiet'] else 'off':14s} {r['wall_s']:7.1f} {r['train_s']:8.1f} "
              f"{r['paused_s']:8.2f} {r['lost']:6.1%} {r['latency_s']:9.1f}")
    off, on = prices
    print(f"wall time with quiet windows / without: {on['wall_s'] / off['wall_s']:.3f}")


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    rows = ranking(args) if args.only != "cost" else []
    if rows and not args.json:
        print_ranking(args, rows)
    prices = cost(args) if args.only != "ranking" else []
    if args.json:
        print(json.dumps({"ranking": rows, "cost": prices}, indent=2, default=float))
    elif prices:
        print_cost(args, prices)
    return 0


if __name__ == "__main__":
    sys.exit(main())
