"""rl: what keeps the MnasNet/NASNet policy learning (unit-free advantages, repeats not
reinforced, resampling toward unseen children)."""

from __future__ import annotations

import pytest

import nas
from nas import CONTROLLERS
from nas.search.controller import Proposal


@pytest.fixture(scope="module")
def nb201() -> nas.Space:
    return nas.get_space("nasbench201")


# -- -------------------------------------------------------------------
def _rl_run(space, scale: float, **options) -> list[tuple[int, ...]]:
    ctrl = CONTROLLERS.create("rl", space=space, seed=0, batch_size=5, **options)
    proposals = []
    for _ in range(40):
        p = ctrl.ask()
        proposals.append(p.arch.indices)
        ctrl.tell(p, scale * float(sum(p.arch.indices)))
    return proposals


def test_rl_normalized_advantages_do_not_depend_on_the_reward_unit(nb201):
    assert _rl_run(nb201, 1.0) == _rl_run(nb201, 100.0)  # percent or fraction: same search
    raw = {"normalize": False}
    assert _rl_run(nb201, 1.0, **raw) != _rl_run(nb201, 100.0, **raw)


def test_rl_does_not_learn_from_repeats_told_from_the_records(nb201):
    ctrl = CONTROLLERS.create("rl", space=nb201, seed=0, batch_size=4)
    first = ctrl.ask()
    ctrl.tell(first, 90.0)
    for _ in range(10):  # the same child told again and again, as a search answers repeats
        ctrl.tell(first_again(ctrl, first), 90.0)
    assert ctrl.num_updates == 0 and not ctrl._batch[1:]
    learner = CONTROLLERS.create("rl", space=nb201, seed=0, batch_size=4, learn_repeats=True)
    first = learner.ask()
    learner.tell(first, 90.0)
    for _ in range(10):
        learner.tell(first_again(learner, first), 90.0)
    assert learner.num_updates >= 2


def first_again(ctrl, first: Proposal) -> Proposal:
    """An outstanding proposal of ``first``'s architecture (asks until the policy repeats it, or
    fakes the repeat by recording it as outstanding, as a search's parked repeat would be)."""
    p = ctrl.ask()
    ctrl._outstanding.pop(p.id)
    ctrl._outstanding[p.id] = (first.arch, {"logp": [0.0] * len(first.arch.indices)})
    return Proposal(p.id, first.arch)


def test_rl_resamples_to_avoid_children_already_evaluated(nb201):
    ctrl = CONTROLLERS.create("rl", space=nb201, seed=0, batch_size=5, lr=0.02,
                              entropy_weight=0.0)
    seen = set()
    for _ in range(60):  # without an entropy bonus the policy concentrates quickly
        p = ctrl.ask()
        seen.add(p.arch.indices)
        ctrl.tell(p, float(sum(p.arch.indices)))
    again = CONTROLLERS.create("rl", space=nb201, seed=0, batch_size=5, lr=0.02,
                               entropy_weight=0.0, resample=0)
    seen0 = set()
    for _ in range(60):
        p = again.ask()
        seen0.add(p.arch.indices)
        again.tell(p, float(sum(p.arch.indices)))
    assert len(seen) > len(seen0) + 10  # measured: 55 distinct against 31
