"""``nas remeasure RUN``: the finalists' latencies measured again, interleaved and quiet."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.cli._common import add_trust_arg, print_table

__all__ = ["register", "finalist_rows"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``remeasure``."""
    p = sub.add_parser(
        "remeasure", help="re-measure the latency of a run's top-K and Pareto front",
        epilog="Measures on this machine's target device (the run's latency settings), in "
               "quiet windows, interleaved; appends RUN/remeasured.jsonl. Rankings, fronts and "
               "exports then use the final numbers.")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (results/<run>)")
    p.add_argument("--top", type=int, default=5, metavar="K",
                   help="re-measure the top K architectures (5), plus the Pareto front")
    p.add_argument("--passes", type=int, default=3, metavar="P",
                   help="interleaved passes over the finalists, each with the run's repeats (3)")
    add_trust_arg(p)
    p.set_defaults(func=cmd_remeasure)


def finalist_rows(entries: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows: architecture, trials, search ms, final ms, change, passes, quiet."""
    rows = []
    for e in entries:
        before, after = e.get("search_latency_ms"), e["latency_ms"]
        change = f"{after / before - 1:+.1%}" if before else "-"
        quiet = (e.get("conditions") or {}).get("quiet")
        rows.append([e["arch_key"][:12], ",".join(map(str, e.get("trial_ids", []))),
                     "-" if before is None else f"{before:.3f}", f"{after:.3f}", change,
                     e.get("passes", "-"), {True: "yes", False: "no"}.get(quiet, "-")])
    return rows


def cmd_remeasure(args: argparse.Namespace) -> int:
    """Re-measure the finalists of ``RUN_DIR`` and print the search's and the final numbers."""
    from nas.runner.progress import make_view
    from nas.runner.remeasure import remeasure_run

    # each measurement shown (a bar on a terminal, a line otherwise), the intro line included
    entries = remeasure_run(args.run_dir, top=args.top, passes=args.passes,
                            view=make_view("auto"), trust_code=args.trust_code)
    if not entries:
        print(f"{args.run_dir}: no complete trial with a measured latency to re-measure",
              file=sys.stderr)
        return 1
    print_table(f"latency of {len(entries)} finalists re-measured ({args.passes} passes)",
                ["arch", "trials", "search ms", "final ms", "change", "passes", "quiet"],
                finalist_rows(entries))
    print(f"kept in {Path(args.run_dir) / 'remeasured.jsonl'}; rankings now use the final "
          f"numbers: nas analyze {args.run_dir}")
    return 0
