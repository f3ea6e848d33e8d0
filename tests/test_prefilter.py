"""The zero-cost pre-filter (``search.prefilter``): which proposals are trained, what is recorded
for the others, and a resume that rebuilds the filter from the records.

The proxy here is ``params``, whose values are worked out by hand for the toy space's MLPs on 8x8
digits: ``64*w + w`` for the first layer, ``(w*w + w)`` per further layer, ``w*10 + 10`` for the
classifier."""

from __future__ import annotations

import math

import pytest

import nas
from nas.config import parse_config
from nas.errors import ConfigError
from nas.evaluation.data import load_dataset
from nas.evaluation.prefilter import ProxyFilter
from nas.experiment import build_experiment
from nas.records import TrialStatus
from nas.results import RunDir
from nas.runner.search import ControllerSearcher, SearchProgress, make_record
from nas.testing.fixtures import TOY_SEARCH, ToySpace


def toy_params(width, depth):
    return 64 * width + width + (depth - 1) * (width * width + width) + width * 10 + 10


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_fraction=0.2, seed=0)


def arch(space, width, depth):
    return space.validate({"width": width, "depth": depth})


def test_warmup_then_the_best_share_so_far(digits):
    space = ToySpace()
    f = ProxyFilter(space, digits, proxy="params", keep=0.5, warmup=2)
    assert f.score(arch(space, 8, 1)) == toy_params(8, 1) == 610
    # the first two are kept whatever they score
    assert f.verdict(arch(space, 8, 1))[1] is None and f.verdict(arch(space, 64, 3))[1] is None
    # the median of (610, 13130) is 6870: 16x1 (1210) is under it; 32x3 (4522) is over the
    # median of (610, 13130, 1210), 1210
    assert toy_params(64, 3) == 13130 and toy_params(16, 1) == 1210
    score, reason = f.verdict(arch(space, 16, 1))
    assert score == 1210 and "params 1210 under 6870, the best 50% of 2 proposals" in reason
    assert f.verdict(arch(space, 32, 3))[1] is None
    assert f.scores == [610, 13130, 1210, toy_params(32, 3)]


def test_keep_one_filters_nothing_and_scores_are_deterministic(digits):
    space = ToySpace()
    f = ProxyFilter(space, digits, proxy="synflow", keep=1.0, warmup=0, seed=3)
    g = ProxyFilter(space, digits, proxy="synflow", keep=1.0, warmup=0, seed=3)
    a = arch(space, 16, 2)
    assert f.verdict(a)[1] is None and f.score(a) == g.score(a) and math.isfinite(f.score(a))


def test_the_searcher_trains_only_what_passes(tmp_path, digits):
    space = ToySpace()
    controller = nas.CONTROLLERS.create("random", space=space, seed=0)
    run = RunDir.create(tmp_path, "r", {"search": {"trials": 4}})
    filt = ProxyFilter(space, digits, proxy="params", keep=0.5, warmup=2)
    searcher = ControllerSearcher(controller, run, pending=[], max_new=4, record_fn=make_record,
                                  progress=SearchProgress(total=4), prefilter=filt)
    handed = [searcher.suggest(f"t{i}") for i in range(4)]
    rejected = [r for r in run.trials() if r.status is TrialStatus.REJECTED]
    assert len(handed) == 4 and all(h is not None for h in handed)  # the budget is children run
    assert searcher.progress.rejected == len(rejected) > 0
    for r in rejected:  # each under the median of the scores before it, recorded with its score
        assert r.error.startswith("pre-filter: params") and r.metrics["zc_params"] == toy_params(
            r.arch["width"], r.arch["depth"])
    passed = {h["proposal_id"] for h in handed}
    assert not passed & {r.trial_id for r in rejected}
    tid = handed[2]["proposal_id"]
    searcher.on_trial_complete("t2", {"final": True, "record_json":
                                      '{"status": "complete", "accuracy": 0.5, "reward": 0.5}'})
    done = {r.trial_id: r for r in run.trials()}[tid]
    assert done.status is TrialStatus.COMPLETE and "zc_params" in done.metrics


def test_a_resume_rebuilds_the_filter_from_the_records(tmp_path):
    from nas.runner.driver import _prefilter

    cfg = {**TOY_SEARCH, "search": {"trials": 3, "prefilter": {"proxy": "params", "keep": 0.5}},
           "latency": {"mode": "skip"}}
    exp = build_experiment(parse_config(cfg))
    run = RunDir.create(tmp_path, "r", cfg)
    for i, score in enumerate([100, None, 300]):
        run.append_trial({"trial_id": i, "arch_key": f"k{i}", "arch": {"width": 8, "depth": 1},
                          "status": "rejected" if i == 1 else "complete", "error": None,
                          "metrics": {"zc_params": score}, "reward": None})
    filt = _prefilter(exp, run.trials())
    assert filt.scores == [100, -math.inf, 300] and filt.keep == 0.5 and filt.warmup == 10
    assert _prefilter(build_experiment(parse_config({**cfg, "search": {"trials": 3}})),
                      run.trials()) is None


def test_bad_settings_are_one_line():
    with pytest.raises(ConfigError, match=r"search.prefilter.keep=0: must be a finite number > 0"):
        parse_config({**TOY_SEARCH, "search": {"prefilter": {"proxy": "nwot", "keep": 0}}})
    with pytest.raises(ConfigError, match="search.prefilter.proxy: missing"):
        parse_config({**TOY_SEARCH, "search": {"prefilter": {"keep": 0.5}}})
    with pytest.raises(ConfigError, match="search.prefilter.proxy='nwat': allowed values"):
        build_experiment(parse_config({**TOY_SEARCH, "search": {"prefilter": {"proxy": "nwat"}},
                                       "latency": {"mode": "skip"}}))


def test_proxy_features_reach_a_model_based_controller():
    """``search.proxy_features``: bananas fits on one-hot decisions plus the standardised proxies;
    everything else is the space's own, and the controller pickles without the dataset."""
    import pickle

    cfg = {**TOY_SEARCH, "controller": {"name": "bananas", "options": {"n_init": 3}},
           "search": {"proxy_features": ["params", "synflow"]}, "latency": {"mode": "skip"}}
    exp = build_experiment(parse_config(cfg))
    seen = exp.controller.space
    assert seen.name == exp.space.name == "toy" and seen.size() == exp.space.size() == 12
    small, large = seen.validate({"width": 8, "depth": 1}), seen.validate({"width": 64, "depth": 3})
    assert len(seen.features(small)) == 2 and seen.features(small) == seen.features(small)
    assert seen.features(large)[0] > seen.features(small)[0]  # more parameters, higher feature
    for i in range(4):
        proposal = exp.controller.ask()
        exp.controller.tell(proposal, 0.1 * i)
    assert exp.controller._has_features  # the predictor's inputs include them
    rows = exp.controller._encode_many(__import__("numpy").array([small.indices]))
    assert rows.shape[1] == sum(len(c) for c in exp.space.choices().values()) + 2
    assert len(pickle.dumps(exp.controller)) < 100_000  # no dataset in the pickle
    with pytest.raises(ConfigError, match="search.proxy_features: 'flops' is not a zero-cost"):
        build_experiment(parse_config({**cfg, "search": {"proxy_features": ["flops"]}}))
