"""Conformance suite for controllers: every registered controller must pass it.

Each ``check_*`` function takes a registered controller name, a space and constructor options,
drives the controller through the lifecycle of :class:`nas.search.controller.Controller`, and raises
``AssertionError`` with a message when the contract is broken. ``check_all`` runs them all::

    from nas.testing.controllers import check_all
    check_all("evolution", space, tmp_path, population_size=4, sample_size=2)

Results come from :func:`feedback`, a deterministic function of the architecture that also fails
some children, and proposals are told in a scripted, scrambled order (:func:`schedule`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nas.errors import ConfigError, UsageError
from nas.registry import CONTROLLERS
from nas.search.controller import Controller, Proposal, load_state, save_state
from nas.space import Space

__all__ = [
    "make",
    "feedback",
    "schedule",
    "drive",
    "same_state",
    "check_contract",
    "check_bad_tell",
    "check_failure_tolerance",
    "check_async_order",
    "check_resume",
    "check_state_errors",
    "check_determinism",
    "check_all",
]

BAD_RESULTS = (None, math.nan, math.inf, -math.inf)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def make(name: str, space: Space, seed: int, **options: Any) -> Controller:
    """Create a registered controller (what the runner and ``nas bench`` do)."""
    controller = CONTROLLERS.create(name, space=space, seed=seed, **options)
    _expect(isinstance(controller, Controller), f"{name} is not a nas.search.controller.Controller")
    return controller


def feedback(controller: Controller, proposal: Proposal, bad: int = -1) -> Any:
    """A deterministic result for ``proposal`` in the form the controller wants.

    The score is additive over decisions (option ``k`` of decision ``d`` adds ``(k * (d + 3)) % 5``)
    and about one child in seven fails by itself; ``bad >= 0`` forces a failure. Failures rotate
    through every kind: ``None``, NaN, +inf and -inf for a reward; ``None``, a NaN metric, an
    infinite metric and a missing metric for a metrics mapping.
    """
    idx = proposal.arch.indices
    score = float(sum((k * (d + 3)) % 5 for d, k in enumerate(idx)))
    fails = bad >= 0 or sum((d + 1) * k for d, k in enumerate(idx)) % 7 == 3
    kind = (bad if bad >= 0 else sum(idx)) % 4
    if not controller.wants_metrics:
        return BAD_RESULTS[kind] if fails else score
    if fails and kind == 0:
        return None
    names = controller.required_metrics
    metrics: dict[str, Any] = {name: float(sum(idx) + 1) for name in names}
    metrics[names[0]] = score
    if fails:
        metrics[names[-1]] = (math.nan, math.inf)[kind - 1] if kind < 3 else None
        if kind == 3:
            del metrics[names[-1]]
    return metrics


def schedule(steps: int, seed: int = 0) -> list[tuple[str, int]]:
    """Scripted ops: ``("ask", 0)`` or ``("tell", position among outstanding)``; about one tell
    in six reports a failure (its second field is then ``-(position + 1)``)."""
    rng = np.random.default_rng([seed, 101])
    ops: list[tuple[str, int]] = []
    outstanding = 0
    for _ in range(steps):
        if outstanding == 0 or (outstanding < 6 and rng.random() < 0.55):
            ops.append(("ask", 0))
            outstanding += 1
        else:
            pos = int(rng.integers(outstanding))
            ops.append(("tell", -(pos + 1) if rng.random() < 1 / 6 else pos))
            outstanding -= 1
    return ops


def drive(controller: Controller, ops: list[tuple[str, int]], pending: list[Proposal],
          start: int = 0) -> list[tuple[int, tuple[int, ...]]]:
    """Run ``ops`` (from op number ``start``); returns ``(id, indices)`` of every proposal."""
    log = []
    for step, (op, arg) in enumerate(ops, start=start):
        if op == "ask":
            proposal = controller.ask()
            _expect(isinstance(proposal, Proposal), f"ask() returned {proposal!r}")
            pending.append(proposal)
            log.append((proposal.id, proposal.arch.indices))
        else:
            proposal = pending.pop(arg if arg >= 0 else -arg - 1)
            controller.tell(proposal, feedback(controller, proposal, step if arg < 0 else -1))
    return log


def same_state(a: Any, b: Any, path: str = "state") -> None:
    """Raise ``AssertionError`` naming the first place where two states differ."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        _expect(isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and torch.equal(a, b), f"{path}: tensors differ")
    elif isinstance(a, Mapping) and isinstance(b, Mapping):
        _expect(set(a) == set(b), f"{path}: keys differ: {sorted(set(a) ^ set(b))}")
        for key in a:
            same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        _expect(len(a) == len(b), f"{path}: lengths {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_state(x, y, f"{path}[{i}]")
    else:
        _expect(type(a) is type(b) and a == b, f"{path}: {a!r} != {b!r}")


def _check_plain(obj: Any, path: str = "state") -> None:
    import torch

    if isinstance(obj, torch.Tensor):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _expect(isinstance(key, str), f"{path}: key {key!r} is not a str")
            _check_plain(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _check_plain(value, f"{path}[{i}]")
    else:
        _expect(obj is None or isinstance(obj, bool | int | float | str),
                f"{path}: {type(obj).__name__} is not plain data")
        _expect(not isinstance(obj, float) or math.isfinite(obj), f"{path}: {obj!r} not finite")


def check_contract(name: str, space: Space, **options: Any) -> None:
    """Proposals are valid, ids fresh and increasing, bookkeeping right, options keyword-only."""
    ctrl = make(name, space, 0, **options)
    proposals = [ctrl.ask() for _ in range(5)]
    _expect([p.id for p in proposals] == list(range(5)), "ids must be 0, 1, 2, ...")
    for p in proposals:
        _expect(space.validate(p.arch) == p.arch, f"proposal {p.id} is not in the space")
    _expect(ctrl.outstanding() == proposals, "outstanding() must list untold proposals in order")
    ctrl.tell(proposals[3], feedback(ctrl, proposals[3]))
    _expect(ctrl.outstanding() == proposals[:3] + proposals[4:], "told proposal still outstanding")
    _expect((ctrl.num_asked, ctrl.num_told) == (5, 1), "num_asked/num_told are wrong")
    _check_plain(ctrl.state_dict())
    cls = CONTROLLERS.get(name)
    try:
        cls(space, 0, **options)
    except TypeError:
        pass
    else:
        raise AssertionError(f"{name}: seed must be keyword-only")
    try:
        make(name, space, 0, no_such_option=1, **options)
    except UsageError:
        pass
    else:
        raise AssertionError(f"{name}: an unknown option must raise UsageError")


def _raises_usage(ctrl: Controller, proposal: Proposal, result: Any, what: str) -> None:
    before = ctrl.state_dict()
    try:
        ctrl.tell(proposal, result)
    except UsageError:
        same_state(before, ctrl.state_dict(), f"state after a rejected tell ({what})")
    else:
        raise AssertionError(f"{ctrl.name}: tell with {what} must raise UsageError")


def check_bad_tell(name: str, space: Space, **options: Any) -> None:
    """Telling a proposal that is not outstanding, or a result of the wrong kind, is rejected."""
    ctrl = make(name, space, 0, **options)
    first, second = ctrl.ask(), ctrl.ask()
    good = feedback(ctrl, first)
    _raises_usage(ctrl, Proposal(99, first.arch), good, "an unknown id")
    _raises_usage(ctrl, Proposal(first.id, space.mutate(first.arch, np.random.default_rng(0))),
                  good, "another arch under an outstanding id")
    _raises_usage(ctrl, "not a proposal", good, "a non-Proposal")  # type: ignore[arg-type]
    wrong = 1.0 if ctrl.wants_metrics else {"accuracy": 1.0}
    _raises_usage(ctrl, first, wrong, "a result of the wrong kind")
    _raises_usage(ctrl, first, "high", "a string result")
    ctrl.tell(first, feedback(ctrl, first))
    _raises_usage(ctrl, first, feedback(ctrl, first), "a proposal told twice")
    ctrl.tell(second, feedback(ctrl, second))


def check_failure_tolerance(name: str, space: Space, steps: int = 60, **options: Any) -> None:
    """None/NaN/inf results (and a run where everything fails) never crash or poison."""
    for all_fail in (False, True):
        ctrl = make(name, space, 0, **options)
        for step in range(steps):
            p = ctrl.ask()
            _expect(space.validate(p.arch) == p.arch, "invalid proposal after failures")
            bad = step if (all_fail or step % 3 == 0) else -1
            ctrl.tell(p, feedback(ctrl, p, bad))
        _expect(ctrl.num_failed >= steps // 3, "failures were not counted")
        state = ctrl.state_dict()
        _check_plain(state)


def check_async_order(name: str, space: Space, **options: Any) -> None:
    """Many outstanding proposals told out of order, interleaved with asks; all ids distinct."""
    ctrl = make(name, space, 0, **options)
    pending: list[Proposal] = []
    log = drive(ctrl, schedule(150, seed=3), pending)
    ids = [i for i, _ in log]
    _expect(len(set(ids)) == len(ids), "proposal ids repeat")
    for p in reversed(pending):  # the oldest finishes last
        ctrl.tell(p, feedback(ctrl, p))
    _expect(not ctrl.outstanding(), "proposals left outstanding after telling them all")
    _expect(ctrl.num_told == ctrl.num_asked, "every asked proposal was told")
    _check_plain(ctrl.state_dict())


def check_resume(name: str, space: Space, tmp_path: str | Path, steps: int = 160,
                 **options: Any) -> None:
    """Save with proposals outstanding, load into a fresh instance: the run goes on unchanged."""
    ops = schedule(steps, seed=5)
    reference = make(name, space, 11, **options)
    expected = drive(reference, ops, [])
    split, outstanding = 0, 0
    for i, (op, _) in enumerate(ops):
        outstanding += 1 if op == "ask" else -1
        if i >= steps // 2 and outstanding >= 2:
            split = i + 1
            break
    _expect(split > 0, "the schedule never has two proposals outstanding")
    first = make(name, space, 11, **options)
    pending: list[Proposal] = []
    log = drive(first, ops[:split], pending)
    path = save_state(first.state_dict(), Path(tmp_path) / f"{name}-controller.json")
    json.loads(path.read_text())  # the state file is JSON
    resumed = make(name, space, 12345, **options)  # the state, not the seed, decides
    resumed.load_state_dict(load_state(path))
    _expect(resumed.outstanding() == pending, "outstanding proposals were not restored")
    same_state(first.state_dict(), resumed.state_dict(), "restored state")
    log += drive(resumed, ops[split:], pending, start=split)
    _expect(log == expected, f"{name}: resumed run proposes differently from an uninterrupted one")
    same_state(reference.state_dict(), resumed.state_dict(), "final state")


def check_state_errors(name: str, space: Space, other_space: Space, **options: Any) -> None:
    """Loading a state of another controller, space, format or options raises a UsageError."""
    ctrl = make(name, space, 0, **options)
    state = ctrl.state_dict()
    for key, value in (("controller", "no-such-controller"), ("format", "other/9")):
        try:
            make(name, space, 0, **options).load_state_dict({**state, key: value})
        except UsageError:
            pass
        else:
            raise AssertionError(f"{name}: loading a state with a wrong {key} must raise")
    try:
        make(name, other_space, 0, **options).load_state_dict(state)
    except UsageError:
        pass
    else:
        raise AssertionError(f"{name}: loading a state of another space must raise")
    try:
        make(name, space, 0, **options).load_state_dict(
            {**state, "options": {**state["options"], "bogus": 1}})
    except ConfigError as exc:
        _expect("bogus" in str(exc), f"option mismatch message must name the option: {exc}")
    else:
        raise AssertionError(f"{name}: loading a state saved with other options must raise")


def check_determinism(name: str, space: Space, steps: int = 120, **options: Any) -> None:
    """The same seed gives the same proposals; different seeds give different ones."""
    ops = schedule(steps, seed=9)
    runs = [drive(make(name, space, seed, **options), ops, []) for seed in (1, 1, 2)]
    _expect(runs[0] == runs[1], f"{name}: same seed, different proposals")
    _expect(runs[0] != runs[2], f"{name}: different seeds, same proposals")


def check_all(name: str, space: Space, tmp_path: str | Path, other_space: Space,
              **options: Any) -> None:
    """Every check above."""
    check_contract(name, space, **options)
    check_bad_tell(name, space, **options)
    check_failure_tolerance(name, space, **options)
    check_async_order(name, space, **options)
    check_resume(name, space, tmp_path, **options)
    check_state_errors(name, space, other_space, **options)
    check_determinism(name, space, **options)
