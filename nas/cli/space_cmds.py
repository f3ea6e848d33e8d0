"""``nas spaces``, ``nas space show NAME``, ``nas cost``.

``nas space show`` builds and costs ``--samples`` sampled children; while it does, a progress bar
is drawn on stderr when stderr is a terminal (and removed when done). Redirected or piped stderr
gets nothing, so logs and ``--json`` output stay clean.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from nas.cli._common import (
    add_model_args,
    add_space_args,
    model_from_args,
    print_json,
    print_table,
    space_from_args,
)
from nas.registry import SPACES

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``spaces``, ``space show`` and ``cost``."""
    p = sub.add_parser("spaces", help="list registered search spaces with their sizes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_spaces)

    p = sub.add_parser("space", help="inspect one search space")
    space_sub = p.add_subparsers(dest="space_command", required=True, metavar="SUBCOMMAND")
    show = space_sub.add_parser("show", help="decisions, size and MACs range of a space")
    show.add_argument("name", help="registered space or module:Class")
    add_space_args(show, required=False)
    show.add_argument("--samples", type=int, default=20,
                      help="sampled archs for the MACs range (a progress bar on stderr when it "
                           "is a terminal)")
    show.add_argument("--seed", type=int, default=0)
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=cmd_space_show)

    p = sub.add_parser("cost", help="parameters and MACs of a preset or an architecture")
    add_model_args(p)
    p.add_argument("--layers", action="store_true", help="also print the per-layer table")
    p.add_argument("--json", action="store_true", help="print JSON (params, macs, layers)")
    p.set_defaults(func=cmd_cost)


def _first_line(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def cmd_spaces(args: argparse.Namespace) -> int:
    """List registered spaces (default options) with their exact sizes."""
    from nas import get_space

    rows = []
    for name in SPACES.names():
        space = get_space(name)
        rows.append(
            {
                "name": name,
                "size": space.size(),
                "decisions": len(space.choices()),
                "presets": space.presets(),
                "description": _first_line(SPACES.get(name)),
            }
        )
    if args.json:
        print_json(rows)
    else:
        print_table(
            "search spaces",
            ["name", "size", "decisions", "presets", "description"],
            [
                [
                    r["name"],
                    f"{r['size']:,}",
                    r["decisions"],
                    ", ".join(r["presets"]) or "-",
                    r["description"],
                ]
                for r in rows
            ],
        )
    return 0


@contextmanager
def progress_bar(what: str, total: int) -> Iterator[Callable[[], None]]:
    """Yield ``advance()``: one step of a transient rich progress bar on stderr when stderr is a
    terminal, a no-op otherwise."""
    stream = sys.stderr
    if not getattr(stream, "isatty", lambda: False)():
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(file=stream), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def _cost_range(space: Any, samples: int, seed: int) -> dict[str, Any]:
    from nas.evaluation.cost import count_cost

    rng = np.random.default_rng(seed)
    macs, params = [], []
    with progress_bar(f"costing {samples} samples of {space.name}", samples) as advance:
        for _ in range(samples):
            cost = count_cost(space.build(space.sample(rng)), space.input_shape())
            macs.append(cost.macs)
            params.append(cost.params)
            advance()
    return {
        "samples": samples,
        "seed": seed,
        "macs_min": min(macs),
        "macs_median": int(np.median(macs)),
        "macs_max": max(macs),
        "params_min": min(params),
        "params_max": max(params),
    }


def cmd_space_show(args: argparse.Namespace) -> int:
    """Print the decisions of a space, its size and the MACs range of sampled architectures."""
    if args.samples < 1:
        from nas.errors import UsageError

        raise UsageError(f"--samples {args.samples}: must be >= 1")
    args.space = args.name
    space = space_from_args(args)
    info = {
        "name": space.name,
        "options": space.options,
        "size": space.size(),
        "decisions": {label: list(c.options) for label, c in space.choices().items()},
        "presets": space.presets(),
        "cost": _cost_range(space, args.samples, args.seed),
    }
    if args.json:
        print_json(info)
        return 0
    print_table(
        f"space {space.name}: {space.size():,} architectures",
        ["decision", "options"],
        [[label, ", ".join(map(str, opts))] for label, opts in info["decisions"].items()],
    )
    c = info["cost"]
    print(f"options: {space.options}")
    print(f"presets: {', '.join(space.presets()) or '-'}")
    print(
        f"MACs over {c['samples']} samples (seed {c['seed']}): min {c['macs_min']:,}  "
        f"median {c['macs_median']:,}  max {c['macs_max']:,}"
    )
    print(f"params: min {c['params_min']:,}  max {c['params_max']:,}")
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    """Parameters and MACs of ``--preset`` or ``--arch``."""
    from nas.evaluation.cost import count_cost

    space, model, what, arch = model_from_args(args)
    cost = count_cost(model, space.input_shape())
    out = {
        "space": space.name,
        "model": what,
        "input_shape": list(space.input_shape()),
        "params": cost.params,
        "macs": cost.macs,
    }
    if arch is not None:
        out["arch_key"] = arch.key
    if args.json:
        print_json({**out, "layers": cost.layers})
        return 0
    print(f"{space.name} {what}  input {tuple(space.input_shape())}")
    print(f"params: {cost.params:,}")
    print(f"MACs:   {cost.macs:,}  ({cost.macs / 1e6:.1f} M)")
    if args.layers:
        print_table(
            "per-layer cost",
            ["layer", "type", "params", "MACs"],
            [[r["name"], r["type"], f"{r['params']:,}", f"{r['macs']:,}"] for r in cost.layers],
        )
    return 0
