"""Space-aware latency: measuring architectures with a cache, and lookup-table prediction.

* :func:`measure_arch` builds an architecture (or a preset) of a space and times it with
  :func:`nas.latency.measure.measure_latency`, optionally at another input size than the space's
  (proxy
  tasks often train at a small resolution while the deployment resolution decides latency).
* :class:`LatencyCache` memoises measurements by (architecture key, space options, batch size,
  device fingerprint); the Ray latency service (:mod:`nas.runner`) wraps one in a dedicated actor.
* :class:`LatencyTable` is a lookup-table predictor: a space splits a network into
  :class:`nas.space.LatencyUnit` s (stem, layers, head); each distinct unit is timed once and a
  network's latency is the sum of its units (as in the latency tables of FBNet, arXiv:1812.03443,
  and ProxylessNAS, arXiv:1812.00332). :func:`lut_report` checks it against measurement (Spearman
  rank correlation and median relative error).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from nas._fs import read_json, write_atomic
from nas.errors import ConfigError, UsageError
from nas.latency.measure import LatencyConfig, LatencyResult, measure_latency
from nas.space import Arch, LatencyUnit, Space

__all__ = ["latency_space", "measure_arch", "LatencyCache", "LatencyTable", "lut_report",
           "spearman"]

log = logging.getLogger(__name__)


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation of two equally long sequences (ties get average ranks)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or x.size < 2:
        raise ValueError(f"need two 1-d sequences of equal length >= 2, got {x.shape}, {y.shape}")
    rx, ry = _ranks(x), _ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(np.sqrt((rx**2).sum() * (ry**2).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size)
    ranks[order] = np.arange(x.size, dtype=float)
    for value in np.unique(x):  # average ranks of ties
        tie = x == value
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def latency_space(space: Space, config: LatencyConfig) -> Space:
    """``space`` itself, or a copy at ``config.input_size`` when that differs from the space's."""
    size = config.input_size
    if size is None or space.options.get("input_size") == size:
        return space
    if "input_size" not in space.options:
        raise ConfigError(
            f"latency.input_size={size}: space {space.name!r} has no input_size option"
        )
    return type(space)(**{**space.options, "input_size": size})


def measure_arch(
    space: Space, arch: Arch | None, config: LatencyConfig, *, preset: str | None = None
) -> LatencyResult:
    """Build ``arch`` (or ``preset``) of ``space`` at the latency input size and time it."""
    target = latency_space(space, config)
    if (arch is None) == (preset is None):
        raise UsageError("measure_arch needs exactly one of arch and preset")
    model = target.build_preset(preset) if preset is not None else target.build(arch)
    return measure_latency(model, target.input_shape(), config)


def _subject_key(space: Space, arch: Arch | None, preset: str | None, config: LatencyConfig) -> str:
    target = latency_space(space, config)
    subject = {"space": space.name, "options": target.options,
               "arch": None if arch is None else arch.to_dict()["decisions"], "preset": preset,
               "batch_size": config.batch_size}
    text = json.dumps(subject, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LatencyCache:
    """Memoised :func:`measure_arch`, keyed by (subject key, device fingerprint key).

    The subject key hashes the space name and options, the architecture (or preset) and the batch
    size; the fingerprint key names the device, thread count, torch version and runtime. Every
    result carries ``"measurement"``, the ordinal (1, 2, ...) of the timing that produced it, so a
    cache hit names the measurement it repeats.
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.hits = 0
        self.misses = 0

    def measure(
        self, space: Space, arch: Arch | None, config: LatencyConfig, *, preset: str | None = None,
        window: Callable[[], AbstractContextManager[dict[str, Any]]] | None = None,
    ) -> dict[str, Any]:
        """The measurement as plain data, with ``"cached"`` and ``"measurement"`` added.

        ``window`` makes the context a new timing runs in (e.g. a quiet window of
        :func:`nas.latency.conditions.measuring`); what it yields is kept as ``"conditions"``."""
        fingerprint = config.fingerprint()
        key = (_subject_key(space, arch, preset, config), fingerprint["key"])
        if key in self._entries:
            self.hits += 1
            return {**self._entries[key], "cached": True}
        self.misses += 1
        with (window or nullcontext)() as conditions:
            result = measure_arch(space, arch, config, preset=preset).to_dict()
        if conditions is not None:
            result["conditions"] = conditions
        result["measurement"] = self.misses
        self._entries[key] = result
        return {**result, "cached": False}

    def stats(self) -> dict[str, int]:
        """``{"entries", "hits", "misses"}``."""
        return {"entries": len(self._entries), "hits": self.hits, "misses": self.misses}


class LatencyTable:
    """Lookup-table latency predictor: sum of per-unit latencies, each unit timed once.

    Units timed alone run with warm caches, so the plain sum usually underestimates a whole
    network; :meth:`calibrate` fits one scale factor on a few end-to-end measurements.

    Args:
        config: how units are timed (device, threads, batch size, repeats, runtime).
        entries: known unit latencies in ms by unit key (e.g. loaded from a file).
        fingerprint: the device fingerprint the entries were measured on (defaults to this
            device's); new units are only measured when it matches this device.
        scale: multiplies every prediction (1.0 until calibrated).
    """

    def __init__(
        self,
        config: LatencyConfig | None = None,
        *,
        entries: Mapping[str, float] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        scale: float = 1.0,
    ) -> None:
        self.config = config or LatencyConfig()
        self.entries: dict[str, float] = dict(entries or {})
        self.scale = float(scale)
        here = self.config.fingerprint()
        self.fingerprint = dict(fingerprint) if fingerprint else here
        self._here_key = here["key"]

    def __len__(self) -> int:
        return len(self.entries)

    def unit_ms(self, unit: LatencyUnit) -> float:
        """Latency of one unit, measured on first use."""
        if unit.key not in self.entries:
            if self.fingerprint.get("key") != self._here_key:
                raise UsageError(
                    f"latency table was measured on {self.fingerprint.get('cpu')} "
                    f"(fingerprint {self.fingerprint.get('key')}); cannot add unit {unit.key!r} "
                    f"measured here (fingerprint {self._here_key})"
                )
            result = measure_latency(unit.build(), unit.input_shape,
                                     self.config)
            self.entries[unit.key] = result.median_ms
        return self.entries[unit.key]

    def predict(self, space: Space, arch: Arch) -> float:
        """Predicted latency (ms) of ``arch``: the sum of its units' latencies, times ``scale``."""
        units = latency_space(space, self.config).latency_units(arch)
        return self.scale * float(sum(self.unit_ms(u) for u in units))

    def calibrate(
        self, space: Space, archs: Sequence[Arch], measure: Callable[[Arch], float] | None = None
    ) -> float:
        """Set ``scale`` to the median of measured / summed latency over ``archs``; returns it.

        Use architectures other than those the table is then judged on.
        """
        if not archs:
            raise UsageError("calibrate needs at least one architecture")
        measure = measure or (lambda a: measure_arch(space, a, self.config).median_ms)
        self.scale = 1.0
        ratios = [float(measure(a)) / self.predict(space, a) for a in archs]
        self.scale = float(np.median(ratios))
        return self.scale

    def fill(self, space: Space, archs: Iterable[Arch]) -> int:
        """Measure every unit of ``archs`` not yet in the table; returns how many were added."""
        before = len(self.entries)
        for arch in archs:
            self.predict(space, arch)
        return len(self.entries) - before

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"fingerprint", "config", "scale", "entries"}``."""
        return {"fingerprint": self.fingerprint, "config": self.config.to_dict(),
                "scale": self.scale, "entries": dict(sorted(self.entries.items()))}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write JSON atomically (a unique temporary file replaced into place; a link at
        ``path`` is refused, never written through)."""
        write_atomic(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LatencyTable:
        """Read a table written by :meth:`save`."""
        path = Path(path)
        try:
            data = read_json(path, "latency table")
        except FileNotFoundError:
            raise UsageError(f"latency table {str(path)!r} does not exist") from None
        try:
            config = LatencyConfig.from_dict(data["config"])
            entries = {str(k): float(v) for k, v in data["entries"].items()}
            return cls(config, entries=entries, fingerprint=data["fingerprint"],
                       scale=float(data.get("scale", 1.0)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"latency table {str(path)!r} is not valid: {exc}") from None


def lut_report(
    space: Space,
    archs: Sequence[Arch],
    table: LatencyTable,
    *,
    measure: Callable[[Arch], float] | None = None,
) -> dict[str, Any]:
    """Accuracy of the lookup table against end-to-end measurement over ``archs``.

    Args:
        space: the space of ``archs``.
        archs: at least two architectures.
        table: the predictor (missing units are measured).
        measure: end-to-end latency of an arch in ms (default: :func:`measure_arch` with the
            table's config).

    Returns:
        ``{"n", "spearman", "median_rel_error", "rows"}`` where each row is ``{"arch_key",
        "predicted_ms", "measured_ms", "rel_error"}`` and rel_error = (predicted - measured) /
        measured.
    """
    if measure is None:
        def measure(arch: Arch) -> float:
            return measure_arch(space, arch, table.config).median_ms

    rows = []
    for arch in archs:
        predicted, measured = table.predict(space, arch), float(measure(arch))
        rows.append({"arch_key": arch.key, "predicted_ms": predicted, "measured_ms": measured,
                     "rel_error": (predicted - measured) / measured})
    errors = np.abs([r["rel_error"] for r in rows])
    return {
        "n": len(rows),
        "spearman": spearman([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows]),
        "median_rel_error": float(np.median(errors)),
        "rows": rows,
    }
