"""``nas analyze`` (tables, fronts, figures and a report of one run) and ``nas compare``."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from nas.cli._common import add_trust_arg, print_table
from nas.errors import UsageError

__all__ = ["register", "add_reward_args", "reward_from_args"]

OUTPUT_FORMATS = ("table", "csv", "json", "markdown")
# the compare summary on a terminal: column -> short header (csv/json/markdown have them all)
COMPARE_VIEW = {"run": "run", "controller": "controller", "trials": "trials", "failed": "failed",
                "best_reward": "best reward", "best_trial": "trial", "found_at": "found at",
                "accuracy": "accuracy", "latency_ms": "latency (ms)", "macs": "MACs"}


def add_reward_args(p: argparse.ArgumentParser) -> None:
    """``--target-ms | --target``, ``--alpha``, ``--beta``: re-rank with other reward settings."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--target-ms", type=float, metavar="T",
                       help="latency target in ms (reward on latency_ms)")
    which.add_argument("--target", type=float, metavar="T",
                       help="target in the unit of the run's reward metric (ms, MACs, params)")
    p.add_argument("--alpha", type=float, help="reward exponent at or under the target")
    p.add_argument("--beta", type=float, help="reward exponent over the target")


def reward_from_args(args: argparse.Namespace, config: dict[str, Any]) -> Any:
    """The reward to rank with (the run's own unless flags override it)."""
    from nas.analysis.analyze import reward_settings

    return reward_settings(config, target_ms=args.target_ms, target=args.target,
                           alpha=args.alpha, beta=args.beta)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``analyze`` and ``compare``."""
    p = sub.add_parser("analyze", help="top-K, Pareto fronts, progress, failures, figures, report")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (results/<run>)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="rows of the top table (10)")
    add_reward_args(p)
    p.add_argument("--format", default="table", help="table | csv | json | markdown")
    p.add_argument("--out", type=Path, help="folder for figures, CSVs and report.html "
                   "(default RUN_DIR/analysis)")
    p.add_argument("--no-files", action="store_true", help="print only; write no files")
    add_trust_arg(p)
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("compare", help="best-so-far curves and fronts of several runs overlaid")
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    add_reward_args(p)
    p.add_argument("--format", default="table", help="table | csv | json | markdown")
    p.add_argument("--out", type=Path, help="folder for compare.png/.csv/.html "
                   "(default: compare/ next to the first run)")
    p.add_argument("--no-files", action="store_true", help="print only; write no files")
    p.set_defaults(func=cmd_compare)


def _check_format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"--format {fmt!r}: allowed values: {', '.join(OUTPUT_FORMATS)}")
    return fmt


def _load(path: Path, trust_code: bool = False) -> Any:
    from nas.run import load_run

    if not path.is_dir():
        raise UsageError(f"run folder {str(path)!r}: no such folder")
    run = load_run(path, trust_code=trust_code)
    if not run.records:
        raise UsageError(f"run folder {str(path)!r}: no finished trials yet")
    return run


def _print_sections(sections: dict[str, Any], fmt: str) -> None:
    from nas.analysis.report import NOTES, TITLES, display_rows, to_markdown

    for name, table in sections.items():
        title = TITLES.get(name, name)
        if fmt == "csv":
            print(f"# {name}")
            print(table.to_csv(index=False), end="")
            continue
        if fmt == "markdown":
            print(f"## {title}\n\n{to_markdown(table)}\n")
        else:
            columns, rows = display_rows(table)
            print_table(title, columns, rows or [["-"] * len(columns)], compact=True)
        if name in NOTES and not table.empty:
            print(f"{NOTES[name]}\n" if fmt == "markdown" else textwrap.fill(NOTES[name], 120))


def _note(fmt: str, text: str) -> None:
    print(text, file=sys.stderr if fmt in ("json", "csv") else sys.stdout)


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse one run: print the tables and write figures, CSVs and report.html."""
    from nas.analysis.analyze import analyze

    fmt = _check_format(args.format)
    if args.top < 1:
        raise UsageError(f"--top {args.top}: must be an integer >= 1")
    run = _load(args.run_dir, args.trust_code)
    reward = reward_from_args(args, run.config)
    result = analyze(run.trials, run.config, name=run.path.name, path=str(run.path),
                     k=args.top, reward=reward)
    written: dict[str, Path] = {}
    if not args.no_files:
        from nas.analysis.report import write_analysis

        with run.names():  # the space's block strings
            written = write_analysis(result, args.out or run.path / "analysis",
                                     records=run.records, meta=run.dir.meta(),
                                     root=None if args.out else run.path)
    if fmt == "json":
        print(json.dumps({**result.to_dict(), "files": {k: str(v) for k, v in written.items()}},
                         indent=2, default=str))
    else:
        _print_header(result, fmt)
        _print_sections(_analysis_sections(result), fmt)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if written:
        _note(fmt, f"wrote {len(written)} files to {next(iter(written.values())).parent} "
                   "(report.html, pareto.png, progress.png, CSVs)")
    return 0


def _print_header(result: Any, fmt: str) -> None:
    from nas.analysis.report import reward_text

    c = result.counts
    _note(fmt, f"run {result.path}: {sum(c.values())} trials ({c['complete']} complete, "
               f"{c['failed']} failed, {c['pruned']} pruned); reward {reward_text(result.reward)}")


def _analysis_sections(result: Any) -> dict[str, Any]:
    prog = result.progress
    improved = prog[prog["best_trial_id"].ne(prog["best_trial_id"].shift())]
    sections = {"top": result.top, "pareto_latency": result.front_latency,
                "pareto_macs": result.front_macs,
                "improvements": improved.dropna(subset=["best_reward"]),
                "decisions": result.decision_summary}
    if not result.failures.empty:
        sections["failures"] = result.failures
    if not result.warm_start.empty:  # children taken from the warm-start sources' knowledge
        sections["warm_start"] = result.warm_start
    return sections


def _labels(runs: list[Any]) -> list[str]:
    """Run folder names; the path where names repeat; ``#N`` where paths repeat too."""
    names = [r.path.name for r in runs]
    labels = [str(r.path) if names.count(r.path.name) > 1 else r.path.name for r in runs]
    return [label if labels.count(label) == 1 else f"{label}#{labels[:i].count(label) + 1}"
            for i, label in enumerate(labels)]


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare runs: final bests, best-so-far curves and fronts under one reward."""
    from nas.analysis.compare import compare

    fmt = _check_format(args.format)
    if len(args.run_dirs) < 2:
        raise UsageError("compare needs at least two run folders")
    runs = [_load(path) for path in args.run_dirs]
    reward = reward_from_args(args, runs[0].config)
    if not any(v is not None for v in (args.target_ms, args.target)):
        own = {json.dumps(r.config.get("reward"), sort_keys=True) for r in runs}
        if len(own) > 1:
            _note(fmt, f"note: the runs have different reward settings; all are scored with "
                       f"the first run's ({runs[0].path.name})")
    result = compare({label: (run.trials, run.config)
                      for label, run in zip(_labels(runs), runs, strict=True)}, reward)
    written: dict[str, Path] = {}
    if not args.no_files:
        from nas.analysis.report import write_comparison

        written = write_comparison(result, args.out or runs[0].path.parent / "compare",
                                   root=None if args.out else runs[0].path.parent)
    if fmt == "json":
        print(json.dumps({**result.to_dict(), "files": {k: str(v) for k, v in written.items()}},
                         indent=2, default=str))
    elif fmt == "table":
        view = result.summary[list(COMPARE_VIEW)].rename(columns=COMPARE_VIEW)
        _print_sections({"summary": view}, fmt)
    else:
        _print_sections({"summary": result.summary}, fmt)
    if written:
        _note(fmt, f"wrote {', '.join(written)} to {next(iter(written.values())).parent}")
    return 0
