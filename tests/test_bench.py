"""``nas bench`` and :mod:`nas.search.bench`: tabular benchmarking of controllers, library and
CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nas
from nas import UsageError
from nas.cli import main
from nas.reward import mnas_reward
from nas.search.bench import (
    CURVE_COLUMNS,
    TableObjective,
    checkpoints,
    load_table,
    run_bench,
    synthetic_table,
)
from nas.search.bench_report import HVNorm, hypervolume, hypervolume_table, summarize


@pytest.fixture(scope="module")
def space() -> nas.Space:
    return nas.get_space("nasbench201")


@pytest.fixture(scope="module")
def table(space) -> pd.DataFrame:
    return synthetic_table(space, seed=0)


@pytest.fixture(scope="module")
def partial_csv(table, tmp_path_factory) -> str:
    """Two thirds of the space, plus an extra column: missing architectures fail."""
    path = tmp_path_factory.mktemp("tables") / "nb201.csv"
    part = table.sample(frac=2 / 3, random_state=0).rename(columns={"accuracy": "cifar10_test_acc"})
    part.assign(flops=1.0).to_csv(path, index=False)
    return str(path)


# -- library ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("trials", "marks"), [
    (1, [1]), (10, [10]), (7, [7]), (100, [10, 25, 50, 100]),
    (300, [10, 25, 50, 100, 200, 300]), (250, [10, 25, 50, 100, 200, 250]),
    (1000, [10, 25, 50, 100, 200, 300, 500, 1000]),
])
def test_checkpoints(trials, marks):
    assert checkpoints(trials) == marks


def test_synthetic_table_is_structured_and_complete(space, table):
    assert len(table) == space.size() == 15625
    assert table["arch_str"].is_unique
    assert space.from_string(table["arch_str"].iloc[0]).space == "nasbench201"
    # structure: the main effect of one edge explains a good share of the variance (not noise)
    edge = table["arch_str"].str.split("|").str[1]
    between = table.groupby(edge)["accuracy"].mean().var()
    assert between > 0.05 * table["accuracy"].var()
    assert table["accuracy"].corr(table["latency_ms"]) > 0.2  # faster models are worse
    with pytest.raises(UsageError, match="max_size=10"):
        synthetic_table(space, max_size=10)


def test_table_objective_metrics_and_mnas_reward(space, table):
    objective = TableObjective(space, table, key="arch_str", metric="accuracy",
                               latency_column="latency_ms", target_ms=5.0, alpha=0.0, beta=-1.0)
    row = table.iloc[123]
    metrics = objective.evaluate(space.from_string(row["arch_str"]))
    assert metrics == {"accuracy": row["accuracy"], "latency_ms": row["latency_ms"],
                       "reward": mnas_reward(row["accuracy"], row["latency_ms"], 5.0, 0.0, -1.0)}
    plain = TableObjective(space, table, key="arch_str", metric="accuracy")
    assert plain.evaluate(space.from_string(row["arch_str"]))["reward"] == row["accuracy"]
    assert plain.best_metric == table["accuracy"].max()


def test_missing_rows_and_missing_metrics_are_failures(space, table):
    part = table.head(10).copy()
    part.loc[0, "accuracy"] = math.nan
    objective = TableObjective(space, part, key="arch_str", metric="accuracy")
    assert objective.evaluate(space.from_string(part["arch_str"].iloc[0])) is None
    assert objective.evaluate(space.from_string(table["arch_str"].iloc[500])) is None
    assert objective.evaluate(space.from_string(part["arch_str"].iloc[1])) is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"key": "nope"}, "key='nope': no such column"),
    ({"metric": "nope"}, "metric='nope': no such column"),
    ({"latency_column": "latency_ms"}, "target=None: a positive target"),
    ({"latency_column": "latency_ms", "target_ms": -1.0}, "target=-1.0"),
    ({"cost": "params"}, "target=None: a positive target"),
    ({"cost": "macs", "target_ms": 1.0}, "cost='macs': allowed: params"),
    ({"cost": "params", "latency_column": "latency_ms", "target_ms": 1.0}, "not both"),
    ({"alpha": math.inf}, "alpha=inf: must be finite"),
])
def test_table_objective_validation(space, table, kwargs, message):
    args = {"key": "arch_str", "metric": "accuracy", **kwargs}
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TableObjective(space, table.head(5), **args)


def test_duplicate_and_unparseable_keys_are_rejected(space, table):
    dup = pd.concat([table.head(3), table.head(1)])
    with pytest.raises(UsageError, match="duplicate architecture"):
        TableObjective(space, dup, key="arch_str", metric="accuracy")
    garbage = pd.DataFrame({"arch_str": ["a", "b"], "accuracy": [1.0, 2.0]})
    with pytest.raises(UsageError, match="no key parses as an architecture of space"):
        TableObjective(space, garbage, key="arch_str", metric="accuracy")


def test_run_bench_curves_are_monotone_and_complete(space, table):
    objective = TableObjective(space, table.sample(frac=0.5, random_state=1), key="arch_str",
                               metric="accuracy")
    curves = run_bench(objective, ["random", "evolution"], trials=30, seeds=3, workers=4)
    assert list(curves.columns) == CURVE_COLUMNS and len(curves) == 2 * 3 * 30
    for _, group in curves.groupby(["controller", "seed"]):
        best = group["best_metric"].to_numpy()
        assert np.all(np.diff(best[~np.isnan(best)]) >= 0)
        assert best[-1] == group["metric"].max()
    assert curves["metric"].isna().any()  # half the table is missing: some trials failed
    summary = summarize(curves)
    assert list(summary["controller"]) == ["random", "evolution"]
    assert {"best@10 mean", "best@30 std", "final reward mean", "failed"} <= set(summary.columns)
    again = run_bench(objective, ["random", "evolution"], trials=30, seeds=3, workers=4)
    pd.testing.assert_frame_equal(curves, again)  # seeded: reproducible


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"trials": 0}, "^trials=0"), ({"seeds": 0}, "^seeds=0"), ({"workers": 0}, "^workers=0"),
    ({"first_seed": -1}, "^first_seed=-1"), ({"controllers": ["nope"]}, "unknown controller"),
    ({"options": {"rl": {"lr": 1.0}}}, "^options: given for"),
])
def test_run_bench_validation(space, table, kwargs, message):
    objective = TableObjective(space, table.head(50), key="arch_str", metric="accuracy")
    args = {"controllers": ["random"], "trials": 5, "seeds": 1, **kwargs}
    with pytest.raises(UsageError, match=message):
        run_bench(objective, args.pop("controllers"), **args)


def test_load_table_errors(tmp_path):
    with pytest.raises(UsageError, match="^table: file not found"):
        load_table(tmp_path / "none.csv", key="k", metric="m")
    (tmp_path / "t.csv").write_text("k,m\na,1\n")
    with pytest.raises(UsageError, match="^latency_column: column 'lat' is not in t.csv"):
        load_table(tmp_path / "t.csv", key="k", metric="m", latency_column="lat")


# -- CLI -------------------------------------------------------------------------------------------
BASE = ["bench", "--space", "nasbench201", "--key", "arch_str", "--metric", "cifar10_test_acc"]


def test_cli_bench_writes_curves_plot_and_summary(partial_csv, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main([*BASE, "--table", partial_csv, "--controllers", "random,evolution,rl",
                 "--trials", "30", "--seeds", "3", "--out", str(out),
                 "--set", "evolution.population_size=5", "--set", "rl.batch_size=5"])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("random", "evolution", "rl", "@10", "@25", "@30", "final reward"):
        assert word in printed
    curves = pd.read_csv(out / "curves.csv")
    assert list(curves.columns) == CURVE_COLUMNS and len(curves) == 3 * 3 * 30
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["controller"]) == ["random", "evolution", "rl"]
    assert summary["failed"].gt(0).any()  # a third of the space is missing from the table


def test_cli_bench_with_latency_uses_mnas_reward_and_runs_nsga2(partial_csv, tmp_path):
    out = tmp_path / "lat"
    code = main([*BASE, "--table", partial_csv, "--latency-column", "latency_ms",
                 "--target-ms", "7", "--alpha", "0", "--beta", "-1", "--controllers",
                 "random,nsga2", "--trials", "20", "--seeds", "2", "--workers", "3",
                 "--set", "nsga2.population_size=6", "--out", str(out)])
    assert code == 0
    curves = pd.read_csv(out / "curves.csv").dropna()
    table = pd.read_csv(partial_csv).set_index("cifar10_test_acc")
    row = curves.iloc[0]
    latency = table.loc[row["metric"], "latency_ms"]
    latency = latency.iloc[0] if isinstance(latency, pd.Series) else latency
    assert row["reward"] == pytest.approx(mnas_reward(row["metric"], latency, 7.0, 0.0, -1.0))


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize(("extra", "needle"), [
    (["--controllers", "random,nope"], "--controllers: unknown controller 'nope'"),
    (["--controllers", " , "], "--controllers"),
    (["--trials", "0"], "--trials=0"),
    (["--trials", "-5"], "--trials=-5"),
    (["--seeds", "0"], "--seeds=0"),
    (["--workers", "0"], "--workers=0"),
    (["--latency-column", "latency_ms", "--target-ms", "0"], "--target=0.0: must be positive"),
    (["--target-ms", "5"], "--target: only meaningful with a cost"),
    (["--cost", "params", "--latency-column", "latency_ms"], "--cost: give either"),
    (["--alpha", "nan"], "--alpha=nan"),
    (["--noise", "-1"], "--noise=-1.0"),
    (["--latency-column", "lat"], "--latency-column: column 'lat'"),
    (["--latency-column", "lat", "--target-ms", "5"], "--latency-column: column 'lat'"),
    (["--set", "rl.lr"], "--set 'rl.lr': expected NAME.OPTION=VALUE"),
    (["--controllers", "random", "--set", "nsga2.population_size=4"],
     "controller 'nsga2' is not in --controllers"),
    (["--set", "rl.lr=-1"], "rl option lr=-1"),
    (["--controllers", "nsga2", "--set", 'nsga2.objectives=[["accuracy","max"],["x","min"]]'],
     "'nsga2' needs metric(s) ['x']"),
])
def test_cli_bench_bad_arguments_exit_2_naming_the_argument(partial_csv, capsys, extra, needle):
    err = _error(capsys, [*BASE, "--table", partial_csv, "--trials", "5", "--seeds", "1", *extra])
    assert needle in err and err.startswith("nas bench: error:")


def test_cli_bench_missing_table_and_columns(partial_csv, tmp_path, capsys):
    assert "--table: file not found" in _error(capsys, [*BASE, "--table", str(tmp_path / "x.csv")])
    bad_key = ["bench", "--table", partial_csv, "--key", "name", "--metric", "cifar10_test_acc"]
    assert "--key: column 'name' is not in" in _error(capsys, bad_key)
    bad_metric = ["bench", "--table", partial_csv, "--metric", "top1"]
    assert "--metric: column 'top1' is not in" in _error(capsys, bad_metric)
    (tmp_path / "junk.csv").write_bytes(b"\x00\xff\xfe")
    assert "--table: cannot read" in _error(capsys, [*BASE, "--table", str(tmp_path / "junk.csv")])


def test_cli_bench_unknown_space_exits_2(partial_csv, capsys):
    argv = ["bench", "--space", "nope", "--table", partial_csv, "--metric", "cifar10_test_acc"]
    assert "unknown space 'nope'" in _error(capsys, argv)


# -- real table, all controllers, noise, dedup, hypervolume ----------------------------------------
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201_cifar10.csv"


@pytest.mark.skipif(not REAL.is_file(), reason=f"the real NAS-Bench-201 table is not at {REAL}")
def test_cli_bench_reads_the_real_table_with_every_controller(tmp_path, capsys):
    out = tmp_path / "real"
    code = main(["bench", "--table", str(REAL), "--key", "arch_str", "--metric",
                 "cifar10_test_acc", "--controllers", "all", "--trials", "14", "--seeds", "2",
                 "--noise", "0.3", "--dedup", "both", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "table best 94.37" in printed and "noise std 0.3" in printed
    summary = pd.read_csv(out / "summary.csv")
    names = set(nas.CONTROLLERS.names())
    assert set(summary["controller"]) == names | {f"{n} (no dedup)" for n in names}
    assert summary["best@14 mean"].between(80, 94.3734).all()
    assert (summary["repeats"] >= 0).all() and (summary["distinct_late"] >= 14).all()


def test_hypervolume_by_hand():
    norm = HVNorm(acc_min=0.0, acc_max=10.0, cost_min=0.0, cost_max=10.0)
    # two front points (acc 5 @ cost 2, acc 10 @ cost 6) and a dominated one
    acc, cost = np.array([5.0, 10.0, 4.0]), np.array([2.0, 6.0, 5.0])
    assert hypervolume(acc, cost, norm) == pytest.approx(0.5 * 0.8 + 0.5 * 0.4)
    assert hypervolume(acc[:1], cost[:1], norm) == pytest.approx(0.4)
    assert hypervolume(np.array([np.nan]), np.array([1.0]), norm) == 0.0
    assert HVNorm.of(np.array([1.0, 2.0, 9.0]), np.array([3.0, 1.0, 2.0])) == HVNorm(2.0, 9.0, 1.0,
                                                                                     3.0)


def test_cost_params_feeds_mnas_reward_and_hypervolume(space, table):
    objective = TableObjective(space, table, key="arch_str", metric="accuracy", cost="params",
                               target_ms=3e5)
    arch = space.from_string(table["arch_str"].iloc[7])
    metrics = objective.evaluate(arch)
    assert metrics["params"] == space.count_params(arch)
    assert metrics["reward"] == mnas_reward(metrics["accuracy"], metrics["params"], 3e5, -0.07,
                                            -0.07)
    curves = run_bench(objective, ["nsga2", "bananas"], trials=30, seeds=2,
                       options={"bananas": {"n_init": 5, "epochs": 20}})
    assert curves["cost"].notna().all()
    norm = HVNorm.of(objective.metrics(), objective.costs())
    hv = hypervolume_table(curves, norm, marks=(10, 30))
    assert list(hv["controller"]) == ["nsga2", "bananas"]
    assert (hv["hv@30 mean"] >= hv["hv@10 mean"]).all()  # more points never shrink the front
    assert (hv["hv@30 mean"] <= hypervolume(objective.metrics(), objective.costs(), norm)).all()
