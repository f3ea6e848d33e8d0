"""Inference latency of a model on the target device.

MnasNet (Tan et al., arXiv:1807.11626, section 3) measures real latency on the target device rather
than using a proxy such as FLOPs. :func:`measure_latency` times a model on CPU (eager PyTorch with a
fixed thread count, eval mode, ``torch.inference_mode``), on CUDA (CUDA events around each run,
synchronised) or in ONNX Runtime (``runtime="onnxruntime"``: the exported ONNX graph, since
deployment runtimes differ from eager PyTorch).

Shared machines are noisy, and the noise only ever adds time (other processes preempting the run or
sharing the core). So a measurement is taken in rounds: after a warm-up, ``repeats`` timed runs are
split into ``rounds`` rounds; samples farther than ``outlier_mads`` scaled median absolute
deviations from the median of all samples are rejected; a round whose median exceeds the fastest
round's by more than ``round_tolerance`` counts as disturbed and is dropped; the reported
``median_ms`` is the median of the remaining round medians, with p10/p90 of the kept samples and
the relative spread ``(p90 - p10) / median``. Sustained contention (another process busy on the
same core for the whole measurement) cannot be filtered out by statistics: give the measurements
dedicated cores (the latency service of :mod:`nas.runner`) and check ``spread``.

Every result carries a fingerprint of the device (CPU model, threads, torch version, runtime; GPU
name), so cached values are only reused on the same kind of device.
Lookup tables live in :mod:`nas.latency.lut`; the Ray latency service in :mod:`nas.runner`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nas._checks import (
    MAX_INPUT_SIZE,
    check_bool,
    check_choice,
    check_device,
    check_int,
    check_number,
    from_plain,
)
from nas._devices import resolve_device, torch_threads
from nas.errors import ConfigError
from nas.latency.onnx import export_onnx, onnx_timer, ort_module

__all__ = ["LatencyConfig", "LatencyResult", "measure_latency", "device_fingerprint",
           "robust_stats", "export_onnx", "steady_allocator", "RUNTIMES"]

log = logging.getLogger(__name__)

RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyConfig:
    """Validated latency settings (errors name the key as ``latency.<key>``).

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: images per timed forward pass.
        threads: intra-op threads (torch and ONNX Runtime).
        warmup: untimed runs before timing.
        repeats: timed runs in total.
        rounds: the timed runs are split into this many rounds.
        runtime: ``torch`` (eager) or ``onnxruntime``.
        outlier_mads: samples farther than this many scaled MADs from the median are rejected.
        round_tolerance: rounds whose median exceeds the fastest round's by more than this
            fraction are dropped as disturbed.
        steady_malloc: call :func:`steady_allocator` first (glibc Linux; process-wide).
        input_size: override the space's input height/width (None: the space's own).
        mode: how an evaluation gets latency: ``measure`` (here), ``lut`` (lookup table:
            per-unit measurements summed) or ``skip``.
        quiet: measure in a quiet window, during which the node's other trainers of the run
            pause (:func:`nas.latency.conditions.measuring`).
        quiet_timeout_s: the longest wait for the trainers to pause before measuring anyway
            (recorded as not quiet).
        paired: the finalists' re-measurements (:mod:`nas.latency.final`) time every run beside
            a run of the space's reference network and keep the ratio
            (:mod:`nas.latency.paired`); False: plain re-measurements.
    """

    device: str = "cpu"
    batch_size: int = 1
    threads: int = 1
    warmup: int = 10
    repeats: int = 50
    rounds: int = 5
    runtime: str = "torch"
    outlier_mads: float = 5.0
    round_tolerance: float = 0.1
    steady_malloc: bool = True
    input_size: int | None = None
    mode: str = "measure"
    quiet: bool = True
    quiet_timeout_s: float = 10.0
    paired: bool = True

    def __post_init__(self) -> None:
        k = "latency."
        check_device(self.device, k + "device")
        check_int(k + "batch_size", self.batch_size)
        check_int(k + "threads", self.threads)
        check_int(k + "warmup", self.warmup, minimum=0)
        check_int(k + "repeats", self.repeats)
        check_int(k + "rounds", self.rounds)
        if self.rounds > self.repeats:
            raise ConfigError(f"latency.rounds={self.rounds}: must be <= repeats={self.repeats}")
        check_choice(k + "runtime", self.runtime, RUNTIMES)
        check_number(k + "outlier_mads", self.outlier_mads, minimum=1.0)
        check_number(k + "round_tolerance", self.round_tolerance)
        check_bool(k + "steady_malloc", self.steady_malloc)
        check_int(k + "input_size", self.input_size, maximum=MAX_INPUT_SIZE, optional=True)
        check_choice(k + "mode", self.mode, ("measure", "lut", "skip"))
        check_bool(k + "quiet", self.quiet)
        check_number(k + "quiet_timeout_s", self.quiet_timeout_s)
        check_bool(k + "paired", self.paired)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], prefix: str = "latency") -> LatencyConfig:
        """Build from plain data; an unknown key raises ConfigError naming it."""
        return from_plain(cls, data, prefix)

    def fingerprint(self) -> dict[str, Any]:
        """The device fingerprint of measurements taken with these settings."""
        return device_fingerprint(self.device, self.threads, self.runtime, self.steady_malloc)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


@dataclass(frozen=True)
class LatencyResult:
    """One latency measurement (milliseconds per forward pass of ``batch_size`` images).

    Attributes:
        median_ms: median of the undisturbed rounds' medians (outliers removed).
        p10_ms, p90_ms: 10th and 90th percentiles of the kept samples.
        spread: ``(p90 - p10) / median``.
        n: samples kept; ``rejected``: samples removed as outliers.
        rounds: every round's median, in order; ``rounds_kept``: rounds not dropped as disturbed.
        batch_size, runtime: what was timed.
        device: the device fingerprint (see :func:`device_fingerprint`).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    spread: float
    n: int
    rejected: int
    rounds: tuple[float, ...]
    rounds_kept: int
    batch_size: int
    runtime: str
    device: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the CLI's JSON)."""
        out = asdict(self)
        out["rounds"] = list(self.rounds)
        return out


@functools.lru_cache(maxsize=1)
def _glibc_mallopt() -> Any:
    """glibc's ``mallopt`` (None elsewhere: macOS, Windows, musl)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None


_steady = False


def steady_allocator() -> bool:
    """Stop glibc from returning activation buffers to the OS between forward passes.

    By default glibc serves large blocks (activations of a 224x224 network) with ``mmap`` and
    gives them back with ``munmap``, adapting the threshold as it goes, so every forward pass
    page-faults fresh zeroed memory and eager-PyTorch latency shifts by up to 2x with the
    allocator's state. Deployment runtimes keep memory arenas instead. This sets a fixed mmap
    threshold of 32 MiB and a 1 GiB trim threshold for the whole process (from now on; it cannot
    be undone), making CPU measurements steadier and closer to deployment. Returns True when
    applied (glibc Linux only).
    """
    global _steady
    mallopt = _glibc_mallopt()
    if not _steady and mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3
        _steady = bool(mallopt(m_mmap_threshold, 32 << 20)) and bool(
            mallopt(m_trim_threshold, 1 << 30))
        log.info("steady allocator %s", "applied" if _steady else "not supported")
    return _steady


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_fingerprint(
    device: str = "cpu", threads: int = 1, runtime: str = "torch", steady_malloc: bool = True
) -> dict[str, Any]:
    """What identifies a latency measurement's hardware and software.

    Returns:
        ``{"device", "cpu", "machine", "threads", "torch", "runtime", "malloc", "gpu", "key"}``;
        ``key`` is a short hash of the rest, used to key caches.
    """
    dev = resolve_device(device)
    rt = runtime
    if runtime == "onnxruntime":
        rt = f"onnxruntime {ort_module().__version__}"
    fp: dict[str, Any] = {
        "device": dev.type,
        "cpu": _cpu_model(),
        "machine": platform.machine(),
        "threads": threads,
        "torch": torch.__version__,
        "runtime": rt,
        "malloc": "steady" if steady_malloc and _glibc_mallopt() is not None else "default",
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
    }
    text = json.dumps(fp, sort_keys=True, separators=(",", ":"))
    fp["key"] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return fp


def robust_stats(
    rounds: Sequence[Sequence[float]], outlier_mads: float = 5.0, round_tolerance: float = 0.1
) -> dict[str, Any]:
    """Robust summary of timing samples grouped by round (see the module docstring).

    Returns:
        ``{"median_ms", "p10_ms", "p90_ms", "spread", "n", "rejected", "rounds",
        "rounds_kept"}``; ``rounds`` holds every round's median of kept samples, in order.
    """
    samples = np.concatenate([np.asarray(r, dtype=float) for r in rounds])
    if samples.size == 0:
        raise ValueError("no timing samples")
    med = float(np.median(samples))
    mad = 1.4826 * float(np.median(np.abs(samples - med)))
    tol = outlier_mads * mad if mad > 0 else 0.05 * med  # all-equal samples: keep within 5%
    round_meds = []
    for r in rounds:
        arr = np.asarray(r, dtype=float)
        kept = arr[np.abs(arr - med) <= tol]
        if kept.size:
            round_meds.append(float(np.median(kept)))
    fastest = min(round_meds)
    clean = [m for m in round_meds if m <= fastest * (1.0 + round_tolerance)]
    kept_all = samples[np.abs(samples - med) <= tol]
    median = float(np.median(clean))
    p10, p90 = (float(v) for v in np.percentile(kept_all, [10, 90]))
    return {
        "median_ms": median,
        "p10_ms": p10,
        "p90_ms": p90,
        "spread": (p90 - p10) / median if median > 0 else float("nan"),
        "n": int(kept_all.size),
        "rejected": int(samples.size - kept_all.size),
        "rounds": tuple(round_meds),
        "rounds_kept": len(clean),
    }


def measure_latency(model: nn.Module, input_shape: Sequence[int],
                    config: LatencyConfig | None = None, **options: Any) -> LatencyResult:
    """Time ``model`` on one batch of shape ``(batch_size, *input_shape)``.

    Args:
        model: the network; it is put in eval mode while timed and its mode restored after.
        input_shape: one sample's shape, e.g. ``(3, 224, 224)``.
        config: the settings (:class:`LatencyConfig`: device, batch size, threads, warm-up,
            repeats in rounds, runtime, outlier rejection, the allocator).
        options: :class:`LatencyConfig` fields overriding ``config``, e.g. ``threads=1``.

    Raises:
        ConfigError: a bad argument (names it), CUDA missing, or ONNX Runtime not installed.
    """
    cfg = LatencyConfig.from_dict({**(config.to_dict() if config else {}), **options})
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ConfigError(f"input_shape={input_shape!r}: must be positive integers, e.g. (3, 8, 8)")
    if cfg.steady_malloc:
        steady_allocator()
    samples = _timed_rounds(model, shape, cfg)
    stats = robust_stats(samples, cfg.outlier_mads, cfg.round_tolerance)
    return LatencyResult(**stats, batch_size=cfg.batch_size, runtime=cfg.runtime,
                         device=cfg.fingerprint())


def _timed_rounds(model: nn.Module, shape: tuple[int, ...], cfg: LatencyConfig,
                  ) -> list[list[float]]:
    """Warm-up runs, then ``cfg.repeats`` timed runs split into ``cfg.rounds`` rounds (ms)."""
    return timed_rounds([model], shape, cfg)[0]


def timed_rounds(models: Sequence[nn.Module], shape: tuple[int, ...], cfg: LatencyConfig,
                 ) -> list[list[list[float]]]:
    """Per model, ``cfg.repeats`` timed runs (ms) in ``cfg.rounds`` rounds after the warm-up,
    the models run in turn (run ``i`` of each model follows run ``i`` of the one before it, so
    they see the same moments of the machine). Each model's mode and device are restored."""
    dev = resolve_device(cfg.device)
    kept = [(m, m.training, next((p.device for p in m.parameters()), torch.device("cpu")))
            for m in models]
    for m in models:
        m.eval()
    try:
        with torch_threads(cfg.threads):
            timers = [_make_timer(m, (cfg.batch_size, *shape), dev, cfg) for m in models]
            for _ in range(cfg.warmup):
                for run_once in timers:
                    run_once()
            per_round = [cfg.repeats // cfg.rounds + (i < cfg.repeats % cfg.rounds)
                         for i in range(cfg.rounds)]
            out: list[list[list[float]]] = [[] for _ in models]
            for k in per_round:
                rows = [[run_once() for run_once in timers] for _ in range(k)]
                for j, samples in enumerate(zip(*rows, strict=True)):
                    out[j].append(list(samples))
            return out
    finally:
        for m, was_training, home in kept:
            m.train(was_training)
            m.to(home)


def _make_timer(
    model: nn.Module, shape: tuple[int, ...], dev: torch.device, cfg: LatencyConfig
) -> Callable[[], float]:
    """A function that runs the model once and returns the elapsed milliseconds."""
    if cfg.runtime == "onnxruntime":
        return onnx_timer(model, shape, dev, cfg.threads)
    model.to(dev)
    x = torch.randn(shape, device=dev)
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def run_cuda() -> float:
            with torch.inference_mode():
                start.record()
                model(x)
                end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        torch.cuda.synchronize(dev)
        return run_cuda

    def run_cpu() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            model(x)
            return (time.perf_counter_ns() - t0) / 1e6

    return run_cpu
