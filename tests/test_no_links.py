"""No writes through links (issue 22.2): every file mnas writes into a run folder, an export, an
analysis folder or a shared temp folder is opened without following a symbolic link.

Each test plants a link where a writer writes (the file itself, the fixed temporary name it used
before, or the sub-folder), pointing at a victim outside the run folder, runs the writer (through
``nas.cli.main`` where a command reaches it, with Ray forbidden), and checks that the victim is
unchanged (bytes and mtime), that nothing outside was written, and that the refusal is one line
naming the link (exit 2, or a :class:`~nas._fs.SymlinkError` from the library). The helpers are in
``link_victims.py``; the writers of outputs outside a run folder (latency tables, quiet
windows, ``nas bench --out``, analyses, exports) are tested in ``test_no_links_outputs.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from link_victims import Outside, make_run, plant, refused

from nas._fs import SymlinkError
from nas.cli import main
from nas.errors import UsageError
from nas.results import RunDir

pytestmark = pytest.mark.usefixtures("no_ray")


@pytest.fixture
def outside(tmp_path):
    return Outside(tmp_path)


# -- the run folder's own files (nas/results.py) -------------------------------------------------

def test_resume_refuses_a_linked_lock(tmp_path, outside, capsys):
    run = make_run(tmp_path)
    link = plant(run.path / "driver.lock", outside.file())
    outside.freeze()
    assert main(["resume", str(run.path)]) == 2
    refused(capsys, "resume", link)
    outside.unchanged()


def test_resume_refuses_a_linked_run_json(tmp_path, outside, capsys):
    run = make_run(tmp_path)
    victim = outside.file("victim.json", json.dumps(run.meta()).encode())  # readable, so the
    (run.path / "run.json").unlink()                                        # write is reached
    link = plant(run.path / "run.json", victim)
    outside.freeze()
    assert main(["resume", str(run.path)]) == 2
    refused(capsys, "resume", link)
    outside.unchanged()


def test_resume_refuses_a_linked_ray_log(tmp_path, outside, capsys):
    run = make_run(tmp_path, done=1, target=3)  # unfinished: the log opens before Ray would
    link = plant(run.path / "ray.log", outside.file())
    outside.freeze()
    assert main(["resume", str(run.path)]) == 2
    refused(capsys, "resume", link)
    outside.unchanged()


TMP_NAMES = ["run.json.tmp", ".run.json.tmp", "trials.jsonl.tmp", ".trials.jsonl.tmp",
             "controller.json.tmp", ".controller.json.tmp", "trials.parquet.tmp",
             ".trials.parquet.tmp"]


def test_resume_writes_past_links_at_the_old_temporary_names(tmp_path, outside, capsys):
    """``--rebuild-state`` and a torn last line make resume rewrite controller.json, run.json,
    trials.jsonl and trials.parquet: each through a fresh temporary name, never a planted one."""
    run = make_run(tmp_path)
    with open(run.trials_path, "a") as fh:
        fh.write('{"trial_id": 9')  # torn by a crash: repaired by a rewrite
    links = [plant(run.path / name, outside.file(f"victim-{i}")) for i, name in
             enumerate(TMP_NAMES)]
    outside.freeze()
    assert main(["resume", str(run.path), "--rebuild-state"]) == 0, capsys.readouterr().err
    outside.unchanged()
    assert all(link.is_symlink() for link in links)
    assert run.trials_path.read_text().endswith("}\n") and len(run.trials()) == 3
    assert run.meta()["status"] == "complete" and (run.path / "trials.parquet").is_file()
    assert not [p for p in run.path.iterdir() if ".tmp-" in p.name]  # none left behind


@pytest.mark.parametrize("name, write", [
    ("run.json", lambda run, record: run.write_meta({"status": "x"})),
    ("run.json", lambda run, record: run.reset_meta({"status": "x"})),
    ("trials.jsonl", lambda run, record: run.repair_trials()),  # the victim has no last newline
    ("trials.jsonl", lambda run, record: run.append_trial(record)),
    ("trials.parquet", lambda run, record: run.write_parquet()),
    ("controller.json", lambda run, record: run.save_controller({"n": 1})),
    ("remeasured.jsonl", lambda run, record: run.append_final_latency({"arch_key": "k",
                                                                       "latency_ms": 1.0})),
    ("driver.lock", lambda run, record: run.lock("test")),
])
def test_run_writers_refuse_a_link_at_the_file(tmp_path, outside, name, write):
    run = make_run(tmp_path)
    record = {**run.trials()[0].to_dict(), "trial_id": 7}
    victim = outside.file(data=b'{"status": "running"}')  # readable where a read comes first
    (run.path / name).unlink(missing_ok=True)
    link = plant(run.path / name, victim)
    outside.freeze()
    with pytest.raises(SymlinkError, match="symbolic link") as caught:
        write(RunDir(run.path), record)
    assert str(link) in str(caught.value) and "\n" not in str(caught.value)
    outside.unchanged()


def test_appends_refuse_a_pipe_and_a_second_hard_link(tmp_path, outside):
    run = make_run(tmp_path)
    entry = {"arch_key": "k", "latency_ms": 1.0}
    os.mkfifo(run.final_path)
    reader = os.open(run.final_path, os.O_RDONLY | os.O_NONBLOCK)  # a writer would not block
    try:
        with pytest.raises(UsageError, match="not a regular file"):
            run.append_final_latency(entry)
        assert os.read(reader, 100) == b""  # nothing was written into the pipe
    finally:
        os.close(reader)
    run.final_path.unlink()
    victim = outside.file()
    os.link(victim, run.final_path)  # a hard link: writing it in place writes the victim
    os.link(victim, run.path / "driver.lock")
    outside.freeze()
    with pytest.raises(UsageError, match="other hard links"):
        run.append_final_latency(entry)
    with pytest.raises(UsageError, match="other hard links"):
        RunDir(run.path).lock("test")
    outside.unchanged()


def test_a_new_run_is_never_made_through_a_link(tmp_path, outside):
    victim_dir = outside.folder()
    plant(tmp_path / "results" / "r", victim_dir)
    outside.freeze()
    with pytest.raises(UsageError, match="exists"):
        RunDir.create(tmp_path / "results", "r", {"space": {"name": "x"}})
    outside.unchanged()


def test_a_linked_results_dir_is_the_users_choice(tmp_path):
    real = tmp_path / "disk"
    real.mkdir()
    plant(tmp_path / "results", real)
    run = RunDir.create(tmp_path / "results", "r", {"space": {"name": "x"}})
    assert (real / "r" / "config.yaml").is_file() and run.meta()["status"] == "created"


def test_tune_pickles_are_never_deleted_through_links(tmp_path, outside):
    run = make_run(tmp_path)
    victim_dir = outside.folder()
    plant(run.tune_dir, victim_dir)
    outside.freeze()
    assert run.drop_tune_pickles() == 0  # a linked tune/ is left alone (logged)
    outside.unchanged()
    run.tune_dir.unlink()
    (run.tune_dir / "segment-1").mkdir(parents=True)
    (run.tune_dir / "segment-1" / "tuner.pkl").write_bytes(b"pickle")
    plant(run.tune_dir / "segment-1" / "trial", victim_dir)  # a linked sub-folder: not entered
    plant(run.tune_dir / "linked.pkl", victim_dir / "keep.pkl")  # removed as a link only
    assert run.drop_tune_pickles() == 2
    assert not (run.tune_dir / "segment-1" / "tuner.pkl").exists()
    assert not os.path.lexists(run.tune_dir / "linked.pkl")
    outside.unchanged()


@pytest.mark.parametrize("linked", ["tune", "tune/segment-2"])
def test_tune_never_starts_in_a_linked_folder(tmp_path, outside, monkeypatch, linked):
    from ray import tune

    from nas.runner.tuner import run_trials

    monkeypatch.setattr(tune, "Tuner", lambda *a, **k: pytest.fail("Tune started"))
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "0")  # run_trials sets it: restored after the test
    run = make_run(tmp_path)
    link = plant(run.path / linked, outside.folder())
    outside.freeze()
    with pytest.raises(SymlinkError) as caught:
        run_trials(None, {}, run=run, segment=2, search=SimpleNamespace(scheduler="fifo"),
                   epochs=1)
    assert str(link) in str(caught.value)
    outside.unchanged()


def test_tune_checkpoint_hook_refuses_a_link(tmp_path, outside):
    from nas.runner.search import ControllerSearcher

    link = plant(tmp_path / "searcher-state.json", outside.file())
    outside.freeze()
    me = SimpleNamespace(run=SimpleNamespace(controller_path=tmp_path / "controller.json"))
    with pytest.raises(SymlinkError):
        ControllerSearcher.save(me, str(link))
    outside.unchanged()


# -- controller state (nas/search/state.py) ----------------------------------------------------

def test_controller_state_and_its_tensor_file_refuse_links(tmp_path, outside):
    import torch

    from nas.search.state import load_state, save_state

    state = {"w": torch.arange(3.0), "n": 2}
    (tmp_path / "probe").mkdir()
    probe = save_state(state, tmp_path / "probe" / "controller.json")
    tensor_name = next(p.name for p in probe.parent.glob("controller.*.pt"))  # a content hash
    folder = tmp_path / "run"
    link = plant(folder / tensor_name, outside.file())
    for name in ("controller.json.tmp", ".controller.json.tmp", f"{tensor_name}.tmp",
                 f".{tensor_name}.tmp"):
        plant(folder / name, outside.file(f"victim-{name}"))
    plant(folder / "other.json", outside.file("victim-json"))
    outside.freeze()
    with pytest.raises(SymlinkError, match=tensor_name):
        save_state(state, folder / "controller.json")
    with pytest.raises(SymlinkError, match="other.json"):
        save_state({"n": 1}, folder / "other.json")
    link.unlink()
    save_state(state, folder / "controller.json")  # past the planted temporary names
    assert torch.equal(load_state(folder / "controller.json")["w"], torch.arange(3.0))
    outside.unchanged()


# -- kept weights (nas/runner/weights.py) ------------------------------------------------------

@pytest.mark.parametrize("linked", ["weights", "weights/incoming",
                                    "weights/incoming/trial-3.safetensors"])
def test_incoming_weights_refuse_links(tmp_path, outside, linked):
    from nas.runner.weights import incoming_dir, write_incoming

    run = make_run(tmp_path)
    target = outside.file() if linked.endswith(".safetensors") else outside.folder()
    link = plant(run.path / linked, target)  # the folders above it are real
    outside.freeze()
    with pytest.raises(SymlinkError) as caught:
        write_incoming(incoming_dir(run.path), 3, b"weights")
    assert link.name in str(caught.value)
    outside.unchanged()


def test_the_weight_keeper_refuses_a_linked_folder(tmp_path, outside):
    from nas.runner.weights import WeightKeeper

    run = make_run(tmp_path)
    victims = outside.folder()
    (victims / "trial-5.safetensors").write_bytes(b"would be dropped as unrecorded")
    outside.freeze()
    plant(run.weights_dir, victims)
    with pytest.raises(SymlinkError):
        WeightKeeper(run.path, 2, run.trials())
    outside.unchanged()


# -- supernet checkpoints (nas/supernet/checkpoint.py, nas/runner/supernet.py) -----------------

def test_supernet_checkpoint_files_refuse_links(tmp_path, outside):
    import torch

    from nas.supernet.checkpoint import read_info, save_checkpoint, write_info

    folder = tmp_path / "supernet"
    model = torch.nn.Linear(2, 2)
    info = {"format": "mnas-supernet/1", "epochs_done": 1}
    for name in ("supernet.json.tmp", "supernet.safetensors.tmp", ".supernet.json.tmp",
                 ".supernet.safetensors.tmp"):
        plant(folder / name, outside.file(f"victim-{name}"))
    outside.freeze()
    save_checkpoint(folder, model, None, info)  # past the planted temporary names
    assert read_info(folder) == info
    outside.unchanged()
    for name in ("supernet.json", "supernet.safetensors"):
        (folder / name).unlink()
        link = plant(folder / name, outside.file(f"victim-{name}"))
        outside.freeze()
        with pytest.raises(SymlinkError, match=name):
            save_checkpoint(folder, model, None, info) if "safe" in name else \
                write_info(folder, info)
        outside.unchanged()
        link.unlink()


def test_the_runs_supernet_folder_is_refused_when_a_link(tmp_path, outside):
    from nas.runner.supernet import prepare_supernet

    run = make_run(tmp_path)
    link = plant(run.path / "supernet", outside.folder())
    outside.freeze()
    exp = SimpleNamespace(settings=SimpleNamespace(evaluator="supernet", evaluator_options={}))
    with pytest.raises(SymlinkError, match="supernet"):
        prepare_supernet(run, exp, local=True)
    assert link.is_symlink()
    outside.unchanged()


def test_a_workers_supernet_copy_refuses_a_planted_temp_folder(tmp_path, outside, monkeypatch):
    from nas.runner.supernet import materialize

    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    plant(shared / "mnas-supernet-abc", outside.folder())
    outside.freeze()
    settings = SimpleNamespace(evaluator="supernet",
                               evaluator_options={"checkpoint": str(tmp_path / "elsewhere")})
    blob = {"id": "abc", "files": {"supernet.safetensors": b"t", "supernet.json": b"{}"}}
    with pytest.raises(SymlinkError, match="mnas-supernet-abc"):
        materialize(settings, blob)
    outside.unchanged()


# -- Ray's log, trackers, Ray's temp folder (nas/runner) ---------------------------------------

def test_ray_output_refuses_a_linked_log_before_moving_anything(tmp_path, outside):
    import sys

    from nas.runner.output import RayOutput

    link = plant(tmp_path / "run" / "ray.log", outside.file())
    outside.freeze()
    fd1, stdout = os.fstat(1).st_ino, sys.stdout
    with pytest.raises(SymlinkError, match="ray.log"):
        RayOutput(link).__enter__()
    assert os.fstat(1).st_ino == fd1 and sys.stdout is stdout
    with pytest.raises(SymlinkError, match="ray.log"), RayOutput() as output:
        output.move_to(link)
    assert os.fstat(1).st_ino == fd1 and sys.stdout is stdout
    outside.unchanged()


def test_tensorboard_never_writes_into_a_linked_folder(tmp_path, outside, caplog):
    pytest.importorskip("tensorboard")
    from nas.config import LoggingSettings
    from nas.records import TrialRecord, TrialStatus
    from nas.runner.trackers import TensorBoardTracker, Trackers

    run = make_run(tmp_path)
    link = plant(run.path / "tensorboard", outside.folder())
    outside.freeze()
    with pytest.raises(SymlinkError, match="tensorboard"):
        TensorBoardTracker(link).open(0, {"trial_id": 0, "arch_key": "k"})
    with Trackers.create(LoggingSettings(tensorboard=True), run.path, {}) as trackers:
        trackers.on_trial(TrialRecord(trial_id=0, arch_key="k", arch={},
                                      status=TrialStatus.COMPLETE, reward=0.5))
        assert trackers.names == []  # switched off with one warning; the search goes on
    assert "symbolic link" in caplog.text
    outside.unchanged()


def test_rays_temp_folder_is_refused_when_planted(tmp_path, outside, monkeypatch):
    import ray

    from nas.runner.session import ray_temp_dir, start_ray

    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(shared))
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray started"))
    link = plant(Path(ray_temp_dir(tmp_path / "run")), outside.folder())
    outside.freeze()
    settings = SimpleNamespace(address=None, dashboard=False, resources=None, num_cpus=1,
                               num_gpus=0)
    with pytest.raises(SymlinkError, match=link.name):
        start_ray(settings, address=None, run_path=tmp_path / "run", env={})
    outside.unchanged()
