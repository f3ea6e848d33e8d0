"""Torch threading for the controllers' tiny models (the rl policy, the bananas predictors)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["one_thread"]


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch single-threaded: the models are tiny, and thread hand-offs cost more than they
    save (tens of ms per update on a busy 2-core machine, against ~1 ms single-threaded)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
