"""The weight-sharing supernet: options, exact child extraction, resumable checkpoints (those of
before the space hook still read), BN recalibration and scoring by accuracy and by validation
loss (nas.supernet), with the MnasNet space's supernet. The hook for any space is tested in
``test_supernet_hook.py``."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from nas.errors import ConfigError, UsageError
from nas.evaluation.data import load_dataset
from nas.registry import get_space
from nas.supernet import (
    SuperNet,
    SupernetOptions,
    extract,
    load_supernet,
    recalibrate_bn,
    sandwich_archs,
    score_child,
    train_supernet,
)
from nas.supernet.checkpoint import INFO_FILE, MODEL_FILE
from nas.supernet.train import count_params
from search_spaces.blocks import MobileNetwork

DIGITS_SPACE = {"input_size": 8, "in_channels": 1, "num_classes": 10, "width_mult": 0.5,
                "stem_channels": 16, "head_channels": 128, "dropout": 0.1,
                "skeleton": [[16, 1, 1], [24, 2, 2], [40, 2, 2], [80, 2, 2], [96, 1, 1]]}
# small and quick to train: two blocks, one of them strided
TINY_SPACE = {**DIGITS_SPACE, "head_channels": 32, "skeleton": [[16, 1, 1], [24, 2, 2]]}
# threads fixed: a module fixture runs before conftest's one-thread fixture, and the bit-exact
# resume needs the same reductions on both sides
FAST = {"epochs": 2, "batch_size": 32, "calib_batches": 2, "calib_batch_size": 32, "threads": 1}


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet", **DIGITS_SPACE)


@pytest.fixture(scope="module")
def tiny():
    return get_space("mnasnet", **TINY_SPACE)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)


def scrambled(space, kernel: str) -> SuperNet:
    """A supernet whose BN affine parameters and running statistics are all random, so that a
    wrong slice of any of them changes the output."""
    torch.manual_seed(1)
    net = SuperNet(space, kernel=kernel)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        for name, p in net.named_parameters():
            if name.endswith("_bias"):
                p.normal_(0, 0.2)
    return net.eval()


def covering_archs(space) -> list:
    """Every block takes every op, kernel, SE and skip value (all blocks alike), and every
    filters and layers option of every block appears."""
    archs = []
    choices = space.choices()
    for i, (op, kernel, se, skip) in enumerate(
            (o, k, s, sk) for o in choices["b1.op"].options for k in (3, 5)
            for s in (0.0, 0.25) for sk in ("none", "identity")):
        values = {}
        for label, choice in choices.items():
            field = label.split(".")[1]
            pick = {"op": op, "kernel": kernel, "se": se, "skip": skip}.get(field)
            values[label] = pick if pick is not None else choice.options[i % len(choice)]
        archs.append(space.validate(values))
    return archs


def assert_exact(net: SuperNet, archs) -> None:
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for arch in archs:
        child = extract(net, arch)
        assert type(child) is MobileNetwork and not child.training
        with torch.no_grad():
            path, alone = net(x, arch), child(x)
        assert torch.equal(path, alone), (arch.to_dict(), (path - alone).abs().max().item())


# -- options -------------------------------------------------------------------------------------
def test_options_round_trip_and_defaults():
    options = SupernetOptions()
    assert SupernetOptions.from_dict(options.to_dict()) == options
    assert SupernetOptions.from_dict({"sampling": "sandwich"}).sampling == "sandwich"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("epochs", 0, "supernet option epochs=0: must be an integer >= 1"),
    ("batch_size", 1.5, "supernet option batch_size=1.5: must be an integer >= 1"),
    ("lr", 0, "supernet option lr=0: must be a finite number > 0"),
    ("momentum", 1.0, "supernet option momentum=1.0: must be a finite number >= 0 and < 1"),
    ("sampling", "fair", "supernet option sampling='fair': allowed values: uniform, sandwich"),
    ("score", "rank", "supernet option score='rank': allowed values: accuracy, loss"),
    ("supernet", ["kernel"], "supernet option supernet=['kernel']: must be a mapping of the "
                             "space's supernet options (string keys)"),
    ("distill", 1, "supernet option distill=1: must be true or false"),
    ("calib_batches", -1, "supernet option calib_batches=-1: must be an integer >= 0"),
    ("device", "tpu", "supernet option device='tpu': allowed values: cpu, cuda, cuda:N, auto"),
    ("threads", 0, "supernet option threads=0: must be an integer >= 1 or null"),
])
def test_options_refuse_bad_values(key, value, message):
    with pytest.raises(ConfigError) as err:
        SupernetOptions.from_dict({key: value})
    assert str(err.value) == message


def test_options_refuse_unknown_keys():
    with pytest.raises(ConfigError, match=r"^supernet option epoch: unknown key \(did you mean "
                                          r"'epochs'\?\); allowed keys: epochs, batch_size, "):
        SupernetOptions.from_dict({"epoch": 3})


# -- the supernet and extraction -----------------------------------------------------------------
def test_only_mnasnet_spaces():
    with pytest.raises(UsageError, match="is not a MnasNet space"):
        SuperNet(get_space("nasbench201"))


@pytest.mark.parametrize(("kernel", "samples"), [("shared", 20), ("separate", 4)])
def test_extracted_child_equals_the_path(space, kernel, samples):
    net = scrambled(space, kernel)
    rng = np.random.default_rng(7)
    assert_exact(net, covering_archs(space) + [space.sample(rng) for _ in range(samples)])


def test_extraction_of_other_space_options():
    """Another activation, width, input size and in/out sizes (stride 2 in the stem)."""
    other = get_space("mnasnet", input_size=16, in_channels=3, num_classes=7, width_mult=0.75,
                      stem_channels=16, head_channels=64, activation="relu6",
                      skeleton=[[16, 1, 1], [24, 2, 2], [32, 1, 2]])
    net = scrambled(other, "separate")
    x = torch.randn(4, 3, 16, 16)
    for arch in [other.sample(np.random.default_rng(i)) for i in range(4)]:
        with torch.no_grad():
            assert torch.equal(net(x, arch), extract(net, arch)(x))


def uniform_arch(space, **fields):
    """Every block alike: ``fields`` by name (``op``, ``kernel``, ...), a callable picking from
    the options, or the block's largest ``layers``."""
    values = {}
    for label, choice in space.choices().items():
        pick = fields.get(label.split(".")[1], max)
        values[label] = pick(choice.options) if callable(pick) else pick
    return space.validate(values)


def leading(big: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The first channels of ``big`` (every dimension), spatially its centre."""
    index = []
    for dim, n in enumerate(shape):
        start = (big.shape[dim] - n) // 2 if dim >= 2 else 0
        index.append(slice(start, start + n))
    return big[tuple(index)]


@pytest.mark.parametrize(("op", "narrow_op"), [("mbconv6", "mbconv3"), ("conv", "conv"),
                                               ("sepconv", "sepconv")])
def test_narrower_choices_are_the_first_channels(space, op, narrow_op):
    """Narrower filters, expansion 3 and (shared) the 3x3 kernel are the leading slice (the
    centre) of the widest weights and BN tensors; the widest child holds whole tensors."""
    net = scrambled(space, "shared")
    wide = extract(net, uniform_arch(space, op=op, kernel=5, se=0.25)).state_dict()
    narrow = extract(net, uniform_arch(space, op=narrow_op, kernel=3, se=0.25, filters=min)
                     ).state_dict()
    assert wide.keys() == narrow.keys()
    for key, value in narrow.items():
        assert torch.equal(value, leading(wide[key], value.shape)), key
    assert any(value.shape != wide[key].shape for key, value in narrow.items())


def test_separate_kernels_are_not_centres(space):
    net = scrambled(space, "separate")
    k5 = extract(net, uniform_arch(space, op="conv", kernel=5)).state_dict()
    k3 = extract(net, uniform_arch(space, op="conv", kernel=3)).state_dict()
    weight = "blocks.0.body.0.0.weight"
    assert not torch.equal(k3[weight], leading(k5[weight], k3[weight].shape))


def test_kernels_share_or_not(space):
    shared, separate = SuperNet(space, "shared"), SuperNet(space, "separate")
    names = {n.rsplit(".", 1)[-1] for n, _ in shared.named_parameters() if ".weight." in n}
    assert names == {"1", "5"}  # the 1x1 convolutions, and one kernel for 3 and 5
    names = {n.rsplit(".", 1)[-1] for n, _ in separate.named_parameters() if ".weight." in n}
    assert names == {"1", "3", "5"}


def test_sandwich_extremes(space):
    largest, smallest = sandwich_archs(space)
    rng = np.random.default_rng(0)
    sizes = [count_params(space, space.sample(rng)) for _ in range(10)]
    assert count_params(space, largest) > max(sizes)
    assert count_params(space, smallest) < min(sizes)


# -- training, checkpoints, resume ---------------------------------------------------------------
class Killed(Exception):
    pass


def kill_after(epoch: int):
    def callback(metrics):
        if metrics["epoch"] == epoch:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def trained(tiny, data, tmp_path_factory):
    """(straight folder, its info, killed-and-resumed folder, the info after the kill)."""
    straight, resumed = tmp_path_factory.mktemp("straight"), tmp_path_factory.mktemp("resumed")
    info = train_supernet(tiny, data, FAST, straight)
    with pytest.raises(Killed):
        train_supernet(tiny, data, FAST, resumed, on_epoch=kill_after(1))
    after_kill = json.loads((resumed / INFO_FILE).read_text())
    return straight, info, resumed, after_kill


def test_training_checkpoints_every_epoch(trained, tiny):
    straight, info, _, after_kill = trained
    assert info["epochs_done"] == 2 and info["complete"] and len(info["history"]) == 2
    assert json.loads((straight / INFO_FILE).read_text()) == info
    assert after_kill["epochs_done"] == 1 and not after_kill["complete"]
    assert len(after_kill["history"]) == 1
    assert info["space"] == {"name": "mnasnet", "options": json.loads(json.dumps(tiny.options))}
    assert not list(straight.glob("*.tmp"))


def test_resume_continues_to_the_same_weights(trained, tiny, data):
    straight, info, resumed, after_kill = trained
    done = train_supernet(tiny, data, FAST, resumed)
    assert done["epochs_done"] == 2 and done["complete"]
    assert done["history"][0] == after_kill["history"][0]
    assert [h["loss"] for h in done["history"]] == [h["loss"] for h in info["history"]]
    a, b = load_file(str(straight / MODEL_FILE)), load_file(str(resumed / MODEL_FILE))
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_a_finished_folder_returns_at_once(trained, tiny, data, monkeypatch):
    straight, info, _, _ = trained
    import nas.supernet.train as module

    monkeypatch.setattr(module, "_Trainer", None)  # would fail if training started
    assert train_supernet(tiny, data, FAST, straight) == info


def test_a_json_left_behind_is_rewritten_from_the_tensor_file(trained, tiny, data, tmp_path):
    """A kill between the tensor file's move and the JSON's: the tensor file's metadata wins."""
    straight, info, _, _ = trained
    shutil.copytree(straight, tmp_path / "run")
    behind = {**info, "epochs_done": 1, "complete": False, "history": info["history"][:1]}
    (tmp_path / "run" / INFO_FILE).write_text(json.dumps(behind))
    assert train_supernet(tiny, data, FAST, tmp_path / "run") == info
    assert json.loads((tmp_path / "run" / INFO_FILE).read_text()) == info


@pytest.mark.parametrize(("change", "named"), [
    ({"space": {"width_mult": 0.75}}, "space option width_mult=0.5 (asked: 0.75)"),
    ({"options": {"lr": 0.3}}, "option lr=0.1 (asked: 0.3)"),
    ({"options": {"supernet": {"kernel": "separate"}}},
     "option supernet.kernel='shared' (asked: 'separate')"),
    ({"options": {"kernel": "separate"}},  # the key of mnas before issue 23 means the same
     "option supernet.kernel='shared' (asked: 'separate')"),
])
def test_a_folder_of_another_supernet_is_refused(trained, data, change, named):
    straight = trained[0]
    space = get_space("mnasnet", **{**TINY_SPACE, **change.get("space", {})})
    options = {**FAST, **change.get("options", {})}
    with pytest.raises(ConfigError, match="holds another supernet") as err:
        train_supernet(space, data, options, straight)
    assert named in str(err.value)


def test_load_supernet(trained, tiny):
    straight, info, _, _ = trained
    net, loaded = load_supernet(straight)
    assert loaded == info and not net.training
    tensors = load_file(str(straight / MODEL_FILE))
    assert all(torch.equal(v, tensors[f"model.{k}"]) for k, v in net.state_dict().items())
    with pytest.raises(ConfigError, match="no supernet.safetensors"):
        load_supernet(straight / "missing")


def test_a_checkpoint_written_before_the_hook_still_reads(trained, tiny, data, tmp_path):
    """Issue 14's format: MnasNet's ``kernel`` among the training options, no ``supernet``."""
    straight, info, _, _ = trained
    old = {**info, "options": {k: v for k, v in info["options"].items()
                               if k not in ("supernet", "score")}}
    old["options"]["kernel"] = info["options"]["supernet"]["kernel"]
    folder = tmp_path / "old"
    folder.mkdir()
    tensors = load_file(str(straight / MODEL_FILE))
    save_file(tensors, str(folder / MODEL_FILE), metadata={"mnas": json.dumps(old)})
    (folder / INFO_FILE).write_text(json.dumps(old))
    net, loaded = load_supernet(folder, tiny)
    assert loaded == old and net.options == {"kernel": "shared"}
    assert all(torch.equal(v, tensors[f"model.{k}"]) for k, v in net.state_dict().items())
    done = train_supernet(tiny, data, FAST, folder)  # finished: neither refused nor retrained
    assert {k: v for k, v in done.items() if k != "options"} == \
        {k: v for k, v in old.items() if k != "options"}
    assert done["options"]["supernet"] == {"kernel": "shared"}



# -- BN recalibration and scoring ----------------------------------------------------------------
def bn_stats(model) -> list[torch.Tensor]:
    return [t.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
            for t in (m.running_mean, m.running_var)]


def test_recalibration_changes_stats_and_is_deterministic(trained, tiny, data):
    net, _ = load_supernet(trained[0])
    arch = tiny.sample(np.random.default_rng(3))
    child = extract(net, arch)
    before = bn_stats(child)
    recalibrate_bn(child, data, 2, 16, seed=0)
    after = bn_stats(child)
    assert not child.training
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    again = recalibrate_bn(extract(net, arch), data, 2, 16, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(after, bn_stats(again), strict=True))
    other = recalibrate_bn(extract(net, arch), data, 2, 16, seed=1)
    assert not all(torch.equal(a, b) for a, b in zip(after, bn_stats(other), strict=True))
    assert all(m.momentum == 0.1 for m in child.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_score_child(trained, tiny, data):
    net, _ = load_supernet(trained[0])
    arch = tiny.sample(np.random.default_rng(4))
    options = SupernetOptions.from_dict(FAST)
    child, accuracy, loss = score_child(net, arch, data, options)
    assert type(child) is MobileNetwork and not child.training
    assert 0.0 <= accuracy <= 1.0 and loss > 0
    assert score_child(net, arch, data, options)[1:] == (accuracy, loss)


# -- scoring by validation loss -------------------------------------------------------------------
def test_score_child_loss_is_the_mean_validation_cross_entropy(trained, tiny, data):
    net, _ = load_supernet(trained[0], tiny)
    scored = score_child(net, tiny.sample(np.random.default_rng(5)), data,
                         SupernetOptions.from_dict(FAST))
    batches = list(data.batch_source("cpu").val_batches(7))  # other batches, same split
    with torch.no_grad():
        logits = torch.cat([scored.child(x) for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    assert scored.loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(),
                                        rel=1e-5)
    assert scored.accuracy == (logits.argmax(1) == y).sum().item() / len(y)


def test_ranking_by_loss_makes_the_likelihood_the_rewards_acc():
    from nas.config import LOSS_REWARD_KEY, parse_config
    from nas.reward import RewardConfig

    def reward_of(evaluator, reward):
        return parse_config({"space": {"name": "mnasnet"}, "controller": {"name": "random"},
                             "evaluator": evaluator, "reward": reward}).reward

    by_loss = {"name": "supernet", "options": {"score": "loss"}}
    assert reward_of(by_loss, {"target": 2.0}) == {"target": 2.0,
                                                   "accuracy_key": "supernet.val_likelihood"}
    assert reward_of(by_loss, {"target": 2.0, "accuracy_key": "accuracy"})["accuracy_key"] == \
        "accuracy"  # the config's own choice stays
    assert "accuracy_key" not in reward_of({"name": "supernet"}, {"target": 2.0})
    assert "accuracy_key" not in reward_of({"name": "default", "options": {"score": "loss"}},
                                           {"target": 2.0})
    assert reward_of(by_loss, None) is None
    reward = RewardConfig(target=2.0, alpha=-0.5, beta=-0.5, accuracy_key=LOSS_REWARD_KEY)
    metrics = {"accuracy": 0.9, "latency_ms": 8.0, "supernet": {"val_likelihood": 0.25}}
    assert reward(metrics) == 0.25 * 4.0 ** -0.5
    assert math.isnan(reward({"accuracy": 0.9, "latency_ms": 8.0}))
