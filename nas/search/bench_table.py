"""Lookup tables for ``nas bench`` (:mod:`nas.search.bench`): reading a table (CSV, one row per
architecture), the objective that looks a controller's proposals up in it, and a synthetic table
for tests."""

from __future__ import annotations

import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas._fs import read_bytes
from nas.errors import UsageError
from nas.reward import mnas_reward
from nas.space import Space

__all__ = ["TableObjective", "load_table", "synthetic_table", "TABLE_CAP"]

TABLE_CAP = 1 << 30  # NAS-Bench-201's full table is a few megabytes


def load_table(table: str | Path, *, key: str, metric: str,
               latency_column: str | None = None) -> pd.DataFrame:
    """Read a CSV lookup table and check that the named columns exist.

    Raises:
        UsageError: the file is missing or unreadable, or a column is absent (named in the message).
    """
    path = Path(table)
    try:
        data = read_bytes(path, "table", cap=TABLE_CAP)
    except FileNotFoundError:
        raise UsageError(f"table: file not found: {path}", params=("table",)) from None
    except UsageError as exc:
        raise UsageError(str(exc), params=("table",)) from None
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"table: cannot read {path} as CSV ({first})",
                         params=("table",)) from None
    named = (("key", key), ("metric", metric), ("latency_column", latency_column))
    for param, column in named:
        if column is not None and column not in frame.columns:
            raise UsageError(f"{param}: column {column!r} is not in {path.name} "
                             f"(columns: {', '.join(map(str, frame.columns))})", params=(param,))
    return frame


class TableObjective:
    """A lookup table playing the evaluator: architecture -> raw metrics and reward.

    Args:
        space: the space whose canonical strings key the table.
        table: one row per architecture.
        key: column of canonical strings (``arch_str`` for NAS-Bench-201).
        metric: column playing accuracy (higher is better).
        latency_column: optional latency column (the cost ``latency_ms``).
        target_ms: the cost target T (required with a cost; > 0), in the cost's unit.
        alpha: exponent under the target (MnasNet soft preset: -0.07).
        beta: exponent over the target (soft: -0.07; hard: -1).
        cost: ``"params"``: the cost is the parameter count of the space's network
            (:meth:`Space.count_params`), instead of a latency column.
    """

    def __init__(self, space: Space, table: pd.DataFrame, *, key: str, metric: str,
                 latency_column: str | None = None, target_ms: float | None = None,
                 alpha: float = -0.07, beta: float = -0.07, cost: str | None = None) -> None:
        for flag, column in (("key", key), ("metric", metric), ("latency_column", latency_column)):
            if column is not None and column not in table.columns:
                raise UsageError(f"{flag}={column!r}: no such column in the table")
        if cost not in (None, "params"):
            raise UsageError(f"cost={cost!r}: allowed: params (or a latency column)")
        if cost is not None and latency_column is not None:
            raise UsageError("cost: give either a latency column or cost='params', not both")
        self.cost_name = "latency_ms" if latency_column else ("params" if cost else None)
        if self.cost_name is not None and (
            target_ms is None or not math.isfinite(target_ms) or target_ms <= 0
        ):
            raise UsageError(f"target={target_ms!r}: a positive target is needed with a cost")
        for name, value in (("alpha", alpha), ("beta", beta)):
            if not math.isfinite(value):
                raise UsageError(f"{name}={value!r}: must be finite")
        duplicated = table[key].duplicated()
        if duplicated.any():
            raise UsageError(f"key={key!r}: duplicate architecture "
                             f"{table[key][duplicated].iloc[0]!r} in the table")
        self.space, self.metric, self.latency_column = space, metric, latency_column
        self.target_ms, self.alpha, self.beta = target_ms, alpha, beta
        columns = [metric] + ([latency_column] if latency_column else [])
        values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
        self._rows = dict(zip(table[key].astype(str), values, strict=True))
        self._keys = table[key].astype(str)
        self._check_keys(self._keys.head(100))
        self.best_metric = float(np.nanmax(values[:, 0])) if len(values) else math.nan
        self._params: dict[str, float] = {}

    def _check_keys(self, keys: pd.Series) -> None:
        for text in keys:
            try:
                self.space.from_string(text)
                return
            except (UsageError, ValueError, KeyError):
                continue
        if len(keys):
            raise UsageError(f"key: no key parses as an architecture of space {self.space.name!r} "
                             f"(first: {keys.iloc[0]!r})")

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Names of the metrics :meth:`evaluate` returns."""
        return ("accuracy", "reward") if self.cost_name is None else (
            "accuracy", self.cost_name, "reward")

    def _cost(self, text: str, row: np.ndarray) -> float:
        if self.latency_column is not None:
            return float(row[1])
        if text not in self._params:
            self._params[text] = float(self.space.count_params(self.space.from_string(text)))
        return self._params[text]

    def costs(self) -> np.ndarray:
        """The cost of every architecture of the table (for reference fronts)."""
        return np.array([self._cost(k, self._rows[k]) for k in self._keys])

    def metrics(self) -> np.ndarray:
        """The metric of every architecture of the table."""
        return np.array([self._rows[k][0] for k in self._keys])

    def reward(self, accuracy: float, cost: float | None) -> float:
        """The reward of raw values: the accuracy, or MnasNet's reward with a cost."""
        if self.cost_name is None:
            return float(accuracy)
        return mnas_reward(accuracy, cost, self.target_ms, self.alpha, self.beta)

    def evaluate(self, arch: Any) -> dict[str, float] | None:
        """``{"accuracy", "reward"[, cost]}`` of ``arch``; ``None`` for a failed trial."""
        text = self.space.to_string(arch)
        row = self._rows.get(text)
        if row is None or not math.isfinite(row[0]):
            return None
        if self.cost_name is None:
            return {"accuracy": float(row[0]), "reward": float(row[0])}
        cost = self._cost(text, row)
        reward = self.reward(row[0], cost)
        if not math.isfinite(reward):
            return None
        return {"accuracy": float(row[0]), self.cost_name: cost, "reward": reward}


def synthetic_table(space: Space, *, seed: int = 0, interactions: float = 0.5,
                    noise: float = 0.2, max_size: int = 200_000) -> pd.DataFrame:
    """A structured table over a whole (small) space, for tests.

    The score is a sum of per-decision main effects, pairwise interactions between decisions
    (``interactions`` scales them relative to the main effects) and per-architecture noise; it is
    mapped to an accuracy in percent. Latency grows with the options that help accuracy, so the
    accuracy-latency trade-off is real. Columns: ``arch_str`` (canonical string), ``accuracy``,
    ``latency_ms``. It ranks controllers differently from real tables: benchmark on a real one.
    """
    if space.size() > max_size:
        raise UsageError(f"space {space.name!r} has {space.size()} architectures; "
                         f"synthetic tables enumerate at most max_size={max_size}")
    rng = np.random.default_rng(seed)
    sizes = [len(c) for c in space.choices().values()]
    idx = np.array(list(itertools.product(*(range(n) for n in sizes))), dtype=int)
    mains = [rng.normal(size=n) for n in sizes]
    score = sum(mains[d][idx[:, d]] for d in range(len(sizes)))
    for a, b in itertools.combinations(range(len(sizes)), 2):
        score = score + interactions * rng.normal(size=(sizes[a], sizes[b]))[idx[:, a], idx[:, b]]
    score = score + noise * rng.normal(size=len(idx))
    accuracy = 70.0 + 6.0 * (score - score.mean()) / max(score.std(), 1e-12)
    costs = [np.exp(0.5 * m + 0.3 * rng.normal(size=len(m))) for m in mains]
    latency = 1.0 + sum(costs[d][idx[:, d]] for d in range(len(sizes)))
    keys = [space.to_string(space.decode(row)) for row in idx.tolist()]
    return pd.DataFrame({"arch_str": keys, "accuracy": np.clip(accuracy, 1.0, 99.9).round(3),
                         "latency_ms": latency.round(4)})
