"""The seeded split rules every dataset shares: a validation split carved from the training data
(MnasNet, arXiv:1807.11626: children are scored on held-out *training* data, never on the test
split) and an optional ``max_train`` subset, both drawn from one ``numpy`` generator seeded with
the data seed. Arrays (:mod:`nas.evaluation.data`) and image files (:func:`split_files`) consume
the generator identically, so a folder and an ``.npz`` of the same images split alike.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nas.errors import UsageError
from nas.evaluation.images import FolderTree, ImageFiles

__all__ = ["SplitRule", "carve", "subset", "split_files"]


class SplitRule(NamedTuple):
    """How the validation split and the training subset are drawn."""

    val_fraction: float
    seed: int
    max_train: int | None


def carve(name: str, n: int, val_fraction: float,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a seeded held-out split, at least one sample on each side."""
    if n < 2:
        raise UsageError(f"dataset {name!r}: need at least 2 training samples to split")
    order = rng.permutation(n)
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    return order[n_val:], order[:n_val]


def subset(n: int, max_train: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of the ``max_train`` training samples kept, or None to keep all."""
    if max_train is None or max_train >= n:
        return None
    return rng.permutation(n)[:max_train]


def split_files(name: str, tree: FolderTree, rule: SplitRule) -> dict[str, ImageFiles]:
    """An image folder's ``train``/``val`` (and ``test``) files: a ``val/`` folder as it is,
    otherwise carved from the training files."""
    rng = np.random.default_rng(rule.seed)
    parts = {"train": tree.train}
    if tree.val is not None:
        parts["val"] = tree.val
    else:
        train, val = carve(name, len(tree.train), rule.val_fraction, rng)
        parts["val"], parts["train"] = tree.train.take(val), tree.train.take(train)
    keep = subset(len(parts["train"]), rule.max_train, rng)
    if keep is not None:
        parts["train"] = parts["train"].take(keep)
    if tree.test is not None:
        parts["test"] = tree.test
    return parts
