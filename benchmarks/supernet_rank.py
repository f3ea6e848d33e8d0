"""How well a weight-sharing supernet ranks children against stand-alone training (target on
digits: Kendall tau >= 0.5).

Trains a SPOS supernet (``nas.supernet``) of the quick start's MnasNet space sized for the dataset,
samples ``--children`` distinct children with a seeded generator, trains each from scratch with the
quick start's evaluator settings (SGD, lr 0.1, cosine, batch 64, ``--child-epochs`` epochs) as the
ground truth, scores the same children with inherited weights (extract, BN recalibration,
validation accuracy and loss) and reports Kendall's tau and Spearman's rho between the ground
truth and the supernet's accuracy, its loss, and the parameter count (the baseline any evaluator
must beat), with the time each side took. Target on a real task (CIFAR-10, a cut where the ground
truth agrees with itself at >= 0.7 over 2 seeds): the supernet's Kendall tau >= 0.5.

    python benchmarks/supernet_rank.py [--json] [--children 30] [--dataset digits]
        [--child-epochs 6] [--gt-seeds 1] [--kernel shared|separate]
        [--sampling uniform|sandwich] [--seed 0] [--epochs N] [--threads 1]
        [--checkpoint-dir DIR] [--cache FILE] [--max-train N] [--val-fraction F] [--workers N]
        [--image-size S] [--smoke]

``--gt-seeds N`` trains every child with N seeds (``seed`` .. ``seed + N - 1``) and ranks by the
mean; with N >= 2 the table also gives the ground truth's own Kendall tau (the mean of the first
half of the seeds against the second half): a supernet cannot be expected to rank children better
than the ground truth ranks itself. ``--epochs`` overrides the supernet's default epochs;
``--checkpoint-dir`` keeps (and resumes, or reuses) the supernet's folder instead of a temporary
one; ``--cache`` keeps the ground-truth accuracies in a JSON file (keyed by dataset, child epochs,
seed and architecture) so that supernet options can be compared without retraining the children.
``--max-train N`` keeps N training images (a harder cut of the dataset; the supernet trains on the
same cut), ``--image-size S`` resizes the images (CIFAR-10 at 16 px: a cheaper task) and
``--val-fraction`` sets the validation share; ``--workers N`` trains the ground
truth in N processes (one thread each).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _smoke import parse_with_smoke
from scipy import stats

from nas._checks import check_choice, check_int, check_number
from nas.errors import UsageError
from nas.evaluation.cost import count_params
from nas.evaluation.data import AnyDataset, load_dataset
from nas.evaluation.evaluate import space_for_dataset
from nas.evaluation.images import ImageOptions
from nas.evaluation.train import TrainConfig, train
from nas.space import Arch, Space
from nas.supernet import SupernetOptions, load_supernet, score_child, train_supernet
from nas.supernet.options import SAMPLINGS
from search_spaces.mnasnet_supernet import KERNEL_MODES

# --smoke (what the test suite runs): 4 children on 200 digits, 1 epoch each side, 2 seeds
SMOKE = {"children": 4, "child_epochs": 1, "gt_seeds": 2, "epochs": 1, "max_train": 200}

# configs/quickstart.yaml: the space's options (sizes come from the dataset) and evaluator
QUICKSTART_SPACE = {"width_mult": 0.5, "stem_channels": 16, "head_channels": 128, "dropout": 0.1,
                    "skeleton": [[16, 1, 1], [24, 2, 2], [40, 2, 2], [80, 2, 2], [96, 1, 1]]}
QUICKSTART_TRAIN = {"batch_size": 64, "optimizer": "sgd", "lr": 0.1, "schedule": "cosine"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        sys.stderr.write(f"supernet_rank: error: {message}\n")
        raise SystemExit(2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--children", type=int, default=30)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--child-epochs", type=int, default=6)
    p.add_argument("--gt-seeds", type=int, default=1,
                   help="train each child with this many seeds; the ground truth is the mean")
    defaults = SupernetOptions()
    p.add_argument("--kernel", default="shared", help="the MnasNet supernet's kernel option")
    p.add_argument("--sampling", default=defaults.sampling)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="supernet epochs (default: options)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--cache", default=None, help="JSON file of ground-truth accuracies")
    p.add_argument("--max-train", type=int, default=None, help="keep this many training images")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize the images (e.g. CIFAR-10 to 16 px: a cheaper task)")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--workers", type=int, default=1, help="processes training the ground truth")
    args = parse_with_smoke(p, argv, SMOKE)
    check_int("--children", args.children, minimum=2)
    check_int("--child-epochs", args.child_epochs)
    check_int("--gt-seeds", args.gt_seeds)
    check_choice("--kernel", args.kernel, KERNEL_MODES)
    check_choice("--sampling", args.sampling, SAMPLINGS)
    check_int("--seed", args.seed, minimum=0)
    check_int("--epochs", args.epochs, optional=True)
    check_int("--threads", args.threads)
    check_int("--max-train", args.max_train, optional=True)
    check_int("--image-size", args.image_size, optional=True)
    check_number("--val-fraction", args.val_fraction, strict=True, maximum=1.0, strict_max=True)
    check_int("--workers", args.workers)
    return args


def sample_children(space: Space, n: int, seed: int) -> list[Arch]:
    """``n`` distinct architectures drawn uniformly with a generator seeded by ``seed``."""
    rng, found = np.random.default_rng(seed), {}
    for _ in range(100 * n):
        arch = space.sample(rng)
        found.setdefault(arch.key, arch)
        if len(found) == n:
            break
    return list(found.values())


def data_tag(args: argparse.Namespace) -> str:
    """The dataset as the cache names it: ``digits``, or ``digits,max_train=300,val=0.5`` for a
    cut or another validation share."""
    tag = args.dataset
    if args.max_train is not None:
        tag += f",max_train={args.max_train}"
    if args.image_size is not None:
        tag += f",size={args.image_size}"
    if args.val_fraction != 0.2:
        tag += f",val={args.val_fraction:g}"
    return tag


def _cache_key(arch: Arch, tag: str, epochs: int, seed: int) -> str:
    return f"{tag}|{epochs}|{seed}|{arch.key}"


def load_data(args: argparse.Namespace) -> AnyDataset:
    return load_dataset(args.dataset, val_fraction=args.val_fraction, seed=0,
                        max_train=args.max_train, images=ImageOptions(image_size=args.image_size))


def _train_child(space: Space, arch: Arch, data: AnyDataset, epochs: int, seed: int,
                 threads: int) -> dict[str, float]:
    config = TrainConfig(epochs=epochs, seed=seed, threads=threads, **QUICKSTART_TRAIN)
    t0 = time.perf_counter()
    torch.manual_seed(seed)  # as nas.evaluation.evaluate seeds a child's weights
    result = train(space.build(arch), data, config)
    return {"accuracy": result.val_accuracy, "seconds": time.perf_counter() - t0}


_WORKER: dict[str, Any] = {}


def _worker_init(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    data = load_data(args)
    space = space_for_dataset("mnasnet", data, **QUICKSTART_SPACE)
    _WORKER.update(args=args, data=data, space=space)


def _worker_train(values: dict[str, Any], seed: int) -> dict[str, float]:
    args, space = _WORKER["args"], _WORKER["space"]
    return _train_child(space, space.validate(values), _WORKER["data"], args.child_epochs, seed,
                        args.threads)


def ground_truth(space: Space, children: list[Arch], data: AnyDataset, args: argparse.Namespace
                 ) -> tuple[np.ndarray, float]:
    """Stand-alone validation accuracies, ``(children, gt_seeds)`` (from the cache where known;
    the others trained in ``args.workers`` processes), and the seconds their training took."""
    path = Path(args.cache) if args.cache else None
    cache = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    seeds = list(range(args.seed, args.seed + args.gt_seeds))
    tag = data_tag(args)
    todo = [(i, seed) for i, arch in enumerate(children) for seed in seeds
            if _cache_key(arch, tag, args.child_epochs, seed) not in cache]

    def done(i: int, seed: int, result: dict[str, float]) -> None:
        cache[_cache_key(children[i], tag, args.child_epochs, seed)] = result
        if path is not None:
            path.write_text(json.dumps(cache, indent=1))
        _progress(args, f"child {i + 1}/{len(children)} seed {seed}: {result['accuracy']:.4f}")

    if args.workers == 1 or len(todo) <= 1:
        for i, seed in todo:
            done(i, seed, _train_child(space, children[i], data, args.child_epochs, seed,
                                       args.threads))
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(args.workers, _worker_init, (args,)) as pool:
            pending = [(i, seed, pool.apply_async(_worker_train, (dict(children[i]), seed)))
                       for i, seed in todo]
            for i, seed, result in pending:
                done(i, seed, result.get())
    accuracies = np.array([[cache[_cache_key(arch, tag, args.child_epochs, seed)]["accuracy"]
                            for seed in seeds] for arch in children])
    seconds = sum(cache[_cache_key(arch, tag, args.child_epochs, seed)]["seconds"]
                  for arch in children for seed in seeds)
    return accuracies, seconds


def reliability(accuracies: np.ndarray) -> float | None:
    """Kendall tau between the mean accuracies of the first and the second half of the training
    seeds (None with one seed): how well the ground truth ranks itself."""
    half = accuracies.shape[1] // 2
    if half == 0:
        return None
    first, second = accuracies[:, :half].mean(1), accuracies[:, half : 2 * half].mean(1)
    return float(stats.kendalltau(first, second).statistic)


def _progress(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(f"  {text}", file=sys.stderr, flush=True)


def supernet_scores(space: Space, children: list[Arch], data: AnyDataset,
                    args: argparse.Namespace, folder: str) -> dict[str, Any]:
    """Train (or resume) the supernet in ``folder`` and score every child with it."""
    overrides: dict[str, Any] = {"supernet": {"kernel": args.kernel}, "sampling": args.sampling,
                                 "seed": args.seed, "threads": args.threads}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    options = SupernetOptions.from_dict({**SupernetOptions().to_dict(), **overrides})
    info = train_supernet(space, data, options, folder, on_epoch=lambda m: _progress(
        args, f"supernet epoch {m['epoch']}/{m['epochs']}: loss {m['loss']:.4f}"))
    supernet, _ = load_supernet(folder, space)
    t0 = time.perf_counter()
    scored = [score_child(supernet, arch, data, options) for arch in children]
    return {"scores": [s.accuracy for s in scored], "losses": [s.loss for s in scored],
            "train_s": info["seconds"], "options": options.to_dict(),
            "score_s_per_child": (time.perf_counter() - t0) / len(children)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    data = load_data(args)
    space = space_for_dataset("mnasnet", data, **QUICKSTART_SPACE)
    children = sample_children(space, args.children, args.seed)
    runs, truth_s = ground_truth(space, children, data, args)
    truth = runs.mean(axis=1)
    with tempfile.TemporaryDirectory(prefix="supernet-") as tmp:
        sn = supernet_scores(space, children, data, args, args.checkpoint_dir or tmp)
    by_loss = -np.asarray(sn["losses"])  # a lower validation loss ranks higher
    params = [count_params(space.build(arch)) for arch in children]
    agreement = {}
    for suffix, scores in (("", sn["scores"]), ("_loss", by_loss), ("_params", params)):
        agreement[f"kendall_tau{suffix}"] = float(stats.kendalltau(truth, scores).statistic)
        agreement[f"spearman{suffix}"] = float(stats.spearmanr(truth, scores).statistic)
    return {**agreement, "n": len(children),
            "dataset": data_tag(args), "child_epochs": args.child_epochs, "seed": args.seed,
            "ground_truth_s": truth_s, "ground_truth_s_per_child": truth_s / len(children),
            "supernet_train_s": sn["train_s"], "supernet_score_s_per_child":
            sn["score_s_per_child"], "options": sn["options"],
            "gt_seeds": args.gt_seeds, "ground_truth_reliability": reliability(runs),
            "children": [{"arch": a.key, "ground_truth": float(t), "supernet": s,
                          "supernet_loss": loss, "params": n}
                         for a, t, s, loss, n in zip(children, truth, sn["scores"],
                                                     sn["losses"], params, strict=True)]}


def print_table(result: dict[str, Any]) -> None:
    o = result["options"]
    print(f"supernet ranking on {result['dataset']}: {o['sampling']} sampling, "
          f"{o['supernet']['kernel']} "
          f"kernels, {o['epochs']} supernet epochs, children {result['child_epochs']} epochs, "
          f"seed {result['seed']}")
    print(f"{'child':18s} {'stand-alone':>11s} {'supernet':>9s} {'sn loss':>8s} {'params':>9s}")
    for c in sorted(result["children"], key=lambda c: -c["ground_truth"]):
        print(f"{c['arch']:18s} {c['ground_truth']:11.4f} {c['supernet']:9.4f} "
              f"{c['supernet_loss']:8.4f} {c['params']:9d}")
    rows = [("kendall tau", f"{result['kendall_tau']:.3f}"),
            ("spearman", f"{result['spearman']:.3f}"),
            ("by validation loss", f"kendall {result['kendall_tau_loss']:.3f}, "
             f"spearman {result['spearman_loss']:.3f}"),
            ("parameter count", f"kendall {result['kendall_tau_params']:.3f}, "
             f"spearman {result['spearman_params']:.3f} (the baseline)"),
            ("n", str(result["n"])),
            ("ground truth seeds", str(result["gt_seeds"])),
            ("ground truth self-tau", "n/a (1 seed)" if result["ground_truth_reliability"] is None
             else f"{result['ground_truth_reliability']:.3f} (first vs second half of seeds)"),
            ("ground truth (s)", f"{result['ground_truth_s']:.1f} "
             f"({result['ground_truth_s_per_child']:.2f} per child)"),
            ("supernet training (s)", f"{result['supernet_train_s']:.1f}"),
            ("supernet scoring (s/child)", f"{result['supernet_score_s_per_child']:.3f}")]
    width = max(len(k) for k, _ in rows)
    print("-" * (width + 24))
    for key, value in rows:
        print(f"{key:{width}s}  {value}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
        torch.set_num_threads(args.threads)
        result = run(args)
    except UsageError as exc:
        sys.stderr.write(f"supernet_rank: error: {str(exc).splitlines()[0]}\n")
        return 2
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
