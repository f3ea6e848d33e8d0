"""The weight-sharing supernet of the MnasNet space (SPOS, Guo et al., arXiv:1904.00420).

:class:`MnasNetSupernet` (what ``MnasNetSpace.supernet(kernel=...)`` returns) holds every choice
of a :class:`search_spaces.mnasnet.MnasNetSpace` at once and runs one single path, an
:class:`nas.space.Arch`, per call (``supernet(x, arch)``). The path's
layers are the ones :func:`search_spaces.blocks.walk_table` walks for the architecture's block
table, the same walk the child builder uses, so geometry (channels, strides, residuals) is the
child's by construction.

How the choices share weights (per block ``b``, per layer slot ``i`` up to the block's largest
``layers`` option; fewer layers use the first slots):

- **ops**: ``conv``, ``sepconv`` and ``mbconv`` each own their weights in every slot. ``mbconv3``
  and ``mbconv6`` share one inverted bottleneck: the hidden layer is sized for expansion 6 of the
  widest input, and expansion ``e`` of ``cin`` input channels uses its first ``e * cin`` channels
  (expand, depthwise, SE and project weights sliced alike; OFA's elastic width, arXiv:1908.09791).
- **filters**: every weight is stored for the widest option (of the slot's output, and of its
  input: the previous block's widest); a narrower choice uses the first channels.
- **kernel**: ``kernel="shared"`` stores one 5x5 kernel and the 3x3 is its centre (OFA without the
  kernel transform); ``kernel="separate"`` stores a 3x3 and a 5x5 kernel, each followed by its own
  BN (the weights and output statistics of the two have nothing in common).
- **SE**: one squeeze-and-excitation per op and slot, sized for the widest channels; off skips it.
  Its reduced width follows the child's rule, ``max(1, int(cin * ratio))``, sliced from the widest.
- **skip**: no weights; the residual is added where the child adds it.
- stem and classifier are shared by every path; the head 1x1 convolution is sliced on its input.

BatchNorm is *sliced*, not per choice: each convolution has one BN (one per kernel with
``separate``) over its widest channels, and a path normalises with the first channels' affine
parameters and running statistics. In training mode a path normalises with its batch's statistics
(and updates its slice of the running ones); a child is scored only after its own statistics are
recalibrated (:func:`nas.supernet.score.recalibrate_bn`), as SPOS does.

The sandwich rule's extremes (:meth:`MnasNetSupernet.extremes`) are the paths with the most and
the fewest parameters among one op everywhere at the largest (or smallest) kernel, SE, filters
and layers.

:meth:`~nas.supernet.base.SupernetModule.extract` returns ``space.build(arch)`` (the class the
search builds) loaded strictly with the path's slices (:meth:`MnasNetSupernet.child_state`).
Forward and extraction read the same slices (each part's ``tensors``), and the child computes
with the same functional calls on equal tensors, so in eval mode its output equals the path's bit
for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas._checks import check_choice
from nas.errors import UsageError
from nas.space import Arch, Space
from nas.supernet.base import SupernetModule, Tensors
from search_spaces.blocks import ACTIVATIONS, LayerGeometry, walk_table
from search_spaces.mnasnet_geometry import OP_CHOICES

__all__ = ["MnasNetSupernet", "KERNEL_MODES", "count_params"]

KERNEL_MODES = ("shared", "separate")


def _reduced(cin: int, ratio: float) -> int:
    """SE width of the child builder (:mod:`search_spaces.blocks`)."""
    return max(1, int(cin * ratio))


class SlicedConvBn(nn.Module):
    """Conv (no bias, 'same' padding) + BN + optional activation, stored at the widest size.

    Args:
        cin, cout: widest input and output channels.
        kernels: the kernel sizes it stores (one weight and one BN each); a smaller size that is
            not stored is the centre of the largest.
        depthwise: one filter per channel (``groups == channels``, ``cin == cout``).
        act: activation class, or None.
    """

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], *, depthwise: bool = False,
                 act: type[nn.Module] | None = None) -> None:
        super().__init__()
        per_group = 1 if depthwise else cin
        self.depthwise = depthwise
        self.weight = nn.ParameterDict(
            {str(k): nn.Parameter(torch.empty(cout, per_group, k, k)) for k in kernels})
        self.bn = nn.ModuleDict({str(k): nn.BatchNorm2d(cout) for k in kernels})
        self.act = act() if act is not None else None

    def _key(self, kernel: int) -> str:
        if str(kernel) in self.weight:
            return str(kernel)
        return str(max(int(k) for k in self.weight))

    def tensors(self, *, cin: int, cout: int, kernel: int, stride: int = 1) -> Tensors:
        """The child's ``conv_bn`` state (``0.weight``, ``1.*``) for this slice."""
        key = self._key(kernel)
        w = self.weight[key]
        off = (w.shape[-1] - kernel) // 2
        w = w[:cout] if self.depthwise else w[:cout, :cin]
        if off:
            w = w[..., off : off + kernel, off : off + kernel]
        bn = self.bn[key]
        return {"0.weight": w.contiguous(), "1.weight": bn.weight[:cout], "1.bias": bn.bias[:cout],
                "1.running_mean": bn.running_mean[:cout], "1.running_var": bn.running_var[:cout],
                "1.num_batches_tracked": bn.num_batches_tracked}

    def forward(self, x: torch.Tensor, *, cin: int, cout: int, kernel: int,
                stride: int) -> torch.Tensor:
        t = self.tensors(cin=cin, cout=cout, kernel=kernel)
        groups = cin if self.depthwise else 1
        y = F.conv2d(x, t["0.weight"], None, stride, kernel // 2, 1, groups)
        bn = self.bn[self._key(kernel)]
        momentum = bn.momentum
        if self.training:
            bn.num_batches_tracked.add_(1)
            if momentum is None:
                momentum = 1.0 / float(bn.num_batches_tracked)
        y = F.batch_norm(y, t["1.running_mean"], t["1.running_var"], t["1.weight"], t["1.bias"],
                         self.training, momentum or 0.0, bn.eps)
        return self.act(y) if self.act is not None else y


class SlicedSE(nn.Module):
    """Squeeze-and-excitation stored for ``channels`` inputs reduced to ``reduced``."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce_weight = nn.Parameter(torch.empty(reduced, channels, 1, 1))
        self.reduce_bias = nn.Parameter(torch.zeros(reduced))
        self.expand_weight = nn.Parameter(torch.empty(channels, reduced, 1, 1))
        self.expand_bias = nn.Parameter(torch.zeros(channels))

    def tensors(self, *, channels: int, reduced: int) -> Tensors:
        """The child's ``SqueezeExcite`` state for this slice."""
        return {"reduce.weight": self.reduce_weight[:reduced, :channels].contiguous(),
                "reduce.bias": self.reduce_bias[:reduced],
                "expand.weight": self.expand_weight[:channels, :reduced].contiguous(),
                "expand.bias": self.expand_bias[:channels]}

    def forward(self, x: torch.Tensor, *, channels: int, reduced: int) -> torch.Tensor:
        t = self.tensors(channels=channels, reduced=reduced)
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(F.conv2d(s, t["reduce.weight"], t["reduce.bias"]))
        return x * torch.sigmoid(F.conv2d(s, t["expand.weight"], t["expand.bias"]))


Steps = list[tuple[nn.Module, dict[str, Any]]]


class _Op(nn.Module):
    """One op of a layer slot; :meth:`steps` lists the child's ``body`` modules in order."""

    def steps(self, g: LayerGeometry) -> Steps:
        raise NotImplementedError

    def _se(self, g: LayerGeometry, channels: int) -> Steps:
        if g.se_ratio <= 0:
            return []
        return [(self.se, {"channels": channels, "reduced": _reduced(g.cin, g.se_ratio)})]


class ConvOp(_Op):
    """Regular KxK conv + BN + act, optional SE (the child's ``ConvBnAct``)."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], se: float,
                 act: type[nn.Module]) -> None:
        super().__init__()
        self.conv = SlicedConvBn(cin, cout, kernels, act=act)
        self.se = SlicedSE(cout, _reduced(cin, se))

    def steps(self, g: LayerGeometry) -> Steps:
        conv = {"cin": g.cin, "cout": g.cout, "kernel": g.kernel, "stride": g.stride}
        return [(self.conv, conv), *self._se(g, g.cout)]


class SepConvOp(_Op):
    """Depthwise KxK + BN + act, optional SE, linear 1x1 + BN (``DepthwiseSeparable``)."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], se: float,
                 act: type[nn.Module]) -> None:
        super().__init__()
        self.dw = SlicedConvBn(cin, cin, kernels, depthwise=True, act=act)
        self.se = SlicedSE(cin, _reduced(cin, se))
        self.pw = SlicedConvBn(cin, cout, (1,))

    def steps(self, g: LayerGeometry) -> Steps:
        dw = {"cin": g.cin, "cout": g.cin, "kernel": g.kernel, "stride": g.stride}
        pw = {"cin": g.cin, "cout": g.cout, "kernel": 1, "stride": 1}
        return [(self.dw, dw), *self._se(g, g.cin), (self.pw, pw)]


class MBConvOp(_Op):
    """1x1 expand + BN + act, depthwise KxK + BN + act, optional SE, linear 1x1 project + BN
    (``InvertedResidual``); every expansion slices the widest hidden layer."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...], se: float,
                 act: type[nn.Module], expansion: int) -> None:
        super().__init__()
        mid = cin * expansion
        self.expand = SlicedConvBn(cin, mid, (1,), act=act)
        self.dw = SlicedConvBn(mid, mid, kernels, depthwise=True, act=act)
        self.se = SlicedSE(mid, _reduced(cin, se))
        self.project = SlicedConvBn(mid, cout, (1,))

    def steps(self, g: LayerGeometry) -> Steps:
        mid = g.cin * g.expansion
        expand = [] if g.expansion == 1 else [
            (self.expand, {"cin": g.cin, "cout": mid, "kernel": 1, "stride": 1})]
        dw = {"cin": mid, "cout": mid, "kernel": g.kernel, "stride": g.stride}
        project = {"cin": mid, "cout": g.cout, "kernel": 1, "stride": 1}
        return [*expand, (self.dw, dw), *self._se(g, mid), (self.project, project)]


class SuperLayer(nn.Module):
    """One layer slot: every op of the space at the slot's widest channels."""

    def __init__(self, cin: int, cout: int, *, ops: tuple[str, ...], kernels: tuple[int, ...],
                 se: float, act: type[nn.Module]) -> None:
        super().__init__()
        built: dict[str, nn.Module] = {}
        for name in ops:
            op = OP_CHOICES[name][0]
            if op in built:
                continue
            if op == "mbconv":
                e = max(OP_CHOICES[n][1] for n in ops if OP_CHOICES[n][0] == "mbconv")
                built[op] = MBConvOp(cin, cout, kernels, se, act, e)
            elif op == "conv":
                built[op] = ConvOp(cin, cout, kernels, se, act)
            else:
                built[op] = SepConvOp(cin, cout, kernels, se, act)
        self.ops = nn.ModuleDict(built)

    def forward(self, x: torch.Tensor, g: LayerGeometry) -> torch.Tensor:
        y = x
        for module, args in self.ops[g.op].steps(g):
            y = module(y, **args)
        return x + y if g.residual else y

    def tensors(self, g: LayerGeometry) -> Tensors:
        """The child layer's state (``body.{j}.*``)."""
        out: Tensors = {}
        for j, (module, args) in enumerate(self.ops[g.op].steps(g)):
            out.update({f"body.{j}.{k}": v for k, v in module.tensors(**args).items()})
        return out


def _decision(space: Space, label: str) -> tuple[Any, ...]:
    return space.choices()[label].options


class MnasNetSupernet(SupernetModule):
    """Every choice of a MnasNet space in one network; ``forward(x, arch)`` runs one path.

    Args:
        space: the :class:`~search_spaces.mnasnet.MnasNetSpace` (any options).
        kernel: ``shared`` (3x3 = centre of the 5x5) or ``separate`` (own 3x3 and 5x5 weights).
    """

    def __init__(self, space: Space, kernel: str = "shared") -> None:
        if not callable(getattr(space, "block_table", None)):
            raise UsageError(f"supernet: space {getattr(space, 'name', space)!r} is not a "
                             "MnasNet space (search_spaces.mnasnet.MnasNetSpace)")
        check_choice("supernet option kernel", kernel, KERNEL_MODES)
        super().__init__(space, {"kernel": kernel})
        self.kernel = kernel
        info = space.describe(space.decode([0] * len(space.labels())))
        act = ACTIVATIONS[info["activation"]]
        self.stem_channels, self.head_channels = info["stem"]["channels"], info["head_channels"]
        self.stem = nn.Sequential(
            nn.Conv2d(space.options["in_channels"], self.stem_channels, 3, info["stem"]["stride"],
                      1, bias=False),
            nn.BatchNorm2d(self.stem_channels), act())
        self.cells = self._cells(space, act)
        cin = max(_decision(space, f"b{len(self.cells)}.filters"))
        self.head = SlicedConvBn(cin, self.head_channels, (1,), act=act)
        self.dropout = float(space.options["dropout"])
        self.classifier = nn.Linear(self.head_channels, space.options["num_classes"])
        _init_weights(self)

    def _cells(self, space: Space, act: type[nn.Module]) -> nn.ModuleList:
        cells, cin, b = [], self.stem_channels, 1
        while f"b{b}.op" in space.choices():
            cout = max(_decision(space, f"b{b}.filters"))
            kernels = tuple(sorted(_decision(space, f"b{b}.kernel")))
            stored = kernels if self.kernel == "separate" else (max(kernels),)
            options = {"ops": _decision(space, f"b{b}.op"), "kernels": stored,
                       "se": max(_decision(space, f"b{b}.se")), "act": act}
            slots = max(_decision(space, f"b{b}.layers"))
            cells.append(nn.ModuleList(
                [SuperLayer(cin if i == 0 else cout, cout, **options) for i in range(slots)]))
            cin, b = cout, b + 1
        return nn.ModuleList(cells)

    def path(self, arch: Arch) -> list[LayerGeometry]:
        """The layers of ``arch`` (validated) as the child builder walks them."""
        return list(walk_table(self.space.block_table(arch), self.stem_channels))

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        layers = self.path(arch)
        x = self.stem(x)
        for g in layers:
            x = self.cells[g.block][g.index](x, g)
        cin = layers[-1].cout if layers else self.stem_channels
        x = self.head(x, cin=cin, cout=self.head_channels, kernel=1, stride=1)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(F.dropout(x, self.dropout, self.training))

    def extremes(self) -> tuple[Arch, Arch]:
        """``(largest, smallest)`` paths of the sandwich rule (by parameter count)."""
        ops = dict.fromkeys(o for c in self.space.choices().values() if c.label.endswith(".op")
                            for o in c.options)
        large = [_extreme(self.space, op, max) for op in ops]
        small = [_extreme(self.space, op, min) for op in ops]

        def size(arch: Arch) -> int:
            return count_params(self.space, arch)

        return max(large, key=size), min(small, key=size)

    @torch.no_grad()
    def child_state(self, arch: Arch) -> Tensors:
        """The state dict of ``space.build(arch)`` cut from this supernet (detached slices)."""
        layers = self.path(arch)
        out: Tensors = {f"stem.{k}": v for k, v in self.stem.state_dict().items()}
        for n, g in enumerate(layers):
            out.update({f"blocks.{n}.{k}": v
                        for k, v in self.cells[g.block][g.index].tensors(g).items()})
        cin = layers[-1].cout if layers else self.stem_channels
        out.update({f"head.{k}": v for k, v in
                    self.head.tensors(cin=cin, cout=self.head_channels, kernel=1).items()})
        out.update({f"classifier.{k}": v for k, v in self.classifier.state_dict().items()})
        return {k: v.detach() for k, v in out.items()}


def count_params(space: Space, arch: Arch) -> int:
    """Parameters of ``space.build(arch)`` (built on the CPU, faster than on the meta device for
    these small networks; the caller's random state is kept)."""
    with torch.random.fork_rng(devices=[]):
        return sum(p.numel() for p in space.build(arch).parameters())


def _extreme(space: Space, op: str, pick: Callable[[Any], Any]) -> Arch:
    """One op everywhere (where a block offers it), identity skips, ``pick`` of the rest."""
    values = {}
    for label, choice in space.choices().items():
        field = label.rpartition(".")[2]
        if field == "op":
            values[label] = op if op in choice.options else choice.options[0]
        elif field == "skip":
            values[label] = "identity" if "identity" in choice.options else choice.options[0]
        else:
            values[label] = pick(choice.options)
    return space.validate(values)


def _init_weights(model: MnasNetSupernet) -> None:
    """He (fan-out) convolutions, zero biases, unit BN, small classifier: the child builder's."""
    for p in model.parameters():
        if p.ndim == 4:
            nn.init.kaiming_normal_(p, mode="fan_out", nonlinearity="relu")
    nn.init.normal_(model.classifier.weight, 0.0, 0.01)
    nn.init.zeros_(model.classifier.bias)
