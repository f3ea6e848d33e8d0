"""Streaming an image folder that is too large to decode into memory.

:class:`StreamedImages` keeps only file paths and labels. Training batches come from a torch
``DataLoader`` whose workers (``num_workers``) decode, convert and resize each image with Pillow;
the batch is moved to the training device as uint8, normalised there and, for training only,
augmented (random crop with zero padding, horizontal flip). Validation batches stream the same
way, in file order and without augmentation. The per-channel mean and standard deviation come from
a seeded sample of at most 512 training images (all of them in a smaller folder, where they equal
the in-memory statistics).

Streaming and in-memory data meet the trainer through one seam, a *batch source*:
``data.batch_source(device)`` has ``num_train``, ``train_epoch(batch_size, generator)`` (full,
shuffled batches) and ``val_batches(batch_size)``, each yielding ``(x, y)`` on the device.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from nas.errors import UsageError
from nas.evaluation.images import (
    ImageFiles,
    ImageFormat,
    ImageOptions,
    channel_stats,
    decode_files,
    read_image,
)

__all__ = ["StreamedImages", "FileBatches", "streamed_images", "random_crop_flip"]

_STATS_SAMPLE = 512


class _FileImages(torch.utils.data.Dataset):
    """Decodes one file per item; an unreadable file becomes an error string, not an exception
    (the main process raises it as one line naming the file)."""

    def __init__(self, name: str, files: ImageFiles, fmt: ImageFormat) -> None:
        self.name, self.files, self.fmt = name, files, fmt

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int, str]:
        label = int(self.files.labels[i])
        try:
            return read_image(self.name, self.files.paths[i], self.fmt), label, ""
        except UsageError as exc:
            shape = (self.fmt.channels, self.fmt.size, self.fmt.size)
            return np.zeros(shape, dtype=np.uint8), label, str(exc)


def _collate(items: list[tuple[np.ndarray, int, str]]) -> tuple[torch.Tensor, torch.Tensor,
                                                                 list[str]]:
    x = torch.from_numpy(np.stack([a for a, _, _ in items]))
    y = torch.tensor([label for _, label, _ in items], dtype=torch.int64)
    return x, y, [err for _, _, err in items if err]


@dataclass(frozen=True)
class StreamedImages:
    """An image folder read batch by batch (same face as :class:`nas.evaluation.data.Dataset`:
    ``name``, ``num_classes``, ``input_shape``, ``mean``, ``std``, ``summary()``)."""

    name: str
    train: ImageFiles
    val: ImageFiles
    classes: tuple[str, ...]
    fmt: ImageFormat
    mean: tuple[float, ...]
    std: tuple[float, ...]
    num_workers: int = 2
    augment: bool = True
    test: ImageFiles | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one sample."""
        return (self.fmt.channels, self.fmt.size, self.fmt.size)

    def summary(self) -> dict[str, Any]:
        """Sizes and shapes, for logs and result records."""
        return {"name": self.name, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "train": len(self.train), "val": len(self.val),
                "test": None if self.test is None else len(self.test), "stream": True}

    def batch_source(self, device: torch.device) -> FileBatches:
        """Batches decoded by DataLoader workers, normalised on ``device``."""
        return FileBatches(self, device)


def streamed_images(name: str, parts: Mapping[str, ImageFiles], classes: tuple[str, ...],
                    fmt: ImageFormat, options: ImageOptions, seed: int) -> StreamedImages:
    """A :class:`StreamedImages` of the split ``parts`` (``train``, ``val``, optional ``test``);
    normalisation statistics from a seeded sample of the training files."""
    train = parts["train"]
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(len(train), size=min(len(train), _STATS_SAMPLE), replace=False))
    mean, std = channel_stats(decode_files(name, train.take(sample), fmt))
    return StreamedImages(name=name, train=train, val=parts["val"], classes=classes, fmt=fmt,
                          mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
                          num_workers=options.num_workers, augment=options.augment,
                          test=parts.get("test"))


class FileBatches:
    """The batch source of a :class:`StreamedImages` on one device."""

    def __init__(self, data: StreamedImages, device: torch.device) -> None:
        self.data, self.device = data, device
        self.num_train = len(data.train)
        self.mean = torch.tensor(data.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.pad = max(1, data.fmt.size // 8)

    def train_epoch(self, batch_size: int, generator: torch.Generator,
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``len(train) // batch_size`` shuffled batches, augmented when ``augment``."""
        # augmentation draws from its own generator, so the worker count cannot change them
        aug = torch.Generator().manual_seed(int(torch.randint(2**62, (), generator=generator)))
        loader = self._loader(self.data.train, batch_size, generator)
        for x, y in self._batches(loader):
            yield (random_crop_flip(x, self.pad, aug) if self.data.augment else x), y

    def val_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The validation files in order, not augmented."""
        return self._batches(self._loader(self.data.val, batch_size, None))

    def _loader(self, files: ImageFiles, batch_size: int,
                generator: torch.Generator | None) -> DataLoader:
        train = generator is not None
        return DataLoader(
            _FileImages(self.data.name, files, self.data.fmt), batch_size=batch_size,
            shuffle=train, drop_last=train, num_workers=self.data.num_workers,
            collate_fn=_collate, pin_memory=self.device.type == "cuda",
            # a private generator: the loader's seed draw never touches torch's global RNG
            generator=generator if train else torch.Generator().manual_seed(0))

    def _batches(self, loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y, errors in loader:
            if errors:
                raise UsageError(errors[0])
            x = x.to(self.device, non_blocking=True).float().sub_(self.mean).div_(self.std)
            yield x, y.to(self.device, non_blocking=True)


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` ``(B, C, H, W)`` zero-padded by ``pad``, randomly cropped back to
    ``H x W`` and flipped left-right with probability 1/2 (draws from ``generator``, on the CPU)."""
    b, _, h, w = x.shape
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    rows = dy[:, None] + torch.arange(h, device=dev)
    cols = dx[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    padded = F.pad(x, (pad, pad, pad, pad))
    picked = padded[torch.arange(b, device=dev)[:, None, None], :, rows[:, :, None],
                    cols[:, None, :]]  # (B, H, W, C)
    return picked.permute(0, 3, 1, 2).contiguous()
