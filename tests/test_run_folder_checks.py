"""A run folder is never misread: each corruption is one line naming the file (and the line), or
is repaired by ``nas resume --rebuild-state``; never a traceback, never a silent re-run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from nas.cli import main
from nas.config import parse_config
from nas.experiment import build_experiment
from nas.results import RunDir
from nas.search.controller import load_state
from nas.testing.fixtures import TOY_SEARCH


def make_run(tmp_path, done=3, target=6, name="r"):
    """A run folder as a killed search leaves it: ``done`` trials stored and told."""
    cfg = {**TOY_SEARCH, "results_dir": str(tmp_path / "results"), "latency": {"mode": "skip"},
           "evaluator": {"dataset": "digits", "epochs": 1},
           "search": {"trials": target, "concurrency": 1}}
    config = parse_config(cfg)
    exp = build_experiment(config)
    space, controller = exp.space, exp.controller
    cfg["space"]["options"] = dict(space.options)
    run = RunDir.create(cfg["results_dir"], name, cfg)
    for i in range(done):
        proposal = controller.ask()
        reward = 0.5 + 0.1 * i
        run.append_trial({"trial_id": proposal.id, "arch_key": proposal.arch.key,
                          "arch": dict(proposal.arch.items()), "status": "complete",
                          "error": None, "metrics": {"accuracy": reward, "latency_ms": 1.0},
                          "reward": reward, "step": i + 1})
        controller.tell(proposal, reward)
        run.save_controller(controller)
    run.write_meta({"status": "running", "segments": 1, "driver_pid": None})
    return run


def one_line(capsys, command, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas {command}: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def rewrite_line(run, index, text):
    lines = run.trials_path.read_text().splitlines()
    lines[index] = text
    run.trials_path.write_text("\n".join(lines) + "\n")


def test_lost_controller_state_is_refused_not_rerun(tmp_path, capsys, no_ray):
    run = make_run(tmp_path)
    run.controller_path.unlink()
    assert main(["resume", str(run.path)]) == 2
    one_line(capsys, "resume", "controller.json is missing but trials.jsonl holds 3 trials",
             f"nas resume {run.path} --rebuild-state")


@pytest.mark.parametrize("corrupt, needle", [
    (lambda run: rewrite_line(run, 1, "[1, 2]"), "trials.jsonl: line 2 is list, not a trial"),
    (lambda run: rewrite_line(run, 1, '{"trial_id": 1}'), "trials.jsonl: line 2: status missing"),
    (lambda run: rewrite_line(run, 1, "{oops"), "trials.jsonl: line 2 is not valid JSON"),
    (lambda run: rewrite_line(run, 2, run.trials_path.read_text().splitlines()[0]),
     "trials.jsonl: line 3 repeats trial_id 0 of line 1"),
    (lambda run: rewrite_line(run, 1, run.trials_path.read_text().splitlines()[1]
                              .replace('"complete"', '"ok"')),
     "trials.jsonl: line 2: status 'ok'; allowed: complete, failed, pruned"),
])
@pytest.mark.parametrize("command", ["resume", "status", "analyze"])
def test_corrupt_trials_store(tmp_path, capsys, no_ray, corrupt, needle, command):
    run = make_run(tmp_path)
    corrupt(run)
    assert main([command, str(run.path)]) == 2
    one_line(capsys, command, needle)


def test_duplicate_line_appended(tmp_path, capsys, no_ray):
    run = make_run(tmp_path)
    with open(run.trials_path, "a") as fh:
        fh.write(run.trials_path.read_text().splitlines()[0] + "\n")
    assert main(["status", str(run.path)]) == 2
    one_line(capsys, "status", "line 4 repeats trial_id 0 of line 1")


@pytest.mark.parametrize("corrupt, needle", [
    (lambda run: (run.path / "run.json").write_text('{"status": '),
     "run.json: not valid JSON (line 1); `nas resume"),
    (lambda run: (run.path / "run.json").write_text("[]"), "run.json: not a JSON object"),
    (lambda run: run.config_path.write_text("space: {name: [\n"), "config.yaml: invalid YAML at"),
    (lambda run: run.config_path.write_text("- a\n- b\n"), "config.yaml: must hold a mapping"),
    (lambda run: run.config_path.write_text(run.config_path.read_text() + "bogus: 1\n"),
     "config.yaml: config.bogus: unknown key"),
    (lambda run: run.controller_path.write_text("{"), "controller.json is not valid JSON"),
])
def test_corrupt_bookkeeping(tmp_path, capsys, no_ray, corrupt, needle):
    run = make_run(tmp_path)
    corrupt(run)
    assert main(["resume", str(run.path)]) == 2
    one_line(capsys, "resume", needle)


def test_state_older_than_the_trials_is_refused(tmp_path, capsys, no_ray):
    run = make_run(tmp_path)
    old = run.controller_path.read_text()
    early = make_run(tmp_path, done=1, name="early")
    run.controller_path.write_text(early.controller_path.read_text())
    assert old != run.controller_path.read_text()
    assert main(["resume", str(run.path)]) == 2
    one_line(capsys, "resume", "older than trials.jsonl (trial 1 was never proposed by it)",
             "--rebuild-state")


def test_rebuild_state_of_a_finished_run_needs_no_ray(tmp_path, capsys, no_ray):
    run = make_run(tmp_path, done=3, target=3)
    run.controller_path.unlink()
    (run.path / "run.json").write_text("{broken")
    assert main(["resume", str(run.path), "--rebuild-state"]) == 0
    state = load_state(run.controller_path)
    assert state["num_told"] == 3 and state["next_id"] == 3 and state["outstanding"] == []
    meta = json.loads((run.path / "run.json").read_text())
    assert meta["status"] == "complete" and (run.path / "trials.parquet").exists()
    assert len(run.trials()) == 3


@pytest.mark.ray
@pytest.mark.slow
def test_rebuild_state_continues_without_retraining(tmp_path):
    run = make_run(tmp_path, done=3, target=5)
    before = run.trials_path.read_text()
    run.controller_path.unlink()
    out = subprocess.run([sys.executable, "-m", "nas.cli", "resume", str(run.path),
                          "--rebuild-state"], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    records = run.trials()
    assert run.trials_path.read_text().startswith(before)
    assert len(records) == 5 and len({r.trial_id for r in records}) == 5
    assert len({r.arch_key for r in records}) == 5  # the three done were not trained again
    assert min(r.trial_id for r in records[3:]) >= 3  # new ids after the replayed ones
    assert yaml.safe_load(run.config_path.read_text())["search"]["trials"] == 5
