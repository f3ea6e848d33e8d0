"""The controller contract: ``ask`` proposals, ``tell`` their results, save and restore state.

A controller is the search strategy of MnasNet (Tan et al., arXiv:1807.11626): it proposes child
architectures and learns from their rewards. Concrete controllers live in ``controllers/`` and are
registered by name (``nas.CONTROLLERS.create("evolution", space=space, seed=0)``).

This module also holds the option validators shared by controllers; the disk helpers
:func:`save_state` / :func:`load_state` live in :mod:`nas.search.state` (re-exported here).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nas._checks import check_bool, check_choice, check_int, check_number
from nas.errors import ConfigError, UsageError
from nas.search.state import load_state, save_state
from nas.search.warm import WarmSource, check_source
from nas.space import Arch, Space

__all__ = ["Controller", "Proposal", "STATE_FORMAT", "save_state", "load_state", "check_int",
           "check_number", "check_bool", "check_choice"]

STATE_FORMAT = "mnas.search.controller/1"


@dataclass(frozen=True)
class Proposal:
    """One child architecture handed out by :meth:`Controller.ask`.

    Attributes:
        id: unique within a controller (and its restored copies), increasing from 0.
        arch: the proposed architecture.
        origin: where it came from when that is not the controller's own search: ``"warm-start"``
            for a proposal taken from a warm-start source's knowledge (not part of equality).
    """

    id: int
    arch: Arch
    origin: str | None = field(default=None, compare=False)


class Controller:
    """Base class of every search strategy. Its lifecycle is the contract below.

    **Construction.** ``Controller(space, *, seed=None, **options)``: every option is keyword-only
    and validated in the constructor; a bad one raises :class:`~nas.errors.ConfigError` with a
    one-line message naming the option, the value and what is allowed. The controller owns a
    ``numpy.random.Generator`` seeded with ``seed`` (rl also owns a ``torch.Generator``); ``None``
    draws fresh entropy, which is recorded so the run can still be resumed.

    **ask** ``() -> Proposal``: a new proposal with a fresh id. Any number may be outstanding:
    workers evaluate children concurrently.

    **tell** ``(proposal, result) -> None``: report one outstanding proposal, in any order. For a
    scalar controller (``wants_metrics = False``) ``result`` is the reward, higher is better. For a
    multi-objective controller (``wants_metrics = True``, e.g. ``nsga2``) it is the mapping of raw
    metrics (``{"accuracy": 0.71, "latency_ms": 12.3, ...}``) holding at least the names in
    :attr:`required_metrics`. A driver therefore calls
    ``tell(p, metrics if controller.wants_metrics else reward)``. ``None``, NaN, +-inf, or a
    mapping whose required metric is missing or not finite, marks a failed child: it never raises
    and never enters the controller's statistics. Telling a proposal that is not outstanding
    (unknown id, told already, or a different arch under that id) raises
    :class:`~nas.errors.UsageError` and changes nothing.

    **state_dict** ``() -> dict``: a deep copy of the full state as plain data (str keys, lists,
    numbers, ``None``), with torch tensors (rl weights and optimizer moments) as the only
    non-JSON leaves. It includes the RNG states, the next id and the outstanding proposals, so
    :meth:`load_state_dict` on a fresh instance built with the same space and options continues
    exactly as the original would have: same proposals, same ids, and the old outstanding
    proposals can be told to it. :func:`save_state` writes it as JSON plus a weights-only torch
    file; :func:`load_state` reads it back without unpickling. Layout::

        {"format": "mnas.search.controller/1", "controller": name, "space": {"name", "decisions"},
         "options": {...}, "seed": int, "rng": <numpy bit-generator state>, "next_id": int,
         "num_told": int, "num_failed": int,
         "outstanding": [{"id": int, "indices": [int, ...], "extra": {...}}, ...],
         "warm_start": [<WarmSource.to_dict()>, ...],
         "algorithm": {...controller specific...}}

    **warm_start** ``(sources) -> None``: before the first ask, hand the controller what earlier
    searches of the same space learned (a list of :class:`nas.search.warm.WarmSource`); each
    controller uses them in its own way (``_warm_start``) and discounts a source whose knowledge
    disagrees with the target's own results. The sources are part of the state (key
    ``warm_start``), so a resumed search continues exactly. A proposal taken from a source's
    knowledge has ``origin == "warm-start"``.

    **Subclasses** implement ``_propose() -> (Arch, extra)`` (``extra``: plain data kept with the
    outstanding proposal), ``_observe(proposal, value, extra)`` (``value`` is a finite float, a
    dict of finite floats for metric controllers, or ``None`` for a failure) and, if they hold
    state, ``_algorithm_state()`` / ``_load_algorithm_state(state)``. They see the space only
    through ``choices()``, ``encode``/``decode``, ``sample`` and ``mutate``.
    """

    name: str = "controller"
    wants_metrics: bool = False

    def __init__(
        self, space: Space, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> None:
        if not isinstance(space, Space):
            raise ConfigError(f"{self.name} option space={space!r}: must be a nas.Space")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)  # recorded: resumable all the same
        check_int(f"{self.name} option seed", seed, minimum=0)
        self.space = space
        self.seed = int(seed)
        # validated options, in the form they take after a JSON round trip (tuples -> lists)
        self.options: dict[str, Any] = json.loads(json.dumps(dict(options or {})))
        self.rng = np.random.default_rng(self.seed)
        self._next_id = 0
        self._num_told = 0
        self._num_failed = 0
        self._outstanding: dict[int, tuple[Arch, dict[str, Any]]] = {}
        self._warm: list[WarmSource] = []

    # -- warm start ----------------------------------------------------------------------------
    def warm_start(self, sources: Sequence[WarmSource]) -> None:
        """Learn from earlier searches of this space before the first ask (see the class
        docstring); an empty list is a cold start.

        Raises:
            UsageError: asked already, or a source that does not fit this space.
        """
        if self._next_id or self._num_told or self._warm:
            raise UsageError(f"{self.name}.warm_start: only before the first ask, and once")
        if isinstance(sources, WarmSource) or not isinstance(sources, Sequence):
            raise UsageError(f"{self.name}.warm_start: expected a list of WarmSource")
        sizes = [len(c) for c in self.space.choices().values()]
        checked = [check_source(s, sizes, f"{self.name}.warm_start") for s in sources]
        for source in checked:
            for rec in source.records:  # a constrained space's invalid combination is refused
                try:
                    self.space.decode(list(rec.indices))
                except (UsageError, ValueError) as exc:
                    raise UsageError(f"{self.name}.warm_start {source.name!r}: "
                                     f"{str(exc).splitlines()[0]}") from None
        self._warm = [s for s in checked if s.records]
        if self._warm:
            self._warm_start()

    @property
    def warm_sources(self) -> list[WarmSource]:
        """The sources given to :meth:`warm_start` (checked, duplicates merged)."""
        return list(self._warm)

    def _warm_start(self) -> None:
        """Use ``self._warm`` (non-empty); the default ignores it (random search)."""
        return None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def required_metrics(self) -> tuple[str, ...]:
        """Metric names a metric controller needs in each ``tell`` (empty for scalar ones)."""
        return ()

    def ask(self) -> Proposal:
        """Propose the next child architecture."""
        arch, extra = self._propose()
        origin = extra.get("origin")
        proposal = Proposal(self._next_id, arch, origin if isinstance(origin, str) else None)
        self._next_id += 1
        self._outstanding[proposal.id] = (arch, extra)
        return proposal

    def tell(self, proposal: Proposal, result: float | Mapping[str, Any] | None) -> None:
        """Report the result of an outstanding proposal (``None``/NaN/inf: failed child)."""
        if not isinstance(proposal, Proposal):
            raise UsageError(f"{self.name}.tell: expected a Proposal, got {proposal!r}")
        entry = self._outstanding.get(proposal.id)
        if entry is None or entry[0] != proposal.arch:
            raise UsageError(
                f"{self.name}.tell: proposal {proposal.id} is not outstanding "
                "(told already, never asked, or a different arch)"
            )
        value = self._clean(result)
        del self._outstanding[proposal.id]
        self._num_told += 1
        self._num_failed += value is None
        self._observe(proposal, value, entry[1])

    def replay(self, proposal_id: int, arch: Arch,
               result: float | Mapping[str, Any] | None) -> None:
        """Tell ``result`` for ``arch`` under ``proposal_id`` although this instance never
        proposed it: rebuilding a lost state from a run's records (``nas resume
        --rebuild-state``). Later proposals get ids above every replayed one."""
        if proposal_id in self._outstanding:
            raise UsageError(f"{self.name}.replay: proposal {proposal_id} is outstanding")
        arch = self.space.validate(arch)
        self._outstanding[proposal_id] = (arch, self._replay_extra(arch))
        self._next_id = max(self._next_id, proposal_id + 1)
        self.tell(Proposal(proposal_id, arch), result)

    def _replay_extra(self, arch: Arch) -> dict[str, Any]:
        """The ``extra`` a replayed architecture is observed with (what ``_propose`` keeps)."""
        return {}

    def outstanding(self) -> list[Proposal]:
        """Proposals asked and not yet told, oldest first."""
        return [Proposal(i, arch, extra.get("origin"))
                for i, (arch, extra) in self._outstanding.items()]

    @property
    def num_asked(self) -> int:
        """Proposals handed out so far."""
        return self._next_id

    @property
    def num_told(self) -> int:
        """Results received so far (failures included)."""
        return self._num_told

    @property
    def num_failed(self) -> int:
        """Failed children received so far."""
        return self._num_failed

    def _clean(self, result: Any) -> Any:
        """The finite value to observe, or ``None`` for a failed child."""
        if not self.wants_metrics:
            return _finite(result, f"{self.name}.tell: reward")
        if result is None:
            return None
        if not isinstance(result, Mapping):
            raise UsageError(
                f"{self.name}.tell: expected a mapping of metrics {list(self.required_metrics)} "
                f"(this controller wants metrics), got {result!r}"
            )
        values = {}
        for key in self.required_metrics:
            values[key] = _finite(result.get(key), f"{self.name}.tell: metric {key!r}")
            if values[key] is None:
                return None
        return values

    # -- hooks -------------------------------------------------------------------------------
    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        raise NotImplementedError

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        raise NotImplementedError

    def _algorithm_state(self) -> dict[str, Any]:
        return {}

    def _load_algorithm_state(self, state: Mapping[str, Any]) -> None:
        return None

    # -- state -------------------------------------------------------------------------------
    def _space_signature(self) -> dict[str, Any]:
        decisions = [[label, len(c)] for label, c in self.space.choices().items()]
        return {"name": self.space.name, "decisions": decisions}

    def state_dict(self) -> dict[str, Any]:
        """The full state as plain data (a deep copy); see the class docstring for the layout."""
        outstanding = [
            {"id": i, "indices": list(arch.indices), "extra": extra}
            for i, (arch, extra) in self._outstanding.items()
        ]
        state = {
            "format": STATE_FORMAT,
            "controller": self.name,
            "space": self._space_signature(),
            "options": self.options,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "next_id": self._next_id,
            "num_told": self._num_told,
            "num_failed": self._num_failed,
            "outstanding": outstanding,
            "warm_start": [source.to_dict() for source in self._warm],
            "algorithm": self._algorithm_state(),
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved by a controller of the same kind, space and options.

        Raises:
            UsageError: the state is malformed or belongs to another controller or space.
            ConfigError: it was saved with different options (the message names the first one).
        """
        state = copy.deepcopy(dict(state))
        self._check_compatible(state)
        try:
            outstanding = {
                int(item["id"]): (self.space.decode(item["indices"]), dict(item["extra"]))
                for item in state["outstanding"]
            }
            rng = np.random.default_rng()
            rng.bit_generator.state = state["rng"]
            counters = [int(state[k]) for k in ("next_id", "num_told", "num_failed")]
            sizes = [len(c) for c in self.space.choices().values()]
            warm = [check_source(WarmSource.from_dict(item), sizes, f"{self.name} state")
                    for item in state.get("warm_start") or []]  # states before warm starts: []
            self._warm = warm
            self._load_algorithm_state(state["algorithm"])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, UsageError):
                raise
            raise UsageError(f"{self.name}: malformed controller state ({exc!r})") from None
        self.seed = int(state["seed"])
        self.rng = rng
        self._next_id, self._num_told, self._num_failed = counters
        self._outstanding = outstanding

    def _check_compatible(self, state: Mapping[str, Any]) -> None:
        for key, want in (("format", STATE_FORMAT), ("controller", self.name)):
            if state.get(key) != want:
                raise UsageError(f"{self.name}: cannot load a state whose {key} is "
                                 f"{state.get(key)!r} (expected {want!r})")
        if state.get("space") != self._space_signature():
            name = (state.get("space") or {}).get("name")
            raise UsageError(f"{self.name}: the state was saved on another space ({name!r}) "
                             "or another version of it")
        saved = state.get("options")
        if not isinstance(saved, Mapping):
            raise UsageError(f"{self.name}: malformed controller state (no options)")
        for key in sorted(set(saved) | set(self.options)):
            if saved.get(key) != self.options.get(key):
                raise ConfigError(
                    f"{self.name} option {key}={self.options.get(key)!r} differs from the saved "
                    f"state's {key}={saved.get(key)!r}; build the controller with the same options"
                )

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}(space={self.space.name!r}, seed={self.seed}, {opts})"


def _finite(value: Any, what: str) -> float | None:
    """A finite float, ``None`` for a failure (None/NaN/inf); UsageError for a non-number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise UsageError(f"{what} must be a number or None, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None
