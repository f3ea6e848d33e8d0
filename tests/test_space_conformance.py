"""The space conformance suite, applied to every registered space."""

from __future__ import annotations

import functools

import pytest

import nas
from nas.supernet.base import has_supernet
from nas.testing import spaces as conf

# input sizes at which each built-in space is built and run; other spaces use the default
INPUT_SIZES = {"mnasnet": (8, 32, 64), "nasbench201": (8, 32)}


@pytest.fixture(params=nas.SPACES.names())
def space_name(request):
    return request.param


def _factory(name):
    return functools.partial(nas.get_space, name)


def test_sample_validate(space_name):
    conf.check_sample_validate(nas.get_space(space_name))


def test_roundtrips(space_name):
    conf.check_roundtrips(nas.get_space(space_name))


def test_mutate_changes_exactly_one_decision(space_name):
    conf.check_mutate(nas.get_space(space_name))


def test_validate_errors(space_name):
    conf.check_validate_errors(nas.get_space(space_name))


def test_key_stable_across_processes(space_name):
    conf.check_key_stable_across_processes(nas.get_space(space_name))


def test_build_forward(space_name):
    conf.check_build_forward(_factory(space_name), INPUT_SIZES.get(space_name, (8, 32)))


# small enough to build every choice at once on a CPU; nasbench201 at the benchmark's own size
SUPERNET_SPACES = {"mnasnet": {"input_size": 32, "num_classes": 10, "width_mult": 0.5,
                               "stem_channels": 16, "head_channels": 64},
                   "nasbench201": {}}


@pytest.mark.parametrize("name", sorted(SUPERNET_SPACES))
def test_supernet_extraction(name):
    """Every built-in space has the supernet hook, and its children equal its paths."""
    space = nas.get_space(name, **SUPERNET_SPACES[name])
    assert has_supernet(space)
    conf.check_supernet_extraction(space)


def test_suite_catches_a_broken_space():
    """The suite must fail on a space whose mutate changes two decisions."""

    class Broken(nas.Space):
        name = "broken"

        def __init__(self):
            super().__init__([nas.Choice("a", (1, 2)), nas.Choice("b", (1, 2))])

        def mutate(self, arch, rng):
            return self.decode([1 - i for i in arch.indices])

    with pytest.raises(AssertionError, match="changed 2 decisions"):
        conf.check_mutate(Broken())


def test_the_docs_own_space_example_passes_as_written(tmp_path):
    """The own-space page's module, saved as the page says, and its conformance block, run in a
    fresh interpreter."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "how-to" / "own-space.md").read_text()
    module, check = re.findall(r"```python\n(.*?)```", page, re.S)[:2]
    (tmp_path / "tiny_space.py").write_text(module)
    (tmp_path / "check.py").write_text(check)
    out = subprocess.run([sys.executable, "check.py"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("passes the conformance suite")
