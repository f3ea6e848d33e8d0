"""ONNX export and ONNX Runtime timing for :mod:`nas.latency.measure` (``runtime="onnxruntime"``).

Deployment runtimes differ from eager PyTorch (graph optimisation, fused kernels, own memory
arenas), so a child can also be timed as its exported ONNX graph in ONNX Runtime. The export uses
the TorchScript-based exporter (``dynamo=False``), which needs no package beyond torch and onnx.
"""

from __future__ import annotations

import copy
import io
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nas.errors import ConfigError, UsageError

__all__ = ["export_onnx", "onnx_timer", "ort_module"]


def ort_module() -> Any:
    """The onnxruntime module, or a ConfigError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "latency.runtime='onnxruntime' needs onnxruntime: pip install 'mnas[onnx]'"
        ) from None
    return onnxruntime


def export_onnx(model: nn.Module, shape: Sequence[int], opset: int = 17) -> bytes:
    """The model (in eval mode, on CPU) as ONNX bytes for a fixed input ``shape`` (batch included).

    Uses the TorchScript-based exporter (``dynamo=False``), which needs no extra packages; falls
    back to the dynamo exporter (needs ``onnxscript``) if that one is unavailable.
    """
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    x = torch.randn(tuple(shape))
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"],
                              "opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(cpu_model, (x,), buf, dynamo=False, **kwargs)
        except (TypeError, RuntimeError, ImportError) as legacy_error:
            try:
                torch.onnx.export(cpu_model, (x,), buf, dynamo=True, **kwargs)
            except ImportError:
                raise UsageError(
                    f"ONNX export failed ({legacy_error}); install onnxscript for the dynamo "
                    "exporter: pip install onnxscript"
                ) from None
    return buf.getvalue()


def onnx_timer(
    model: nn.Module, shape: tuple[int, ...], dev: torch.device, threads: int
) -> Callable[[], float]:
    """An InferenceSession of the exported model; returns a function timing one run in ms."""
    ort = ort_module()
    providers = ["CPUExecutionProvider"]
    if dev.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                "latency.device='cuda' with runtime onnxruntime needs onnxruntime-gpu "
                "(no CUDAExecutionProvider)"
            )
        providers = [("CUDAExecutionProvider", {"device_id": dev.index or 0})]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(export_onnx(model, shape), opts, providers=providers)
    feed = {"input": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}

    def run_ort() -> float:
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        return (time.perf_counter_ns() - t0) / 1e6

    return run_ort
