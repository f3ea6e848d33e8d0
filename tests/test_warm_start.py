"""Warm starts: sources (:mod:`nas.search.warm`), every controller's use of them, exact resume,
the trust that discounts a useless source, and ``nas bench --warm-start``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nas
from nas import UsageError
from nas.cli import main
from nas.search.bench import TableObjective, run_controller, synthetic_table
from nas.search.bench_report import summarize
from nas.search.bench_warm import (
    WarmSpec,
    inverted_objective,
    run_warm_bench,
    shuffled_objective,
    source_search,
)
from nas.search.controller import Proposal, load_state, save_state
from nas.search.warm import (
    ORIGIN,
    SourceModel,
    WarmRecord,
    WarmSource,
    agreement,
    check_source,
    normal_scores,
    trust,
)

NSGA = {"objectives": [["accuracy", "max"]]}
KINDS = {"bananas": {}, "evolution": {}, "tpe": {}, "rl": {"warm_steps": 10}, "nsga2": NSGA}


@pytest.fixture(scope="module")
def space() -> nas.Space:
    return nas.get_space("nasbench201")


@pytest.fixture(scope="module")
def table(space) -> pd.DataFrame:
    """A synthetic table with a related source column (``src``: the accuracy plus noise)."""
    frame = synthetic_table(space, seed=0)
    rng = np.random.default_rng(1)
    return frame.assign(src=frame["accuracy"] + rng.normal(0, 1.0, len(frame)))


@pytest.fixture(scope="module")
def target(space, table) -> TableObjective:
    return TableObjective(space, table, key="arch_str", metric="accuracy")


@pytest.fixture(scope="module")
def source_objective(space, table) -> TableObjective:
    return TableObjective(space, table, key="arch_str", metric="src")


def sample_source(space, table, n=150, seed=3, column="src") -> WarmSource:
    rows = table.sample(n, random_state=seed)
    records = tuple(WarmRecord(space.from_string(k).indices, float(v), {"accuracy": float(v)})
                    for k, v in zip(rows["arch_str"], rows[column], strict=True))
    return WarmSource(f"sample:{column}", records)


def tell_value(ctrl, value):
    return {"accuracy": value} if ctrl.wants_metrics else value


# -- sources ------------------------------------------------------------------------------------
def test_check_source_names_the_bad_record_and_merges_duplicates(space):
    sizes = [len(c) for c in space.choices().values()]
    good = WarmRecord((0,) * 6, 1.0, {"accuracy": 0.5})
    with pytest.raises(UsageError, match=r"'s': record 1: indices \[0, 9"):
        check_source(WarmSource("s", (good, WarmRecord((0, 9, 0, 0, 0, 0), 1.0))), sizes, "w")
    with pytest.raises(UsageError, match="record 0: value nan"):
        check_source(WarmSource("s", (WarmRecord((0,) * 6, float("nan")),)), sizes, "w")
    with pytest.raises(UsageError, match="weight=-1"):
        check_source(WarmSource("s", (good,), weight=-1), sizes, "w")
    merged = check_source(WarmSource("s", (good, WarmRecord((0,) * 6, 3.0, {"accuracy": 0.7}))),
                          sizes)
    assert len(merged.records) == 1 and merged.records[0].value == 2.0
    assert merged.records[0].metrics["accuracy"] == pytest.approx(0.6)


def test_normal_scores_agreement_and_trust():
    z = normal_scores([10.0, 30.0, 20.0])
    assert z[1] > z[2] > z[0] and z.sum() == pytest.approx(0.0)
    assert agreement([1, 2, 3], [1, 2, 3]) is None  # below MIN_AGREEMENT_N results
    assert agreement([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]) == pytest.approx(1.0)
    assert trust(None, 0, prior=0.5) == 0.5  # the prior until the target has results
    assert trust(0.05, 50) == 0.0 and trust(-0.9, 50) == 0.0  # useless or misleading: nothing
    assert 0.7 < trust(0.9, 50) < 0.9


def test_source_model_predicts_recorded_archs_exactly_and_neighbours_by_distance(space):
    recs = tuple(WarmRecord((i, 0, 0, 0, 0, 0), float(i)) for i in range(5))
    model = SourceModel(WarmSource("s", recs), k=1)
    exact = model.predict([(4, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0)])
    assert exact[0] > exact[1]
    assert model.predict([(4, 1, 0, 0, 0, 0)])[0] == exact[0]  # nearest is (4, 0, ...)


def test_warm_start_only_before_the_first_ask_and_kept_in_the_state(space, table):
    ctrl = nas.CONTROLLERS.create("random", space=space, seed=0)
    ctrl.ask()
    with pytest.raises(UsageError, match="only before the first ask"):
        ctrl.warm_start([sample_source(space, table)])
    fresh = nas.CONTROLLERS.create("random", space=space, seed=0)
    with pytest.raises(UsageError, match="a list of WarmSource"):
        fresh.warm_start(sample_source(space, table))
    fresh.warm_start([sample_source(space, table, n=20)])
    state = fresh.state_dict()
    assert len(state["warm_start"]) == 1 and len(state["warm_start"][0]["records"]) == 20
    again = nas.CONTROLLERS.create("random", space=space, seed=0)
    again.load_state_dict(state)
    assert again.warm_sources == fresh.warm_sources


# -- every controller ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bananas", "evolution", "nsga2"])
def test_first_proposals_are_the_sources_best_marked_warm_start(space, table, name):
    source = sample_source(space, table)
    best = [r.indices for r in source.best(3)]
    ctrl = nas.CONTROLLERS.create(name, space=space, seed=0, **KINDS[name])
    ctrl.warm_start([source])
    first = [ctrl.ask() for _ in range(3)]
    assert [p.arch.indices for p in first] == best
    assert all(p.origin == ORIGIN for p in first)
    cold = nas.CONTROLLERS.create(name, space=space, seed=0, **KINDS[name])
    assert cold.ask().origin is None


def test_tpe_starts_from_the_sources_trials_as_prior_observations(space, table, target):
    gains = []
    for seed in range(3):
        source = sample_source(space, table, seed=seed)
        warm = nas.CONTROLLERS.create("tpe", space=space, seed=seed)
        warm.warm_start([source])
        assert len(warm.study.trials) == len(source.records)  # priors, before any ask
        cold = nas.CONTROLLERS.create("tpe", space=space, seed=seed)
        first = [target.evaluate(c.ask().arch)["accuracy"] for c in (warm, cold) for _ in range(8)]
        gains.append(np.mean(first[:8]) - np.mean(first[8:]))
    assert np.mean(gains) > 1.0  # TPE draws from the sources' good region at once


def test_rl_policy_is_pretrained_towards_the_sources_best(space, table):
    import torch

    source = sample_source(space, table)
    best = torch.tensor([list(r.indices) for r in source.best(10)])
    worst = torch.tensor([list(r.indices) for r in source.best()[-10:]])
    warm = nas.CONTROLLERS.create("rl", space=space, seed=0, warm_steps=20)
    cold = nas.CONTROLLERS.create("rl", space=space, seed=0, warm_steps=20)
    warm.warm_start([source])
    with torch.no_grad():
        margin = [(c.policy.evaluate(best)[0].sum(1).mean()
                   - c.policy.evaluate(worst)[0].sum(1).mean()).item() for c in (warm, cold)]
    assert margin[0] > margin[1] + 1.0
    assert warm.ask().origin == ORIGIN


@pytest.mark.parametrize("name", sorted(KINDS))
def test_resume_of_a_warm_started_controller_is_exact(space, table, target, name, tmp_path):
    options = KINDS[name]
    ctrl = nas.CONTROLLERS.create(name, space=space, seed=4, **options)
    ctrl.warm_start([sample_source(space, table, n=60)])
    for _ in range(14):
        p = ctrl.ask()
        ctrl.tell(p, tell_value(ctrl, target.evaluate(p.arch)["accuracy"]))
    pending = ctrl.ask()
    save_state(ctrl, tmp_path / "c.json")
    copy = nas.CONTROLLERS.create(name, space=space, seed=4, **options)
    copy.load_state_dict(load_state(tmp_path / "c.json"))
    assert copy.warm_sources == ctrl.warm_sources
    for c in (ctrl, copy):
        c.tell(pending, tell_value(c, 70.0))
    for _ in range(4):
        a, b = ctrl.ask(), copy.ask()
        assert (a.id, a.arch, a.origin) == (b.id, b.arch, b.origin)
        value = target.evaluate(a.arch)["accuracy"]
        ctrl.tell(a, tell_value(ctrl, value))
        copy.tell(b, tell_value(copy, value))


# -- trust: a useless source is detected and discounted --------------------------------------------
@pytest.mark.parametrize("column", ["src", "shuffled"])
def test_bananas_trusts_a_related_source_and_drops_a_shuffled_one(space, table, target,
                                                                   source_objective, column):
    spec = WarmSpec(source_objective, trials=60, shuffled=column == "shuffled")
    source = source_search("bananas", spec, seed=0, options={})
    ctrl = nas.CONTROLLERS.create("bananas", space=space, seed=0)
    ctrl.warm_start([source])
    assert ctrl.source_trusts() == [1.0]  # the prior before the target's own results
    run_controller(ctrl, target, trials=30, seed=0)
    (weight,) = ctrl.source_trusts()
    assert (weight > 0.3) if column == "src" else (weight == 0.0)


def test_tpe_makes_an_untrusted_sources_priors_invisible(space, table, target, source_objective):
    spec = WarmSpec(source_objective, trials=40, shuffled=True)
    ctrl = nas.CONTROLLERS.create("tpe", space=space, seed=1)
    ctrl.warm_start([source_search("tpe", spec, seed=1, options={})])
    run_controller(ctrl, target, trials=30, seed=1)
    states = {t.state.name for t in ctrl.study.trials[:ctrl._priors]}
    assert states == {"FAIL"}


def test_shuffled_objective_permutes_values_per_seed_inverted_negates(source_objective):
    inverted = inverted_objective(source_objective)
    assert np.array_equal(inverted.metrics(), -source_objective.metrics())
    a, b = shuffled_objective(source_objective, 0), shuffled_objective(source_objective, 1)
    assert sorted(a.metrics()) == sorted(source_objective.metrics())
    assert not np.array_equal(a.metrics(), source_objective.metrics())
    assert not np.array_equal(a.metrics(), b.metrics())


# -- nas bench --warm-start ------------------------------------------------------------------------
def test_run_warm_bench_warm_beats_cold_early_with_a_related_source(target, source_objective):
    curves = run_warm_bench(target, WarmSpec(source_objective, trials=40), ["bananas", "evolution"],
                            trials=12, seeds=2)
    summary = summarize(curves).set_index("controller")
    assert list(summary.index) == ["bananas", "bananas+ws", "evolution", "evolution+ws"]
    for name in ("bananas", "evolution"):
        assert summary.loc[name + "+ws", "best@10 mean"] > summary.loc[name, "best@10 mean"]
    assert (curves.groupby(["controller", "seed"]).size() == 12).all()  # own trials only


@pytest.fixture(scope="module")
def csvs(table, tmp_path_factory) -> tuple[str, str]:
    """The target table, and the source column in a second table (joined on the key)."""
    folder = tmp_path_factory.mktemp("warm")
    target, source = folder / "target.csv", folder / "source.csv"
    table[["arch_str", "accuracy"]].to_csv(target, index=False)
    table[["arch_str", "src"]].sample(frac=1.0, random_state=0).to_csv(source, index=False)
    return str(target), str(source)


@pytest.mark.parametrize("spec", ["FILE:src", "shuffled:FILE:src", "inverted:FILE:src"])
def test_cli_bench_warm_start_prints_cold_and_warm_side_by_side(csvs, tmp_path, capsys, spec):
    target, source = csvs
    out = tmp_path / "bench"
    code = main(["bench", "--table", target, "--metric", "accuracy", "--controllers", "evolution",
                 "--trials", "12", "--seeds", "2", "--warm-start", spec.replace("FILE", source),
                 "--warm-start-trials", "30", "--noise", "0.1", "--dedup", "both",
                 "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "warm-started" in printed and "30-trial search" in printed
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["controller"]) == ["evolution", "evolution+ws", "evolution (no dedup)",
                                           "evolution+ws (no dedup)"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--warm-start", "nope"], "--warm-start='nope': metric: column 'nope'"),
    (["--warm-start", "/no/such.csv:src"], "'/no/such.csv' is not a file"),
    (["--warm-start-trials", "5"], "--warm-start-trials: only meaningful with --warm-start"),
    (["--warm-start", "accuracy", "--warm-start-trials", "0"], "--warm-start-trials=0"),
])
def test_cli_bench_warm_start_errors_exit_2(csvs, capsys, args, needle):
    code = main(["bench", "--table", csvs[0], "--metric", "accuracy", "--controllers", "random",
                 "--trials", "3", "--seeds", "1", *args])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


REAL = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (REAL / "nb201_cifar100.csv").is_file(),
                    reason=f"the real NAS-Bench-201 tables are not in {REAL}")
def test_real_cifar10_to_cifar100_warm_start_finds_a_top_cell_in_ten_trials(space):
    from nas.search.bench import load_table

    t100 = load_table(REAL / "nb201_cifar100.csv", key="arch_str", metric="cifar100_test_acc")
    t10 = load_table(REAL / "nb201_cifar10.csv", key="arch_str", metric="cifar10_test_acc")
    target = TableObjective(space, t100, key="arch_str", metric="cifar100_test_acc")
    spec = WarmSpec(TableObjective(space, t10, key="arch_str", metric="cifar10_test_acc"))
    curves = run_warm_bench(target, spec, ["bananas"], trials=10, seeds=2, cold=False)
    best = curves.groupby("seed")["best_metric"].max()
    assert (best > 72.5).all()  # cold TPE's mean best@10 is 69.66, best@50 72.39


def test_proposal_origin_is_not_part_of_equality(space):
    arch = space.sample(np.random.default_rng(0))
    assert Proposal(1, arch, ORIGIN) == Proposal(1, arch)


def test_tpe_pareto_front_never_holds_a_prior(space, table, target):
    source = sample_source(space, table)
    ctrl = nas.CONTROLLERS.create("tpe", space=space, seed=0)
    ctrl.warm_start([source])
    assert ctrl.pareto_front() == []
    for _ in range(6):
        p = ctrl.ask()
        ctrl.tell(p, target.evaluate(p.arch)["accuracy"] - 50.0)  # below every prior
    (arch, values), = ctrl.pareto_front()
    told = [t for t in ctrl.study.trials[ctrl._priors:] if t.state.name == "COMPLETE"]
    assert values["reward"] == max(t.values[0] for t in told)


@pytest.mark.parametrize("column", ["src", "inverted"])
def test_rl_goes_back_to_the_cold_policy_when_the_source_misleads(space, table, target, column):
    values = table["src"].to_numpy() * (-1 if column == "inverted" else 1)
    source = sample_source(space, table.assign(src=values), n=300)
    ctrl = nas.CONTROLLERS.create("rl", space=space, seed=2, warm_steps=20)
    ctrl.warm_start([source])
    arms = []
    for _ in range(20):  # two batches, the policies taking turns: then the sources are judged
        p = ctrl.ask()
        arms.append(p.origin)
        ctrl.tell(p, target.evaluate(p.arch)["accuracy"])
    assert arms == [ORIGIN, None] * 10  # pre-trained and cold policy in turn
    assert ctrl.warm_kept == (column == "src")
    # the judging children are the first batches of the policy kept: all 20 for the
    # pre-trained one; the cold policy's own 10 (on-policy) after a reset
    assert ctrl.num_updates == (2 if column == "src" else 1)
    assert ctrl.ask().origin is None  # judged: its proposals are its own from now on


def test_rl_keeps_the_pretrained_policy_only_when_the_source_agrees_and_it_pays(space, table,
                                                                               target):
    source = sample_source(space, table, n=300)
    rng = np.random.default_rng(1)  # ten cold children the source ranks well (rho 0.81)
    cold = [space.sample(rng).indices for _ in range(10)]
    value = {idx: target.evaluate(space.decode(list(idx)))["accuracy"] for idx in cold}
    low, high = min(value.values()), max(value.values())

    def verdict(warm_values, cold_values):
        ctrl = nas.CONTROLLERS.create("rl", space=space, seed=0, warm_steps=1)
        ctrl.warm_start([source])
        warm = [space.sample(rng).indices for _ in warm_values]
        ctrl._told_values = ([(i, v, "warm") for i, v in zip(warm, warm_values, strict=True)]
                             + [(i, cold_values[i], "cold") for i in cold])
        return ctrl._keeps_warm_policy()

    better, worse = [high + 1.0] * 10, [low - 1.0] * 10
    reverse = {i: -v for i, v in value.items()}  # the cold children in the source's reverse order
    assert verdict(better, value)  # the source ranks the cold children and its region pays
    assert not verdict(worse, value)  # agrees, but the pre-trained policy's children are worse
    assert not verdict(better, reverse)  # its children are better, but the source misleads
