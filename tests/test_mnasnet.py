"""MnasNet factorized hierarchical space: decisions, block tables, presets, strides, units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nas
from nas.cost import count_cost
from nas.errors import UsageError
from search_spaces.blocks import (
    ACTIVATIONS,
    BlockSpec,
    ConvBnAct,
    DepthwiseSeparable,
    InvertedResidual,
    LayerGeometry,
    SqueezeExcite,
    block_string,
    build_layer,
    parse_block_string,
    walk_table,
)
from search_spaces.mnasnet import round_channels

# Published parameter counts of the reference implementations at 224x224, 1000 classes:
# torchvision mobilenet_v2 and mnasnet1_0 (= MnasNet-B1), timm mnasnet_a1.
PUBLISHED_PARAMS = {"mobilenet_v2": 3_504_872, "mnasnet_b1": 4_383_312, "mnasnet_a1": 3_887_038}
# Published multiply-adds: MobileNetV2 paper 300M, MnasNet paper (table 1) A1 312M,
# torchvision's mnasnet1_0 card 0.31 GFLOPS (MACs).
PUBLISHED_MACS = {"mobilenet_v2": 300e6, "mnasnet_a1": 312e6, "mnasnet_b1": 0.31e9}


@pytest.fixture(scope="module")
def imagenet():
    return nas.get_space("mnasnet", input_size=224, num_classes=1000)


@pytest.mark.parametrize("preset", sorted(PUBLISHED_PARAMS))
def test_presets_match_published_parameter_counts(imagenet, preset):
    model = imagenet.build_preset(preset)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[preset]


@pytest.mark.parametrize("preset", sorted(PUBLISHED_MACS))
def test_presets_match_published_macs(imagenet, preset):
    macs = count_cost(imagenet.build_preset(preset), (3, 224, 224)).macs
    assert macs == pytest.approx(PUBLISHED_MACS[preset], rel=0.015)


def test_presets_against_torchvision_when_installed(imagenet):
    tv = pytest.importorskip("torchvision.models")
    for preset, ref in [("mobilenet_v2", tv.mobilenet_v2), ("mnasnet_b1", tv.mnasnet1_0)]:
        ours = sum(p.numel() for p in imagenet.build_preset(preset).parameters())
        assert ours == sum(p.numel() for p in ref().parameters())


def test_decisions_per_block(imagenet):
    choices = imagenet.choices()
    assert len(choices) == 7 * 6
    assert choices["b3.op"].options == ("conv", "sepconv", "mbconv3", "mbconv6")
    assert choices["b3.kernel"].options == (3, 5)
    assert choices["b3.se"].options == (0.0, 0.25)
    assert choices["b3.skip"].options == ("none", "identity")
    assert choices["b2.filters"].options == (16, 24, 32)  # 24 x {0.75, 1, 1.25}
    assert choices["b1.filters"].options == (16, 24)  # 12 -> 16 duplicates 16
    assert choices["b4.layers"].options == (3, 4, 5)
    assert choices["b1.layers"].options == (1, 2)  # never 0 layers
    assert imagenet.size() == math.prod(len(c) for c in choices.values())


def test_round_channels():
    assert [round_channels(x) for x in (1, 11.9, 12, 18, 20, 30, 120)] == [
        8,
        8,
        16,
        16,
        24,
        32,
        120,
    ]


def _arch(space, **per_block):
    values = {}
    for i in range(1, 8):
        values.update(
            {f"b{i}.op": "mbconv6", f"b{i}.kernel": 3, f"b{i}.se": 0.0, f"b{i}.skip": "identity"}
        )
        values[f"b{i}.filters"] = space.choices()[f"b{i}.filters"].options[-1]
        values[f"b{i}.layers"] = space.choices()[f"b{i}.layers"].options[0]
        values.update({f"b{i}.{k}": v for k, v in per_block.items()})
    return space.validate(values)


def test_block_table_follows_decisions(imagenet):
    arch = _arch(imagenet, op="conv", kernel=5, se=0.25, skip="none")
    table = imagenet.block_table(arch)
    assert [s.stride for s in table] == [1, 2, 2, 2, 1, 2, 1]
    assert all(
        s.op == "conv" and s.kernel == 5 and s.se_ratio == 0.25 and not s.skip for s in table
    )
    assert [s.channels for s in table] == [24, 32, 40, 80, 120, 200, 400]
    model = imagenet.build(arch)
    convs = [
        m
        for m in model.blocks.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (5, 5)
    ]
    assert len(convs) == sum(s.repeats for s in table)
    assert not any(layer.residual for layer in model.blocks)


def test_mbconv_expansion_se_and_residuals(imagenet):
    arch = _arch(imagenet, op="mbconv3", se=0.25, skip="identity")
    model = imagenet.build(arch)
    layers = list(model.blocks)
    first, second = layers[1], layers[2]  # block 2: 2 layers at the smallest option (1 or 2)
    expand = first.body[0][0]
    assert expand.out_channels == expand.in_channels * 3
    se = next(m for m in first.modules() if isinstance(m, SqueezeExcite))
    assert se.reduce.out_channels == int(expand.in_channels * 0.25)
    # identity residual exactly where shapes allow
    for layer in layers:
        conv = [m for m in layer.modules() if isinstance(m, torch.nn.Conv2d)]
        same = conv[0].in_channels == conv[-1].out_channels and all(
            c.stride == (1, 1) for c in conv
        )
        assert layer.residual == same
    assert second.residual or imagenet.block_table(arch)[1].repeats == 1


@pytest.mark.parametrize(
    "size, stem_stride, strides, final",
    [
        (224, 2, [1, 2, 2, 2, 1, 2, 1], 7),
        (32, 1, [1, 1, 2, 2, 1, 2, 1], 4),
        (8, 1, [1, 1, 1, 1, 1, 2, 1], 4),
    ],
)
def test_small_inputs_get_fewer_stride2_stages(size, stem_stride, strides, final):
    space = nas.get_space("mnasnet", input_size=size, num_classes=10)
    arch = space.sample(np.random.default_rng(0))
    assert [s.stride for s in space.block_table(arch)] == strides
    model = space.build(arch).eval()
    assert model.stem[0].stride == (stem_stride, stem_stride)
    with torch.no_grad():
        feats = model.head(model.blocks(model.stem(torch.zeros(1, 3, size, size))))
    assert feats.shape[-1] == final


def test_preset_at_small_input_runs():
    space = nas.get_space("mnasnet", input_size=8, num_classes=10, in_channels=1)
    out = space.build_preset("mnasnet_a1").eval()(torch.zeros(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_block_strings_round_trip(imagenet):
    rng = np.random.default_rng(5)
    for _ in range(10):
        desc = imagenet.describe(imagenet.sample(rng))
        for row, text in zip(desc["block_table"], desc["block_strings"], strict=True):
            assert parse_block_string(text) == BlockSpec(**row)
    spec = BlockSpec("mbconv", 3, 6, 0.25, True, 24, 2, 2)
    assert block_string(spec) == "ir_r2_k3_s2_e6_c24_se0.25"
    with pytest.raises(ValueError, match="cannot parse 'x9'"):
        parse_block_string("ir_r2_k3_s2_x9_c24")
    with pytest.raises(ValueError, match="missing channels"):
        parse_block_string("ir_r2_k3_s2")


def test_latency_units_cover_the_network():
    space = nas.get_space("mnasnet", input_size=32, num_classes=10)
    arch = space.sample(np.random.default_rng(2))
    units = space.latency_units(arch)
    whole = count_cost(space.build(arch), space.input_shape())
    parts = [count_cost(u.build(), u.input_shape) for u in units]
    assert sum(p.macs for p in parts) == whole.macs
    assert sum(p.params for p in parts) == whole.params
    by_key = {}
    for unit, part in zip(units, parts, strict=True):
        assert by_key.setdefault(unit.key, part.params) == part.params


def test_custom_skeleton_and_width():
    space = nas.get_space(
        "mnasnet",
        input_size=16,
        num_classes=4,
        width_mult=0.5,
        skeleton=[[16, 1, 1], [24, 2, 2], [40, 2, 2]],
        head_channels=64,
    )
    assert len(space.choices()) == 18
    assert space.choices()["b2.filters"].options == (8, 16)
    out = space.build(space.sample(np.random.default_rng(0))).eval()(torch.zeros(1, 3, 16, 16))
    assert out.shape == (1, 4)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"skeleton": "resnet"}, "skeleton='resnet': allowed names: mobilenet_v2"),
        (
            {"skeleton": [[16, 1]]},
            r"skeleton\[0\]=\[16, 1\]: expected \[channels, repeats, stride\]",
        ),
        ({"skeleton": [[16, 1, 3]]}, r"skeleton\[0\].stride=3: allowed values: 1, 2"),
        ({"skeleton": [[0, 1, 1]]}, r"skeleton\[0\].channels=0"),
        ({"activation": "gelu"}, "activation='gelu': allowed values: relu, relu6, silu"),
        ({"dropout": 1.5}, r"dropout=1.5: must be in \[0, 1\)"),
        ({"width_mult": 0}, r"width_mult=0: must be in \(0, 8\]"),
        ({"input_size": 0}, "input_size=0: must be an integer >= 1"),
        ({"num_classes": "ten"}, "num_classes='ten'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(UsageError, match=match):
        nas.get_space("mnasnet", **options)


def test_layer_rejects_unknown_op():
    layer = LayerGeometry(0, 0, "pool", 8, 8, kernel=3, stride=1, expansion=1, se_ratio=0,
                          skip=False)
    with pytest.raises(ValueError, match="unknown op 'pool'"):
        build_layer(layer, torch.nn.ReLU)


def test_walker_is_the_geometry_the_network_runs():
    space = nas.get_space("mnasnet", input_size=32, num_classes=10)
    arch = space.sample(np.random.default_rng(4))
    table = space.block_table(arch)
    model = space.build(arch).eval()
    walked = list(walk_table(table, model.stem[0].out_channels, 32 // model.stem[0].stride[0]))
    assert [(g.block, g.index) for g in walked] == [
        (b, i) for b, spec in enumerate(table) for i in range(spec.repeats)
    ]
    seen = []
    hooks = [m.register_forward_hook(lambda m, x, y: seen.append((x[0].shape, y.shape)))
             for m in model.blocks]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    kinds = {"conv": ConvBnAct, "sepconv": DepthwiseSeparable, "mbconv": InvertedResidual}
    for g, module, (x, y) in zip(walked, model.blocks, seen, strict=True):
        assert type(module) is kinds[g.op] and module.residual == g.residual
        assert tuple(x[1:]) == (g.cin, g.size, g.size)
        assert tuple(y[1:]) == (g.cout, g.out_size, g.out_size)


def test_one_class_per_block_type():
    def convs(module):
        return [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.groups)
                for c in module.modules() if isinstance(c, torch.nn.Conv2d)]

    relu = ACTIVATIONS["relu"]
    assert convs(ConvBnAct(16, 24, 3, 2, act=relu)) == [(16, 24, 3, 2, 1)]
    assert convs(DepthwiseSeparable(16, 24, 5, 1, act=relu)) == [
        (16, 16, 5, 1, 16), (16, 24, 1, 1, 1)]
    assert convs(InvertedResidual(16, 16, 3, 1, expansion=6, se_ratio=0.25, act=relu)) == [
        (16, 96, 1, 1, 1), (96, 96, 3, 1, 96), (96, 4, 1, 1, 1), (4, 96, 1, 1, 1),
        (96, 16, 1, 1, 1)]  # SE reduces to int(16 * 0.25) input filters
    # expansion 1: no expansion conv, the same layers as a depthwise separable one
    assert convs(InvertedResidual(16, 24, 3, 2, expansion=1, act=relu)) == convs(
        DepthwiseSeparable(16, 24, 3, 2, act=relu))
    assert InvertedResidual(16, 16, 3, 1, act=relu).residual
    assert not InvertedResidual(16, 16, 3, 1, skip=False, act=relu).residual
    assert not DepthwiseSeparable(16, 16, 3, 2, skip=True, act=relu).residual


def test_latency_unit_keys_are_stable():
    """Saved lookup tables are keyed by these strings: the walker must not change them."""
    space = nas.get_space("mnasnet", input_size=32, num_classes=10)
    arch = _arch(space, op="mbconv3", se=0.25, skip="identity")
    keys = [u.key for u in space.latency_units(arch)]
    assert keys[:5] == [
        "stem:3x32:c32:s1:relu",
        "layer:mbconv:k3:e3:se0.25:r0:32x32:c24:s1:relu",
        "layer:mbconv:k3:e3:se0.25:r0:24x32:c32:s1:relu",
        "layer:mbconv:k3:e3:se0.25:r0:32x32:c40:s2:relu",
        "layer:mbconv:k3:e3:se0.25:r1:40x16:c40:s1:relu",
    ]
    assert keys[-1] == "head:400x4:c1280:n10:relu"
