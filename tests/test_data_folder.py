"""``folder:PATH`` image folders (in memory and streamed), ``torchvision:NAME``, their errors."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from nas.cli import main
from nas.config import parse_config
from nas.errors import ConfigError, UsageError
from nas.evaluation.data import Dataset, ImageOptions, load_dataset
from nas.evaluation.stream import StreamedImages, random_crop_flip
from nas.evaluation.train import TrainConfig, train
from nas.experiment import build_experiment

COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))


def make_folder(root, *, per_class=12, size=(10, 10), mode="RGB", classes=("ant", "bee", "cat")):
    """``root/<class>/<i>.png``: class k has colour COLOURS[k] plus noise (learnable by colour)."""
    rng = np.random.default_rng(len(str(root)))
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            noise = rng.integers(-30, 30, (size[1], size[0], 3))
            pixels = np.clip(np.array(COLOURS[k % 3]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).convert(mode).save(root / cls / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images") / "data")


def tiny_net(channels=3, classes=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, classes))


def load(path, **options):
    return load_dataset(f"folder:{path}", images=ImageOptions(**options))


def one_line(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text
    return text


def test_in_memory_labels_follow_sorted_class_names(folder):
    d = load(folder, stream=False)
    assert isinstance(d, Dataset) and d.classes == ("ant", "bee", "cat")
    assert d.input_shape == (3, 10, 10) and d.num_classes == 3
    assert (len(d.y_train), len(d.y_val)) == (29, 7)  # 36 images, val_fraction 0.2
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    raw = d.x_train * torch.tensor(d.std).view(1, 3, 1, 1) + torch.tensor(d.mean).view(1, 3, 1, 1)
    for k in range(3):  # class k is brightest in channel k
        assert raw[d.y_train == k].mean(dim=(0, 2, 3)).argmax().item() == k


def test_seeded_split_and_max_train(folder):
    a, b = load_dataset(f"folder:{folder}", seed=1), load_dataset(f"folder:{folder}", seed=1)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    c = load_dataset(f"folder:{folder}", seed=2)
    assert not torch.equal(a.x_val, c.x_val)
    d = load_dataset(f"folder:{folder}", val_fraction=0.5, max_train=5)
    assert (len(d.y_train), len(d.y_val)) == (5, 18)


def test_folder_split_is_the_npz_split(folder, tmp_path):
    """The same images as arrays (sorted classes, sorted files) split exactly as the folder."""
    files = sorted(folder.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f)).transpose(2, 0, 1) for f in files])
    y = np.array([("ant", "bee", "cat").index(f.parent.name) for f in files])
    np.savez(tmp_path / "same.npz", x_train=x, y_train=y)
    for rule in ({"seed": 3}, {"seed": 4, "val_fraction": 0.5, "max_train": 7}):
        a = load_dataset(f"folder:{folder}", **rule)
        b = load_dataset(f"npz:{tmp_path / 'same.npz'}", **rule)
        assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
        assert torch.equal(a.x_train, b.x_train) and a.mean == b.mean


def test_grayscale_non_square_and_image_size(tmp_path):
    gray = make_folder(tmp_path / "gray", per_class=3, size=(12, 8), mode="L")
    d = load(gray)
    assert d.input_shape == (1, 8, 8)  # one channel; the first image's shorter side
    assert load(gray, image_size=5).input_shape == (1, 5, 5)
    mixed = make_folder(tmp_path / "mixed", per_class=3, mode="RGB")
    Image.new("L", (10, 10), 128).save(mixed / "ant" / "00.png")  # the first file is gray
    assert load(mixed).input_shape == (3, 10, 10)


def test_train_val_test_subfolders_are_honoured(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=6)
    make_folder(tmp_path / "d" / "val", per_class=2)
    make_folder(tmp_path / "d" / "test", per_class=1, classes=("ant", "cat"))
    d = load_dataset(f"folder:{tmp_path / 'd'}", val_fraction=0.5, max_train=10)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (10, 6, 2)
    assert d.y_test.tolist() == [0, 2] and d.classes == ("ant", "bee", "cat")
    s = load_dataset(f"folder:{tmp_path / 'd'}", val_fraction=0.5, max_train=10,
                     images=ImageOptions(stream=True))
    assert s.summary() == {**d.summary(), "stream": True}


def test_streamed_split_and_statistics_match_in_memory(folder):
    memory = load(folder, stream=False)
    streamed = load(folder, stream=True)
    assert isinstance(streamed, StreamedImages)
    assert streamed.input_shape == memory.input_shape and streamed.num_classes == 3
    assert streamed.val.labels.tolist() == memory.y_val.tolist()
    assert np.allclose(streamed.mean, memory.mean) and np.allclose(streamed.std, memory.std)
    # validation streams unaugmented: exactly the in-memory tensors
    source = streamed.batch_source(torch.device("cpu"))
    x_val = torch.cat([x for x, _ in source.val_batches(4)])
    assert torch.allclose(x_val, memory.x_val, atol=1e-5)


def test_auto_streams_above_the_threshold(folder):
    assert isinstance(load(folder), Dataset)  # 36 x 3 x 10 x 10 floats: far below 1024 MiB
    assert isinstance(load(folder, stream_above_mb=0.01), StreamedImages)  # 0.04 MiB


def test_streamed_training_with_0_and_1_workers(folder):
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, check_every=1)
    results = [train(tiny_net(), load(folder, stream=True, num_workers=w), config)
               for w in (0, 1)]
    assert results[0].history == [{**h, "epoch_s": results[0].history[i]["epoch_s"],
                                   "elapsed_s": results[0].history[i]["elapsed_s"]}
                                  for i, h in enumerate(results[1].history)]
    memory = train(tiny_net(), load(folder, stream=False), config)
    for r in (*results, memory):
        assert r.steps == 4 * (29 // 8) and math.isfinite(r.train_loss)
        assert r.val_accuracy >= 0.7  # colour is easy: both paths learn it


def test_random_crop_flip_crops_windows_of_the_padded_image():
    x = torch.arange(2 * 4 * 5 * 5, dtype=torch.float32).view(4, 2, 5, 5)
    out = random_crop_flip(x, 1, torch.Generator().manual_seed(3))
    padded = nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[:, :, dy:dy + 5, dx:dx + 5] for dy in range(3) for dx in range(3)]
    flipped = 0
    for b in range(4):
        plain = any(torch.equal(out[b], w[b]) for w in windows)
        mirrored = any(torch.equal(out[b], w[b].flip(-1)) for w in windows)
        assert plain or mirrored
        flipped += mirrored and not plain
    assert out.shape == x.shape and not torch.equal(out, x) and flipped


def test_streamed_unreadable_image_is_named_in_one_line(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=3)
    make_folder(tmp_path / "d" / "val", per_class=1)
    bad = tmp_path / "d" / "val" / "bee" / "00.png"
    bad.write_bytes(b"not a png")
    data = load(tmp_path / "d", stream=True, num_workers=1)  # val files are read while training
    with pytest.raises(UsageError) as info:
        train(tiny_net(), data, TrainConfig(epochs=1, batch_size=4))
    assert "cannot read image" in one_line(info) and str(bad) in str(info.value)


def _layouts(tmp_path):
    make_folder(tmp_path / "one", per_class=2, classes=("only",))
    (tmp_path / "empty").mkdir()
    make_folder(tmp_path / "noimg", per_class=2, classes=("a", "b"))
    (tmp_path / "noimg" / "c").mkdir()
    (tmp_path / "noimg" / "c" / "notes.txt").write_text("x")
    make_folder(tmp_path / "corrupt", per_class=2, classes=("a", "b"))
    (tmp_path / "corrupt" / "b" / "01.png").write_bytes(b"\x89PNG broken")
    make_folder(tmp_path / "split" / "train", per_class=2, classes=("a", "b"))
    make_folder(tmp_path / "split" / "val", per_class=1, classes=("a", "zebra"))
    make_folder(tmp_path / "extra" / "train", per_class=2, classes=("a", "b"))
    make_folder(tmp_path / "extra" / "holdout", per_class=1, classes=("a", "b"))


@pytest.mark.parametrize(("sub", "needle"), [
    ("missing", "does not exist"), ("empty", "has no class subfolders"),
    ("one", "single class 'only'"), ("noimg", "has no image files"),
    ("corrupt", "cannot read image"), ("split", "is not a class of the training folder"),
    ("extra", "must be val/ or test/; found ['holdout']"),
])
def test_folder_errors_are_one_line(tmp_path, sub, needle):
    _layouts(tmp_path)
    with pytest.raises(UsageError) as info:
        load(tmp_path / sub, stream=False)
    assert needle in one_line(info) and f"folder:{tmp_path / sub}" in str(info.value)
    if sub == "corrupt":
        assert str(tmp_path / "corrupt" / "b" / "01.png") in str(info.value)


@pytest.mark.parametrize(("options", "needle"), [
    ({"image_size": 0}, "image_size=0"), ({"stream": "yes"}, "stream='yes'"),
    ({"num_workers": -1}, "num_workers=-1"), ({"stream_above_mb": 0}, "stream_above_mb=0"),
    ({"augment": 1}, "augment=1"),
])
def test_bad_image_options(options, needle):
    with pytest.raises(ConfigError) as info:
        ImageOptions(**options)
    assert needle in one_line(info)


def test_only_folders_stream():
    with pytest.raises(UsageError, match="only folder:PATH datasets stream"):
        load_dataset("digits", images=ImageOptions(stream=True))


def test_torchvision_missing_and_unknown(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(UsageError) as info:
        load_dataset("torchvision:MNIST", root=tmp_path)
    assert "needs torchvision, which is not installed" in one_line(info)
    with pytest.raises(UsageError) as info:
        load_dataset("torchvision:ImageNet21k", root=tmp_path)
    assert "unknown torchvision dataset 'ImageNet21k'; supported: MNIST" in one_line(info)


class _FakeVision:
    """A torchvision dataset class: files 'exist' once downloaded into ``root``."""

    made: list[tuple[str, bool]] = []
    layout = "NHW"

    def __init__(self, root, train, download):
        if download:
            self.made.append((root, train))
        if (root, train) not in self.made:
            raise RuntimeError("Dataset not found. You can use download=True to download it")
        n = 20 if train else 6
        rng = np.random.default_rng(n)
        self.targets = torch.arange(n) % 4
        if self.layout == "NHW":
            self.data = torch.from_numpy(rng.integers(0, 255, (n, 8, 8), dtype=np.uint8))
        else:  # CIFAR's numpy NHWC and a list of labels
            self.data = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
            self.targets = self.targets.tolist()


def test_torchvision_with_a_fake_module(monkeypatch, tmp_path):
    fake = types.ModuleType("torchvision")
    fake.datasets = types.ModuleType("torchvision.datasets")
    fake.datasets.MNIST = type("MNIST", (_FakeVision,), {"made": []})
    fake.datasets.CIFAR10 = type("CIFAR10", (_FakeVision,), {"made": [], "layout": "NHWC"})
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", fake.datasets)
    with pytest.raises(UsageError) as info:
        load_dataset("torchvision:MNIST", root=tmp_path)  # never downloads unless asked
    assert "its files are not under" in one_line(info) and "download" in str(info.value)
    assert fake.datasets.MNIST.made == []
    d = load_dataset("torchvision:MNIST", root=tmp_path, download=True, val_fraction=0.25)
    assert d.input_shape == (1, 8, 8) and d.num_classes == 4
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (15, 5, 6)
    again = load_dataset("torchvision:MNIST", root=tmp_path, val_fraction=0.25)  # no download
    assert torch.equal(again.x_val, d.x_val)
    c = load_dataset("torchvision:CIFAR10", root=tmp_path, download=True)
    assert c.input_shape == (3, 8, 8)


def test_search_config_maps_the_image_keys(folder, monkeypatch):
    base = {"space": {"name": "nasbench201", "options": {"channels": 4, "cells_per_stage": 1}},
            "controller": {"name": "random"}, "search": {"trials": 1}}
    monkeypatch.chdir(folder.parent)  # a relative folder reaches the workers as an absolute one
    ev = {"dataset": f"folder:{folder.name}", "stream": True, "num_workers": 0, "image_size": 8,
          "batch_size": 8}
    exp = build_experiment(parse_config({**base, "evaluator": ev}))
    assert exp.settings.dataset == f"folder:{folder}"
    assert isinstance(exp.dataset, StreamedImages) and exp.dataset.input_shape == (3, 8, 8)
    assert (exp.space.options["input_size"], exp.space.options["num_classes"]) == (8, 3)
    with pytest.raises(ConfigError) as info:
        build_experiment(parse_config({**base, "evaluator": {**ev, "stream": "yes"}}))
    assert one_line(info).startswith("evaluator.stream='yes'")


def test_cli_evaluate_on_a_folder(tmp_path, capsys):
    from nas import SPACES

    folder = make_folder(tmp_path / "d", per_class=6, size=(8, 8))
    arch = tmp_path / "arch.json"
    arch.write_text(SPACES.create("nasbench201").sample(np.random.default_rng(0)).to_json())
    argv = ["evaluate", "--arch", str(arch), "-o", "channels=4", "-o", "cells_per_stage=1",
            "--no-latency", "--epochs", "1", "--batch-size", "8", "--json"]
    assert main([*argv, "--dataset", f"folder:{folder}"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["dataset"] == f"folder:{folder}" and 0.0 <= record["accuracy"] <= 1.0
    make_folder(tmp_path / "one", per_class=1, classes=("only",))
    assert main([*argv, "--dataset", f"folder:{tmp_path / 'one'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "single class 'only'" in err and len(err.splitlines()) == 1
