"""Reading an architecture card back: the card file, the network it rebuilds, and the check.

:func:`build_from_card` rebuilds the model of a card written by :mod:`nas.export.card` from its
space and decisions alone (the ``model.pt2``/``model.onnx`` files are never needed) and loads its
safetensors weights when it has them; :func:`verify_card` compares the rebuilt model with the
parameter count and reference outputs the card stores.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.errors import UsageError
from nas.export.formats import check_reference, load_weights

__all__ = ["CARD", "CARD_FORMAT", "card_space", "load_card", "build_from_card", "verify_card"]

CARD = "arch.json"
CARD_FORMAT = "mnas-card/1"


def card_space(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a run config's (or card's) ``space`` section."""
    section = config.get("space")
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise UsageError("the run config/card has no space.name")
    return section["name"], dict(section.get("options") or {})



def load_card(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read a card (``arch.json`` or the folder holding it); returns ``(card, folder)``."""
    path = Path(path)
    file = path / CARD if path.is_dir() else path
    try:
        card = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"card {str(file)!r}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"card {str(file)!r}: cannot read JSON ({exc})") from None
    if not isinstance(card, dict) or not isinstance(card.get("decisions"), dict):
        raise UsageError(f"card {str(file)!r}: expected a JSON object with 'space' and 'decisions'")
    return card, file.parent


def build_from_card(path: str | Path, *, weights: bool = True) -> nn.Module:
    """Rebuild the model of an architecture card, in eval mode.

    Args:
        path: ``arch.json`` or the export folder holding it.
        weights: load the card's weights file when it has one (trained or initial weights).

    Raises:
        UsageError: unreadable card, unknown space, decisions not in the space, a key that does
            not match the decisions, or a missing/mismatched weights file.
    """
    from nas.registry import get_space

    card, folder = load_card(path)
    name, options = card_space(card)
    space = get_space(name, **options)
    arch = space.validate(card["decisions"])
    if card.get("arch_key") not in (None, arch.key):
        raise UsageError(f"card arch_key {card['arch_key']!r} does not match its decisions "
                         f"({arch.key}); the card was edited or the space changed")
    torch.manual_seed(int((card.get("model") or {}).get("seed", 0)))
    model = space.build(arch)
    files, info = card.get("files") or {}, card.get("weights") or {}
    if weights and files.get("weights"):
        load_weights(model, folder / files["weights"], info.get("format", "safetensors"))
    return model.eval()


def verify_card(path: str | Path, model: nn.Module | None = None, *,
                weights: bool = True) -> dict[str, Any]:
    """Compare a card's model (rebuilt unless given) with the card.

    Args:
        path: the card or its folder.
        model: the model built from it (default: :func:`build_from_card`).
        weights: whether the model holds the card's weights (outputs are compared only then).

    Returns:
        ``{"params", "card_params", "params_match", "reference_max_abs_diff", "outputs_match"}``
        (the last two None without weights or a stored reference).
    """
    card, _ = load_card(path)
    model = model if model is not None else build_from_card(path, weights=weights)
    params = int(sum(p.numel() for p in model.parameters()))
    expected = (card.get("model") or {}).get("params")
    reference = (card.get("checks") or {}).get("reference")
    has_weights = bool((card.get("files") or {}).get("weights"))
    diff = check_reference(model, reference) if weights and reference and has_weights else None
    return {"params": params, "card_params": expected,
            "params_match": expected is None or expected == params,
            "reference_max_abs_diff": diff,
            "outputs_match": None if diff is None else bool(diff <= 1e-4)}
