"""One trial end to end: build, count cost, measure latency, train, score.

:func:`evaluate_arch` returns RAW metrics (validation accuracy, latency statistics, params, MACs,
per-phase timings, device fingerprint) plus, when reward settings are given, MnasNet's reward
``ACC x (LAT/T)^w`` (Tan et al., arXiv:1807.11626, equation 2) computed from those raw metrics, so
it can be recomputed later for another target. A child that fails (NaN loss, divergence, time
budget, a runtime error in its forward pass) gives a record with ``status`` ``TrialStatus.FAILED``
and the ``error`` instead of an exception.

The work between "built and counted" and "metrics" is done by an *evaluator*, a function
``evaluator(arch, model, context) -> dict`` registered in :data:`nas.registry.EVALUATORS`
(``default``: latency + proxy training; ``latency_only``; ``zero_cost``: latency + zero-cost
proxies, :mod:`nas.evaluation.zero_cost_evaluator`) or named as ``"package.module:function"``.
The :class:`EvalContext` gives it the space, dataset, settings, device, a ``report`` callback for
per-epoch metrics, and helpers that do the standard latency and training phases.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nas.constraints import Constraints
from nas.errors import ConfigError, TrialFailed, TrialRejected, UsageError
from nas.evaluation.data import AnyDataset, ImageOptions, load_dataset
from nas.evaluation.settings import EvalSettings
from nas.evaluation.train import train
from nas.latency.conditions import measuring, training
from nas.latency.lut import LatencyTable, latency_space, measure_arch
from nas.latency.measure import LatencyConfig, measure_latency
from nas.records import TrialStatus, chance_bound
from nas.registry import EVALUATORS, register_evaluator
from nas.reward import RewardConfig
from nas.space import Arch, Space

__all__ = ["EvalSettings", "EvalContext", "evaluate_arch", "space_for_dataset",
           "default_evaluator", "latency_only_evaluator"]

log = logging.getLogger(__name__)

LatencyFn = Callable[[Space, "Arch | None", "str | None", LatencyConfig], Mapping[str, Any]]
ReportFn = Callable[[dict[str, Any]], "bool | None"]


@dataclass
class EvalContext:
    """What an evaluator gets besides the architecture and the built model.

    Attributes:
        space: the search space. arch / preset: what is evaluated (one of them is None).
        dataset: the dataset (in memory or streamed). settings: the evaluation settings.
        device: the training device (``settings.train.device``).
        report: per-epoch callback (a Ray trainable passes its reporter; may return True to stop).
        latency_fn: measures latency elsewhere (e.g. the Ray latency service), or None.
        timings: phase name -> seconds; evaluators add theirs.
        partial: metrics of the phases done so far (kept in the record if a later phase fails).
    """

    space: Space
    arch: Arch | None
    preset: str | None
    dataset: AnyDataset
    settings: EvalSettings
    device: str
    report: ReportFn | None = None
    latency_fn: LatencyFn | None = None
    on_model: Callable[[torch.nn.Module], None] | None = None
    activity: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Add the block's wall time to ``timings[phase + "_s"]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            key = f"{phase}_s"
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0

    def measure_latency(self, model: torch.nn.Module) -> dict[str, Any]:
        """The standard latency phase (per ``settings.latency.mode``) as raw metrics.

        Measured on this node (``measure``, or ``lut`` timing new units), it runs in a quiet
        window when ``latency.quiet`` and records ``latency_conditions``
        (:func:`nas.latency.conditions.measuring`); the latency service records its own."""
        cfg = self.settings.latency
        if cfg.mode == "skip":
            return {}
        here = self.latency_fn is None or cfg.mode == "lut"
        window = measuring(self.activity if here else None,
                           quiet=cfg.quiet and cfg.mode == "measure", timeout_s=cfg.quiet_timeout_s)
        with self.timed("latency"), window as conditions:
            if cfg.mode == "lut":
                metrics = _lut_metrics(self.space, self.arch, cfg, self.settings.lut_path)
            elif self.latency_fn is not None:
                metrics = _latency_metrics(self.latency_fn(self.space, self.arch, self.preset,
                                                           cfg))
            elif latency_space(self.space, cfg) is self.space:
                raw = measure_latency(model, self.space.input_shape(), cfg)
                metrics = _latency_metrics(raw.to_dict())
            else:
                raw = measure_arch(self.space, self.arch, cfg, preset=self.preset)
                metrics = _latency_metrics(raw.to_dict())
        if here and self.activity is not None:
            metrics["latency_conditions"] = conditions
        self.partial.update(metrics)
        _reject_over(self.settings.constraints, metrics, ("latency_ms",))
        return metrics

    def train(self, model: torch.nn.Module) -> dict[str, Any]:
        """The standard proxy-training phase; returns ``{"accuracy", "train"}``.

        Training yields to other processes' quiet latency windows between steps; the time it
        waited is ``timings["train_paused_s"]``."""
        sync = torch.cuda.synchronize if str(self.device).startswith("cuda") else None
        with self.timed("train"), training(self.activity) as marker:
            try:
                result = train(model, self.dataset, self.settings.train, callback=self.report,
                               pause=lambda: marker.pause_point(sync))
            finally:
                if marker.path is not None:
                    self.timings["train_paused_s"] = (self.timings.get("train_paused_s", 0.0)
                                                      + marker.paused_s)
        summary = result.to_dict()
        return {"accuracy": result.val_accuracy, "train": summary}


def _latency_metrics(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = {"latency_ms": raw["median_ms"], "latency_p10_ms": raw["p10_ms"],
           "latency_p90_ms": raw["p90_ms"], "latency_spread": raw["spread"],
           "latency_n": raw["n"], "device": raw["device"]}
    if "cached" in raw:
        out["latency_cached"] = raw["cached"]
    if raw.get("conditions") is not None:  # recorded by the latency service
        out["latency_conditions"] = dict(raw["conditions"])
    return out


_TABLES: dict[tuple[str, str | None], LatencyTable] = {}


def _lut_metrics(space: Space, arch: Arch | None, cfg: LatencyConfig,
                 path: str | None) -> dict[str, Any]:
    if arch is None:
        raise ConfigError("latency.mode='lut': a lookup table needs an architecture, not a preset")
    key = (repr(sorted(cfg.to_dict().items())), path)
    if key not in _TABLES:
        exists = path is not None and Path(path).is_file()
        _TABLES[key] = LatencyTable.load(path) if exists else LatencyTable(cfg)
    table = _TABLES[key]
    before = len(table)
    ms = table.predict(space, arch)
    if path is not None and len(table) > before:
        table.save(path)
    return {"latency_ms": ms, "latency_p10_ms": ms, "latency_p90_ms": ms, "latency_spread": 0.0,
            "latency_n": 0, "latency_source": "lut", "device": table.fingerprint}


@register_evaluator("default")
def default_evaluator(arch: Arch | None, model: torch.nn.Module, ctx: EvalContext) -> dict:
    """Latency on the target device, then proxy training (MnasNet, arXiv:1807.11626)."""
    metrics = ctx.measure_latency(model)
    metrics.update(ctx.train(model))
    return metrics


@register_evaluator("latency_only")
def latency_only_evaluator(arch: Arch | None, model: torch.nn.Module, ctx: EvalContext) -> dict:
    """Latency only (no training; accuracy is absent, so the reward is NaN)."""
    return ctx.measure_latency(model)


@functools.lru_cache(maxsize=2)
def _cached_dataset(name: str, val_fraction: float, seed: int, max_train: int | None,
                    root: str | None, download: bool, images: ImageOptions) -> AnyDataset:
    return load_dataset(name, val_fraction=val_fraction, seed=seed, root=root,
                        download=download, max_train=max_train, images=images)


def get_dataset(settings: EvalSettings) -> AnyDataset:
    """The settings' dataset (kept for the next trial of this process)."""
    return _cached_dataset(settings.dataset, settings.val_fraction, settings.data_seed,
                           settings.max_train, settings.data_root, settings.download,
                           settings.image_options())


def space_for_dataset(name: str, dataset: AnyDataset, /, **options: Any) -> Space:
    """Create space ``name`` sized for ``dataset`` (in_channels, input_size, num_classes)."""
    from nas.registry import get_space

    c, h, w = dataset.input_shape
    if h != w:
        raise UsageError(f"dataset {dataset.name!r}: images are {h}x{w}; spaces need square inputs")
    sized = {"in_channels": c, "input_size": h, "num_classes": dataset.num_classes}
    return get_space(name, **{**sized, **options})


def _check_fit(space: Space, dataset: AnyDataset) -> None:
    if tuple(space.input_shape()) != dataset.input_shape:
        raise ConfigError(
            f"space {space.name!r} expects inputs {tuple(space.input_shape())} but dataset "
            f"{dataset.name!r} has {dataset.input_shape}; create the space with "
            "nas.evaluation.evaluate.space_for_dataset()"
        )
    classes = space.options.get("num_classes")
    if isinstance(classes, int) and classes < dataset.num_classes:
        raise ConfigError(f"space {space.name!r} has num_classes={classes} but dataset "
                          f"{dataset.name!r} has {dataset.num_classes} classes")


def evaluate_arch(space: Space, arch: Arch | Mapping[str, Any] | None,
                  settings: EvalSettings | None = None, *, preset: str | None = None,
                  report: ReportFn | None = None, latency_fn: LatencyFn | None = None,
                  dataset: AnyDataset | None = None, on_model: Callable[..., None] | None = None,
                  activity: str | None = None) -> dict[str, Any]:
    """Evaluate one child (or a ``preset`` of the space) and return its raw metrics.

    Args:
        space: the search space (sized for the dataset, see :func:`space_for_dataset`).
        arch: the architecture, or None with ``preset``.
        settings: evaluation settings (defaults: digits, 1 epoch, CPU latency).
        preset: evaluate the space's published network of this name instead of ``arch``.
        report: per-epoch callback (a Ray Tune reporter); ``latency_fn``: measures latency
            elsewhere (e.g. :meth:`nas.runner.LatencyClient.latency_fn`).
        dataset: an already loaded dataset (default: load ``settings.dataset``).
        on_model: gets a completed child's trained model; ``activity``: the run's training
            markers (:mod:`nas.latency.conditions`), recorded with each latency.

    Returns: the raw metrics (accuracy, latency and its spread, params, MACs), ``status`` and
    ``error``, timings, device and, with reward settings, ``reward`` (None if undefined).
    Raises ``UsageError`` for bad settings, arch, dataset or preset (not a trial failure).
    """
    settings = settings or EvalSettings()
    arch = _checked_subject(space, arch, preset)
    data = dataset if dataset is not None else get_dataset(settings)
    _check_fit(space, data)
    ctx = EvalContext(space=space, arch=arch, preset=preset, dataset=data, settings=settings,
                      device=settings.train.device, report=report, latency_fn=latency_fn,
                      on_model=on_model, activity=activity)
    record: dict[str, Any] = {
        "space": space.name, "arch": None if arch is None else arch.to_dict()["decisions"],
        "arch_key": None if arch is None else arch.key, "preset": preset, "dataset": data.name,
        "status": TrialStatus.COMPLETE.value, "error": None,
        "chance_accuracy": chance_bound(int(data.num_classes), int(data.summary()["val"])),
    }
    with ctx.timed("total"):
        record.update(_run(space, arch, preset, EVALUATORS.get(settings.evaluator), ctx))
    record["timings"] = dict(ctx.timings)
    if settings.reward is not None:
        _add_reward(record, settings.reward)
    return record


def _checked_subject(space: Space, arch: Arch | Mapping[str, Any] | None,
                     preset: str | None) -> Arch | None:
    """The validated architecture (None for a preset); exactly one of the two must be given."""
    if (arch is None) == (preset is None):
        raise UsageError("evaluate_arch needs exactly one of arch and preset")
    if preset is not None and preset not in space.presets():
        space.build_preset(preset)  # raises the space's unknown-preset error
    return None if arch is None else space.validate(arch)


def _add_reward(record: dict[str, Any], reward_config: RewardConfig) -> None:
    """MnasNet's reward from the raw metrics (None when undefined, e.g. a failed child)."""
    ok = record["status"] == TrialStatus.COMPLETE.value
    reward = reward_config(record) if ok else math.nan
    record["reward"] = reward if math.isfinite(reward) else None
    record["reward_config"] = reward_config.to_dict()


def _reject_over(constraints: Constraints, metrics: Mapping[str, Any],
                 keys: tuple[str, ...]) -> None:
    """Raise :class:`TrialRejected` when ``metrics`` break one of the ``keys`` bounds."""
    broken = constraints.check(metrics, keys) if constraints.active else None
    if broken is not None:
        raise TrialRejected(broken)


def _hand_over(model: torch.nn.Module, ctx: EvalContext) -> None:
    """Give the finished model to ``ctx.on_model`` (a failure there is only logged)."""
    if ctx.on_model is None:
        return
    try:
        ctx.on_model(model)
    except Exception as exc:  # keeping weights is a service, never a reason to fail a child
        log.warning("could not hand over the trained model: %s: %s", type(exc).__name__, exc)


def _run(space: Space, arch: Arch | None, preset: str | None, evaluator: Callable[..., Any],
         ctx: EvalContext) -> dict[str, Any]:
    """Build, cost and the evaluator; a failing child becomes ``TrialStatus.FAILED``."""
    from nas.evaluation.cost import count_cost

    out: dict[str, Any] = {}
    try:
        with training(ctx.activity):  # busy: other children's latency windows wait for it
            with ctx.timed("build"):
                torch.manual_seed(ctx.settings.train.seed)
                model = space.build_preset(preset) if preset is not None else space.build(arch)
            with ctx.timed("cost"):
                cost = count_cost(model, space.input_shape())
        out.update(params=int(cost.params), macs=int(cost.macs))
        ctx.partial.update(out)  # an evaluator may read the counts (zero_cost does)
        _reject_over(ctx.settings.constraints, out, ("macs", "params"))
        metrics = evaluator(arch, model, ctx)
        if not isinstance(metrics, Mapping):
            raise UsageError(f"evaluator {ctx.settings.evaluator!r} returned "
                             f"{type(metrics).__name__}, expected a dict of metrics")
        out.update(metrics)
        if out.get("status", TrialStatus.COMPLETE.value) == TrialStatus.COMPLETE.value:
            _hand_over(model, ctx)
    except NotImplementedError as exc:  # the space lacks a feature the settings need
        raise UsageError(str(exc)) from None
    except TrialRejected as exc:  # over a hard bound: not trained
        log.info("child rejected: %s", exc)
        out.update(ctx.partial, status=TrialStatus.REJECTED.value, error=str(exc),
                   constraint=exc.violation)
    except TrialFailed as exc:
        log.info("trial failed: %s", exc.reason)
        out.update(ctx.partial, status=TrialStatus.FAILED.value, error=exc.reason)
    except (RuntimeError, ArithmeticError) as exc:  # e.g. a shape error or OOM in the child
        log.warning("trial failed with %s: %s", type(exc).__name__, exc)
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        out.update(ctx.partial, status=TrialStatus.FAILED.value, error=reason)
    return out
