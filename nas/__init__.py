"""mnas: platform-aware neural architecture search (MnasNet, arXiv:1807.11626) on Ray Tune."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nas._version import __version__
from nas.errors import (
    ConfigError,
    InvalidArchError,
    NasError,
    SearchFailed,
    SearchInterrupted,
    TrialFailed,
    UnknownNameError,
    UsageError,
)
from nas.registry import (
    CONTROLLERS,
    EVALUATORS,
    SPACES,
    evaluator,
    get_controller,
    get_space,
    register_controller,
    register_evaluator,
    register_space,
)
from nas.search.controller import Controller, Proposal
from nas.space import Arch, Choice, Space

if TYPE_CHECKING:  # importing torch or pandas here would cost every `import nas`
    import torch

    from nas.run import Run

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
    "get_controller",
    "Controller",
    "Proposal",
    "__version__",
    "NasError",
    "UsageError",
    "ConfigError",
    "InvalidArchError",
    "UnknownNameError",
    "TrialFailed",
    "SearchFailed",
    "SearchInterrupted",
    "search",
    "resume",
    "load_run",
    "build_from_card",
]


def search(config: Any, **options: Any) -> Run:
    """Run a search (``config``: a YAML path, plain data or a SearchConfig) and return its Run.

    Keywords: ``trials``, ``name``, ``results_dir``, ``overrides`` (``{"evaluator.epochs": 3}``),
    ``address``, ``progress``; see :func:`nas.api.search`. Raises UsageError (bad input, before
    anything starts), SearchFailed (every child failed) or SearchInterrupted (stopped early).
    """
    from nas.api import search as _search

    return _search(config, **options)


def resume(run_dir: str, **options: Any) -> Run:
    """Continue a run folder to its trial budget and return its Run; see :func:`nas.api.resume`."""
    from nas.api import resume as _resume

    return _resume(run_dir, **options)


def load_run(path: str, *, trust_code: bool = False) -> Run:
    """Load a run folder (finished or not): ``load_run(path).trials`` is a pandas DataFrame.

    ``trust_code=True`` lets its export import a ``module:attr`` space its config names.
    """
    from nas.run import load_run as _load_run

    return _load_run(path, trust_code=trust_code)


def build_from_card(path: str, *, weights: bool = True,
                    trust_code: bool = False) -> torch.nn.Module:
    """Rebuild the model of an architecture card (``arch.json`` or its export folder), eval mode.

    See :func:`nas.export.rebuild.build_from_card`: with the card's weights file the model gives the
    same outputs as the exported one. ``trust_code=True`` imports a ``module:attr`` space the
    card names (registered names never need it).
    """
    from nas.export.rebuild import build_from_card as _build_from_card

    return _build_from_card(path, weights=weights, trust_code=trust_code)
