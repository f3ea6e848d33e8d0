"""Conformance suite for search spaces.

Every registered space must pass these checks; ``tests/test_space_conformance.py`` applies them to
``nas.SPACES``. Use them for your own space too::

    from nas.testing.spaces import run_space_conformance
    run_space_conformance(lambda **o: MySpace(**o), input_sizes=(16, 32))

Each check raises ``AssertionError`` with a readable message when the space misbehaves. A space
with the supernet hook (:meth:`nas.space.Space.supernet`) is also checked for exact extraction
(:func:`check_supernet_extraction`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.errors import InvalidArchError
from nas.space import Arch, Space

__all__ = [
    "indices_strategy",
    "check_sample_validate",
    "check_roundtrips",
    "check_mutate",
    "check_validate_errors",
    "check_key_stable_across_processes",
    "check_build_forward",
    "check_supernet_extraction",
    "run_space_conformance",
]

SpaceFactory = Callable[..., Space]


def indices_strategy(space: Space) -> st.SearchStrategy[list[int]]:
    """Hypothesis strategy of valid index vectors of ``space``."""
    return st.tuples(*[st.integers(0, len(c) - 1) for c in space.choices().values()]).map(list)


def check_sample_validate(space: Space, n: int = 30, seed: int = 0) -> None:
    """Samples are valid, reproducible from the seed, and validate to themselves."""
    a = [space.sample(np.random.default_rng(seed)) for _ in range(2)]
    assert a[0] == a[1], "sample() with the same seed gave different architectures"
    rng = np.random.default_rng(seed)
    for _ in range(n):
        arch = space.sample(rng)
        assert isinstance(arch, Arch) and arch.space == space.name
        assert list(arch) == space.labels(), "arch labels differ from the space's decision order"
        assert space.validate(dict(arch.items())) == arch
        assert space.validate(arch) == arch


def check_roundtrips(space: Space, max_examples: int = 60) -> None:
    """encode/decode, JSON and string forms round-trip (property-based, hypothesis)."""

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(indices_strategy(space))
    def prop(indices: list[int]) -> None:
        arch = space.decode(indices)
        assert space.encode(arch) == indices
        assert space.arch_from_json(arch.to_json()) == arch
        assert space.arch_from_json(json.loads(arch.to_json())) == arch
        assert space.from_string(space.to_string(arch)) == arch
        assert hash(space.decode(list(indices))) == hash(arch)

    prop()


def check_mutate(space: Space, n: int = 50, seed: int = 1) -> None:
    """``mutate`` changes exactly one decision, stays valid and is seeded."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        arch = space.sample(rng)
        child = space.mutate(arch, rng)
        assert space.validate(child) == child
        changed = [label for label in arch if arch[label] != child[label]]
        assert len(changed) == 1, f"mutate changed {len(changed)} decisions: {changed}"
    arch = space.sample(np.random.default_rng(seed))
    again = [space.mutate(arch, np.random.default_rng(7)) for _ in range(2)]
    assert again[0] == again[1], "mutate() with the same seed gave different children"


def check_validate_errors(space: Space) -> None:
    """Unknown label, missing label and a value outside its choices raise InvalidArchError."""
    arch = space.sample(np.random.default_rng(0))
    values = dict(arch.items())
    label = space.labels()[0]
    cases = [
        ({**values, "no.such.label": 1}, ["no.such.label"]),
        ({k: v for k, v in values.items() if k != label}, [label]),
        (
            {**values, label: "__bad_value__"},
            [label, "__bad_value__", repr(space.choices()[label].options[0])],
        ),
    ]
    for bad, must_name in cases:
        try:
            space.validate(bad)
        except InvalidArchError as exc:
            msg = str(exc)
            assert "\n" not in msg, "error message must be one line"
            for word in must_name:
                assert word in msg, f"error {msg!r} does not name {word!r}"
        else:
            raise AssertionError(f"validate accepted an invalid architecture: {bad}")


_KEY_SCRIPT = """
import json, sys
from nas.space import Arch
req = json.loads(sys.stdin.read())
print(json.dumps([Arch(req["space"], [tuple(i) for i in items], idx).key
                  for items, idx in req["archs"]]))
"""


def check_key_stable_across_processes(space: Space, n: int = 10, seed: int = 2) -> None:
    """Arch keys computed in a fresh interpreter (hash seed changed) equal the keys here.

    The fresh process rebuilds each architecture from its plain decisions alone, so the check
    works for any space, registered or not (a class declared in ``__main__`` included).
    """
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    request = {"space": space.name,
               "archs": [[[list(kv) for kv in a.items()], list(a.indices)] for a in archs]}
    env = {**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", _KEY_SCRIPT],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert out.returncode == 0, f"key subprocess failed: {out.stderr.strip()[-500:]}"
    assert json.loads(out.stdout) == [a.key for a in archs], "arch keys differ across processes"


def check_build_forward(
    make_space: SpaceFactory,
    input_sizes: Sequence[int],
    n: int = 3,
    seed: int = 3,
    num_classes: int = 7,
    batch: int = 2,
) -> None:
    """Random samples build and map (batch, C, H, W) to (batch, num_classes) at several sizes."""
    import torch

    rng = np.random.default_rng(seed)
    for size in input_sizes:
        space = make_space(input_size=size, num_classes=num_classes)
        for _ in range(n):
            arch = space.sample(rng)
            model = space.build(arch).eval()
            with torch.no_grad():
                out = model(torch.randn(batch, *space.input_shape()))
            assert tuple(out.shape) == (batch, num_classes), (
                f"{space.name} at {size}x{size}: output {tuple(out.shape)} "
                f"!= {(batch, num_classes)}"
            )
            assert torch.isfinite(out).all(), f"{space.name}: non-finite output"


def _scramble(module: Any, seed: int) -> None:
    """Random BN statistics and affine parameters, and noise on every other parameter, so that a
    wrong slice of any tensor (a zero bias, a unit BN included) changes the output."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
                m.running_mean.normal_(0.0, 0.2, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def check_supernet_extraction(space: Space, n: int = 4, seed: int = 4, batch: int = 2,
                              options: dict[str, Any] | None = None) -> None:
    """The supernet's path and the child cut out of it compute the same (``torch.equal``, eval
    mode) on a seeded input, for ``n`` sampled architectures (and the sandwich extremes, when the
    supernet names them); the child is ``space.build(arch)``'s class."""
    import torch

    from nas.supernet.base import make_supernet, names_extremes

    torch.manual_seed(seed)
    net = make_supernet(space, options)
    _scramble(net, seed)
    net.eval()
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(n)]
    if names_extremes(net):
        archs += list(net.extremes())
    x = torch.randn(batch, *space.input_shape(), generator=torch.Generator().manual_seed(seed))
    for arch in archs:
        child = net.extract(arch)
        assert type(child) is type(space.build(arch)), (
            f"{space.name}: extract gave {type(child).__name__}, build gives another class")
        assert not child.training, f"{space.name}: the extracted child is not in eval mode"
        with torch.no_grad():
            path, alone = net(x, arch), child(x)
        assert torch.equal(path, alone), (
            f"{space.name}: supernet path and extracted child differ for {arch.to_json()} "
            f"(max |difference| {(path - alone).abs().max().item():.3g})")


def run_space_conformance(
    make_space: SpaceFactory, input_sizes: Sequence[int] = (8, 32), **kwargs: Any
) -> None:
    """Run every check on ``make_space()`` (``make_space(input_size=..., num_classes=...)`` too);
    the supernet extraction check when the space has the supernet hook."""
    from nas.supernet.base import has_supernet

    space = make_space(**kwargs)
    check_sample_validate(space)
    check_roundtrips(space)
    check_mutate(space)
    check_validate_errors(space)
    check_key_stable_across_processes(space)
    check_build_forward(make_space, input_sizes)
    if has_supernet(space):
        check_supernet_extraction(space)
