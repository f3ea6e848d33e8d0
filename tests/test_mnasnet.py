"""MnasNet factorized hierarchical space: decisions, block tables, presets, strides, units."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nas
from nas.errors import UsageError
from nas.evaluation.cost import count_cost
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
from search_spaces.mnasnet import kept_reductions, round_channels

# Published parameter counts of the reference implementations at 224x224, 1000 classes:
# torchvision mobilenet_v2 and mnasnet1_0 (= MnasNet-B1), timm mnasnet_a1.
PUBLISHED_PARAMS = {"mobilenet_v2": 3_504_872, "mnasnet_b1": 4_383_312, "mnasnet_a1": 3_887_038}
# Published multiply-adds: MobileNetV2 paper 300M, MnasNet paper (table 1) A1 312M,
# torchvision's mnasnet1_0 card 0.31 GFLOPS (MACs).
PUBLISHED_MACS = {"mobilenet_v2": 300e6, "mnasnet_a1": 312e6, "mnasnet_b1": 0.31e9}
# MobileNetV2 checkpoints of the TF reference (tensorflow/models research/slim/nets/mobilenet
# README): (width multiplier, input size) -> millions of MACs, as printed (the count, cut to an
# integer). One network at every input size: strides and channel rounding as published.
TF_MOBILENET_V2_MMACS = {
    (1.0, 224): 300, (1.0, 192): 221, (1.0, 160): 154, (1.0, 128): 99, (1.0, 96): 56,
    (1.4, 224): 582, (0.75, 224): 209, (0.5, 224): 97, (0.35, 224): 59,
    (0.75, 96): 39, (0.5, 96): 18, (0.35, 128): 20,
}
# MACs as `nas cost` counts them (1000 classes) per preset, input size and strides mode;
# before the strides option, 112 px counted the 224 px MACs and 64 px the 128 px ones.
PINNED_MACS = {
    "mobilenet_v2": {224: 300_774_272, 160: 154_083_200, 112: 82_183_808, 64: 25_728_512,
                     32: 89_243_648, "published@32": 7_392_128},
    "mnasnet_a1": {224: 311_579_072, 160: 159_720_128, 112: 85_291_664, 64: 26_843_552,
                   32: 92_942_624, "published@32": 7_861_184},
}


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
    assert choices["b2.filters"].options == (24, 32)  # 24 x {0.75, 1, 1.25}: 18 -> 24 (not 16)
    assert choices["b1.filters"].options == (16, 24)  # 12 -> 16 duplicates 16
    assert choices["b4.layers"].options == (3, 4, 5)
    assert choices["b1.layers"].options == (1, 2)  # never 0 layers
    assert imagenet.size() == math.prod(len(c) for c in choices.values())


def test_round_channels():
    # make_divisible of the reference code: nearest multiple of 8, at least 8, never > 10% below
    assert [round_channels(x) for x in (1, 8, 11.9, 12, 18, 20, 30, 120)] == [
        8, 8, 16, 16, 24, 24, 32, 120,
    ]
    known = {
        24 * 0.75: 24,  # 16 would be 11% below 18
        32 * 0.75: 24,
        16 * 0.5: 8,
        1280 * 0.35: 448,
        16 * 0.35: 8,  # 5.6 -> at least 8
        32 * 0.35: 16,  # 11.2: 8 would be 29% below
        40 * 0.75: 32,  # 30: 32 is nearest
        112 * 0.75: 88,
        80 * 0.75: 64,  # 60: halves round up
        24 * 1.25: 32,
        320 * 1.4: 448,
    }
    assert {v: round_channels(v) for v in known} == known
    assert round_channels(18, divisor=4) == 20
    assert all(round_channels(v) >= 0.9 * v for v in np.linspace(1, 400, 2000))


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
    "size, mode, stem_stride, strides, final",
    [
        (224, "auto", 2, [1, 2, 2, 2, 1, 2, 1], 7),
        (112, "auto", 2, [1, 2, 2, 2, 1, 2, 1], 4),
        (64, "auto", 2, [1, 2, 2, 2, 1, 2, 1], 2),
        (63, "auto", 1, [1, 1, 2, 2, 1, 2, 1], 8),  # below 64: the small-input rule
        (32, "auto", 1, [1, 1, 2, 2, 1, 2, 1], 4),
        (8, "auto", 1, [1, 1, 1, 1, 1, 2, 1], 4),
        (112, "published", 2, [1, 2, 2, 2, 1, 2, 1], 4),
        (32, "published", 2, [1, 2, 2, 2, 1, 2, 1], 1),
    ],
)
def test_stride2_stages_per_input_size(size, mode, stem_stride, strides, final):
    space = nas.get_space("mnasnet", input_size=size, num_classes=10, strides=mode)
    arch = space.sample(np.random.default_rng(0))
    assert [s.stride for s in space.block_table(arch)] == strides
    table, _, preset_stem = space.preset_table("mnasnet_a1")
    assert (preset_stem, [s.stride for s in table]) == (stem_stride, strides)
    model = space.build(arch).eval()
    assert model.stem[0].stride == (stem_stride, stem_stride)
    with torch.no_grad():
        feats = model.head(model.blocks(model.stem(torch.zeros(1, 3, size, size))))
    assert feats.shape[-1] == final
    assert space.describe(arch)["stem"]["stride"] == stem_stride


def test_kept_reductions():
    assert [kept_reductions(s, 5) for s in (1, 4, 7, 8, 16, 32, 63, 64, 112, 224)] == [
        0, 0, 0, 1, 2, 3, 3, 5, 5, 5]
    assert [kept_reductions(s, 5, "published") for s in (8, 64, 224)] == [5, 5, 5]
    assert kept_reductions(64, 8) == 6  # auto never strides a 1x1 map: 2**6 = 64
    assert kept_reductions(1024, 8) == 8


def test_many_stride2_stages_at_64px():
    skeleton = [[16, 1, 2]] * 7  # 8 stride-2 stages with the stem
    auto = nas.get_space("mnasnet", input_size=64, num_classes=10, skeleton=skeleton)
    arch = auto.sample(np.random.default_rng(0))
    assert auto.describe(arch)["stem"]["stride"] == 1  # the stem and b1 give up stride 2
    assert [s.stride for s in auto.block_table(arch)] == [1, 2, 2, 2, 2, 2, 2]
    walked = list(walk_table(auto.block_table(arch), 32, 64))
    assert [g.size for g in walked if g.stride == 2] == [64, 32, 16, 8, 4, 2]
    with pytest.raises(UsageError, match=r"input_size=64 is too small for 8 stride-2 stages"):
        nas.get_space("mnasnet", input_size=64, skeleton=skeleton, strides="published")


@pytest.mark.parametrize("preset", sorted(PINNED_MACS))
def test_macs_scale_with_input_size(preset):
    macs = {}
    for key in PINNED_MACS[preset]:
        mode, size = key.split("@") if isinstance(key, str) else ("auto", key)
        space = nas.get_space("mnasnet", input_size=int(size), num_classes=1000, strides=mode)
        macs[key] = count_cost(space.build_preset(preset), space.input_shape()).macs
        if mode == "auto" and int(size) >= 64:  # both modes build the same network there
            same = nas.get_space("mnasnet", input_size=int(size), strides="published")
            assert same.preset_table(preset) == space.preset_table(preset)
    assert macs == PINNED_MACS[preset]
    # the published network at half the resolution: a quarter of the MACs (a bit more: the
    # last stride-2 stage rounds 7/2 up to 4x4, and the classifier does not shrink)
    assert 0.25 < macs[112] / macs[224] < 0.28


@pytest.mark.parametrize("width, size", sorted(TF_MOBILENET_V2_MMACS))
def test_mobilenet_v2_macs_match_tf_reference(width, size):
    space = nas.get_space("mnasnet", input_size=size, num_classes=1000, width_mult=width)
    macs = count_cost(space.build_preset("mobilenet_v2"), space.input_shape()).macs
    assert macs // 10**6 == TF_MOBILENET_V2_MMACS[(width, size)]


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


@pytest.mark.parametrize("size", [32, 64])  # stem stride 1 and 2
def test_latency_units_cover_the_network(size):
    space = nas.get_space("mnasnet", input_size=size, num_classes=10)
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
    assert space.choices()["b2.filters"].options == (16,)  # 12 x {0.75, 1, 1.25}: 9, 12, 15 -> 16
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
        ({"dropout": 1.5}, "dropout=1.5: must be a finite number >= 0 and < 1"),
        ({"width_mult": 0}, "width_mult=0: must be a finite number > 0 and <= 8"),
        ({"input_size": 0}, "input_size=0: must be an integer >= 1"),
        ({"num_classes": "ten"}, "num_classes='ten'"),
        ({"strides": "fast"}, "^mnasnet option strides='fast': allowed values: auto, published$"),
        ({"strides": None}, "strides=None: allowed values: auto, published"),
        (
            {"strides": "published", "input_size": 16},
            r"^mnasnet option strides='published': input_size=16 is too small for 5 stride-2 "
            r"stages \(stem included\), which need input_size >= 32; strides='auto' drops",
        ),
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
