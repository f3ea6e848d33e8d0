"""Run the documentation's examples: the code blocks of ``README.md`` and ``docs/**/*.md``.

Rules (also on the docs' Development page):

- Every ```` ```bash ```` and ```` ```python ```` block is run, in page order, in one fresh
  temporary folder per page that holds a copy of ``configs/``. Other blocks (``text``, ``yaml``)
  are not commands.
- A block right after a paragraph starting ``*Not run by the tests:`` is not run; the paragraph
  is the reason, shown on the page. Any other note starting ``*Not run`` is an error, and so is
  an unmarked block that runs ``ray start`` or ``ray stop`` (the examples never start a cluster).
- A ``python`` block right after a line ending ``Save it as `NAME.py`:`` is written to ``NAME.py``
  instead of being run (a module the next blocks import).
- ``pip install ...`` (the environment is installed already) and ``python -m pytest ...`` (the
  suite itself) are skipped within a block.
- Budgets shrink: ``nas`` is a shim (:mod:`tests.docs_shim`) that appends small-budget flags to
  ``nas search``, ``evaluate``, ``export --train-epochs``, ``bench`` and ``remeasure``, and
  checks ``nas dashboard`` by fetching its page and stopping it; in Python blocks ``trials=N``
  becomes ``trials=2`` and ``overrides={`` gains a small budget.
- Every page that does not run the quick start itself starts where a reader who did stands:
  with a copy of one small quick-start run in ``results/quickstart`` (so an example that would
  clash with it fails), and ``cards/best``, its rank-1 export, where the page uses it without
  making it; a page that needs ``nb201_cifar10.csv`` gets a copy of the shared one, or is
  skipped saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
NOT_RUN = "*Not run by the tests:"
SAVE = re.compile(r"Save it as `([\w./-]+\.py)`:\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
RAY_CLI = re.compile(r"(?m)(^|[;&|]\s*)ray (start|stop)\b")  # never started by the examples


@dataclass
class Block:
    page: str
    line: int            # 1-based line of the opening fence
    lang: str
    code: str
    skip_reason: str | None = None
    save_as: str | None = None

    @property
    def runs(self) -> bool:
        return self.lang in ("bash", "python") and self.skip_reason is None


def pages() -> list[Path]:
    """The README and every page of the site (the code map has no examples to run)."""
    found = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in found if p.name != "ARCHITECTURE.md"]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of one page, with what the line before each says about it."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match.group(1)
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        before = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        # a "Not run" note may wrap onto several lines: find its paragraph's first line
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        para = []
        while k >= 0 and lines[k].strip():
            para.insert(0, lines[k])
            k -= 1
        text = " ".join(para)
        name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
        block = Block(name, start + 1, lang, "\n".join(lines[i + 1:j]))
        if text.startswith(NOT_RUN):
            block.skip_reason = text[len(NOT_RUN):].strip(" *")
        elif text.startswith("*Not run"):
            raise ValueError(f"{name}:{start + 1}: a note before a block must start "
                             f"{NOT_RUN!r} to stop it from running")
        if block.skip_reason is None and lang == "bash" and RAY_CLI.search(block.code):
            raise ValueError(f"{name}:{start + 1}: runs the `ray` command (a cluster of its "
                             f"own); mark it {NOT_RUN!r} with the reason")
        saved = SAVE.search(before.strip())
        if saved and lang == "python":
            block.save_as = saved.group(1)
        out.append(block)
        i = j + 1
    return out


def prepare_bash(code: str) -> str:
    """The block as a script: ``pip install`` and ``python -m pytest`` commands dropped."""
    code = re.sub(r"pip install [^\n&|;]*(&&\s*)?", "", code)
    code = re.sub(r"python -m pytest[^\n]*", ":", code)
    code = re.sub(r"(?m)^\s*&&\s*", "", code)
    return "set -euo pipefail\n" + code + "\n"


def prepare_python(code: str) -> str:
    """The block with the budget the shim gives ``nas search``: ``trials=N`` -> 2, 1 epoch, a
    search's overrides shrunk (no reward-target measurement, 300 images, no re-measurement)."""
    code = re.sub(r"\btrials=\d+", "trials=2", code)
    code = re.sub(r'"evaluator\.epochs":\s*\d+', '"evaluator.epochs": 1', code)
    return code.replace("overrides={", 'overrides={"reward.target": 1.0, '
                                       '"evaluator.max_train": 300, "evaluator.epochs": 1, '
                                       '"search.remeasure_top": 0, ')


def needs(page_blocks: list[Block], text: str) -> bool:
    return any(text in b.code for b in page_blocks if b.runs)


def makes(page_blocks: list[Block], pattern: str) -> bool:
    return any(re.search(pattern, b.code) for b in page_blocks if b.runs)


def shim_folder(folder: Path) -> Path:
    """A folder holding ``nas``: the shim that runs ``python -m nas.cli`` at a small budget."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nas"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests' / 'docs_shim.py'} "
                      '"$@"\n')
    script.chmod(0o755)
    return folder


def environment(shims: Path, data_root: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["MPLBACKEND"] = "Agg"
    env["COLUMNS"] = "120"
    if data_root is not None:
        env["MNAS_DATA_DIR"] = str(data_root)
    return env


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    """Run one block in ``cwd``; its output, or AssertionError naming the page and line."""
    if block.save_as:
        (cwd / block.save_as).write_text(block.code + "\n")
        return ""
    if block.lang == "bash":
        argv = ["bash", "-c", prepare_bash(block.code)]
    else:
        script = cwd / f"_block_{block.line}.py"
        script.write_text(prepare_python(block.code) + "\n")
        argv = [sys.executable, script.name]
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{block.page}:{block.line} ({block.lang}) exited "
                             f"{out.returncode}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n"
                             f"{out.stderr[-3000:]}")
    return out.stdout


def copy_configs(cwd: Path) -> None:
    shutil.copytree(ROOT / "configs", cwd / "configs")


def fake_cifar10(root: Path, per_batch: int = 300) -> Path:
    """CIFAR-10's binary batches in the official layout, random pixels, balanced labels."""
    import numpy as np

    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, (per_batch, 3073), dtype=np.uint8)
        records[:, 0] = np.arange(per_batch) % 10
        records.tofile(folder / name)
    return root
