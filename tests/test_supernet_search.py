"""The supernet evaluator end to end (issue 14.2, 14.3, 14.5, 14.6): a child scored with inherited
weights in a trial, a search that trains its supernet as a Ray task, reuse, export provenance;
issue 23.2: any space with the hook (nasbench201 in a real search), ranking by validation loss."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import yaml

import nas
from nas.config import LOSS_REWARD_KEY
from nas.evaluation.data import load_dataset
from nas.evaluation.evaluate import EvalSettings, evaluate_arch
from nas.latency.measure import LatencyConfig
from nas.registry import get_space
from nas.reward import RewardConfig
from nas.supernet import extract, load_supernet, train_supernet
from tests.test_search_ray import config, records, run_nas
from tests.test_supernet import TINY_SPACE

FAST = {"epochs": 1, "batch_size": 32, "calib_batches": 2, "calib_batch_size": 32, "threads": 1}
NB201_SPACE = {"channels": 4, "cells_per_stage": 1}  # sized for digits by the search
NB201_FAST = {**FAST, "supernet": {"paths": "non_isomorphic"}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)
    space = get_space("mnasnet", **TINY_SPACE)
    folder = tmp_path_factory.mktemp("sn") / "supernet"
    train_supernet(space, data, FAST, folder)
    return space, data, folder


def test_a_trial_scores_its_child_with_inherited_weights(trained):
    space, data, folder = trained
    arch = space.sample(np.random.default_rng(4))
    handed = []
    settings = EvalSettings(evaluator="supernet",
                            evaluator_options={**FAST, "checkpoint": str(folder)},
                            latency=LatencyConfig(repeats=6, warmup=1, rounds=2))
    record = evaluate_arch(space, arch, settings, dataset=data, on_model=handed.append)
    assert record["status"] == "complete" and 0.0 <= record["accuracy"] <= 1.0
    assert record["latency_ms"] > 0 and record["macs"] > 0  # measured as for any child
    assert "train_s" not in record["timings"] and record["timings"]["score_s"] > 0
    assert record["supernet"]["epochs"] == 1 and len(record["supernet"]["id"]) == 12
    scored = record["supernet"]  # both scores recorded, ranked by accuracy (the default)
    assert scored["score"] == "accuracy" and scored["val_loss"] > 0
    assert scored["val_likelihood"] == math.exp(-scored["val_loss"])
    # the model handed over (kept, exported) holds the supernet's weights for this child
    net, _ = load_supernet(folder)
    cut = extract(net, arch)
    kept = handed[0].state_dict()
    same = [torch.equal(kept[k], v) for k, v in cut.state_dict().items()
            if "running" not in k and "num_batches" not in k]
    assert same and all(same)


def test_a_trial_ranked_by_loss_rewards_the_likelihood(trained):
    """``score: loss``: the accuracy stays the accuracy; the reward's ACC is exp(-loss)."""
    space, data, folder = trained
    arch = space.sample(np.random.default_rng(4))
    reward = RewardConfig(target=1.0, accuracy_key=LOSS_REWARD_KEY)
    settings = EvalSettings(evaluator="supernet", reward=reward, evaluator_options={
        **FAST, "checkpoint": str(folder), "score": "loss"},
        latency=LatencyConfig(repeats=6, warmup=1, rounds=2))
    record = evaluate_arch(space, arch, settings, dataset=data)
    scored = record["supernet"]
    assert record["status"] == "complete" and scored["score"] == "loss"
    by_accuracy = evaluate_arch(space, arch, dataclasses.replace(settings, evaluator_options={
        **FAST, "checkpoint": str(folder)}), dataset=data)
    assert record["accuracy"] == by_accuracy["accuracy"]  # the same child, the same accuracy
    assert record["reward"] == pytest.approx(
        scored["val_likelihood"] * record["latency_ms"] ** -0.07)
    assert record["reward"] != pytest.approx(record["accuracy"] * record["latency_ms"] ** -0.07)


def test_a_nasbench201_trial_scores_with_its_supernet(tmp_path):
    data = load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)
    space = get_space("nasbench201", **NB201_SPACE, in_channels=1, input_size=8)
    train_supernet(space, data, NB201_FAST, tmp_path / "sn")
    settings = EvalSettings(evaluator="supernet", latency=LatencyConfig(repeats=6, warmup=1,
                                                                        rounds=2),
                            evaluator_options={**NB201_FAST, "checkpoint": str(tmp_path / "sn")})
    handed = []
    arch = space.sample(np.random.default_rng(1))
    record = evaluate_arch(space, arch, settings, dataset=data, on_model=handed.append)
    assert record["status"] == "complete" and record["supernet"]["val_loss"] > 0
    net, _ = load_supernet(tmp_path / "sn", space)
    cut = net.extract(arch).state_dict()
    kept = handed[0].state_dict()
    assert all(torch.equal(kept[k], v) for k, v in cut.items()
               if "running" not in k and "num_batches" not in k)


def test_supernet_options_are_checked_before_a_search_starts(tmp_path):
    import nas
    from nas.errors import ConfigError

    base = {"space": {"name": "mnasnet", "options": TINY_SPACE}, "controller": {"name": "random"},
            "results_dir": str(tmp_path / "results"), "search": {"trials": 1}}
    bad = {**base, "evaluator": {"dataset": "digits", "name": "supernet",
                                 "options": {"epochs": 0}}}
    with pytest.raises(ConfigError, match=r"^evaluator.options.epochs=0: must be an integer"):
        nas.search(bad, name="x", progress=False)
    missing = {**base, "evaluator": {"dataset": "digits", "name": "supernet",
                                     "options": {"checkpoint": str(tmp_path / "none")}}}
    with pytest.raises(ConfigError, match="no supernet there"):
        nas.search(missing, name="x", progress=False)
    assert not (tmp_path / "results" / "x").exists()


@pytest.mark.ray
@pytest.mark.slow
def test_a_supernet_search_trains_once_and_exports_inherited_weights(tmp_path):
    cfg = config(tmp_path, space={"name": "mnasnet", "options": TINY_SPACE},
                 controller={"name": "random"},
                 evaluator={"dataset": "digits", "max_train": 64, "name": "supernet",
                            "options": FAST, "epochs": 1, "batch_size": 32},
                 search={"trials": 3, "concurrency": 2, "keep_weights": 0, "remeasure_top": 0})
    out = run_nas("search", cfg, "--name", "sn")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "results" / "sn"
    info = json.loads((run_dir / "supernet" / "supernet.json").read_text())
    assert info["complete"] and info["epochs_done"] == 1  # trained by the driver's Ray task
    recs = records(run_dir)
    assert len(recs) == 3 and {r["status"] for r in recs} == {"complete"}
    assert {r["metrics"]["supernet"]["checkpoint"] for r in recs} == {str(run_dir / "supernet")}
    exported = run_nas("export", run_dir, "--out", tmp_path / "card", "--format", "json,weights")
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = json.loads((tmp_path / "card" / "arch.json").read_text())
    assert card["weights"]["source"] == "supernet" and card["weights"]["trained"] is True
    assert card["weights"]["supernet"]["checkpoint"] == str(run_dir / "supernet")
    assert card["weights"]["supernet"]["epochs"] == 1
    tuned = nas.load_run(run_dir).export(trial_id=recs[0]["trial_id"], formats="json",
                                         out=tmp_path / "tuned", train_epochs=1).card["weights"]
    assert tuned["source"] == "supernet+export" and tuned["fine_tuned_epochs"] == 1
    assert tuned["epochs"] == 1 and tuned["supernet"]["checkpoint"] == str(run_dir / "supernet")


@pytest.mark.ray
@pytest.mark.slow
def test_a_nasbench201_supernet_search_ranked_by_loss(tmp_path):
    options = {**NB201_FAST, "score": "loss"}
    cfg = config(tmp_path, space={"name": "nasbench201", "options": NB201_SPACE},
                 controller={"name": "random"},
                 evaluator={"dataset": "digits", "max_train": 64, "name": "supernet",
                            "options": options, "epochs": 1, "batch_size": 32},
                 search={"trials": 3, "concurrency": 2, "keep_weights": 0, "remeasure_top": 0})
    out = run_nas("search", cfg, "--name", "nb")
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "results" / "nb"
    info = json.loads((run_dir / "supernet" / "supernet.json").read_text())
    assert info["complete"] and info["space"]["name"] == "nasbench201"
    assert info["space"]["options"]["in_channels"] == 1  # the space sized for digits
    assert info["options"]["supernet"] == {"paths": "non_isomorphic"}
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["reward"]["accuracy_key"] == LOSS_REWARD_KEY
    recs = records(run_dir)
    assert len(recs) == 3 and {r["status"] for r in recs} == {"complete"}
    target = resolved["reward"]["target"]
    for rec in recs:
        m = rec["metrics"]
        assert m["supernet"]["score"] == "loss" and 0 <= m["accuracy"] <= 1
        loss = m["supernet"]["val_loss"]
        assert m["supernet"]["val_likelihood"] == pytest.approx(math.exp(-loss))
        assert rec["reward"] == pytest.approx(
            m["supernet"]["val_likelihood"] * (m["latency_ms"] / target) ** -0.07)
    ranked = nas.load_run(run_dir).best(3)
    assert list(ranked["trial_id"]) == [r["trial_id"] for r in
                                        sorted(recs, key=lambda r: -r["reward"])]
