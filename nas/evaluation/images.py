"""Class-per-subfolder image folders (``folder:PATH``): scanning, probing and decoding with Pillow.

A folder holds one subfolder per class (class names sorted -> labels ``0..K-1``), as torchvision's
``ImageFolder``; image files are found at any depth below a class folder by their extension
(:data:`IMAGE_EXTENSIONS`, case-insensitive); other files and hidden entries are ignored. If the
folder has a ``train/`` subfolder, it is split by folder instead: ``train/<class>/...``, an
optional ``val/<class>/...`` (used as the validation split) and an optional ``test/<class>/...``.

Every image is converted to one mode and one square size (:func:`probe_format`): grayscale
(``L``, 1 channel) when every probed file is grayscale, RGB (3 channels) otherwise; the size is
``image_size`` or the shorter side of the first training image. A non-square image is resized
on its shorter side and centre-cropped (its aspect ratio is kept).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nas._checks import check_bool, check_choice, check_int, check_number
from nas.errors import UsageError

__all__ = ["IMAGE_EXTENSIONS", "ImageOptions", "ImageFiles", "ImageFormat", "FolderTree",
           "scan_folder", "probe_format", "read_image", "decode_files", "channel_stats"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".pbm", ".bmp", ".gif", ".tif",
                    ".tiff", ".webp")
STREAM_CHOICES = ("auto", True, False)
SPLIT_FOLDERS = ("train", "val", "test")
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PROBES = 32  # files whose headers decide grayscale vs RGB


@dataclass(frozen=True)
class ImageOptions:
    """How image folders are read (errors name the key).

    Args:
        image_size: side of the square images (None: the first training image's shorter side;
            for array datasets such as ``cifar10``: as stored). Array datasets are resized once
            when loaded (area averaging down, bilinear up): a smaller resolution is a cheaper
            proxy task.
        stream: ``"auto"`` (stream when the decoded float32 tensors would exceed
            ``stream_above_mb``), True (always) or False (always decode into memory).
        stream_above_mb: the automatic streaming threshold, in MiB of decoded tensors.
        num_workers: DataLoader worker processes of the streaming path (0: decode in-process).
        augment: random crop (zero padding of ``image_size // 8``, at least 1 pixel) and
            horizontal flip of streamed training batches; validation is never augmented.
    """

    image_size: int | None = None
    stream: str | bool = "auto"
    stream_above_mb: float = 1024.0
    num_workers: int = 2
    augment: bool = True

    def __post_init__(self) -> None:
        check_int("image_size", self.image_size, optional=True)
        check_choice("stream", self.stream, STREAM_CHOICES)
        check_number("stream_above_mb", self.stream_above_mb, strict=True)
        check_int("num_workers", self.num_workers, minimum=0)
        check_bool("augment", self.augment)


@dataclass(frozen=True)
class ImageFiles:
    """Image paths and their integer labels (one split)."""

    paths: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def take(self, index: np.ndarray) -> ImageFiles:
        """The files at ``index`` (in that order)."""
        return ImageFiles(tuple(self.paths[i] for i in index), self.labels[index])


@dataclass(frozen=True)
class ImageFormat:
    """The one mode (``L`` or ``RGB``) and square size every image is converted to."""

    mode: str
    size: int

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def decoded_mb(self, count: int) -> float:
        """MiB of ``count`` images as float32 tensors."""
        return count * self.channels * self.size * self.size * 4 / 2**20


@dataclass(frozen=True)
class FolderTree:
    """A scanned folder: class names and the files of each split found on disk."""

    classes: tuple[str, ...]
    train: ImageFiles
    val: ImageFiles | None = None
    test: ImageFiles | None = None


def _visible_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def scan_folder(name: str, root: Path) -> FolderTree:
    """Find the classes and image files under ``root`` (see the module docstring).

    Raises:
        UsageError: no such folder, no class subfolders, a single class, a class folder without
            images, or a ``val/``/``test/`` class that ``train/`` lacks.
    """
    if not root.is_dir():
        raise UsageError(f"dataset {name!r}: folder {str(root)!r} does not exist")
    subdirs = _visible_dirs(root)
    if "train" not in subdirs:
        classes = _classes(name, root, subdirs)
        return FolderTree(classes, _class_files(name, root, classes, classes))
    extra = [d for d in subdirs if d not in SPLIT_FOLDERS]
    if extra:
        raise UsageError(f"dataset {name!r}: {str(root)!r} is split by train/, so its other "
                         f"subfolders must be val/ or test/; found {extra}")
    train = root / "train"
    classes = _classes(name, train, _visible_dirs(train))
    splits = {s: _class_files(name, root / s, _visible_dirs(root / s), classes)
              for s in ("val", "test") if s in subdirs}
    return FolderTree(classes, _class_files(name, train, classes, classes), **splits)


def _classes(name: str, folder: Path, subdirs: list[str]) -> tuple[str, ...]:
    if not subdirs:
        raise UsageError(f"dataset {name!r}: folder {str(folder)!r} has no class subfolders; "
                         "expected one subfolder of images per class")
    if len(subdirs) == 1:
        raise UsageError(f"dataset {name!r}: folder {str(folder)!r} has a single class "
                         f"{subdirs[0]!r}; classification needs at least 2 class subfolders")
    return tuple(subdirs)


def _class_files(name: str, folder: Path, present: list[str] | tuple[str, ...],
                 classes: tuple[str, ...]) -> ImageFiles:
    """Image files of the class folders ``present`` under ``folder``, labelled by ``classes``."""
    paths: list[str] = []
    labels: list[int] = []
    for cls in present:
        if cls not in classes:
            raise UsageError(f"dataset {name!r}: class folder {str(folder / cls)!r} is not a "
                             f"class of the training folder; classes: {', '.join(classes)}")
        found = _image_paths(folder / cls)
        if not found:
            raise UsageError(f"dataset {name!r}: class folder {str(folder / cls)!r} has no image "
                             f"files ({', '.join(IMAGE_EXTENSIONS)})")
        paths += found
        labels += [classes.index(cls)] * len(found)
    if not paths:
        raise UsageError(f"dataset {name!r}: folder {str(folder)!r} has no class subfolders")
    return ImageFiles(tuple(paths), np.asarray(labels, dtype=np.int64))


def _image_paths(folder: Path) -> list[str]:
    out: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.join(top, f) for f in sorted(files)
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS
                and os.path.isfile(os.path.join(top, f))]  # never a pipe or device: it blocks
    return out


def _open_error(name: str, path: str, exc: BaseException) -> UsageError:
    first = (str(exc).splitlines() or [""])[0] or type(exc).__name__
    return UsageError(f"dataset {name!r}: cannot read image {path!r}: {first}")


def _read_errors() -> tuple[type[BaseException], ...]:
    from PIL import Image

    return (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def probe_format(name: str, files: ImageFiles, image_size: int | None) -> ImageFormat:
    """The mode and size for ``files``: headers of up to 32 evenly spaced files are read."""
    from PIL import Image

    step = max(1, len(files) // _PROBES)
    probes = files.paths[::step][:_PROBES]
    modes, first_size = set(), (0, 0)
    for i, path in enumerate(probes):
        try:
            with Image.open(path) as img:
                modes.add(img.mode)
                first_size = img.size if i == 0 else first_size
        except _read_errors() as exc:
            raise _open_error(name, path, exc) from None
    size = image_size if image_size is not None else min(first_size)
    return ImageFormat("L" if modes <= _GRAY_MODES else "RGB", int(size))


def read_image(name: str, path: str, fmt: ImageFormat) -> np.ndarray:
    """One image as uint8 ``(C, S, S)``: converted, resized on its shorter side, centre-cropped."""
    from PIL import Image, ImageOps

    side = (fmt.size, fmt.size)
    try:
        with Image.open(path) as img:
            img.draft(fmt.mode, side)  # JPEG only: decode at a reduced scale when it can
            img = img.convert(fmt.mode)
        if img.size != side:
            img = ImageOps.fit(img, side, method=Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
    except _read_errors() as exc:
        raise _open_error(name, path, exc) from None
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_files(name: str, files: ImageFiles, fmt: ImageFormat) -> np.ndarray:
    """All of ``files`` as uint8 ``(N, C, S, S)`` (Pillow decodes in a few threads)."""
    out = np.empty((len(files), fmt.channels, fmt.size, fmt.size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = read_image(name, files.paths[i], fmt)

    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))
    try:
        for _ in pool.map(one, range(len(files))):
            pass
    finally:  # the first unreadable file stops the rest
        pool.shutdown(cancel_futures=True)
    return out


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (float64) of ``(N, C, H, W)`` images; a constant
    channel gets a standard deviation of 1."""
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    return mean, np.where(std > 1e-12, std, 1.0)
