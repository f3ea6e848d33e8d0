"""Search configuration: YAML, ``--set key.path=value`` overrides, validation with key paths.

A config has these sections (every key optional but ``space.name`` and ``controller.name``)::

    name: quickstart            # run folder name (default: config file stem + time)
    results_dir: results
    space:      {name: mnasnet, options: {input_size: 8, in_channels: 1, num_classes: 10}}
    controller: {name: evolution, options: {population_size: 16, sample_size: 4},
                 warm_start: [results/pilot, {path: c10.csv, metric: acc, weight: 0.5}]}
    evaluator:  {name: default, dataset: digits, epochs: 5, optimizer: sgd, lr: 0.05, ...}
    latency:    {device: cpu, threads: 1, runtime: torch, repeats: 50, service: false}
    reward:     {target: 2.0, alpha: -0.07, beta: -0.07, metric: latency}  # or {preset, target}
    search:     {trials: 24, concurrency: 2, cpus_per_trial: 1, gpus_per_trial: 0,
                 scheduler: none, max_failures: 1, seed: 0, dedup: true, max_repeats: 100,
                 keep_weights: 3, progress: auto, batch_children: auto, executor: tune}
    ray:        {address: null, num_cpus: null, num_gpus: null, dashboard: false, resources: null}
    logging:    {tensorboard: false, mlflow: {tracking_uri: file:./mlruns, experiment: mnas}}

``evaluator`` takes the keys of :class:`nas.evaluation.evaluate.EvalSettings` (``dataset``,
``val_fraction``,
``max_train``, ...), the training keys of :class:`nas.evaluation.train.TrainConfig` (``epochs``,
``lr``, ...)
and ``name`` (a registered evaluator or ``package.module:function``) and ``options`` (passed to a
custom evaluator). This module is data and YAML only: it checks structure and types;
:func:`nas.experiment.build_experiment` turns a config into the objects of a search (once), checking
names, options and sizes. Errors are :class:`ConfigError` naming the key path.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from nas._checks import (
    check_bool,
    check_int,
    check_known,
    check_number,
)
from nas._fs import read_text
from nas.constraints import Constraints
from nas.errors import ConfigError, UsageError
from nas.search_settings import SearchSettings

__all__ = ["SearchSettings", "RaySettings", "LoggingSettings", "SearchConfig", "load_config",
           "apply_overrides", "check_run_name", "parse_warm_start", "LOSS_REWARD_KEY"]

SECTIONS = ("name", "results_dir", "space", "controller", "evaluator", "latency", "reward",
            "constraints", "search", "ray", "logging")
MAX_NAME_BYTES = 255  # a folder name on every common file system
CONFIG_CAP = 4 << 20  # a config is a few kilobytes
# the reward's ACC when the supernet evaluator ranks by validation loss (``score: loss``):
# exp(-loss), recorded by nas.supernet.evaluator
LOSS_REWARD_KEY = "supernet.val_likelihood"


@dataclass(frozen=True)
class LoggingSettings:
    """Experiment trackers that receive every child's per-epoch and final metrics.

    Args:
        tensorboard: write TensorBoard event files under ``RUN/tensorboard/`` (one run per
            child).
        mlflow: log to MLflow: ``{tracking_uri: ..., experiment: ...}`` (one MLflow run per
            child; needs ``pip install 'mnas[mlflow]'``, i.e. mlflow-skinny); None: off.
    """

    tensorboard: bool = False
    mlflow: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        check_bool("logging.tensorboard", self.tensorboard)
        if self.mlflow is None:
            return
        if not isinstance(self.mlflow, Mapping):
            raise ConfigError(f"logging.mlflow={self.mlflow!r}: must be a mapping with "
                              "tracking_uri (and experiment)")
        check_known("logging.mlflow", self.mlflow, ("tracking_uri", "experiment"))
        for key in ("tracking_uri", "experiment"):
            value = self.mlflow.get(key)
            if (key == "tracking_uri" or value is not None) and (
                    not isinstance(value, str) or not value):
                raise ConfigError(f"logging.mlflow.{key}={value!r}: must be a non-empty string")


@dataclass(frozen=True)
class RaySettings:
    """Where Ray runs.

    Args:
        address: an existing cluster (``host:port`` or ``ray://...``); None starts a local Ray
            (unless ``RAY_ADDRESS`` is set).
        num_cpus, num_gpus: resources of the local Ray (None: detect).
        dashboard: start the dashboard of the local Ray, bound to 127.0.0.1 (off by default).
        resources: custom resources of the local Ray, e.g. ``{latency_device: 1}`` (added
            automatically when ``latency.service`` is on).
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    dashboard: bool = False
    resources: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if self.address is not None and (not isinstance(self.address, str) or not self.address):
            raise ConfigError(f"ray.address={self.address!r}: must be a 'host:port' string")
        check_int("ray.num_cpus", self.num_cpus, optional=True)
        check_int("ray.num_gpus", self.num_gpus, minimum=0, optional=True)
        if not isinstance(self.dashboard, bool):
            raise ConfigError(f"ray.dashboard={self.dashboard!r}: must be true or false")
        if self.resources is not None:
            if not isinstance(self.resources, Mapping):
                raise ConfigError(f"ray.resources={self.resources!r}: must be a mapping")
            for name, amount in self.resources.items():
                check_number(f"ray.resources.{name}", amount)


@dataclass(frozen=True)
class SearchConfig:
    """A validated search configuration (see the module docstring for the layout)."""

    space: dict[str, Any]
    controller: dict[str, Any]
    evaluator: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, Any] = field(default_factory=dict)
    reward: dict[str, Any] | None = None
    search: SearchSettings = field(default_factory=SearchSettings)
    ray: RaySettings = field(default_factory=RaySettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    constraints: Constraints = field(default_factory=Constraints)
    name: str | None = None
    results_dir: str = "results"

    def to_dict(self) -> dict[str, Any]:
        """Plain data, the resolved ``config.yaml`` of a run."""
        out = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        for key in ("search", "ray", "logging", "constraints"):
            out[key] = asdict(getattr(self, key))
        return out

    @property
    def auto_target(self) -> bool:
        """``reward.target: auto``: the driver measures the target from sampled children."""
        return bool(self.reward) and self.reward.get("target") == "auto"

    @property
    def latency_service(self) -> bool:
        """Whether latency is measured by the dedicated latency-service actor."""
        return bool(self.latency.get("service", False))




def check_run_name(name: Any, key: str = "name") -> str:
    """A run folder's name: one folder name (no ``/``, not ``.``/``..``, not ``-`` first), no
    control characters, at most 255 bytes in UTF-8; else a ConfigError naming ``key``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}={name!r}: must be a non-empty folder name", params=(key,))
    if name in (".", "..") or "/" in name or "\\" in name or name.startswith("-"):
        raise ConfigError(f"{key}={name!r:.80}: must be one folder name (no '/', not '..', not "
                          "starting with '-'), created inside results_dir", params=(key,))
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise ConfigError(f"{key}={name!r:.80}: must not hold control characters (newlines, "
                          "tabs, ...)", params=(key,))
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise ConfigError(f"{key}={name[:40]!r}...: {size} bytes; a folder name holds at most "
                          f"{MAX_NAME_BYTES}", params=(key,))
    return name


def _named_section(key: str, data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key}: must be a mapping with 'name' (and 'options')")
    check_known(key, data, ("name", "options", "warm_start") if key == "controller"
                else ("name", "options"))
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError(f"{key}.name: missing; give a registered name or 'package.module:Class'")
    options = data.get("options") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{key}.options={options!r}: must be a mapping")
    out = {"name": data["name"], "options": dict(options)}
    if key == "controller" and data.get("warm_start"):
        out["warm_start"] = parse_warm_start(data["warm_start"])
    return out


WARM_KEYS = ("path", "weight", "metric", "key", "goal")


def parse_warm_start(value: Any, key: str = "controller.warm_start") -> list[dict[str, Any]]:
    """``controller.warm_start``: a list of sources, each a path (a run folder or a CSV table)
    or a mapping ``{path, weight: 1.0, metric, key: arch_str, goal: max}``; paths made absolute.
    Only the structure is checked here (:mod:`nas.search.warm_load` reads the sources)."""
    if isinstance(value, str | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(f"{key}={value!r:.80}: must be a list of sources (run folders or CSV "
                          "tables, or mappings with path, weight, metric, key, goal)")
    out = []
    for n, item in enumerate(value):
        where = f"{key}[{n}]"
        entry = {"path": item} if isinstance(item, str) else item
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}={item!r:.80}: must be a path or a mapping with path")
        check_known(where, entry, WARM_KEYS)
        path = entry.get("path")
        if not isinstance(path, str) or not path or "\0" in path:
            raise ConfigError(f"{where}.path={path!r:.80}: must be a run folder or a CSV file")
        weight = check_number(f"{where}.weight", entry.get("weight", 1.0), minimum=0.0)
        for name in ("metric", "key"):
            if entry.get(name) is not None and (not isinstance(entry[name], str)
                                                or not entry[name]):
                raise ConfigError(f"{where}.{name}={entry[name]!r:.80}: must be a column or "
                                  "metric name")
        goal = entry.get("goal", "max")
        if goal not in ("max", "min"):
            raise ConfigError(f"{where}.goal={goal!r:.40}: allowed: max, min")
        out.append({"path": str(Path(path).expanduser().absolute()), "weight": weight,
                    "metric": entry.get("metric"), "key": entry.get("key"), "goal": goal})
    return out


def _mapping(key: str, data: Any) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{key}={data!r}: must be a mapping")
    return dict(data)


def _settings(cls: type, key: str, data: Any) -> Any:
    data = _mapping(key, data)
    check_known(key, data, [f.name for f in fields(cls)])
    return cls(**data)


def _reward_section(reward: dict[str, Any], evaluator: Mapping[str, Any]) -> dict[str, Any]:
    """``reward``, whose ACC defaults to :data:`LOSS_REWARD_KEY` when the supernet evaluator
    ranks by validation loss (``evaluator.options.score: loss``); a given ``accuracy_key`` stays.
    The resolved ``config.yaml`` then names it, so a run re-ranked later ranks alike."""
    options = evaluator.get("options")
    if (evaluator.get("name") == "supernet" and isinstance(options, Mapping)
            and options.get("score") == "loss"):
        reward.setdefault("accuracy_key", LOSS_REWARD_KEY)
    return reward


def parse_config(data: Any) -> SearchConfig:
    """Validate plain config data (structure and types; names are checked by :func:`check`)."""
    if not isinstance(data, Mapping):
        raise ConfigError("config: the file must hold a YAML mapping of sections")
    check_known("config", data, SECTIONS)
    if "space" not in data:
        raise ConfigError("space: missing section (e.g. space: {name: mnasnet})")
    if "controller" not in data:
        raise ConfigError("controller: missing section (e.g. controller: {name: evolution})")
    name = data.get("name")
    if name is not None:
        check_run_name(name)
    results_dir = data.get("results_dir", "results")
    if not isinstance(results_dir, str) or not results_dir or "\0" in results_dir:
        raise ConfigError(f"results_dir={results_dir!r:.80}: must be a path")
    reward = data.get("reward")
    evaluator = _mapping("evaluator", data.get("evaluator"))
    return SearchConfig(
        space=_named_section("space", data["space"]),
        controller=_named_section("controller", data["controller"]),
        evaluator=evaluator,
        latency=_mapping("latency", data.get("latency")),
        reward=None if reward is None else _reward_section(_mapping("reward", reward), evaluator),
        search=_settings(SearchSettings, "search", data.get("search")),
        ray=_settings(RaySettings, "ray", data.get("ray")),
        logging=_settings(LoggingSettings, "logging", data.get("logging")),
        constraints=Constraints.from_dict(_mapping("constraints", data.get("constraints"))),
        name=name, results_dir=results_dir)


def wants_cuda(config: SearchConfig) -> str | None:
    """The key path of the first CUDA device the config asks for, or None."""
    for key, section, name in (("evaluator.device", config.evaluator, "device"),
                               ("latency.device", config.latency, "device")):
        if str(section.get(name, "cpu")).startswith("cuda"):
            return key
    return None


def _override_error(item: str, detail: str) -> ConfigError:
    return ConfigError(f"overrides {item!r}: {detail}", params=("overrides",))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to plain config data."""
    data = copy.deepcopy(data)
    for item in overrides:
        path, sep, raw = item.partition("=")
        if not sep or not path:
            raise _override_error(item, "expected key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise _override_error(item, f"cannot parse the value {raw!r}") from None
        keys = path.split(".")
        node = data
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise _override_error(item, f"{'.'.join(keys[:depth + 1])} is not a mapping")
            node = child
        node[keys[-1]] = value
    return data


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> SearchConfig:
    """Read a YAML config, apply overrides and validate its structure."""
    path = Path(path)
    try:
        text = read_text(path, "config", cap=CONFIG_CAP)
    except FileNotFoundError:
        raise UsageError(f"config {str(path)!r}: no such file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise ConfigError(f"config {str(path)!r}: invalid YAML{line}") from None
    except RecursionError:
        raise ConfigError(f"config {str(path)!r}: nested too deeply") from None
    return parse_config(apply_overrides(data or {}, overrides))
