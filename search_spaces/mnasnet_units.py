"""Split a block-table network into independently timeable units (for latency lookup tables).

Units: the stem, every layer of every block, and the head (1x1 conv, pooling, classifier). A unit's
key holds everything that determines its latency (type, channels, kernel, stride, SE, residual and
input resolution), so equal keys can share one measurement.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from nas.space import LatencyUnit
from search_spaces.blocks import ACTIVATIONS, BlockSpec, Layer, conv_bn

__all__ = ["network_units"]


def _out_size(size: int, stride: int, kernel: int = 3) -> int:
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


def _head(cin: int, head_channels: int, num_classes: int, act: type[nn.Module]) -> nn.Module:
    return nn.Sequential(
        conv_bn(cin, head_channels, 1, 1, act=act),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(head_channels, num_classes),
    )


def network_units(
    table: list[BlockSpec],
    *,
    stem_stride: int,
    input_size: int,
    activation: str,
    in_channels: int,
    num_classes: int,
    stem_channels: int,
    head_channels: int,
    dropout: float,
) -> list[LatencyUnit]:
    """Units of the network that ``MobileNetwork`` builds from ``table``."""
    del dropout  # identity at inference
    act = ACTIVATIONS[activation]
    size = input_size
    units = [
        LatencyUnit(
            key=f"stem:{in_channels}x{size}:c{stem_channels}:s{stem_stride}:{activation}",
            input_shape=(in_channels, size, size),
            build=partial(conv_bn, in_channels, stem_channels, 3, stem_stride, act=act),
        )
    ]
    size = _out_size(size, stem_stride)
    cin = stem_channels
    for spec in table:
        for i in range(spec.repeats):
            stride = spec.stride if i == 0 else 1
            layer_in = cin if i == 0 else spec.channels
            residual = spec.skip and stride == 1 and layer_in == spec.channels
            key = (
                f"layer:{spec.op}:k{spec.kernel}:e{spec.expansion}:se{spec.se_ratio:g}:"
                f"r{int(residual)}:{layer_in}x{size}:c{spec.channels}:s{stride}:{activation}"
            )
            units.append(
                LatencyUnit(
                    key=key,
                    input_shape=(layer_in, size, size),
                    build=partial(
                        Layer,
                        spec.op,
                        layer_in,
                        spec.channels,
                        kernel=spec.kernel,
                        stride=stride,
                        expansion=spec.expansion,
                        se_ratio=spec.se_ratio,
                        skip=spec.skip,
                        act=act,
                    ),
                )
            )
            size = _out_size(size, stride, spec.kernel)
        cin = spec.channels
    units.append(
        LatencyUnit(
            key=f"head:{cin}x{size}:c{head_channels}:n{num_classes}:{activation}",
            input_shape=(cin, size, size),
            build=partial(_head, cin, head_channels, num_classes, act),
        )
    )
    return units
