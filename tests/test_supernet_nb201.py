"""The NAS-Bench-201 supernet (issue 23.2): every edge holds its five ops, a child cut out of it
computes exactly what its path computes, non-isomorphic sampling, training that resumes to the
same weights, and a checkpoint that refuses another space."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from nas.errors import ConfigError
from nas.evaluation.data import load_dataset
from nas.registry import get_space
from nas.supernet import load_supernet, score_child, train_supernet
from nas.supernet.checkpoint import INFO_FILE, MODEL_FILE
from search_spaces.nb201_cell import EDGES, OPS, canonical_form, isomorphism_classes
from search_spaces.nb201_model import NB201Network
from search_spaces.nb201_supernet import MixedCell, NB201Supernet
from tests.test_supernet import TINY_SPACE, Killed, kill_after

# digits-sized (8x8, one channel) and small: one cell per stage, 4 channels
SMALL = {"input_size": 8, "in_channels": 1, "num_classes": 10, "channels": 4,
         "cells_per_stage": 1}
FAST = {"epochs": 2, "batch_size": 32, "calib_batches": 2, "calib_batch_size": 32, "threads": 1,
        "supernet": {"paths": "non_isomorphic"}}


@pytest.fixture(scope="module")
def small():
    return get_space("nasbench201", **SMALL)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits", val_fraction=0.2, seed=0, max_train=64)


def scrambled(space, **options) -> NB201Supernet:
    """A supernet whose BN statistics and affine parameters are random (a wrong BN buffer or a
    wrong op's weights change the output), in eval mode."""
    torch.manual_seed(1)
    net = space.supernet(**options)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def cell(text: str) -> dict[tuple[int, int], str]:
    """``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (the benchmark's string) as ``{(to, from): op}``."""
    ops = {}
    for j, node in enumerate(text.split("+"), start=1):
        for i, edge in enumerate(e for e in node.split("|") if e):
            op, _, src = edge.partition("~")
            assert int(src) == i
            ops[(j, i)] = op
    return ops


# -- the supernet and exact extraction ----------------------------------------------------------
def covering_cells(space) -> list:
    """One op on every edge (5 cells), each edge ``none`` in turn with the others cycling through
    the ops (6), and 60 uniform samples (most hold a ``none`` edge: 1 - 0.8**6 = 74%)."""
    archs = [space.validate({f"node{j}.from{i}": op for j, i in EDGES}) for op in OPS]
    for k, (to, frm) in enumerate(EDGES):
        values = {f"node{j}.from{i}": OPS[1 + (n + k) % 4] for n, (j, i) in enumerate(EDGES)}
        archs.append(space.validate({**values, f"node{to}.from{frm}": "none"}))
    rng = np.random.default_rng(11)
    return archs + [space.sample(rng) for _ in range(60)]


def test_every_edge_holds_its_five_ops(small):
    net = small.supernet()
    cells = [m for m in net.cells if isinstance(m, MixedCell)]
    assert len(cells) == 3
    assert all(set(c.edges) == {f"{j}_{i}" for j, i in EDGES} for c in cells)
    assert all(tuple(ops) == OPS for c in cells for ops in c.edges.values())
    # every edge of every cell owns a 1x1 and a 3x3 conv (with BN), and nothing else is doubled
    only = {op: small.validate({f"node{j}.from{i}": op for j, i in EDGES}) for op in OPS}
    expected = (small.count_params(only["nor_conv_1x1"]) + small.count_params(only["nor_conv_3x3"])
                - small.count_params(only["none"]))
    assert sum(p.numel() for p in net.parameters()) == expected


@pytest.mark.parametrize("paths", ["uniform", "non_isomorphic"])
def test_extracted_child_equals_the_path(small, paths):
    net = scrambled(small, paths=paths)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    archs = covering_cells(small)
    assert sum("none" in dict(a.items()).values() for a in archs) > 40
    for arch in archs:
        child = net.extract(arch)
        assert type(child) is NB201Network and not child.training
        with torch.no_grad():
            path, alone = net(x, arch), child(x)
        assert torch.equal(path, alone), (small.to_string(arch), (path - alone).abs().max())


def test_extraction_at_the_benchmarks_size():
    """The benchmark's own network (16 channels, 5 cells per stage, 32 px, 3 channels)."""
    space = get_space("nasbench201")
    net = scrambled(space)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for arch in [space.sample(np.random.default_rng(i)) for i in range(3)]:
        with torch.no_grad():
            assert torch.equal(net(x, arch), net.extract(arch)(x))


def test_a_path_uses_its_own_ops_weights_only(small):
    """Changing an op the path does not choose leaves its output alone; changing the chosen one
    (in one cell) changes it."""
    net = scrambled(small)
    arch = small.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|"
                             "+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = net(x, arch)
        net.cells[0].edges["1_0"]["nor_conv_1x1"][1].weight.add_(1.0)  # not chosen on edge 1_0
        assert torch.equal(net(x, arch), before)
        net.cells[0].edges["1_0"]["nor_conv_3x3"][1].weight.add_(1.0)  # chosen
        assert not torch.equal(net(x, arch), before)


def test_options_are_checked(small):
    with pytest.raises(ConfigError, match=r"^supernet option paths='all': allowed values: "
                                          r"uniform, non_isomorphic$"):
        small.supernet(paths="all")
    assert small.supernet().options == {"paths": "uniform"}


def test_extremes(small):
    largest, smallest = small.supernet().extremes()
    assert set(dict(largest.items()).values()) == {"nor_conv_3x3"}
    assert small.canonical_form(smallest) == "x"
    rng = np.random.default_rng(0)
    sizes = [small.count_params(small.sample(rng)) for _ in range(20)]
    assert small.count_params(largest) >= max(sizes)
    assert small.count_params(smallest) <= min(sizes)


# -- isomorphic cells ---------------------------------------------------------------------------
NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
HAND_WORKED = [
    # nothing reaches the output
    ([NONE, "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|none~1|none~2|",
      "|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|"], "0"),
    # one 3x3 conv of the input: directly, behind a skip, or before one (unused and zero edges)
    (["|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|",
      "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|",
      "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
      "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|none~2|"],
     "nor_conv_3x3(x)"),
    # a sum flattens, whichever edges carry its terms
    (["|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
      "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|none~1|skip_connect~2|",
      "|nor_conv_1x1~0|+|avg_pool_3x3~0|none~1|+|nor_conv_3x3~0|skip_connect~1|skip_connect~2|"],
     "avg_pool_3x3(x)+nor_conv_1x1(x)+nor_conv_3x3(x)"),
    # an op of a sum: the order of its terms does not matter
    (["|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|",
      "|nor_conv_1x1~0|+|skip_connect~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"],
     "avg_pool_3x3(nor_conv_1x1(x)+x)"),
]
DIFFERENT = [
    ("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|", "x"),
    ("|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|", "x+x"),
    ("|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|", "nor_conv_1x1(x)"),
    # no algebra of the ops: avg_pool(a + b) is not avg_pool(a) + avg_pool(b)
    ("|nor_conv_1x1~0|+|none~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|",
     "avg_pool_3x3(nor_conv_1x1(x))+avg_pool_3x3(x)"),
    # two parallel convs of one source are two terms (their weights differ)
    ("|skip_connect~0|+|none~0|none~1|+|nor_conv_3x3~0|nor_conv_3x3~1|none~2|",
     "nor_conv_3x3(x)+nor_conv_3x3(x)"),
]


@pytest.mark.parametrize(("cells", "form"), HAND_WORKED, ids=lambda v: str(v)[:30])
def test_isomorphic_cells_share_one_form(small, cells, form):
    assert {canonical_form(cell(c)) for c in cells} == {form}
    assert {small.canonical_form(small.from_string(c)) for c in cells} == {form}


def test_cells_that_differ_have_different_forms():
    forms = [canonical_form(cell(c)) for c, _ in DIFFERENT]
    assert forms == [f for _, f in DIFFERENT]
    assert len(set(forms)) == len(forms)


def test_an_unused_node_does_not_matter():
    """Node 2 feeds the output through a ``none`` edge: its 25 in-edge choices are one class."""
    base = cell("|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|avg_pool_3x3~1|none~2|")
    forms = {canonical_form({**base, (2, 0): a, (2, 1): b}) for a, b in itertools.product(OPS, OPS)}
    assert forms == {"avg_pool_3x3(nor_conv_3x3(x))+x"}


def _benchmark_form(ops: dict[tuple[int, int], str]) -> str:
    """NAS-Bench-201's own de-duplication (its ``Structure.to_unique_str(consider_zero=True)``,
    written here from its definition): ``#`` for a ``none`` edge or an edge from a node that is
    ``#``, a skip passes its source on, summands are kept (zeros included) and sorted."""
    nodes = ["0"]
    for j in range(1, 4):
        terms = []
        for i in range(j):
            op = ops[(j, i)]
            if op == "none" or nodes[i] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(nodes[i])
            else:
                terms.append(f"({nodes[i]})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[3]


def test_the_classes_against_the_benchmarks_count():
    """4,930 classes; the benchmark's rule gives its published 6,466 unique cells, each of them
    inside one of our classes (ours also drop zero summands)."""
    classes = isomorphism_classes()
    assert sum(len(c) for c in classes) == 5 ** 6 and len(classes) == 4930
    ours, theirs = {}, defaultdict(set)
    for members in classes:
        for indices in members:
            ops = {edge: OPS[k] for edge, k in zip(EDGES, indices, strict=True)}
            ours[indices] = canonical_form(ops)
            theirs[_benchmark_form(ops)].add(ours[indices])
    assert len(theirs) == 6466
    assert all(len(forms) == 1 for forms in theirs.values())
    assert all(len({ours[m] for m in members}) == 1 for members in classes)


def test_non_isomorphic_sampling_is_uniform_over_classes(small):
    """20,000 training paths: the "0" class (341 of the 15,625 cells, 2.2%) comes up about as
    often as any class (20,000 / 4,930 = 4) instead of 436 times, and a class's paths are its
    different cells (not one representative)."""
    n, rng_u, rng_n = 20_000, np.random.default_rng(5), np.random.default_rng(5)
    uniform, distinct = small.supernet(), small.supernet(paths="non_isomorphic")
    drawn_u = [uniform.sample(rng_u) for _ in range(n)]
    drawn_n = [distinct.sample(rng_n) for _ in range(n)]
    zero_u = sum(small.canonical_form(a) == "0" for a in drawn_u)
    zero_n = sum(small.canonical_form(a) == "0" for a in drawn_n)
    assert 330 < zero_u < 550 and zero_n < 15
    forms = {small.canonical_form(a) for a in drawn_n}
    assert len(forms) > 4500  # 4,930 * (1 - exp(-20,000 / 4,930)) = 4,845 expected
    assert len(set(drawn_n)) > len(forms) + 500  # several cells of the larger classes
    again = [distinct.sample(np.random.default_rng(5)) for _ in range(3)]
    assert again == [drawn_n[0]] * 3  # seeded


# -- training, checkpoints, scoring -------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(small, data, tmp_path_factory):
    """(straight folder, its info, killed-and-resumed folder, the info after the kill)."""
    straight, resumed = tmp_path_factory.mktemp("nb-straight"), tmp_path_factory.mktemp("nb-res")
    info = train_supernet(small, data, FAST, straight)
    with pytest.raises(Killed):
        train_supernet(small, data, FAST, resumed, on_epoch=kill_after(1))
    after_kill = json.loads((resumed / INFO_FILE).read_text())
    return straight, info, resumed, after_kill


def test_training_records_the_space_and_its_supernet_options(trained, small):
    straight, info, _, after_kill = trained
    assert info["epochs_done"] == 2 and info["complete"] and after_kill["epochs_done"] == 1
    assert info["space"] == {"name": "nasbench201",
                             "options": json.loads(json.dumps(small.options))}
    assert info["options"]["supernet"] == {"paths": "non_isomorphic"}
    assert all(np.isfinite(h["loss"]) for h in info["history"])


def test_resume_continues_to_the_same_weights(trained, small, data):
    straight, info, resumed, _ = trained
    done = train_supernet(small, data, FAST, resumed)
    assert done["epochs_done"] == 2
    assert [h["loss"] for h in done["history"]] == [h["loss"] for h in info["history"]]
    a, b = load_file(str(straight / MODEL_FILE)), load_file(str(resumed / MODEL_FILE))
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []


def test_scoring_options_do_not_make_another_supernet(trained, small, data, monkeypatch):
    """Device, threads, calibration and scoring may change: the finished folder is reused."""
    import nas.supernet.train as module

    monkeypatch.setattr(module, "_Trainer", None)  # would fail if training started
    changed = {**FAST, "score": "loss", "calib_batches": 3, "threads": 2}
    assert train_supernet(small, data, changed, trained[0])["epochs_done"] == 2


def test_another_paths_option_is_another_supernet(trained, small, data):
    with pytest.raises(ConfigError, match="option supernet.paths='non_isomorphic' "
                                          r"\(asked: 'uniform'\)"):
        train_supernet(small, data, {**FAST, "supernet": {}}, trained[0])


def test_a_checkpoint_of_another_space_is_refused(trained, small, data):
    straight = trained[0]
    mnas = get_space("mnasnet", **TINY_SPACE)
    with pytest.raises(ConfigError) as err:
        train_supernet(mnas, data, {k: v for k, v in FAST.items() if k != "supernet"}, straight)
    assert "holds another supernet: space 'nasbench201' (asked: 'mnasnet')" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_supernet(straight, mnas)
    assert str(err.value) == (f"supernet checkpoint {str(straight)!r}: a supernet of space "
                              "'nasbench201' (not 'mnasnet')")
    wider = get_space("nasbench201", **{**SMALL, "channels": 8})
    with pytest.raises(ConfigError, match=r"\(options that differ: channels\)$"):
        load_supernet(straight, wider)


def test_load_and_score(trained, small, data):
    straight, info, _, _ = trained
    net, loaded = load_supernet(straight, small)
    again, _ = load_supernet(straight)  # the recorded, registered space
    assert loaded == info and not net.training and net.options == {"paths": "non_isomorphic"}
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in net.state_dict().items())
    arch = small.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|"
                             "+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|")
    child, accuracy, loss = score_child(net, arch, data, None)
    assert type(child) is NB201Network
    source = data.batch_source("cpu")
    with torch.no_grad():
        batches = list(source.val_batches(512))
        logits = torch.cat([child(x) for x, _ in batches])
        y = torch.cat([y for _, y in batches])
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert accuracy == (logits.argmax(1) == y).sum().item() / len(y)


def test_sandwich_training_runs_on_the_extremes(small, data, tmp_path):
    options = {**FAST, "epochs": 1, "sampling": "sandwich", "sandwich_paths": 1}
    info = train_supernet(small, data, options, tmp_path / "sandwich")
    assert info["complete"] and np.isfinite(info["history"][0]["loss"])
