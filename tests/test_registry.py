"""Registries: built-ins, user registration, module:attribute names, errors."""

from __future__ import annotations

import sys
import textwrap

import pytest

import nas
from nas.errors import UnknownNameError, UsageError
from nas.registry import Registry, import_object


def test_builtin_spaces_are_registered():
    assert {"mnasnet", "nasbench201"} <= set(nas.SPACES.names())
    assert "mnasnet" in nas.SPACES


def test_unknown_name_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        nas.get_space("resnet")
    msg = str(err.value)
    assert "unknown space 'resnet'" in msg and "mnasnet" in msg and "nasbench201" in msg


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="no_such_option: not an option of space 'mnasnet'; "
                                         "it takes: input_size, num_classes"):
        nas.get_space("mnasnet", no_such_option=1)
    with pytest.raises(UsageError, match="did you mean 'width_mult'"):
        nas.get_space("mnasnet", widht_mult=1)
    with pytest.raises(UsageError, match="width_mult=-1"):
        nas.get_space("mnasnet", width_mult=-1)


def test_register_user_space_and_conflict():
    reg = Registry("thing")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A
    assert reg.create("a").__class__ is A

    class B:
        pass

    with pytest.raises(UsageError, match="already registered"):
        reg.register("a")(B)
    with pytest.raises(UsageError, match="without ':'"):
        reg.register("x:y")


def test_module_attribute_names(tmp_path, monkeypatch):
    (tmp_path / "my_spaces.py").write_text(
        textwrap.dedent("""
        import torch
        from nas import Choice, Space

        class Tiny(Space):
            name = "tiny"
            def __init__(self, *, num_classes=3, input_size=4):
                super().__init__([Choice("width", (4, 8))],
                                 options={"num_classes": num_classes, "input_size": input_size})
            def input_shape(self):
                return (1, self.options["input_size"], self.options["input_size"])
            def build(self, arch):
                return torch.nn.Sequential(torch.nn.Flatten(),
                    torch.nn.Linear(self.options["input_size"] ** 2, arch["width"]),
                    torch.nn.Linear(arch["width"], self.options["num_classes"]))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    space = nas.get_space("my_spaces:Tiny", num_classes=5)
    assert space.size() == 2 and space.options["num_classes"] == 5
    from nas.testing.spaces import run_space_conformance

    run_space_conformance(lambda **o: nas.get_space("my_spaces:Tiny", **o), input_sizes=(4, 6))
    sys.modules.pop("my_spaces", None)


def test_import_object_errors():
    with pytest.raises(UsageError, match="expected 'package.module:attribute'"):
        import_object("nocolon")
    with pytest.raises(UsageError, match="cannot import module 'no_such_mod'"):
        import_object("no_such_mod:X")
    with pytest.raises(UsageError, match="has no 'Nope'"):
        import_object("nas.space:Nope")


def test_get_space_requires_a_space():
    with pytest.raises(UsageError, match="expected a nas.Space subclass, found the class"):
        nas.get_space("collections:OrderedDict")


@pytest.mark.parametrize("name, needle", [
    (".relative:X", "absolute dotted name"),
    ("pkg..mod:X", "absolute dotted name"),
    ("os path:X", "absolute dotted name"),
    ("os:a b", "dotted name"),
    ("venv.__main__:x", "__main__ module runs a program"),
    ("unittest.__main__:x", "__main__ module runs a program"),
])
def test_malformed_or_program_names_are_refused_before_any_import(name, needle, monkeypatch):
    imported = []
    monkeypatch.setattr("importlib.import_module", lambda *a, **k: imported.append(a))
    with pytest.raises(UsageError, match=needle):
        nas.get_space(name)
    assert imported == []


def test_names_read_from_files_are_not_imported_without_trust(tmp_path, monkeypatch):
    from nas.errors import UntrustedNameError
    from nas.registry import names_from

    (tmp_path / "side_effect.py").write_text(
        f"open({str(tmp_path / 'ran')!r}, 'w').close()\nfrom nas.testing.fixtures import "
        "ToySpace as S\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with names_from(tmp_path / "config.yaml"):
        with pytest.raises(UntrustedNameError, match=r"'side_effect:S' in .*config.yaml: a "
                                                     "'module:attribute' name read from a file"):
            nas.get_space("side_effect:S")
        assert nas.get_space("mnasnet", input_size=32).options["input_size"] == 32
    assert not (tmp_path / "ran").exists()  # the module's top-level code never ran
    with names_from(tmp_path / "config.yaml", trust_code=True):
        assert nas.get_space("side_effect:S").size() > 1
    assert (tmp_path / "ran").exists()
    sys.modules.pop("side_effect", None)


def test_entry_points_register_installed_spaces(tmp_path, monkeypatch):
    """An installed package's ``mnas.spaces`` entry point is a registered name: usable from a
    file without trust, listed, loaded only when asked for."""
    from nas.registry import SPACES, names_from

    (tmp_path / "plugin_spaces.py").write_text(
        "from nas.testing.fixtures import ToySpace\n\nclass PluginSpace(ToySpace):\n"
        "    name = None\n")
    info = tmp_path / "mnas_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mnas-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[mnas.spaces]\nplugin = plugin_spaces:PluginSpace\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "plugin" in SPACES.names() and "plugin" in SPACES
    assert "plugin_spaces" not in sys.modules  # listed, not imported
    with names_from(tmp_path / "arch.json"):  # a name read from a file: still fine
        space = nas.get_space("plugin")
    assert type(space).__name__ == "PluginSpace" and type(space).name == "plugin"
    sys.modules.pop("plugin_spaces", None)
    SPACES._entries.pop("plugin", None)
