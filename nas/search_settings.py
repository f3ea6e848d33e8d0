"""The ``search`` section of a config: how many trials, how parallel, on what resources.

:class:`SearchSettings` validates every key (errors name ``search.<key>``); ``prefilter`` is the
zero-cost pre-filter (:mod:`nas.evaluation.prefilter`), validated here for its shape and by the
experiment for its proxy's name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nas._checks import check_choice, check_int, check_known, check_number
from nas.errors import ConfigError

__all__ = ["SearchSettings", "SCHEDULERS", "EXECUTORS", "PROGRESS", "MAX_TRIALS", "MAX_BATCH",
           "PREFILTER_KEYS"]

SCHEDULERS = ("none", "asha")
EXECUTORS = ("tune", "tasks")
PROGRESS = ("auto", "rich", "lines", "none")
MAX_TRIALS = 1_000_000  # a bound, so that a typo cannot start a search that never ends
MAX_BATCH = 10_000  # search.batch_children: children of one Tune trial
PREFILTER_KEYS = ("proxy", "keep", "warmup", "batch_size")


def check_prefilter_shape(value: Any) -> dict[str, Any] | None:
    """``search.prefilter`` as a mapping with its defaults filled in (None: off)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(f"search.prefilter={value!r:.60}: must be a mapping such as "
                          "{proxy: synflow, keep: 0.25}")
    check_known("search.prefilter", value, PREFILTER_KEYS)
    out = {"keep": 0.25, "warmup": 10, "batch_size": 64, **value}
    if not isinstance(out.get("proxy"), str):
        raise ConfigError("search.prefilter.proxy: missing; name a zero-cost proxy (e.g. synflow)")
    check_number("search.prefilter.keep", out["keep"], strict=True, maximum=1.0)
    check_int("search.prefilter.warmup", out["warmup"], minimum=0)
    check_int("search.prefilter.batch_size", out["batch_size"], minimum=2)
    return out


@dataclass(frozen=True)
class SearchSettings:
    """How many trials, how parallel, on what resources.

    Args:
        trials: finished trials to reach (failed and pruned ones count).
        concurrency: trials running at once (Tune's ConcurrencyLimiter).
        cpus_per_trial, gpus_per_trial: resources of one trial (fractions allowed).
        scheduler: ``none`` or ``asha`` (early stopping on per-epoch validation accuracy).
        grace_period, reduction_factor: ASHA's settings (epochs, rate).
        max_failures: retries of a trial whose worker died, by Tune (or by Ray, for the tasks
            executor's tasks); exceptions are recorded, not retried.
        seed: the controller's seed.
        dedup: never spend a trial on an architecture already evaluated in this run: a repeated
            proposal is told the stored result and the controller is asked again (off: repeats
            are re-evaluated, e.g. to average noisy rewards).
        max_repeats: repeated proposals in a row answered from the records before a repeat is
            evaluated anyway (so a tiny or exhausted space cannot loop).
        keep_weights: keep the trained weights (safetensors) of the best K children in
            ``RUN/weights/`` as they finish, dropping those that fall out of the top K (0: none);
            ``nas export`` uses them. A child that scores under the lowest kept reward sends none.
        progress: ``auto`` (a live view on a terminal, one line per finished child otherwise),
            ``rich``, ``lines`` or ``none`` (the CLI's ``--quiet``).
        remeasure_top: at the end of a search, re-measure the latency of the top K
            architectures and of the accuracy-latency Pareto front, interleaved in quiet windows
            with ``remeasure_passes`` times the repeats (0: off; ``nas remeasure`` on demand);
            rankings, fronts and exports then use the final numbers.
        remeasure_passes: passes over the finalists, each in a new random order.
        batch_children: children one Tune trial evaluates in sequence, so that cheap children
            (a second or less: supernet or zero-cost scoring) do not each pay a Tune trial's
            overhead. ``auto`` (the default) measures the children and batches about two
            seconds of them (one child while none has finished, one with ``scheduler: asha``);
            ``N``: at most N. Near the end the remaining children are split over the
            ``concurrency`` slots. Each child still gets its own record and its own tell, a
            failing child fails alone, and ``trials`` counts children; batched children report
            their epochs to the live view and trackers but not to Tune, so ``asha`` needs 1.
        executor: what runs the trials: ``tune`` (the default: Ray Tune trials, with ASHA and
            Tune's retries) or ``tasks`` (each batch of children is one Ray generator task that
            streams its children's records back, on workers warmed while the driver gets ready:
            no Tune start-up and no per-trial cost, for cheap children; ``scheduler: none``
            only, ``max_failures`` as Ray's retries of a task whose worker died).
        prefilter: a zero-cost pre-filter, ``{proxy, keep, warmup, batch_size}`` (None: off):
            every new proposal is scored by ``proxy`` (:mod:`nas.evaluation.zero_cost`) in the
            driver, and after ``warmup`` (10) proposals only those at or above the best
            ``keep`` (0.25) share of the scores so far are trained; the others are recorded
            ``rejected`` with the reason and give their trial back.
        proxy_features: zero-cost proxies (e.g. ``[synflow, nwot]``) added to the features a
            model-based controller (``bananas``) fits its predictor on, computed in the driver
            for every architecture it considers (:class:`nas.evaluation.prefilter.ProxyFeatures`).
    """

    trials: int = 20
    concurrency: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "none"
    grace_period: int = 1
    reduction_factor: int = 3
    max_failures: int = 1
    seed: int = 0
    dedup: bool = True
    max_repeats: int = 100
    keep_weights: int = 3
    progress: str = "auto"
    remeasure_top: int = 5
    remeasure_passes: int = 3
    batch_children: int | str = "auto"
    executor: str = "tune"
    prefilter: dict[str, Any] | None = None
    proxy_features: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_int("search.trials", self.trials, maximum=MAX_TRIALS)
        check_int("search.concurrency", self.concurrency)
        check_number("search.cpus_per_trial", self.cpus_per_trial)
        check_number("search.gpus_per_trial", self.gpus_per_trial)
        if self.cpus_per_trial == 0 and self.gpus_per_trial == 0:
            raise ConfigError("search.cpus_per_trial=0: a trial needs CPUs or GPUs")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"search.scheduler={self.scheduler!r}: allowed values: "
                              f"{', '.join(SCHEDULERS)}")
        check_int("search.grace_period", self.grace_period)
        check_int("search.reduction_factor", self.reduction_factor, minimum=2)
        check_int("search.max_failures", self.max_failures, minimum=0)
        check_choice("search.executor", self.executor, EXECUTORS)
        if self.executor == "tasks" and self.scheduler != "none":
            raise ConfigError(f"search.scheduler={self.scheduler!r}: the tasks executor has no "
                              "scheduler (ASHA stops Tune trials); use search.executor: tune")
        check_int("search.seed", self.seed, minimum=0)
        if not isinstance(self.dedup, bool):
            raise ConfigError(f"search.dedup={self.dedup!r}: must be true or false")
        check_int("search.max_repeats", self.max_repeats, minimum=0)
        check_int("search.keep_weights", self.keep_weights, minimum=0)
        check_choice("search.progress", self.progress, PROGRESS)
        check_int("search.remeasure_top", self.remeasure_top, minimum=0)
        check_int("search.remeasure_passes", self.remeasure_passes)
        object.__setattr__(self, "prefilter", check_prefilter_shape(self.prefilter))
        if not isinstance(self.proxy_features, list | tuple) or not all(
                isinstance(p, str) for p in self.proxy_features):
            raise ConfigError(f"search.proxy_features={self.proxy_features!r:.60}: must be a "
                              "list of zero-cost proxy names, e.g. [synflow, nwot]")
        object.__setattr__(self, "proxy_features", list(self.proxy_features))
        if self.batch_children != "auto":
            n = self.batch_children
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_BATCH:
                raise ConfigError(f"search.batch_children={n!r}: must be auto or an integer in "
                                  f"[1, {MAX_BATCH}]")
            if n > 1 and self.scheduler == "asha":
                raise ConfigError(f"search.batch_children={self.batch_children}: batched children "
                                  "report no epochs to Tune, which ASHA stops by; use 1 or auto")

    @property
    def batch_setting(self) -> int | str:
        """``batch_children`` as the search uses it: ``auto`` is 1 under ASHA."""
        return 1 if self.scheduler == "asha" else self.batch_children
