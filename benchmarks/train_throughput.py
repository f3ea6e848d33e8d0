"""Proxy-trainer throughput against a minimal hand-written PyTorch loop (target: ratio >= 0.9).

Both loops train the same model (same initial weights), on the same in-memory data, with the same
batch size and optimizer (SGD, momentum 0.9, Nesterov), one epoch per repetition, alternating
(ours, minimal, ours, minimal, ...) so machine noise hits both alike. Only training passes are
timed (``nas.evaluation.train`` excludes its validation pass from ``images_per_s``).

    python benchmarks/train_throughput.py [--reps 5] [--threads 1] [--batch-size 64]
                                          [--max-train N]

``--max-train`` trains on a seeded subset of that many of digits' training images (default: all).
``--smoke`` runs the same path at a tiny budget (seconds; for the test suite, no numbers worth
reading): ``--reps 1 --max-train 64 --batch-size 32`` unless given otherwise.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _smoke import parse_with_smoke
from torch import nn

from nas.evaluation.data import Dataset, load_dataset
from nas.evaluation.evaluate import space_for_dataset
from nas.evaluation.train import TrainConfig, train


def minimal_loop(model: nn.Module, data: Dataset, batch_size: int, lr: float) -> float:
    """The reference: a plain loop over an index permutation; returns images per second."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.x_train, data.y_train
    perm = torch.randperm(len(y))
    steps = len(y) // batch_size
    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        idx = perm[step * batch_size : (step + 1) * batch_size]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def models(data: Dataset) -> dict[str, nn.Module]:
    import numpy as np

    out = {}
    nb = space_for_dataset("nasbench201", data, channels=16, cells_per_stage=2)
    out["nasbench201 C16 N2"] = nb.build(nb.sample(np.random.default_rng(0)))
    try:
        mn = space_for_dataset("mnasnet", data, width_mult=0.5, head_channels=256)
        out["mnasnet w0.5 (sampled)"] = mn.build(mn.sample(np.random.default_rng(0)))
    except Exception as exc:  # the space may be missing in old checkouts
        print(f"(mnasnet skipped: {exc})")
    return out


SMOKE = {"reps": 1, "max_train": 64, "batch_size": 32}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-train", type=int, help="train on this many images (default: all)")
    args = parse_with_smoke(parser, argv, SMOKE)
    torch.set_num_threads(args.threads)
    data = load_dataset("digits", max_train=args.max_train)
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=0.01, schedule="constant",
                      weight_decay=0.0, threads=args.threads)
    print(f"digits train={len(data.y_train)} batch={args.batch_size} threads={args.threads} "
          f"reps={args.reps} torch={torch.__version__}")
    header = f"{'model':26s} {'nas img/s':>16s} {'minimal img/s':>14s} {'ratio':>6s}  per-rep"
    print(header)
    print("-" * len(header))
    for name, model in models(data).items():
        init = copy.deepcopy(model.state_dict())
        ours, ref = [], []
        for _ in range(args.reps):
            model.load_state_dict(init)
            ours.append(train(model, data, cfg).images_per_s)
            model.load_state_dict(init)
            ref.append(minimal_loop(model, data, args.batch_size, cfg.lr))
        ratios = [a / b for a, b in zip(ours, ref, strict=True)]
        print(f"{name:26s} {statistics.median(ours):16.0f} {statistics.median(ref):14.0f} "
              f"{statistics.median(ours) / statistics.median(ref):6.3f}  "
              + " ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
