"""Proxy datasets held in memory as normalised tensors.

Datasets are named by a string:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline; the default).
* ``cifar10``: CIFAR-10 read from its *binary* distribution (``cifar-10-batches-bin``) with numpy,
  downloaded only when asked (nothing is ever unpickled).
* ``npz:PATH``: a user's ``.npz`` file with ``x_train`` and ``y_train`` and optionally ``x_val``/
  ``y_val`` and ``x_test``/``y_test``. Images are ``(N, C, H, W)`` or ``(N, H, W)`` (one channel);
  labels are integers ``0..K-1``.

As in MnasNet (Tan et al., arXiv:1807.11626, section 4), the validation set that scores children is
carved from the *training* data with a seeded split, never from the test split. Inputs are
normalised per channel with the mean and standard deviation of the training part.
"""

from __future__ import annotations

import logging
import os
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas.errors import UsageError

__all__ = ["Dataset", "load_dataset", "DATASET_NAMES", "CIFAR10_URL", "read_cifar10_bin"]

log = logging.getLogger(__name__)

DATASET_NAMES = ("digits", "cifar10", "npz:PATH")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"
_TEST_SPLIT_SEED = 20180711  # fixed: the digits test split never depends on the user's seed


@dataclass(frozen=True)
class Dataset:
    """An in-memory classification dataset with train / validation (/ test) splits.

    Attributes:
        name: the name it was loaded by.
        x_train, y_train: training images ``(N, C, H, W)`` float32 (normalised) and int64 labels.
        x_val, y_val: the held-out validation split (carved from training data unless given).
        x_test, y_test: the test split, or ``None``; never used to score children.
        num_classes: number of classes K (labels are ``0..K-1``).
        mean, std: per-channel statistics used for normalisation.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one sample."""
        c, h, w = self.x_train.shape[1:]
        return (int(c), int(h), int(w))

    def summary(self) -> dict[str, Any]:
        """Sizes and shapes, for logs and result records."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": int(self.y_train.numel()),
            "val": int(self.y_val.numel()),
            "test": None if self.y_test is None else int(self.y_test.numel()),
        }


def load_dataset(
    name: str = "digits",
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    max_train: int | None = None,
) -> Dataset:
    """Load a dataset by name (see the module docstring) into memory.

    Args:
        name: ``digits``, ``cifar10`` or ``npz:PATH``.
        val_fraction: share of the training data held out for validation, in (0, 1); ignored when
            an npz file brings its own ``x_val``/``y_val``.
        seed: seed of the validation split (and of the ``max_train`` subset).
        root: folder holding (or receiving) CIFAR-10; defaults to ``$MNAS_DATA_DIR`` or
            ``~/.cache/mnas``.
        download: fetch CIFAR-10 when its files are missing.
        max_train: keep at most this many training samples (a smaller proxy task).

    Raises:
        UsageError: unknown name, missing file, bad array shapes or values, bad arguments.
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, int | float)
        or not (0.0 < val_fraction < 1.0)
    ):
        raise UsageError(f"val_fraction={val_fraction!r}: must be a number in (0, 1)")
    if max_train is not None and (
        isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1
    ):
        raise UsageError(f"max_train={max_train!r}: must be a positive integer or None")
    if not isinstance(name, str):
        raise UsageError(f"dataset {name!r}: must be a string; known: {', '.join(DATASET_NAMES)}")
    if name == "digits":
        arrays = _digits_arrays()
    elif name == "cifar10":
        arrays = _cifar10_arrays(_data_root(root), download)
    elif name.startswith("npz:") and len(name) > 4:
        arrays = _npz_arrays(Path(name[4:]).expanduser())
    else:
        raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return _assemble(name, arrays, val_fraction=val_fraction, seed=seed, max_train=max_train)


# -- sources ---------------------------------------------------------------------------------------
def _digits_arrays() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None]  # (N, 1, 8, 8), values 0..16
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(_TEST_SPLIT_SEED).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def _data_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MNAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnas"


def read_cifar10_bin(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: records of 1 label byte + 3,072 pixel bytes (CHW order).

    Returns:
        ``(images uint8 (N, 3, 32, 32), labels int64 (N,))``.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"CIFAR-10 file {str(path)!r} does not exist")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise UsageError(
            f"CIFAR-10 file {str(path)!r}: size {raw.size} is not a multiple of 3073-byte records"
        )
    records = raw.reshape(-1, 3073)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise UsageError(f"CIFAR-10 file {str(path)!r}: label {labels.max()} is not in 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _cifar10_arrays(root: Path, download: bool) -> dict[str, np.ndarray]:
    folder = root / _CIFAR_DIR
    needed = [folder / f for f in (*_CIFAR_TRAIN, _CIFAR_TEST)]
    if not all(p.is_file() for p in needed):
        if not download:
            raise UsageError(
                f"CIFAR-10 binary files not found in {str(folder)!r}; download them with "
                f"download=True (CLI: --download) or extract {CIFAR10_URL} under {str(root)!r}"
            )
        _download_cifar10(root)
    train = [read_cifar10_bin(folder / f) for f in _CIFAR_TRAIN]
    x_test, y_test = read_cifar10_bin(folder / _CIFAR_TEST)
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": x_test,
        "y_test": y_test,
    }


def _download_cifar10(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-binary.tar.gz"
    log.info("downloading %s to %s", CIFAR10_URL, archive)
    try:
        urllib.request.urlretrieve(CIFAR10_URL, archive)  # noqa: S310 (fixed https URL)
    except (urllib.error.URLError, OSError) as exc:
        raise UsageError(f"cannot download CIFAR-10 from {CIFAR10_URL}: {exc}") from None
    wanted = {f"{_CIFAR_DIR}/{f}" for f in (*_CIFAR_TRAIN, _CIFAR_TEST)}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.name in wanted and m.isfile()]
            safe: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            for member in members:
                tar.extract(member, root, **safe)
    except (tarfile.TarError, OSError) as exc:
        raise UsageError(f"cannot extract CIFAR-10 archive {str(archive)!r}: {exc}") from None


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"dataset file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:  # object arrays need pickle: refused
        raise UsageError(
            f"dataset file {str(path)!r} cannot be read without pickle: {exc}"
        ) from None
    except (OSError, EOFError) as exc:
        raise UsageError(f"dataset file {str(path)!r} is not a readable .npz file: {exc}") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise UsageError(
                f"dataset file {str(path)!r} has no array {key!r}; found: {sorted(arrays)}"
            )
    for x_key, y_key in (("x_val", "y_val"), ("x_test", "y_test")):
        if (x_key in arrays) != (y_key in arrays):
            raise UsageError(f"dataset file {str(path)!r}: {x_key!r} and {y_key!r} come together")
    known = {"x_train", "y_train", "x_val", "y_val", "x_test", "y_test"}
    return {k: v for k, v in arrays.items() if k in known}


# -- checks, split, normalisation ------------------------------------------------------------------
def _check_pair(name: str, split: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or 0 in x.shape:
        raise UsageError(
            f"dataset {name!r}: x_{split} has shape {x.shape}; expected (N, C, H, W) or (N, H, W)"
        )
    if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)):
        raise UsageError(f"dataset {name!r}: x_{split} has dtype {x.dtype}; expected numbers")
    if y.ndim != 1 or len(y) != len(x):
        raise UsageError(
            f"dataset {name!r}: y_{split} has shape {y.shape}; expected ({len(x)},) labels"
        )
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise UsageError(
            f"dataset {name!r}: y_{split} must hold non-negative integer labels (dtype {y.dtype})"
        )
    if not np.isfinite(x).all():
        raise UsageError(f"dataset {name!r}: x_{split} contains NaN or infinite values")
    return x


def _split(
    name: str, arrays: dict[str, np.ndarray], val_fraction: float, seed: int, max_train: int | None
) -> dict[str, np.ndarray]:
    """Checked arrays with a validation split (carved from training data unless given)."""
    out = {
        "x_train": _check_pair(name, "train", arrays["x_train"], arrays["y_train"]),
        "y_train": arrays["y_train"],
    }
    rng = np.random.default_rng(seed)
    if "x_val" in arrays:
        out["x_val"] = _check_pair(name, "val", arrays["x_val"], arrays["y_val"])
        out["y_val"] = arrays["y_val"]
    else:  # held-out split carved from the training data (MnasNet, arXiv:1807.11626)
        n = len(out["y_train"])
        if n < 2:
            raise UsageError(f"dataset {name!r}: need at least 2 training samples to split")
        order = rng.permutation(n)
        n_val = min(max(1, round(n * val_fraction)), n - 1)
        for k in ("x", "y"):
            whole = out[f"{k}_train"]
            out[f"{k}_val"], out[f"{k}_train"] = whole[order[:n_val]], whole[order[n_val:]]
    if max_train is not None and max_train < len(out["y_train"]):
        keep = rng.permutation(len(out["y_train"]))[:max_train]
        out["x_train"], out["y_train"] = out["x_train"][keep], out["y_train"][keep]
    if "x_test" in arrays:
        out["x_test"] = _check_pair(name, "test", arrays["x_test"], arrays["y_test"])
        out["y_test"] = arrays["y_test"]
    for split in ("val", "test"):
        x = out.get(f"x_{split}")
        if x is not None and x.shape[1:] != out["x_train"].shape[1:]:
            raise UsageError(
                f"dataset {name!r}: x_{split} samples have shape {x.shape[1:]}, "
                f"x_train samples {out['x_train'].shape[1:]}"
            )
    return out


def _assemble(
    name: str,
    arrays: dict[str, np.ndarray],
    *,
    val_fraction: float,
    seed: int,
    max_train: int | None,
) -> Dataset:
    parts = _split(name, arrays, val_fraction, seed, max_train)
    num_classes = 1 + max(int(v.max()) for k, v in parts.items() if k.startswith("y_") and len(v))
    x_train = parts["x_train"]
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 1e-12, std, 1.0)
    shift = mean[None, :, None, None].astype(np.float32)
    scale = std[None, :, None, None].astype(np.float32)

    def tensor(key: str) -> torch.Tensor | None:
        arr = parts.get(key)
        if arr is None:
            return None
        if key.startswith("y_"):
            return torch.from_numpy(np.ascontiguousarray(arr.astype(np.int64)))
        out = arr.astype(np.float32)
        out -= shift
        out /= scale
        return torch.from_numpy(np.ascontiguousarray(out))

    return Dataset(
        name=name,
        x_train=tensor("x_train"),
        y_train=tensor("y_train"),
        x_val=tensor("x_val"),
        y_val=tensor("y_val"),
        num_classes=num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        x_test=tensor("x_test"),
        y_test=tensor("y_test"),
    )
