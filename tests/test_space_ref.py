"""A space reaches Ray's workers by a name they can resolve: built-ins by their registered name, a
user's space (registered by importing the user's module) by ``module:Class``."""

from __future__ import annotations

import importlib
import sys

from nas.registry import SPACES, get_space
from nas.runner.latency_service import space_ref

MODULE = '''
import torch
from nas import Choice, Space, register_space


@register_space("user_registered_mlp")
class UserMLP(Space):
    def __init__(self, *, num_classes: int = 10, input_size: int = 4, in_channels: int = 1):
        super().__init__([Choice("width", (4, 8))], options={
            "num_classes": num_classes, "input_size": input_size, "in_channels": in_channels})

    def input_shape(self):
        return (1, 4, 4)

    def build(self, arch):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, arch["width"]))
'''


def test_builtin_spaces_go_by_their_registered_name():
    assert space_ref(get_space("mnasnet")) == "mnasnet"
    assert space_ref(get_space("nasbench201")) == "nasbench201"


def test_a_user_space_registered_by_import_goes_by_module_and_class(tmp_path, monkeypatch):
    (tmp_path / "user_space_mod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        module = importlib.import_module("user_space_mod")
        space = SPACES.create("user_registered_mlp")
        assert space_ref(space) == "user_space_mod:UserMLP"
        # what a worker that never imported the module does with that name
        again = SPACES.create(space_ref(space))
        assert type(again).__name__ == "UserMLP" and again.options == space.options
        assert module.UserMLP is type(again)
    finally:
        sys.modules.pop("user_space_mod", None)
        SPACES._entries.pop("user_registered_mlp", None)  # the registry as it was
