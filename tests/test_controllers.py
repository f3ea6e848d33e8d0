"""Controllers: the conformance suite on every registered controller, option validation, and
behaviour of each algorithm (random, regularized evolution, rl, nsga2)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

import nas
from nas import CONTROLLERS, Choice, ConfigError, Space, UsageError
from nas.search.controller import Controller, Proposal
from nas.testing import controllers as suite

SMALL = {  # options that make each algorithm leave its initial phase within the suite's runs
    "random": {},
    "evolution": {"population_size": 4, "sample_size": 2},
    "rl": {"batch_size": 4},
    "nsga2": {"population_size": 6},
    "tpe": {"n_startup_trials": 4},
    "bananas": {"n_init": 4, "epochs": 10, "num_random": 20},
}
VARIANTS = [(name, SMALL.get(name, {})) for name in CONTROLLERS.names()] + [
    ("random", {"dedup": True}),
    ("rl", {"batch_size": 3, "algorithm": "reinforce", "failure_reward": 0.0}),
    ("rl", {"batch_size": 3, "normalize": False, "resample": 0, "learn_repeats": True}),
    ("bananas", {"n_init": 3, "epochs": 5, "acquisition": "ei", "refit_growth": 0.0}),
]
IDS = [f"{name}-{'-'.join(map(str, opts.values())) or 'defaults'}" for name, opts in VARIANTS]


class Toy(Space):
    """Six decisions of four options: 4,096 architectures with one known optimum."""

    name = "toy"

    def __init__(self, decisions: int = 6, options: int = 4) -> None:
        super().__init__([Choice(f"d{i}", tuple(range(options))) for i in range(decisions)])


class Single(Space):
    name = "single"

    def __init__(self) -> None:
        super().__init__([Choice("only", ("x",))])


@pytest.fixture(scope="module")
def nb201() -> Space:
    return nas.get_space("nasbench201")


# -- conformance: every registered controller --------------------------------------------------
CHECKS = [suite.check_contract, suite.check_bad_tell, suite.check_failure_tolerance,
          suite.check_async_order, suite.check_determinism]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "options"), VARIANTS, ids=IDS)
def test_conformance(check, name, options, nb201):
    check(name, nb201, **options)


@pytest.mark.parametrize("name", CONTROLLERS.names())
def test_conformance_with_defaults_on_a_toy_space(name, tmp_path):
    suite.check_all(name, Toy(), tmp_path, other_space=Toy(decisions=5))


def test_every_builtin_controller_is_covered():
    assert {"random", "evolution", "rl", "nsga2"} <= set(CONTROLLERS.names())
    assert all(issubclass(CONTROLLERS.get(n), Controller) for n in CONTROLLERS.names())


# -- validation: every error path ----------------------------------------------------------------
BAD_OPTIONS = [
    ("random", "dedup", 1), ("random", "max_retries", 0), ("random", "max_retries", 2.5),
    ("evolution", "population_size", 1), ("evolution", "population_size", "10"),
    ("evolution", "sample_size", 0), ("evolution", "sample_size", 21),
    ("rl", "algorithm", "a2c"), ("rl", "hidden_size", 0), ("rl", "lr", 0.0), ("rl", "lr", -1.0),
    ("rl", "lr", math.nan), ("rl", "lr", True), ("rl", "batch_size", 0), ("rl", "ppo_epochs", 0),
    ("rl", "clip", 0.0), ("rl", "clip", 1.0), ("rl", "entropy_weight", -0.1),
    ("rl", "normalize", 1), ("rl", "resample", -1), ("rl", "learn_repeats", "no"),
    ("rl", "baseline_decay", 1.0), ("rl", "baseline_decay", -0.5), ("rl", "init_range", 0.0),
    ("rl", "failure_reward", math.inf), ("rl", "failure_reward", "low"),
    ("nsga2", "population_size", 1), ("nsga2", "crossover_prob", 1.5),
    ("nsga2", "mutation_prob", -0.1), ("nsga2", "objectives", []),
    ("nsga2", "objectives", "accuracy"), ("nsga2", "objectives", [("accuracy", "up")]),
    ("nsga2", "objectives", [("accuracy", "max"), ("accuracy", "min")]),
    ("nsga2", "objectives", [("accuracy",)]), ("nsga2", "objectives", [("", "max")]),
    ("tpe", "n_startup_trials", -1), ("tpe", "n_ei_candidates", 0), ("tpe", "max_retries", -1),
    ("tpe", "constant_liar", 1), ("tpe", "multivariate", "no"), ("tpe", "objectives", []),
    ("tpe", "objectives", [("accuracy", "up")]),
]


@pytest.mark.parametrize(("name", "option", "value"), BAD_OPTIONS)
def test_bad_option_raises_config_error_naming_it(name, option, value, nb201):
    with pytest.raises(ConfigError) as info:
        CONTROLLERS.create(name, space=nb201, seed=0, **{option: value})
    message = str(info.value)
    assert option in message and name in message and "\n" not in message
    assert repr(value) in message


@pytest.mark.parametrize("name", ["random", "evolution", "rl", "nsga2"])
@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(name, seed, nb201):
    with pytest.raises(ConfigError, match="seed="):
        CONTROLLERS.create(name, space=nb201, seed=seed)


@pytest.mark.parametrize("name", ["random", "evolution", "rl", "nsga2"])
def test_space_must_be_a_space(name):
    with pytest.raises(ConfigError, match="space="):
        CONTROLLERS.create(name, space="nasbench201", seed=0)


@pytest.mark.parametrize("name", ["evolution", "nsga2"])
def test_single_architecture_space_is_rejected_where_mutation_is_needed(name):
    with pytest.raises(ConfigError, match="single architecture"):
        CONTROLLERS.create(name, space=Single(), seed=0)


def test_sample_size_above_population_message(nb201):
    with pytest.raises(ConfigError, match=r"sample_size=21: must be <= population_size \(20\)"):
        CONTROLLERS.create("evolution", space=nb201, sample_size=21)


def test_seed_none_draws_entropy_and_is_recorded(nb201):
    a, b = (CONTROLLERS.create("random", space=nb201) for _ in range(2))
    assert a.seed != b.seed and a.state_dict()["seed"] == a.seed


def test_numeric_rewards_of_any_numpy_type_are_accepted(nb201):
    ctrl = CONTROLLERS.create("evolution", space=nb201, seed=0, population_size=2, sample_size=1)
    for value in (np.float32(1.5), np.int64(2), 3):
        ctrl.tell(ctrl.ask(), value)
    assert [r for _, r in ctrl.population] == [2.0, 3.0]
    with pytest.raises(UsageError, match="must be a number or None, got True"):
        ctrl.tell(ctrl.ask(), True)


# -- random ----------------------------------------------------------------------------------------
def test_random_dedup_never_repeats_until_exhausted(caplog):
    space = Toy(decisions=2, options=3)  # 9 architectures
    ctrl = CONTROLLERS.create("random", space=space, seed=0, dedup=True)
    archs = [ctrl.ask().arch for _ in range(9)]
    assert len(set(archs)) == 9
    with caplog.at_level(logging.WARNING, logger="controllers.random"):
        assert ctrl.ask().arch in archs
    assert "all 9 architectures proposed" in caplog.text


def test_random_without_dedup_repeats_on_a_tiny_space():
    ctrl = CONTROLLERS.create("random", space=Toy(decisions=1, options=2), seed=0)
    assert len({ctrl.ask().arch for _ in range(20)}) == 2


# -- regularized evolution -------------------------------------------------------------------------
def _hamming(a: nas.Arch, b: nas.Arch) -> int:
    return sum(x != y for x, y in zip(a.indices, b.indices, strict=True))


def test_evolution_mutates_the_tournament_winner_in_one_decision():
    space = Toy()
    ctrl = CONTROLLERS.create("evolution", space=space, seed=3, population_size=5, sample_size=5)
    for i in range(5):  # initial population, reward = position
        ctrl.tell(ctrl.ask(), float(i))
    best = ctrl.population[-1][0]
    for _ in range(10):  # S = P: the winner is always the best member
        child = ctrl.ask()
        assert _hamming(child.arch, best) == 1
        ctrl.tell(child, None)  # a failed child leaves the population alone


def test_evolution_removes_the_oldest_not_the_worst():
    ctrl = CONTROLLERS.create("evolution", space=Toy(), seed=0, population_size=3, sample_size=2)
    told = []
    for reward in (10.0, 9.0, 8.0, 1.0, 0.5):
        p = ctrl.ask()
        ctrl.tell(p, reward)
        told.append(p.arch)
    assert [a for a, _ in ctrl.population] == told[-3:]
    assert [r for _, r in ctrl.population] == [8.0, 1.0, 0.5]


def test_evolution_replaces_failed_initial_children_with_random_ones():
    space = Toy()
    ctrl = CONTROLLERS.create("evolution", space=space, seed=0, population_size=4, sample_size=2)
    for _ in range(4):
        ctrl.tell(ctrl.ask(), None)
    assert ctrl.population == []
    first = ctrl.ask()
    ctrl.tell(first, 1.0)
    # three random children are still owed to the initial population: none is a mutant of first
    for _ in range(3):
        ctrl.ask()
    parents = [item["extra"]["parent"] for item in ctrl.state_dict()["outstanding"]]
    assert parents == [-1, -1, -1]  # random, not mutants of the lone member
    ctrl.ask()
    assert ctrl.state_dict()["outstanding"][-1]["extra"]["parent"] == first.id


# -- rl --------------------------------------------------------------------------------------------
def test_rl_stored_log_probs_are_the_sampling_policys():
    import torch

    ctrl = CONTROLLERS.create("rl", space=Toy(), seed=0)
    p = ctrl.ask()
    stored = ctrl.state_dict()["outstanding"][0]["extra"]["logp"]
    logp, entropy = ctrl.policy.evaluate(torch.tensor([p.arch.indices]))
    assert np.allclose(logp[0].detach().numpy(), stored, atol=1e-6)
    assert (entropy > 0).all()


def test_rl_updates_every_batch_and_skips_failures_by_default():
    ctrl = CONTROLLERS.create("rl", space=Toy(), seed=0, batch_size=3)
    for _ in range(5):
        ctrl.tell(ctrl.ask(), None)
    assert ctrl.num_updates == 0
    before = [t.detach().clone() for t in ctrl.policy.parameters()]
    for reward in (1.0, 2.0, 3.0):
        ctrl.tell(ctrl.ask(), reward)
    assert ctrl.num_updates == 1 and ctrl.baseline is not None
    assert any(not np.array_equal(a.numpy(), b.detach().numpy())
               for a, b in zip(before, ctrl.policy.parameters(), strict=True))


def test_rl_failure_reward_counts_failures_in_batches():
    ctrl = CONTROLLERS.create("rl", space=Toy(), seed=0, batch_size=2, failure_reward=0.0)
    for _ in range(4):
        ctrl.tell(ctrl.ask(), math.nan)
    assert ctrl.num_updates == 2


def test_rl_baseline_is_a_moving_average():
    ctrl = CONTROLLERS.create("rl", space=Toy(), seed=0, batch_size=2, baseline_decay=0.5)
    for reward in (2.0, 4.0):  # first batch: baseline starts at the batch mean (3)
        ctrl.tell(ctrl.ask(), reward)
    assert ctrl.baseline == pytest.approx(0.5 * (0.5 * 3 + 0.5 * 2) + 0.5 * 4)


def test_ppo_loss_clips_the_ratio():
    import torch

    from controllers.rl_policy import ppo_loss, reinforce_loss

    old = torch.zeros(1, 2)
    new = torch.full((1, 2), math.log(1.5), requires_grad=True)
    adv, ent = torch.tensor([1.0]), torch.zeros(1, 2)
    loss = ppo_loss(new, old, adv, ent, clip=0.2, entropy_weight=0.0)
    assert float(loss.detach()) == pytest.approx(-1.2)  # min(1.5 * 1, 1.2 * 1)
    loss.backward()
    assert torch.all(new.grad == 0)  # clipped: no gradient pushes the ratio further
    neg = ppo_loss(new, old, -adv, ent, clip=0.2, entropy_weight=0.0)
    assert float(neg.detach()) == pytest.approx(1.5)  # pessimistic bound keeps the unclipped term
    assert float(reinforce_loss(new, adv, ent, entropy_weight=0.0).detach()) == pytest.approx(
        -2 * math.log(1.5))


# -- nsga2 -----------------------------------------------------------------------------------------
def test_nondominated_ranks_and_crowding_by_hand():
    from controllers.nsga2 import crowding_distance, nondominated_ranks

    pts = np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 6.0], [0.6, 1.0], [0.5, 2.0]])
    assert nondominated_ranks(pts, [True, False]).tolist() == [0, 0, 1, 0, 1]
    front = pts[[0, 1, 3]]
    dist = crowding_distance(front)
    assert np.isinf(dist[[0, 2]]).all()
    assert dist[1] == pytest.approx((0.9 - 0.6) / 0.3 + (10 - 1) / 9)


def test_nondominated_ranks_agree_with_pareto_mask_peeling():
    from controllers.nsga2 import nondominated_ranks
    from nas.reward import pareto_mask

    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.integers(0, 4, size=(int(rng.integers(1, 25)), 3)).astype(float)
        maximize = [True, False, True]
        ranks, rank = np.full(len(pts), -1), 0
        while (ranks < 0).any():
            rest = np.flatnonzero(ranks < 0)
            ranks[rest[pareto_mask(pts[rest], maximize)]] = rank
            rank += 1
        assert nondominated_ranks(pts, maximize).tolist() == ranks.tolist()


def test_nsga2_keeps_the_front_and_drops_dominated_members():
    ctrl = CONTROLLERS.create("nsga2", space=Toy(), seed=0, population_size=3)
    metrics = [(0.9, 10.0), (0.5, 1.0), (0.4, 9.0), (0.7, 5.0)]  # (0.4, 9) is dominated
    for acc, lat in metrics:
        ctrl.tell(ctrl.ask(), {"accuracy": acc, "latency_ms": lat, "params": 1})
    front = sorted(m["accuracy"] for _, m in ctrl.pareto_front())
    assert front == [0.5, 0.7, 0.9]
    assert ctrl.required_metrics == ("accuracy", "latency_ms")


def test_nsga2_custom_objectives_and_missing_metric_is_a_failure():
    ctrl = CONTROLLERS.create("nsga2", space=Toy(), seed=0,
                              objectives=[["top1", "max"], ["params", "min"]])
    ctrl.tell(ctrl.ask(), {"top1": 0.5})  # no params: failed child
    ctrl.tell(ctrl.ask(), {"top1": 0.5, "params": 3})
    assert ctrl.num_failed == 1 and len(ctrl.pareto_front()) == 1


def ctrl_members(ctrl: Controller) -> list[nas.Arch]:
    state = ctrl.state_dict()["algorithm"]["population"]
    return [ctrl.space.decode(m["indices"]) for m in state]


def test_nsga2_never_proposes_a_living_member_again():
    # without crossover and mutation a child would be a copy of its parent: it is mutated
    ctrl = CONTROLLERS.create("nsga2", space=Toy(), seed=1, population_size=4,
                              crossover_prob=0.0, mutation_prob=0.0)
    parents: list[tuple[int, ...]] = []
    tournament = ctrl._tournament

    def spy(*args):
        winner = tournament(*args)
        parents.append(tuple(int(i) for i in winner))
        return winner

    ctrl._tournament = spy
    rng = np.random.default_rng(0)
    for _ in range(40):
        parents.clear()
        p = ctrl.ask()
        if parents:
            assert p.arch not in ctrl_members(ctrl)
            assert min(_hamming(p.arch, ctrl.space.decode(list(q))) for q in parents) >= 1
        ctrl.tell(p, {"accuracy": float(rng.random()), "latency_ms": float(rng.random())})
    assert ctrl.num_told == 40


# -- sanity: a toy space with a known optimum ------------------------------------------------------
WEIGHTS = np.array([[0, 1, 3, 2], [2, 0, 1, 3], [1, 3, 0, 2], [3, 2, 1, 0], [0, 2, 3, 1],
                    [1, 0, 2, 3]], dtype=float)


def toy_reward(arch: nas.Arch) -> float:
    """Additive weights plus an interaction (d0 == d1 earns 1.5): optimum (3, 3, 1, 0, 2, 3)."""
    idx = arch.indices
    return float(sum(WEIGHTS[d, k] for d, k in enumerate(idx)) + 1.5 * (idx[0] == idx[1]))


def _hits(name: str, seeds: int = 20, trials: int = 150) -> int:
    space, hits = Toy(), 0
    optimum = toy_reward(space.decode([3, 3, 1, 0, 2, 3]))
    for seed in range(seeds):
        ctrl = CONTROLLERS.create(name, space=space, seed=seed)
        best = -math.inf
        for _ in range(trials):
            p: Proposal = ctrl.ask()
            reward = toy_reward(p.arch)
            ctrl.tell(p, reward)
            best = max(best, reward)
        hits += best == optimum
    return hits


@pytest.mark.slow
def test_evolution_and_rl_find_the_known_optimum_more_often_than_random():
    space = Toy()
    every = [toy_reward(space.decode(list(np.unravel_index(i, (4,) * 6)))) for i in range(4**6)]
    assert max(every) == toy_reward(space.decode([3, 3, 1, 0, 2, 3]))  # the optimum is known
    assert every.count(max(every)) == 1
    random_hits = _hits("random")
    assert _hits("evolution") > random_hits + 3
    assert _hits("rl") > random_hits + 3

