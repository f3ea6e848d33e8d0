"""A validated config becomes one :class:`Experiment`, built once per search or resume.

:func:`build_experiment` checks everything a search needs that the config's structure cannot
tell (names and their kinds, options, devices, the dataset, the space's sizes) and builds the
evaluation settings, the dataset, the space and a fresh controller; the driver hands the pieces
down. Errors are :class:`~nas.errors.ConfigError` naming the user's key paths
(``evaluator.epochs``, ``space.options.width_mult``), listing the keys that exist and suggesting
the nearest one for a typo.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from nas._checks import check_known
from nas.config import SearchConfig
from nas.errors import ConfigError, UnknownOptionError, UsageError, did_you_mean
from nas.registry import CONTROLLERS, EVALUATORS, SPACES, evaluator_options

if TYPE_CHECKING:
    from nas.evaluation.data import Dataset
    from nas.evaluation.evaluate import EvalSettings
    from nas.search.controller import Controller
    from nas.space import Space

__all__ = ["Experiment", "build_experiment", "eval_settings", "check_evaluator",
           "check_training_split"]


@dataclass
class Experiment:
    """Everything a search is made of, built once from a validated config."""

    config: SearchConfig
    settings: EvalSettings
    dataset: Dataset
    space: Space
    controller: Controller
    evaluator: Callable[..., Any]

    def with_config(self, config: SearchConfig) -> Experiment:
        """The same objects under the resolved config (e.g. the space's sizes filled in, the
        reward's target measured); the evaluation settings follow the config."""
        return Experiment(config, eval_settings(config), self.dataset, self.space,
                          self.controller, self.evaluator)


def build_experiment(config: SearchConfig, *, warm: bool = True) -> Experiment:
    """Check and build the settings, dataset, space, controller and evaluator of ``config``.

    ``warm``: read the sources of ``controller.warm_start`` and hand them to the controller
    (a resume that loads the controller's saved state does not need them: the state holds them).
    """
    from nas.evaluation.evaluate import get_dataset, space_for_dataset
    from nas.evaluation.prefilter import check_prefilter

    if not isinstance(config.latency.get("service", False), bool):
        raise ConfigError(f"latency.service={config.latency['service']!r}: must be true or false")
    settings = eval_settings(config)
    evaluator = check_evaluator(settings.evaluator, settings.evaluator_options)
    _check_devices(config, settings)
    dataset = _named_error("evaluator.dataset", get_dataset, settings)
    check_training_split(settings, dataset)
    check_prefilter(config.search.prefilter, config.search.proxy_features)
    setup = getattr(evaluator, "check_setup", None)  # e.g. zero_cost: the reward's key, the data
    if callable(setup):
        setup(settings, dataset)
    _named_error("space.name", SPACES.get, config.space["name"])
    _named_error("controller.name", CONTROLLERS.get, config.controller["name"])
    space = _prefixed("space", space_for_dataset, config.space["name"], dataset,
                      **config.space.get("options", {}))
    seen = space  # what the controller sees: with proxy features, their values too
    if config.search.proxy_features:
        from nas.evaluation.prefilter import ProxyFeatures

        seen = ProxyFeatures(space, dataset, config.search.proxy_features,
                             seed=settings.train.seed)
    controller = _prefixed("controller", CONTROLLERS.create, config.controller["name"],
                           space=seen, seed=config.search.seed,
                           **config.controller.get("options", {}))
    if warm and config.controller.get("warm_start"):
        from nas.search.warm_load import load_sources

        sources = load_sources(config.controller["warm_start"], seen,
                               space_name=config.space["name"])
        try:
            controller.warm_start(sources)
        except UsageError as exc:
            raise ConfigError(f"controller.warm_start: {exc}") from None
    return Experiment(config, settings, dataset, space, controller, evaluator)


def check_training_split(settings: EvalSettings, dataset: Any) -> None:
    """A training split that can train: every class present and at least one full batch (the
    last partial batch is dropped, so a batch larger than the split would train nothing and
    every child would score at chance)."""
    n_train, classes = int(dataset.summary()["train"]), int(dataset.num_classes)
    labels = getattr(dataset, "y_train", None)
    present = classes if labels is None else int((labels.bincount(minlength=classes) > 0).sum())
    if n_train < classes or present < classes:
        raise ConfigError(
            f"evaluator.val_fraction={settings.val_fraction:g}: leaves {n_train} training images "
            f"for {classes} classes ({classes - present} with none); every class needs at least "
            "one (lower evaluator.val_fraction or raise evaluator.max_train)")
    batch = settings.train.batch_size
    if batch > n_train:
        raise ConfigError(
            f"evaluator.batch_size={batch}: larger than the {n_train} training images, so no "
            f"training step would run; at most {n_train}")


def eval_settings(config: SearchConfig) -> EvalSettings:
    """:class:`nas.evaluation.evaluate.EvalSettings` from the evaluator, latency and reward
    sections."""
    from nas.evaluation.evaluate import EvalSettings

    ev = dict(config.evaluator)
    train_keys, data_keys = _evaluator_keys()
    check_known("evaluator", ev, [*data_keys, *train_keys, "name", "options"])
    data: dict[str, Any] = {k: v for k, v in ev.items() if k in data_keys}
    _absolute_paths(data)
    data["train"] = {k: v for k, v in ev.items() if k in train_keys}
    data["evaluator"] = ev.get("name", "default")
    if ev.get("options") is not None:
        data["evaluator_options"] = ev["options"]
    data["latency"] = {k: v for k, v in config.latency.items() if k != "service"}
    data["reward"] = config.reward
    data["constraints"] = config.constraints.to_dict()
    if config.auto_target:  # checked with a stand-in; the driver measures the real one
        data["reward"] = {**config.reward, "target": 1.0}
    return _prefixed("evaluator", EvalSettings.from_dict, data)


def _absolute_paths(data: dict[str, Any]) -> None:
    """The dataset's file or folder and ``data_root`` as absolute paths: trial workers run in
    other working directories."""
    from pathlib import Path

    from nas.evaluation.data import absolute_name

    if isinstance(data.get("dataset"), str):
        data["dataset"] = absolute_name(data["dataset"])
    if isinstance(data.get("data_root"), str) and data["data_root"]:
        data["data_root"] = str(Path(data["data_root"]).expanduser().absolute())


def check_evaluator(name: str, options: Mapping[str, Any]) -> Callable[..., Any]:
    """The kind-checked evaluator function; ``options`` must be keys it declared."""
    try:
        fn = EVALUATORS.get(name)
    except UsageError as exc:
        raise ConfigError(f"evaluator.name: {exc}", params=exc.params) from None
    takes = evaluator_options(fn) or ()
    for key in options:
        if key not in takes:
            raise ConfigError(
                f"evaluator.options.{key}: not an option of evaluator {name!r}"
                f"{did_you_mean(key, takes)}; it takes: {', '.join(takes) or 'no options'}")
    check = getattr(fn, "check_options", None)  # an evaluator may validate its values too
    if callable(check):
        check(dict(options))
    return fn


def _check_devices(config: SearchConfig, settings: Any) -> None:
    """A CUDA device needs GPUs per trial (whether the cluster has any is checked once it is up)."""
    for key, device in (("evaluator.device", settings.train.device),
                        ("latency.device", settings.latency.device)):
        if device.startswith("cuda") and config.search.gpus_per_trial <= 0:
            raise ConfigError(f"{key}={device!r} needs search.gpus_per_trial > 0 (a trial "
                              "without a GPU sees no CUDA device)")


_USER_PATHS = (("train.", "evaluator."), ("evaluator_options", "evaluator.options"),
               ("evaluator=", "evaluator.name="))


def _evaluator_keys() -> tuple[list[str], list[str]]:
    """(training keys, data keys) that the ``evaluator`` section takes besides name/options."""
    from nas.evaluation.evaluate import EvalSettings
    from nas.evaluation.train import TrainConfig

    train = [f.name for f in fields(TrainConfig)]
    data = [f.name for f in fields(EvalSettings)
            if f.name not in ("train", "latency", "reward", "evaluator", "evaluator_options",
                              "constraints")]
    return train, data


def _prefixed(section: str, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a ConfigError's key is rewritten to the user's key path in ``section``."""
    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        msg = str(exc)
        for inner, outer in _USER_PATHS:
            if section == "evaluator" and msg.startswith(inner):
                msg = outer + msg[len(inner):]
        known = ("latency.", "reward.", f"{section}.")
        raise ConfigError(msg if msg.startswith(known) else f"{section}.{msg}") from None
    except UnknownOptionError as exc:
        raise ConfigError(f"{section}.options.{exc.key}: {exc.detail}") from None


def _named_error(path: str, fn: Any, *args: Any) -> Any:
    """Call ``fn``; a plain UsageError (an unknown name, a missing file) gets the key path."""
    try:
        return fn(*args)
    except ConfigError:
        raise
    except UsageError as exc:
        raise ConfigError(f"{path}: {exc}", params=exc.params) from None
