"""CIFAR-10 from its binary distribution: the record layout, the files, an optional download."""

from __future__ import annotations

import logging
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import UsageError

__all__ = ["CIFAR10_URL", "read_cifar10_bin", "cifar10_arrays"]

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"


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


def cifar10_arrays(root: Path, download: bool) -> dict[str, np.ndarray]:
    folder = root / _CIFAR_DIR
    needed = [folder / f for f in (*_CIFAR_TRAIN, _CIFAR_TEST)]
    if not all(p.is_file() for p in needed):
        if not download:
            raise UsageError(
                f"CIFAR-10 binary files not found in {str(folder)!r}; download them with "
                f"download=True or extract {CIFAR10_URL} under {str(root)!r}", params=("download",)
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
