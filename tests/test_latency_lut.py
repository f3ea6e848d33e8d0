"""Space-aware latency: Spearman, lookup tables, the measurement cache, input-size override."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
from torch import nn

import nas.latency.lut as lut
from nas import SPACES, Choice, Space
from nas.errors import ConfigError, UsageError
from nas.latency.lut import LatencyCache, LatencyTable, latency_space, lut_report, spearman
from nas.latency.measure import LatencyConfig, LatencyResult
from nas.space import LatencyUnit

FAST = LatencyConfig(warmup=1, repeats=6, rounds=2)


def _conv(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())


class ChainSpace(Space):
    """Three conv layers with a width choice each; units are the layers."""

    name = "chain_test"

    def __init__(self, *, input_size: int = 8) -> None:
        super().__init__([Choice(f"l{i}.width", (4, 8, 16)) for i in range(3)],
                         options={"input_size": input_size})

    def input_shape(self):
        return (3, self.options["input_size"], self.options["input_size"])

    def _widths(self, arch):
        return [3] + [int(arch[f"l{i}.width"]) for i in range(3)]

    def build(self, arch):
        w = self._widths(arch)
        return nn.Sequential(*[_conv(w[i], w[i + 1]) for i in range(3)])

    def latency_units(self, arch):
        w, s = self._widths(self.validate(arch)), self.options["input_size"]
        return [LatencyUnit(f"conv:{w[i]}>{w[i + 1]}@{s}", (w[i], s, s),
                            partial(_conv, w[i], w[i + 1])) for i in range(3)]


class NoSizeSpace(ChainSpace):
    def __init__(self) -> None:
        Space.__init__(self, [Choice("l0.width", (4,)), Choice("l1.width", (4,)),
                              Choice("l2.width", (4,))])


def _fake_result(ms: float) -> LatencyResult:
    return LatencyResult(median_ms=ms, p10_ms=ms, p90_ms=ms, spread=0.0, n=1, rejected=0,
                         rounds=(ms,), rounds_kept=1, batch_size=1, runtime="torch",
                         device={"key": "x"})


@pytest.fixture
def fake_timer(monkeypatch):
    """Deterministic 'latency' = parameter count / 1000; records every measured module."""
    calls = []

    def fake(model, input_shape, config=None, **kwargs):
        calls.append((type(model).__name__, tuple(input_shape)))
        return _fake_result(sum(p.numel() for p in model.parameters()) / 1000)

    monkeypatch.setattr(lut, "measure_latency", fake)
    return calls


def test_spearman_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)
    b = a + rng.normal(0, 2, 40)
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


def test_table_times_each_distinct_unit_once(fake_timer):
    space, table = ChainSpace(), LatencyTable(FAST)
    a = space.validate({"l0.width": 8, "l1.width": 8, "l2.width": 8})
    b = space.validate({"l0.width": 8, "l1.width": 8, "l2.width": 16})
    pa = table.predict(space, a)
    expected = sum(sum(p.numel() for p in _conv(i, o).parameters()) for i, o in
                   [(3, 8), (8, 8), (8, 8)]) / 1000
    assert pa == pytest.approx(expected)
    assert len(fake_timer) == 2  # conv 3>8 and conv 8>8 (twice in the net, timed once)
    table.predict(space, b)
    assert len(fake_timer) == 3  # only conv 8>16 is new
    assert table.fill(space, [a, b]) == 0


def test_lut_report_rank_correlation(fake_timer):
    space, table = ChainSpace(), LatencyTable(FAST)
    archs = [space.sample(np.random.default_rng(i)) for i in range(8)]
    truth = {a.key: sum(p.numel() for p in space.build(a).parameters()) / 1000 for a in archs}
    report = lut_report(space, archs, table, measure=lambda a: truth[a.key])
    assert report["n"] == 8 and len(report["rows"]) == 8
    assert report["spearman"] == pytest.approx(1.0)
    assert report["median_rel_error"] == pytest.approx(0.0, abs=1e-9)


def test_lut_real_measurement_is_reasonable():
    space, table = ChainSpace(input_size=16), LatencyTable(FAST)
    archs = [space.validate({"l0.width": w, "l1.width": w, "l2.width": w}) for w in (4, 16)]
    report = lut_report(space, archs, table)
    assert report["n"] == 2 and all(r["predicted_ms"] > 0 for r in report["rows"])
    assert {"arch_key", "predicted_ms", "measured_ms", "rel_error"} <= set(report["rows"][0])


def test_table_save_load_round_trip(tmp_path, fake_timer):
    space, table = ChainSpace(), LatencyTable(FAST)
    arch = space.sample(np.random.default_rng(0))
    value = table.predict(space, arch)
    path = tmp_path / "lut.json"
    table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.config == FAST
    n = len(fake_timer)
    assert loaded.predict(space, arch) == value and len(fake_timer) == n


def test_table_load_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"entries": {}}))
    with pytest.raises(UsageError, match="not valid"):
        LatencyTable.load(bad)


def test_table_from_another_device_cannot_grow(fake_timer):
    space = ChainSpace()
    table = LatencyTable(FAST, entries={}, fingerprint={"key": "elsewhere", "cpu": "Other CPU"})
    with pytest.raises(UsageError, match="measured on Other CPU"):
        table.predict(space, space.sample(np.random.default_rng(0)))


def test_cache_measures_once_per_key(monkeypatch):
    calls = []
    monkeypatch.setattr(lut, "measure_arch",
                        lambda space, arch, config, preset=None: calls.append(arch)
                        or _fake_result(1.5))
    space, cache = ChainSpace(), LatencyCache()
    arch = space.sample(np.random.default_rng(0))
    first = cache.measure(space, arch, FAST)
    second = cache.measure(space, arch, FAST)
    assert (first["cached"], second["cached"], second["median_ms"]) == (False, True, 1.5)
    cache.measure(space, arch, LatencyConfig(warmup=1, repeats=6, rounds=2, threads=2))
    cache.measure(ChainSpace(input_size=16), arch, FAST)
    assert len(calls) == 3
    assert cache.stats() == {"entries": 3, "hits": 1, "misses": 3}


def test_latency_space_input_size_override():
    space = ChainSpace(input_size=8)
    assert latency_space(space, FAST) is space
    big = latency_space(space, LatencyConfig(input_size=32))
    assert big.input_shape() == (3, 32, 32) and isinstance(big, ChainSpace)
    with pytest.raises(ConfigError, match="no input_size option"):
        latency_space(NoSizeSpace(), LatencyConfig(input_size=32))


def test_space_without_units():
    space = SPACES.create("nasbench201", channels=4, cells_per_stage=1)
    with pytest.raises(NotImplementedError, match="lookup tables"):
        LatencyTable(FAST).predict(space, space.sample(np.random.default_rng(0)))


@pytest.mark.skipif("mnasnet" not in SPACES, reason="the mnasnet space is not available")
def test_mnasnet_units_cover_the_network(fake_timer):
    space = SPACES.create("mnasnet", input_size=32, num_classes=10, width_mult=0.25)
    arch = space.sample(np.random.default_rng(0))
    predicted = LatencyTable(FAST).predict(space, arch)
    # with params/1000 as 'latency', the units' sum equals the whole network's parameter count
    model = space.build(arch)
    assert predicted == pytest.approx(sum(p.numel() for p in model.parameters()) / 1000)


def test_calibrate_fits_one_scale_and_is_saved(tmp_path, fake_timer):
    space, table = ChainSpace(), LatencyTable(FAST)
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    raw = {a.key: table.predict(space, a) for a in archs}
    scale = table.calibrate(space, archs[:2], measure=lambda a: 1.25 * raw[a.key])
    assert scale == pytest.approx(1.25)
    assert table.predict(space, archs[3]) == pytest.approx(1.25 * raw[archs[3].key])
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json").scale == pytest.approx(1.25)
    with pytest.raises(UsageError, match="at least one"):
        table.calibrate(space, [])
