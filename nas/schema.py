"""Every key of a search config, read from the settings dataclasses that parse it.

:func:`config_keys` walks the dataclasses behind each section (:class:`nas.config.SearchSettings`,
:class:`nas.config.RaySettings`, :class:`nas.config.LoggingSettings`,
:class:`nas.evaluation.evaluate.EvalSettings` and its :class:`nas.evaluation.train.TrainConfig`,
:class:`nas.latency.measure.LatencyConfig`, :class:`nas.reward.RewardConfig`) and returns one
:class:`ConfigKey` per key: its path (``search.trials``), its type (from the type hints), its
default (from the field) and its meaning (from the ``Args:`` section of the class docstring). A
field added to one of these classes shows up here by itself; one without an ``Args:`` entry has
an empty meaning (``tests/test_cli_config.py`` fails on it). The few structural keys that no
settings class holds (``space.name``, ``controller.options``, ``latency.service``, ...) are
listed in :data:`STRUCTURAL`.

:func:`resolved_config` writes a built config back as plain data with every default filled in.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, fields
from typing import Any

from nas.config import (
    SECTIONS,
    Constraints,
    LoggingSettings,
    RaySettings,
    SearchConfig,
    SearchSettings,
)
from nas.evaluation.evaluate import EvalSettings
from nas.evaluation.train import TrainConfig
from nas.latency.measure import LatencyConfig
from nas.reward import PRESETS, RewardConfig

__all__ = ["ConfigKey", "REQUIRED", "SETTINGS_CLASSES", "STRUCTURAL", "config_keys", "doc_args",
           "resolved_config"]



class _Required:
    """The default of a key that has none (shown as ``required``)."""

    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()

#: the dataclasses whose fields are config keys
SETTINGS_CLASSES = (SearchConfig, SearchSettings, RaySettings, LoggingSettings, EvalSettings,
                    TrainConfig, LatencyConfig, RewardConfig, Constraints)

# EvalSettings fields that the evaluator section names differently
_EVAL_RENAMES = {"evaluator": "name", "evaluator_options": "options"}
# EvalSettings fields that are sections of their own (train's keys live in `evaluator`)
_EVAL_NESTED = {"train": "evaluator", "latency": "latency", "reward": "reward",
                "constraints": "constraints"}
_SECTION_CLASSES = (("constraints", Constraints), ("search", SearchSettings),
                    ("ray", RaySettings), ("logging", LoggingSettings))


@dataclass(frozen=True)
class ConfigKey:
    """One config key.

    Args:
        key: the dotted path, e.g. ``search.trials``.
        type: the value's type as a user writes it (``int``, ``float | null``, ``mapping``).
        default: the value used when the key is left out (:data:`REQUIRED` when there is none).
        meaning: one line, from the settings class's docstring.
        source: where the key is declared, e.g. ``SearchSettings.trials``.
    """

    key: str
    type: str
    default: Any
    meaning: str
    source: str

    @property
    def required(self) -> bool:
        """Whether the key has no default (it must be given when its section is)."""
        return self.default is REQUIRED

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``default`` None and ``required`` true for a key without a default)."""
        return {"key": self.key, "type": self.type, "required": self.required,
                "default": None if self.required else self.default, "meaning": self.meaning,
                "source": self.source}


# keys that no settings class holds: (key, type, default, meaning)
STRUCTURAL: tuple[tuple[str, str, Any, str], ...] = (
    ("space.name", "str", REQUIRED,
     "registered search space (see `nas spaces`) or `package.module:Class`"),
    ("space.options", "mapping", {},
     "options of the space (see `nas space show NAME`); `in_channels`, `input_size` and "
     "`num_classes` come from the dataset unless given"),
    ("controller.name", "str", REQUIRED,
     "registered controller (e.g. `evolution`, `bananas`; docs: reference/controllers.md) or "
     "`package.module:Class`"),
    ("controller.options", "mapping", {}, "keyword options of the controller"),
    ("controller.warm_start", "list", [],
     "sources to warm-start from, earlier searches of the same space: run folders or CSV "
     "tables, each a path or `{path, weight: 1.0, metric, key: arch_str, goal: max}` "
     "(docs: how-to/warm-start.md)"),
    ("latency.service", "bool", False,
     "measure every child's latency in one dedicated actor on the node with the "
     "`latency_device` resource, one at a time, cached"),
    ("reward.preset", "str | null", None,
     "; ".join(f"`{name}`: alpha = {a:g}, beta = {b:g}" for name, (a, b) in PRESETS.items())
     + " (give a preset or alpha/beta, not both)"),
)
_TOP_MEANINGS = {
    "name": "run folder name under results_dir (default: the config file's stem and the start "
            "time)",
    "results_dir": "folder that holds the run folders",
}


def doc_args(cls: type) -> dict[str, str]:
    """``{field: one-line meaning}`` from the ``Args:`` section of ``cls``'s docstring.

    An entry ``a, b: text`` documents both fields; continuation lines are joined; reST markup
    (``:class:`X```, double back-quotes) becomes single back-quotes.
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    if "Args:" not in lines:
        return {}
    out: dict[str, str] = {}
    names: list[str] = []
    indent = None
    for line in lines[lines.index("Args:") + 1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break
        indent = depth if indent is None else indent
        entry = re.match(r"(\w+(?:, \w+)*): (.*)", line.strip()) if depth == indent else None
        if entry:
            names = entry.group(1).split(", ")
            out.update({name: entry.group(2) for name in names})
        else:
            out.update({name: f"{out[name]} {line.strip()}" for name in names})
    return {name: _plain(text) for name, text in out.items()}


def _plain(text: str) -> str:
    return re.sub(r":\w+:`", "`", text).replace("``", "`")


def _type_name(hint: Any) -> str:
    """``int``, ``float | null``, ``mapping``, ``list``: a type as it is written in YAML."""
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_name(arg) for arg in typing.get_args(hint))
    if hint is dict or origin in (dict, Mapping):
        return "mapping"
    if hint in (list, tuple) or origin in (list, tuple):
        return "list"
    return getattr(hint, "__name__", str(hint))


def _default(f: Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return REQUIRED


def _rows(cls: type, section: str, only: list[Field] | None = None,
          renames: Mapping[str, str] | None = None) -> list[ConfigKey]:
    """One row per field of ``cls`` (or of ``only``), keyed ``section.<field>``."""
    hints, docs, renames = typing.get_type_hints(cls), doc_args(cls), renames or {}
    prefix = f"{section}." if section else ""
    return [ConfigKey(prefix + renames.get(f.name, f.name), _type_name(hints[f.name]),
                      _default(f), docs.get(f.name, ""), f"{cls.__name__}.{f.name}")
            for f in (fields(cls) if only is None else only)]


def _evaluator_rows() -> list[ConfigKey]:
    """``evaluator.*``: EvalSettings' own keys (name and options renamed), then TrainConfig's."""
    own = [f for f in fields(EvalSettings) if f.name not in _EVAL_NESTED]
    rows = _rows(EvalSettings, "evaluator", own, _EVAL_RENAMES)
    rows.sort(key=lambda r: r.key not in ("evaluator.name", "evaluator.options"))
    return rows + _rows(TrainConfig, "evaluator")


def _structural(section: str) -> list[ConfigKey]:
    return [ConfigKey(key, type_, default, meaning, "nas.config")
            for key, type_, default, meaning in STRUCTURAL if key.startswith(section + ".")]


def config_keys() -> list[ConfigKey]:
    """Every key of a search config, section by section, in the order of the classes' fields."""
    top = [f for f in fields(SearchConfig) if f.name in _TOP_MEANINGS]
    rows = [ConfigKey(r.key, r.type, r.default, _TOP_MEANINGS[r.key], r.source)
            for r in _rows(SearchConfig, "", top)]
    rows += _structural("space") + _structural("controller") + _evaluator_rows()
    rows += _rows(LatencyConfig, "latency") + _structural("latency")
    rows += _rows(RewardConfig, "reward") + _structural("reward")
    for section, cls in _SECTION_CLASSES:
        rows += _rows(cls, section)
    return rows


def resolved_config(config: SearchConfig, settings: EvalSettings,
                    space_options: Mapping[str, Any],
                    controller_options: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` as plain data with every default filled in: the built space's and controller's
    options, the evaluator, latency and reward sections from ``settings``. Parsing the result
    gives the same experiment."""
    out = config.to_dict()
    out["space"] = {"name": config.space["name"], "options": dict(space_options)}
    out["controller"] = {"name": config.controller["name"], "options": dict(controller_options)}
    out["controller"]["warm_start"] = [dict(e) for e in config.controller.get("warm_start", [])]
    evaluator = {"name": settings.evaluator, "options": dict(settings.evaluator_options)}
    for f in fields(EvalSettings):
        if f.name == "train":
            evaluator.update(settings.train.to_dict())
        elif f.name not in _EVAL_NESTED and f.name not in _EVAL_RENAMES:
            evaluator[f.name] = getattr(settings, f.name)
    out["evaluator"] = evaluator
    out["latency"] = {**settings.latency.to_dict(), "service": config.latency_service}
    reward = settings.reward
    out["reward"] = None if reward is None else {**reward.to_dict(), "preset": None}
    return {key: out[key] for key in SECTIONS}
