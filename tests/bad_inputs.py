"""The bad-input table of ``tests/test_bad_inputs.py``: configs, flags, run folders and cards as an
attacker or a clumsy user would hand them to ``nas`` (from the outside testers' list,
``shared/findings/attacks-2026-12.md``, reproduced here in our own words).

A :class:`Case` names what it does to a fresh copy of its group's template (a config, a finished
run folder, an exported card), the command it runs, the exit code it must end with and a piece of
the one line it must print. Placeholders in ``argv``: ``{cfg}`` (the config file), ``{run}`` (the
run folder), ``{card}`` (the card folder), ``{dir}`` (the case's folder), ``{fifo}`` (a named
pipe with no writer).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    """One bad input: what is done to the case folder, the command, what must come back."""

    id: str
    argv: tuple[str, ...]
    needle: str
    setup: Setup | None = None
    rc: int = 2
    allow: tuple[str, ...] = ()  # files the command may touch (a resume's lock)
    victims: bool = False  # the command must leave the victim processes alive
    extra: dict[str, Any] = field(default_factory=dict)


def _cfg(change: Callable[[dict[str, Any]], None]) -> Setup:
    """Edit the config template's data."""

    def setup(folder: Path) -> None:
        path = folder / "cfg.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return setup


def _set(section: str, key: str, value: Any) -> Setup:
    def change(data: dict[str, Any]) -> None:
        if section:
            data.setdefault(section, {})[key] = value
        else:
            data[key] = value

    return _cfg(change)


def _clear(path: Path) -> None:
    """Remove whatever is at ``path`` (a folder, a file or a link), if anything."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _text(relative: str, text: str | bytes) -> Setup:
    def setup(folder: Path) -> None:
        path = folder / relative
        _clear(path)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    return setup


def _json_edit(relative: str, change: Callable[[dict[str, Any]], None]) -> Setup:
    def setup(folder: Path) -> None:
        path = folder / relative
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return setup


def _line_edit(relative: str, index: int, change: Callable[[dict[str, Any]], None]) -> Setup:
    """Edit one JSON line of a JSON-lines file (written back with Python's json, so NaN stays
    the literal ``NaN`` a hand edit would leave)."""

    def setup(folder: Path) -> None:
        path = folder / relative
        lines = path.read_text().splitlines()
        data = json.loads(lines[index])
        change(data)
        lines[index] = json.dumps(data)
        path.write_text("\n".join(lines) + "\n")

    return setup


def _metric(key: str, value: Any) -> Setup:
    return _line_edit("run/trials.jsonl", 1, lambda d: d["metrics"].__setitem__(key, value))


def _both(first: Setup, second: Setup) -> Setup:
    def setup(folder: Path) -> None:
        first(folder)
        second(folder)

    return setup


def _link(relative: str, target: str) -> Setup:
    """Replace ``relative`` by a symbolic link to ``target`` (the victim file or folder outside
    the case, or an absolute path)."""

    def setup(folder: Path) -> None:
        path = folder / relative
        _clear(path)
        path.symlink_to(folder.parent / target)

    return setup


def _both(*steps: Setup) -> Setup:
    def setup(folder: Path) -> None:
        for step in steps:
            step(folder)

    return setup


def _run_cfg(change: Callable[[dict[str, Any]], None]) -> Setup:
    """Edit the run folder's ``config.yaml``."""

    def setup(folder: Path) -> None:
        path = folder / "run" / "config.yaml"
        data = yaml.safe_load(path.read_text())
        change(data)
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    return setup


def _victims_in_run_json(folder: Path) -> None:
    """``run.json`` lists the victim processes (``victims.json``, written by the runner) as the
    run's Ray, with a marker none of them carries: the clean-up must not touch them."""
    victims = json.loads((folder / "victims.json").read_text())
    _json_edit("run/run.json", lambda d: d.update(ray_marker="mnas-not-theirs",
                                                  ray_pids=victims))(folder)


def _victims_with_a_valid_segment(folder: Path) -> None:
    """As :func:`_victims_in_run_json`, and ``run.json`` proves this folder's driver is gone (its
    identity, this boot, a driver that no longer runs, a segment begun at boot): only the token
    check and the pids' lack of authority keep the clean-up off the victims."""
    from nas.runner.strays import segment_clock, segment_record

    _victims_in_run_json(folder)
    segment = segment_record(folder / "run", {**segment_clock(), "started_ticks": 0})
    segment["driver"] = [os.getpid(), 1]  # no process of this pid started at tick 1: gone
    _json_edit("run/run.json", lambda d: d.update(ray_segment=segment))(folder)


def _card(change: Callable[[dict[str, Any]], None]) -> Setup:
    return _json_edit("card/arch.json", change)


def _text_edit(relative: str, old: str, new: str) -> Setup:
    def setup(folder: Path) -> None:
        path = folder / relative
        text = path.read_text()
        assert old in text, f"{relative} holds no {old!r}"
        path.write_text(text.replace(old, new))

    return setup


def _deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def _bomb() -> str:
    """A YAML 'billion laughs': 10 levels of 10 aliases each (10^9 leaves when expanded)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    lines[0] = "  " + lines[0]
    return ("evaluator:\n  options:\n" + "\n".join("  " + line for line in lines)
            + "\nspace: {name: mnasnet, options: {skeleton: *a9}}\ncontroller: {name: random}\n")


SAFETENSORS_HUGE = struct.pack("<Q", 2**62) + b"{}"

SEARCH = ("search", "{cfg}")
STATUS = ("status", "{run}")
ANALYZE = ("analyze", "{run}", "--no-files", "--format", "json")
EXPORT = ("export", "{run}", "--format", "json,weights", "--out", "{dir}/out")
EXPORT_1 = (*EXPORT, "--trial", "1")  # the trial whose weights the run kept
RESUME = ("resume", "{run}", "--quiet")
BUILD = ("build", "{card}")

CONFIG = [
    Case("C01-empty", SEARCH, "space: missing section", _text("cfg.yaml", "")),
    Case("C02-binary", SEARCH, "not UTF-8", _text("cfg.yaml", bytes(range(256)) * 4)),
    Case("C03-utf16", SEARCH, "UTF-16", _text("cfg.yaml", "space: {name: mnasnet}\n"
                                                          .encode("utf-16"))),
    Case("C04-anchor-bomb", SEARCH, "evaluator.options.a0", _text("cfg.yaml", _bomb())),
    Case("C05-recursive-anchor", SEARCH, "space.options",
         _text("cfg.yaml", "space: &a {name: mnasnet, options: *a}\ncontroller: {name: random}\n")),
    Case("C06-python-tag", SEARCH, "invalid YAML",
         _text("cfg.yaml", "space: !!python/object/apply:os.system ['touch pwned']\n")),
    Case("C08-long-name", SEARCH, "a folder name holds at most 255", _set("", "name", "n" * 10000)),
    Case("C10-newline-name", SEARCH, "control characters", _set("", "name", "a\nb")),
    Case("C11-dotdot-name", SEARCH, "must be one folder name", _set("", "name", "..")),
    Case("C12-results-dir-file", SEARCH, "results_dir", _both(
        _text("afile", "x"), _set("", "results_dir", "{dir}/afile"))),
    Case("C13-results-dir-unwritable", SEARCH, "results_dir", _set("", "results_dir",
                                                                  "/proc/1/x")),
    Case("C14-trials-inf", SEARCH, "search.trials", _set("search", "trials", float("inf"))),
    Case("C15-trials-negative", SEARCH, "search.trials", _set("search", "trials", -1)),
    Case("C16-trials-string", SEARCH, "search.trials", _set("search", "trials", "4")),
    Case("C17-concurrency-0", SEARCH, "search.concurrency", _set("search", "concurrency", 0)),
    Case("C20-epochs-0", SEARCH, "evaluator.epochs", _set("evaluator", "epochs", 0)),
    Case("C21-lr-nan", SEARCH, "evaluator.lr", _set("evaluator", "lr", float("nan"))),
    Case("C22-batch-0", SEARCH, "evaluator.batch_size", _set("evaluator", "batch_size", 0)),
    Case("C23-batch-huge", SEARCH, "no training step would run",
         _set("evaluator", "batch_size", 10**9)),
    Case("C24-npz-not-npz", SEARCH, "evaluator.dataset", _set("evaluator", "dataset",
                                                             "npz:/etc/passwd")),
    Case("C25-folder-no-images", SEARCH, "evaluator.dataset", _set("evaluator", "dataset",
                                                                  "folder:{dir}")),
    Case("C26-torchvision-module", SEARCH, "evaluator.dataset",
         _set("evaluator", "dataset", "torchvision:os")),
    Case("C28-cuda-99", SEARCH, "latency.device", _set("latency", "device", "cuda:99")),
    Case("C29-latency-input-huge", SEARCH, "latency.input_size",
         _set("latency", "input_size", 100000)),
    Case("C30-skeleton-repeats", SEARCH, "skeleton[0].repeats", _cfg(
        lambda d: d["space"]["options"].__setitem__("skeleton", [[16, 20000, 1]]))),
    Case("C31-os-system", SEARCH, "found the built-in", _set("space", "name", "os:system")),
    Case("C33-program-module", SEARCH, "__main__ module runs a program",
         _set("space", "name", "venv.__main__:x")),
    Case("C34-relative-name", SEARCH, "absolute dotted name", _set("space", "name",
                                                                  ".relative:x")),
    Case("C35-controller-exec", SEARCH, "controller.name", _set("controller", "name",
                                                               "builtins:exec")),
    Case("C36-evaluator-getoutput", SEARCH, "evaluator.name",
         _set("evaluator", "name", "subprocess:getoutput")),
    Case("C37-misspelled-section", SEARCH, "serach: unknown key", _set("", "serach",
                                                                      {"trials": 2})),
    Case("C38-negative-target", SEARCH, "reward.target", _set("reward", "target", -1)),
    Case("C42-negative-macs-bound", SEARCH, "constraints.macs", _set("constraints", "macs", -5)),
    Case("C43-zero-time-budget", SEARCH, "evaluator.time_budget_s",
         _set("evaluator", "time_budget_s", 0)),
    Case("C44-config-is-folder", ("search", "{dir}"), "is a folder"),
    Case("C45-config-is-fifo", ("search", "{fifo}"), "not a regular file"),
    Case("C46-invalid-yaml", SEARCH, "invalid YAML at line 2", _text("cfg.yaml", "a: [\n")),
    Case("C47-width-huge", SEARCH, "width_mult", _cfg(
        lambda d: d["space"]["options"].__setitem__("width_mult", 1e308))),
    Case("C48-max-train-0", SEARCH, "max_train", _set("evaluator", "max_train", 0)),
    Case("C49-keep-weights-negative", SEARCH, "search.keep_weights",
         _set("search", "keep_weights", -1)),
    Case("C50-no-training-images", SEARCH, "every class needs at least one",
         _set("evaluator", "val_fraction", 0.999)),
    Case("C51-input-size-huge", SEARCH, "input_size", _cfg(
        lambda d: d["space"]["options"].__setitem__("input_size", 100000))),
    Case("C52-config-too-big", SEARCH, "over the 4,194,304-byte limit",
         _text("cfg.yaml", "# padding\n" * 500_000)),
    Case("C53-warm-start-fifo", SEARCH, "controller.warm_start[0]",
         _set("controller", "warm_start", ["{dir}/fifo"])),
    Case("C54-warm-start-bad-line", SEARCH, "trials.jsonl: line 2: metrics.accuracy=7",
         _both(_both(_metric("accuracy", 7), _set("controller", "warm_start", ["{dir}/run"])),
               _set("", "space", {"name": "nas.testing.fixtures:ToySpace"}))),
    Case("C55-warm-start-linked-trials", SEARCH, "controller.warm_start[0]",
         _both(_link("run/trials.jsonl", "victim.txt"),
               _set("controller", "warm_start", ["{dir}/run"]))),
    Case("C56-warm-start-not-a-list", SEARCH, "must be a list of sources (run folders or CSV",
         _set("controller", "warm_start", "{dir}/run")),
]

FLAGS = [
    Case("F01-set-no-equals", (*SEARCH, "--set", "search.trials"), "expected key.path=value"),
    Case("F02-set-bad-yaml", (*SEARCH, "--set", "search.trials=[1"), "cannot parse"),
    Case("F03-set-empty-key", (*SEARCH, "--set", "=5"), "expected key.path=value"),
    Case("F04-set-section-scalar", (*SEARCH, "--set", "search=5"), "search=5: must be a mapping"),
    Case("F06-trials-0", (*SEARCH, "--trials", "0"), "search.trials=0"),
    Case("F07-trials-huge", (*SEARCH, "--trials", "9" * 23), "<= 1000000"),
    Case("F08-name-escape", (*SEARCH, "--name", "../escape"), "must be one folder name"),
    Case("F09-name-absolute", (*SEARCH, "--name", "/tmp/abs"), "must be one folder name"),
    Case("F10-name-empty", (*SEARCH, "--name", ""), "must be a non-empty folder name"),
    Case("F11-name-300", (*SEARCH, "--name", "y" * 300), "a folder name holds at most 255"),
    Case("F15-export-rank-0", (*EXPORT, "--rank", "0"), "--rank=0"),
    Case("F16-export-rank-999", (*EXPORT, "--rank", "999"), "--rank=999"),
    Case("F17-export-trial-negative", (*EXPORT, "--trial", "-1"), "no such trial"),
    Case("F18-export-format-bogus", ("export", "{run}", "--format", "bogus"), "bogus"),
    Case("F19-export-epochs-negative", (*EXPORT, "--train-epochs", "-1"), "--train-epochs"),
    Case("F20-export-target-nan", (*EXPORT, "--target-ms", "nan"), "target"),
    Case("F21-export-out-unwritable", ("export", "{run}", "--format", "json", "--out",
                                       "/proc/1/x"), "/proc/1/x"),
    Case("F22-export-opset-99", ("export", "{run}", "--format", "json,onnx", "--out", "{dir}/o",
                                 "--opset", "99"), "opset"),
    Case("F24-analyze-top-negative", (*ANALYZE, "--top", "-5"), "--top"),
    Case("F25-analyze-format-xml", ("analyze", "{run}", "--format", "xml"), "--format"),
    Case("F26-analyze-target-negative", (*ANALYZE, "--target-ms", "-1"), "target"),
    Case("F27-analyze-alpha-nan", (*ANALYZE, "--alpha", "nan"), "alpha"),
    Case("F29-status-missing", ("status", "{dir}/nothing"), "nothing"),
    Case("F30-status-not-a-run", ("status", "/etc"), "not a run folder"),
    Case("F31-dashboard-port", ("dashboard", "{run}", "--port", "70000"), "--port"),
    Case("F32-dashboard-remote", ("dashboard", "{run}", "--host", "0.0.0.0"), "0.0.0.0"),
    Case("F38-cost-dev-null", ("cost", "--arch", "/dev/null"), "not a regular file"),
    Case("F39-evaluate-epochs-0", ("evaluate", "--space", "mnasnet", "--preset", "mnasnet-a1",
                                   "--epochs", "0"), "epochs"),
    Case("F40-remeasure-top-negative", ("remeasure", "{run}", "--top", "-1"), "top",
         allow=("run/driver.lock",)),
    Case("F41-resume-missing", ("resume", "{dir}/nothing"), "not a run folder"),
    Case("X01-bench-table-passwd", ("bench", "--table", "/etc/passwd", "--metric", "acc"),
         "/etc/passwd"),
    Case("X02-bench-table-fifo", ("bench", "--table", "{fifo}", "--metric", "acc"),
         "not a regular file"),
    Case("X05-cost-dev-zero", ("cost", "--arch", "/dev/zero"), "not a regular file"),
]

RUN = [
    Case("R03-binary-trials", STATUS, "trials.jsonl: line 2 is not UTF-8",
         _text("run/trials.jsonl", b'{"trial_id": 0}\n\xff\xfe\n')),
    Case("R07-reward-string", ANALYZE, "reward 'high' is not a number",
         _line_edit("run/trials.jsonl", 1, lambda d: d.__setitem__("reward", "high"))),
    Case("R08-reward-nan", ANALYZE, "reward nan is not a number",
         _line_edit("run/trials.jsonl", 1, lambda d: d.__setitem__("reward", float("nan")))),
    Case("R09-timings-list", STATUS, "timings [1, 2] is not an object",
         _line_edit("run/trials.jsonl", 1, lambda d: d.__setitem__("timings", [1, 2]))),
    Case("R10-accuracy-string", ANALYZE, "metrics.accuracy='abc'", _metric("accuracy", "abc")),
    Case("R16-ray-pids-malformed", RESUME, "", _json_edit(
        "run/run.json", lambda d: d.update(ray_marker="mnas-x", ray_pids=[[1]])), rc=0,
         victims=True),
    # export trains with the run's settings and never resolves the evaluator's name: the
    # module (which would write pwned) is not imported
    Case("R23-untrusted-evaluator-export", (*EXPORT, "--train-epochs", "1"), "",
         _run_cfg(lambda d: d.__setitem__("evaluator", {**d["evaluator"],
                                                         "name": "side_effect:Evaluator"})),
         rc=0),
    # status and analyze read only the sections they show (the bomb's aliases are shared, never
    # expanded); a resume checks the whole config and names the file
    Case("R24-config-anchor-bomb", STATUS, "", _text("run/config.yaml", _bomb()), rc=0),
    Case("R24b-config-anchor-bomb-analyze", ANALYZE, "", _text("run/config.yaml", _bomb()),
         rc=0),
    Case("R24c-config-anchor-bomb-resume", RESUME, "config.yaml: evaluator.options.a0",
         _text("run/config.yaml", _bomb()), allow=("run/driver.lock",)),
    Case("R33-ray-pids-string", RESUME, "", _json_edit(
        "run/run.json", lambda d: d.update(ray_marker="mnas-x", ray_pids="1 2 3")), rc=0,
         victims=True),
    Case("R25-weights-truncated", EXPORT_1, "not a readable safetensors file",
         _text("run/weights/trial-1.safetensors", b"\x10\x00")),
    Case("R26-weights-random", EXPORT_1, "not a readable safetensors file",
         _text("run/weights/trial-1.safetensors", os.urandom(64))),
    Case("R27-weights-header-huge", EXPORT_1, "not a readable safetensors file",
         _text("run/weights/trial-1.safetensors", SAFETENSORS_HUGE)),
    Case("R28-weights-link-passwd", EXPORT_1, "not a readable safetensors file",
         _link("run/weights/trial-1.safetensors", "/etc/passwd")),
    Case("R29-final-negative", ANALYZE, "latency_ms=-5", _text(
        "run/remeasured.jsonl", '{"arch_key": "k1", "latency_ms": -5}\n')),
    Case("R30-final-nan", ANALYZE, "latency_ms=nan", _text(
        "run/remeasured.jsonl", '{"arch_key": "k1", "latency_ms": NaN}\n')),
    Case("R31-final-binary", ANALYZE, "remeasured.jsonl: line 1 is not UTF-8",
         _text("run/remeasured.jsonl", b"\xff\xfe\x00garbage\n{}\n")),
    Case("R32-trials-folder", STATUS, "is a folder",
         _both(_text("run/trials.jsonl", "x"), lambda f: ((f / "run/trials.jsonl").unlink(),
                                                          (f / "run/trials.jsonl").mkdir()))),
    Case("R35-latency-negative", ANALYZE, "metrics.latency_ms=-3.0",
         _metric("latency_ms", -3.0)),
    Case("R36-config-trials-string", STATUS, "search.trials='abc'",
         _run_cfg(lambda d: d["search"].__setitem__("trials", "abc"))),
    Case("R38-accuracy-huge", ANALYZE, "metrics.accuracy=1e+308", _metric("accuracy", 1e308)),
    Case("R40-untrusted-space", ("export", "{run}", "--format", "json", "--out", "{dir}/o"),
         "pass --trust-code", _run_cfg(lambda d: d["space"].__setitem__("name",
                                                                         "side_effect:Space"))),
    Case("R41-untrusted-resume", RESUME, "pass --trust-code",
         _run_cfg(lambda d: d["controller"].__setitem__("name", "side_effect:x"))),
    Case("S1-pids-name-a-victim", RESUME, "", _victims_in_run_json, rc=0, victims=True),
    Case("S1b-pids-and-a-valid-segment", RESUME, "", _victims_with_a_valid_segment, rc=0,
         victims=True),
    Case("S2-lock-link", RESUME, "driver.lock: is a symbolic link",
         _link("run/driver.lock", "victim.txt")),
    Case("S2-tmp-link", RESUME, "", _link("run/run.json.tmp", "victim.txt"), rc=0,
         victims=True),
    Case("S2-analysis-link", ("analyze", "{run}"), "analysis: is a symbolic link",
         _link("run/analysis", "outside")),
    Case("S2-export-link", ("export", "{run}", "--format", "json"),
         "export: is a symbolic link", _link("run/export", "outside")),
]


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.pop(key)


def _put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set the dotted ``path`` of a card to ``value``."""

    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


CARDS = [
    Case("K01-os-system", BUILD, "pass --trust-code", _card(_put("space.name", "os:system"))),
    Case("K01b-os-system-trusted", (*BUILD, "--trust-code"), "found the built-in",
         _card(_put("space.name", "os:system"))),
    Case("K04-venv-main", BUILD, "__main__ module runs a program",
         _card(_put("space.name", "venv.__main__:x"))),
    Case("K04b-venv-main-trusted", (*BUILD, "--trust-code"), "__main__ module runs a program",
         _card(_put("space.name", "venv.__main__:x"))),
    Case("K05-cli-main", BUILD, "__main__ module runs a program",
         _card(_put("space.name", "nas.cli.__main__:main"))),
    Case("K06-decision-out-of-range", BUILD, "width: value 7 is not allowed",
         _card(_put("decisions.width", 7))),
    Case("K07-decisions-empty", BUILD, "width", _card(_put("decisions", {}))),
    Case("K08-extra-decision", BUILD, "bogus", _card(_put("decisions.bogus", 1))),
    Case("K09-decisions-list", BUILD, "decisions: must be a JSON object",
         _card(_put("decisions", [1, 2]))),
    Case("K10-options-disagree", BUILD, "disagrees with its space options",
         _card(_put("space.options.input_size", 16))),
    Case("K10b-input-size-huge", BUILD, "disagrees with its space options",
         _card(_put("space.options.input_size", 100000))),
    Case("K12-unknown-option", BUILD, "bogus", _card(_put("space.options.bogus", 1))),
    Case("K13-empty-file", BUILD, "not valid JSON", _text("card/arch.json", "")),
    Case("K14-binary", BUILD, "not UTF-8", _text("card/arch.json", os.urandom(300) + b"\xff")),
    Case("K15-array", BUILD, "expected a JSON object", _text("card/arch.json", "[1, 2]")),
    Case("K16-deep-nesting", BUILD, "nested too deeply",
         _text("card/arch.json", _deep_json(100000))),
    Case("K17-seed-string", BUILD, "model.seed", _card(_put("model.seed", "abc"))),
    Case("K18-seed-inf", BUILD, "model.seed", _text_edit("card/arch.json", '"seed": 0',
                                                         '"seed": 1e400')),
    Case("K19-weights-outside", BUILD, "must be a plain file name",
         _card(_put("files.weights", "../../../../etc/passwd"))),
    Case("K20-pickle-weights", BUILD, "not a readable state_dict file", _both(
        _card(_put("weights.format", "state_dict")),
        _text("card/model.safetensors", b"\x80\x04cos\nsystem\nX\x05\x00\x00\x00touch"
                                        b"\x85R."))),
    Case("K21-reference-huge", BUILD, "checks.reference.input_shape",
         _card(_put("checks.reference.input_shape", [1, 1, 100000, 100000]))),
    Case("K22-files-list", BUILD, "files: must be a JSON object",
         _card(_put("files", ["model.safetensors"]))),
    Case("K23-key-mismatch", BUILD, "does not match its decisions",
         _card(_put("arch_key", "0" * 16))),
    Case("K24-unknown-format", BUILD, "mnas-card/999", _card(_put("format", "mnas-card/999"))),
    Case("K26-cost-os-system", ("cost", "--arch", "{card}/arch.json"), "pass --trust-code",
         _card(_put("space.name", "os:system"))),
    Case("K01c-side-effect", BUILD, "pass --trust-code",
         _card(_put("space.name", "side_effect:Space"))),
    Case("K27-antigravity", BUILD, "pass --trust-code",
         _card(_put("space.name", "antigravity:x"))),
    Case("K28-output-head-strings", BUILD, "checks.reference.output_head",
         _card(_put("checks.reference.output_head", ["a", "b"]))),
    Case("K29-weights-format-pickle", BUILD, "weights.format",
         _card(_put("weights.format", "pickle"))),
    Case("K30-skeleton-repeats", BUILD, "skeleton[0].repeats", _card(_put(
        "space", {"name": "mnasnet", "options": {"skeleton": [[16, 20000, 1]]}}))),
    Case("K31-card-is-fifo", ("build", "{fifo}"), "not a regular file"),
    Case("K32-card-too-big", BUILD, "over the 16,777,216-byte limit",
         _text("card/arch.json", " " * (17 << 20))),
]

GROUPS = {"config": CONFIG, "flags": FLAGS, "run": RUN, "cards": CARDS}
