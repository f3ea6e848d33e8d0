"""Reading an architecture card back: the card file, the network it rebuilds, and the check.

:func:`build_from_card` rebuilds the model of a card written by :mod:`nas.export.card` from its
space and decisions alone (the ``model.pt2``/``model.onnx`` files are never needed) and loads its
safetensors weights when it has them; :func:`verify_card` compares the rebuilt model with the
parameter count and reference outputs the card stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas._fs import read_json
from nas.errors import UsageError
from nas.export.card_checks import CARD, CARD_FORMAT, card_file, check_card
from nas.export.formats import check_reference, load_weights

__all__ = ["CARD", "CARD_FORMAT", "card_space", "load_card", "build_from_card", "verify_card"]

CARD_CAP = 16 << 20  # a card is kilobytes


def card_space(config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(name, options)`` of a run config's (or card's) ``space`` section."""
    section = config.get("space")
    if not isinstance(section, Mapping) or not isinstance(section.get("name"), str):
        raise UsageError("the run config/card has no space.name")
    options = section.get("options") or {}
    if not isinstance(options, Mapping):
        raise UsageError("the run config/card's space.options is not a mapping")
    return section["name"], dict(options)


def _card_path(path: str | Path) -> Path:
    path = Path(path)
    return path / CARD if path.is_dir() else path


def load_card(path: str | Path) -> tuple[dict[str, Any], Path]:
    """Read and check a card (``arch.json`` or the folder holding it); returns ``(card,
    folder)``. Every field mnas uses is checked (:func:`nas.export.card_checks.check_card`)."""
    file = _card_path(path)
    try:
        card = read_json(file, "card", cap=CARD_CAP)
    except FileNotFoundError:
        raise UsageError(f"card {str(file)!r}: no such file") from None
    return check_card(card, file), file.parent


def build_from_card(path: str | Path, *, weights: bool = True,
                    trust_code: bool = False) -> nn.Module:
    """Rebuild the model of an architecture card, in eval mode.

    Args:
        path: ``arch.json`` or the export folder holding it.
        weights: load the card's weights file when it has one (trained or initial weights).
        trust_code: import a ``module:attr`` space the card names (it runs that module's code);
            without it only registered spaces are built.

    Raises:
        UsageError: an unreadable or malformed card, an unknown or untrusted space, decisions
            not in the space, an input shape the space's options do not give, a key that does
            not match the decisions, or a missing/mismatched weights file.
    """
    from nas.registry import get_space, names_from

    card, folder = load_card(path)
    name, options = card_space(card)
    file = _card_path(path)
    with names_from(file, trust_code=trust_code):
        space = get_space(name, **options)
    if list(space.input_shape()) != list(card["input_shape"]):
        raise UsageError(f"card {str(file)!r}: input_shape {card['input_shape']} disagrees with "
                         f"its space options (they give {list(space.input_shape())})")
    arch = space.validate(card["decisions"])
    if card.get("arch_key") not in (None, arch.key):
        raise UsageError(f"card arch_key {card['arch_key']!r} does not match its decisions "
                         f"({arch.key}); the card was edited or the space changed")
    torch.manual_seed(int((card.get("model") or {}).get("seed") or 0))
    model = space.build(arch)
    weights_file = card_file(card, folder, "weights")
    if weights and weights_file is not None:
        load_weights(model, weights_file, (card.get("weights") or {}).get("format",
                                                                          "safetensors"))
    return model.eval()


def verify_card(path: str | Path, model: nn.Module | None = None, *,
                weights: bool = True, trust_code: bool = False) -> dict[str, Any]:
    """Compare a card's model (rebuilt unless given) with the card.

    Args:
        path: the card or its folder.
        model: the model built from it (default: :func:`build_from_card`).
        weights: whether the model holds the card's weights (outputs are compared only then).
        trust_code: passed to :func:`build_from_card` when the model is rebuilt here.

    Returns:
        ``{"params", "card_params", "params_match", "reference_max_abs_diff", "outputs_match"}``
        (the last two None without weights or a stored reference).
    """
    card, _ = load_card(path)
    model = model if model is not None else build_from_card(path, weights=weights,
                                                            trust_code=trust_code)
    params = int(sum(p.numel() for p in model.parameters()))
    expected = (card.get("model") or {}).get("params")
    reference = (card.get("checks") or {}).get("reference")
    has_weights = bool((card.get("files") or {}).get("weights"))
    diff = check_reference(model, reference) if weights and reference and has_weights else None
    return {"params": params, "card_params": expected,
            "params_match": expected is None or expected == params,
            "reference_max_abs_diff": diff,
            "outputs_match": None if diff is None else bool(diff <= 1e-4)}
