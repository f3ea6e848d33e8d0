"""A resume of a copied live run folder leaves the original search untouched (issue 22).

``cp -r results/A results/B; nas resume B`` while A runs: B's ``run.json`` names A's Ray token,
but it records A's folder and A's (living) driver, so B's resume stops nothing. The search is
held at a gate (``nas.testing.gates:gated``) meanwhile; B's resume dies at the ``before_ray``
crash point, just after its clean-up, so it returns without waiting for the gate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess

import pytest
from test_crash import arrived, config, gated, lines, marker_of, nas_cmd, run_nas, wait_until

from nas.runner import strays

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def tree_of(pid):
    """``{pid: start ticks}`` of ``pid``'s live descendants (its Ray, started by it)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := strays._stat(int(entry))) is not None:
            children.setdefault(st[1], []).append((int(entry), st[2]))
    found, todo = {}, [pid]
    while todo:
        for kid, start in children.get(todo.pop(), []):
            if kid not in found:
                found[kid] = start
                todo.append(kid)
    return found


def segment_start(run_dir):
    return json.loads((run_dir / "run.json").read_text())["ray_segment"]["started_ticks"]


def is_ray_core(pid):
    """Ray's GCS server or raylet (they stop only with the whole cluster)."""
    return any(name in " ".join(strays._cmdline(pid)) for name in ("gcs_server", "raylet"))


def still_running(processes):
    return [pid for pid, start in processes.items() if strays._started(pid) == start]


def copy_folder(source, target):
    """``cp -r`` of a folder a live search writes (a file may vanish mid-copy: copy again)."""
    for _ in range(5):
        try:
            shutil.copytree(source, target, symlinks=True)
            return
        except (shutil.Error, FileNotFoundError):
            shutil.rmtree(target, ignore_errors=True)
    raise AssertionError(f"could not copy {source}")


def test_resume_of_a_copied_live_folder_leaves_the_original_alone(tmp_path):
    gate = tmp_path / "gate"
    cfg = config(tmp_path, gated(gate), trials=4)
    live, copy = tmp_path / "results" / "live", tmp_path / "results" / "copy"
    search = subprocess.Popen(nas_cmd("search", cfg, "--name", "live"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    marker = None
    try:
        wait_until(lambda: len(arrived(gate)) == 2, search, "two children at the gate")
        marker = marker_of(live)
        ray_a = {**tree_of(search.pid),
                 **{p: strays._started(p) for p in strays.stray_ray_processes(marker)}}
        assert set(arrived(gate)) <= set(ray_a)  # the children at the gate are A's workers
        assert len(ray_a) >= 5, ray_a  # gcs_server, raylet, ... and the two workers
        # what must live on: Ray's core and the children at the gate (and the driver, below);
        # Ray may end an idle worker of its own meanwhile: those are not counted
        vital = {pid: start for pid, start in ray_a.items()
                 if pid in arrived(gate) or is_ray_core(pid)}
        assert len(vital) == 4, vital  # gcs_server, raylet, the two children at the gate

        copy_folder(live, copy)
        assert json.loads((copy / "run.json").read_text())["ray_marker"] == marker
        resumed = run_nas("resume", copy, env={**os.environ, "MNAS_FAULT": "before_ray"})
        # it got past its clean-up (killed at the crash point after it), stopped none of A's
        # processes, and said why
        assert resumed.returncode == -signal.SIGKILL, resumed.stderr[-3000:]
        assert still_running(vital) == sorted(vital), resumed.stderr[-3000:]
        assert search.poll() is None
        assert "belong to the original run" in resumed.stderr, resumed.stderr[-3000:]

        gate.touch()
        _, err = search.communicate(timeout=240)
        assert search.returncode == 0, err[-3000:]
    finally:
        if search.poll() is None:  # the test failed: stop A and what is left of its Ray
            search.kill()
            search.wait()
            if marker:
                strays.kill_stray_ray(marker, since=segment_start(live))
    records = [json.loads(line) for line in lines(live)]
    assert len(records) == 4 and len({r["trial_id"] for r in records}) == 4
    assert all(r["status"] == "complete" for r in records), [r["status"] for r in records]
    assert json.loads((live / "run.json").read_text())["status"] == "complete"
