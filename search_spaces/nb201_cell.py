"""The NAS-Bench-201 cell as a graph (Dong & Yang, arXiv:2001.00326): its operations, edges and
input-to-output paths, and a canonical form that names the cells computing the same function.

Torch-free: :mod:`search_spaces.nasbench201` (the space), :mod:`search_spaces.nb201_model` (the
network) and :mod:`search_spaces.nb201_supernet` (the weight-sharing supernet) all read it.

**Isomorphic cells.** Of the 5**6 = 15,625 cells many compute the same function: an edge whose
target never reaches the output is unused, a ``none`` edge carries nothing, and a
``skip_connect`` only renames its source. :func:`canonical_form` writes the function a cell
computes as an expression of its input ``x``, built node by node:

- node 0 is the multiset ``{x}``; node ``j`` is the multiset union of what its edges carry;
- a ``none`` edge, or any edge leaving a node that carries nothing (an empty multiset, "zero"),
  carries nothing. An operation applied to zero is taken as zero: exact for ``skip_connect`` and
  ``avg_pool_3x3``; for ``nor_conv_*`` (ReLU, conv, BN) it is a constant that does not depend on
  the input, which NAS-Bench-201's own de-duplication treats as zero too;
- a ``skip_connect`` edge carries its source's terms unchanged (so sums flatten: ``a + (b + c)``
  and ``(a + b) + c`` are the same multiset);
- another operation carries one term, ``op(source)``, with the source written canonically;
- the cell's form is node 3's terms, sorted and joined with ``+`` (``"0"`` when there are none).

Two cells are isomorphic when their forms are equal; this is an isomorphism of the computation
graph after removing zero edges and contracting identities. It does not use algebra of the
operations (``avg_pool(a + b)`` stays apart from ``avg_pool(a) + avg_pool(b)``, and two parallel
edges of one operation stay two terms: their weights differ). It gives 4,930 classes. The
benchmark's ``to_unique_str(consider_zero=True)`` gives the 6,466 "unique" cells of the paper:
it keeps zero summands (``x + 0`` differs from ``x`` there), so every one of its classes lies
inside one of ours (``tests/test_supernet_nb201.py`` checks both counts and the inclusion).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import lru_cache

__all__ = ["OPS", "EDGES", "PATHS", "label", "cell_ops", "canonical_form",
           "isomorphism_classes"]

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = tuple((j, i) for j in range(1, 4) for i in range(j))  # (to, from) in benchmark order
# every path from the cell's input (node 0) to its output (node 3), as (to, from) edges
PATHS = (((3, 0),), ((1, 0), (3, 1)), ((2, 0), (3, 2)), ((1, 0), (2, 1), (3, 2)))

Ops = Mapping[tuple[int, int], str]


def label(to: int, frm: int) -> str:
    """The decision label of edge ``frm -> to`` (``node{to}.from{frm}``)."""
    return f"node{to}.from{frm}"


def cell_ops(arch: Mapping[str, object]) -> dict[tuple[int, int], str]:
    """``{(to, from): op}`` of a cell given by its decisions (an ``Arch`` of the space)."""
    return {(j, i): str(arch[label(j, i)]) for j, i in EDGES}


def canonical_form(ops: Ops) -> str:
    """The cell's function as a canonical expression of its input ``x`` (module docstring), e.g.
    ``"avg_pool_3x3(x)+nor_conv_3x3(x+nor_conv_1x1(x))"``; ``"0"`` when nothing reaches the
    output."""
    nodes: list[tuple[str, ...]] = [("x",)]
    for j in range(1, 4):
        terms: list[str] = []
        for i in range(j):
            op, source = ops[(j, i)], nodes[i]
            if op == "none" or not source:
                continue
            if op == "skip_connect":
                terms.extend(source)
            else:
                terms.append(f"{op}({'+'.join(source)})")
        nodes.append(tuple(sorted(terms)))
    return "+".join(nodes[3]) or "0"


@lru_cache(maxsize=1)
def isomorphism_classes() -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Every cell, as option indices in :data:`EDGES` order (the space's encoding), grouped by
    :func:`canonical_form`; classes in order of their first member, members in encoding order."""
    classes: dict[str, list[tuple[int, ...]]] = {}
    for indices in itertools.product(range(len(OPS)), repeat=len(EDGES)):
        form = canonical_form({edge: OPS[k] for edge, k in zip(EDGES, indices, strict=True)})
        classes.setdefault(form, []).append(indices)
    return tuple(tuple(members) for members in classes.values())
