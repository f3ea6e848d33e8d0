"""Small validation helpers shared by the settings dataclasses (train, latency, evaluate).

Every helper raises :class:`nas.errors.ConfigError` whose message starts with the key path
(``train.lr=-1.0: must be a positive number``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any

import torch

from nas.errors import ConfigError, unknown_key

__all__ = [
    "check_int",
    "check_number",
    "check_choice",
    "check_bool",
    "resolve_device",
    "torch_threads",
]


def check_int(key: str, value: Any, *, minimum: int = 1, optional: bool = False) -> int | None:
    """An integer >= ``minimum`` (``None`` allowed when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={value!r}: must be an integer >= {minimum}{extra}")
    return value


def check_number(
    key: str,
    value: Any,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    strict: bool = False,
    optional: bool = False,
) -> float | None:
    """A finite real number in ``[minimum, maximum)`` (``(minimum, ...)`` when ``strict``)."""
    if value is None and optional:
        return None
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if ok:
        ok = (value > minimum if strict else value >= minimum) and value < maximum
    if not ok:
        low = f"> {minimum}" if strict else f">= {minimum}"
        high = f" and < {maximum}" if math.isfinite(maximum) else ""
        extra = " or null" if optional else ""
        raise ConfigError(f"{key}={value!r}: must be a finite number {low}{high}{extra}")
    return float(value)


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> str:
    """One of the ``allowed`` strings."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{key}={value!r}: allowed values: {', '.join(allowed)}")
    return value


def check_bool(key: str, value: Any) -> bool:
    """A real boolean (not 0/1)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r}: must be true or false")
    return value


def check_device(value: Any, key: str = "device") -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (the name only: the device may live on a worker)."""
    if not isinstance(value, str) or not (
        value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        raise ConfigError(f"{key}={value!r}: allowed values: cpu, cuda, cuda:N")
    return value


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


def from_plain(cls: Any, data: Mapping[str, Any], prefix: str) -> Any:
    """``cls(**data)`` for a settings dataclass; an unknown key raises ConfigError naming it."""
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise unknown_key(f"{prefix}.{key}", key, sorted(known))
    return cls(**dict(data))
