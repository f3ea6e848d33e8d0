"""The ``zero_cost`` evaluator: children scored by zero-cost proxies, never trained.

``evaluator: {name: zero_cost, options: {proxies, score, batches, batch_size}}``. Each child is
measured like any other (latency when ``latency.mode`` asks for it, checked against the
constraints), then its proxies (:mod:`nas.evaluation.zero_cost`) are computed on ``batches``
seeded batches of the search's own training split, with the weights the trial seed initialised.

A proxy is not an accuracy, so the record holds no ``accuracy``. It holds each proxy's raw value as
``zc_<name>`` (``null`` where it is not finite: NWOT's or jacob_cov's ``-inf`` of a degenerate
network), ``zc_score_proxy`` (the proxy named by ``score``) and ``zc_score``, that proxy mapped by
:func:`~nas.evaluation.zero_cost.positive_score` (``v + sqrt(1 + v^2)``, strictly increasing,
onto ``(0, inf)``). The search ranks by MnasNet's reward with ``zc_score`` in the place of ACC
(``reward.accuracy_key: zc_score``, required with this evaluator): a monotone map keeps the order of
the proxy; positivity keeps the reward honest (a negative factor, as jacob_cov's raw values always
are, would turn the latency penalty into a bonus); being a function of the stored raw value alone,
the same child gets the same score in every run, with no per-run normalisation to drift as trials
arrive. Under the ``hard`` preset or within hard constraints the order is the proxy's own; under
``soft`` a child twice as slow must have a ~5% larger ``zc_score`` to tie. Each proxy's seconds are
``timings["zc_<name>_s"]`` (drawing the batches: ``zc_data_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nas._checks import check_choice, check_int, check_known
from nas._devices import resolve_device, torch_threads
from nas.errors import ConfigError, TrialFailed
from nas.evaluation.evaluate import EvalContext
from nas.evaluation.zero_cost import (
    DATA_PROXIES,
    PROXIES,
    compute_proxy,
    draw_batches,
    positive_score,
)
from nas.latency.conditions import training
from nas.registry import evaluator, register_evaluator
from nas.space import Arch

__all__ = ["ZeroCostOptions", "zero_cost_evaluator", "OPTION_KEYS", "SCORE_KEY",
           "check_reward", "stored_metrics"]

OPTION_KEYS = ("proxies", "score", "batches", "batch_size")
SCORE_KEY = "zc_score"
_KEY = "evaluator.options"


@dataclass(frozen=True)
class ZeroCostOptions:
    """Validated ``evaluator.options`` of ``zero_cost``.

    Args:
        proxies: the proxies to compute (default: all of :data:`PROXIES`).
        score: the proxy that becomes ``zc_score`` (default: ``nwot`` if computed, else the
            first of ``proxies``).
        batches: batches a data-dependent proxy averages over (1, as in the papers).
        batch_size: samples per batch (at least 2: NWOT's kernel and jacob_cov's correlations
            compare samples).
    """

    proxies: tuple[str, ...] = PROXIES
    score: str = "nwot"
    batches: int = 1
    batch_size: int = 64

    @classmethod
    def from_dict(cls, options: Mapping[str, Any] | None) -> ZeroCostOptions:
        """Options from plain data; a one-line ConfigError names the key and what is allowed."""
        data = dict(options or {})
        check_known(_KEY, data, OPTION_KEYS)
        proxies = data.get("proxies", PROXIES)
        if isinstance(proxies, str) or not isinstance(proxies, list | tuple) or not proxies:
            raise ConfigError(f"{_KEY}.proxies={proxies!r}: must be a non-empty list of: "
                              f"{', '.join(PROXIES)}")
        for name in proxies:
            check_choice(f"{_KEY}.proxies", name, PROXIES)
        if len(set(proxies)) != len(proxies):
            raise ConfigError(f"{_KEY}.proxies={list(proxies)!r}: names a proxy twice")
        default = "nwot" if "nwot" in proxies else proxies[0]
        score = check_choice(f"{_KEY}.score", data.get("score", default), PROXIES)
        if score not in proxies:
            raise ConfigError(f"{_KEY}.score={score!r}: not among {_KEY}.proxies "
                              f"({', '.join(proxies)}); add it there or score by one of them")
        batches = check_int(f"{_KEY}.batches", data.get("batches", 1), minimum=1, maximum=1000)
        size = check_int(f"{_KEY}.batch_size", data.get("batch_size", 64), minimum=2,
                         maximum=100_000)
        return cls(tuple(proxies), score, int(batches or 1), int(size or 64))

    @property
    def needs_data(self) -> bool:
        """Whether a proxy reads batches of the dataset."""
        return any(name in DATA_PROXIES for name in self.proxies)


def check_reward(settings: Any) -> None:
    """The reward must read ``zc_score``: this evaluator reports no accuracy."""
    reward = getattr(settings, "reward", None)
    if reward is not None and reward.accuracy_key != SCORE_KEY:
        raise ConfigError(
            f"reward.accuracy_key={reward.accuracy_key!r}: evaluator 'zero_cost' reports no "
            f"accuracy (a zero-cost proxy is not one); set reward.accuracy_key: {SCORE_KEY}",
            params=("accuracy_key",))


def _check_setup(settings: Any, dataset: Any) -> None:
    """Checked before a search starts: the options, the reward's key, and enough training
    images for ``batches`` full batches."""
    options = ZeroCostOptions.from_dict(settings.evaluator_options)
    check_reward(settings)
    n_train = int(dataset.summary()["train"])
    if options.needs_data and options.batches * options.batch_size > n_train:
        raise ConfigError(
            f"{_KEY}.batch_size={options.batch_size}: {options.batches} batch(es) of it need "
            f"{options.batches * options.batch_size} training images; the split has {n_train}")


def stored_metrics(values: Mapping[str, float], score: str) -> dict[str, Any]:
    """The record's ``zc_*`` metrics from raw proxy values (see the module docstring).

    Raises: TrialFailed when the ``score`` proxy is NaN or ``+inf`` (no order to rank by).
    """
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("params", "macs"):
            out[f"zc_{name}"] = int(value)
        else:
            out[f"zc_{name}"] = float(value) if math.isfinite(value) else None
    raw = float(values[score])
    if math.isnan(raw) or raw == math.inf:
        raise TrialFailed(f"zero-cost proxy {score} is {raw} (evaluator.options.score)")
    out["zc_score_proxy"], out[SCORE_KEY] = score, positive_score(raw)
    return out


@register_evaluator("zero_cost")
@evaluator(options=OPTION_KEYS)
def zero_cost_evaluator(arch: Arch | None, model: torch.nn.Module, ctx: EvalContext) -> dict:
    """Latency on the target device, then zero-cost proxies of the untrained child."""
    options = ZeroCostOptions.from_dict(ctx.settings.evaluator_options)
    check_reward(ctx.settings)
    metrics = ctx.measure_latency(model)
    device = resolve_device(ctx.device, "evaluator.device")
    seed = ctx.settings.train.seed
    values: dict[str, float] = {}
    with torch_threads(ctx.settings.train.threads), training(ctx.activity) as marker:
        data = []
        if options.needs_data:
            with ctx.timed("zc_data"):
                data = draw_batches(ctx.dataset, batches=options.batches,
                                    batch_size=options.batch_size, seed=seed, device=device)
        for name in options.proxies:
            marker.pause_point()  # other children's quiet latency windows go first
            with ctx.timed(f"zc_{name}"):
                counted = ctx.partial.get(name) if name in ("params", "macs") else None
                values[name] = float(counted) if counted is not None else compute_proxy(
                    name, model, data, input_shape=ctx.space.input_shape(), seed=seed,
                    device=device)
    metrics.update(stored_metrics(values, options.score))
    return metrics


zero_cost_evaluator.check_options = ZeroCostOptions.from_dict  # type: ignore[attr-defined]
zero_cost_evaluator.check_setup = _check_setup  # type: ignore[attr-defined]
