"""Runnable forms of an exported architecture: ``torch.export`` programs, ONNX, weights.

- ``model.pt2``: :func:`torch.export.export` with a dynamic batch dimension (static if the model
  does not allow one), saved with :func:`torch.export.save`; checked against the eager model.
- ``model.onnx``: :func:`nas.latency.measure.export_onnx` (batch 1), run in ONNX Runtime on a
  seeded random
  input and compared with PyTorch (the maximum absolute difference goes on the card).
- weights: ``model.safetensors`` (safetensors) or, without that package, ``model_weights.pt``, a
  plain state dict read back with ``torch.load(..., weights_only=True)``. Nothing is unpickled.

Note that :func:`torch.export.load` unpickles parts of a ``.pt2`` archive: load only archives you
made yourself. Rebuilding from the card (:func:`nas.export.rebuild.build_from_card`) never needs it.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._checks import check_int
from nas._fs import read_bytes, write_atomic
from nas.errors import TrialFailed, UsageError

__all__ = [
    "onnx_available",
    "safetensors_available",
    "seeded_input",
    "write_pt2",
    "write_onnx",
    "write_weights",
    "load_weights",
    "reference_output",
    "check_reference",
    "train_for_export",
    "ONNX_TOLERANCE",
]

log = logging.getLogger(__name__)

ONNX_TOLERANCE = 1e-4  # max |ORT - torch| relative to max(1, max |torch|) counted as a match
WEIGHT_FILES = {"safetensors": "model.safetensors", "state_dict": "model_weights.pt"}
WEIGHTS_CAP = 2 << 30  # read whole into memory: larger than any child mnas builds


def onnx_available() -> bool:
    """Whether the ``onnx`` extra (onnx and onnxruntime) is installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def safetensors_available() -> bool:
    """Whether the safetensors package is installed."""
    return importlib.util.find_spec("safetensors") is not None


def seeded_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A standard-normal float32 tensor of ``shape`` from a seeded CPU generator."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(int(d) for d in shape), generator=gen)


def _max_abs_diff(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


@torch.inference_mode()
def _eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return model(x).detach().cpu().numpy()


def write_pt2(model: nn.Module, input_shape: Sequence[int], path: Path) -> dict[str, Any]:
    """``torch.export`` the (eval-mode, CPU) model, save it, and compare it with eager PyTorch.

    Returns:
        ``{"file", "dynamic_batch", "max_abs_diff"}``.

    Raises:
        UsageError: the model cannot be exported (the message names the reason).
    """
    example = seeded_input((2, *input_shape), seed=1)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
                dynamic = True
            except Exception:  # some models fix the batch size: export it static
                program = torch.export.export(model, (example[:1],))
                dynamic = False
    except Exception as exc:  # torch raises many types; report one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"pt2 export: torch.export failed: {first}") from None
    x = example if dynamic else example[:1]
    with torch.inference_mode():
        diff = _max_abs_diff(program.module()(x), _eager(model, x))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    write_atomic(path, buffer.getvalue())  # never through a link
    return {"file": path.name, "dynamic_batch": dynamic, "max_abs_diff": diff}


def write_onnx(model: nn.Module, input_shape: Sequence[int], path: Path,
               opset: int = 17) -> dict[str, Any]:
    """Export to ONNX (batch 1), run it in ONNX Runtime and compare with PyTorch.

    Returns:
        ``{"file", "opset", "input_shape", "max_abs_diff", "tolerance", "ok", "onnxruntime"}``.
    """
    import onnx
    import onnxruntime as ort

    from nas.latency.measure import export_onnx

    shape = (1, *input_shape)
    try:
        data = export_onnx(model, shape, opset)
        onnx.checker.check_model(onnx.load_model_from_string(data))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except UsageError:
        raise
    except Exception as exc:  # exporter, checker and runtime raise many types; report one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"onnx export failed (opset {opset}): {first}") from None
    x = seeded_input(shape, seed=2)
    ours = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    ref = _eager(model, x)
    diff = _max_abs_diff(ours, ref)
    scale = max(1.0, float(np.max(np.abs(ref))))
    write_atomic(path, data)  # never through a link
    return {"file": path.name, "opset": opset, "input_shape": list(shape), "max_abs_diff": diff,
            "tolerance": ONNX_TOLERANCE * scale, "ok": bool(diff <= ONNX_TOLERANCE * scale),
            "onnxruntime": ort.__version__}


def write_weights(model: nn.Module, folder: Path) -> dict[str, Any]:
    """Save the state dict as safetensors (or a weights-only ``.pt``); returns file and format.

    The bytes are made in memory and written atomically, never through a link.
    """
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if safetensors_available():
        from safetensors.torch import save

        fmt = "safetensors"
        data = save(state, metadata={"format": "pt"})
    else:
        fmt = "state_dict"
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
    write_atomic(folder / WEIGHT_FILES[fmt], data)
    return {"file": WEIGHT_FILES[fmt], "format": fmt,
            "tensors": len(state), "numel": int(sum(t.numel() for t in state.values()))}


def load_weights(model: nn.Module, path: Path, fmt: str) -> None:
    """Load weights written by :func:`write_weights` into ``model`` (strict: every key must match).

    Raises:
        UsageError: a missing, unusual, truncated or garbled file, an unknown format, missing
            safetensors, or mismatched keys (one line naming the file).
    """
    if fmt not in WEIGHT_FILES:
        raise UsageError(f"weights format {fmt!r}: allowed values: {', '.join(WEIGHT_FILES)}")
    if fmt == "safetensors" and not safetensors_available():
        raise UsageError(f"{path.name}: reading safetensors needs `pip install safetensors`")
    try:
        data = read_bytes(path, "weights file", cap=WEIGHTS_CAP)
    except FileNotFoundError:
        raise UsageError(f"weights file {str(path)!r}: no such file") from None
    state = _decode_weights(data, path, fmt)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise UsageError(f"{path.name} does not fit the card's model: {first}") from None


def _decode_weights(data: bytes, path: Path, fmt: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file's bytes (safetensors, or a weights-only state dict)."""
    try:
        if fmt == "safetensors":
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch.load raise many types: one line
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise UsageError(f"weights file {str(path)!r}: not a readable {fmt} file "
                         f"({first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UsageError(f"weights file {str(path)!r}: does not hold a mapping of tensors")
    return state


def reference_output(model: nn.Module, input_shape: Sequence[int], n: int = 10) -> dict[str, Any]:
    """Outputs on a seeded input (seed 0, batch 1), to check a rebuilt model with these weights."""
    shape = (1, *input_shape)
    out = _eager(model, seeded_input(shape, seed=0)).reshape(-1)
    return {"seed": 0, "input_shape": list(shape), "output_head": [float(v) for v in out[:n]],
            "output_abs_sum": float(np.abs(out).sum())}


def check_reference(model: nn.Module, reference: Mapping[str, Any]) -> float:
    """Max absolute difference between ``model``'s outputs and a stored :func:`reference_output`."""
    shape = reference["input_shape"]
    out = _eager(model, seeded_input(shape, seed=int(reference.get("seed", 0)))).reshape(-1)
    head = np.asarray(reference["output_head"], dtype=np.float64)
    diff = _max_abs_diff(out[: len(head)], head)
    return max(diff, abs(float(np.abs(out).sum()) - float(reference["output_abs_sum"])))


def train_for_export(model: nn.Module, config: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` with the run's proxy-training settings and dataset.

    The run's time budget does not apply. Returns the training summary (``val_accuracy``, ...).

    Raises:
        UsageError: the run's config cannot be read back, or training fails (NaN, divergence).
    """
    from nas.config import parse_config
    from nas.evaluation.evaluate import get_dataset
    from nas.evaluation.train import train
    from nas.experiment import eval_settings

    check_int("train_epochs", epochs)
    settings = eval_settings(parse_config(config))
    train_cfg = replace(settings.train, epochs=epochs, time_budget_s=None)
    dataset = get_dataset(settings)
    try:
        result = train(model, dataset, train_cfg)
    except TrialFailed as exc:
        raise UsageError(f"train_epochs={epochs}: training failed: {exc.reason}",
                         params=("train_epochs",)) from None
    model.to("cpu").eval()
    summary = result.to_dict()
    summary.pop("history", None)
    summary["dataset"] = dataset.name
    if not math.isfinite(summary.get("val_accuracy", math.nan)):
        raise UsageError(f"train_epochs={epochs}: validation accuracy is not finite",
                         params=("train_epochs",))
    return summary
