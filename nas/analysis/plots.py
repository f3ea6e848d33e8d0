"""Figures of an analysis (matplotlib, Agg canvas; no pyplot global state, no display needed).

- :func:`pareto_figure`: accuracy against latency (ms) and against MACs (M): every complete trial,
  the Pareto front, the latency (or MACs) target of the reward and the chosen architecture.
- :func:`progress_figure`: every trial's reward and the best-so-far reward per finished trial.
- :func:`compare_figure`: best-so-far curves and latency fronts of several runs overlaid.

Each returns PNG bytes; :func:`save_png` writes them atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas._fs import write_atomic

__all__ = ["pareto_figure", "progress_figure", "compare_figure", "save_png"]

DPI = 110
AXIS = {"latency_ms": ("latency (ms, median)", 1.0, "ms"), "macs": ("MACs (M)", 1e-6, "M MACs")}


def _figure(ncols: int, width: float = 6.0, height: float = 4.6) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save_png(data: bytes, path: str | Path) -> Path:
    """Write PNG bytes atomically (a unique temporary file + rename; never through a link)."""
    return write_atomic(path, data)


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def _maybe_log(ax: Any, values: np.ndarray) -> None:
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) > 1 and finite.max() / finite.min() > 30:
        ax.set_xscale("log")


def _axis(cost: str, values: np.ndarray) -> tuple[str, float, str]:
    """Axis label, scale and unit; MACs in M (K or plain for tiny models)."""
    if cost != "macs":
        return AXIS[cost]
    top = np.nanmax(values) if np.isfinite(values).any() else 0.0
    if top >= 1e6:
        return AXIS[cost]
    return ("MACs (K)", 1e-3, "K MACs") if top >= 1e3 else ("MACs", 1.0, "MACs")


def _pareto_panel(ax: Any, analysis: Any, cost: str, front: pd.DataFrame) -> None:
    done = analysis.ranked
    label, scale, unit = _axis(cost, _num(done, cost))
    x, y = _num(done, cost) * scale, _num(done, "accuracy") * 100
    ax.scatter(x, y, s=18, color="0.6", alpha=0.8, label=f"complete trials ({len(done)})")
    fx, fy = _num(front, cost) * scale, _num(front, "accuracy") * 100
    ax.plot(fx, fy, "-o", color="tab:orange", ms=5, lw=1.5, drawstyle="steps-post",
            label=f"Pareto front ({len(front)})")
    reward = analysis.reward
    if reward is not None and reward.cost_key == cost:
        ax.axvline(reward.target * scale, color="tab:blue", ls="--", lw=1.2,
                   label=f"target {reward.target * scale:g} {unit}")
    chosen = analysis.chosen
    if chosen is not None and np.isfinite(float(chosen.get(cost, np.nan))):
        ax.scatter([float(chosen[cost]) * scale], [float(chosen["accuracy"]) * 100], marker="*",
                   s=220, color="tab:red", edgecolor="black", zorder=5,
                   label=f"chosen: trial {chosen['trial_id']} (rank 1)")
    _maybe_log(ax, x)
    ax.set_xlabel(label)
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def pareto_figure(analysis: Any) -> bytes:
    """Accuracy vs latency and vs MACs for one :class:`nas.analysis.analyze.Analysis`; PNG bytes."""
    fig, (left, right) = _figure(2)
    _pareto_panel(left, analysis, "latency_ms", analysis.front_latency)
    _pareto_panel(right, analysis, "macs", analysis.front_macs)
    left.set_title("accuracy vs latency")
    right.set_title("accuracy vs MACs")
    counts = analysis.counts
    fig.suptitle(f"{analysis.name}: {sum(counts.values())} trials ({counts['complete']} complete, "
                 f"{counts['failed']} failed, {counts['pruned']} pruned)")
    return _png(fig)


def _reward_label(reward: Any) -> str:
    return "reward (stored)" if reward is None else f"reward {reward.describe()}"


def progress_figure(analysis: Any) -> bytes:
    """Reward of every trial and the best-so-far reward, by trials finished; PNG bytes."""
    fig, (ax,) = _figure(1, width=7.5)
    prog = analysis.progress
    n, reward, best = _num(prog, "n"), _num(prog, "reward"), _num(prog, "best_reward")
    ok = np.isfinite(reward)
    ax.scatter(n[ok], reward[ok], s=18, color="0.55", label="trial reward")
    ax.step(n, best, where="post", color="tab:green", lw=2, label="best so far")
    bad = ~ok
    if bad.any():
        low, high = (np.nanmin(reward), np.nanmax(reward)) if ok.any() else (0.0, 1.0)
        ax.scatter(n[bad], np.full(bad.sum(), low - 0.05 * max(high - low, 1e-3)), marker="x",
                   color="tab:red", label=f"failed / pruned ({int(bad.sum())}), no reward")
    ax.set_xlabel("trials finished")
    ax.set_ylabel("reward")
    ax.set_title(f"{analysis.name}: search progress\n{_reward_label(analysis.reward)}",
                 fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _png(fig)


def compare_figure(comparison: Any) -> bytes:
    """Best-so-far curves and accuracy-latency fronts of several runs overlaid; PNG bytes."""
    fig, (left, right) = _figure(2)
    colors = [f"C{i}" for i in range(10)]
    for i, (label, curve) in enumerate(comparison.progress.items()):
        color = colors[i % len(colors)]
        left.step(_num(curve, "n"), _num(curve, "best_reward"), where="post", color=color,
                  lw=2, label=label)
        front, ranked = comparison.fronts[label], comparison.ranked[label]
        right.scatter(_num(ranked, "latency_ms"), _num(ranked, "accuracy") * 100, s=10,
                      color=color, alpha=0.25)
        right.plot(_num(front, "latency_ms"), _num(front, "accuracy") * 100, "-o", ms=4,
                   color=color, drawstyle="steps-post", label=f"{label} front")
    reward = comparison.reward
    if reward is not None and reward.cost_key == "latency_ms":
        right.axvline(reward.target, color="0.3", ls="--", lw=1,
                      label=f"target {reward.target:g} ms")
    left.set_xlabel("trials finished")
    left.set_ylabel("best reward so far")
    left.set_title(_reward_label(reward), fontsize=9)
    right.set_xlabel("latency (ms, median)")
    right.set_ylabel("validation accuracy (%)")
    right.set_title("Pareto fronts (dots: all complete trials)", fontsize=10)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    return _png(fig)
