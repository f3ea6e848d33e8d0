"""The Ray latency service: one dedicated actor placed by a custom resource, with a cache."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nas import SPACES
from nas.latency.measure import LatencyConfig

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.ray

FAST = LatencyConfig(warmup=1, repeats=6, rounds=2)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, resources={"latency_device": 1},
             include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_service_measures_caches_and_is_found_by_name(local_ray):
    from nas.runner import (
        LatencyClient,
        start_latency_service,
        stop_latency_service,
    )

    client = start_latency_service(num_cpus=1)
    try:
        space = SPACES.create("nasbench201", channels=4, cells_per_stage=1, input_size=8)
        arch = space.sample(np.random.default_rng(0))
        first = client.measure(space, arch, FAST)
        assert first["cached"] is False and first["median_ms"] > 0
        assert {"median_ms", "p10_ms", "p90_ms", "n", "device"} <= set(first)
        again = LatencyClient.connect().measure(space, arch, FAST)  # another handle, same actor
        assert again["cached"] is True and again["median_ms"] == first["median_ms"]
        other = space.sample(np.random.default_rng(1))
        third = client.latency_fn()(space, other, None, FAST)
        assert third["cached"] is False
        assert client.stats() == {"entries": 2, "hits": 1, "misses": 2}
        # every answer names the actor that gave it, its request number and the timing it comes from
        stamps = [r["device"]["measured_by"] for r in (first, again, third)]
        assert {s["pid"] for s in stamps} == {stamps[0]["pid"]} != {os.getpid()}
        assert stamps[0]["actor_id"] and {s["actor_id"] for s in stamps} == {stamps[0]["actor_id"]}
        assert [(s["request"], s["measurement"], s["cached"]) for s in stamps] == [
            (1, 1, False), (2, 1, True), (3, 2, False)]
        assert first["device"]["key"] == FAST.fingerprint()["key"]  # the fingerprint is intact
        # the actor holds the custom resource: none is left for anybody else
        assert ray.available_resources().get("latency_device", 0) == 0
    finally:
        stop_latency_service(client)


def test_evaluate_through_the_service(local_ray):
    from nas.evaluation.data import load_dataset
    from nas.evaluation.evaluate import EvalSettings, evaluate_arch, space_for_dataset
    from nas.evaluation.train import TrainConfig
    from nas.runner import start_latency_service, stop_latency_service

    client = start_latency_service(name="mnas-latency-eval")
    try:
        data = load_dataset("digits")
        space = space_for_dataset("nasbench201", data, channels=4, cells_per_stage=1)
        settings = EvalSettings(train=TrainConfig(epochs=1), latency=FAST)
        arch = space.sample(np.random.default_rng(2))
        records = [evaluate_arch(space, arch, settings, dataset=data,
                                 latency_fn=client.latency_fn()) for _ in range(2)]
        assert [r["latency_cached"] for r in records] == [False, True]
        assert records[0]["latency_ms"] == records[1]["latency_ms"]
        assert records[0]["status"] == "complete"
    finally:
        stop_latency_service(client)
