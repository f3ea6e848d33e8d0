"""mnas: platform-aware neural architecture search (MnasNet, arXiv:1807.11626) on Ray Tune."""

from __future__ import annotations

from nas.errors import (
    ConfigError,
    InvalidArchError,
    NasError,
    TrialFailed,
    UnknownNameError,
    UsageError,
)
from nas.registry import (
    CONTROLLERS,
    EVALUATORS,
    SPACES,
    evaluator,
    register_controller,
    register_evaluator,
    register_space,
)
from nas.space import Arch, Choice, Space

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "Choice",
    "Space",
    "SPACES",
    "CONTROLLERS",
    "EVALUATORS",
    "register_space",
    "register_controller",
    "register_evaluator",
    "evaluator",
    "get_space",
    "NasError",
    "UsageError",
    "ConfigError",
    "InvalidArchError",
    "UnknownNameError",
    "TrialFailed",
    "load_run",
    "build_from_card",
]


def load_run(path: str) -> object:
    """Load a run folder (finished or not): ``load_run(path).trials`` is a pandas DataFrame."""
    from nas.run import load_run as _load_run

    return _load_run(path)


def build_from_card(path: str, *, weights: bool = True) -> object:
    """Rebuild the model of an architecture card (``arch.json`` or its export folder), eval mode.

    See :func:`nas.export.card.build_from_card`: with the card's weights file the model gives the
    same
    outputs as the exported one.
    """
    from nas.export.card import build_from_card as _build_from_card

    return _build_from_card(path, weights=weights)


def get_space(name: str, /, **options: object) -> Space:
    """Create a registered space (or ``"package.module:Class"``) with its options."""
    space = SPACES.create(name, **options)
    if not isinstance(space, Space):
        raise UsageError(f"space {name!r} did not produce a nas.Space (got {type(space).__name__})")
    return space
