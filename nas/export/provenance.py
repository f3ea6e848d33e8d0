"""What an architecture card says about where its child and its weights came from.

``provenance``: the run, the trial, when and where it ran, the dataset and epochs, the device, the
latency (the final, re-measured one when there is one, with the search's beside it), the
evaluator, controller and reward. ``weights``: whether the exported weights are trained, how long
and from where (the search's kept weights, a supernet's inherited weights, a fine-tuning at
export), loaded into the model on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from nas.export.formats import load_weights, train_for_export
from nas.export.rebuild import card_space

__all__ = ["provenance", "latency_section", "load_card_weights", "model_arch"]

log = logging.getLogger("nas.export.card")


def provenance(run: Any, record: Mapping[str, Any]) -> dict[str, Any]:
    config, metrics = run.config, record.metrics or {}
    evaluator = dict(config.get("evaluator") or {})
    train = metrics.get("train") or {}
    return {
        "run": run.path.name, "run_dir": str(run.path), "trial_id": record.trial_id,
        "tune_trial_id": record.tune_trial_id, "step": record.step,
        "started_at": record.started_at, "finished_at": record.finished_at,
        "dataset": metrics.get("dataset", evaluator.get("dataset")),
        "epochs": train.get("epochs", evaluator.get("epochs")),
        "device": record.device or {}, "node": record.node or {},
        "latency": latency_section(run, record, metrics, config),
        "evaluator": evaluator, "controller": config.get("controller") or {},
        "reward": {"settings": config.get("reward"), "stored": record.reward},
    }


def latency_section(run: Any, record: Any, metrics: Mapping[str, Any],
             config: Mapping[str, Any]) -> dict[str, Any]:
    """The latency the card states: the final (re-measured) one when there is one, with the
    search's number beside it."""
    final = (getattr(run, "final", None) or {}).get(record.arch_key)
    source = final or metrics
    out = {"median_ms": source.get("latency_ms"), "p10_ms": source.get("latency_p10_ms"),
           "p90_ms": source.get("latency_p90_ms"), "spread": source.get("latency_spread"),
           "n": source.get("latency_n"), "settings": config.get("latency") or {},
           "source": "remeasured" if final else "search"}
    if final:
        out["search_median_ms"] = metrics.get("latency_ms")
        out["remeasured"] = {k: final.get(k) for k in ("passes", "conditions", "by", "at")}
    return out


def load_card_weights(run: Any, record: Any, model: nn.Module, train_epochs: int | None,
                      from_scratch: bool = False) -> dict[str, Any]:
    """Load the search's kept weights of the trial (if any), fine-tune (if asked), or train from
    the fresh initialisation (``from_scratch``); the card's ``weights`` entry says whether the
    exported weights are trained, how long, from which trial."""
    if from_scratch and train_epochs:
        summary = train_for_export(model, run.config, train_epochs)
        return {"trained": True, "epochs": train_epochs, "trial": record.trial_id,
                "source": "export", "from_scratch": True, "train": summary}
    kept = run.dir.weights_path(record.trial_id)
    supernet = (record.metrics or {}).get("supernet")
    info: dict[str, Any] = {"trained": False}
    if kept.is_file():
        load_weights(model, kept, "safetensors")
        epochs = ((record.metrics or {}).get("train") or {}).get("epochs")
        info = {"trained": True, "epochs": epochs, "trial": record.trial_id, "source": "search"}
    elif supernet and _inherit(run, record, model, supernet):
        info = {"trained": True, "epochs": 0, "trial": record.trial_id, "source": "search"}
    if supernet:  # inherited weights: which supernet, trained how long
        info.update(source="supernet", epochs=0, supernet=dict(supernet))
    if train_epochs:
        summary = train_for_export(model, run.config, train_epochs)
        base = info.get("source", "search") if info["trained"] else None
        info = {**info, "trained": True, "epochs": (info.get("epochs") or 0) + train_epochs,
                "trial": record.trial_id, "fine_tuned_epochs": train_epochs,
                "source": f"{base}+export" if base else "export", "train": summary}
    if not info["trained"]:
        log.warning("trial %s: no trained weights kept (search.keep_weights) and no "
                    "train_epochs: the exported weights are UNTRAINED", record.trial_id)
    return info


def _inherit(run: Any, record: Any, model: nn.Module, supernet: dict[str, Any]) -> bool:
    """The child's weights cut again out of the supernet its trial was scored with (BN
    recalibrated as in the search), when the checkpoint is still there."""
    from nas.config import parse_config
    from nas.evaluation.evaluate import get_dataset
    from nas.experiment import eval_settings
    from nas.supernet import load_supernet, score_child
    from nas.supernet.evaluator import split_options

    folder = Path(str(supernet.get("checkpoint", "")))
    if not (folder / "supernet.safetensors").is_file():
        log.warning("trial %s: its supernet %s is gone; cannot inherit its weights",
                    record.trial_id, folder)
        return False
    settings = eval_settings(parse_config(run.config))
    options, _ = split_options(settings.evaluator_options)
    space = run_space(run)
    net, _ = load_supernet(folder, space)
    scored = score_child(net, space.validate(record.arch), get_dataset(settings), options)
    model.load_state_dict(scored.child.state_dict())
    return True


def run_space(run: Any) -> Any:
    """The run's space (its config's name and options)."""
    from nas.registry import get_space

    name, options = card_space(run.config)
    return get_space(name, **options)


def model_arch(run: Any, record: Any) -> Any:
    """The record's architecture in the run's space."""
    return run_space(run).validate(record.arch)
