"""The ``supernet`` evaluator: children scored with weights inherited from one trained supernet.

``evaluator: {name: supernet, options: {...}}`` (the options of
:class:`~nas.supernet.options.SupernetOptions`, plus ``checkpoint``) works for any space with the
supernet hook (:meth:`nas.space.Space.supernet`: ``mnasnet``, ``nasbench201``, a user's). Before
the first child the driver trains the supernet of the run's space once, as a Ray task with a
trial's resources, into ``RUN/supernet/`` (or reuses the folder ``checkpoint`` names: a supernet
folder, or a run folder that holds one); the trials then load it (once per worker process). Each
child is measured and checked against the constraints like any other, then, instead of being
trained, gets its weights cut out of the supernet, its BatchNorm statistics recalibrated on a few
training batches, and its validation accuracy and loss measured: seconds instead of a training
run. The model the trial hands over (kept weights, ``nas export``) holds the inherited weights;
its record says which supernet, after how many epochs (``metrics.supernet``), with the
validation loss (``val_loss``), its ``val_likelihood`` (exp(-loss): the geometric mean of the
probability given to the right class) and what ranks (``score``).

Ranking by loss (``score: loss``; Ning et al., NeurIPS 2021): ``accuracy`` stays the child's
accuracy (constraints, chance checks, tables), and the reward ranks by the loss: its ACC is
``supernet.val_likelihood``, a number in (0, 1] falling as the loss rises, so MnasNet's
``ACC * (LAT/T)^w`` keeps its shape and its trade-off against latency (the config's
``reward.accuracy_key`` defaults to it, :mod:`nas.config`; a run re-ranked later reads it too).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from nas.config import LOSS_REWARD_KEY
from nas.errors import ConfigError
from nas.evaluation.evaluate import EvalContext
from nas.latency.conditions import training
from nas.registry import evaluator, register_evaluator
from nas.space import Arch, Space
from nas.supernet.checkpoint import INFO_FILE, MODEL_FILE, load_supernet, read_info
from nas.supernet.options import SupernetOptions
from nas.supernet.score import score_child

__all__ = ["supernet_evaluator", "OPTION_KEYS", "split_options", "checkpoint_folder",
           "supernet_id", "SUPERNET_DIR", "LIKELIHOOD_KEY"]

OPTION_KEYS = (*(f.name for f in fields(SupernetOptions)), "checkpoint")
SUPERNET_DIR = "supernet"
LIKELIHOOD_KEY = LOSS_REWARD_KEY  # the reward's ACC with ``score: loss``
_LOADED: dict[str, tuple[Any, dict[str, Any]]] = {}


def split_options(options: Mapping[str, Any]) -> tuple[SupernetOptions, str | None]:
    """``(SupernetOptions, checkpoint)`` from ``evaluator.options`` (validated)."""
    data = dict(options or {})
    checkpoint = data.pop("checkpoint", None)
    if checkpoint is not None and (not isinstance(checkpoint, str) or not checkpoint):
        raise ConfigError(f"evaluator.options.checkpoint={checkpoint!r}: must be the path of a "
                          "supernet folder or of a run folder holding one")
    return SupernetOptions.from_dict(data), checkpoint


def checkpoint_folder(path: str | Path) -> Path:
    """The supernet folder ``path`` names: itself, or ``path/supernet`` for a run folder."""
    path = Path(path).expanduser()
    if (path / SUPERNET_DIR / MODEL_FILE).is_file() or (path / SUPERNET_DIR / INFO_FILE).is_file():
        return path / SUPERNET_DIR
    return path


def supernet_id(folder: str | Path) -> str:
    """A short id of a checkpoint's weights (the hash of its tensor file)."""
    digest = hashlib.sha256()
    with open(Path(folder) / MODEL_FILE, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _loaded(folder: str, space: Space) -> tuple[Any, dict[str, Any]]:
    """The supernet of ``folder`` for ``space`` (loaded once per process and weights file)."""
    key = f"{folder}:{space.name}:{supernet_id(folder)}"
    if key not in _LOADED:
        _LOADED.clear()  # one supernet per worker process at a time
        model, info = load_supernet(folder, space)
        _LOADED[key] = (model, {**info, "id": key.rsplit(":", 1)[1]})
    return _LOADED[key]


@register_evaluator("supernet")
@evaluator(options=OPTION_KEYS)
def supernet_evaluator(arch: Arch | None, model: torch.nn.Module, ctx: EvalContext) -> dict:
    """Latency on the target device, then the accuracy and loss of the child with inherited
    weights."""
    if arch is None:
        raise ConfigError("evaluator 'supernet' scores searched children, not presets")
    options, checkpoint = split_options(ctx.settings.evaluator_options)
    if checkpoint is None:
        raise ConfigError("evaluator 'supernet': no checkpoint (the driver trains one into the "
                          "run folder before the first child)")
    metrics = ctx.measure_latency(model)
    folder = str(checkpoint_folder(checkpoint))
    with ctx.timed("score"), training(ctx.activity):  # other children measure around it
        supernet, info = _loaded(folder, ctx.space)
        scored = score_child(supernet, arch, ctx.dataset, options)
        model.load_state_dict(scored.child.state_dict())  # kept and exported: inherited weights
    metrics.update(accuracy=scored.accuracy, supernet={
        "checkpoint": folder, "id": info["id"], "epochs": info.get("epochs_done"),
        "calib_batches": options.calib_batches, "score": options.score,
        **_loss_metrics(scored.loss)})
    return metrics


def _loss_metrics(loss: float) -> dict[str, float | None]:
    """``val_loss`` and ``val_likelihood`` = exp(-loss), in (0, 1] (None for a loss that is not
    finite: the reward by loss is then undefined)."""
    if not math.isfinite(loss):
        return {"val_loss": None, "val_likelihood": None}
    return {"val_loss": loss, "val_likelihood": math.exp(-loss)}


def _check_options(options: Mapping[str, Any]) -> None:
    """Values of ``evaluator.options`` checked before a search starts."""
    try:
        _, checkpoint = split_options(options)
    except ConfigError as exc:
        text = str(exc).replace("supernet option ", "evaluator.options.", 1)
        raise ConfigError(text if text.startswith("evaluator.") else f"evaluator.options: {text}"
                          ) from None
    if checkpoint is not None and read_info(checkpoint_folder(checkpoint)) is None:
        raise ConfigError(f"evaluator.options.checkpoint={checkpoint!r}: no supernet there "
                          f"(a folder with {INFO_FILE}, or a run folder with {SUPERNET_DIR}/)")


supernet_evaluator.check_options = _check_options  # type: ignore[attr-defined]


def stored_info(folder: str | Path) -> dict[str, Any] | None:
    """The ``supernet.json`` of a folder (None when it has none)."""
    return read_info(Path(folder))
