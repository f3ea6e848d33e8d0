"""The project's one set of value validators (torch-free).

Every settings object, config section, space, controller and evaluator checks its values with these
helpers. Each raises :class:`nas.errors.ConfigError` whose message starts with the key it was given
(``train.lr=-1.0: must be a finite number > 0``, ``rl option lr=0: ...``), so the error names the
parameter or config key; the CLI maps parameter names to its flags.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from nas.errors import ConfigError, unknown_key

__all__ = ["check_int", "check_number", "check_choice", "check_bool", "check_device",
           "check_known", "from_plain", "MAX_INPUT_SIZE"]

# the largest input height/width anything accepts (a 4096 x 4096 RGB image is 200 MB as float32);
# a bound, so that a typo such as 100000 is refused before a 40 GB tensor is allocated
MAX_INPUT_SIZE = 4096


def _error(key: str, message: str) -> ConfigError:
    """ConfigError ``key=...: message``; a bare parameter name is marked for the CLI's flags."""
    return ConfigError(message, params=(key,) if key.isidentifier() else ())


def _shown(bound: Any) -> str:
    """A bound as written: integers in full (1000000, not 1e+06), other numbers short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _bounds(minimum: Any, maximum: Any, strict: bool, strict_max: bool) -> str:
    low = "" if minimum is None else f" {'>' if strict else '>='} {_shown(minimum)}"
    if maximum is None:
        return low
    return f"{low}{' and' if low else ''} {'<' if strict_max else '<='} {_shown(maximum)}"


def check_int(key: str, value: Any, *, minimum: int | None = 1, maximum: int | None = None,
              optional: bool = False) -> int | None:
    """An integer in ``[minimum, maximum]`` (``None`` allowed when ``optional``)."""
    if value is None and optional:
        return None
    ok = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        extra = " or null" if optional else ""
        bounds = _bounds(minimum, maximum, False, False)
        raise _error(key, f"{key}={value!r}: must be an integer{bounds}{extra}")
    return int(value)


def check_number(key: str, value: Any, *, minimum: float | None = 0.0,
                 maximum: float | None = None, strict: bool = False, strict_max: bool = False,
                 optional: bool = False) -> float | None:
    """A finite real number between ``minimum`` and ``maximum``.

    Both bounds are inclusive unless ``strict`` (above the minimum) or ``strict_max`` (below the
    maximum); ``None`` for a bound means unbounded, and ``optional`` also allows ``None``.
    """
    if value is None and optional:
        return None
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)
    ok = ok and math.isfinite(float(value))
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if ok and maximum is not None:
        ok = value < maximum if strict_max else value <= maximum
    if not ok:
        extra = " or null" if optional else ""
        bounds = _bounds(minimum, maximum, strict, strict_max)
        raise _error(key, f"{key}={value!r}: must be a finite number{bounds}{extra}")
    return float(value)


def check_choice(key: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed`` (strings, numbers, booleans or None)."""
    plain = isinstance(value, str | int | float | bool) or value is None
    if not plain or value not in allowed or (isinstance(value, bool) and
                                             not any(a is value for a in allowed)):
        raise _error(key, f"{key}={value!r}: allowed values: {', '.join(map(str, allowed))}")
    return value


def check_bool(key: str, value: Any) -> bool:
    """A real boolean (not 0/1)."""
    if not isinstance(value, bool):
        raise _error(key, f"{key}={value!r}: must be true or false")
    return value


def check_device(value: Any, key: str = "device") -> str:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (the name only: the device may live on a worker)."""
    if not isinstance(value, str) or not (
        value == "cpu" or value == "cuda" or (value.startswith("cuda:") and value[5:].isdigit())
    ):
        raise _error(key, f"{key}={value!r}: allowed values: cpu, cuda, cuda:N")
    return value


def check_known(section: str, data: Mapping[str, Any], known: Collection[str]) -> None:
    """Every key of ``data`` is in ``known``; else ConfigError ``section.key``, a suggestion and
    the known keys in the order given."""
    for key in data:
        if key not in known:
            raise unknown_key(f"{section}.{key}", key, list(known))


def from_plain(cls: Any, data: Mapping[str, Any], prefix: str) -> Any:
    """``cls(**data)`` for a settings dataclass; an unknown key raises ConfigError naming it."""
    check_known(prefix, data, sorted(f.name for f in fields(cls)))
    return cls(**dict(data))
