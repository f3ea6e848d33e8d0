"""Project exceptions.

Every error a user can cause by bad input derives from :class:`NasError` and carries a one-line
message that names the offending key or value and what is allowed. The CLI maps
:class:`UsageError` (and its subclasses) to exit code 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

__all__ = [
    "NasError",
    "UsageError",
    "ConfigError",
    "InvalidArchError",
    "UnknownNameError",
    "UnknownOptionError",
    "RefusedNameError",
    "UntrustedNameError",
    "RunLockedError",
    "TrialFailed",
    "SearchFailed",
    "SearchInterrupted",
    "did_you_mean",
    "unknown_key",
]


class NasError(Exception):
    """Base class of every error raised on purpose by mnas."""


class UsageError(NasError, ValueError):
    """Bad input from a user (a config value, a CLI argument, a file); the CLI exits with code 2.

    ``params`` names the function parameters the message mentions (as ``name=value`` or the bare
    name); the CLI rewrites them to its flags (``train_epochs=0`` becomes ``--train-epochs=0``),
    so the library speaks of parameters and the command line of flags.
    """

    def __init__(self, message: str = "", *, params: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.params = tuple(params)


class ConfigError(UsageError):
    """A configuration key or value is invalid; the message names the key path."""


class InvalidArchError(UsageError):
    """An architecture does not belong to its space (unknown/missing label, value not allowed)."""


class UnknownNameError(UsageError, KeyError):
    """A registry lookup failed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class UnknownOptionError(UsageError):
    """An option a space, controller or evaluator does not take (``key``; ``detail`` says why)."""

    def __init__(self, owner: str, key: str, detail: str) -> None:
        super().__init__(f"{owner}: {key}: {detail}")
        self.key, self.detail = key, detail


class RefusedNameError(UsageError):
    """A ``module:attr`` name points to something of the wrong kind; it was not called."""


class UntrustedNameError(RefusedNameError):
    """A ``module:attr`` name read from a file, refused without ``trust_code``; not imported."""


class RunLockedError(UsageError):
    """Another process holds the run folder's lock (the message names pid, host and since)."""


class TrialFailed(NasError):
    """A child could not be evaluated (exception, NaN loss, divergence, time budget)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TrialRejected(NasError):
    """A child broke a hard constraint before training (:mod:`nas.constraints`)."""

    def __init__(self, violation: dict) -> None:
        super().__init__(violation["reason"])
        self.violation = violation


class SearchFailed(NasError):
    """Every finished child of a search failed (the CLI's exit 1); ``reasons`` counts why."""

    def __init__(self, run_dir: object, reasons: list[tuple[str, int]]) -> None:
        top = "; ".join(f"{n} x {r}" for r, n in reasons) or "unknown"
        super().__init__(f"every child of {run_dir} failed: {top}")
        self.run_dir, self.reasons = run_dir, reasons


class SearchInterrupted(NasError):
    """A search stopped before its trial budget (Ctrl-C; the CLI's exit 130); it can resume."""

    def __init__(self, run_dir: object, trials: int, target: int) -> None:
        super().__init__(f"{run_dir}: stopped at {trials}/{target} trials; continue with "
                         f"nas.resume({str(run_dir)!r})")
        self.run_dir, self.trials, self.target = run_dir, trials, target


def did_you_mean(name: object, known: Collection[str]) -> str:
    """``" (did you mean 'x'?)"`` for the nearest known name, else ``""``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_key(path: str, key: str, known: Collection[str]) -> ConfigError:
    """The error for ``path`` (e.g. ``reward.targt``) not being a key; lists the known ones."""
    return ConfigError(f"{path}: unknown key{did_you_mean(key, known)}; known: "
                       f"{', '.join(known)}")
