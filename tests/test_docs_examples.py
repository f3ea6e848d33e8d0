"""Every example in the README and the documentation site runs as written (small budgets, a fresh
temporary folder per page, never the working tree's ``results/``); the rules are in
:mod:`tests.docs_examples`. A block not run says why on its page."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import docs_examples as dx
import pytest

PAGES = dx.pages()
# the pages that run the quick start themselves; every other page starts after it
QUICKSTART_PAGES = {"README.md", "docs/tutorial/first-search.md", "docs/how-to/search.md"}
SMALL_SEARCH = ["--trials", "4", "--set", "evaluator.epochs=1", "--set", "evaluator.max_train=300",
                "--set", "reward.target=1.0", "--set", "search.remeasure_top=2"]


def _id(path: Path) -> str:
    return str(path.relative_to(dx.ROOT))


@pytest.fixture(scope="session")
def docs_env(tmp_path_factory):
    shims = dx.shim_folder(tmp_path_factory.mktemp("docs-shims"))
    data = dx.fake_cifar10(tmp_path_factory.mktemp("docs-cifar10"))
    return dx.environment(shims, data)


@pytest.fixture(scope="session")
def quickstart(tmp_path_factory, docs_env):
    """One small quick-start run and its rank-1 card, made once per test session and copied
    where needed. Under pytest-xdist the pages run on every worker, and the first worker to need
    the run makes it in the session's shared temporary folder (a file lock; the others wait and
    reuse it)."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:  # one process (no xdist): its own folder
        return _make_quickstart(tmp_path_factory.mktemp("docs-quickstart"), docs_env)
    shared = tmp_path_factory.getbasetemp().parent  # this session's, common to its workers
    where = shared / "docs-quickstart"
    with FileLock(str(shared / "docs-quickstart.lock")):
        if not (where / "made").is_file():
            if where.exists():  # a worker failed half-way: start again
                shutil.rmtree(where)
            where.mkdir()
            _make_quickstart(where, docs_env)
            (where / "made").write_text("")
    return where


def _make_quickstart(where: Path, env: dict[str, str]) -> Path:
    dx.copy_configs(where)
    # four children (the export page ranks three), the rest as small as the shim makes them
    setup = dx.Block("fixture", 0, "bash", f"{sys.executable} -m nas.cli search "
                     "configs/quickstart.yaml --quiet " + " ".join(SMALL_SEARCH) + "\n"
                     "nas export results/quickstart --format json --out cards/best")
    dx.run_block(setup, where, env)
    return where


def test_every_page_has_examples_that_run_or_say_why():
    seen = 0
    for page in PAGES:
        for block in dx.blocks(page):
            if block.lang in ("bash", "python"):
                seen += 1
                assert block.runs or block.skip_reason, f"{block.page}:{block.line}"
                if block.skip_reason is not None:
                    assert len(block.skip_reason) > 10, \
                        f"{block.page}:{block.line}: a block not run must say why"
    assert seen > 40


def test_the_rules_find_skips_saves_and_budgets(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("*Not run by the tests: it needs a GPU\nof its own.*\n\n```bash\nnas x\n```\n\n"
                    "Save it as `mod.py`:\n\n```python\nX = 1\n```\n\n```text\nout\n```\n")
    found = dx.blocks(page)
    assert [b.lang for b in found] == ["bash", "python", "text"]
    assert found[0].skip_reason == "it needs a GPU of its own." and not found[0].runs
    assert found[1].save_as == "mod.py" and found[1].runs and not found[2].runs
    script = dx.prepare_bash("pip install torch==2.13.0 && pip install -e . && nas search c.yaml\n"
                             "pip install -e '.[test]' && python -m pytest -q -n 2\n")
    assert "pip install" not in script and "pytest" not in script and "nas search c.yaml" in script
    code = dx.prepare_python('nas.search("c.yaml", trials=8, overrides={"evaluator.epochs": 3})')
    assert "trials=2" in code and '"reward.target": 1.0' in code
    for note in ("*Not run as written: x.*\n\n", ""):
        page.write_text(f"{note}```bash\nray start --head\n```\n")
        with pytest.raises(ValueError, match="Not run|ray"):
            dx.blocks(page)


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_page_examples_run(page, tmp_path, docs_env, request):
    found = dx.blocks(page)
    runnable = [b for b in found if b.runs]
    if not runnable:
        pytest.skip(f"{_id(page)}: no runnable examples")
    if dx.needs(found, "nb201_cifar10.csv"):
        table = dx.SHARED / "nb201_cifar10.csv"
        if not table.is_file():
            pytest.skip(f"NAS-Bench-201's table is absent ({table}): see docs/how-to/benchmarks.md")
        shutil.copy(table, tmp_path / table.name)
    dx.copy_configs(tmp_path)
    if _id(page) not in QUICKSTART_PAGES:
        # the reader ran the quick start first: its run exists (a page's own search must name
        # another run), whether or not the page uses it
        made = request.getfixturevalue("quickstart")
        shutil.copytree(made / "results", tmp_path / "results")
    if dx.needs(found, "cards/best") and not dx.makes(found, r'(--out |out=")cards/best\b'):
        shutil.copytree(request.getfixturevalue("quickstart") / "cards", tmp_path / "cards")
    for block in runnable:
        dx.run_block(block, tmp_path, docs_env)
