"""Project hygiene: the README's commands, CI, lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_readme_quick_start_has_exactly_two_commands():
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert all(c.startswith("pip install torch==2.13.0 && ") for c in commands)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert quick_start_commands()[1] in ci


def test_results_folder_is_ignored_but_documented():
    assert (ROOT / "results" / "README.md").exists()
    out = subprocess.run(["git", "check-ignore", "results/some_run/trials.jsonl"], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0


def test_ruff_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_version_importable():
    out = subprocess.run([sys.executable, "-c", "import nas; print(nas.__version__)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip()
