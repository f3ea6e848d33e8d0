"""The documentation site builds with warnings as errors, its generated reference matches the
code, and the README stays a front page."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _reference():
    path = ROOT / "docs" / "gen_reference.py"
    spec = importlib.util.spec_from_file_location("gen_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs", reason="no mkdocs: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="mkdocs-material is not installed")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    cli = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert "nas search" in cli and "--trust-code" in cli
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "load_run" in api and "search" in api


def test_the_cli_reference_holds_every_command_and_flag():
    from nas.cli import build_parser

    page = _reference().render_cli()
    parser = build_parser()
    commands = [a for a in parser._actions if a.dest == "command"][0].choices
    for name, sub in commands.items():
        assert f"## `nas {name}`" in page, name
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in page, f"nas {name} {flag}"


def test_the_config_reference_holds_every_key_with_its_default():
    from nas.schema import config_keys

    page = _reference().render_config_keys()
    for key in config_keys():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{key.key}` |"))
        assert ("*required*" in row) == key.required, key.key


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 150, len(lines)
    text = "\n".join(lines)
    # the two quick-start commands come first, and .ci/run runs the second
    blocks = [b.split("```")[0].strip() for b in text.split("```bash\n")[1:3]]
    assert blocks[0].endswith("nas search configs/quickstart.yaml")
    test_command = blocks[1]
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_every_page_is_in_the_navigation():
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def walk(nav):
        for entry in nav:
            for value in entry.values():
                yield from (walk(value) if isinstance(value, list) else [value])

    listed = set(walk(config["nav"]))
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    generated = {"reference/cli.md", "reference/config-keys.md"}
    assert pages | generated == listed, (pages | generated) ^ listed
