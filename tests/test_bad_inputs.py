"""Every bad input of ``tests/bad_inputs.py`` gets its exit code and one line, writes nothing,
starts no Ray and stops no process.

Each case runs ``nas`` in-process on a fresh copy of its group's template inside its own folder:
a config (a small MnasNet search on digits), a finished run folder (resumable without Ray: its
budget is spent), or an exported card. Around the command the whole folder tree (with a victim
file and folder outside the case's files) is snapshotted, byte for byte, and a victim process
tree is watched. ``nas.runner.driver.start_ray`` raises, so a case that gets as far as starting
Ray fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bad_inputs import GROUPS, Case

from nas.cli import main
from nas.config import parse_config
from nas.experiment import build_experiment
from nas.export.card import export_trial
from nas.results import RunDir
from nas.run import load_run
from nas.testing.fixtures import TOY_SEARCH

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")

SEARCH_CONFIG = {
    "name": "r", "results_dir": "{dir}/res",
    "space": {"name": "mnasnet", "options": {"width_mult": 0.5, "stem_channels": 8,
                                             "head_channels": 32}},
    "controller": {"name": "random"},
    "evaluator": {"dataset": "digits", "epochs": 1},
    "reward": {"preset": "soft", "target": 1.0},
    "search": {"trials": 2, "concurrency": 1},
}


def _make_run(parent: Path) -> Path:
    """A finished 3-trial run of the toy space (complete: a resume ends without Ray), with kept
    weights for trial 1 and a released lock."""
    cfg = {**TOY_SEARCH, "results_dir": str(parent), "latency": {"mode": "skip"},
           "evaluator": {"dataset": "digits", "epochs": 1}, "search": {"trials": 3}}
    exp = build_experiment(parse_config(cfg))
    cfg["space"] = {**cfg["space"], "options": dict(exp.space.options)}
    run = RunDir.create(parent, "run", cfg, lock="search")
    for i in range(3):
        proposal = exp.controller.ask()
        run.append_trial({"trial_id": proposal.id, "arch_key": proposal.arch.key,
                          "arch": dict(proposal.arch.items()), "status": "complete",
                          "error": None, "reward": 0.5 + 0.1 * i, "step": i + 1,
                          "metrics": {"accuracy": 0.5 + 0.1 * i, "latency_ms": 1.0 + i,
                                      "params": 100, "macs": 100, "chance_accuracy": 0.15}})
        exp.controller.tell(proposal, 0.5 + 0.1 * i)
        run.save_controller(exp.controller)
    run.write_meta({"status": "complete", "segments": 1, "driver_pid": None})
    run.unlock()
    return run.path


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    """The templates every case copies: ``cfg.yaml``, ``run/`` and ``card/``."""
    base = tmp_path_factory.mktemp("templates")
    (base / "cfg.yaml").write_text(yaml.safe_dump(SEARCH_CONFIG, sort_keys=False))
    run_path = _make_run(base)
    model_run = load_run(run_path)
    record = model_run.records[1]
    weights = RunDir(run_path).weights_path(record.trial_id)
    weights.parent.mkdir()
    export_trial(model_run, trial_id=record.trial_id, formats="json,weights",
                 out=base / "card")
    shutil.copy(base / "card" / "model.safetensors", weights)  # kept weights of trial 1
    return base


@pytest.fixture(scope="module")
def victims():
    """A process tree of ours that no command may stop: a sleeper and its child."""
    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    yield parent
    for pid in _tree(parent.pid):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    parent.wait(timeout=10)


def _stat(pid: int) -> tuple[int, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (waiting until the child exists)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [root] + [p for p in pids if (st := _stat(p)) is not None and st[0] == root]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: links by target, files by content hash, folders by name."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[rel] = "other" if not path.is_dir() else "dir"
    return out


def _prepare(case: Case, root: Path, templates: Path, victims_pids: list[list[int]]) -> Path:
    folder = root / "case"
    folder.mkdir()
    (root / "victim.txt").write_text("IMPORTANT USER DATA\n")
    (root / "outside").mkdir()
    (root / "outside" / "keep.txt").write_text("keep\n")
    shutil.copy(templates / "cfg.yaml", folder / "cfg.yaml")
    shutil.copytree(templates / "run", folder / "run", symlinks=True)
    shutil.copytree(templates / "card", folder / "card", symlinks=True)
    (folder / "victims.json").write_text(json.dumps(victims_pids))
    os.mkfifo(folder / "fifo")
    (folder / "side_effect.py").write_text(  # importing it leaves its mark
        "from pathlib import Path\nPath(__file__).with_name('pwned').write_text('ran')\n")
    if case.setup is not None:
        case.setup(folder)
    cfg = folder / "cfg.yaml"
    if cfg.is_file() and not cfg.is_symlink():
        data = cfg.read_bytes()
        cfg.write_bytes(data.replace(b"{dir}", str(folder).encode()))
    return folder


def _argv(case: Case, folder: Path) -> list[str]:
    names = {"cfg": folder / "cfg.yaml", "run": folder / "run", "card": folder / "card",
             "dir": folder, "fifo": folder / "fifo"}
    return [arg.format(**{k: str(v) for k, v in names.items()}) for arg in case.argv]


CASES = [pytest.param(group, case, id=f"{group}:{case.id}")
         for group, cases in GROUPS.items() for case in cases]


@pytest.mark.parametrize("group, case", CASES)
def test_bad_input(group, case, tmp_path, templates, victims, capsys, no_ray, monkeypatch):
    tree = _tree(victims.pid)
    pids = [[pid, st[1]] for pid in tree if (st := _stat(pid)) is not None]
    folder = _prepare(case, tmp_path, templates, pids)
    monkeypatch.syspath_prepend(str(folder))  # a module named in a file is importable
    monkeypatch.delitem(sys.modules, "side_effect", raising=False)
    before = snapshot(tmp_path)
    code = main(_argv(case, folder))
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if not line.startswith("usage:")]
    assert code == case.rc, f"exit {code}, stderr: {err[-1500:]}"
    if case.rc == 2:
        assert len(lines) == 1, f"not one line: {err[-1500:]}"
        assert lines[0].startswith("nas ") and ": error: " in lines[0], lines[0]
        assert case.needle in lines[0], f"{case.needle!r} not in {lines[0]!r}"
        after = snapshot(tmp_path)
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        allowed = {str(Path("case") / a) for a in case.allow}
        assert changed <= allowed, f"written: {sorted(changed - allowed)}"
    assert (tmp_path / "victim.txt").read_text() == "IMPORTANT USER DATA\n"
    assert sorted(os.listdir(tmp_path / "outside")) == ["keep.txt"]
    assert all(_alive(pid) for pid in tree), "a victim process was stopped"
    assert not (folder / "pwned").exists(), "a module named in a file was imported"


def test_the_table_holds_the_cases_the_issue_lists():
    """At least 51 failing cases, in the four groups."""
    failing = [c for cases in GROUPS.values() for c in cases if c.rc != 0]
    assert len(failing) >= 51 and all(GROUPS[g] for g in ("config", "flags", "run", "cards"))
    ids = [c.id for cases in GROUPS.values() for c in cases]
    assert len(ids) == len(set(ids))
