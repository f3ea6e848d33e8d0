"""Model cost: parameters and multiply-accumulates (MACs), with a per-layer table.

MACs are counted with fvcore's tracing counter the way the MnasNet and MobileNet papers count them:
one multiply-add is one MAC, and only convolutions (depthwise, 1x1 and squeeze-and-excitation
convolutions included) and fully connected layers (``linear``/``addmm``/``matmul``) count. Not
counted: batch normalization (foldable into the preceding convolution at inference), activations,
pooling, element-wise additions (residuals) and multiplications (SE gating). Parameters are all
trainable and frozen parameters of the module (buffers such as BN running statistics excluded).

Counting traces the model with one sample (batch 1) in eval mode; the model's mode is restored.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Cost", "count_cost", "count_params", "count_macs"]

log = logging.getLogger(__name__)


def _handles() -> dict[str, Any]:
    """aten op -> fvcore handler, for the ops whose MACs we count (one multiply-add = 1)."""
    from fvcore.nn import jit_handles as h

    return {
        "aten::_convolution": h.conv_flop_jit,
        "aten::addmm": h.addmm_flop_jit,
        "aten::linear": h.linear_flop_jit,
        "aten::matmul": h.matmul_flop_jit,
        "aten::mm": h.matmul_flop_jit,
        "aten::bmm": h.bmm_flop_jit,
        "aten::einsum": h.einsum_flop_jit,
    }


@dataclass
class Cost:
    """Parameters, MACs and a per-layer table.

    Attributes:
        params: number of parameters.
        macs: multiply-accumulates for one sample.
        layers: one row per leaf module with parameters or MACs:
            ``{"name", "type", "params", "macs"}``, in module order.
        input_shape: the per-sample input shape that was traced.
    """

    params: int
    macs: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    input_shape: tuple[int, ...] = ()

    def to_dict(self, with_layers: bool = True) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        out: dict[str, Any] = {
            "params": self.params,
            "macs": self.macs,
            "input_shape": list(self.input_shape),
        }
        if with_layers:
            out["layers"] = [dict(row) for row in self.layers]
        return out


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters())


def _analysis(model: nn.Module, input_shape: Sequence[int]) -> Any:
    from fvcore.nn.jit_analysis import JitModelAnalysis

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sample = torch.zeros((1, *input_shape), device=device)
    fca = JitModelAnalysis(model, sample).set_op_handle(**_handles())
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    return fca


def _trace(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, dict[str, int], set[str]]:
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            fca = _analysis(model, input_shape)
            total = int(fca.total())
            by_module = {k: int(v) for k, v in fca.by_module().items()}
            skipped = set(fca.unsupported_ops())
    finally:
        model.train(was_training)
    return total, by_module, skipped


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one sample of ``input_shape`` (C, H, W)."""
    return _trace(model, input_shape)[0]


def count_cost(model: nn.Module, input_shape: Sequence[int]) -> Cost:
    """Parameters, MACs and a per-layer table for one sample of shape ``input_shape``."""
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive dimensions, got {input_shape}")
    total, by_module, skipped = _trace(model, input_shape)
    if skipped:
        log.debug("ops not counted as MACs: %s", ", ".join(sorted(skipped)))
    layers = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue
        params = sum(p.numel() for p in module.parameters(recurse=False))
        macs = by_module.get(name, 0)
        if params or macs:
            layers.append(
                {"name": name, "type": type(module).__name__, "params": params, "macs": macs}
            )
    return Cost(params=count_params(model), macs=total, layers=layers, input_shape=input_shape)
