"""Proxy datasets: digits, CIFAR-10 binary files, user npz files, and their error paths."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

import nas.evaluation.cifar
from nas.errors import UsageError
from nas.evaluation.data import load_dataset, read_cifar10_bin


def _rows(d, x: torch.Tensor) -> set[bytes]:
    """Raw digit images (integers 0..16, undoing the normalisation) as hashable rows."""
    raw = torch.round(x * torch.tensor(d.std).view(1, -1, 1, 1)
                      + torch.tensor(d.mean).view(1, -1, 1, 1))
    return {row.numpy().astype(np.int8).tobytes() for row in raw}


def test_digits_are_scikit_learns_read_without_importing_it():
    """A trial worker loads digits without scikit-learn's import (seconds of its start)."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from nas.evaluation.data import digits_table

    table, digits = digits_table(), load_digits()
    np.testing.assert_array_equal(table[:, :-1], digits.data)
    np.testing.assert_array_equal(table[:, -1].astype(np.int64), digits.target)
    code = ("import sys; from nas.evaluation.data import load_dataset; "
            "load_dataset('digits'); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_digits_shapes_and_normalisation():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8)
    assert d.num_classes == 10
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert len(d.y_train) + len(d.y_val) + len(d.y_test) == 1797
    assert len(d.y_val) == round((len(d.y_train) + len(d.y_val)) * 0.2)
    assert abs(d.x_train.mean().item()) < 1e-4
    assert d.x_train.std().item() == pytest.approx(1.0, abs=1e-3)
    assert set(d.y_train.tolist()) == set(range(10))


def test_validation_is_carved_from_training_data_not_test():
    a = load_dataset("digits", seed=0)
    b = load_dataset("digits", seed=1)
    # the test split is fixed, whatever the seed; train + val is the same pool
    assert _rows(a, a.x_test) == _rows(b, b.x_test) and torch.equal(a.y_test, b.y_test)
    pool_a = _rows(a, a.x_train) | _rows(a, a.x_val)
    assert pool_a == _rows(b, b.x_train) | _rows(b, b.x_val)
    # validation images come from the pool, never from test-only images
    assert _rows(a, a.x_val) <= pool_a
    assert not (_rows(a, a.x_val) & (_rows(a, a.x_test) - pool_a))
    assert _rows(a, a.x_val) != _rows(b, b.x_val)  # a different seed gives another split


def test_same_seed_same_split():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)


def test_max_train_and_val_fraction():
    d = load_dataset("digits", val_fraction=0.5, max_train=100)
    assert len(d.y_train) == 100
    assert len(d.y_val) == round(1438 * 0.5)
    assert d.summary()["train"] == 100


@pytest.mark.parametrize("name", ["mnist", "npz:", "", "Digits"])
def test_unknown_dataset_lists_known(name):
    with pytest.raises(UsageError, match="digits, cifar10, npz:PATH"):
        load_dataset(name)


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, True, "0.2"])
def test_bad_val_fraction(bad):
    with pytest.raises(UsageError, match="val_fraction"):
        load_dataset("digits", val_fraction=bad)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_max_train(bad):
    with pytest.raises(UsageError, match="max_train"):
        load_dataset("digits", max_train=bad)


# -- npz ----------------------------------------------------------------------------------------
def _save(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_grayscale_gets_a_channel_and_split(tmp_path):
    rng = np.random.default_rng(0)
    name = _save(tmp_path, x_train=rng.random((50, 6, 6)), y_train=rng.integers(0, 3, 50))
    d = load_dataset(name, val_fraction=0.2)
    assert d.input_shape == (1, 6, 6)
    assert (len(d.y_train), len(d.y_val)) == (40, 10)
    assert d.num_classes == 3
    assert d.x_test is None


def test_npz_uses_given_validation_and_test(tmp_path):
    rng = np.random.default_rng(0)
    name = _save(tmp_path, x_train=rng.random((20, 3, 4, 4)), y_train=np.arange(20) % 4,
                 x_val=rng.random((7, 3, 4, 4)), y_val=np.arange(7) % 5,
                 x_test=rng.random((5, 3, 4, 4)), y_test=np.zeros(5, dtype=np.int32))
    d = load_dataset(name)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (20, 7, 5)
    assert d.num_classes == 5  # the largest label over all splits
    # normalised with training statistics
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_npz_missing_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")


def test_npz_not_an_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file")
    with pytest.raises(UsageError, match="bad.npz"):
        load_dataset(f"npz:{path}")


def test_npz_object_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x_train=np.array([object()] * 4, dtype=object), y_train=np.zeros(4, int))
    with pytest.raises(UsageError, match="pickle"):
        load_dataset(f"npz:{path}")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((4, 2, 2))}, "no array 'y_train'"),
        ({"y_train": np.zeros(4, int)}, "no array 'x_train'"),
        ({"x_train": np.zeros((4, 8)), "y_train": np.zeros(4, int)}, r"x_train has shape \(4, 8\)"),
        ({"x_train": np.zeros((4, 1, 2, 2, 2)), "y_train": np.zeros(4, int)}, "x_train has shape"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(3, int)}, r"y_train has shape \(3"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros((4, 1), int)}, "y_train has shape"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(4)}, "integer labels"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": -np.ones(4, int)}, "non-negative"),
        ({"x_train": np.full((4, 2, 2), np.nan), "y_train": np.zeros(4, int)}, "NaN"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(4, int),
          "x_val": np.zeros((2, 3, 3))}, "come together"),
        ({"x_train": np.zeros((4, 2, 2)), "y_train": np.zeros(4, int),
          "x_val": np.zeros((2, 3, 3)), "y_val": np.zeros(2, int)}, "x_val samples have shape"),
        ({"x_train": np.zeros((1, 2, 2)), "y_train": np.zeros(1, int)}, "at least 2"),
    ],
)
def test_npz_bad_arrays(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(_save(tmp_path, **arrays))


# -- CIFAR-10 binary format ------------------------------------------------------------------------
def _write_batch(path, n, rng, max_label=9):
    labels = rng.integers(0, max_label + 1, n).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3072)).astype(np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(path)
    return labels, pixels


@pytest.fixture
def cifar_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = [_write_batch(folder / f"data_batch_{i}.bin", 6, rng) for i in range(1, 6)]
    test = _write_batch(folder / "test_batch.bin", 4, rng)
    return tmp_path, written, test


def test_read_cifar10_bin_record_layout(cifar_root):
    root, written, _ = cifar_root
    x, y = read_cifar10_bin(root / "cifar-10-batches-bin" / "data_batch_2.bin")
    labels, pixels = written[1]
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.uint8
    assert y.tolist() == labels.tolist()
    # channel-major: the first 1024 bytes are the red plane, row by row
    assert x[0, 0, 0, :].tolist() == pixels[0, :32].tolist()
    assert x[0, 1, 0, 0] == pixels[0, 1024]


def test_cifar10_loads_from_root(cifar_root):
    root, _, (test_labels, _) = cifar_root
    d = load_dataset("cifar10", root=root, val_fraction=0.2)
    assert d.input_shape == (3, 32, 32)
    assert len(d.y_train) + len(d.y_val) == 30
    assert len(d.y_val) == 6
    assert d.y_test.tolist() == test_labels.tolist()  # test data never feeds train/val


def test_cifar10_missing_without_download(tmp_path):
    with pytest.raises(UsageError, match="download=True"):
        load_dataset("cifar10", root=tmp_path)


def test_cifar10_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(nas.evaluation.cifar.urllib.request, "urlretrieve", offline)
    with pytest.raises(UsageError, match="cannot download CIFAR-10.*unreachable"):
        load_dataset("cifar10", root=tmp_path, download=True)


def test_cifar10_truncated_file(tmp_path):
    path = tmp_path / "batch.bin"
    np.zeros(3073 + 5, np.uint8).tofile(path)
    with pytest.raises(UsageError, match="not a multiple of 3073"):
        read_cifar10_bin(path)


def test_cifar10_bad_label(tmp_path):
    path = tmp_path / "batch.bin"
    _write_batch(path, 3, np.random.default_rng(1))
    rec = np.fromfile(path, np.uint8).reshape(3, 3073)
    rec[0, 0] = 12
    rec.tofile(path)
    with pytest.raises(UsageError, match="label 12"):
        read_cifar10_bin(path)


def test_cifar10_env_root(cifar_root, monkeypatch):
    root, _, _ = cifar_root
    monkeypatch.setenv("MNAS_DATA_DIR", str(root))
    assert load_dataset("cifar10").input_shape == (3, 32, 32)
