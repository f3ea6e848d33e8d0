"""The declaration language: Choice, Space, Arch, and their errors."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

import nas
from nas import Arch, Choice, InvalidArchError, Space, UsageError


class Toy(Space):
    name = "toy"

    def __init__(self):
        super().__init__(
            [
                Choice("b1.kernel", (3, 5)),
                Choice("b1.se", (0.0, 0.25)),
                Choice("b1.op", ("conv", "mbconv")),
                Choice("flag", (True, False)),
            ]
        )


@pytest.fixture
def toy():
    return Toy()


def test_choices_are_ordered_and_size_is_exact(toy):
    assert toy.labels() == ["b1.kernel", "b1.se", "b1.op", "flag"]
    assert toy.size() == 16
    keys = {
        toy.decode([a, b, c, d]).key
        for a in range(2)
        for b in range(2)
        for c in range(2)
        for d in range(2)
    }
    assert len(keys) == toy.size()


@pytest.mark.parametrize(
    "label, options, match",
    [
        ("", (1, 2), "non-empty"),
        ("x", (), "at least one option"),
        ("x", (1, 1), "duplicate option"),
        ("x", (1, [2]), "must be str, int, float or bool"),
        ("x", (1.0, float("nan")), "finite"),
    ],
)
def test_choice_rejects_bad_declarations(label, options, match):
    with pytest.raises(UsageError, match=match):
        Choice(label, options)


def test_space_rejects_duplicate_labels_and_empty():
    with pytest.raises(UsageError, match="duplicate label 'a'"):
        Space([Choice("a", (1,)), Choice("a", (2,))])
    with pytest.raises(UsageError, match="no decisions"):
        Space([])


def test_validate_names_label_value_and_allowed(toy):
    good = {"b1.kernel": 3, "b1.se": 0.25, "b1.op": "conv", "flag": True}
    assert toy.validate(good)["b1.se"] == 0.25
    with pytest.raises(
        InvalidArchError, match=r"b1.kernel: value 7 is not allowed; allowed values: \[3, 5\]"
    ):
        toy.validate({**good, "b1.kernel": 7})
    with pytest.raises(InvalidArchError, match="unknown label 'b9.kernel'"):
        toy.validate({**good, "b9.kernel": 3})
    with pytest.raises(
        InvalidArchError, match=r"missing label 'flag'.*allowed values: \[True, False\]"
    ):
        toy.validate({k: v for k, v in good.items() if k != "flag"})
    with pytest.raises(InvalidArchError, match="mapping"):
        toy.validate([("b1.kernel", 3)])


def test_bool_and_int_are_distinct_but_int_float_match(toy):
    good = {"b1.kernel": 3, "b1.se": 0, "b1.op": "conv", "flag": True}
    assert toy.validate(good)["b1.se"] == 0.0  # 0 == 0.0 is the same option
    with pytest.raises(InvalidArchError, match="flag: value 1"):
        toy.validate({**good, "flag": 1})
    with pytest.raises(InvalidArchError, match="b1.kernel: value True"):
        toy.validate({**good, "b1.kernel": True})


def test_arch_is_immutable_hashable_and_canonical(toy):
    arch = toy.decode([1, 1, 0, 0])
    with pytest.raises(AttributeError):
        arch.foo = 1
    with pytest.raises(TypeError):
        arch["b1.kernel"] = 3  # Mapping has no __setitem__
    assert {arch: 1}[toy.decode([1, 1, 0, 0])] == 1
    assert arch.to_json() == (
        '{"space":"toy","decisions":{"b1.kernel":5,"b1.se":0.25,"b1.op":"conv","flag":true}}'
    )
    assert arch.key == hashlib.sha256(arch.to_json().encode()).hexdigest()[:16]
    # canonical: the same values in another order give the same arch
    shuffled = dict(reversed(list(arch.items())))
    assert toy.validate(shuffled).to_json() == arch.to_json()


def test_arch_from_json_and_string_forms(toy):
    arch = toy.decode([0, 1, 1, 1])
    assert toy.arch_from_json(arch.to_json()) == arch
    assert toy.arch_from_json(dict(arch.items())) == arch
    assert toy.from_string(toy.to_string(arch)) == arch
    with pytest.raises(InvalidArchError, match="not valid JSON"):
        toy.arch_from_json("{oops")
    with pytest.raises(InvalidArchError, match="belongs to space 'other'"):
        toy.arch_from_json({"space": "other", "decisions": dict(arch.items())})
    with pytest.raises(InvalidArchError, match="expected label=value"):
        toy.from_string("b1.kernel")


def test_decode_rejects_bad_indices(toy):
    with pytest.raises(InvalidArchError, match="expected 4 indices"):
        toy.decode([0, 0])
    with pytest.raises(InvalidArchError, match=r"b1.op: index 2 is out of range; allowed: 0..1"):
        toy.decode([0, 0, 2, 0])
    with pytest.raises(InvalidArchError, match="b1.kernel: index -1"):
        toy.decode([-1, 0, 0, 0])


def test_mutate_needs_a_mutable_decision():
    single = Space([Choice("only", ("x",))])
    with pytest.raises(UsageError, match="nothing to mutate"):
        single.mutate(single.decode([0]), np.random.default_rng(0))


def test_mutate_visits_every_other_option():
    space = Space([Choice("a", (1, 2, 3, 4))])
    arch = space.decode([0])
    rng = np.random.default_rng(0)
    seen = {space.mutate(arch, rng)["a"] for _ in range(200)}
    assert seen == {2, 3, 4}


def test_arch_from_other_space_is_rejected(toy):
    other = nas.get_space("nasbench201")
    with pytest.raises(InvalidArchError, match="belongs to space 'nasbench201'"):
        toy.validate(other.sample(np.random.default_rng(0)))


def test_build_is_required(toy):
    with pytest.raises(NotImplementedError):
        toy.build(toy.decode([0, 0, 0, 0]))
    with pytest.raises(
        UsageError, match=r"preset 'x' is not known to space 'toy'; known presets: \(none\)"
    ):
        toy.build_preset("x")


def test_json_form_is_plain_data(toy):
    arch = toy.sample(np.random.default_rng(3))
    assert json.loads(arch.to_json()) == arch.to_dict()
    assert isinstance(arch, Arch) and len(arch) == 4
