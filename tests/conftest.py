"""Shared pytest fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# Inherited by every process the tests start (the CLI, the docs' examples, Ray's workers): two
# pytest-xdist workers on 2 cores, each running torch on as many threads as there are cores,
# oversubscribe the machine, and torch's threads then wait on each other (a docs example took
# 20 s alone and 155 s beside a 2-worker search). Tests that need more threads ask for them.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _torch_threads():
    """Keep torch on one thread in tests: faster on 2 cores and deterministic."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if the driver starts Ray (a command that must stop first). A module whose
    every test must not start Ray sets ``pytestmark = pytest.mark.usefixtures("no_ray")``."""
    import nas.runner.driver

    def refuse(*args, **kwargs):
        raise AssertionError("Ray must not start")

    monkeypatch.setattr(nas.runner.driver, "start_ray", refuse)


# Under pytest-xdist (``-n 2 --dist loadgroup``) each test module is one group, run on one worker,
# so a module's expensive module-scoped fixture (a real search, a trained supernet) is made once;
# the docs' page examples are the exception (one module, many minutes): they spread over the
# workers and share their quick-start run through a file lock (tests/test_docs_examples.py).
# The group marker must be in place before pytest-xdist reads it: this hook runs first.
_SPREAD_MODULES = ("test_docs_examples.py",)


def _group_by_module(config, items):
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.path.name not in _SPREAD_MODULES:
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


def _docs_pages_first(items):
    """The docs' page examples (tens of seconds each) first, the heaviest first, so that they do
    not leave one worker busy at the end while the other is idle; the pages that run the quick
    start themselves lead (the others wait for the shared quick-start run)."""
    import re

    import docs_examples
    from test_docs_examples import QUICKSTART_PAGES

    heavy = re.compile(r"\bnas (search|resume|export|evaluate|latency|remeasure|bench)\b|"
                       r"nas\.(search|resume)\(|\btrain\(")

    def weight(item):
        page = item.callspec.params["page"]
        lead = any(str(page).endswith("/" + q) for q in QUICKSTART_PAGES)
        code = "\n".join(b.code for b in docs_examples.blocks(page) if b.runs)
        return (not lead, -len(heavy.findall(code)))

    pages = [i for i in items if i.path.name == "test_docs_examples.py"
             and getattr(i, "callspec", None) is not None and "page" in i.callspec.params]
    if pages:
        chosen = set(pages)
        items[:] = sorted(pages, key=weight) + [i for i in items if i not in chosen]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Group each module's tests on one xdist worker (the docs' examples excepted, and run
    first); skip tests marked ``gpu`` where CUDA is not available."""
    _group_by_module(config, items)
    if config.pluginmanager.hasplugin("xdist"):
        _docs_pages_first(items)
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
