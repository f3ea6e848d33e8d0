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
    "get_space",
    "NasError",
    "UsageError",
    "ConfigError",
    "InvalidArchError",
    "UnknownNameError",
    "TrialFailed",
]


def get_space(name: str, **options: object) -> Space:
    """Create a registered space (or ``"package.module:Class"``) with its options."""
    space = SPACES.create(name, **options)
    if not isinstance(space, Space):
        raise UsageError(f"space {name!r} did not produce a nas.Space (got {type(space).__name__})")
    return space
