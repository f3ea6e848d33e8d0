"""Issue 24.3: a search leaves nothing in the shared temp folder: its Ray's session (and Ray's
temp folder when nothing else is in it), and the run's quiet-window folder; never through a
link, never another Ray's session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from nas._fs import SymlinkError, remove_tree
from nas.runner.session import RaySession, remove_activity_dir, remove_ray_session, run_tag


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A private stand-in for the machine's temp folder."""
    folder = tmp_path / "shared-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(folder))
    return folder


@pytest.fixture
def victim(tmp_path):
    """A folder outside, with a file, that no removal may touch."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def ray_folder(shared, *sessions):
    """``mnas-ray-x`` as a local Ray leaves it: session folders, ``session_latest`` naming the
    last one."""
    temp = shared / "mnas-ray-x"
    for name in sessions:
        logs = temp / name / "logs"
        logs.mkdir(parents=True)
        (logs / "raylet.out").write_text("log")
        (temp / name / "sockets").mkdir()
    (temp / "session_latest").symlink_to(temp / sessions[-1])
    return temp


def test_only_our_session_goes_and_the_folder_with_the_last_one(shared, victim):
    temp = ray_folder(shared, "session_a", "session_b")
    (temp / "session_b" / "logs" / "planted").symlink_to(victim)  # inside ours: a link, unlinked
    remove_ray_session(str(temp), str(temp / "session_b"))
    assert sorted(p.name for p in temp.iterdir()) == ["session_a"]  # another Ray's stays
    assert (victim / "precious.txt").read_text() == "keep me"
    remove_ray_session(str(temp), str(temp / "session_a"))
    assert not temp.exists() and list(shared.iterdir()) == []


def test_a_planted_link_is_never_followed(shared, victim):
    (victim / "session_a").mkdir()
    link = shared / "mnas-ray-x"
    link.symlink_to(victim)  # Ray's temp folder replaced by a link to someone else's folder
    remove_ray_session(str(link), str(link / "session_a"))  # logged, never raised
    assert (victim / "session_a").is_dir() and (victim / "precious.txt").exists()
    with pytest.raises(SymlinkError, match="mnas-ray-x"):
        remove_tree(link / "session_a", root=shared)
    assert remove_tree(shared / "missing", root=shared) is False


def test_a_session_stops_and_removes_what_its_local_ray_left(shared):
    temp = ray_folder(shared, "session_a")
    joined = RaySession(False, "10.0.0.5:6379", str(temp), 0.0, session_dir=str(temp / "session_a"))
    joined.stop()
    assert (temp / "session_a").is_dir()  # not ours to remove: a joined cluster's
    local = RaySession(True, None, str(temp), 0.0, session_dir=str(temp / "session_a"))
    local.stop()
    assert not temp.exists() and local.session_dir is None
    local.stop()  # twice (the driver's and the search's own end): nothing more to do


def test_the_runs_activity_folder_is_removed(shared, tmp_path):
    from nas.latency.conditions import activity_dir, training

    run = tmp_path / "results" / "r"
    folder = activity_dir(run_tag(run))
    assert Path(folder).parent == shared
    with training(folder):
        assert any(Path(folder).iterdir())
    (Path(folder) / "measure.lock").write_text("")
    remove_activity_dir(run)
    assert not os.path.lexists(folder)
    remove_activity_dir(run)  # gone already: nothing to do
