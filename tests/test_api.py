"""The Python API: nas.search and nas.resume, same validation as the CLI, exit codes as
exceptions (a real search through it: tests/test_analyze_search.py)."""

from __future__ import annotations

import pytest

import nas
from nas.api import _outcome
from nas.errors import SearchFailed, SearchInterrupted, UsageError
from nas.runner.driver import SearchResult
from nas.testing.fixtures import TOY_SEARCH


def test_bad_config_raises_before_anything_starts(tmp_path):
    bad = {**TOY_SEARCH, "controller": {"name": "evolutoin"}}
    with pytest.raises(UsageError, match="evolutoin.*did you mean 'evolution'"):
        nas.search(bad, results_dir=tmp_path / "results", progress=False)
    with pytest.raises(UsageError, match="search.trials=0"):
        nas.search(TOY_SEARCH, trials=0, results_dir=tmp_path / "results", progress=False)
    with pytest.raises(UsageError, match="evaluator.epoch: unknown key"):
        nas.search(TOY_SEARCH, overrides={"evaluator.epoch": 2}, results_dir=tmp_path / "r")
    with pytest.raises(UsageError, match="overrides=.*must be a mapping"):
        nas.search(TOY_SEARCH, overrides=["evaluator.epochs=2"], results_dir=tmp_path / "r")
    assert not any(tmp_path.iterdir())  # nothing created


def test_exit_codes_become_exceptions(tmp_path):
    failed = SearchResult(run_dir=tmp_path, trials=3, target=3, failed=3, best=None,
                          complete=True, failure_reasons=[("RuntimeError: boom", 3)])
    with pytest.raises(SearchFailed, match="3 x RuntimeError: boom") as info:
        _outcome(failed)
    assert info.value.run_dir == tmp_path
    stopped = SearchResult(run_dir=tmp_path, trials=1, target=3, failed=0, best=None,
                           complete=False)
    with pytest.raises(SearchInterrupted, match=r"1/3 trials; continue with nas.resume"):
        _outcome(stopped)


def test_auto_target_is_the_median_cost_of_seeded_samples():
    """For MACs and params no Ray is needed: the median of the sampled children's counts."""
    from nas.config import parse_config
    from nas.evaluation.cost import count_cost
    from nas.experiment import build_experiment
    from nas.runner.calibrate import AUTO_SAMPLES, _archs, auto_target

    cfg = parse_config({**TOY_SEARCH, "reward": {"preset": "soft", "target": "auto",
                                                 "metric": "macs"}})
    exp = build_experiment(cfg)
    assert cfg.auto_target and exp.settings.reward.metric == "macs"
    archs = _archs(exp, AUTO_SAMPLES)
    macs = sorted(count_cost(exp.space.build(a), exp.space.input_shape()).macs for a in archs)
    assert len({a.key for a in archs}) > 1  # not one child eight times
    assert auto_target(exp, payload={}) == pytest.approx((macs[3] + macs[4]) / 2)
