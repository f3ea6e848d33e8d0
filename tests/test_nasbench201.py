"""NAS-Bench-201 cell space: size, benchmark strings, macro network."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import nas
from nas.errors import InvalidArchError, UsageError
from search_spaces.nb201_model import Cell, ReductionBlock

ALL_CONV3 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def space():
    return nas.get_space("nasbench201")


def test_size_and_every_string_round_trips(space):
    assert space.size() == 15_625
    keys, strings = set(), set()
    for idx in itertools.product(range(5), repeat=6):
        arch = space.decode(list(idx))
        text = space.to_string(arch)
        assert space.from_string(text) == arch
        keys.add(arch.key)
        strings.add(text)
    assert len(keys) == len(strings) == 15_625


def test_string_matches_the_benchmark_layout(space):
    arch = space.from_string(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
    )
    assert arch["node1.from0"] == "nor_conv_3x3"
    assert arch["node2.from1"] == "avg_pool_3x3"
    assert arch["node3.from0"] == "skip_connect"
    assert arch["node3.from2"] == "nor_conv_1x1"


# NAS-Bench-201 (arXiv:2001.00326) lists 1.531546 MB and 0.073306 MB parameters on CIFAR-10 for
# the largest (all 3x3 conv) and smallest (all none) cells.
@pytest.mark.parametrize("text, params", [(ALL_CONV3, 1_531_546), (ALL_NONE, 73_306)])
def test_published_parameter_counts(space, text, params):
    model = space.build(space.from_string(text))
    assert sum(p.numel() for p in model.parameters()) == params


def test_macro_network_structure(space):
    model = space.build(space.from_string(ALL_CONV3))
    cells = [m for m in model.cells if isinstance(m, Cell)]
    reductions = [m for m in model.cells if isinstance(m, ReductionBlock)]
    assert len(cells) == 15 and len(reductions) == 2
    assert [r.conv_a[1].out_channels for r in reductions] == [32, 64]
    assert model.stem[0].out_channels == 16 and model.classifier.in_features == 64
    out = model.eval()(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)


def test_none_edges_carry_nothing(space):
    cell = Cell({(j, i): "none" for j in range(1, 4) for i in range(j)}, 4)
    assert torch.count_nonzero(cell(torch.randn(1, 4, 5, 5))) == 0
    skip = Cell(
        {(j, i): ("skip_connect" if i == 0 else "none") for j in range(1, 4) for i in range(j)}, 4
    )
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(skip(x), x)


@pytest.mark.parametrize(
    "text, match",
    [
        ("|nor_conv_3x3~0|+|none~0|none~1|", "expected 3 nodes"),
        ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 must be"),
        (
            "|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|",
            "edge 'nor_conv_3x3~1' must be 'op~0'",
        ),
        (
            "|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|",
            "node1.from0: value 'conv_7x7' is not allowed",
        ),
    ],
)
def test_bad_strings(space, text, match):
    with pytest.raises(InvalidArchError, match=match):
        space.from_string(text)


def test_options(space):
    small = nas.get_space(
        "nasbench201", in_channels=1, input_size=8, num_classes=4, channels=8, cells_per_stage=1
    )
    model = small.build(small.sample(np.random.default_rng(0))).eval()
    assert model(torch.zeros(3, 1, 8, 8)).shape == (3, 4)
    with pytest.raises(UsageError, match="cells_per_stage=0"):
        nas.get_space("nasbench201", cells_per_stage=0)
    assert space.describe(space.from_string(ALL_NONE)) == {"arch_str": ALL_NONE}


def test_count_params_in_closed_form_equals_the_built_network():
    from nas.space import Space

    rng = np.random.default_rng(0)
    for options in ({}, {"channels": 8, "cells_per_stage": 2, "in_channels": 1,
                         "num_classes": 7}):
        space = nas.get_space("nasbench201", **options)
        for _ in range(6):
            arch = space.sample(rng)
            assert space.count_params(arch) == Space.count_params(space, arch)


def test_path_encoding_counts_the_input_output_paths():
    space = nas.get_space("nasbench201")
    conv = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    feats = space.features(space.from_string(conv))
    assert len(feats) == 84 and sum(feats) == 4  # all four paths exist
    ops = ("skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    k = ops.index("nor_conv_3x3")
    assert feats[k] == 1 and feats[4 + 5 * k] == 2 and feats[20 + 21 * k] == 1
    cut = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert sum(space.features(space.from_string(cut))) == 0
