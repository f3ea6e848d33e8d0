"""Model cost: parameters and multiply-accumulates (MACs), with a per-layer table.

MACs are counted the way the MnasNet and MobileNet papers count them: one multiply-add is one MAC,
and only convolutions (depthwise, 1x1 and squeeze-and-excitation convolutions included), fully
connected layers and matrix products (``linear``/``addmm``/``mm``/``bmm``/``matmul``/``einsum``,
and the two products of ``scaled_dot_product_attention``) count. Not counted: batch normalization
(foldable into the preceding convolution at inference), activations, pooling, element-wise
additions (residuals) and multiplications (SE gating). Parameters are all trainable and frozen
parameters of the module (buffers such as BN running statistics excluded).

Counting runs one forward pass of one sample (batch 1) in eval mode under a small dispatch mode of
our own (:class:`_MacCounter`) that applies PyTorch's own FLOP formulas
(``torch.utils.flop_counter``'s registry: two FLOPs per multiply-add) to each operator and adds
them up per module (:class:`torch.utils.module_tracker.ModuleTracker`); the model's mode is
restored. It is what :class:`torch.utils.flop_counter.FlopCounterMode` does, less one cost: torch
wraps the dispatch method of its counter to keep the compiler out, which imports
``torch._dynamo`` on first use (1.3 to 1.8 s in every fresh process: each search worker, each
``nas cost``); this mode never compiles and tells torch so. Models with higher-order operators
(``torch.cond``) are counted by ``FlopCounterMode`` itself. Counts equal fvcore's tracing counter
(``tests/test_cost.py`` checks every built-in space against it) at 2 to 5 times its speed: a
MnasNet child sized for digits is counted in about 24 ms instead of about 100 ms, which a search of
children that take a second each notices.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry
from torch.utils.module_tracker import ModuleTracker

__all__ = ["Cost", "count_cost", "count_params", "count_macs"]


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


class _MacCounter(TorchDispatchMode):
    """FLOPs of each operator by torch's formulas, added to every module it ran inside."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # nothing here is ever compiled: no torch._dynamo import for a wrapper

    def __init__(self, tracker: ModuleTracker) -> None:
        super().__init__()
        self.tracker = tracker  # entered outside: this mode re-enters itself to decompose
        self.flops: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry and func is not torch.ops.prim.device.default:
            with self:  # a composite without a formula: count the operators it is made of
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        formula = flop_registry.get(packet)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            for name in set(self.tracker.parents):
                self.flops[name] += flops
        return out


def _count(model: nn.Module, sample: torch.Tensor) -> dict[str, int]:
    """FLOPs by tracker key (``"Global"``, ``"<root class>"``, ``"<root class>.<path>"``).

    A forward pass this mode cannot count (higher-order operators such as ``torch.cond``, which
    torch refuses under a mode that does not handle them) is counted again by
    ``FlopCounterMode``; a model that fails there too raises its own error."""
    try:
        with ModuleTracker() as tracker, _MacCounter(tracker) as counter:
            model(sample)
        return dict(counter.flops)
    except Exception:  # noqa: BLE001  (the full counter runs it again, and raises if it must)
        with FlopCounterMode(display=False, depth=None) as full:
            model(sample)
        return {key: sum(ops.values()) for key, ops in full.get_flop_counts().items()}


def _trace(model: nn.Module, input_shape: Sequence[int]) -> tuple[int, dict[str, int]]:
    """``(total MACs, MACs by module name)`` of one forward pass of one sample (module names as
    ``named_modules`` gives them; a module's count includes its children's)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    sample = torch.zeros((1, *input_shape), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            flops = _count(model, sample)
    finally:
        model.train(was_training)
    by_module: dict[str, int] = {}
    for key, count in flops.items():
        if key == "Global":
            continue
        name = key.partition(".")[2]  # "<root class>.<path>"; the root itself is ""
        by_module[name] = by_module.get(name, 0) + count // 2
    return int(flops.get("Global", 0)) // 2, by_module


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one sample of ``input_shape`` (C, H, W)."""
    return _trace(model, input_shape)[0]


def count_cost(model: nn.Module, input_shape: Sequence[int]) -> Cost:
    """Parameters, MACs and a per-layer table for one sample of shape ``input_shape``."""
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or any(d <= 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive dimensions, got {input_shape}")
    total, by_module = _trace(model, input_shape)
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
