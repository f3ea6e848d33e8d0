"""Resources and devices the cluster cannot provide: one line, exit 2, no run folder, no hang."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from nas.config import parse_config
from nas.errors import ConfigError
from nas.experiment import build_experiment
from nas.runner.preflight import check_cluster
from nas.testing.fixtures import TOY_SEARCH

CPU_NODE = {"CPU": 2.0, "memory": 1e9}
GPU_NODE = {"CPU": 8.0, "GPU": 1.0}


def settings_for(**patch):
    config = parse_config({**TOY_SEARCH, **patch})
    return config, build_experiment(config).settings


@pytest.mark.parametrize("patch, nodes, message", [
    ({"search": {"gpus_per_trial": 1}}, [CPU_NODE],
     "search.gpus_per_trial=1: the Ray cluster (1 node) has no GPU; set it to 0"),
    ({"search": {"gpus_per_trial": 2}}, [GPU_NODE, CPU_NODE],
     "search.gpus_per_trial=2: the largest node of the Ray cluster (2 nodes) has 1 GPUs"),
    ({"search": {"cpus_per_trial": 64}}, [CPU_NODE, GPU_NODE],
     "search.cpus_per_trial=64: the largest node of the Ray cluster (2 nodes) has 8 CPUs"),
    ({"search": {"cpus_per_trial": 4, "gpus_per_trial": 1}},
     [{"CPU": 8.0}, {"CPU": 2.0, "GPU": 1.0}], "no node of the Ray cluster (2 nodes) has both"),
    ({"search": {"gpus_per_trial": 1}, "evaluator": {"dataset": "digits", "device": "cuda"}},
     [CPU_NODE], "evaluator.device: the Ray cluster (1 node) has no GPU"),
    ({"latency": {"service": True}}, [CPU_NODE],
     "latency.service: no node of the Ray cluster (1 node) offers the resource "
     "'latency_device'"),
])
def test_cluster_cannot_place(patch, nodes, message):
    config, settings = settings_for(**patch)
    with pytest.raises(ConfigError) as info:
        check_cluster(config, settings, nodes)
    assert message in str(info.value)


def test_cluster_that_fits():
    config, settings = settings_for(search={"gpus_per_trial": 0.5, "cpus_per_trial": 2})
    check_cluster(config, settings, [CPU_NODE, GPU_NODE])
    config, settings = settings_for(latency={"service": True})
    check_cluster(config, settings, [{**CPU_NODE, "latency_device": 1.0}])


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("search, message", [
    ({"cpus_per_trial": 64}, "search.cpus_per_trial=64: the largest node of the Ray cluster "
                             "(1 node) has 2 CPUs"),
])  # the other refusals are the same code path, covered by test_cluster_cannot_place
def test_real_local_ray_refuses_before_the_run_folder(tmp_path, search, message):
    cfg = {**TOY_SEARCH, "results_dir": str(tmp_path / "results"),
           "search": {"trials": 2, **search}, "ray": {"num_cpus": 2, "num_gpus": 0}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "nas.cli", "search", str(path), "--name", "x"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert message in out.stderr and out.stderr.strip().splitlines()[-1].startswith("nas search")
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert not (tmp_path / "results").exists()
