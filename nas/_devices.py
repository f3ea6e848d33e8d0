"""Torch device helpers shared by training and latency measurement."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nas._checks import check_device
from nas.errors import ConfigError

__all__ = ["resolve_device", "torch_threads"]


def resolve_device(value: Any, key: str = "device") -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a ``torch.device``; CUDA must be available here."""
    device = torch.device(check_device(value, key))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}={value!r}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}={value!r}: only {torch.cuda.device_count()} CUDA device(s) present"
            )
    return device


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the old count after."""
    if threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
