"""Left-over processes are stopped only by the rule of :mod:`nas.runner.strays`: this user's
processes carrying the run's token, and their Ray descendants started since the segment began;
never pid 1, this process or its ancestors; never because ``run.json`` lists a pid; and a resume
looks only when ``run.json`` records this very folder and a driver no longer running."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.results import RunDir
from nas.runner import strays
from nas.runner.strays import (
    MARKER,
    cleanup_plan,
    kill_stray_ray,
    recorded_pids,
    segment_clock,
    segment_record,
    snapshot,
    stray_ray_processes,
)

pytestmark = pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")

SLEEP = "import time; time.sleep(120)"
# a marked sleeper that starts two unmarked children (an empty environment, as a renamed Ray
# agent's can look): a plain Python one and one whose command line is `ray::Fake ...`
TREE = """import json, subprocess, sys, time
kids = {name: subprocess.Popen(argv, executable=sys.executable, env={}).pid
        for name, argv in (("plain", ["python", "-c", SLEEP]), ("ray", ["ray::Fake", "-c", SLEEP]))}
open(sys.argv[1] + ".tmp", "w").write(json.dumps(kids))
__import__("os").replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def env_with(marker):
    env = {k: v for k, v in os.environ.items() if k != MARKER}
    if marker:
        env[MARKER] = marker
    return env


def wait_for(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polling a condition with a deadline


def alive(pid):
    st = strays._stat(pid)
    return st is not None and st[0] not in ("Z", "X")


class Procs:
    """Processes a test started, stopped by pid at the end (never by name)."""

    def __init__(self, tmp_path):
        self.tmp, self.popen, self.pids = tmp_path, [], []

    def sleeper(self, marker=None):
        proc = subprocess.Popen([sys.executable, "-c", SLEEP], env=env_with(marker))
        self.popen.append(proc)
        return proc.pid

    def tree(self, marker=None):
        """(parent pid, {"plain": pid, "ray": pid}): see ``TREE``."""
        out = self.tmp / f"tree-{len(self.popen)}.json"
        proc = subprocess.Popen([sys.executable, "-c", f"SLEEP = {SLEEP!r}\n" + TREE, str(out)],
                                env=env_with(marker))
        self.popen.append(proc)
        wait_for(lambda: out.exists() or proc.poll() is not None, "the tree's children")
        assert proc.poll() is None
        kids = json.loads(out.read_text())
        self.pids += kids.values()
        return proc.pid, kids

    def stop(self):
        for proc in self.popen:
            proc.kill()
            proc.wait()
        for pid in self.pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.fixture
def procs(tmp_path):
    made = Procs(tmp_path)
    yield made
    made.stop()


def start_of(pid):
    return strays._stat(pid)[2]


def test_token_and_ray_descendants_since_the_segment_began(procs):
    since = strays._ticks_now()
    ours, kids = procs.tree("mnas-ours")
    other = procs.sleeper("mnas-other")
    plain = procs.sleeper()
    # marked processes only, without a segment start; with one, their Ray descendants too
    assert stray_ray_processes("mnas-ours") == [ours]
    assert stray_ray_processes("mnas-ours", since=since) == sorted([ours, kids["ray"]])
    # a Ray-looking descendant that started before the segment began is not ours
    assert stray_ray_processes("mnas-ours", since=start_of(kids["ray"]) + 1) == [ours]
    assert stray_ray_processes("mnas-ours", since=start_of(kids["ray"])) == sorted(
        [ours, kids["ray"]])
    assert snapshot("mnas-ours") == [[ours, start_of(ours)]]
    assert kill_stray_ray("mnas-ours", since=since, timeout_s=5) == 2
    assert not alive(ours) and not alive(kids["ray"])
    # the plain (non-Ray) child carries no token: left running, as is everything else
    assert alive(kids["plain"]) and alive(other) and alive(plain)
    assert stray_ray_processes("mnas-ours", since=since) == []


def test_recorded_pids_are_hints_never_authority(procs):
    tree, kids = procs.tree()  # unmarked: an unrelated process tree
    hints = [(pid, start_of(pid)) for pid in (tree, *kids.values())]
    assert kill_stray_ray("mnas-none", since=0, hints=hints + [(1, start_of(1))],
                          timeout_s=2) == 0
    assert all(alive(pid) for pid, _ in hints)


def test_pid_1_this_process_and_its_ancestors_are_never_found(procs, monkeypatch):
    sleeper = procs.sleeper("mnas-everyone")
    protected = strays._protected()
    assert {1, os.getpid(), os.getppid()} <= protected
    real = strays._environ
    # pretend pid 1, this process and every ancestor carry the token
    monkeypatch.setattr(strays, "_environ",
                        lambda pid: b"MNAS_RAY_OWNER=mnas-everyone" if pid in protected
                        else real(pid))
    found = stray_ray_processes("mnas-everyone", since=0)
    assert sleeper in found and not set(found) & protected


def test_a_marked_finder_lists_neither_itself_nor_its_marked_parent(tmp_path):
    """A child carrying the token asks for the token's processes: its marked parent and itself
    are its ancestors (never listed), the parent's other marked child is found."""
    finder = ("import json, os; from nas.runner.strays import stray_ray_processes; "
              "print(json.dumps([os.getpid(), stray_ray_processes(os.environ['MNAS_RAY_OWNER'], "
              "since=0)]))")
    parent = ("import json, subprocess, sys\n"
              f"s = subprocess.Popen([sys.executable, '-c', {SLEEP!r}])\n"
              f"out = subprocess.run([sys.executable, '-c', {finder!r}], capture_output=True, "
              "text=True)\n"
              "s.kill()\n"
              "print(json.dumps({'parent': __import__('os').getpid(), 'sibling': s.pid, "
              "'finder': json.loads(out.stdout or 'null'), 'err': out.stderr[-2000:]}))\n")
    out = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True,
                         timeout=120, env=env_with("mnas-finder"), cwd=Path.cwd())
    result = json.loads(out.stdout)
    assert result["finder"] is not None, result["err"] or out.stderr
    finder_pid, found = result["finder"]
    assert result["sibling"] in found
    assert result["parent"] not in found and finder_pid not in found


def test_another_users_processes_are_never_found(procs, monkeypatch):
    ours = procs.sleeper("mnas-uid")
    theirs = procs.sleeper("mnas-uid")
    assert stray_ray_processes("mnas-uid") == sorted([ours, theirs])
    real = strays._uid
    monkeypatch.setattr(strays, "_uid", lambda pid: os.getuid() + 1 if pid == theirs
                        else real(pid))
    assert stray_ray_processes("mnas-uid", since=0) == [ours]
    assert kill_stray_ray("mnas-uid", since=0, timeout_s=5) == 1
    assert alive(theirs) and not alive(ours)


def test_what_counts_as_a_ray_process():
    ray = strays._ray_dir()
    assert ray and Path(ray, "__init__.py").exists()
    assert strays._is_ray("/usr/bin/python3", ["ray::IDLE"], ray)
    assert strays._is_ray(f"{ray}/core/src/ray/raylet/raylet", [f"{ray}/core/x", "--a"], ray)
    assert strays._is_ray("/usr/bin/python3", ["python", "-u", f"{ray}/_private/lm.py"], ray)
    assert not strays._is_ray("/usr/bin/python3", ["python", "-c", "x", f"{ray}/a.py"], ray)
    assert not strays._is_ray("/usr/bin/python3", ["python", "/tmp/ray::x.py"], ray)
    assert not strays._is_ray("/usr/bin/python3", ["python", f"{ray}x/a.py"], ray)
    assert not strays._is_ray("/bin/sleep", ["sleep", "9"], ray)


@pytest.mark.parametrize("value", [[[1]], "1,2", [["a", 2]], [[True, 5]], {"1": 2}, [[1, 2, 3]],
                                   [[-4, 2]], 7])
def test_malformed_ray_pids_are_ignored(value, caplog):
    with caplog.at_level(logging.WARNING, logger="nas.runner.strays"):
        assert recorded_pids(value) == []
    assert "ray_pids" in caplog.text
    assert recorded_pids([[5, 6], [[1]]]) == [(5, 6)]
    assert recorded_pids(None) == []


# -- a resume's clean-up (nas.runner.resume._clean_strays) ---------------------------------------
def run_folder(tmp_path, name, meta):
    path = tmp_path / name
    path.mkdir()
    run = RunDir(path)
    run.write_meta(meta)
    return run


def left_by_dead_driver(folder, marker, clock, **extra):
    """``run.json`` as a killed driver of ``folder`` leaves it (its pid now another process)."""
    record = segment_record(folder, clock)
    record["driver"] = [os.getpid(), 0]  # this pid, another start time: that driver is gone
    return {"status": "running", "ray_marker": marker, "ray_segment": record, **extra}


def clean(run):
    from nas.runner.resume import _clean_strays

    run.lock("test")
    try:
        _clean_strays(run)
    finally:
        run.unlock()


def test_resume_stops_what_a_dead_driver_of_this_folder_left(tmp_path, procs):
    clock = segment_clock()
    ours, kids = procs.tree("mnas-dead")
    run = run_folder(tmp_path, "run", {})
    run.write_meta(left_by_dead_driver(run.path, "mnas-dead", clock,
                                       ray_pids=[[kids["plain"], start_of(kids["plain"])]]))
    assert cleanup_plan(run.meta(), run.path).marker == "mnas-dead"
    clean(run)
    assert not alive(ours) and not alive(kids["ray"])
    assert alive(kids["plain"])  # listed in ray_pids, but carries no token: left alone


def test_resume_of_a_copied_folder_stops_nothing(tmp_path, procs, caplog):
    clock = segment_clock()
    ours, kids = procs.tree("mnas-copied")
    original = run_folder(tmp_path, "original", {})
    original.write_meta(left_by_dead_driver(original.path, "mnas-copied", clock))
    shutil.copytree(original.path, tmp_path / "copy")
    with caplog.at_level(logging.WARNING):
        clean(RunDir(tmp_path / "copy"))
    assert "copy" in caplog.text
    assert alive(ours) and alive(kids["ray"]) and alive(kids["plain"])


def test_resume_stops_nothing_while_the_recorded_driver_lives(tmp_path, procs, caplog):
    clock = segment_clock()
    ours, kids = procs.tree("mnas-live")
    driver = procs.sleeper()
    run = run_folder(tmp_path, "run", {})
    meta = left_by_dead_driver(run.path, "mnas-live", clock)
    meta["ray_segment"]["driver"] = [driver, start_of(driver)]
    run.write_meta(meta)
    with caplog.at_level(logging.WARNING):
        clean(run)
    assert f"pid {driver}) is still running" in caplog.text
    assert alive(ours) and alive(kids["ray"])


@pytest.mark.parametrize("segment", [None, {}, {"started_ticks": 0}, "x",
                                     {"started_ticks": 0, "driver": [1], "folder": [1, 2]}])
def test_old_or_malformed_run_json_stops_nothing(tmp_path, procs, caplog, segment):
    ours = procs.sleeper("mnas-old")
    run = run_folder(tmp_path, "run", {"ray_marker": "mnas-old", "ray_pids": [[1]]})
    if segment is not None:
        run.write_meta({"ray_segment": segment})
    with caplog.at_level(logging.WARNING):
        clean(run)
    assert "older mnas" in caplog.text
    assert alive(ours)


def test_a_crafted_run_json_naming_other_processes_stops_nothing(tmp_path, procs):
    """ray_pids naming an unrelated tree (and pid 1), malformed entries, another token: no
    traceback, and every listed process still runs."""
    clock = segment_clock()
    tree, kids = procs.tree()
    listed = [[pid, start_of(pid)] for pid in (tree, *kids.values())]
    run = run_folder(tmp_path, "run", {})
    run.write_meta(left_by_dead_driver(run.path, "mnas-crafted", clock,
                                       ray_pids=[*listed, [1, start_of(1)], [1], ["a", 2]]))
    clean(run)
    assert all(alive(pid) for pid, _ in listed)
