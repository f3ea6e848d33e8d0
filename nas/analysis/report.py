"""Analysis output: text tables (markdown, CSV), JSON, and a self-contained HTML report.

:func:`write_analysis` writes a run's ``pareto.png``, ``progress.png``, one CSV per table,
``analysis.json`` and ``report.html`` into a folder. The report stands alone: the dashboard's
views (:mod:`nas.dashboard.page`: progress, a sortable and filterable trial table, the
accuracy-latency front with hover, learning curves, parallel coordinates, decision importance)
drawn from an inlined payload, then the figures (PNG inlined as base64) and the tables;
:func:`write_comparison` does the same for ``nas compare``. Every file is written to a temporary
name and renamed into place, never through a link: the default folders (``RUN/analysis``,
``RESULTS/compare``) are refused when they are links, a folder the user named is theirs.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nas._fs import check_no_link, safe_dir, user_dir, write_atomic
from nas.analysis.conditions import LATENCY_NOTE

__all__ = ["format_value", "display_rows", "to_markdown", "html_table", "html_page",
           "reward_text", "chosen_blocks", "dashboard_html", "write_analysis", "write_comparison",
           "TITLES", "NOTES"]

TITLES = {
    "top": "Top architectures",
    "pareto_latency": "Pareto front: accuracy vs latency",
    "pareto_macs": "Pareto front: accuracy vs MACs",
    "progress": "Best reward so far, per finished trial",
    "improvements": "Best reward so far (the trials that improved it; progress.csv has all)",
    "failures": "Failed and pruned trials",
    "decisions": "Decision values that go with high reward",
    "decision_values": "Reward by decision value",
    "summary": "Final bests",
}
# one line printed under a table (and in report.html) where its columns need explaining
NOTES = {
    "top": LATENCY_NOTE,
    "pareto_latency": LATENCY_NOTE,
    "decisions": "lift = the value's share of the top quarter of trials (by reward, top_n of "
                 "them) / its share of all complete trials (n): 1 = no preference, > 1 = "
                 "favoured, 0 = in none of the top trials",
}


def format_value(value: Any) -> str:
    """Display text: ints (thousands separated from 10,000), floats to 4 significant digits, NaN
    and None as ``-``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) >= 10000:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def display_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Column names and rows of display text."""
    columns = [str(c) for c in frame.columns]
    rows = [[format_value(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    return columns, rows


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown pipe table."""
    columns, rows = display_rows(frame)
    esc = [c.replace("|", "\\|") for c in columns]
    lines = ["| " + " | ".join(esc) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join("" for _ in columns) + " |")
    return "\n".join(lines)


def html_table(frame: pd.DataFrame, max_rows: int = 200) -> str:
    """An escaped HTML table (at most ``max_rows`` rows)."""
    columns, rows = display_rows(frame.head(max_rows))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    more = f"<p class=note>{len(frame) - max_rows} more rows in the CSV file.</p>" \
        if len(frame) > max_rows else ""
    empty = "<p class=note>(none)</p>" if frame.empty else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}{empty}"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:last-child{font-family:monospace}img{max-width:100%;border:1px solid #ddd}
.note{color:#666;font-size:13px}code{background:#f4f4f4;padding:1px 4px}"""


def html_page(title: str, intro: Mapping[str, Any], figures: Mapping[str, bytes],
              tables: Mapping[str, pd.DataFrame], *, head: str = "", lead: str = "") -> str:
    """A standalone HTML page: a key/value intro, figures (inlined PNG) and titled tables.

    ``head`` is added to the ``<head>`` (e.g. a ``<style>``), ``lead`` (HTML) after the intro.
    """
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_value(v))}</td>"
                    "</tr>" for k, v in intro.items())
    imgs = "".join(
        f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
        f"src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"
        for name, data in figures.items())
    sections = "".join(f"<h2>{html.escape(TITLES.get(name, name))}</h2>{html_table(table)}"
                       + (f"<p class=note>{html.escape(NOTES[name])}</p>" if name in NOTES
                          else "") for name, table in tables.items())
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_CSS}</style>{head}</head><body><h1>{html.escape(title)}</h1>"
            f"<table>{facts}</table>{lead}{imgs}{sections}<p class=note>Generated by mnas on "
            f"{html.escape(time.strftime('%Y-%m-%d %H:%M'))}.</p></body></html>")


def _write_text(path: Path, text: str | bytes) -> Path:
    return write_atomic(path, text)


def _folder(out: str | Path, root: str | Path | None, names: Iterable[str]) -> Path:
    """``out``, made: below ``root`` (a run folder) without a link on the way, or without
    ``root`` as the user's own folder; none of ``names`` in it may be a link (checked before
    anything is written, so a refusal leaves the folder as it was)."""
    folder = safe_dir(out, root=root) if root is not None else user_dir(out, "out")
    for name in names:
        check_no_link(folder / name)
    return folder


def reward_text(reward: Any) -> str:
    """One line describing reward settings (None: the stored reward)."""
    if reward is None:
        return "stored reward (the run has no reward settings)"
    return reward.describe()


def chosen_blocks(analysis: Any) -> str | None:
    """Block strings of the rank-1 architecture where its space has them (e.g. MnasNet)."""
    from nas.errors import NasError, RefusedNameError
    from nas.registry import get_space

    chosen, space_cfg = analysis.chosen, analysis.config.get("space") or {}
    if not chosen or not isinstance(space_cfg.get("name"), str):
        return None
    decisions = {k[len("arch."):]: v.item() if isinstance(v, np.generic) else v
                 for k, v in chosen.items() if k.startswith("arch.")}
    try:
        space = get_space(space_cfg["name"], **dict(space_cfg.get("options") or {}))
        strings = space.describe(space.validate(decisions)).get("block_strings")
    except RefusedNameError:
        raise  # a run folder naming the wrong kind of object is refused, not skipped
    except (NasError, ImportError, TypeError, ValueError):
        return None
    return " ".join(strings) if strings else None


def dashboard_html(analysis: Any, records: Any = None, meta: Mapping[str, Any] | None = None
                   ) -> tuple[str, str]:
    """The dashboard's ``(head, body)`` HTML with the payload of ``analysis`` inlined.

    ``records`` (the run's trial records) add the decisions of failed trials and the per-epoch
    histories the learning curves draw; ``meta`` (``run.json``) the run's state.
    """
    from nas.dashboard.page import inline_body, inline_head
    from nas.dashboard.payload import build_payload

    payload = build_payload(analysis, records, meta)
    return inline_head(), "<h2>Dashboard</h2>" + inline_body(payload)


def _intro(analysis: Any) -> dict[str, Any]:
    """The key/value table at the top of ``report.html``."""
    counts = analysis.counts
    chosen = analysis.chosen or {}
    return {"run": analysis.path or analysis.name,
            "space": (analysis.config.get("space") or {}).get("name"),
            "controller": (analysis.config.get("controller") or {}).get("name"),
            "trials": sum(counts.values()), "complete": counts["complete"],
            "failed": counts["failed"], "pruned": counts["pruned"],
            "reward": reward_text(analysis.reward),
            "chosen": f"trial {chosen.get('trial_id')} ({chosen.get('arch_key')})"
            if chosen else None, "chosen blocks": chosen_blocks(analysis)}


def write_analysis(analysis: Any, out: str | Path, *, records: Any = None,
                   meta: Mapping[str, Any] | None = None,
                   root: str | Path | None = None) -> dict[str, Path]:
    """Write figures, CSV tables, ``analysis.json`` and ``report.html`` of one analysis.

    ``records`` and ``meta``: see :func:`dashboard_html` (the report's dashboard views).
    ``root``: the run folder when ``out`` is inside it (``RUN/analysis``): no folder from there
    down may be a link; without it ``out`` is the user's folder, made as named.

    Returns:
        File name -> path of everything written.

    Raises:
        UsageError: a folder or file on the way is a symbolic link (nothing is written then).
    """
    from nas.analysis.plots import pareto_figure, progress_figure

    all_tables = analysis.tables()
    out = _folder(out, root, ["pareto.png", "progress.png", "analysis.json", "report.html",
                              *(f"{name}.csv" for name in all_tables)])
    figures = {"pareto.png": pareto_figure(analysis), "progress.png": progress_figure(analysis)}
    written = {name: _write_text(out / name, data) for name, data in figures.items()}
    for name, table in all_tables.items():
        written[f"{name}.csv"] = _write_text(out / f"{name}.csv", table.to_csv(index=False))
    data = json.dumps(analysis.to_dict(), indent=2, default=str)
    written["analysis.json"] = _write_text(out / "analysis.json", data + "\n")
    intro = _intro(analysis)
    tables = {k: v for k, v in all_tables.items() if k != "decision_values"}
    head, lead = dashboard_html(analysis, records, meta)
    page = html_page(f"mnas analysis: {analysis.name}", intro,
                     {"Pareto fronts": figures["pareto.png"],
                      "Search progress": figures["progress.png"]}, tables, head=head, lead=lead)
    written["report.html"] = _write_text(out / "report.html", page)
    return written


def write_comparison(comparison: Any, out: str | Path, *,
                     root: str | Path | None = None) -> dict[str, Path]:
    """Write ``compare.png``, ``compare.csv``, ``compare.json`` and ``compare.html``.

    ``root``: as for :func:`write_analysis` (the results folder for the default
    ``RESULTS/compare``).
    """
    from nas.analysis.plots import compare_figure

    out = _folder(out, root, ["compare.png", "compare.csv", "compare.json", "compare.html"])
    figure = compare_figure(comparison)
    written = {"compare.png": _write_text(out / "compare.png", figure),
               "compare.csv": _write_text(out / "compare.csv",
                                          comparison.summary.to_csv(index=False)),
               "compare.json": _write_text(out / "compare.json", json.dumps(
                   comparison.to_dict(), indent=2, default=str) + "\n")}
    page = html_page("mnas comparison", {"runs": len(comparison.summary),
                                         "reward": reward_text(comparison.reward)},
                     {"Best so far and Pareto fronts": figure},
                     {"summary": comparison.summary})
    written["compare.html"] = _write_text(out / "compare.html", page)
    return written
