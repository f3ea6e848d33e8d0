"""An architecture card read back is input: every field it is trusted with is checked first.

A card may come from anyone (cards are made to be shared), so :func:`check_card` checks the shape
of every field mnas uses before anything is built or allocated: the format, the space section,
the decisions, the input shape (bounded, and equal to the one the space's options give), the
model's seed and counts, the file names (plain names inside the card's folder, never a path),
the weights' format, and the stored reference outputs. Each problem is one
:class:`~nas.errors.UsageError` naming the card and the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas._checks import MAX_INPUT_SIZE
from nas.errors import UsageError

__all__ = ["CARD", "CARD_FORMAT", "WEIGHT_FORMATS", "MAX_INPUT_ELEMENTS", "check_card",
           "check_input_shape", "card_file"]

CARD = "arch.json"
CARD_FORMAT = "mnas-card/1"
WEIGHT_FORMATS = ("safetensors", "state_dict")
FILE_KINDS = ("pt2", "onnx", "weights")
MAX_INPUT_ELEMENTS = 3 * MAX_INPUT_SIZE * MAX_INPUT_SIZE  # one RGB image at the largest size
MAX_SEED = 2**63 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


class _Card:
    """The card's fields with one-line errors naming the card and the field."""

    def __init__(self, card: Mapping[str, Any], file: Path) -> None:
        self.card, self.file = card, file

    def fail(self, field: str, problem: str) -> UsageError:
        return UsageError(f"card {str(self.file)!r}: {field}: {problem}")

    def mapping(self, field: str, value: Any, *, optional: bool = True) -> dict[str, Any]:
        if value is None and optional:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(field, f"must be a JSON object, got {type(value).__name__}")
        return dict(value)

    def integer(self, field: str, value: Any, low: int, high: int, optional: bool) -> None:
        if value is None and optional:
            return
        if not _is_int(value) or not low <= value <= high:
            raise self.fail(field, f"{value!r:.40} is not an integer in [{low}, {high}]")


def check_input_shape(shape: Any, field: str = "input_shape", *,
                      owner: str = "card") -> tuple[int, ...]:
    """A list of 1 to 4 positive integers of at most :data:`MAX_INPUT_ELEMENTS` elements."""
    ok = (isinstance(shape, Sequence) and not isinstance(shape, str) and 1 <= len(shape) <= 4
          and all(_is_int(d) and 1 <= d <= MAX_INPUT_SIZE for d in shape))
    if not ok or math.prod(shape) > MAX_INPUT_ELEMENTS:
        raise UsageError(f"{owner}: {field}={shape!r:.60}: must be 1 to 4 positive integers "
                         f"holding at most {MAX_INPUT_ELEMENTS:,} elements")
    return tuple(int(d) for d in shape)


def card_file(card: Mapping[str, Any], folder: Path, kind: str) -> Path | None:
    """The path of the card's ``files[kind]`` inside ``folder`` (None when it has none)."""
    name = (card.get("files") or {}).get(kind)
    return folder / name if name else None


def _check_files(c: _Card) -> None:
    files = c.mapping("files", c.card.get("files"))
    for kind, name in files.items():
        if kind not in FILE_KINDS:
            raise c.fail(f"files.{kind}", f"unknown file kind; allowed: {', '.join(FILE_KINDS)}")
        plain = isinstance(name, str) and name and "/" not in name and "\\" not in name
        if not plain or name in (".", "..") or "\0" in name:
            raise c.fail(f"files.{kind}", f"{name!r:.60} must be a plain file name inside the "
                                          "card's folder (no path)")
    weights = c.mapping("weights", c.card.get("weights"))
    if weights.get("format", "safetensors") not in WEIGHT_FORMATS:
        raise c.fail("weights.format", f"{weights.get('format')!r:.40}; allowed: "
                                       f"{', '.join(WEIGHT_FORMATS)}")


def _check_reference(c: _Card, shape: tuple[int, ...]) -> None:
    checks = c.mapping("checks", c.card.get("checks"))
    ref = c.mapping("checks.reference", checks.get("reference"))
    if not ref:
        return
    if list(ref.get("input_shape") or []) != [1, *shape]:
        raise c.fail("checks.reference.input_shape",
                     f"{ref.get('input_shape')!r:.60} must be [1, *input_shape] = {[1, *shape]}")
    c.integer("checks.reference.seed", ref.get("seed", 0), 0, MAX_SEED, optional=False)
    head = ref.get("output_head")
    if not isinstance(head, list) or not 0 < len(head) <= 1000 or not all(
            _is_number(v) for v in head):
        raise c.fail("checks.reference.output_head", "must be a list of 1 to 1000 finite numbers")
    if not _is_number(ref.get("output_abs_sum")):
        raise c.fail("checks.reference.output_abs_sum", "must be a finite number")


def check_card(card: Any, file: Path) -> dict[str, Any]:
    """``card`` if every field mnas uses has the right shape, else a one-line UsageError."""
    if not isinstance(card, Mapping):
        raise UsageError(f"card {str(file)!r}: expected a JSON object with 'space' and "
                         "'decisions'")
    c = _Card(card, file)
    if card.get("format") != CARD_FORMAT:
        raise c.fail("format", f"{card.get('format')!r:.40} is not a card format this mnas "
                               f"reads ({CARD_FORMAT})")
    space = c.mapping("space", card.get("space"), optional=False)
    if not isinstance(space.get("name"), str) or not space["name"]:
        raise c.fail("space.name", "must be a non-empty string")
    c.mapping("space.options", space.get("options"))
    if not isinstance(card.get("decisions"), Mapping):
        raise c.fail("decisions", "must be a JSON object of label: value")
    if card.get("arch_key") is not None and not isinstance(card["arch_key"], str):
        raise c.fail("arch_key", "must be a string")
    shape = check_input_shape(card.get("input_shape"), owner=f"card {str(file)!r}")
    model = c.mapping("model", card.get("model"))
    c.integer("model.seed", model.get("seed"), 0, MAX_SEED, optional=True)
    c.integer("model.params", model.get("params"), 0, 2**53, optional=True)
    if model.get("macs") is not None and not (_is_number(model["macs"]) and model["macs"] >= 0):
        raise c.fail("model.macs", f"{model['macs']!r:.40} is not a number >= 0")
    _check_files(c)
    _check_reference(c, shape)
    return dict(card)
