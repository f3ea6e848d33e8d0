"""The supernet as a space's hook (issue 23.2): a user's space with the hook passes the
conformance suite (which catches a path that differs from its extracted child), trains, resumes
and scores; spaces without the hook, and unknown supernet options, are refused before anything
starts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_supernet import DIGITS_SPACE, FAST, TINY_SPACE

from nas.errors import ConfigError
from nas.evaluation.data import load_dataset
from nas.registry import get_space
from nas.space import Choice, Space
from nas.supernet import load_supernet, score_child, train_supernet
from nas.supernet.base import SupernetModule, has_supernet, make_supernet
from nas.testing.spaces import check_supernet_extraction, run_space_conformance


@pytest.fixture(scope="module")
def space():
    return get_space("mnasnet", **DIGITS_SPACE)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)


class TinyMLP(Space):
    """A user's space with the supernet hook (the README's example, written again)."""

    name = "tiny_mlp_supernet"

    def __init__(self, *, num_classes: int = 10, input_size: int = 8, in_channels: int = 1):
        super().__init__([Choice("width", (16, 32, 64)), Choice("depth", (1, 2, 3))],
                         options={"num_classes": num_classes, "input_size": input_size,
                                  "in_channels": in_channels})

    def input_shape(self):
        return (self.options["in_channels"], self.options["input_size"],
                self.options["input_size"])

    def build(self, arch):
        layers, width = [torch.nn.Flatten()], math.prod(self.input_shape())
        for _ in range(arch["depth"]):
            layers += [torch.nn.Linear(width, arch["width"]), torch.nn.ReLU()]
            width = arch["width"]
        return torch.nn.Sequential(*layers, torch.nn.Linear(width, self.options["num_classes"]))

    def supernet(self):
        return TinyMLPSupernet(self)


class TinyMLPSupernet(SupernetModule):
    def __init__(self, space):
        super().__init__(space)
        n = math.prod(space.input_shape())
        self.hidden = torch.nn.ModuleList([torch.nn.Linear(n if i == 0 else 64, 64)
                                           for i in range(3)])
        self.out = torch.nn.Linear(64, space.options["num_classes"])

    def child_state(self, arch):
        w, d, state = arch["width"], arch["depth"], {}
        for i, layer in enumerate([*self.hidden[:d], self.out]):
            rows = w if i < d else layer.out_features
            cols = layer.in_features if i == 0 else w
            state[f"{2 * i + 1}.weight"] = layer.weight[:rows, :cols].contiguous()
            state[f"{2 * i + 1}.bias"] = layer.bias[:rows]
        return state

    def forward(self, x, arch):
        state, x = self.child_state(arch), x.flatten(1)
        for i in range(arch["depth"] + 1):
            x = torch.nn.functional.linear(x, state[f"{2 * i + 1}.weight"],
                                           self._bias(state, i, arch["depth"]))
            x = torch.relu(x) if i < arch["depth"] else x
        return x

    def _bias(self, state, i, depth):
        return state[f"{2 * i + 1}.bias"]


class BrokenSupernet(TinyMLPSupernet):
    """Its path forgets the output layer's bias: its children compute something else."""

    def _bias(self, state, i, depth):
        return None if i == depth else state[f"{2 * i + 1}.bias"]


class BrokenTinyMLP(TinyMLP):
    name = "broken_tiny_mlp"

    def supernet(self):
        return BrokenSupernet(self)


class PlainSpace(TinyMLP):
    """No supernet hook."""

    name = "plain_mlp"
    supernet = Space.supernet


def test_a_user_space_with_the_hook_passes_the_conformance_suite():
    assert has_supernet(TinyMLP()) and not has_supernet(PlainSpace())
    run_space_conformance(lambda **o: TinyMLP(**o))


def test_the_conformance_check_catches_a_path_that_differs_from_its_child():
    with pytest.raises(AssertionError, match="supernet path and extracted child differ"):
        check_supernet_extraction(BrokenTinyMLP())
    with pytest.raises(AssertionError, match="supernet path and extracted child differ"):
        run_space_conformance(lambda **o: BrokenTinyMLP(**o))


def test_a_user_space_trains_resumes_and_scores(data, tmp_path):
    space = TinyMLP()
    info = train_supernet(space, data, FAST, tmp_path / "sn")
    assert info["space"]["name"] == "tiny_mlp_supernet" and info["options"]["supernet"] == {}
    net, _ = load_supernet(tmp_path / "sn", space)
    with pytest.raises(ConfigError, match="'tiny_mlp_supernet' is not a registered space"):
        load_supernet(tmp_path / "sn")  # never imported from what a file says
    scored = score_child(net, space.sample(np.random.default_rng(0)), data, None)
    assert type(scored.child) is torch.nn.Sequential and scored.loss > 0
    with pytest.raises(ConfigError, match=r"^supernet option sampling='sandwich': the supernet "
                                          r"of space 'tiny_mlp_supernet' does not name"):
        train_supernet(space, data, {**FAST, "sampling": "sandwich"}, tmp_path / "sw")


def test_spaces_without_the_hook_and_unknown_options_are_refused(space):
    with pytest.raises(ConfigError) as err:
        make_supernet(PlainSpace())
    assert str(err.value) == ("space 'plain_mlp' has no weight-sharing supernet (it does not "
                              "implement the Space.supernet hook)")
    with pytest.raises(ConfigError) as err:
        make_supernet(space, {"kernl": "shared"})
    assert str(err.value) == ("supernet option supernet.kernl: unknown key (did you mean "
                              "'kernel'?); the supernet of space 'mnasnet' takes: kernel")
    with pytest.raises(ConfigError) as err:
        space.supernet(kernel="both")
    assert str(err.value) == "supernet option kernel='both': allowed values: shared, separate"
    assert space.supernet(kernel="separate").options == {"kernel": "separate"}


def test_a_search_of_a_space_without_the_hook_stops_before_it_starts(tmp_path):
    import nas

    base = {"controller": {"name": "random"}, "results_dir": str(tmp_path / "results"),
            "search": {"trials": 1},
            "evaluator": {"dataset": "digits", "name": "supernet", "options": {}}}
    plain = {**base, "space": {"name": "tests.test_supernet_hook:PlainSpace"}}
    with pytest.raises(ConfigError, match="^evaluator 'supernet': space 'plain_mlp' has no "
                                          "weight-sharing supernet"):
        nas.search(plain, name="x", progress=False)
    typo = {**base, "space": {"name": "mnasnet", "options": TINY_SPACE},
            "evaluator": {**base["evaluator"], "options": {"supernet": {"kernl": "shared"}}}}
    with pytest.raises(ConfigError, match="supernet option supernet.kernl: unknown key"):
        nas.search(typo, name="x", progress=False)
    assert not (tmp_path / "results" / "x").exists()
