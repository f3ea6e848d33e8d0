"""Torch building blocks for MobileNet-style networks, driven by a block table.

A network is a stem convolution, a sequence of blocks, a 1x1 head convolution, global pooling and a
linear classifier. Each block (one row of the table, :class:`BlockSpec`) repeats one layer type,
each its own module class:

- ``conv`` -> :class:`ConvBnAct`: regular KxK convolution, BN, activation (MnasNet's "ConvOp:
  regular conv", arXiv:1807.11626).
- ``sepconv`` -> :class:`DepthwiseSeparable`: depthwise KxK + BN + activation, optional
  squeeze-and-excitation, pointwise 1x1 + BN (MobileNetV1's depthwise separable convolution,
  arXiv:1704.04861, with MobileNetV2's linear pointwise output).
- ``mbconv`` -> :class:`InvertedResidual`: 1x1 expansion + BN + act, depthwise KxK + BN + act,
  optional SE, 1x1 linear projection + BN (MobileNetV2's inverted bottleneck, arXiv:1801.04381;
  with SE as in MnasNet, arXiv:1807.11626). Expansion 1 has no expansion convolution.

:func:`walk_table` is the one walker of a table's layer geometry (channels, kernel, stride, input
resolution of every layer); :class:`MobileNetwork` builds from it and the latency units
(:mod:`search_spaces.mnasnet_units`) are cut along it. The first layer of a block has the block's
stride and output channels; the others stride 1. With ``skip=True`` a layer adds its input
(identity residual) wherever input and output shapes match. Squeeze-and-excitation reduces to
``max(1, int(in_channels * se_ratio))`` channels, as in the reference MnasNet implementation (ratio
of the layer's input filters).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = [
    "BlockSpec",
    "LayerGeometry",
    "walk_table",
    "conv_out_size",
    "ConvBnAct",
    "DepthwiseSeparable",
    "InvertedResidual",
    "LAYER_TYPES",
    "build_layer",
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


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Output height/width of a 'same'-padded (``kernel // 2``) convolution."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class LayerGeometry:
    """Geometry of one layer of a block table, as :func:`walk_table` yields it.

    Attributes:
        block: index of the block in the table (0-based; the space's labels ``b{block + 1}``).
        index: index of the layer in its block (0 is the block's first, strided layer).
        op, kernel, expansion, se_ratio, skip: the block's (:class:`BlockSpec`).
        cin, cout: input and output channels.
        stride: ``spec.stride`` for the first layer of a block, 1 for the others.
        size: input height/width, or None when the walk was given no input size.
    """

    block: int
    index: int
    op: str
    cin: int
    cout: int
    kernel: int
    stride: int
    expansion: int
    se_ratio: float
    skip: bool
    size: int | None = None

    @property
    def residual(self) -> bool:
        """Whether the layer adds its input: skip on, stride 1, equal channels."""
        return self.skip and self.stride == 1 and self.cin == self.cout

    @property
    def out_size(self) -> int | None:
        """Output height/width (None when :attr:`size` is None)."""
        return None if self.size is None else conv_out_size(self.size, self.kernel, self.stride)


def walk_table(
    table: Sequence[BlockSpec], in_channels: int, size: int | None = None
) -> Iterator[LayerGeometry]:
    """Every layer of ``table`` in order, from ``in_channels`` channels at ``size`` pixels."""
    cin = in_channels
    for b, spec in enumerate(table):
        for i in range(spec.repeats):
            layer = LayerGeometry(
                block=b, index=i, op=spec.op, cin=cin, cout=spec.channels, kernel=spec.kernel,
                stride=spec.stride if i == 0 else 1, expansion=spec.expansion,
                se_ratio=spec.se_ratio, skip=spec.skip, size=size,
            )
            yield layer
            cin, size = layer.cout, layer.out_size


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


def _se(channels: int, cin: int, se_ratio: float) -> list[nn.Module]:
    """An SE module on ``channels`` reducing to ``max(1, int(cin * se_ratio))``; none at ratio 0."""
    return [SqueezeExcite(channels, max(1, int(cin * se_ratio)))] if se_ratio > 0 else []


class _Layer(nn.Module):
    """A layer of ``body`` modules, plus the identity residual where ``residual`` is set."""

    def __init__(self, body: list[nn.Module], residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(*body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def _depthwise_pointwise(
    cin: int, mid: int, cout: int, kernel: int, stride: int, se_ratio: float, act: type[nn.Module]
) -> list[nn.Module]:
    """Depthwise KxK + BN + act on ``mid`` channels, optional SE, linear 1x1 + BN to ``cout``."""
    return [
        conv_bn(mid, mid, kernel, stride, groups=mid, act=act),
        *_se(mid, cin, se_ratio),
        conv_bn(mid, cout, 1, 1),
    ]


class ConvBnAct(_Layer):
    """Regular KxK convolution + BN + activation, optional SE on its output (MnasNet's regular
    conv op, arXiv:1807.11626 section 4)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, *,
        se_ratio: float = 0.0, skip: bool = False, act: type[nn.Module] = nn.ReLU,
    ) -> None:
        body = [conv_bn(cin, cout, kernel, stride, act=act), *_se(cout, cin, se_ratio)]
        super().__init__(body, skip and stride == 1 and cin == cout)


class DepthwiseSeparable(_Layer):
    """Depthwise separable convolution (MobileNetV1, Howard et al., arXiv:1704.04861): depthwise
    KxK + BN + act, optional SE, pointwise 1x1 + BN without activation (MobileNetV2's linear
    output, arXiv:1801.04381)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, *,
        se_ratio: float = 0.0, skip: bool = False, act: type[nn.Module] = nn.ReLU,
    ) -> None:
        body = _depthwise_pointwise(cin, cin, cout, kernel, stride, se_ratio, act)
        super().__init__(body, skip and stride == 1 and cin == cout)


class InvertedResidual(_Layer):
    """Inverted residual with linear bottleneck (MobileNetV2, Sandler et al., arXiv:1801.04381):
    1x1 expansion to ``cin * expansion`` + BN + act (omitted at expansion 1), depthwise KxK + BN +
    act, optional squeeze-and-excitation as in MnasNet (Tan et al., arXiv:1807.11626), linear 1x1
    projection + BN."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, *, expansion: int = 6,
        se_ratio: float = 0.0, skip: bool = True, act: type[nn.Module] = nn.ReLU,
    ) -> None:
        mid = cin * expansion
        expand = [conv_bn(cin, mid, 1, 1, act=act)] if expansion > 1 else []
        body = expand + _depthwise_pointwise(cin, mid, cout, kernel, stride, se_ratio, act)
        super().__init__(body, skip and stride == 1 and cin == cout)


LAYER_TYPES: dict[str, type[_Layer]] = {
    "conv": ConvBnAct,
    "sepconv": DepthwiseSeparable,
    "mbconv": InvertedResidual,
}


def build_layer(layer: LayerGeometry, act: type[nn.Module]) -> nn.Module:
    """The module of one layer of a walked table (:func:`walk_table`)."""
    if layer.op not in LAYER_TYPES:
        raise ValueError(f"unknown op {layer.op!r}; allowed: {', '.join(LAYER_TYPES)}")
    extra = {"expansion": layer.expansion} if layer.op == "mbconv" else {}
    return LAYER_TYPES[layer.op](
        layer.cin, layer.cout, layer.kernel, layer.stride,
        se_ratio=layer.se_ratio, skip=layer.skip, act=act, **extra,
    )


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
        layers = list(walk_table(table, stem_channels))
        self.blocks = nn.Sequential(*[build_layer(layer, act) for layer in layers])
        cin = layers[-1].cout if layers else stem_channels
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
