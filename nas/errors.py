"""Project exceptions.

Every error a user can cause by bad input derives from :class:`NasError` and carries a one-line
message that names the offending key or value and what is allowed. The CLI maps
:class:`UsageError` (and its subclasses) to exit code 2.
"""

from __future__ import annotations

__all__ = [
    "NasError",
    "UsageError",
    "ConfigError",
    "InvalidArchError",
    "UnknownNameError",
    "TrialFailed",
]


class NasError(Exception):
    """Base class of every error raised on purpose by mnas."""


class UsageError(NasError, ValueError):
    """Bad input from a user (a config value, a CLI argument, a file); the CLI exits with code 2."""


class ConfigError(UsageError):
    """A configuration key or value is invalid; the message names the key path."""


class InvalidArchError(UsageError):
    """An architecture does not belong to its space (unknown/missing label, value not allowed)."""


class UnknownNameError(UsageError, KeyError):
    """A registry lookup failed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class TrialFailed(NasError):
    """A child could not be evaluated (exception, NaN loss, divergence, time budget)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
