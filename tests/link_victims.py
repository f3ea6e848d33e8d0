"""Victims and run folders for the no-writes-through-links tests (``test_no_links*.py``).

A test plants a link where a writer writes, pointing at a victim in :class:`Outside`, runs the
writer and checks with :meth:`Outside.unchanged` that nothing outside moved. A test module makes
its ``outside`` fixture from :class:`Outside` and forbids Ray with ``conftest.py``'s ``no_ray``.
"""

from __future__ import annotations

import os
from pathlib import Path

from nas.config import parse_config
from nas.experiment import build_experiment
from nas.results import RunDir

OLD = 1_000_000_000  # a victim's planted mtime (2001): any write moves it


# -- the victims and the run folder -------------------------------------------------------------

def snapshot(folder: Path) -> dict[str, tuple[str, bytes | None, int]]:
    """Every entry below ``folder`` (links not followed): kind, bytes, mtime."""
    out = {}
    for here, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(here) / name
            info = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            data = path.read_bytes() if kind == "file" else None
            out[str(path.relative_to(folder))] = (kind, data, info.st_mtime_ns)
    return out


class Outside:
    """A folder outside the run holding victims; :meth:`unchanged` checks nothing moved there."""

    def __init__(self, root: Path) -> None:
        self.root = root / "outside"
        self.root.mkdir()
        self.before: dict[str, tuple[str, bytes | None, int]] | None = None

    def file(self, name: str = "victim.txt", data: bytes = b"precious\n") -> Path:
        path = self.root / name
        path.write_bytes(data)
        os.utime(path, ns=(OLD * 10**9, OLD * 10**9))
        return path

    def folder(self, name: str = "victim-dir") -> Path:
        path = self.root / name
        path.mkdir()
        self.file(f"{name}/keep.pkl", b"not yours\n")
        os.utime(path, ns=(OLD * 10**9, OLD * 10**9))
        return path

    def freeze(self) -> None:
        self.before = snapshot(self.root)

    def unchanged(self) -> None:
        assert self.before is not None, "freeze() first"
        assert snapshot(self.root) == self.before


def plant(link: Path, target: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def make_run(tmp_path: Path, done: int = 3, target: int = 3) -> RunDir:
    """A run folder of a registered space with ``done`` trials stored and told."""
    cfg = {"space": {"name": "nasbench201", "options": {"channels": 4, "cells_per_stage": 1}},
           "controller": {"name": "random"}, "evaluator": {"dataset": "digits", "epochs": 1},
           "latency": {"mode": "skip"}, "reward": {"preset": "soft", "target": 0.05},
           "search": {"trials": target, "concurrency": 1}, "ray": {"num_cpus": 1},
           "results_dir": str(tmp_path / "results")}
    exp = build_experiment(parse_config(cfg))
    cfg["space"]["options"] = dict(exp.space.options)
    run = RunDir.create(cfg["results_dir"], "r", cfg)
    controller = exp.controller
    for i in range(done):
        proposal = controller.ask()
        run.append_trial({"trial_id": proposal.id, "arch_key": proposal.arch.key,
                          "arch": dict(proposal.arch.items()), "status": "complete",
                          "error": None, "reward": 0.5 + 0.1 * i, "step": i + 1,
                          "metrics": {"accuracy": 0.5 + 0.1 * i, "latency_ms": 1.0,
                                      "params": 10, "macs": 10}})
        controller.tell(proposal, 0.5 + 0.1 * i)
        run.save_controller(controller)
    run.write_meta({"status": "running", "segments": 1, "driver_pid": None})
    return run


def refused(capsys, command: str, link: Path) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas {command}: error:") and "\n" not in err, err
    assert str(link) in err and "symbolic link" in err, err
    return err
