"""Torch modules of the NAS-Bench-201 macro network (arXiv:2001.00326, section 2 and figure 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["NB201Network", "Cell", "ReductionBlock", "make_op", "stage_layers"]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BatchNorm, the benchmark's convolution unit."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class Zero(nn.Module):
    """The ``none`` operation: the edge carries nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, channels: int) -> nn.Module:
    """One cell operation at ``channels`` channels and stride 1."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NAS-Bench-201 op {name!r}")


class Cell(nn.Module):
    """Node j = sum over i < j of op(j, i)(node i); the output is node 3."""

    def __init__(self, ops: dict[tuple[int, int], str], channels: int) -> None:
        super().__init__()
        self.edges = sorted(ops)
        self.ops = nn.ModuleDict(
            {f"{j}_{i}": make_op(ops[(j, i)], channels) for j, i in self.edges}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.ops[f"{j}_{i}"](nodes[i]) for i in range(j)))
        return nodes[3]


class ReductionBlock(nn.Module):
    """Residual reduction: two 3x3 ReLU-Conv-BN (the first strided), avg-pool + 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def stage_layers(make_cell: Callable[[int], nn.Module], channels: int, cells_per_stage: int
                 ) -> tuple[list[nn.Module], int]:
    """``(layers, last width)``: three stages of ``cells_per_stage`` cells (``make_cell(width)``)
    at ``channels``, twice and four times as many, joined by reduction blocks."""
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage > 0:
            layers.append(ReductionBlock(c, c * 2))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells_per_stage))
    return layers, c


class NB201Network(nn.Module):
    """Stem, three stages of cells joined by reduction blocks, BN-ReLU, pooling, linear head."""

    def __init__(
        self,
        cell_ops: dict[tuple[int, int], str],
        *,
        num_classes: int,
        input_size: int,
        in_channels: int,
        channels: int,
        cells_per_stage: int,
    ) -> None:
        super().__init__()
        del input_size  # the network is fully convolutional up to global pooling
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers, c = stage_layers(lambda width: Cell(cell_ops, width), channels, cells_per_stage)
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
