"""The Tune executor (``search.executor: tune``, the default): one Tune experiment segment.

:func:`run_trials` hands :class:`nas.runner.search.ControllerSearcher` to a ``tune.Tuner`` behind a
``ConcurrencyLimiter`` (``search.concurrency``), with ``ASHAScheduler`` over per-epoch validation
accuracy when ``search.scheduler: asha``, ``FailureConfig`` retries, ``reuse_actors=True``, and its
storage in ``RUN/tune/segment-N`` (neither may be a link). Tune's per-trial result files are not
written: mnas never reads them. The other executor, plain Ray tasks, is :mod:`nas.runner.tasks`.
"""

from __future__ import annotations

import os
from typing import Any

from ray import tune
from ray.tune.search import ConcurrencyLimiter

from nas._fs import safe_dir
from nas.results import RunDir
from nas.runner.search import ControllerSearcher
from nas.runner.session import scoped_env
from nas.runner.trainable import evaluate_trial

__all__ = ["run_trials"]


def run_trials(searcher: ControllerSearcher, payload: dict[str, Any], *, run: RunDir,
               segment: int, search: Any, epochs: int) -> Any:
    """Run one Tune experiment segment until the searcher's budget is used up."""
    from ray.tune.schedulers import ASHAScheduler

    scheduler = None
    if search.scheduler == "asha":
        scheduler = ASHAScheduler(metric="val_accuracy", mode="max", time_attr="training_iteration",
                                  max_t=max(epochs, 1) + 1, grace_period=search.grace_period,
                                  reduction_factor=search.reduction_factor)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: Tune prints nothing
    # Tune writes into RUN/tune/segment-N: neither may be a link (refused before Tune starts)
    safe_dir(run.tune_dir, root=run.path)
    safe_dir(run.tune_dir / f"segment-{segment}", root=run.path, create=False)
    resources = {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(evaluate_trial, payload=payload),
                                    resources)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=search.concurrency),
            scheduler=scheduler, reuse_actors=True,
            # the searcher counts children (batches, rejections given back) and ends the run
            num_samples=-1),
        run_config=tune.RunConfig(
            name=f"segment-{segment}", storage_path=str(run.tune_dir.resolve()),
            failure_config=tune.FailureConfig(max_failures=search.max_failures),
            verbose=0),
    )
    with scoped_env("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"):  # no per-trial result files
        return tuner.fit()
