"""Zero-cost proxies in a search: a pre-filter, and features for model-based controllers.

:class:`ProxyFilter`: only the proposals a proxy ranks among the best so far are trained.

``search.prefilter: {proxy: synflow, keep: 0.25, warmup: 10}`` scores every new proposal with a
zero-cost proxy (:mod:`nas.evaluation.zero_cost`: the untrained child, one seeded batch of the
search's own training data) in the driver, before it costs a trial. After ``warmup`` proposals
have been scored, a proposal is trained only when its score is at least the ``1 - keep``
quantile of the scores of all the proposals scored before it (``keep: 0.25``: the best quarter
so far); the others are recorded ``rejected`` with the reason, never trained, and give their
trial back to the budget, and the controller is told they failed (or ``constraints.penalty``).
Abdelfattah et al. (ICLR 2021, arXiv:2101.08134, section 5) pre-filter a search the same way.

The filter is deterministic (the child's weights seeded as a trial seeds them, the batch and the
proxy's own randomness seeded) and resumable: every record stores its score as ``zc_<proxy>``,
and a resumed search rebuilds the quantile from them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from nas.errors import ConfigError
from nas.records import TrialRecord, TrialStatus
from nas.space import Arch, Space

__all__ = ["ProxyFilter", "ProxyFeatures", "check_prefilter"]


def check_prefilter(settings: Mapping[str, Any] | None, features: Iterable[str] = ()) -> None:
    """The proxies of ``search.prefilter`` and ``search.proxy_features`` are names of
    :data:`nas.evaluation.zero_cost.PROXIES`."""
    from nas.evaluation.zero_cost import PROXIES

    if settings and settings.get("proxy") not in PROXIES:
        raise ConfigError(f"search.prefilter.proxy={settings.get('proxy')!r}: allowed values: "
                          f"{', '.join(PROXIES)}")
    for name in features:
        if name not in PROXIES:
            raise ConfigError(f"search.proxy_features: {name!r} is not a zero-cost proxy; "
                              f"allowed values: {', '.join(PROXIES)}")


class ProxyFilter:
    """Scores proposals with one zero-cost proxy and keeps the best ``keep`` share so far.

    Args:
        space: the search space (sized for the dataset).
        dataset: the search's dataset (the proxy's batch comes from its training split).
        proxy: a name of :data:`nas.evaluation.zero_cost.PROXIES`.
        keep: the share of proposals that pass, in (0, 1].
        warmup: proposals scored (and all kept) before any is filtered.
        batch_size: samples of the proxy's batch.
        seed: seeds the child's weights (as ``evaluator.seed`` does for a trial), the batch and
            the proxy.
        seen: the scores of the proposals recorded before (a resumed search).
    """

    def __init__(self, space: Space, dataset: Any, *, proxy: str, keep: float, warmup: int,
                 batch_size: int = 64, seed: int = 0, seen: Iterable[float] = ()) -> None:
        self.space, self.dataset = space, dataset
        self.proxy, self.keep, self.warmup = proxy, float(keep), int(warmup)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.scores = [float(s) for s in seen]
        self._batches: list[Any] | None = None

    @property
    def metric(self) -> str:
        """The metric every record stores the score under (``zc_<proxy>``)."""
        return f"zc_{self.proxy}"

    def score(self, arch: Arch) -> float:
        """The proxy of ``arch``'s untrained child (``-inf`` where it is undefined)."""
        from nas.evaluation.zero_cost import DATA_PROXIES, compute_proxy, draw_batches

        if self._batches is None:
            self._batches = [] if self.proxy not in DATA_PROXIES else draw_batches(
                self.dataset, batches=1, batch_size=self.batch_size, seed=self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self.space.build(arch)
        value = compute_proxy(self.proxy, model, self._batches,
                              input_shape=self.space.input_shape(), seed=self.seed)
        return value if math.isfinite(value) or value == -math.inf else -math.inf

    def stored(self, score: float) -> float | None:
        """``score`` as a record stores it (``-inf``, an undefined proxy, as null; a count as an
        integer)."""
        if not math.isfinite(score):
            return None
        return int(score) if self.proxy in ("params", "macs") else score

    def record(self, proposal: Any, score: float, reason: str, step: int) -> TrialRecord:
        """The ``rejected`` record of a proposal filtered out (never trained)."""
        now = time.time()
        return TrialRecord(trial_id=proposal.id, arch_key=proposal.arch.key,
                           arch=dict(proposal.arch.items()), status=TrialStatus.REJECTED,
                           error=reason, step=step, metrics={self.metric: self.stored(score)},
                           started_at=now, finished_at=now)

    def verdict(self, arch: Arch) -> tuple[float, str | None]:
        """``(score, None)`` for a proposal to train, ``(score, reason)`` for one filtered out;
        the score joins the ones later proposals are compared with."""
        score = self.score(arch)
        before, self.scores = self.scores, [*self.scores, score]
        if len(before) < self.warmup or self.keep >= 1.0:
            return score, None
        finite = np.array([s if math.isfinite(s) else -1e308 for s in before])
        threshold = float(np.quantile(finite, 1.0 - self.keep))
        if score >= threshold:
            return score, None
        return score, (f"pre-filter: {self.proxy} {score:.4g} under {threshold:.4g}, the best "
                       f"{self.keep:.0%} of {len(before)} proposals scored before it")


class ProxyFeatures(Space):
    """The search space as a model-based controller sees it, with zero-cost proxies added to
    each architecture's features (``search.proxy_features``).

    Every decision, check and builder is the wrapped space's (its methods are called), but
    :meth:`features`: the space's own features, then each proxy of the untrained child on one
    seeded batch, as ``sign(v) log(1 + |v|)`` standardised by the mean and spread of a seeded
    sample of ``reference`` architectures (proxies span many orders of magnitude). BANANAS
    (White et al., arXiv:1910.11858) fits its predictor on these features; White et al. (NeurIPS
    2021, "How Powerful are Performance Predictors in NAS?") found zero-cost proxies among the
    most useful predictor inputs. Values are cached per architecture.
    """

    _DELEGATED = ("validate", "size", "sample", "encode", "decode", "mutate", "build",
                  "input_shape", "presets", "build_preset", "latency_units", "describe",
                  "to_string", "from_string", "count_params", "supernet", "arch_from_json",
                  "choices", "labels")

    def __init__(self, space: Space, dataset: Any, proxies: Iterable[str], *, seed: int = 0,
                 batch_size: int = 64, reference: int = 32) -> None:
        self.__dict__.update(space.__dict__)  # the space's own state: what Space methods read
        self.name, self._inner, self._proxy_names = space.name, space, list(proxies)
        self._filters = [ProxyFilter(space, dataset, proxy=p, keep=1.0, warmup=0,
                                     batch_size=batch_size, seed=seed) for p in proxies]
        self._cache: dict[str, list[float]] = {}
        rng = np.random.default_rng(seed)
        sample = np.array([self._raw(space.sample(rng)) for _ in range(reference)])
        self._mean, self._scale = sample.mean(0), sample.std(0) + 1e-6

    def __getattribute__(self, name: str) -> Any:
        if name in type(self)._DELEGATED:
            return getattr(object.__getattribute__(self, "_inner"), name)
        return object.__getattribute__(self, name)

    def __getstate__(self) -> dict[str, Any]:
        """The wrapped space and the proxies' names (Tune pickles its searcher, never reads it
        back; the dataset and the cache stay out)."""
        return {"_inner": self._inner, "_proxy_names": self._proxy_names, "name": self.name}

    def _raw(self, arch: Arch) -> list[float]:
        cached = self._cache.get(arch.key)
        if cached is None:
            values = [f.score(arch) for f in self._filters]
            cached = self._cache[arch.key] = [
                math.copysign(math.log1p(abs(v)), v) if math.isfinite(v) else -100.0
                for v in values]
        return cached

    def features(self, arch: Arch) -> list[float]:
        """The space's features (if any), then the standardised proxies."""
        proxies = ((np.array(self._raw(arch)) - self._mean) / self._scale).tolist()
        return [*(self._inner.features(arch) or []), *proxies]
