"""Exact resume: state_dict / load_state_dict and the JSON + weights-only files on disk."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nas
from nas import CONTROLLERS, ConfigError, UsageError
from nas.search.controller import load_state, save_state
from nas.testing import controllers as suite

OPTIONS = {
    "random": {"dedup": True},
    "evolution": {"population_size": 4, "sample_size": 2},
    "rl": {"batch_size": 4},
    "nsga2": {"population_size": 6},
}


@pytest.fixture(scope="module")
def nb201() -> nas.Space:
    return nas.get_space("nasbench201")


@pytest.fixture(scope="module")
def mnasnet() -> nas.Space:
    return nas.get_space("mnasnet")


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_resume_with_outstanding_proposals_matches_an_uninterrupted_run(name, nb201, tmp_path):
    suite.check_resume(name, nb201, tmp_path, **OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_resume_with_default_options_on_mnasnet(name, mnasnet, tmp_path):
    suite.check_resume(name, mnasnet, tmp_path, steps=100)


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_loading_foreign_states_raises(name, nb201):
    suite.check_state_errors(name, nb201, _other_space(), **OPTIONS.get(name, {}))


def _other_space() -> nas.Space:
    class Other(nas.Space):
        name = "other"

        def __init__(self) -> None:
            super().__init__([nas.Choice("a", (1, 2, 3)), nas.Choice("b", ("x", "y"))])

    return Other()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["random", "evolution", "nsga2"]), seed=st.integers(0, 2**32),
       split=st.integers(1, 79))
def test_resume_at_any_step_property(name, seed, split):
    space = nas.get_space("nasbench201")
    ops = suite.schedule(80, seed=seed % 1000)
    reference = suite.make(name, space, seed, **OPTIONS[name])
    expected = suite.drive(reference, ops, [])
    first = suite.make(name, space, seed, **OPTIONS[name])
    pending: list = []
    log = suite.drive(first, ops[:split], pending)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_state(first, Path(tmp) / "controller.json")
        resumed = suite.make(name, space, seed + 1, **OPTIONS[name])
        resumed.load_state_dict(load_state(path))
    log += suite.drive(resumed, ops[split:], pending, start=split)
    assert log == expected


def test_load_into_a_used_controller_replaces_everything(nb201):
    ops = suite.schedule(60, seed=1)
    source = suite.make("evolution", nb201, 0, **OPTIONS["evolution"])
    pending: list = []
    suite.drive(source, ops[:30], pending)
    used = suite.make("evolution", nb201, 99, **OPTIONS["evolution"])
    suite.drive(used, suite.schedule(25, seed=2), [])
    used.load_state_dict(source.state_dict())
    suite.same_state(source.state_dict(), used.state_dict())
    assert suite.drive(used, ops[30:], list(pending), 30) == \
        suite.drive(source, ops[30:], list(pending), 30)


def test_state_dict_is_a_copy(nb201):
    ctrl = suite.make("rl", nb201, 0, batch_size=2)
    state = ctrl.state_dict()
    for _ in range(4):
        ctrl.tell(ctrl.ask(), 1.0)
    assert state["next_id"] == 0 and state["algorithm"]["num_updates"] == 0
    fresh = suite.make("rl", nb201, 0, batch_size=2)
    suite.same_state(state, fresh.state_dict())  # the update did not reach the saved tensors


# -- files -----------------------------------------------------------------------------------------
def test_rl_state_goes_to_json_plus_weights_only_torch_file(nb201, tmp_path, monkeypatch):
    import torch

    ctrl = suite.make("rl", nb201, 0, batch_size=2)
    for _ in range(3):
        ctrl.tell(ctrl.ask(), 0.5)
    ctrl.ask()
    (tmp_path / "controller.best.pt").write_bytes(b"not ours")
    save_state(ctrl, tmp_path / "controller.json")
    ctrl.tell(ctrl.outstanding()[0], 1.0)  # an update: new weights, new tensor file
    path = save_state(ctrl, tmp_path / "controller.json")
    doc = json.loads(path.read_text())
    assert re.fullmatch(r"controller\.[0-9a-f]{12}\.pt", doc["tensor_file"])
    assert '"__tensor__"' in path.read_text()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["controller.json", doc["tensor_file"], "controller.best.pt"])
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    state = load_state(path)
    assert calls == [True]
    suite.same_state(ctrl.state_dict(), state)


def test_tensor_free_state_writes_json_only(nb201, tmp_path):
    ctrl = suite.make("evolution", nb201, 0)
    ctrl.ask()
    path = save_state(ctrl.state_dict(), tmp_path / "c.json")
    assert json.loads(path.read_text())["tensor_file"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_load_state_errors(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_state(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_state(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UsageError, match="not a 'mnas.search.controller-file/1' file"):
        load_state(tmp_path / "other.json")
    import torch

    torch.save({"t0": torch.zeros(1)}, tmp_path / "lost.pt")
    doc = {"format": "mnas.search.controller-file/1", "tensor_file": "lost.pt",
           "state": {"w": {"__tensor__": "t1"}}}
    (tmp_path / "lost.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="tensor 't1' is missing"):
        load_state(tmp_path / "lost.json")
    (tmp_path / "lost.pt").unlink()
    with pytest.raises(UsageError, match="lost.pt: cannot load"):
        load_state(tmp_path / "lost.json")
    (tmp_path / "lost.pt").write_bytes(b"torn")
    with pytest.raises(UsageError, match="lost.pt: cannot load"):
        load_state(tmp_path / "lost.json")


def test_malformed_states_raise_usage_errors(nb201):
    ctrl = suite.make("evolution", nb201, 0)
    ctrl.ask()
    state = ctrl.state_dict()
    broken = {**state, "outstanding": [{"id": 0}]}
    with pytest.raises(UsageError, match="malformed controller state"):
        suite.make("evolution", nb201, 0).load_state_dict(broken)
    out_of_range = {**state, "outstanding": [{"id": 0, "indices": [9] * 6, "extra": {}}]}
    with pytest.raises(UsageError, match="out of range"):
        suite.make("evolution", nb201, 0).load_state_dict(out_of_range)
    with pytest.raises(UsageError, match="no options"):
        suite.make("evolution", nb201, 0).load_state_dict({**state, "options": None})


def test_option_mismatch_names_the_option(nb201):
    state = suite.make("evolution", nb201, 0, population_size=4, sample_size=2).state_dict()
    with pytest.raises(ConfigError, match=r"population_size=5 differs .* population_size=4"):
        suite.make("evolution", nb201, 0, population_size=5, sample_size=2).load_state_dict(state)


def test_rl_state_of_another_policy_shape_is_rejected(nb201):
    state = suite.make("rl", nb201, 0).state_dict()
    weights = state["algorithm"]["policy"]
    weights["cell.weight_ih"] = weights["cell.weight_ih"][:, :5]
    with pytest.raises(UsageError, match="does not fit this policy"):
        suite.make("rl", nb201, 0).load_state_dict(state)


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_replay_rebuilds_a_lost_state(name, nb201):
    """``replay`` (``nas resume --rebuild-state``): a fresh controller told the stored trials
    counts them, proposes new ids after them, takes their tells, and refuses an outstanding id."""
    options = {**OPTIONS.get(name, {})}
    if name == "bananas":
        options.update(n_init=3, epochs=5)
    source = CONTROLLERS.create(name, space=nb201, seed=1, **options)
    wants = source.wants_metrics
    history = []
    for i in range(8):
        p = source.ask()
        metrics = {"accuracy": 0.5 + 0.01 * i, "latency_ms": 1.0 + i, "params": 1e5, "macs": 1e6}
        value = None if i == 3 else (metrics if wants else 0.5 + 0.01 * i)
        source.tell(p, value)
        history.append((p.id, p.arch, value))
    rebuilt = CONTROLLERS.create(name, space=nb201, seed=2, **options)
    for pid, arch, value in history:
        rebuilt.replay(pid, arch, value)
    assert rebuilt.num_told == 8 and rebuilt.num_failed == 1 and rebuilt.outstanding() == []
    new = [rebuilt.ask() for _ in range(4)]
    assert [p.id for p in new] == [8, 9, 10, 11]
    for p in new:
        rebuilt.tell(p, {"accuracy": 0.6, "latency_ms": 2.0, "params": 1e5, "macs": 1e6}
                     if wants else 0.6)
    assert rebuilt.num_told == 12 and rebuilt.state_dict()["next_id"] == 12
    pending = rebuilt.ask()
    with pytest.raises(UsageError, match="is outstanding"):
        rebuilt.replay(pending.id, pending.arch, 0.5)
    assert rebuilt.outstanding() == [pending]
