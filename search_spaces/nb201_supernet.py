"""The weight-sharing supernet of the NAS-Bench-201 space (SPOS, Guo et al., arXiv:1904.00420, on
the cell of Dong & Yang, arXiv:2001.00326).

Every one of the 6 edges of every cell holds its 5 operations (``none``, ``skip_connect``,
``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``), the convolutions with their own weights and
BatchNorm; the stem, the two reduction blocks, the last BN-ReLU and the classifier are shared by
every path. One path is one operation per edge, the same in every cell (the benchmark's cells are
all alike), i.e. one architecture of the space.

The path runs the very modules :func:`search_spaces.nb201_model.make_op` builds for the child, in
the child's order (node ``j`` is ``sum(op(node_i) for i < j)``, ``none`` multiplying by 0), so
:meth:`NB201Supernet.extract` (``space.build(arch)`` loaded strictly with the path's weights and
BN buffers) computes exactly what the path computes: in eval mode the outputs are equal bit for
bit. In train mode the path normalises with batch statistics and updates only its own ops' running
statistics (and the shared layers'); a child is scored after recalibrating them
(:func:`nas.supernet.score.recalibrate_bn`).

Training paths (option ``paths``): ``uniform`` draws each of the 15,625 cells alike (SPOS);
``non_isomorphic`` draws a class of isomorphic cells uniformly, then one cell of the class, so
each distinct function is trained alike (Ning et al., NeurIPS 2021, "Evaluating Efficient
Performance Estimators of Neural Architectures", sample uniformly over NB201's non-isomorphic
cells). The classes: :mod:`search_spaces.nb201_cell`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nas._checks import check_choice
from nas.space import Arch, Space
from nas.supernet.base import SupernetModule, Tensors
from search_spaces.nb201_cell import EDGES, OPS, cell_ops, isomorphism_classes, label
from search_spaces.nb201_model import make_op, stage_layers

__all__ = ["NB201Supernet", "MixedCell", "PATH_MODES"]

PATH_MODES = ("uniform", "non_isomorphic")
Ops = dict[tuple[int, int], str]


class MixedCell(nn.Module):
    """A cell whose every edge holds every operation (``edges["j_i"][op]``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({f"{j}_{i}": nn.ModuleDict(
            {op: make_op(op, channels) for op in OPS}) for j, i in EDGES})

    def forward(self, x: torch.Tensor, ops: Ops) -> torch.Tensor:
        nodes = [x]
        for j in range(1, 4):
            nodes.append(sum(self.edges[f"{j}_{i}"][ops[(j, i)]](nodes[i]) for i in range(j)))
        return nodes[3]

    def tensors(self, ops: Ops) -> Tensors:
        """The child ``Cell``'s state (``ops.{j}_{i}.*``) for these operations."""
        out: Tensors = {}
        for (j, i), op in ops.items():
            for key, value in self.edges[f"{j}_{i}"][op].state_dict(keep_vars=True).items():
                out[f"ops.{j}_{i}.{key}"] = value
        return out


class NB201Supernet(SupernetModule):
    """Every cell of a NAS-Bench-201 space in one network; ``forward(x, arch)`` runs one path.

    Args:
        space: the :class:`~search_spaces.nasbench201.NasBench201Space` (any options).
        paths: ``uniform`` or ``non_isomorphic`` (module docstring).
    """

    def __init__(self, space: Space, *, paths: str = "uniform") -> None:
        check_choice("supernet option paths", paths, PATH_MODES)
        super().__init__(space, {"paths": paths})
        o = space.options
        self.stem = nn.Sequential(
            nn.Conv2d(o["in_channels"], o["channels"], 3, padding=1, bias=False),
            nn.BatchNorm2d(o["channels"]))
        layers, c = stage_layers(MixedCell, o["channels"], o["cells_per_stage"])
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, o["num_classes"])

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        ops = cell_ops(self.space.validate(arch))
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, ops) if isinstance(layer, MixedCell) else layer(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def child_state(self, arch: Arch) -> Tensors:
        """The state of ``space.build(arch)``: the shared layers as they are, and in every cell
        the chosen operation of each edge."""
        ops = cell_ops(self.space.validate(arch))
        out: Tensors = {}
        for name in ("stem", "lastact", "classifier"):
            out.update({f"{name}.{k}": v for k, v in
                        getattr(self, name).state_dict(keep_vars=True).items()})
        for n, layer in enumerate(self.cells):
            state = (layer.tensors(ops) if isinstance(layer, MixedCell)
                     else layer.state_dict(keep_vars=True))
            out.update({f"cells.{n}.{k}": v for k, v in state.items()})
        return out

    def sample(self, rng: np.random.Generator) -> Arch:
        """A training path: uniform over the cells, or over the classes of isomorphic cells and
        then within the class (``paths``)."""
        if self.options["paths"] == "uniform":
            return self.space.sample(rng)
        classes = isomorphism_classes()
        members = classes[int(rng.integers(len(classes)))]
        return self.space.decode(list(members[int(rng.integers(len(members)))]))

    def extremes(self) -> tuple[Arch, Arch]:
        """``(largest, smallest)`` for the sandwich rule: ``nor_conv_3x3`` on every edge (the
        most parameters and MACs), and the cell that passes its input straight to its output
        (one ``skip_connect`` from node 0 to node 3, ``none`` elsewhere: no parameters, no
        computation, yet the input still reaches the classifier)."""
        largest = {label(j, i): "nor_conv_3x3" for j, i in EDGES}
        smallest = {label(j, i): "skip_connect" if (j, i) == (3, 0) else "none" for j, i in EDGES}
        return self.space.validate(largest), self.space.validate(smallest)
