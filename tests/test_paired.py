"""Paired latency (issue 13.3/13.4): every timed run of a finalist beside a run of a fixed
reference network, so that a shared machine's slow spells cancel out of the ranking.

The machine is simulated: the timers are replaced by a clock whose speed changes in spells that
last several runs (what this sandbox does over seconds), so what is asserted does not depend on how
loaded the machine running the tests is."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

import nas.latency.measure as measure
from nas.latency.final import remeasure_archs, rescale
from nas.latency.lut import spearman
from nas.latency.measure import LatencyConfig, timed_rounds
from nas.latency.paired import measure_paired, reference_arch
from nas.testing.fixtures import ToySpace

CFG = {"repeats": 12, "warmup": 2, "rounds": 3, "threads": 1}


def size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class SpellMachine:
    """Fake timers: a model takes ``size(model) / 1000`` ms times the machine's slowness, which is
    ``slow`` for ``spell`` consecutive runs (of any model) out of every ``2 * spell``."""

    def __init__(self, spell: int, slow: float = 1.5) -> None:
        self.spell, self.slow, self.runs, self.log = spell, slow, 0, []

    def timer(self, model, shape, dev, cfg):
        base = size(model) / 1000

        def run_once() -> float:
            factor = self.slow if (self.runs // self.spell) % 2 else 1.0
            self.runs += 1
            self.log.append(id(model))
            return base * factor

        return run_once


@pytest.fixture
def machine(monkeypatch):
    def make(spell: int, slow: float = 1.5) -> SpellMachine:
        m = SpellMachine(spell, slow)
        monkeypatch.setattr(measure, "_make_timer", m.timer)
        return m

    return make


def test_models_are_timed_run_for_run_and_get_their_modes_back(machine):
    m = machine(spell=10**6)
    a, b = nn.Linear(4, 4), nn.Linear(4, 8)
    b.eval()
    out = timed_rounds([a, b], (4,), LatencyConfig(**CFG))
    assert [len(r) for r in out[0]] == [4, 4, 4] == [len(r) for r in out[1]]
    assert m.log == [id(a), id(b)] * (2 + 12)  # warm-up and timed runs alternate
    assert a.training and not b.training


def test_a_paired_ratio_cancels_a_slow_spell_that_a_plain_median_keeps(machine):
    machine(spell=2 * (2 + 12))  # one whole paired measurement per spell
    a, ref = nn.Linear(40, 50), nn.Linear(20, 50)
    fast = measure_paired(a, ref, (40,), LatencyConfig(**CFG))
    slow = measure_paired(a, ref, (40,), LatencyConfig(**CFG))
    assert slow.model.median_ms == pytest.approx(1.5 * fast.model.median_ms)  # the machine
    assert slow.ratio["median_ms"] == pytest.approx(fast.ratio["median_ms"])  # cancelled
    assert fast.ratio["median_ms"] == pytest.approx(size(a) / size(ref))


def test_paired_finalists_rank_right_where_plain_ones_do_not(machine):
    space = ToySpace()
    archs = [space.validate({"width": w, "depth": d}) for w in (8, 16, 32, 64) for d in (1, 2)]
    truth = [size(space.build(a)) / 1000 for a in archs]
    cfg = LatencyConfig(**CFG)
    machine(spell=2 * (2 + 12), slow=4.0)  # slow spells of one paired measurement each
    paired = remeasure_archs(space, archs, cfg, passes=1, seed=1)
    machine(spell=2 + 12, slow=4.0)  # the same spells for plain measurements (half the runs)
    plain = remeasure_archs(space, archs, cfg, passes=1, seed=1, paired=False)
    got = [paired[a.key]["latency_ms"] for a in archs]
    assert got == pytest.approx(truth)  # in the undisturbed machine's milliseconds
    assert spearman(truth, [plain[a.key]["latency_ms"] for a in archs]) < 0.9
    ref = reference_arch(space)
    for entry in (paired[a.key] for a in archs):
        assert entry["method"] == "paired" and entry["reference"]["arch_key"] == ref.key
        assert entry["reference"]["latency_ms"] == pytest.approx(size(space.build(ref)) / 1000)
        assert entry["ratio"] == pytest.approx(entry["latency_ms"] / entry["reference"]
                                               ["latency_ms"])
        assert entry["latency_unpaired_ms"] > 0 and entry["passes"] == 1
    assert "method" not in plain[archs[0].key]


def test_paired_is_the_default_and_can_be_turned_off(machine):
    machine(spell=10**6)
    space = ToySpace()
    arch = [space.validate({"width": 8, "depth": 1})]
    assert LatencyConfig().paired is True
    on = remeasure_archs(space, arch, LatencyConfig(**CFG), passes=1)
    off = remeasure_archs(space, arch, LatencyConfig(**CFG, paired=False), passes=1)
    assert on[arch[0].key]["method"] == "paired" and "method" not in off[arch[0].key]
    with pytest.raises(Exception, match=r"latency\.paired"):
        LatencyConfig(paired="yes")


def test_rescale_puts_a_later_session_in_the_first_sessions_milliseconds():
    later = {"method": "paired", "latency_ms": 3.0, "latency_p10_ms": 2.7, "latency_p90_ms": 3.6,
             "pass_medians": [3.0, 3.3], "ratio": 1.5,
             "reference": {"arch_key": "r", "latency_ms": 2.0}}
    out = rescale(later, 1.0)
    assert out["latency_ms"] == pytest.approx(1.5) and out["latency_p90_ms"] == pytest.approx(1.8)
    assert out["pass_medians"] == pytest.approx([1.5, 1.65])
    assert out["reference"] == {"arch_key": "r", "latency_ms": 1.0, "session_ms": 2.0}
    plain = {"latency_ms": 3.0}
    assert rescale(plain, 1.0) == plain
    assert np.isclose(out["ratio"], later["ratio"])
