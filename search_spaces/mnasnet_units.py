"""Split a block-table network into independently timeable units (for latency lookup tables).

Units: the stem, every layer of every block, and the head (1x1 conv, pooling, classifier). The
layers are those of :func:`search_spaces.blocks.walk_table`, the walker :class:`MobileNetwork` is
built from, and each is built by the same :func:`search_spaces.blocks.build_layer`. A unit's key
holds everything that determines its latency (type, channels, kernel, stride, SE, residual and
input resolution), so equal keys can share one measurement.
"""

from __future__ import annotations

from functools import partial

from torch import nn

from nas.space import LatencyUnit
from search_spaces.blocks import (
    ACTIVATIONS,
    BlockSpec,
    LayerGeometry,
    build_layer,
    conv_bn,
    conv_out_size,
    walk_table,
)

__all__ = ["network_units", "layer_key"]


def _head(cin: int, head_channels: int, num_classes: int, act: type[nn.Module]) -> nn.Module:
    return nn.Sequential(
        conv_bn(cin, head_channels, 1, 1, act=act),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(head_channels, num_classes),
    )


def layer_key(layer: LayerGeometry, activation: str) -> str:
    """The latency-unit key of one walked layer (everything its latency depends on)."""
    return (
        f"layer:{layer.op}:k{layer.kernel}:e{layer.expansion}:se{layer.se_ratio:g}:"
        f"r{int(layer.residual)}:{layer.cin}x{layer.size}:c{layer.cout}:s{layer.stride}:"
        f"{activation}"
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
    act, size = ACTIVATIONS[activation], input_size
    units = [
        LatencyUnit(
            key=f"stem:{in_channels}x{size}:c{stem_channels}:s{stem_stride}:{activation}",
            input_shape=(in_channels, size, size),
            build=partial(conv_bn, in_channels, stem_channels, 3, stem_stride, act=act),
        )
    ]
    cin, size = stem_channels, conv_out_size(size, 3, stem_stride)
    for layer in walk_table(table, cin, size):
        units.append(
            LatencyUnit(layer_key(layer, activation), (layer.cin, layer.size, layer.size),
                        partial(build_layer, layer, act))
        )
        cin, size = layer.cout, layer.out_size
    key = f"head:{cin}x{size}:c{head_channels}:n{num_classes}:{activation}"
    units.append(
        LatencyUnit(key, (cin, size, size), partial(_head, cin, head_channels, num_classes, act))
    )
    return units
