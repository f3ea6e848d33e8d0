"""Proxy datasets: named, split, normalised; in memory, or streamed for large image folders.

Datasets are named by a string:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, offline; the default).
* ``cifar10``: CIFAR-10 read from its *binary* distribution (``cifar-10-batches-bin``) with numpy,
  downloaded only when asked (nothing is ever unpickled).
* ``npz:PATH``: a user's ``.npz`` file with ``x_train`` and ``y_train`` and optionally ``x_val``/
  ``y_val`` and ``x_test``/``y_test``. Images are ``(N, C, H, W)`` or ``(N, H, W)`` (one channel);
  labels are integers ``0..K-1``.
* ``folder:PATH``: class-per-subfolder images read with Pillow (:mod:`nas.evaluation.images`),
  optionally split by ``train/``, ``val/`` and ``test/`` subfolders; decoded into memory, or
  streamed by DataLoader workers (:mod:`nas.evaluation.stream`) above a size threshold.
* ``torchvision:NAME``: a torchvision dataset whose files are under the data root
  (:mod:`nas.evaluation.vision`; torchvision is optional).

As in MnasNet (Tan et al., arXiv:1807.11626, section 4), the validation set that scores children is
carved from the *training* data with a seeded split, never from the test split. Inputs are
normalised per channel with the mean and standard deviation of the training part.

The trainer reads any dataset through its *batch source* (``dataset.batch_source(device)``, see
:class:`TensorBatches` and :class:`~nas.evaluation.stream.FileBatches`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nas._checks import check_int, check_number
from nas.errors import UsageError
from nas.evaluation.cifar import CIFAR10_URL, cifar10_arrays, read_cifar10_bin
from nas.evaluation.images import ImageOptions, channel_stats
from nas.evaluation.splits import SplitRule, carve, split_files, subset
from nas.evaluation.stream import StreamedImages

__all__ = ["Dataset", "TensorBatches", "AnyDataset", "ImageOptions", "load_dataset",
           "absolute_name", "DATASET_NAMES", "CIFAR10_URL", "read_cifar10_bin"]

log = logging.getLogger(__name__)

DATASET_NAMES = ("digits", "cifar10", "npz:PATH", "folder:PATH", "torchvision:NAME")
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
        classes: class names (an image folder's subfolders), or ``None``.
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
    classes: tuple[str, ...] | None = None

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

    def batch_source(self, device: torch.device) -> TensorBatches:
        """The training and validation tensors on ``device``, sliced into batches."""
        return TensorBatches(self, device)


AnyDataset = Dataset | StreamedImages


class TensorBatches:
    """The batch source of an in-memory :class:`Dataset`: tensors moved to the device once."""

    def __init__(self, data: Dataset, device: torch.device) -> None:
        self.x, self.y = data.x_train.to(device), data.y_train.to(device)
        self.x_val, self.y_val = data.x_val.to(device), data.y_val.to(device)
        self.num_train = len(self.y)

    def train_epoch(self, batch_size: int, generator: torch.Generator,
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``num_train // batch_size`` batches in a seeded random order (the rest is dropped)."""
        perm = torch.randperm(self.num_train, generator=generator).to(self.x.device)
        for step in range(self.num_train // batch_size):
            idx = perm[step * batch_size : (step + 1) * batch_size]
            yield self.x[idx], self.y[idx]

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation split in order."""
        for i in range(0, len(self.y_val), batch_size):
            yield self.x_val[i : i + batch_size], self.y_val[i : i + batch_size]


def load_dataset(
    name: str = "digits",
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    max_train: int | None = None,
    images: ImageOptions | None = None,
) -> AnyDataset:
    """Load a dataset by name (see the module docstring): a :class:`Dataset` in memory, or a
    :class:`~nas.evaluation.stream.StreamedImages` for an image folder that streams.

    Args:
        name: ``digits``, ``cifar10``, ``npz:PATH``, ``folder:PATH`` or ``torchvision:NAME``.
        val_fraction: share of the training data held out for validation, in (0, 1); ignored when
            the data brings its own validation split (npz ``x_val``/``y_val``, a ``val/`` folder).
        seed: seed of the validation split (and of the ``max_train`` subset).
        root: where CIFAR-10 and torchvision's datasets are (or are downloaded to); default
            ``$MNAS_DATA_DIR`` or ``~/.cache/mnas``.
        download: fetch CIFAR-10 or a torchvision dataset when its files are missing.
        max_train: keep at most this many training samples (a smaller proxy task).
        images: how image folders are read and when they stream (:class:`ImageOptions`).

    Raises:
        UsageError: unknown name, missing file, bad arrays, bad images, bad arguments.
    """
    check_number("val_fraction", val_fraction, strict=True, maximum=1.0, strict_max=True)
    check_int("max_train", max_train, optional=True)
    split = SplitRule(val_fraction, seed, max_train)
    images = ImageOptions() if images is None else images
    kind, arg = _parse_name(name)
    if images.stream is True and kind != "folder":
        raise UsageError(f"stream=True: only folder:PATH datasets stream, not {name!r}",
                         params=("stream",))
    if kind == "folder":
        return _load_folder(name, Path(arg).expanduser(), split, images)
    arrays = _resized(_arrays(name, kind, arg, root, download), images.image_size)
    return _assemble(name, arrays, split)


def _resized(arrays: dict[str, np.ndarray], size: int | None) -> dict[str, np.ndarray]:
    """The image arrays at ``size`` x ``size`` (area averaging down, bilinear up; a reduced
    resolution makes a cheaper proxy task, as EcoNAS, arXiv:2001.01233); labels as they are."""
    if size is None:
        return arrays
    out = dict(arrays)
    for key, arr in arrays.items():
        if not key.startswith("x_") or arr.ndim != 4 or arr.shape[-2:] == (size, size):
            continue
        mode = "area" if size < arr.shape[-1] else "bilinear"
        resized = []
        for start in range(0, len(arr), 4096):  # bounded memory for 60,000 images
            chunk = torch.from_numpy(np.ascontiguousarray(arr[start:start + 4096],
                                                          dtype=np.float32))
            kwargs = {"align_corners": False} if mode == "bilinear" else {}
            resized.append(F.interpolate(chunk, size=(size, size), mode=mode, **kwargs).numpy())
        out[key] = np.concatenate(resized) if resized else arr.astype(np.float32)
    return out


def _arrays(name: str, kind: str, arg: str, root: str | os.PathLike[str] | None,
            download: bool) -> dict[str, np.ndarray]:
    if kind == "digits":
        return _digits_arrays()
    if kind == "cifar10":
        return cifar10_arrays(_data_root(root), download)
    if kind == "npz":
        return _npz_arrays(Path(arg).expanduser())
    from nas.evaluation.vision import torchvision_arrays

    return torchvision_arrays(name, arg, _data_root(root), download)


def absolute_name(name: str) -> str:
    """``name`` with a ``npz:``/``folder:`` path made absolute (``~`` expanded), so that processes
    with another working directory (Ray's trial workers) find the same files; other names as
    they are."""
    kind, sep, arg = name.partition(":")
    if kind in ("npz", "folder") and sep and arg:
        return f"{kind}:{Path(arg).expanduser().absolute()}"
    return name


def _parse_name(name: Any) -> tuple[str, str]:
    """``(kind, argument)`` of a dataset name: ``("npz", PATH)``, ``("digits", "")``, ..."""
    if not isinstance(name, str):
        raise UsageError(f"dataset {name!r}: must be a string; known: {', '.join(DATASET_NAMES)}")
    if name in ("digits", "cifar10"):
        return name, ""
    kind, sep, arg = name.partition(":")
    if sep and arg and kind in ("npz", "folder", "torchvision"):
        return kind, arg
    raise UsageError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")


def _load_folder(name: str, path: Path, split: SplitRule, options: ImageOptions) -> AnyDataset:
    """An image folder, decoded into memory or (above the threshold, or forced) streamed."""
    from nas.evaluation.images import decode_files, probe_format, scan_folder

    tree = scan_folder(name, path)
    fmt = probe_format(name, tree.train, options.image_size)
    parts = split_files(name, tree, split)
    count = sum(len(files) for files in parts.values())
    stream = options.stream
    if stream == "auto":
        stream = fmt.decoded_mb(count) > options.stream_above_mb
        if stream:
            log.info("dataset %s: %d images of %s would take %.0f MiB decoded (above %g): "
                     "streaming", name, count, fmt, fmt.decoded_mb(count), options.stream_above_mb)
    if stream:
        from nas.evaluation.stream import streamed_images

        return streamed_images(name, parts, tree.classes, fmt, options, split.seed)
    arrays = {}
    for key, files in parts.items():
        arrays[f"x_{key}"], arrays[f"y_{key}"] = decode_files(name, files, fmt), files.labels
    return _assemble(name, arrays, SplitRule(split.val_fraction, split.seed, None),
                     classes=tree.classes)


# -- sources ---------------------------------------------------------------------------------------
def _digits_arrays() -> dict[str, np.ndarray]:
    table = digits_table()
    x = table[:, :-1].reshape(-1, 1, 8, 8).astype(np.float32)  # (N, 1, 8, 8), values 0..16
    y = table[:, -1].astype(np.int64)
    order = np.random.default_rng(_TEST_SPLIT_SEED).permutation(len(y))
    n_test = len(y) // 5
    test, train = order[:n_test], order[n_test:]
    return {"x_train": x[train], "y_train": y[train], "x_test": x[test], "y_test": y[test]}


def digits_table() -> np.ndarray:
    """scikit-learn's bundled 8x8 digits, as ``load_digits`` reads them (1797 rows: 64 pixels,
    then the label), from its CSV file without importing scikit-learn, whose import takes a
    second or two of every trial worker's start."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():  # laid out differently: ask scikit-learn
        from sklearn.datasets import load_digits

        digits = load_digits()
        return np.column_stack([digits.data, digits.target])
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return np.loadtxt(fh, delimiter=",")


def _data_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MNAS_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnas"


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


def _split(name: str, arrays: dict[str, np.ndarray], rule: SplitRule) -> dict[str, np.ndarray]:
    """Checked arrays with a validation split (carved from training data unless given)."""
    out = {"x_train": _check_pair(name, "train", arrays["x_train"], arrays["y_train"]),
           "y_train": arrays["y_train"]}
    rng = np.random.default_rng(rule.seed)
    if "x_val" in arrays:
        out["x_val"] = _check_pair(name, "val", arrays["x_val"], arrays["y_val"])
        out["y_val"] = arrays["y_val"]
    else:
        train, val = carve(name, len(out["y_train"]), rule.val_fraction, rng)
        for k in ("x", "y"):
            whole = out[f"{k}_train"]
            out[f"{k}_val"], out[f"{k}_train"] = whole[val], whole[train]
    keep = subset(len(out["y_train"]), rule.max_train, rng)
    if keep is not None:
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


def _assemble(name: str, arrays: dict[str, np.ndarray], rule: SplitRule, *,
              classes: tuple[str, ...] | None = None) -> Dataset:
    parts = _split(name, arrays, rule)
    num_classes = 1 + max(int(v.max()) for k, v in parts.items() if k.startswith("y_") and len(v))
    if classes is not None:
        num_classes = len(classes)
    mean, std = channel_stats(parts["x_train"])
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

    split = {k: tensor(k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    return Dataset(name=name, num_classes=num_classes, mean=tuple(float(m) for m in mean),
                   std=tuple(float(s) for s in std), classes=classes, **split)
