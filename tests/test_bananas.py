"""The model-based controller (BANANAS, arXiv:1910.11858): predictor, candidates, acquisition."""

from __future__ import annotations

import numpy as np
import pytest

import nas
from controllers.predictor import MLPEnsemble
from nas import Choice, ConfigError, Space


class Grid(Space):
    """Five decisions of six options (7,776 architectures) with an additive optimum."""

    name = "grid"

    def __init__(self) -> None:
        super().__init__([Choice(f"d{i}", tuple(range(6))) for i in range(5)])


def score(arch) -> float:
    return float(-sum((k - (d % 6)) ** 2 for d, k in enumerate(arch.indices)))


def best_after(name: str, trials: int, seed: int, **options) -> float:
    ctrl = nas.CONTROLLERS.create(name, space=Grid(), seed=seed, **options)
    best = -np.inf
    for _ in range(trials):
        p = ctrl.ask()
        best = max(best, score(p.arch))
        ctrl.tell(p, score(p.arch))
    return best


def test_the_ensemble_fits_and_its_members_disagree_away_from_the_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 3.0
    model = MLPEnsemble(members=4, epochs=300).fit(x, y, seed=1)
    pred = model.predict(x)
    assert pred.shape == (4, 60)
    assert np.corrcoef(pred.mean(0), y)[0, 1] > 0.95
    far = model.predict(10 * rng.normal(size=(20, 4)))
    assert far.std(0).mean() > pred.std(0).mean()  # more spread where there was no data
    again = MLPEnsemble(members=4, epochs=300).fit(x, y, seed=1).predict(x)
    assert np.array_equal(pred, again)  # a fit is a pure function of data and seed


def test_bananas_beats_random_search_on_a_structured_objective():
    ours = np.mean([best_after("bananas", 40, s, n_init=8, epochs=80) for s in range(3)])
    rand = np.mean([best_after("random", 40, s) for s in range(3)])
    assert ours > rand + 2.0, (ours, rand)


def test_never_proposes_an_evaluated_or_outstanding_architecture():
    space = nas.get_space("nasbench201")
    ctrl = nas.CONTROLLERS.create("bananas", space=space, seed=0, n_init=5, epochs=20)
    seen = set()
    pending = [ctrl.ask() for _ in range(8)]  # eight in flight: all distinct
    assert len({p.arch.indices for p in pending}) == 8
    for step in range(60):
        p = pending.pop(0)
        assert p.arch.indices not in seen
        seen.add(p.arch.indices)
        ctrl.tell(p, None if step % 5 == 0 else score(p.arch))  # some children fail
        pending.append(ctrl.ask())
        assert pending[-1].arch.indices not in seen | {q.arch.indices for q in pending[:-1]}


def test_the_space_features_reach_the_predictor():
    space = nas.get_space("nasbench201")
    auto = nas.CONTROLLERS.create("bananas", space=space, seed=0)
    plain = nas.CONTROLLERS.create("bananas", space=space, seed=0, encoding="onehot")
    arch = space.sample(np.random.default_rng(0))
    rows = np.array([arch.indices])
    assert auto._encode_many(rows).shape == (1, 30 + 84)  # one-hot plus the path encoding
    assert plain._encode_many(rows).shape == (1, 30)
    assert auto._encode_many(rows)[0, 30:].tolist() == space.features(arch)
    assert Grid().features(Grid().sample(np.random.default_rng(0))) is None


def test_refits_follow_the_growth_schedule():
    ctrl = nas.CONTROLLERS.create("bananas", space=Grid(), seed=0, n_init=4, refit_growth=0.5,
                                  epochs=5)
    fits = []
    for _ in range(30):
        p = ctrl.ask()
        ctrl.tell(p, score(p.arch))
        fits.append(ctrl._model_at)
    changes = sorted({f for f in fits if f > 0})
    assert changes[:4] == [4, 6, 9, 13]  # each fit after 50% more results


@pytest.mark.parametrize(("option", "value"), [
    ("n_init", 1), ("acquisition", "pi"), ("ucb_beta", -1.0), ("num_parents", 0),
    ("num_random", -1), ("members", 1), ("width", 0), ("layers", 0), ("epochs", 0), ("lr", 0.0),
    ("refit_growth", -0.1), ("encoding", "path"),
])
def test_bad_options_name_the_option(option, value):
    with pytest.raises(ConfigError, match=f"bananas option {option}="):
        nas.CONTROLLERS.create("bananas", space=Grid(), seed=0, **{option: value})


@pytest.mark.parametrize("acquisition", ["its", "ucb", "ei", "mean"])
def test_every_acquisition_runs(acquisition):
    assert best_after("bananas", 15, 0, n_init=5, epochs=10, acquisition=acquisition) > -40


def thin_evidence(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 8 binary features with a linear target, and a ninth feature that only the first
    2 rows have (both far below the rest): a pattern that rests on 2 rows."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 9))
    x[:, :8] = rng.integers(0, 2, size=(n, 8))
    y = x[:, :8] @ rng.normal(size=8)
    x[:2, 8] = 1.0
    y[:2] -= 6.0
    return x, y


def test_bootstrapped_members_disagree_where_the_evidence_is_thin():
    thin = {False: [], True: []}
    for seed in range(4):
        x, y = thin_evidence(seed)
        for boot in (False, True):
            fit = MLPEnsemble(members=5, width=16, epochs=100, lr=0.02, bootstrap=boot)
            pred = fit.fit(x, y, seed=seed).predict(x[:2])
            thin[boot].append(pred.std(0).mean())
            again = MLPEnsemble(members=5, width=16, epochs=100, lr=0.02, bootstrap=boot)
            assert np.array_equal(again.fit(x, y, seed=seed).predict(x[:2]), pred)  # pure
    # without the bootstrap every member fits the two rows alike (spread ~0.04); with it, a
    # member that drew small weights for them fits them loosely (~0.15)
    assert np.mean(thin[True]) > 2 * np.mean(thin[False]), thin


def test_bananas_fits_bootstrapped_ensembles_by_default():
    space = nas.get_space("nasbench201")
    for options, expected in (({}, True), ({"bootstrap": False}, False)):
        ctrl = nas.CONTROLLERS.create("bananas", space=space, seed=0, n_init=3, epochs=5,
                                      **options)
        for _ in range(5):
            p = ctrl.ask()
            ctrl.tell(p, score(p.arch))
        assert ctrl._model is not None and ctrl._model.bootstrap is expected
    with pytest.raises(ConfigError, match="bootstrap"):
        nas.CONTROLLERS.create("bananas", space=space, bootstrap="yes")


def test_a_state_saved_before_the_bootstrap_option_resumes_without_it():
    space = nas.get_space("nasbench201")
    old = nas.CONTROLLERS.create("bananas", space=space, seed=1, n_init=3, epochs=5,
                                 bootstrap=False)
    for _ in range(6):
        p = old.ask()
        old.tell(p, score(p.arch))
    state = old.state_dict()
    del state["options"]["bootstrap"]  # as saved by a version without the option
    new = nas.CONTROLLERS.create("bananas", space=space, seed=1, n_init=3, epochs=5)
    new.load_state_dict(state)
    assert [new.ask().arch for _ in range(3)] == [old.ask().arch for _ in range(3)]
