"""``nas search``, ``nas resume``, ``nas status``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nas.cli._common import add_trust_arg, print_json, print_table
from nas.errors import UsageError
from nas.records import TrialStatus

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``search``, ``resume`` and ``status``."""
    p = sub.add_parser("search", help="run a latency-aware architecture search on Ray Tune")
    p.add_argument("config", type=Path,
                   help="YAML config, e.g. configs/quickstart.yaml (keys: `nas config show`)")
    p.add_argument("--name", help="run folder name (config key: name; default: the config file's "
                                  "stem + the start time)")
    p.add_argument("--trials", type=int,
                   help="finished trials to reach (config key: search.trials)")
    p.add_argument("--address", help="join this Ray cluster instead of starting a local Ray "
                                     "(config key: ray.address)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set evaluator.epochs=3 (repeatable; "
                        "keys: `nas config show`)")
    p.add_argument("--quiet", action="store_true",
                   help="no per-trial progress lines (config key: search.progress=none)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("resume", help="continue a stopped or killed run to its trials")
    p.add_argument("run_dir", type=Path, help="the run folder (its config.yaml is the config)")
    p.add_argument("--address", help="join this Ray cluster instead of starting a local Ray "
                                     "(config key: ray.address)")
    p.add_argument("--quiet", action="store_true",
                   help="no per-trial progress lines (config key: search.progress=none)")
    p.add_argument("--rebuild-state", action="store_true",
                   help="replay trials.jsonl into a fresh controller (and rewrite run.json) "
                        "instead of loading controller.json: the repair for a lost or corrupt "
                        "state (a one-off repair: no config key)")
    add_trust_arg(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="summarise a run, finished or not")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_status)


def _duration(seconds: float | None) -> str:
    from nas.runner.progress import duration

    return duration(seconds)


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _view(quiet: bool, mode: str) -> Any:
    """The progress view (``--quiet`` or ``search.progress: none``: nothing)."""
    from nas.runner.progress import make_view

    return make_view("none" if quiet else mode)


# the end-of-search top table: column -> short header (`nas analyze` has them all)
TOP_VIEW = {"rank": "#", "trial_id": "trial", "reward": "reward", "accuracy": "acc",
            "latency_ms": "lat ms", "latency_cond": "latency", "params": "params",
            "macs": "MACs", "evals": "evals", "arch_key": "arch"}
TOP_LEGEND = ("latency: final = re-measured after the search; search = measured during it "
              "(busy N: N other children trained meanwhile)\nfull arch keys and every column: "
              "nas analyze {run} (then {run}/analysis/top.csv)")


def top_table(top: Any, title: str) -> Any:
    """The top architectures as a rich table that keeps one line per row in 120 columns: short
    headers, nothing wrapped; an arch key too long to fit is elided (:data:`TOP_LEGEND` says
    where the full ones are)."""
    from rich.table import Table

    from nas.analysis.report import format_value

    table = Table(title=title)
    for column, header in TOP_VIEW.items():
        text = column in ("arch_key", "latency_cond")
        table.add_column(header, justify="left" if text else "right", no_wrap=column != "arch_key",
                         overflow="ellipsis", min_width=6 if column == "arch_key" else None)
    for _, row in top.iterrows():
        table.add_row(*[format_value(row.get(column)) for column in TOP_VIEW])
    return table


def _top(run_dir: Path) -> None:
    """The five best architectures of the run, and the best in one line: its latency the final
    one where the finalists were re-measured, saying so, with the search-time numbers beside."""
    from rich.console import Console

    from nas.analysis.best import final_best
    from nas.run import load_run
    from nas.runner.progress import best_text

    run = load_run(run_dir)
    top = run.best(5)
    if not len(top):
        return
    Console(width=120).print(top_table(top, "top 5"))
    print(TOP_LEGEND.format(run=run_dir))
    best = final_best(run.trials, run.reward())
    if best is not None:
        print(f"best: {best_text(best)}")


def _latency_summary(result: Any) -> None:
    """How the finalists' latencies moved when re-measured, and what quiet windows cost."""
    if result.remeasured:
        moves = [e["latency_ms"] / e["search_latency_ms"] - 1 for e in result.remeasured
                 if e.get("search_latency_ms")]
        moves.sort()
        median = f"; median change {moves[len(moves) // 2]:+.1%}" if moves else ""
        print(f"latency: {len(result.remeasured)} finalists re-measured quietly"
              f"{median} (rankings use the final numbers; RUN/remeasured.jsonl)")
    if result.quiet_lost is not None:
        print(f"quiet latency windows paused training for {result.quiet_lost:.1%} of its time")


def _trust_flag(run_dir: Path) -> str:
    """`` --trust-code`` when the run's config names code by ``module:attr`` (its own user's
    names: a resume reads them back from the folder)."""
    from nas.registry import code_names
    from nas.results import RunDir

    try:
        return " --trust-code" if code_names(RunDir.open(run_dir).read_config()) else ""
    except UsageError:
        return ""


def _summary(result: Any) -> int:
    state = "complete" if result.complete else "stopped early (resumable)"
    rejected = f", {result.rejected} rejected by constraints (not trained)" \
        if result.rejected else ""
    print(f"run {result.run_dir}: {result.trials}/{result.target} trials, {result.failed} failed"
          f"{rejected}, {state}")
    if result.all_failed:
        print("every child failed; most common reasons:", file=sys.stderr)
        for reason, count in result.failure_reasons:
            print(f"  {count} x {reason}", file=sys.stderr)
        print(f"see the tracebacks with: nas analyze {result.run_dir}", file=sys.stderr)
        return 1
    if result.stopped:
        print(f"search stopped: {result.stopped}", file=sys.stderr)
    if result.best:
        _top(result.run_dir)
    _latency_summary(result)
    if result.search_s:
        print(f"ray start-up {result.ray_startup_s:.1f} s, search {result.search_s:.1f} s "
              f"(Ray's own output: {result.run_dir / 'ray.log'})")
    if result.stopped:
        return 1
    if not result.complete:
        print(f"continue with: nas resume {result.run_dir}{_trust_flag(result.run_dir)}")
        return 130
    print(f"next: nas analyze {result.run_dir}  |  nas export {result.run_dir}  |  "
          f"nas dashboard {result.run_dir}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Validate the config, create the run folder, search."""
    from nas.config import load_config
    from nas.runner import start_search

    overrides = list(args.overrides)
    if args.trials is not None:
        overrides.append(f"search.trials={args.trials}")
    config = load_config(args.config, overrides)
    result = start_search(config, name=args.name, address=args.address,
                          progress=_view(args.quiet, config.search.progress),
                          config_path=args.config, on_ready=_banner("searching"))
    return _summary(result)


def _banner(verb: str) -> Any:
    """Printed once every check passed, before the first child starts."""

    def show(config: Any, run_path: Path) -> None:
        reward = config.reward or {}
        target = f", reward target {reward['target']:.4g}" if reward.get("target") else ""
        print(f"{verb} {run_path}: space {config.space['name']}, controller "
              f"{config.controller['name']}, {config.search.trials} trials at concurrency "
              f"{config.search.concurrency}{target}", flush=True)

    return show


def cmd_resume(args: argparse.Namespace) -> int:
    """Continue a run from its saved controller state (or one rebuilt from its trials)."""
    from nas.config import parse_config
    from nas.results import RunDir
    from nas.runner import resume_search

    try:
        mode = parse_config(RunDir.open(args.run_dir).read_config()).search.progress
    except UsageError:
        mode = "auto"  # resume_search reports what is wrong with the folder
    result = resume_search(args.run_dir, address=args.address, progress=_view(args.quiet, mode),
                           rebuild_state=args.rebuild_state, on_ready=_banner("resuming"),
                           trust_code=args.trust_code)
    return _summary(result)


def run_status(run_dir: Path) -> dict[str, Any]:
    """Summary of a run folder (also used by tests)."""
    from nas.records import budgeted
    from nas.results import RunDir

    run = RunDir.open(run_dir)
    config, meta, records = run.read_config(), run.meta(), run.trials()
    target = _parsed(run, config).search.trials
    counts = {s.value: sum(r.status is s for r in records) for s in TrialStatus}
    state = meta.get("status", "created")
    if run.held_elsewhere():
        state = "running"  # a live driver holds the folder's lock
    elif state == "running" or (state == "created" and records):
        state = "interrupted"  # its driver is gone (the OS released the lock)
    best = _best(records, run.final_latencies(), config)
    times = [r.finished_at for r in records if r.finished_at]
    starts = [r.started_at for r in records if r.started_at]
    return {"run": str(run.path), "state": state, "trials": budgeted(records), "target": target,
            **counts, "space": (config.get("space") or {}).get("name"),
            "controller": (config.get("controller") or {}).get("name"),
            "segments": meta.get("segments", 0),
            "wall_s": (max(times) - min(starts)) if times and starts else None,
            "best": best}


def _best(records: list[Any], final: dict[str, Any], config: dict[str, Any]
          ) -> dict[str, Any] | None:
    """The run's best: as the search saw it (``latency_source: search``) until its finalists
    were re-measured, then as ``nas analyze`` and ``nas export`` rank it, by the final
    latencies (``latency_source: final``, the search-time numbers beside)."""
    from nas.records import best_of

    if not final:
        best = best_of(records)
        return None if best is None else {**best, "latency_source": "search"}
    from nas.analysis.analyze import reward_settings
    from nas.analysis.best import final_best
    from nas.results import trials_frame

    return final_best(trials_frame(records, final), reward_settings(config))


def _parsed(run: Any, config: dict[str, Any]) -> Any:
    """The run's config checked, its errors naming the file."""
    from nas.config import parse_config

    try:
        return parse_config(config)
    except UsageError as exc:
        raise UsageError(f"{run.config_path}: {exc}") from None


def cmd_status(args: argparse.Namespace) -> int:
    """Print a run's summary."""
    info = run_status(args.run_dir)
    if args.json:
        print_json(info)
        return 0
    rows = [["state", info["state"]], ["trials", f"{info['trials']}/{info['target']}"],
            ["complete / failed / pruned", f"{info['complete']} / {info['failed']} / "
             f"{info['pruned']}"], ["rejected (not trained)", info["rejected"]],
            ["space", info["space"]], ["controller", info["controller"]],
            ["segments", info["segments"]], ["trial wall time", _duration(info["wall_s"])]]
    if info["best"]:
        from nas.runner.progress import latency_text

        b = info["best"]
        rows.append(["best", f"trial {b['trial_id']} reward {b['reward']:.4f} acc "
                     f"{_fmt(b['accuracy'], '.4f')} ({b['arch_key']})"])
        rows.append(["best's latency", latency_text(b)])
    print_table(f"run {info['run']}", ["", ""], rows)
    sys.stdout.flush()
    return 0
