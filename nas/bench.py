"""Controllers against a lookup table, in process: no Ray, no training.

A tabular benchmark (NAS-Bench-201, arXiv:2001.00326, or any CSV with one row per architecture)
replaces training by a table lookup, so a controller's search quality can be measured over many
seeds in seconds. Each trial asks the controller, looks the architecture up by the space's canonical
string (:meth:`Space.to_string`), and tells the reward: the metric itself, or MnasNet's
``ACC * (LAT / T) ** w`` (arXiv:1807.11626, eq. 2) when a latency column is given. Architectures
missing from the table (or with a missing metric) are failed trials.

Python use::

    from nas import get_space
    from nas.bench import TableObjective, run_bench, summarize, synthetic_table

    space = get_space("nasbench201")
    objective = TableObjective(space, synthetic_table(space, seed=0), key="arch_str",
                               metric="accuracy")
    curves = run_bench(objective, ["random", "evolution", "rl"], trials=100, seeds=30)
    print(summarize(curves))
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas.controller import Controller
from nas.errors import UsageError
from nas.registry import CONTROLLERS
from nas.reward import mnas_reward
from nas.space import Space

__all__ = [
    "TableObjective",
    "load_table",
    "synthetic_table",
    "checkpoints",
    "run_controller",
    "run_bench",
    "summarize",
    "plot_curves",
    "write_outputs",
]

log = logging.getLogger(__name__)

CURVE_COLUMNS = ["controller", "seed", "trial", "metric", "reward", "best_metric", "best_reward"]


def load_table(path: str | Path, *, key: str, metric: str,
               latency_column: str | None = None) -> pd.DataFrame:
    """Read a CSV lookup table and check that the named columns exist.

    Raises:
        UsageError: the file is missing or unreadable, or a column is absent (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--table: file not found: {path}")
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UsageError(f"--table: cannot read {path} as CSV ({exc})") from None
    named = (("--key", key), ("--metric", metric), ("--latency-column", latency_column))
    for flag, column in named:
        if column is not None and column not in table.columns:
            raise UsageError(
                f"{flag}: column {column!r} is not in {path.name} "
                f"(columns: {', '.join(map(str, table.columns))})"
            )
    return table


class TableObjective:
    """A lookup table playing the evaluator: architecture -> raw metrics and reward.

    Args:
        space: the space whose canonical strings key the table.
        table: one row per architecture.
        key: column of canonical strings (``arch_str`` for NAS-Bench-201).
        metric: column playing accuracy (higher is better).
        latency_column: optional cost column; with it the reward is MnasNet's.
        target_ms: the latency target T (required with ``latency_column``; > 0).
        alpha: exponent under the target (MnasNet soft preset: -0.07).
        beta: exponent over the target (soft: -0.07; hard: -1).
    """

    def __init__(self, space: Space, table: pd.DataFrame, *, key: str, metric: str,
                 latency_column: str | None = None, target_ms: float | None = None,
                 alpha: float = -0.07, beta: float = -0.07) -> None:
        for flag, column in (("key", key), ("metric", metric), ("latency_column", latency_column)):
            if column is not None and column not in table.columns:
                raise UsageError(f"{flag}={column!r}: no such column in the table")
        if latency_column is not None and (
            target_ms is None or not math.isfinite(target_ms) or target_ms <= 0
        ):
            raise UsageError(f"target_ms={target_ms!r}: a positive target is needed with a "
                             "latency column")
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
        self._check_keys(table[key].astype(str).head(100))
        self.best_metric = float(np.nanmax(values[:, 0])) if len(values) else math.nan

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
        if self.latency_column:
            return ("accuracy", "latency_ms", "reward")
        return ("accuracy", "reward")

    def evaluate(self, arch: Any) -> dict[str, float] | None:
        """``{"accuracy", "reward"[, "latency_ms"]}`` of ``arch``; ``None`` for a failed trial."""
        row = self._rows.get(self.space.to_string(arch))
        if row is None or not math.isfinite(row[0]):
            return None
        if self.latency_column is None:
            return {"accuracy": float(row[0]), "reward": float(row[0])}
        reward = mnas_reward(row[0], row[1], self.target_ms, self.alpha, self.beta)
        if not math.isfinite(reward):
            return None
        return {"accuracy": float(row[0]), "latency_ms": float(row[1]), "reward": reward}


def synthetic_table(space: Space, *, seed: int = 0, interactions: float = 0.5,
                    noise: float = 0.2, max_size: int = 200_000) -> pd.DataFrame:
    """A structured table over a whole (small) space, for benchmarks and tests.

    The score is a sum of per-decision main effects, pairwise interactions between decisions
    (``interactions`` scales them relative to the main effects) and per-architecture noise; it is
    mapped to an accuracy in percent. Latency grows with the options that help accuracy, so the
    accuracy-latency trade-off is real. Columns: ``arch_str`` (canonical string), ``accuracy``,
    ``latency_ms``.
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


def checkpoints(trials: int) -> list[int]:
    """10, 25, 50, 100, 250, 500, ... up to ``trials`` (always ending with ``trials``)."""
    marks, scale = [], 1
    while scale * 10 <= trials:
        marks += [m * scale for m in (10, 25, 50) if m * scale <= trials]
        scale *= 10
    if not marks or marks[-1] != trials:
        marks.append(trials)
    return marks


def run_controller(controller: Controller, objective: TableObjective, *, trials: int,
                   workers: int = 1, seed: int = 0) -> np.ndarray:
    """Run one search; rows per trial: metric, reward, best metric so far, best reward so far.

    With ``workers > 1`` that many proposals stay outstanding and each step tells a random one
    of them (drawn with ``seed``), as finishing workers would.
    """
    missing = set(controller.required_metrics) - set(objective.metric_names)
    if missing:
        raise UsageError(f"--controllers: {controller.name!r} needs metric(s) {sorted(missing)}; "
                         "pass --latency-column")
    order_rng = np.random.default_rng([seed, 7919])
    pending = [controller.ask() for _ in range(min(workers, trials))]
    out = np.full((trials, 4), np.nan)
    for t in range(trials):
        proposal = pending.pop(int(order_rng.integers(len(pending))))
        metrics = objective.evaluate(proposal.arch)
        reward = None if metrics is None else metrics["reward"]
        controller.tell(proposal, metrics if controller.wants_metrics else reward)
        if t + len(pending) + 1 < trials:
            pending.append(controller.ask())
        if metrics is not None:
            out[t, :2] = metrics["accuracy"], reward
    out[:, 2] = np.fmax.accumulate(out[:, 0])
    out[:, 3] = np.fmax.accumulate(out[:, 1])
    return out


def run_bench(objective: TableObjective, controllers: Sequence[str], *, trials: int = 100,
              seeds: int = 30, first_seed: int = 0, workers: int = 1,
              options: Mapping[str, Mapping[str, Any]] | None = None,
              progress: Callable[[str, int], None] | None = None) -> pd.DataFrame:
    """Every controller on every seed; the per-trial curves in long form (:data:`CURVE_COLUMNS`).

    Args:
        objective: the lookup table.
        controllers: registered controller names.
        trials: trials per search (>= 1).
        seeds: searches per controller (>= 1), seeded ``first_seed, first_seed + 1, ...``.
        first_seed: the first seed (>= 0).
        workers: proposals outstanding at once (>= 1).
        options: per-controller constructor options, e.g. ``{"evolution": {"sample_size": 5}}``.
        progress: called with ``(controller, seed)`` before each search.
    """
    for name, value, low in (("trials", trials, 1), ("seeds", seeds, 1),
                             ("first_seed", first_seed, 0), ("workers", workers, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"--{name.replace('_', '-')}={value!r}: must be an integer >= {low}")
    options = dict(options or {})
    unknown = set(options) - set(controllers)
    if unknown:
        raise UsageError(f"--set: options given for {sorted(unknown)}, which are not in "
                         f"--controllers {list(controllers)}")
    frames = []
    for name in controllers:
        if name not in CONTROLLERS:
            raise UsageError(f"--controllers: unknown controller {name!r}; "
                             f"known: {', '.join(CONTROLLERS.names())}")
        for seed in range(first_seed, first_seed + seeds):
            if progress is not None:
                progress(name, seed)
            ctrl = CONTROLLERS.create(name, space=objective.space, seed=seed,
                                      **dict(options.get(name, {})))
            curve = run_controller(ctrl, objective, trials=trials, workers=workers, seed=seed)
            frame = pd.DataFrame(curve, columns=CURVE_COLUMNS[3:])
            frame.insert(0, "trial", np.arange(1, trials + 1))
            frame.insert(0, "seed", seed)
            frame.insert(0, "controller", name)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def summarize(curves: pd.DataFrame, marks: Sequence[int] | None = None) -> pd.DataFrame:
    """Per controller: mean and std over seeds of the best metric at each mark, and final reward.

    Columns ``best@N mean``/``best@N std`` for each mark N, ``final reward mean``/``std`` and
    ``failed`` (mean failed trials per search); one row per controller, in first-seen order.
    """
    trials = int(curves["trial"].max())
    marks = list(marks) if marks is not None else checkpoints(trials)
    rows = []
    for name, group in curves.groupby("controller", sort=False):
        row: dict[str, Any] = {"controller": name}
        for mark in marks:
            best = group.loc[group["trial"] == mark, "best_metric"]
            row[f"best@{mark} mean"], row[f"best@{mark} std"] = best.mean(), best.std(ddof=0)
        final = group.loc[group["trial"] == trials, "best_reward"]
        row["final reward mean"], row["final reward std"] = final.mean(), final.std(ddof=0)
        row["failed"] = group["metric"].isna().groupby(group["seed"]).sum().mean()
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, path: str | Path, *, metric: str = "metric") -> Path:
    """PNG of the mean best-metric curve of each controller with a +-1 std band (Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, group in curves.groupby("controller", sort=False):
        stats = group.groupby("trial")["best_metric"].agg(["mean", "std"])
        ax.plot(stats.index, stats["mean"], label=str(name))
        ax.fill_between(stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"],
                        alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.set_ylabel(f"best {metric} so far (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_outputs(curves: pd.DataFrame, summary: pd.DataFrame, out_dir: str | Path, *,
                  metric: str = "metric") -> dict[str, Path]:
    """Write ``curves.csv``, ``summary.csv`` and ``curves.png`` into ``out_dir`` (created)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {out} ({exc})") from None
    paths = {"curves": out / "curves.csv", "summary": out / "summary.csv",
             "plot": out / "curves.png"}
    curves.to_csv(paths["curves"], index=False)
    summary.to_csv(paths["summary"], index=False)
    plot_curves(curves, paths["plot"], metric=metric)
    return paths
