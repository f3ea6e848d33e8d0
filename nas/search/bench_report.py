"""Tables, hypervolumes and figures of ``nas bench`` curves (see :mod:`nas.search.bench`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas._fs import user_dir, write_atomic
from nas.errors import UsageError
from nas.search.bench import checkpoints

__all__ = ["summarize", "HVNorm", "hypervolume", "hypervolume_table", "plot_curves",
           "write_outputs", "curve_label"]


def curve_label(metric: str, *, cost: bool = False, noise: bool = False) -> str:
    """What the curves' ``best_metric`` is (:func:`nas.search.bench.run_bench`): the true
    ``metric`` of the incumbent, the architecture the controller was told scored best. Alone,
    that is the best ``metric`` found; under a cost it is the ``metric`` of the best-*reward*
    architecture, and with noise that of the best-looking one: either can go down as trials
    are added."""
    if cost:
        return f"{metric} of the best-reward architecture"
    if noise:
        return f"true {metric} of the best-looking architecture"
    return f"best {metric}"


def summarize(curves: pd.DataFrame, marks: Sequence[int] | None = None) -> pd.DataFrame:
    """Per controller: mean, standard error and std over seeds of the best metric at each mark.

    Columns ``best@N mean``/``best@N se``/``best@N std`` for each mark N, ``final reward``
    ``mean``/``se``/``std``, ``failed`` (failed trials per search), ``repeats`` (repeated proposals
    answered from the records per search) and ``distinct_late`` (distinct architectures proposed
    in the last 100 trials); one row per controller, in first-seen order.
    """
    trials = int(curves["trial"].max())
    marks = list(marks) if marks is not None else checkpoints(trials)
    rows = []
    for name, group in curves.groupby("controller", sort=False):
        row: dict[str, Any] = {"controller": name}
        for mark in marks:
            row.update(_stats(group.loc[group["trial"] == mark, "best_metric"], f"best@{mark}"))
        row.update(_stats(group.loc[group["trial"] == trials, "best_reward"], "final reward"))
        row["failed"] = group["metric"].isna().groupby(group["seed"]).sum().mean()
        per_search = group.groupby("seed")[["repeats", "distinct_late"]].first()
        row["repeats"] = per_search["repeats"].mean()
        row["distinct_late"] = per_search["distinct_late"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def _stats(values: pd.Series, prefix: str) -> dict[str, float]:
    n = max(len(values), 1)
    std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return {f"{prefix} mean": float(values.mean()), f"{prefix} se": std / np.sqrt(n),
            f"{prefix} std": std}


@dataclass(frozen=True)
class HVNorm:
    """Normalisation of the accuracy-cost plane for hypervolumes.

    Accuracy maps to ``(acc - acc_min) / (acc_max - acc_min)`` (maximised), cost to
    ``(cost - cost_min) / (cost_max - cost_min)`` (minimised). ``acc_max`` and the cost range are
    the whole table's; ``acc_min`` is the table's median accuracy, so only the better half of the
    table counts (with the worst cell as reference, every search's hypervolume is near 1). The
    reference point is ``(0, 1)`` in that plane (median accuracy at the largest cost): a
    hypervolume lies in [0, 1] and the table's own front has the largest one possible.
    """

    acc_min: float
    acc_max: float
    cost_min: float
    cost_max: float

    @classmethod
    def of(cls, accuracy: np.ndarray, cost: np.ndarray) -> HVNorm:
        ok = np.isfinite(accuracy) & np.isfinite(cost)
        if not ok.any():
            raise UsageError("hypervolume: the table has no finite accuracy-cost pair")
        a, c = accuracy[ok], cost[ok]
        return cls(float(np.median(a)), float(a.max()), float(c.min()), float(c.max()))

    def describe(self) -> str:
        return (f"accuracy normalised over [{self.acc_min:.4g}, {self.acc_max:.4g}] (maximised), "
                f"cost over [{self.cost_min:.4g}, {self.cost_max:.4g}] (minimised); "
                "reference point (accuracy 0 = the table median, cost 1) in the normalised plane")


def hypervolume(accuracy: np.ndarray, cost: np.ndarray, norm: HVNorm) -> float:
    """Area of the normalised plane dominated by the points, bounded by the reference point."""
    a = (np.asarray(accuracy, float) - norm.acc_min) / max(norm.acc_max - norm.acc_min, 1e-12)
    c = (np.asarray(cost, float) - norm.cost_min) / max(norm.cost_max - norm.cost_min, 1e-12)
    ok = np.isfinite(a) & np.isfinite(c) & (a > 0) & (c < 1)
    a, c = np.clip(a[ok], 0, 1), np.clip(c[ok], 0, 1)
    area, best = 0.0, 0.0
    for i in np.lexsort((-a, c)):  # by cost, the most accurate first among equal costs
        if a[i] > best:
            area += (1.0 - c[i]) * (a[i] - best)
            best = a[i]
    return area


def hypervolume_table(curves: pd.DataFrame, norm: HVNorm,
                      marks: Sequence[int] = (100, 300)) -> pd.DataFrame:
    """Per controller: mean and standard error over seeds of the hypervolume of the
    accuracy-cost points evaluated up to each mark (marks beyond the budget are skipped)."""
    trials = int(curves["trial"].max())
    marks = [m for m in marks if m <= trials] or [trials]
    rows = []
    for name, group in curves.groupby("controller", sort=False):
        row: dict[str, Any] = {"controller": name}
        for mark in marks:
            values = [hypervolume(s["metric"].to_numpy(), s["cost"].to_numpy(), norm)
                      for _, s in group[group["trial"] <= mark].groupby("seed")]
            row.update(_stats(pd.Series(values), f"hv@{mark}"))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, path: str | Path, *, metric: str = "metric",
                label: str | None = None) -> Path:
    """PNG of the mean best-metric curve of each controller with a +-1 std band (Agg backend),
    written atomically (never through a link); ``label`` (:func:`curve_label`) names the
    curves (default ``best <metric>``)."""
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
    ax.set_xlabel("trials (new architectures evaluated)")
    ax.set_ylabel(f"{label or curve_label(metric)} so far (mean +- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lstrip(".") or "png")
    return write_atomic(path, buffer.getvalue())


def write_outputs(curves: pd.DataFrame, summary: pd.DataFrame, out: str | Path, *,
                  metric: str = "metric", hv: pd.DataFrame | None = None,
                  label: str | None = None) -> dict[str, Path]:
    """Write ``curves.csv``, ``summary.csv``, ``curves.png`` (and ``hypervolume.csv``) into
    ``out`` (the user's folder, made if missing), each atomically and never through a link.

    Raises:
        UsageError: ``out`` cannot be made, or one of the files is a symbolic link.
    """
    out = user_dir(out, "out", params=("out",))
    paths = {"curves": out / "curves.csv", "summary": out / "summary.csv",
             "plot": out / "curves.png"}
    write_atomic(paths["curves"], curves.to_csv(index=False))
    write_atomic(paths["summary"], summary.to_csv(index=False))
    plot_curves(curves, paths["plot"], metric=metric, label=label)
    if hv is not None:
        paths["hypervolume"] = out / "hypervolume.csv"
        write_atomic(paths["hypervolume"], hv.to_csv(index=False))
    return paths
