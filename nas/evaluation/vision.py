"""torchvision's classification datasets by name (``torchvision:MNIST``, ``torchvision:CIFAR100``).

torchvision is optional (``pip install -e '.[vision]'``). A dataset is read from the data root as
torchvision lays it out there (``ROOT/MNIST/raw``, ``ROOT/cifar-100-python``, ...) and downloaded
only with ``download``. Its official training split becomes the training data (the validation
split is carved from it like the other datasets') and its test split the test data.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from nas.errors import UsageError

__all__ = ["TORCHVISION_DATASETS", "torchvision_arrays"]

# name -> how its constructor selects the split: a `train` flag or a `split` string
TORCHVISION_DATASETS = {"MNIST": "train", "FashionMNIST": "train", "KMNIST": "train",
                        "USPS": "train", "CIFAR10": "train", "CIFAR100": "train",
                        "SVHN": "split", "STL10": "split"}


def torchvision_arrays(name: str, tv_name: str, root: Path, download: bool,
                       ) -> dict[str, np.ndarray]:
    """``x_train``/``y_train``/``x_test``/``y_test`` of torchvision dataset ``tv_name``.

    Raises:
        UsageError: an unsupported name, torchvision missing, the files absent (and no
            ``download``), a failed download.
    """
    if tv_name not in TORCHVISION_DATASETS:
        raise UsageError(f"dataset {name!r}: unknown torchvision dataset {tv_name!r}; "
                         f"supported: {', '.join(TORCHVISION_DATASETS)}")
    module = _datasets_module(name)
    cls = getattr(module, tv_name, None)
    if cls is None:
        raise UsageError(f"dataset {name!r}: the installed torchvision has no dataset {tv_name!r}")
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        ds = _open(name, cls, TORCHVISION_DATASETS[tv_name], split, root, download)
        out[f"x_{split}"], out[f"y_{split}"] = _arrays_of(name, ds)
    return out


def _datasets_module(name: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module("torchvision.datasets")
    except ImportError:
        raise UsageError(f"dataset {name!r} needs torchvision, which is not installed; "
                         "install it: pip install -e '.[vision]' or pip install torchvision",
                         ) from None
    except (RuntimeError, OSError) as exc:  # e.g. built for another torch
        first = (str(exc).splitlines() or [""])[0]
        raise UsageError(f"dataset {name!r}: torchvision cannot be imported: {first}") from None


def _open(name: str, cls: Any, selector: str, split: str, root: Path, download: bool) -> Any:
    which = {"train": split == "train"} if selector == "train" else {"split": split}
    try:
        return cls(root=str(root), download=download, **which)
    except RuntimeError as exc:  # torchvision: "Dataset not found ... use download=True"
        if download:
            raise UsageError(f"dataset {name!r}: torchvision could not prepare it under "
                             f"{str(root)!r}: {(str(exc).splitlines() or [''])[0]}") from None
        raise UsageError(f"dataset {name!r}: its files are not under {str(root)!r}; set "
                         "download=True or place torchvision's files there",
                         params=("download",)) from None
    except OSError as exc:  # a failed download, an unreadable file
        raise UsageError(f"dataset {name!r}: cannot read or download it under {str(root)!r}: "
                         f"{exc}") from None


def _arrays_of(name: str, ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, H, W)`` or ``(N, C, H, W)`` and int64 labels from a torchvision dataset."""
    labels = getattr(ds, "targets", None)
    labels = getattr(ds, "labels", None) if labels is None else labels
    data = getattr(ds, "data", None)
    if data is None or labels is None:
        raise UsageError(f"dataset {name!r}: {type(ds).__name__} has no data/targets arrays")
    x = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    y = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # NHWC (CIFAR) -> NCHW
    return np.ascontiguousarray(x), y.astype(np.int64)
