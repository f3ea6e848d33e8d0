"""Declaration language for search spaces.

A search space is an ordered, flat list of categorical decisions (:class:`Choice`), each with a
readable label such as ``"b3.kernel"``. An architecture (:class:`Arch`) assigns one allowed value to
every decision. Structured spaces (blocks over a base skeleton, cells with edges) generate their
flat list of decisions in their constructor and map an :class:`Arch` back to their structure in
:meth:`Space.build`.

Declaring your own space::

    from nas import Choice, Space, register_space

    @register_space("tiny_mlp")
    class TinyMLP(Space):
        def __init__(self, *, num_classes: int = 10) -> None:
            super().__init__([Choice("width", (16, 32, 64)), Choice("depth", (1, 2, 3))],
                             options={"num_classes": num_classes})
        def build(self, arch):
            ...  # return a torch.nn.Module

A config can also name an unregistered space as ``"package.module:TinyMLP"``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas.errors import InvalidArchError, UsageError

__all__ = ["Choice", "Arch", "Space", "LatencyUnit", "canonical_json"]

Value = str | int | float | bool


def canonical_json(obj: Any) -> str:
    """Compact, deterministic JSON (insertion order kept, no spaces, ASCII only)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _same_value(a: Any, b: Any) -> bool:
    """Equality that keeps bool apart from int (``True != 1`` here) and accepts 1 == 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return False


class Choice:
    """One categorical decision: a label and its ordered, distinct options.

    Args:
        label: readable name, unique in its space (e.g. ``"b3.kernel"``).
        options: allowed values (str, int, float or bool), at least one, no duplicates.
    """

    __slots__ = ("label", "options")

    def __init__(self, label: str, options: Sequence[Value]) -> None:
        if not isinstance(label, str) or not label:
            raise UsageError(f"choice label must be a non-empty string, got {label!r}")
        opts = tuple(options)
        if not opts:
            raise UsageError(f"choice {label!r} needs at least one option")
        for i, opt in enumerate(opts):
            if not isinstance(opt, str | int | float | bool):
                raise UsageError(
                    f"choice {label!r}: option {opt!r} must be str, int, float or bool"
                )
            if isinstance(opt, float) and not math.isfinite(opt):
                raise UsageError(f"choice {label!r}: option {opt!r} must be finite")
            if any(_same_value(opt, other) for other in opts[:i]):
                raise UsageError(f"choice {label!r}: duplicate option {opt!r}")
        self.label = label
        self.options = opts

    def __len__(self) -> int:
        return len(self.options)

    def index(self, value: Any) -> int:
        """Index of ``value`` among the options; raises :class:`InvalidArchError` if not allowed."""
        for i, opt in enumerate(self.options):
            if _same_value(opt, value):
                return i
        raise InvalidArchError(
            f"{self.label}: value {value!r} is not allowed; allowed values: {list(self.options)}"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Choice)
            and other.label == self.label
            and len(other.options) == len(self.options)
            and all(_same_value(a, b) for a, b in zip(self.options, other.options, strict=True))
        )

    def __hash__(self) -> int:
        return hash((self.label, canonical_json(list(self.options))))

    def __repr__(self) -> str:
        return f"Choice({self.label!r}, {self.options!r})"


class Arch(Mapping):
    """An immutable, validated architecture: one value per decision of its space, in space order.

    Create one with :meth:`Space.validate`, :meth:`Space.sample` or :meth:`Space.decode`, never
    directly. Two archs are equal when they come from the same space name with the same values.
    ``arch.key`` is a stable short hash of :meth:`to_json` (the same in every process and machine).
    """

    __slots__ = ("_space", "_items", "_index", "_json", "_key")

    def __init__(self, space: str, items: Sequence[tuple[str, Value]], index: Sequence[int]):
        self._space = space
        self._items = tuple(items)
        self._index = tuple(index)
        self._json = canonical_json({"space": space, "decisions": dict(self._items)})
        self._key = hashlib.sha256(self._json.encode("ascii")).hexdigest()[:16]

    @property
    def space(self) -> str:
        """Name of the space this architecture belongs to."""
        return self._space

    @property
    def key(self) -> str:
        """Stable 16-hex-digit identifier of the architecture."""
        return self._key

    @property
    def indices(self) -> tuple[int, ...]:
        """Option index of every decision, in space order (the encoding used by controllers)."""
        return self._index

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``{"space": name, "decisions": {label: value, ...}}``."""
        return {"space": self._space, "decisions": dict(self._items)}

    def to_json(self) -> str:
        """Canonical JSON text of :meth:`to_dict`."""
        return self._json

    def __getitem__(self, label: str) -> Value:
        for name, value in self._items:
            if name == label:
                return value
        raise KeyError(label)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and other._json == self._json

    def __hash__(self) -> int:
        return hash(self._json)

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(self, "_key"):
            raise AttributeError("Arch is immutable")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"Arch({self._space!r}, key={self._key})"


@dataclass(frozen=True)
class LatencyUnit:
    """One independently timeable piece of a network, for latency lookup tables.

    Attributes:
        key: identifies the configuration: two units with the same key have the same latency.
        input_shape: shape ``(C, H, W)`` of one input sample of this unit.
        build: builds the unit as a standalone ``torch.nn.Module``.
    """

    key: str
    input_shape: tuple[int, ...]
    build: Callable[[], Any]


class Space:
    """An ordered, flat list of categorical decisions plus a model builder.

    Subclasses pass their decisions (and the options needed to recreate them) to ``__init__`` and
    implement :meth:`build`. The default :meth:`size` is the product of the option counts: a space
    whose decisions constrain each other must override :meth:`validate` and :meth:`size`.

    Args:
        decisions: the choices, in order; labels must be unique.
        options: keyword arguments that recreate this space with ``SPACES.create(name, **options)``.
    """

    name: str = "space"

    def __init__(
        self, decisions: Sequence[Choice], *, options: Mapping[str, Any] | None = None
    ) -> None:
        decisions = list(decisions)
        if not decisions:
            raise UsageError(f"space {self.name!r} declares no decisions")
        seen: set[str] = set()
        for choice in decisions:
            if not isinstance(choice, Choice):
                raise UsageError(f"space {self.name!r}: {choice!r} is not a Choice")
            if choice.label in seen:
                raise UsageError(f"space {self.name!r}: duplicate label {choice.label!r}")
            seen.add(choice.label)
        self._choices = {c.label: c for c in decisions}
        self.options: dict[str, Any] = dict(options or {})

    # -- declaration ------------------------------------------------------------------------
    def choices(self) -> dict[str, Choice]:
        """The decisions by label, in space order."""
        return dict(self._choices)

    def labels(self) -> list[str]:
        """The decision labels, in space order."""
        return list(self._choices)

    def size(self) -> int:
        """Exact number of distinct architectures."""
        return math.prod(len(c) for c in self._choices.values())

    # -- architectures ----------------------------------------------------------------------
    def validate(self, values: Mapping[str, Any] | Arch) -> Arch:
        """Return the :class:`Arch` for ``values``.

        Raises:
            InvalidArchError: a label is unknown or missing, or a value is not among its options;
                the message names the label, the value and the allowed values.
        """
        if isinstance(values, Arch):
            if values.space != self.name:
                raise InvalidArchError(
                    f"architecture belongs to space {values.space!r}, not {self.name!r}"
                )
            values = dict(values.items())
        if not isinstance(values, Mapping):
            raise InvalidArchError(
                f"architecture must be a mapping of label -> value, got {values!r}"
            )
        unknown = [label for label in values if label not in self._choices]
        if unknown:
            raise InvalidArchError(
                f"unknown label {unknown[0]!r} for space {self.name!r}; "
                f"known labels: {', '.join(self._choices)}"
            )
        missing = [label for label in self._choices if label not in values]
        if missing:
            choice = self._choices[missing[0]]
            raise InvalidArchError(
                f"missing label {choice.label!r} (value None); "
                f"allowed values: {list(choice.options)}"
            )
        index = [c.index(values[label]) for label, c in self._choices.items()]
        return self._make(index)

    def _make(self, index: Sequence[int]) -> Arch:
        items = [
            (c.label, c.options[i]) for c, i in zip(self._choices.values(), index, strict=True)
        ]
        return Arch(self.name, items, index)

    def sample(self, rng: np.random.Generator) -> Arch:
        """A uniformly random architecture drawn with ``rng``."""
        return self._make([int(rng.integers(len(c))) for c in self._choices.values()])

    def encode(self, arch: Arch) -> list[int]:
        """Option indices of ``arch``, one per decision in space order."""
        return list(self.validate(arch).indices)

    def decode(self, indices: Sequence[int]) -> Arch:
        """The architecture with these option indices (inverse of :meth:`encode`)."""
        indices = list(indices)
        if len(indices) != len(self._choices):
            raise InvalidArchError(
                f"expected {len(self._choices)} indices for space {self.name!r}, got {len(indices)}"
            )
        for (label, choice), i in zip(self._choices.items(), indices, strict=True):
            if (
                isinstance(i, bool)
                or not isinstance(i, int | np.integer)
                or not 0 <= i < len(choice)
            ):
                raise InvalidArchError(
                    f"{label}: index {i!r} is out of range; allowed: 0..{len(choice) - 1}"
                )
        return self._make([int(i) for i in indices])

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """A copy of ``arch`` with exactly one decision changed to another allowed value."""
        index = list(self.encode(arch))
        mutable = [i for i, c in enumerate(self._choices.values()) if len(c) > 1]
        if not mutable:
            raise UsageError(f"space {self.name!r} has a single architecture; nothing to mutate")
        pos = mutable[int(rng.integers(len(mutable)))]
        n = len(list(self._choices.values())[pos])
        index[pos] = (index[pos] + 1 + int(rng.integers(n - 1))) % n
        return self._make(index)

    def features(self, arch: Arch) -> list[float] | None:
        """Extra numeric features of ``arch`` for model-based controllers, or ``None``.

        Every controller can one-hot encode the decisions; a space whose decisions interact in a
        known way can add features that expose it, e.g. the path encoding of a cell (BANANAS,
        arXiv:1910.11858, section 4). Same length for every architecture of the space.
        """
        return None

    # -- text forms -------------------------------------------------------------------------
    def arch_from_json(self, data: str | Mapping[str, Any]) -> Arch:
        """Parse :meth:`Arch.to_json` output (or its dict); also accepts a bare decisions dict."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InvalidArchError(f"architecture JSON is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise InvalidArchError("architecture JSON must be an object")
        if "decisions" in data:
            if data.get("space", self.name) != self.name:
                raise InvalidArchError(
                    f"architecture belongs to space {data.get('space')!r}, not {self.name!r}"
                )
            data = data["decisions"]
        return self.validate(data)

    def to_string(self, arch: Arch) -> str:
        """The space's canonical string form (used to key lookup tables)."""
        return ",".join(f"{label}={canonical_json(value)}" for label, value in arch.items())

    def from_string(self, text: str) -> Arch:
        """Inverse of :meth:`to_string`."""
        values: dict[str, Any] = {}
        for part in text.split(","):
            label, sep, raw = part.partition("=")
            if not sep:
                raise InvalidArchError(f"cannot parse {part!r}: expected label=value")
            try:
                values[label] = json.loads(raw)
            except json.JSONDecodeError:
                raise InvalidArchError(f"{label}: cannot parse value {raw!r}") from None
        return self.validate(values)

    # -- models -----------------------------------------------------------------------------
    def build(self, arch: Arch) -> Any:
        """Build ``arch`` as a ``torch.nn.Module`` (implemented by each concrete space)."""
        raise NotImplementedError(f"space {self.name!r} does not implement build()")

    def count_params(self, arch: Arch) -> int:
        """Parameters of the network :meth:`build` makes for ``arch``.

        The default builds it on PyTorch's meta device (no memory, no initialisation); spaces
        with a closed form override it (``nasbench201``), since a benchmark may ask for thousands.
        """
        import torch

        with torch.device("meta"):
            model = self.build(arch)
        return int(sum(p.numel() for p in model.parameters()))

    def input_shape(self) -> tuple[int, int, int]:
        """Shape ``(C, H, W)`` of one input sample expected by :meth:`build`'s models."""
        return (3, 32, 32)

    def presets(self) -> list[str]:
        """Names of fixed, published networks this space's builder can build (may be empty)."""
        return []

    def build_preset(self, name: str) -> Any:
        """Build a preset network by name (see :meth:`presets`)."""
        known = self.presets()
        raise UsageError(
            f"preset {name!r} is not known to space {self.name!r}; known presets: "
            f"{', '.join(known) if known else '(none)'}"
        )

    def latency_units(self, arch: Arch) -> list[LatencyUnit]:
        """The network of ``arch`` as units whose latencies add up (for lookup tables)."""
        raise NotImplementedError(f"space {self.name!r} does not support latency lookup tables")

    def supernet(self, **options: Any) -> Any:
        """Optional weight sharing (SPOS, arXiv:1904.00420): a module holding every architecture,
        ``module(x, arch)`` one path, ``module.extract(arch)`` ``build(arch)`` with its weights
        (contract: :mod:`nas.supernet.base`; ``options``: ``evaluator.options.supernet``)."""
        raise NotImplementedError(f"space {self.name!r} has no weight-sharing supernet")

    def describe(self, arch: Arch) -> dict[str, Any]:
        """Structured description of ``arch`` for export cards (spaces add their block tables)."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, decisions={len(self._choices)})"
