"""A whole search on the real task: ``nas search`` on CIFAR-10 in the NAS-Bench-201 space, its
chosen cell looked up in NAS-Bench-201's table.

For each of ``--seeds`` seeds, runs ``nas search configs/cifar10_nb201.yaml`` (its controller,
evaluator and budget; ``search.seed`` set to the seed) in a fresh process with its own local Ray,
then takes the run's best child (rank 1 of ``nas analyze``) and looks its cell up in
``../shared/data/nb201_cifar10.csv`` (arXiv:2001.00326): the true 200-epoch CIFAR-10 test accuracy
nobody here produced, and its rank among the 15,625 cells. Prints per seed the wall time, the
children evaluated, the chosen cell, its true accuracy and rank, then the mean. For reference
(NB201 paper, table 5, CIFAR-10 test): random search 93.70, REA 93.92, GDAS 93.51, optimum 94.37.

    python benchmarks/nb201_search.py [--json] [--seeds 3] [--first-seed 0]
        [--config configs/cifar10_nb201.yaml] [--trials N] [--data-root DIR] [--keep DIR]
        [--smoke]

``--keep DIR`` keeps the run folders (default: a temporary folder); ``--smoke`` runs one seed of a
3-child search on generated images (what the test suite runs: it checks the script, not the
numbers). With ``--json``, one object: ``seeds`` (a list of per-seed objects),
``mean_true_accuracy``, ``hours_per_seed``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar10.csv"
REFERENCE = {"random search": 93.70, "REA": 93.92, "GDAS": 93.51, "optimum": 94.37}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"nb201_search: error: {message}\n")
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--config", default=str(ROOT / "configs" / "cifar10_nb201.yaml"))
    p.add_argument("--trials", type=int, default=None, help="override search.trials")
    p.add_argument("--data-root", default=None)
    p.add_argument("--keep", default=None, help="keep the run folders here")
    p.add_argument("--table", default=str(TABLE))
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.first_seed < 0 or (args.trials is not None and args.trials < 1):
        p.error("--seeds and --trials must be >= 1, --first-seed >= 0")
    if not Path(args.table).is_file():
        p.error(f"--table {args.table}: not found (NAS-Bench-201's table; see "
                "../shared/data/README.md)")
    if not Path(args.config).is_file():
        p.error(f"--config {args.config}: not found")
    return args


def truth_table(path: str) -> dict[str, float]:
    with open(path, newline="") as fh:
        return {r["arch_str"]: float(r["cifar10_test_acc"]) for r in csv.DictReader(fh)}


def smoke_config(folder: Path) -> Path:
    """A 3-child search of tiny networks on generated 8x8 images (seconds per child)."""
    rng = np.random.default_rng(0)
    data = folder / "fake.npz"
    np.savez(data, x_train=rng.integers(0, 255, (200, 3, 8, 8), dtype=np.uint8),
             y_train=np.arange(200) % 10)
    cfg = yaml.safe_load((ROOT / "configs" / "cifar10_nb201.yaml").read_text())
    cfg["space"]["options"] = {"channels": 4, "cells_per_stage": 1}
    cfg["evaluator"] = {"dataset": f"npz:{data}", "epochs": 1, "batch_size": 32}
    cfg["search"] = {**cfg["search"], "trials": 3}
    path = folder / "smoke.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_seed(args: argparse.Namespace, config: Path, seed: int, results: Path) -> dict[str, Any]:
    """One search (a fresh ``nas`` process with its own Ray) and its wall time."""
    name = f"nb201-seed{seed}"
    argv = [sys.executable, "-m", "nas.cli", "search", str(config), "--name", name, "--quiet",
            "--set", f"search.seed={seed}", "--set", f"results_dir={results}"]
    if args.trials is not None:
        argv += ["--trials", str(args.trials)]
    if args.data_root:
        argv += ["--set", f"evaluator.data_root={args.data_root}"]
    began = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - began
    if out.returncode != 0:
        raise SystemExit(f"nb201_search: seed {seed}: nas search exited {out.returncode}: "
                         f"{(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return {"run": str(results / name), "wall_s": wall}


def chosen(run_path: str, truth: dict[str, float]) -> dict[str, Any]:
    """The run's rank-1 child, its cell string, true accuracy and rank among all cells."""
    import nas

    run = nas.load_run(run_path)
    best = run.best(1)
    if best.empty:
        return {"children": len(run), "cell": None, "true_accuracy": None, "rank": None}
    record = next(r for r in run.records if r.trial_id == int(best.iloc[0]["trial_id"]))
    space = nas.get_space(run.config["space"]["name"], **run.config["space"]["options"])
    cell = space.to_string(space.validate(record.arch))
    accuracy = truth[cell]
    rank = 1 + sum(a > accuracy for a in truth.values())
    return {"children": sum(r.complete for r in run.records), "cell": cell,
            "proxy_accuracy": float(best.iloc[0]["accuracy"]), "true_accuracy": accuracy,
            "rank": rank}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    truth = truth_table(args.table)
    with tempfile.TemporaryDirectory(prefix="mnas-nb201-search-") as tmp:
        results = Path(args.keep) if args.keep else Path(tmp)
        config = smoke_config(Path(tmp)) if args.smoke else Path(args.config)
        seeds = [args.first_seed] if args.smoke else \
            list(range(args.first_seed, args.first_seed + args.seeds))
        rows = []
        for seed in seeds:
            row = {"seed": seed, **run_seed(args, config, seed, results)}
            row.update(chosen(row["run"], truth))
            rows.append(row)
            if not args.json:
                print(f"seed {seed}: {row['wall_s'] / 60:.1f} min, {row['children']} children, "
                      f"chose {row['cell']}: true {row['true_accuracy']} (rank {row['rank']} of "
                      f"{len(truth)})", flush=True)
    found = [r["true_accuracy"] for r in rows if r["true_accuracy"] is not None]
    summary = {"seeds": rows, "mean_true_accuracy": float(np.mean(found)) if found else None,
               "hours_per_seed": float(np.mean([r["wall_s"] for r in rows])) / 3600,
               "reference": REFERENCE}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"mean true accuracy {summary['mean_true_accuracy']:.2f} over {len(found)} seeds, "
              f"{summary['hours_per_seed'] * 60:.1f} min per seed; reference: "
              + ", ".join(f"{k} {v}" for k, v in REFERENCE.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
