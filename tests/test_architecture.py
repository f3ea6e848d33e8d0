"""The rules of the house, read from the code: every import of every module (inside functions
too) against the floors of docs/ARCHITECTURE.md, no cycles, Ray only in the runner."""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "controllers", "search_spaces")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    return {module_name(p): p for top in PACKAGES for p in sorted((ROOT / top).rglob("*.py"))}


def imports_of(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import statement, wherever it is in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names
                      if f"{target}.{a.name}" in modules()]
    return found


@lru_cache(maxsize=1)
def graph() -> dict[str, list[tuple[str, int]]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


@lru_cache(maxsize=1)
def floors() -> dict[str, int]:
    """``module prefix -> floor`` from the table of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    table = {}
    for floor, cell in re.findall(r"^\| (\d+) \| (.*?) \|", text, re.M):
        for prefix in re.findall(r"`([\w.]+)`", cell):
            table[prefix] = int(floor)
    return table


def unit(module: str) -> tuple[str, int] | None:
    """The longest floor-table prefix of ``module`` and its floor."""
    best = None
    for prefix, floor in floors().items():
        if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[0])):
            best = (prefix, floor)
    return best


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "nas" and len(parts) > 1 else parts[0]


def project(target: str) -> bool:
    return target.split(".")[0] in PACKAGES


def test_the_table_covers_every_module():
    assert floors(), "docs/ARCHITECTURE.md has no floor table"
    missing = [m for m in modules() if unit(m) is None]
    assert not missing, f"modules without a floor in docs/ARCHITECTURE.md: {missing}"


def test_imports_run_down_the_floors():
    wrong = []
    for name, targets in graph().items():
        here = unit(name)
        for target, line in targets:
            there = unit(target) if project(target) else None
            if there is None or there[0] == here[0] or package_of(name) == package_of(target):
                continue
            if there[1] >= here[1]:
                wrong.append(f"{name}:{line} (floor {here[1]}) imports {target} "
                             f"(floor {there[1]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    edges = {name: {t for t, _ in targets if t in modules() and t != name}
             for name, targets in graph().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_ray_only_in_the_runner():
    users = sorted({f"{name}:{line}" for name, targets in graph().items()
                    for target, line in targets
                    if target.split(".")[0] == "ray" and not name.startswith("nas.runner")})
    assert not users, f"Ray imported outside nas.runner: {users}"


def test_controllers_use_neither_ray_nor_the_run_folder():
    bad = sorted(f"{name}:{line} imports {target}" for name, targets in graph().items()
                 if name.startswith("controllers") for target, line in targets
                 if target.split(".")[0] == "ray" or target.startswith(("nas.results", "nas.run")))
    assert not bad, bad


def test_nothing_below_the_face_imports_nas_itself():
    bad = sorted(f"{name}:{line}" for name, targets in graph().items()
                 if name != "nas" and not name.startswith("nas.cli")
                 for target, line in targets if target == "nas")
    assert not bad, f"import the module you need, not the package face: {bad}"


def test_validators_and_config_are_torch_free():
    """One set of validators, usable without torch (the config layer and controllers need it)."""
    light = ("nas._checks", "nas.config", "nas.reward", "nas.records", "nas.errors")
    bad = sorted(f"{name}:{line} imports {target}" for name in light
                 for target, line in graph()[name]
                 if target.split(".")[0] in ("torch", "pandas", "ray"))
    assert not bad, bad


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The floor rule fails on an upward import (a guard against a checker that cannot fail)."""
    monkeypatch.setitem(graph(), "nas.space", [("nas.runner.driver", 1)])
    with pytest.raises(AssertionError, match="nas.space:1 .floor 2. imports nas.runner.driver"):
        test_imports_run_down_the_floors()


def test_light_commands_import_neither_torch_nor_ray():
    """``nas status`` (through ``nas.runner.progress``) and the CLI's parsers start in a fraction
    of a second: importing one runner module must not import the whole runner (Ray, torch)."""
    import subprocess
    import sys

    code = ("import sys, nas.cli, nas.cli.search_cmds, nas.runner.progress\n"
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
