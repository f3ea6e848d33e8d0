"""Cost counting: what counts as a MAC is pinned down on hand-computable models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nas
from nas.evaluation.cost import count_cost, count_macs, count_params


def test_regular_conv_macs_and_params():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # 8x8 output, 8 filters of 3x3x3
    cost = count_cost(conv, (3, 8, 8))
    assert cost.macs == 8 * 8 * 8 * 3 * 3 * 3
    assert cost.params == 8 * 3 * 3 * 3


def test_depthwise_strided_and_linear():
    model = nn.Sequential(
        nn.Conv2d(4, 4, 5, stride=2, padding=2, groups=4), nn.Flatten(), nn.Linear(4 * 4 * 4, 10)
    )
    cost = count_cost(model, (4, 8, 8))
    assert cost.macs == (4 * 4 * 4 * 5 * 5) + (64 * 10)
    assert cost.params == (4 * 25 + 4) + (64 * 10 + 10)


def test_bn_activations_pooling_residual_and_gating_are_not_counted():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1, bias=False)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            y = nn.functional.hardswish(self.bn(self.conv(x)))
            gate = torch.sigmoid(y.mean((2, 3), keepdim=True))
            return x + y * gate

    model = nn.Sequential(Block(), nn.AdaptiveAvgPool2d(1))
    cost = count_cost(model, (2, 6, 6))
    assert cost.macs == 6 * 6 * 2 * 2  # the 1x1 conv only
    assert cost.params == 4 + 4  # conv weight + BN weight and bias (running stats are buffers)


def test_per_layer_table_sums_to_totals():
    space = nas.get_space("mnasnet", input_size=32, num_classes=10)
    model = space.build_preset("mnasnet_a1")
    cost = count_cost(model, (3, 32, 32))
    assert sum(r["macs"] for r in cost.layers) == cost.macs
    assert sum(r["params"] for r in cost.layers) == cost.params == count_params(model)
    assert {r["type"] for r in cost.layers} >= {"Conv2d", "BatchNorm2d", "Linear"}
    assert cost.to_dict(with_layers=False) == {
        "params": cost.params,
        "macs": cost.macs,
        "input_shape": [3, 32, 32],
    }


def test_training_mode_is_restored_and_macs_scale_with_resolution():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2))
    model.train()
    small, big = count_macs(model, (1, 8, 8)), count_macs(model, (1, 16, 16))
    assert model.training
    assert big == 4 * small


def test_bad_input_shape():
    with pytest.raises(ValueError, match="input_shape"):
        count_cost(nn.Linear(2, 2), (0,))


def test_matrix_products_and_attention_count_their_multiply_adds():
    class Attend(nn.Module):
        def forward(self, x):  # x: (1, 4, 6): tokens x features
            scores = torch.einsum("btd,bsd->bts", x, x)  # 4*4*6
            mixed = torch.bmm(scores.softmax(-1), x)  # 4*6*4
            return torch.nn.functional.scaled_dot_product_attention(mixed, mixed, mixed)

    assert count_macs(Attend(), (4, 6)) == 4 * 4 * 6 + 4 * 6 * 4 + 2 * (4 * 4 * 6)


def test_a_higher_order_operator_is_counted_by_torchs_full_counter():
    """``torch.cond`` is refused by the fast mode; the fallback counts its larger branch."""
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.small, self.large = nn.Linear(4, 3), nn.Linear(4, 5)

        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda x: self.small(x)[:, :2],
                              lambda x: self.large(x)[:, :2], (x,))

    cost = count_cost(Branchy(), (4,))
    assert cost.macs == 4 * 5
    assert [(r["name"], r["macs"]) for r in cost.layers] == [("small", 12), ("large", 20)]
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):  # its own error
        count_cost(nn.Linear(3, 2), (4,))


def test_counting_leaves_no_module_hooks_behind():
    """Each count removes the global forward hooks it added (a leak would slow every later
    forward pass of the process), even where operators are decomposed (MnasNet's)."""
    from torch.nn.modules import module as torch_module

    space = nas.SPACES.create("mnasnet", input_size=8, in_channels=1, num_classes=10,
                              width_mult=0.5)
    model = space.build_preset(space.presets()[0])
    before = (len(torch_module._global_forward_pre_hooks), len(torch_module._global_forward_hooks))
    macs = [count_macs(model, space.input_shape()) for _ in range(3)]
    assert macs[0] > 0 and len(set(macs)) == 1
    assert (len(torch_module._global_forward_pre_hooks),
            len(torch_module._global_forward_hooks)) == before


def test_counting_never_imports_the_compiler():
    """A fresh process (a search worker, ``nas cost``) counts without importing torch._dynamo,
    which torch's FlopCounterMode does on first use (over a second)."""
    import subprocess
    import sys

    code = ("import sys, nas\n"
            "space = nas.SPACES.create('mnasnet', input_size=32, num_classes=10)\n"
            "from nas.evaluation.cost import count_cost\n"
            "cost = count_cost(space.build_preset(space.presets()[0]), space.input_shape())\n"
            "assert cost.macs > 0\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.strip() == "False"


def _fvcore_macs(model, input_shape):
    """The reference: fvcore's tracing counter with the handles mnas used before (convolutions,
    linear/addmm/matmul/mm/bmm/einsum)."""
    from fvcore.nn import jit_handles as h
    from fvcore.nn.jit_analysis import JitModelAnalysis

    handles = {"aten::_convolution": h.conv_flop_jit, "aten::addmm": h.addmm_flop_jit,
               "aten::linear": h.linear_flop_jit, "aten::matmul": h.matmul_flop_jit,
               "aten::mm": h.matmul_flop_jit, "aten::bmm": h.bmm_flop_jit,
               "aten::einsum": h.einsum_flop_jit}
    model.eval()
    with torch.no_grad():
        fca = JitModelAnalysis(model, torch.zeros((1, *input_shape))).set_op_handle(**handles)
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        fca.tracer_warnings("none")
        return int(fca.total()), {k: int(v) for k, v in fca.by_module().items()}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fvcore's torch.jit.script
@pytest.mark.parametrize("space_name, options", [
    ("mnasnet", {"input_size": 32, "num_classes": 10}),
    ("mnasnet", {"input_size": 8, "in_channels": 1, "num_classes": 10, "width_mult": 0.5}),
    ("nasbench201", {}),
    ("nas.testing.fixtures:ToySpace", {}),
])
def test_counts_equal_fvcores_on_every_built_in_space(space_name, options):
    """Each layer of sampled children (and MnasNet's presets) has the MACs fvcore traces."""
    import numpy as np

    pytest.importorskip("fvcore.nn", reason="fvcore (the test extra) gives the reference counts")

    space = nas.SPACES.create(space_name, **options)
    models = [space.build(space.sample(np.random.default_rng(seed))) for seed in range(3)]
    models += [space.build_preset(p) for p in space.presets()]
    for model in models:
        total, by_module = _fvcore_macs(model, space.input_shape())
        cost = count_cost(model, space.input_shape())
        assert cost.macs == total
        assert [r["macs"] for r in cost.layers] == [by_module.get(r["name"], 0)
                                                   for r in cost.layers]
