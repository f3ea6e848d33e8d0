"""MnasNet reward (arXiv:1807.11626, eq. 2) against hand-computed values, and Pareto helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nas.errors import ConfigError
from nas.reward import PRESETS, RewardConfig, mnas_reward, pareto_mask

# Hand computation: 2 ** -0.07 = exp(-0.07 * ln 2) = exp(-0.0485203) = 0.952638;
# 0.5 ** -0.07 = 1 / 0.952638 = 1.049717.
SOFT_TWICE_SLOW = 0.952638
SOFT_HALF_TIME = 1.049717


@pytest.mark.parametrize(
    ("acc", "lat", "target", "alpha", "beta", "expected"),
    [
        (0.75, 80.0, 80.0, -0.07, -0.07, 0.75),  # at the target: no change
        (0.75, 160.0, 80.0, -0.07, -0.07, 0.75 * SOFT_TWICE_SLOW),  # 0.714479
        (0.75, 40.0, 80.0, -0.07, -0.07, 0.75 * SOFT_HALF_TIME),  # 0.787288
        (0.80, 40.0, 80.0, 0.0, -1.0, 0.80),  # hard, under the target: accuracy itself
        (0.80, 80.0, 80.0, 0.0, -1.0, 0.80),  # hard, exactly at the target (alpha applies)
        (0.80, 100.0, 80.0, 0.0, -1.0, 0.64),  # hard, over: 0.8 * 80 / 100
        (0.50, 200.0, 100.0, 0.0, -1.0, 0.25),
    ],
)
def test_reward_hand_computed(acc, lat, target, alpha, beta, expected):
    assert mnas_reward(acc, lat, target, alpha, beta) == pytest.approx(expected, abs=2e-6)


def test_soft_preset_tradeoff_of_the_paper():
    """Section 3: with w = -0.07 a model twice as slow must be ~5% more accurate to tie."""
    cfg = RewardConfig.from_preset("soft", target=50.0)
    base = cfg({"accuracy": 0.7, "latency_ms": 50.0})
    slower = cfg({"accuracy": 0.7 * 1.0497167, "latency_ms": 100.0})
    assert slower == pytest.approx(base, rel=1e-6)
    assert cfg({"accuracy": 0.7 * 1.04, "latency_ms": 100.0}) < base


def test_presets_values():
    assert PRESETS["soft"] == (-0.07, -0.07)
    assert PRESETS["hard"] == (0.0, -1.0)
    hard = RewardConfig.from_preset("hard", target=10.0, metric="macs")
    assert (hard.alpha, hard.beta, hard.metric, hard.cost_key) == (0.0, -1.0, "macs", "macs")


@pytest.mark.parametrize(("metric", "column"), [("latency", "latency_ms"), ("macs", "macs"),
                                                ("params", "params")])
def test_cost_metric_reads_its_column(metric, column):
    cfg = RewardConfig(target=100.0, alpha=0.0, beta=-1.0, metric=metric)
    record = {"accuracy": 0.9, "latency_ms": 1.0, "macs": 1.0, "params": 1.0, column: 200.0}
    assert cfg(record) == pytest.approx(0.45)


def test_recomputed_for_another_target_from_raw_metrics():
    raw = {"accuracy": 0.6, "latency_ms": 30.0, "macs": 5e6}
    at_15 = RewardConfig.from_preset("hard", 15.0)(raw)
    at_60 = RewardConfig.from_preset("hard", 60.0)(raw)
    assert at_15 == pytest.approx(0.3)  # 0.6 * 15 / 30
    assert at_60 == pytest.approx(0.6)
    assert raw == {"accuracy": 0.6, "latency_ms": 30.0, "macs": 5e6}  # inputs untouched


@pytest.mark.parametrize(
    "record",
    [
        {"latency_ms": 10.0},  # no accuracy
        {"accuracy": 0.5},  # no latency
        {"accuracy": None, "latency_ms": 10.0},
        {"accuracy": 0.5, "latency_ms": 0.0},
        {"accuracy": 0.5, "latency_ms": -3.0},
        {"accuracy": float("nan"), "latency_ms": 10.0},
        {"accuracy": 0.5, "latency_ms": float("inf")},
        {"accuracy": "high", "latency_ms": 10.0},
    ],
)
def test_missing_or_bad_metrics_give_nan(record):
    assert math.isnan(RewardConfig(target=10.0)(record))


@pytest.mark.parametrize("target", [0, -1.0, float("nan"), float("inf")])
def test_mnas_reward_rejects_bad_target(target):
    with pytest.raises(ValueError, match="target"):
        mnas_reward(0.5, 10.0, target, -0.07, -0.07)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"target": 0}, "reward.target"),
        ({"target": -5.0}, "reward.target"),
        ({"target": float("nan")}, "reward.target"),
        ({"target": True}, "reward.target"),
        ({"target": "10"}, "reward.target"),
        ({"target": 1.0, "alpha": float("inf")}, "reward.alpha"),
        ({"target": 1.0, "beta": "x"}, "reward.beta"),
        ({"target": 1.0, "metric": "flops"}, "reward.metric"),
        ({"target": 1.0, "accuracy_key": ""}, "reward.accuracy_key"),
    ],
)
def test_config_errors_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RewardConfig(**kwargs)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="reward.preset='medium'.*soft, hard"):
        RewardConfig.from_preset("medium", 10.0)


def test_to_dict_round_trip():
    cfg = RewardConfig.from_preset("soft", 25.0)
    assert RewardConfig(**cfg.to_dict()) == cfg


def test_pareto_mask_hand_example():
    # (accuracy up, latency down): b dominates d; a, b, c trade off; e has NaN
    pts = [[0.70, 10.0], [0.80, 20.0], [0.90, 40.0], [0.75, 25.0], [float("nan"), 1.0]]
    mask = pareto_mask(pts, maximize=[True, False])
    assert mask.tolist() == [True, True, True, False, False]


def test_pareto_mask_keeps_duplicates_and_checks_shape():
    mask = pareto_mask(np.array([[1.0, 1.0], [1.0, 1.0], [0.5, 0.5]]), maximize=[True, True])
    assert mask.tolist() == [True, True, False]
    assert pareto_mask([], maximize=[True, False]).tolist() == []
    with pytest.raises(ValueError, match="n x 2"):
        pareto_mask([[1.0, 2.0, 3.0]], maximize=[True, False])


def test_describe_names_cost_target_and_exponents():
    from nas.reward import RewardConfig

    assert RewardConfig.from_preset("hard", 2.5).describe() == (
        "ACC x (latency_ms/T)^w, T = 2.5 ms, alpha = 0, beta = -1")
    assert "T = 3e+08 MACs" in RewardConfig(target=3e8, metric="macs").describe()
