"""The Python API of a search: :func:`search` and :func:`resume`, each returning a :class:`Run`.

They validate exactly as ``nas search`` and ``nas resume`` do (the same driver), and turn the
command's exit codes into exceptions: bad input raises :class:`nas.errors.UsageError` (exit 2)
before anything starts, a search whose every child failed raises
:class:`nas.errors.SearchFailed` (exit 1), and one stopped before its budget (Ctrl-C) raises
:class:`nas.errors.SearchInterrupted` (exit 130), which names the run to resume.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas.config import SearchConfig, apply_overrides, load_config, parse_config
from nas.errors import SearchFailed, SearchInterrupted, UsageError
from nas.run import Run, load_run

__all__ = ["search", "resume"]


def _as_strings(overrides: Mapping[str, Any] | None) -> list[str]:
    """``{"evaluator.epochs": 3}`` -> ``["evaluator.epochs=3"]`` (values as JSON, a YAML subset)."""
    if overrides is None:
        return []
    if not isinstance(overrides, Mapping):
        raise UsageError(f"overrides={overrides!r}: must be a mapping of key paths to values, "
                         "e.g. {'evaluator.epochs': 3}", params=("overrides",))
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def _config(config: str | Path | Mapping[str, Any] | SearchConfig,
            overrides: list[str]) -> tuple[SearchConfig, str | None]:
    """The validated config and the path it came from (None for data)."""
    if isinstance(config, str | Path):
        return load_config(config, overrides), str(config)
    if isinstance(config, SearchConfig):
        config = config.to_dict()
    if not isinstance(config, Mapping):
        raise UsageError(f"config: expected a path, a mapping or a SearchConfig, got "
                         f"{type(config).__name__}", params=("config",))
    return parse_config(apply_overrides(dict(config), overrides)), None


def _view(progress: bool, config: SearchConfig | None) -> Any:
    from nas.runner.progress import make_view

    mode = config.search.progress if config is not None else "auto"
    return make_view(mode if progress else "none")


def _outcome(result: Any, trust_code: bool = True) -> Run:
    if result.all_failed:
        raise SearchFailed(result.run_dir, result.failure_reasons)
    if result.stopped:  # the hard constraints rejected nearly every child
        raise SearchFailed(result.run_dir, [(result.stopped, result.rejected)])
    if not result.complete:
        raise SearchInterrupted(result.run_dir, result.trials, result.target)
    return load_run(result.run_dir, trust_code=trust_code)


def search(config: str | Path | Mapping[str, Any] | SearchConfig, *, trials: int | None = None,
           name: str | None = None, results_dir: str | Path | None = None,
           overrides: Mapping[str, Any] | None = None, address: str | None = None,
           progress: bool = True) -> Run:
    """Run a search and return its :class:`nas.run.Run`.

    Args:
        config: a YAML file, plain config data, or a :class:`nas.config.SearchConfig`.
        trials: the trial budget (``search.trials``).
        name: the run folder's name (default: the config's name, else its stem and the time).
        results_dir: where run folders go (``results_dir``).
        overrides: key paths to values, e.g. ``{"evaluator.epochs": 3}``.
        address: join this Ray cluster instead of starting a local one.
        progress: show progress (``search.progress`` decides how; False: nothing).
    """
    from nas.runner.driver import start_search

    extra = {**({"search.trials": trials} if trials is not None else {}),
             **({"results_dir": str(results_dir)} if results_dir is not None else {})}
    cfg, path = _config(config, _as_strings(overrides) + _as_strings(extra))
    result = start_search(cfg, name=name, address=address, progress=_view(progress, cfg),
                          config_path=path)
    return _outcome(result)


def resume(run_dir: str | Path, *, address: str | None = None, progress: bool = True,
           rebuild_state: bool = False, trust_code: bool = False) -> Run:
    """Continue a run folder to its trial budget and return its :class:`nas.run.Run`.

    ``trust_code=True`` imports the ``module:attr`` names (a custom space, controller or
    evaluator) the folder's ``config.yaml`` holds; without it they are refused (UsageError).
    """
    from nas.results import RunDir
    from nas.runner.resume import resume_search

    try:
        cfg = parse_config(RunDir.open(run_dir).read_config())
    except UsageError:
        cfg = None  # resume_search reports the folder's problem
    result = resume_search(run_dir, address=address, progress=_view(progress, cfg),
                           rebuild_state=rebuild_state, trust_code=trust_code)
    return _outcome(result, trust_code)
