"""How well each evaluator ranks NAS-Bench-201 cells on CIFAR-10, against the table's ground truth.

A seeded sample of ``--cells`` cells (default 500) of the ``nasbench201`` space is scored by every
evaluator mnas has; ``--trained`` of them (default 40, the first of the sample) also by the
evaluators that train. Each row is compared with the cells' true 200-epoch CIFAR-10 test accuracy
from NAS-Bench-201's table (``../shared/data/nb201_cifar10.csv``; arXiv:2001.00326): Spearman's
rho, Kendall's tau, the precision of the top 10% (the share of the row's top 10% that are truly in
the top 10%), and the CPU seconds per cell (process time on this machine). Beside each row, the
parameter count's Spearman on the same cells: a row that does not beat it is worth nothing.

Rows: ``params`` and ``macs`` of the benchmark's network; the zero-cost proxies (``zc:nwot``,
``zc:synflow``, ``zc:jacob_cov``, ``zc:snip``, ``zc:grad_norm``) of that network untrained;
``train`` (proxy training at the recipe of ``--config``, the search's own); ``supernet:accuracy``
and ``supernet:loss`` (an NB201 supernet trained once at that recipe's network and data, children
cut out and BN-recalibrated; its training time is printed and spread over the cells it scores);
``combo:*`` (rank averages of a trained row or the supernet's accuracy and zero-cost rows, no
labels used; a combination with the supernet carries its training time too; ``combo`` combines
the rows that ``--rows`` asks for, the zero-cost ones always).

    python benchmarks/evaluator_fidelity.py [--json] [--seed S] [--cells 500] [--trained 40]
        [--rows cost,zc,train,supernet,combo] [--cache FILE] [--workers 2] [--data-root DIR]
        [--config configs/cifar10_nb201.yaml] [--supernet-dir DIR] [--supernet-epochs E]
        [--smoke]

``--cache FILE`` keeps every score (keyed by row, recipe and cell), so the rows can be built over
several sittings; ``--smoke`` runs a few cells of tiny recipes on generated images (what the test
suite runs: it checks the script, not the numbers).
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from fidelity_rows import (
    ZC_PROXIES,
    bench_space,
    cost_scores,
    load_data,
    supernet_scores,
    trained_score,
    zero_cost_row_scores,
)
from scipy import stats

from nas._checks import check_int

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT.parent / "shared" / "data" / "nb201_cifar10.csv"
GROUPS = ("cost", "zc", "train", "supernet", "combo")
COMBOS = {"combo:train+nwot": ("train", "zc:nwot"), "combo:train+synflow": ("train", "zc:synflow"),
          "combo:train+nwot+synflow": ("train", "zc:nwot", "zc:synflow"),
          "combo:nwot+synflow": ("zc:nwot", "zc:synflow"),
          "combo:supernet+nwot+synflow": ("supernet:accuracy", "zc:nwot", "zc:synflow")}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"evaluator_fidelity: error: {message}\n")
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print a JSON list of rows")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample of cells")
    p.add_argument("--cells", type=int, default=500)
    p.add_argument("--trained", type=int, default=40)
    p.add_argument("--rows", default=",".join(GROUPS), help="comma list of " + ", ".join(GROUPS))
    p.add_argument("--cache", default=None, help="JSON file of scores kept across sittings")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--table", default=str(TABLE))
    p.add_argument("--config", default=str(ROOT / "configs" / "cifar10_nb201.yaml"))
    p.add_argument("--supernet-dir", default=None, help="keep (or reuse) the supernet here")
    p.add_argument("--supernet-epochs", type=int, default=None)
    p.add_argument("--supernet-options", default=None, metavar="JSON",
                   help='supernet options, e.g. \'{"batch_size": 128, "supernet": {"paths": '
                        '"non_isomorphic"}}\'')
    p.add_argument("--smoke", action="store_true", help="a few cells, tiny recipes, fake images")
    args = p.parse_args(argv)
    for flag in ("cells", "trained", "workers"):
        check_int(f"--{flag}", getattr(args, flag))
    check_int("--seed", args.seed, minimum=0)
    check_int("--supernet-epochs", args.supernet_epochs, optional=True)
    args.groups = [g.strip() for g in args.rows.split(",") if g.strip()]
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        p.error(f"--rows: unknown {unknown}; allowed: {', '.join(GROUPS)}")
    try:
        args.supernet_extra = json.loads(args.supernet_options or "{}")
        assert isinstance(args.supernet_extra, dict)
    except (ValueError, AssertionError):
        p.error(f"--supernet-options {args.supernet_options!r}: expected a JSON object")
    if not Path(args.table).is_file():
        p.error(f"--table {args.table}: not found (NAS-Bench-201's table; see "
                "../shared/data/README.md)")
    return args


def recipe_of(config_path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(training recipe, supernet options)`` of the search config: the network (the space's
    channels and cells per stage), the data (image size, training images) and the training."""
    data = yaml.safe_load(Path(config_path).read_text())
    space, ev = data["space"].get("options") or {}, data.get("evaluator") or {}
    recipe = {"channels": space.get("channels", 16), "cells_per_stage":
              space.get("cells_per_stage", 5), "image_size": ev.get("image_size"),
              "max_train": ev.get("max_train"), "epochs": ev.get("epochs", 1),
              "batch_size": ev.get("batch_size", 64), "lr": ev.get("lr", 0.05),
              "weight_decay": ev.get("weight_decay", 4e-5)}
    supernet = {k: v for k, v in (ev.get("options") or {}).items() if k != "checkpoint"}
    return recipe, supernet


def check_supernet_options(recipe: dict[str, Any], options: dict[str, Any]) -> None:
    """The supernet options checked before anything runs (exit 2, one line): the keys of
    :class:`~nas.supernet.SupernetOptions` and the NB201 builder's own (``supernet.paths``)."""
    from nas.errors import ConfigError
    from nas.supernet import SupernetOptions
    from nas.supernet.train import with_builder_defaults

    try:
        opts = SupernetOptions.from_dict({**options, "epochs": options.get("epochs", 1)})
        with_builder_defaults(bench_space(channels=recipe["channels"],
                                          cells_per_stage=recipe["cells_per_stage"]), opts)
    except ConfigError as exc:
        sys.stderr.write(f"evaluator_fidelity: error: --supernet-options: {exc}\n")
        raise SystemExit(2) from None


SMOKE_RECIPE = {"channels": 4, "cells_per_stage": 1, "image_size": 8, "max_train": 200,
                "epochs": 1, "batch_size": 32, "lr": 0.05, "weight_decay": 4e-5}


def sample_cells(table: str, n: int, seed: int) -> list[tuple[str, float]]:
    """``n`` distinct cells of the table drawn with a generator seeded by ``seed``."""
    with open(table, newline="") as fh:
        rows = [(r["arch_str"], float(r["cifar10_test_acc"])) for r in csv.DictReader(fh)]
    picked = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i] for i in picked]


class Cache:
    """Scores by row key and cell, written back after every cell (atomically)."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.data: dict[str, dict[str, dict[str, float]]] = {}
        if self.path is not None and self.path.is_file():
            self.data = json.loads(self.path.read_text())

    def get(self, key: str, cell: str) -> dict[str, float] | None:
        return self.data.get(key, {}).get(cell)

    def put(self, key: str, cell: str, value: dict[str, float]) -> None:
        self.data.setdefault(key, {})[cell] = value
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data))
            tmp.replace(self.path)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_tasks(jobs: list[tuple[str, Any, tuple[Any, ...]]], workers: int,
              done: Any) -> None:
    """Run ``(cell, fn, args)`` jobs in ``workers`` spawned processes; ``done(cell, result)``."""
    if not jobs:
        return
    if workers == 1:
        for cell, fn, fn_args in jobs:
            done(cell, fn(*fn_args))
        return
    with multiprocessing.get_context("spawn").Pool(workers, _one_thread) as pool:
        pending = [(cell, pool.apply_async(fn, fn_args)) for cell, fn, fn_args in jobs]
        for cell, result in pending:
            done(cell, result.get())


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def score_group(name: str, keys: dict[str, str], cells: list[str], cache: Cache,
                fn: Any, fn_args: tuple[Any, ...], workers: int) -> None:
    """Score ``cells`` with ``fn(cell, *fn_args)`` (a dict of row -> score) where the cache lacks
    any of the rows ``keys`` (row name -> cache key)."""
    todo = [c for c in cells if any(cache.get(k, c) is None for k in keys.values())]
    count = {"n": 0}

    def done(cell: str, result: dict[str, dict[str, float]]) -> None:
        for row, value in result.items():
            cache.put(keys[row], cell, value)
        count["n"] += 1
        if count["n"] % 10 == 0 or count["n"] == len(todo):
            _say(f"{name}: {count['n']}/{len(todo)} cells scored")

    run_tasks([(c, fn, (c, *fn_args)) for c in todo], workers, done)


def train_supernet_once(args: argparse.Namespace, recipe: dict[str, Any],
                        options: dict[str, Any], root: str | None) -> tuple[str, float]:
    """The supernet's folder (trained here unless it holds a finished one) and the CPU seconds
    its training took (from the folder's record when reused)."""
    from nas.supernet import train_supernet

    folder = Path(args.supernet_dir or tempfile.mkdtemp(prefix="mnas-fidelity-supernet-"))
    epochs = args.supernet_epochs or options.get("epochs", 100)
    opts = {**options, "epochs": epochs, "threads": args.workers}
    data = load_data(recipe["image_size"], recipe["max_train"], root, args.dataset)
    space = bench_space(channels=recipe["channels"], cells_per_stage=recipe["cells_per_stage"],
                        input_size=data.input_shape[-1])
    clock = folder / "cpu_seconds.json"
    spent = json.loads(clock.read_text())["cpu_s"] if clock.is_file() else 0.0
    t0 = time.process_time()
    train_supernet(space, data, opts, folder, on_epoch=lambda e: _say(
        f"supernet epoch {e['epoch']}/{e['epochs']}: loss {e['loss']:.3f}"))
    spent += time.process_time() - t0
    clock.write_text(json.dumps({"cpu_s": spent}))
    return str(folder), spent


def _precision_top(scores: np.ndarray, truth: np.ndarray, share: float = 0.1) -> float:
    k = max(1, int(round(share * len(scores))))
    top_row = set(np.argsort(-scores, kind="stable")[:k])
    top_true = set(np.argsort(-truth, kind="stable")[:k])
    return len(top_row & top_true) / k


def _ranks(values: list[float]) -> np.ndarray:
    return stats.rankdata(np.nan_to_num(np.asarray(values, float), nan=-np.inf,
                                        neginf=-np.inf), method="average")


def row_stats(name: str, values: dict[str, dict[str, float]], truth: dict[str, float],
              params: dict[str, float], extra_s: float = 0.0) -> dict[str, Any]:
    """Spearman, Kendall, top-10% precision and CPU seconds per cell of one row (cells it
    scored), with the parameter count's Spearman on the same cells."""
    cells = [c for c in values if c in truth]
    scores = np.nan_to_num(np.array([values[c]["score"] for c in cells], float),
                           nan=-1e300, posinf=1e300, neginf=-1e300)
    gt = np.array([truth[c] for c in cells])
    same = [params[c] for c in cells if c in params]
    ref = float(stats.spearmanr(same, gt).statistic) if len(same) == len(cells) else None
    seconds = float(np.mean([values[c]["cpu_s"] for c in cells])) + extra_s / max(len(cells), 1)
    return {"name": name, "cells": len(cells),
            "spearman": float(stats.spearmanr(scores, gt).statistic),
            "kendall": float(stats.kendalltau(scores, gt).statistic),
            "top10_precision": _precision_top(scores, gt), "seconds_per_cell": seconds,
            "params_spearman_same_cells": ref}


def combo_values(rows: dict[str, dict[str, dict[str, float]]]
                 ) -> dict[str, dict[str, dict[str, float]]]:
    """Rank averages of the rows each combination names, on the cells they all scored."""
    out = {}
    for name, parts in COMBOS.items():
        if not all(p in rows for p in parts):
            continue
        cells = sorted(set.intersection(*(set(rows[p]) for p in parts)))
        if not cells:
            continue
        ranks = np.mean([_ranks([rows[p][c]["score"] for c in cells]) for p in parts], axis=0)
        out[name] = {c: {"score": float(r), "cpu_s": sum(rows[p][c]["cpu_s"] for p in parts)}
                     for c, r in zip(cells, ranks, strict=True)}
    return out


def _key(row: str, *parts: Any) -> str:
    return f"{row}|{json.dumps(parts, sort_keys=True, default=str)}"


def collect(args: argparse.Namespace, cells: list[str], trained: list[str], cache: Cache,
            recipe: dict[str, Any], options: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Every asked row's ``{cell: {score, cpu_s}}`` (scored where the cache lacks it) and the
    supernet's training CPU seconds (0 without that row)."""
    root, data, net, tag = args.data_root, args.dataset, args.network, args.data_tag
    plan: list[tuple[str, dict[str, str], list[str], Any, tuple[Any, ...]]] = []
    # params and MACs always: the parameter count is every row's reference
    plan.append(("cost", {r: _key(r, net) for r in ("params", "macs")}, cells, cost_scores,
                 (net,)))
    if {"zc", "combo"} & set(args.groups):
        keys = {f"zc:{p}": _key(f"zc:{p}", net, tag, 64, 0) for p in ZC_PROXIES}
        plan.append(("zc", keys, cells, zero_cost_row_scores, (root, data, net)))
    if "train" in args.groups:  # combinations use it where it is asked for (trained: minutes)
        plan.append(("train", {"train": _key("train", recipe, tag)}, trained, trained_score,
                     (recipe, root, data)))
    supernet_s = 0.0
    if "supernet" in args.groups:
        folder, supernet_s = train_supernet_once(args, recipe, options, root)
        epochs = args.supernet_epochs or options.get("epochs", 100)
        keys = {r: _key(r, recipe, options, epochs, tag, folder)
                for r in ("supernet:accuracy", "supernet:loss")}
        plan.append(("supernet", keys, cells, supernet_scores,
                     (folder, recipe, root, options, data)))
    rows: dict[str, Any] = {}
    for name, keys, some, fn, fn_args in plan:
        score_group(name, keys, some, cache, fn, fn_args, args.workers)
        for row, key in keys.items():
            rows[row] = {c: cache.get(key, c) for c in some if cache.get(key, c) is not None}
    return rows, supernet_s


def smoke_setup(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Tiny recipes on generated 8x8 images: the script runs end to end in seconds."""
    rng = np.random.default_rng(0)
    path = folder / "fake.npz"
    np.savez(path, x_train=rng.integers(0, 255, (300, 3, 8, 8), dtype=np.uint8),
             y_train=np.arange(300) % 10)
    args.dataset, args.network = f"npz:{path}", {"channels": 4, "cells_per_stage": 1,
                                                 "input_size": 8}
    args.data_tag = "smoke: 300 generated 8x8 images"
    args.cells, args.trained = min(args.cells, 12), min(args.trained, 4)
    args.supernet_epochs = 1
    return dict(SMOKE_RECIPE), {"epochs": 1, "batch_size": 32, "calib_batches": 2}


def report(args: argparse.Namespace, rows: dict[str, Any], truth: dict[str, float],
           supernet_s: float, recipe: dict[str, Any], options: dict[str, Any]) -> list[dict]:
    """The table (or JSON) of every row."""
    params = {c: v["score"] for c, v in rows.get("params", {}).items()}
    rows = {**rows, **combo_values(rows)}
    out = []
    for name, values in rows.items():
        if not values:
            continue
        uses_supernet = name.startswith(("supernet", "combo:supernet"))
        extra = supernet_s if uses_supernet else 0.0
        row = row_stats(name, values, truth, params, extra)
        row["recipe"] = (recipe if name == "train" or name.startswith("combo:train") else
                         {**recipe, "supernet": options, "supernet_cpu_s": supernet_s}
                         if uses_supernet else
                         {"network": args.network or "benchmark (16 channels, 5 cells, 32 px)"})
        out.append(row)
    if args.json:
        print(json.dumps(out, indent=1))
        return out
    print(f"{'row':<30}{'cells':>6}{'spearman':>10}{'kendall':>9}{'top10%':>8}{'cpu s/cell':>12}"
          f"{'params rho (same cells)':>25}")
    for r in out:
        ref = "-" if r["params_spearman_same_cells"] is None else \
            f"{r['params_spearman_same_cells']:.3f}"
        print(f"{r['name']:<30}{r['cells']:>6}{r['spearman']:>10.3f}{r['kendall']:>9.3f}"
              f"{r['top10_precision']:>8.2f}{r['seconds_per_cell']:>12.2f}{ref:>25}")
    print(f"train recipe: {json.dumps(recipe)}")
    if supernet_s:
        print(f"supernet: {json.dumps(options)}; training {supernet_s:.0f} CPU s "
              "(spread over the cells it scored in 'cpu s/cell')")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.dataset, args.network, args.data_tag = "cifar10", None, "cifar10"
    with tempfile.TemporaryDirectory(prefix="mnas-fidelity-") as tmp:
        if args.smoke:
            recipe, options = smoke_setup(args, Path(tmp))
        else:
            recipe, options = recipe_of(args.config)
        options = {**options, **args.supernet_extra}
        if "supernet" in args.groups:
            check_supernet_options(recipe, options)
        sample = sample_cells(args.table, args.cells, args.seed)
        truth = dict(sample)
        cells = [c for c, _ in sample]
        cache = Cache(args.cache)
        rows, supernet_s = collect(args, cells, cells[: args.trained], cache, recipe, options)
        if {"train", "supernet", "combo"} & set(args.groups):  # the recipe says how many images
            data = load_data(recipe["image_size"], recipe["max_train"], args.data_root,
                             args.dataset)
            recipe = {**recipe, "train_images": data.summary()["train"],
                      "val_images": data.summary()["val"]}
        report(args, rows, truth, supernet_s, recipe, options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
