"""Latency measurement: robust statistics, CPU timing, ONNX Runtime, fingerprints, bad inputs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.latency.measure import (
    LatencyConfig,
    device_fingerprint,
    export_onnx,
    measure_latency,
    robust_stats,
    steady_allocator,
)

FAST = {"warmup": 2, "repeats": 12, "rounds": 3}


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def test_robust_stats_rejects_outliers():
    rng = np.random.default_rng(0)
    rounds = [list(10 + rng.normal(0, 0.1, 20)) for _ in range(4)]
    rounds[2][5] = 500.0  # a descheduled run
    rounds[0][0] = 90.0
    s = robust_stats(rounds, outlier_mads=5)
    assert s["rejected"] == 2 and s["n"] == 78
    assert s["median_ms"] == pytest.approx(10.0, abs=0.1)
    assert s["p90_ms"] < 11 and s["p10_ms"] > 9
    assert s["spread"] == pytest.approx((s["p90_ms"] - s["p10_ms"]) / s["median_ms"])
    assert len(s["rounds"]) == 4


def test_robust_stats_median_of_round_medians():
    rounds = [[1.0, 1.1, 0.9], [2.0, 2.1, 1.9], [2.0, 2.2, 1.8]]
    s = robust_stats(rounds, outlier_mads=100, round_tolerance=1.5)
    assert s["median_ms"] == 2.0 and s["rounds"] == (1.0, 2.0, 2.0) and s["rounds_kept"] == 3


def test_robust_stats_drops_disturbed_rounds():
    # round 2 ran while another process shared the core: every sample 30% slower
    rounds = [[10.0, 10.1, 9.9, 10.0], [13.0, 13.1, 12.9, 13.0], [10.2, 10.1, 10.3, 10.2]]
    s = robust_stats(rounds, outlier_mads=100, round_tolerance=0.1)
    assert s["rounds_kept"] == 2 and s["median_ms"] == pytest.approx(10.1)
    assert s["p90_ms"] > 12.5  # the spread still shows the disturbance
    assert robust_stats(rounds, outlier_mads=100, round_tolerance=1.0)["median_ms"] == 10.2


def test_robust_stats_identical_samples():
    s = robust_stats([[3.0, 3.0], [3.0, 3.0]])
    assert (s["median_ms"], s["spread"], s["n"], s["rejected"]) == (3.0, 0.0, 4, 0)


def test_measure_latency_cpu_fields_and_restores_state():
    model = tiny_net().train()
    threads = torch.get_num_threads()
    r = measure_latency(model, (3, 16, 16), threads=1, **FAST)
    assert r.n + r.rejected == 12
    assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms
    assert r.spread >= 0 and r.runtime == "torch" and r.batch_size == 1
    assert r.device["device"] == "cpu" and r.device["threads"] == 1
    assert model.training  # mode restored
    assert torch.get_num_threads() == threads
    data = r.to_dict()
    assert {"median_ms", "p10_ms", "p90_ms", "n", "device", "spread"} <= set(data)


def test_bigger_batch_is_slower():
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(32, 32, 3, padding=1))
    small = measure_latency(model, (3, 32, 32), batch_size=1, **FAST)
    big = measure_latency(model, (3, 32, 32), batch_size=32, **FAST)
    assert big.median_ms > 4 * small.median_ms  # 32x the work; generous against noise


def test_fingerprint_identifies_the_setup():
    fp1 = device_fingerprint("cpu", 1)
    assert {"device", "cpu", "threads", "torch", "runtime", "gpu", "key"} <= set(fp1)
    assert fp1["torch"] == torch.__version__ and fp1["gpu"] is None
    assert device_fingerprint("cpu", 1)["key"] == fp1["key"]
    assert device_fingerprint("cpu", 2)["key"] != fp1["key"]


def test_steady_allocator_is_idempotent_and_fingerprinted():
    first = steady_allocator()
    assert steady_allocator() is first
    steady = LatencyConfig(steady_malloc=True).fingerprint()
    plain = LatencyConfig(steady_malloc=False).fingerprint()
    assert plain["malloc"] == "default"
    assert (steady["malloc"] == "steady") == first
    if first:
        assert steady["key"] != plain["key"]


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"steady_malloc": "yes"}, "latency.steady_malloc"),
        ({"round_tolerance": -0.1}, "latency.round_tolerance"),
        ({"device": "tpu"}, "latency.device"),
        ({"device": "gpu"}, "latency.device"),
        ({"runtime": "tvm"}, "latency.runtime"),
        ({"threads": 0}, "latency.threads"),
        ({"batch_size": 0}, "latency.batch_size"),
        ({"repeats": 0}, "latency.repeats"),
        ({"warmup": -1}, "latency.warmup"),
        ({"repeats": 3, "rounds": 5}, "latency.rounds"),
        ({"outlier_mads": 0.5}, "latency.outlier_mads"),
    ],
)
def test_bad_arguments_name_the_key(kwargs, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        measure_latency(tiny_net(), (3, 8, 8), **kwargs)


@pytest.mark.parametrize("shape", [(), (3, 0, 8), (3, 8.5, 8), [True, 8, 8]])
def test_bad_input_shape(shape):
    with pytest.raises(ConfigError, match="input_shape"):
        measure_latency(tiny_net(), shape, **FAST)


def test_config_from_dict_and_mode():
    cfg = LatencyConfig.from_dict({"repeats": 9, "rounds": 3, "mode": "skip"})
    assert cfg.repeats == 9 and cfg.to_dict()["repeats"] == 9
    with pytest.raises(ConfigError, match="latency.repat: unknown key"):
        LatencyConfig.from_dict({"repat": 9})
    with pytest.raises(ConfigError, match="latency.mode"):
        LatencyConfig(mode="guess")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_unavailable():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        measure_latency(tiny_net(), (3, 8, 8), device="cuda")


def test_onnxruntime_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'mnas\[onnx\]'"):
        measure_latency(tiny_net(), (3, 8, 8), runtime="onnxruntime", **FAST)


def test_onnxruntime_times_the_exported_graph():
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
    model = tiny_net().eval()
    blob = export_onnx(model, (2, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    with torch.inference_mode():
        assert np.allclose(out, model(x).numpy(), atol=1e-5)
    r = measure_latency(model, (3, 8, 8), runtime="onnxruntime", **FAST)
    assert r.runtime == "onnxruntime" and r.median_ms > 0
    assert r.device["runtime"] == f"onnxruntime {ort.__version__}"
    assert r.device["key"] != device_fingerprint("cpu", 1, "torch")["key"]


@pytest.mark.gpu
def test_cuda_events():
    model = tiny_net()
    r = measure_latency(model, (3, 32, 32), device="cuda", **FAST)
    assert r.median_ms > 0 and r.device["gpu"]
    assert next(model.parameters()).device.type == "cpu"  # moved back
