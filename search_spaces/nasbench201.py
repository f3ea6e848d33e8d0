"""NAS-Bench-201 cell space (Dong & Yang, arXiv:2001.00326).

A cell is a DAG of 4 nodes; node ``j`` sums one operation applied to every earlier node ``i``, so
there are 6 edges, each choosing one of 5 operations: 5**6 = 15,625 architectures. The macro network
is the benchmark's: a 3x3 conv stem of ``channels`` (16), three stages of ``cells_per_stage`` (5)
cells at 16/32/64 channels joined by residual reduction blocks, BN-ReLU, global average pooling and
a linear head. Architectures round-trip the benchmark's own string form
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|`` so
published tables keyed by that string can be joined.

Weight sharing: :meth:`NasBench201Space.supernet` (every edge holding its five operations,
:mod:`search_spaces.nb201_supernet`); cells that compute the same function share one
:meth:`NasBench201Space.canonical_form` (:mod:`search_spaces.nb201_cell`).
"""

from __future__ import annotations

from typing import Any

from nas._checks import MAX_INPUT_SIZE
from nas.errors import InvalidArchError, UsageError
from nas.registry import register_space
from nas.space import Arch, Choice, Space
from search_spaces.nb201_cell import EDGES, OPS, PATHS, canonical_form, cell_ops
from search_spaces.nb201_cell import label as _label

__all__ = ["NasBench201Space", "OPS", "EDGES", "PATHS"]


# bounds that keep a typo from building a network that never finishes (the benchmark's own
# network: 16 channels, 5 cells per stage, 32 px)
_MAXIMA = {"num_classes": 100_000, "input_size": MAX_INPUT_SIZE, "in_channels": 64,
           "channels": 1024, "cells_per_stage": 32}


def _positive_int(name: str, value: Any) -> int:
    top = _MAXIMA[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
        raise UsageError(f"nasbench201 option {name}={value!r}: must be an integer in "
                         f"[1, {top:,}]")
    return value


@register_space("nasbench201")
class NasBench201Space(Space):
    """The NAS-Bench-201 search space and macro network.

    Args:
        num_classes: classifier outputs (10 for CIFAR-10).
        input_size: input height and width (32 for CIFAR-10).
        in_channels: input channels (3 for RGB, 1 for digits).
        channels: stem channels C; the stages use C, 2C, 4C (16 in the benchmark).
        cells_per_stage: cells per stage N (5 in the benchmark).
    """

    name = "nasbench201"

    def __init__(
        self,
        *,
        num_classes: int = 10,
        input_size: int = 32,
        in_channels: int = 3,
        channels: int = 16,
        cells_per_stage: int = 5,
    ) -> None:
        options = {
            "num_classes": _positive_int("num_classes", num_classes),
            "input_size": _positive_int("input_size", input_size),
            "in_channels": _positive_int("in_channels", in_channels),
            "channels": _positive_int("channels", channels),
            "cells_per_stage": _positive_int("cells_per_stage", cells_per_stage),
        }
        super().__init__([Choice(_label(j, i), OPS) for j, i in EDGES], options=options)

    def input_shape(self) -> tuple[int, int, int]:
        return (self.options["in_channels"], self.options["input_size"], self.options["input_size"])

    def to_string(self, arch: Arch) -> str:
        """The benchmark's string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        arch = self.validate(arch)
        nodes = []
        for j in range(1, 4):
            nodes.append("|" + "|".join(f"{arch[_label(j, i)]}~{i}" for i in range(j)) + "|")
        return "+".join(nodes)

    def from_string(self, text: str) -> Arch:
        """Parse the benchmark's string form."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise InvalidArchError(f"NAS-Bench-201 string {text!r}: expected 3 nodes joined by '+'")
        values: dict[str, str] = {}
        for j, node in enumerate(nodes, start=1):
            edges = [e for e in node.split("|") if e]
            if not (node.startswith("|") and node.endswith("|")) or len(edges) != j:
                raise InvalidArchError(
                    f"NAS-Bench-201 string {text!r}: node {j} must be '|op~0|...|op~{j - 1}|'"
                )
            for i, edge in enumerate(edges):
                op, sep, src = edge.partition("~")
                if not sep or src != str(i):
                    raise InvalidArchError(
                        f"NAS-Bench-201 string {text!r}: edge {edge!r} must be 'op~{i}'"
                    )
                values[_label(j, i)] = op
        return self.validate(values)

    def describe(self, arch: Arch) -> dict[str, Any]:
        return {"arch_str": self.to_string(arch)}

    def count_params(self, arch: Arch) -> int:
        """Parameters of the built network, in closed form (equal to counting the built model).

        The network without its cells (stem, reduction blocks, last BN, head) is fixed; each
        ``nor_conv_kxk`` edge of a cell at C channels adds a k x k conv (k^2 C^2) and a BN (2 C),
        and the other operations have no parameters.
        """
        arch = self.validate(arch)
        o = self.options
        c, n, ch_in, classes = (o["channels"], o["cells_per_stage"], o["in_channels"],
                                o["num_classes"])
        fixed = 9 * ch_in * c + 2 * c  # stem conv + BN
        for width in (c, 2 * c):  # reduction blocks to 2C and 4C
            fixed += 9 * width * 2 * width + 2 * 2 * width  # strided conv + BN
            fixed += 9 * (2 * width) ** 2 + 2 * 2 * width  # conv + BN
            fixed += width * 2 * width  # 1x1 shortcut
        fixed += 2 * 4 * c + 4 * c * classes + classes  # last BN, linear head
        kernels = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
        cells = 0
        for width in (c, 2 * c, 4 * c):
            for j, i in EDGES:
                k = kernels.get(str(arch[_label(j, i)]))
                if k is not None:
                    cells += k * k * width * width + 2 * width
        return fixed + n * cells

    def features(self, arch: Arch) -> list[float]:
        """Path encoding (BANANAS, arXiv:1910.11858, section 4): for every sequence of 1 to 3
        non-``none`` operations, how many input-to-output paths of the cell apply exactly that
        sequence (84 counts). A path through a ``none`` edge carries nothing and is not counted.
        """
        ops = OPS[1:]
        offsets = {1: 0, 2: len(ops), 3: len(ops) + len(ops) ** 2}
        counts = [0.0] * (len(ops) + len(ops) ** 2 + len(ops) ** 3)
        for path in PATHS:
            names = [str(arch[_label(j, i)]) for j, i in path]
            if "none" in names:
                continue
            index = 0
            for name in names:
                index = index * len(ops) + ops.index(name)
            counts[offsets[len(names)] + index] += 1.0
        return counts

    def canonical_form(self, arch: Arch) -> str:
        """The function ``arch``'s cell computes, canonically: equal for isomorphic cells (the
        rule: :mod:`search_spaces.nb201_cell`), e.g. ``"nor_conv_3x3(x)"``."""
        return canonical_form(cell_ops(self.validate(arch)))

    def build(self, arch: Arch) -> Any:
        from search_spaces.nb201_model import NB201Network

        return NB201Network(cell_ops(self.validate(arch)), **self.options)

    def supernet(self, *, paths: str = "uniform") -> Any:
        """Every edge of every cell holding its five operations (SPOS, arXiv:1904.00420), one
        path per call: :class:`search_spaces.nb201_supernet.NB201Supernet`.

        Args:
            paths: how training draws paths: ``uniform`` over the 15,625 cells, or
                ``non_isomorphic``: uniform over the classes of isomorphic cells, then over the
                class's cells (Ning et al., NeurIPS 2021, "Evaluating Efficient Performance
                Estimators of Neural Architectures").
        """
        from search_spaces.nb201_supernet import NB201Supernet

        return NB201Supernet(self, paths=paths)
