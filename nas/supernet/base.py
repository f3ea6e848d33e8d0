"""The contract between a space and the shared supernet machinery (SPOS, Guo et al.,
arXiv:1904.00420).

A space whose architectures can share weights implements the optional hook
:meth:`nas.space.Space.supernet` (``space.supernet(**options)``); what it returns is a
:class:`SupernetModule`, or any ``torch.nn.Module`` with the same methods:

- ``module(x, arch)`` runs one path, the architecture ``arch`` (train or eval mode);
- ``module.extract(arch)`` returns ``space.build(arch)`` holding the path's weights and BatchNorm
  buffers, in eval mode; its output equals the path's exactly (``torch.equal``) in eval mode;
- optionally ``module.sample(rng)``: the path of one single-path training step (default
  ``space.sample(rng)``), and ``module.extremes()``: the ``(largest, smallest)`` paths of the
  sandwich rule (BigNAS, arXiv:2003.11142);
- ``module.options``: the builder's options with their defaults filled in (plain data), which
  checkpoints record so that a folder is resumed, or loaded, with the same supernet.

Everything else (sampling, training, checkpoints, BN recalibration, scoring, the ``supernet``
evaluator) is shared (:mod:`nas.supernet`). Subclassing :class:`SupernetModule` asks for two
methods, ``forward`` and ``child_state`` (the child's state dict cut from the supernet); its
:meth:`~SupernetModule.extract` builds the child and loads that state strictly.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError, did_you_mean
from nas.space import Arch, Space

__all__ = ["SupernetModule", "make_supernet", "has_supernet", "extract", "sample_path",
           "names_extremes", "extremes_of", "Tensors"]

Tensors = dict[str, torch.Tensor]


class SupernetModule(nn.Module):
    """Every architecture of ``space`` in one network; ``forward(x, arch)`` runs one path.

    Subclasses implement :meth:`forward` and :meth:`child_state`, and may override
    :meth:`sample` and :meth:`extremes`.

    Args:
        space: the space whose architectures this supernet holds.
        options: the builder's options, defaults filled in (JSON-able; see :attr:`options`).
    """

    def __init__(self, space: Space, options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.space = space
        self.options: dict[str, Any] = dict(options or {})

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        """The logits of ``arch``'s path for the batch ``x``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(x, arch)")

    def child_state(self, arch: Arch) -> Tensors:
        """The state dict of ``space.build(arch)`` (every parameter and buffer) cut from this
        supernet: the tensors ``arch``'s path computes with (slices or views allowed)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement child_state(arch)")

    def sample(self, rng: np.random.Generator) -> Arch:
        """The path of one single-path training step (default: uniform over the space)."""
        return self.space.sample(rng)

    def extremes(self) -> tuple[Arch, Arch]:
        """``(largest, smallest)`` paths for the sandwich rule (optional)."""
        raise NotImplementedError(f"the supernet of space {self.space.name!r} does not name "
                                  "its largest and smallest paths (extremes())")

    def extract(self, arch: Arch | Mapping[str, Any]) -> nn.Module:
        """``space.build(arch)`` loaded strictly with :meth:`child_state`, on this supernet's
        device, in eval mode (the builder's random initialisation does not touch the caller's
        generator: it is overwritten)."""
        arch = self.space.validate(arch)
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        device = first.device if first is not None else torch.device("cpu")
        with torch.random.fork_rng(devices=[]):
            child = self.space.build(arch)
        with torch.no_grad():
            state = {k: v.detach() for k, v in self.child_state(arch).items()}
        child.to(device).load_state_dict(state, strict=True)
        return child.eval()


def has_supernet(space: Space) -> bool:
    """Whether ``space``'s class implements the :meth:`~nas.space.Space.supernet` hook."""
    return getattr(type(space), "supernet", Space.supernet) is not Space.supernet


def _check_keys(space: Space, options: Mapping[str, Any]) -> None:
    params = inspect.signature(space.supernet).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for key in options:
        if key not in known:
            raise ConfigError(f"supernet option supernet.{key}: unknown key"
                              f"{did_you_mean(key, known)}; the supernet of space "
                              f"{space.name!r} takes: {', '.join(known) or '(no options)'}")


def make_supernet(space: Space, options: Mapping[str, Any] | None = None) -> nn.Module:
    """``space.supernet(**options)``, checked.

    Raises:
        ConfigError: the space has no supernet hook, an option it does not take (named, with the
            ones it takes), or the hook returned something that is not a supernet module.
    """
    if options is not None and not isinstance(options, Mapping):
        raise ConfigError(f"supernet option supernet={options!r}: must be a mapping")
    options = dict(options or {})
    if not has_supernet(space):
        raise ConfigError(f"space {space.name!r} has no weight-sharing supernet (it does not "
                          "implement the Space.supernet hook)")
    _check_keys(space, options)
    module = space.supernet(**options)
    if not isinstance(module, nn.Module) or not callable(getattr(module, "extract", None)):
        raise ConfigError(f"space {space.name!r}: its supernet hook returned "
                          f"{type(module).__name__}, not a torch module with extract(arch)")
    return module


def extract(supernet: nn.Module, arch: Arch | Mapping[str, Any]) -> nn.Module:
    """``supernet.extract(arch)``: ``space.build(arch)`` with the path's weights, eval mode."""
    return supernet.extract(arch)  # type: ignore[operator]


def sample_path(supernet: nn.Module, rng: np.random.Generator) -> Arch:
    """The supernet's training path (its ``sample``, else uniform over its space)."""
    sample = getattr(supernet, "sample", None)
    return sample(rng) if callable(sample) else supernet.space.sample(rng)  # type: ignore[union-attr]


def names_extremes(supernet: nn.Module) -> bool:
    """Whether the supernet has its own ``extremes()`` (not :class:`SupernetModule`'s default)."""
    method = getattr(type(supernet), "extremes", None)
    return callable(method) and method is not SupernetModule.extremes


def extremes_of(supernet: nn.Module) -> tuple[Arch, Arch]:
    """``(largest, smallest)`` of the supernet (its ``extremes()``).

    Raises:
        ConfigError: it names none (the sandwich rule needs them).
    """
    method = getattr(supernet, "extremes", None)
    try:
        if not callable(method):
            raise NotImplementedError(f"the supernet of space {supernet.space.name!r} does not "
                                      "name its largest and smallest paths (extremes())")
        return method()
    except NotImplementedError as exc:
        raise ConfigError(f"supernet option sampling='sandwich': {exc}") from None
