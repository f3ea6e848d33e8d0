"""Search config: YAML, overrides, validation errors naming the key, CLI exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas.config import apply_overrides, load_config, parse_config
from nas.errors import ConfigError, UsageError
from nas.experiment import build_experiment

BASE = {
    "space": {"name": "nas.testing.fixtures:ToySpace"},
    "controller": {"name": "random", "options": {"dedup": True}},
    "evaluator": {"dataset": "digits", "epochs": 1},
    "latency": {"repeats": 4, "warmup": 1, "rounds": 2},
    "reward": {"target": 0.5},
    "search": {"trials": 3, "concurrency": 1},
}


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_valid_config_builds_everything(tmp_path):
    cfg = load_config(write(tmp_path, BASE))
    exp = build_experiment(cfg)
    space, controller, settings = exp.space, exp.controller, exp.settings
    assert space.options["num_classes"] == 10 and space.options["in_channels"] == 1
    assert controller.seed == 0 and settings.train.epochs == 1
    assert settings.reward.target == 0.5
    again = parse_config(cfg.to_dict())
    assert again == cfg


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, BASE), ["search.trials=7", "evaluator.lr=0.2",
                                             "ray.address=127.0.0.1:6379",
                                             "space.options.x=[1, 2]"])
    assert cfg.search.trials == 7 and cfg.evaluator["lr"] == 0.2
    assert cfg.ray.address == "127.0.0.1:6379" and cfg.space["options"]["x"] == [1, 2]
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides(BASE, ["search.trials"])
    with pytest.raises(ConfigError, match="search.trials is not a mapping"):
        apply_overrides(BASE, ["search.trials.x=1"])


@pytest.mark.parametrize("patch, message", [
    ({"bogus": 1}, "config.bogus: unknown key"),
    ({"search": {"trials": 0}}, "search.trials=0: must be an integer >= 1"),
    ({"search": {"trials": "ten"}}, "search.trials='ten': must be an integer >= 1"),
    ({"search": {"trails": 5}}, "search.trails: unknown key"),
    ({"search": {"scheduler": "hyperband"}}, "search.scheduler='hyperband': allowed values"),
    ({"search": {"concurrency": -1}}, "search.concurrency=-1"),
    ({"ray": {"dashboard": "yes"}}, "ray.dashboard='yes': must be true or false"),
    ({"space": {"options": {}}}, "space.name: missing"),
    ({"space": {"name": "mnasnet", "opts": {}}}, "space.opts: unknown key"),
    ({"controller": "random"}, "controller: must be a mapping"),
    ({"name": "a/b"}, "name='a/b'"),
])
def test_structure_errors(tmp_path, patch, message):
    data = {**BASE, **patch}
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(write(tmp_path, data))


@pytest.mark.parametrize("patch, message", [
    ({"space": {"name": "resnet"}}, "unknown space 'resnet'"),
    ({"controller": {"name": "bayes"}}, "unknown controller 'bayes'"),
    ({"controller": {"name": "evolution", "options": {"population_size": 1}}},
     "population_size=1"),
    ({"evaluator": {"dataset": "npz:/no/such/file.npz"}}, "/no/such/file.npz"),
    ({"evaluator": {"dataset": "digits", "optimizer": "lbfgs"}}, "optimizer"),
    ({"evaluator": {"dataset": "digits", "epochz": 3}}, "epochz"),
    ({"latency": {"runtime": "tflite"}}, "latency.runtime"),
    ({"latency": {"service": "yes"}}, "latency.service='yes'"),
    ({"reward": {"alpha": -0.07}}, "reward.target"),
    ({"space": {"name": "mnasnet", "options": {"width_mult": -1}}}, "width_mult=-1"),
])
def test_semantic_errors_name_the_key(tmp_path, patch, message):
    cfg = load_config(write(tmp_path, {**BASE, **patch}))
    with pytest.raises(UsageError, match=message.replace("[", r"\[")) as err:
        build_experiment(cfg)
    assert "\n" not in str(err.value)


def test_file_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="space: missing section"):
        load_config(empty)


def test_shipped_configs_are_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    quick = load_config(root / "quickstart.yaml")
    exp = build_experiment(quick)
    space, settings = exp.space, exp.settings
    assert settings.dataset == "digits" and space.options["input_size"] == 8
    gpu = load_config(root / "cifar10_mnas.yaml")
    assert gpu.search.gpus_per_trial == 0.5 and gpu.latency_service
    assert gpu.evaluator["device"] == "cuda"


def test_the_real_task_config_builds_on_cifar10_binaries(tmp_path):
    """configs/cifar10_nb201.yaml reads ``cifar10`` from a data root: here small generated
    binary batches in the official layout, resized to 16 px as the config asks."""
    import numpy as np

    from nas.config import apply_overrides, parse_config

    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (200, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(200) % 10
        records.tofile(folder / name)
    root = Path(__file__).resolve().parents[1] / "configs"
    data = yaml.safe_load((root / "cifar10_nb201.yaml").read_text())
    config = parse_config(apply_overrides(data, [f"evaluator.data_root={tmp_path}",
                                                 "evaluator.batch_size=32"]))
    exp = build_experiment(config)
    assert exp.space.name == "nasbench201" and exp.space.options["input_size"] == 16
    assert exp.dataset.summary()["train"] == 900 and exp.dataset.input_shape == (3, 16, 16)
