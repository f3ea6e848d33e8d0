"""Torch building blocks for MobileNet-style networks, driven by a block table.

A network is a stem convolution, a sequence of blocks, a 1x1 head convolution, global pooling and a
linear classifier. Each block (one row of the table, :class:`BlockSpec`) repeats one layer type:

- ``conv``: regular KxK convolution, BN, activation (MnasNet's "ConvOp: regular conv").
- ``sepconv``: depthwise KxK + BN + activation, optional squeeze-and-excitation, pointwise 1x1 + BN
  (the depthwise separable convolution of MobileNet; MobileNetV2's expansion-1 block).
- ``mbconv``: 1x1 expansion + BN + act, depthwise KxK + BN + act, optional SE, 1x1 linear projection
  + BN (MobileNetV2's inverted bottleneck, arXiv:1801.04381; with SE as in MnasNet,
  arXiv:1807.11626).

The first layer of a block has the block's stride and output channels; the others stride 1. With
``skip=True`` a layer adds its input (identity residual) wherever input and output shapes match.
Squeeze-and-excitation reduces to ``max(1, int(in_channels * se_ratio))`` channels, as in the
reference MnasNet implementation (ratio of the block's input filters).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = [
    "BlockSpec",
    "Layer",
    "MobileNetwork",
    "block_string",
    "parse_block_string",
    "OPS",
    "ACTIVATIONS",
]

OPS = ("conv", "sepconv", "mbconv")
ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU}


@dataclass(frozen=True)
class BlockSpec:
    """One row of a block table.

    Attributes:
        op: ``conv``, ``sepconv`` or ``mbconv``.
        kernel: depthwise (or regular) kernel size.
        expansion: MBConv expansion ratio (1 for ``conv``/``sepconv``).
        se_ratio: squeeze-and-excitation ratio (0 disables SE).
        skip: identity residual where shapes allow.
        channels: output channels of every layer of the block.
        repeats: number of layers.
        stride: stride of the first layer.
    """

    op: str
    kernel: int
    expansion: int
    se_ratio: float
    skip: bool
    channels: int
    repeats: int
    stride: int

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"block op {self.op!r}: allowed values: {', '.join(OPS)}")
        for name in ("kernel", "expansion", "channels", "repeats", "stride"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"block {name}={getattr(self, name)!r}: must be >= 1")
        if not 0 <= self.se_ratio <= 1:
            raise ValueError(f"block se_ratio={self.se_ratio!r}: must be in [0, 1]")

    def to_dict(self) -> dict:
        """Plain data (JSON-ready)."""
        return asdict(self)


def block_string(spec: BlockSpec) -> str:
    """timm-style block string, e.g. ``ir_r2_k3_s2_e6_c24_se0.25`` (``ds`` sepconv, ``cn`` conv)."""
    prefix = {"conv": "cn", "sepconv": "ds", "mbconv": "ir"}[spec.op]
    parts = [prefix, f"r{spec.repeats}", f"k{spec.kernel}", f"s{spec.stride}"]
    if spec.op == "mbconv":
        parts.append(f"e{spec.expansion}")
    parts.append(f"c{spec.channels}")
    if spec.se_ratio > 0:
        parts.append(f"se{spec.se_ratio:g}")
    if not spec.skip:
        parts.append("noskip")
    return "_".join(parts)


_PREFIX_OP = {"cn": "conv", "ds": "sepconv", "ir": "mbconv"}


def parse_block_string(text: str) -> BlockSpec:
    """Inverse of :func:`block_string` (``ir_r2_k3_s2_e6_c24_se0.25``; ``noskip`` disables skip)."""
    parts = text.strip().split("_")
    if not parts or parts[0] not in _PREFIX_OP:
        raise ValueError(f"block string {text!r}: must start with one of {', '.join(_PREFIX_OP)}")
    fields: dict = {"op": _PREFIX_OP[parts[0]], "expansion": 1, "se_ratio": 0.0, "skip": True}
    names = {"r": "repeats", "k": "kernel", "s": "stride", "e": "expansion", "c": "channels"}
    for part in parts[1:]:
        if part == "noskip":
            fields["skip"] = False
        elif part.startswith("se"):
            fields["se_ratio"] = float(part[2:])
        elif part[:1] in names and part[1:].isdigit():
            fields[names[part[0]]] = int(part[1:])
        else:
            raise ValueError(f"block string {text!r}: cannot parse {part!r}")
    missing = [n for n in ("repeats", "kernel", "stride", "channels") if n not in fields]
    if missing:
        raise ValueError(f"block string {text!r}: missing {', '.join(missing)}")
    return BlockSpec(**fields)


def conv_bn(
    cin: int,
    cout: int,
    kernel: int,
    stride: int,
    *,
    groups: int = 1,
    act: type[nn.Module] | None = None,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BN -> optional activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., arXiv:1709.01507): pool, reduce, ReLU, expand, sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(self.act(self.reduce(s))))


class Layer(nn.Module):
    """One layer of a block (see the module docstring for the op types)."""

    def __init__(
        self,
        op: str,
        cin: int,
        cout: int,
        *,
        kernel: int,
        stride: int,
        expansion: int,
        se_ratio: float,
        skip: bool,
        act: type[nn.Module],
    ) -> None:
        super().__init__()
        self.residual = skip and stride == 1 and cin == cout
        se = int(cin * se_ratio) if se_ratio > 0 else 0
        se = max(1, se) if se_ratio > 0 else 0
        body: list[nn.Module] = []
        if op == "conv":
            body.append(conv_bn(cin, cout, kernel, stride, act=act))
            if se:
                body.append(SqueezeExcite(cout, se))
        elif op == "sepconv" or (op == "mbconv" and expansion == 1):
            body.append(conv_bn(cin, cin, kernel, stride, groups=cin, act=act))
            if se:
                body.append(SqueezeExcite(cin, se))
            body.append(conv_bn(cin, cout, 1, 1))
        elif op == "mbconv":
            mid = cin * expansion
            body.append(conv_bn(cin, mid, 1, 1, act=act))
            body.append(conv_bn(mid, mid, kernel, stride, groups=mid, act=act))
            if se:
                body.append(SqueezeExcite(mid, se))
            body.append(conv_bn(mid, cout, 1, 1))
        else:
            raise ValueError(f"unknown op {op!r}; allowed: {', '.join(OPS)}")
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def block_layers(spec: BlockSpec, cin: int, act: type[nn.Module]) -> list[Layer]:
    """The layers of one block starting from ``cin`` input channels."""
    layers = []
    for i in range(spec.repeats):
        layers.append(
            Layer(
                spec.op,
                cin if i == 0 else spec.channels,
                spec.channels,
                kernel=spec.kernel,
                stride=spec.stride if i == 0 else 1,
                expansion=spec.expansion,
                se_ratio=spec.se_ratio,
                skip=spec.skip,
                act=act,
            )
        )
    return layers


class MobileNetwork(nn.Module):
    """Stem conv, blocks from a table, 1x1 head conv, global pooling, dropout, linear classifier."""

    def __init__(
        self,
        table: list[BlockSpec],
        *,
        in_channels: int,
        num_classes: int,
        stem_channels: int,
        stem_stride: int,
        head_channels: int,
        activation: str,
        dropout: float,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.stem = conv_bn(in_channels, stem_channels, 3, stem_stride, act=act)
        layers: list[nn.Module] = []
        cin = stem_channels
        for spec in table:
            layers.extend(block_layers(spec, cin, act))
            cin = spec.channels
        self.blocks = nn.Sequential(*layers)
        self.head = conv_bn(cin, head_channels, 1, 1, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_channels, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(self.pool(x), 1)))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
