"""Zero-cost proxies against values worked out by hand on tiny networks, their determinism, and
the ``zero_cost`` evaluator end to end (options, record, reward)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from nas.config import parse_config
from nas.errors import ConfigError, UsageError
from nas.evaluation.data import Dataset, load_dataset
from nas.evaluation.evaluate import EvalSettings, evaluate_arch, space_for_dataset
from nas.evaluation.train import TrainConfig
from nas.evaluation.zero_cost import (
    PROXIES,
    compute_proxy,
    draw_batches,
    grad_norm,
    jacob_cov,
    nwot,
    positive_score,
    snip,
    synflow,
    zero_cost_scores,
)
from nas.evaluation.zero_cost_evaluator import ZeroCostOptions
from nas.experiment import build_experiment, check_evaluator
from nas.latency.measure import LatencyConfig
from nas.records import metric_problem, number_problem
from nas.reward import RewardConfig

S = 1.0 / (1.0 + math.e ** 2)  # softmax of logits (-3, -5): p = (1 - S, S)


def linear(weight, bias=None) -> nn.Linear:
    """A Linear layer holding the given weight (out x in) and bias (None: no bias)."""
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    return layer


def conv(weight) -> nn.Conv2d:
    """A bias-free Conv2d with one input and one output channel and the given square kernel."""
    w = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Conv2d(1, 1, w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w[None, None])
    return layer


X2 = torch.tensor([[1.0, -1.0, 2.0], [0.5, 3.0, -1.0]])  # two samples of three features


# -- NWOT -----------------------------------------------------------------------------------------
def test_nwot_two_relu_layers_by_hand():
    # ReLU 1 sees x itself (W = I): codes c1 = [1,0,1], c2 = [1,1,0]; they agree on unit 1 only.
    # ReLU 2 sees W2 relu(x), W2 = [[1,-1,0],[0,0,-1]]: x1 -> [1,0,2] -> [1,-2] -> code [1,0];
    # x2 -> [0.5,3,0] -> [-2.5,0] -> code [0,0] (0 is not active); they agree on unit 2 only.
    # N_A = 3 + 2 = 5 units, agreements K12 = 1 + 1 = 2: K = [[5,2],[2,5]], det = 25 - 4 = 21.
    model = nn.Sequential(linear(np.eye(3), [0, 0, 0]), nn.ReLU(),
                          linear([[1, -1, 0], [0, 0, -1]], [0, 0]), nn.ReLU(inplace=True),
                          linear([[1, 1]]))
    assert nwot(model, X2) == pytest.approx(math.log(21), abs=1e-6)  # 3.0445224377


def test_nwot_tiny_conv_by_hand():
    # a 1x1 conv of weight 1 and a ReLU: codes are the signs of the pixels themselves
    # x1 = [[1,-1],[2,-3]] -> [1,0,1,0]; x2 = [[1,1],[-1,-1]] -> [1,1,0,0]: they agree on
    # pixels 1 and 4, so K = [[4,2],[2,4]], det = 16 - 4 = 12.
    model = nn.Sequential(conv([[1.0]]), nn.ReLU())
    x = torch.tensor([[[[1.0, -1.0], [2.0, -3.0]]], [[[1.0, 1.0], [-1.0, -1.0]]]])
    assert nwot(model, x) == pytest.approx(math.log(12), abs=1e-6)  # 2.4849066498


def test_nwot_identical_codes_and_no_relu():
    model = nn.Sequential(linear(np.eye(3), [0, 0, 0]), nn.ReLU())
    same = torch.tensor([[1.0, -1.0, 2.0], [3.0, -2.0, 1.0]])  # both [1,0,1]: K = [[3,3],[3,3]]
    assert nwot(model, same) == -math.inf
    with pytest.raises(UsageError, match="no nn.ReLU"):
        nwot(nn.Sequential(nn.Linear(3, 2)), X2)


# -- synflow --------------------------------------------------------------------------------------
def test_synflow_mlp_by_hand_bn_removed_biases_absolute_not_scored():
    # |W1| = [[1,2],[3,4]], |b1| = [1,1]; an all-ones input gives h = [1+2+1, 3+4+1] = [4,8]
    # (the BN in between is removed); R = |W2| . relu(h) = 1*4 + 2*8 = 20.
    # W2's term: sum |W2| * dR/dW2 = 1*4 + 2*8 = 20; dR/dh = |W2| = [1,2], so
    # dR/dW1 = [[1,1],[2,2]] and W1's term: 1*1 + 2*1 + 3*2 + 4*2 = 17; biases are not scored.
    # synflow = 20 + 17 = 37 (with the BN's affine in eval mode, or b1 kept negative, it is not).
    bn = nn.BatchNorm1d(2)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.3, -0.3]))
    model = nn.Sequential(linear([[1, -2], [3, -4]], [-1, -1]), bn, nn.ReLU(),
                          linear([[-1, 2]]))
    assert synflow(model, torch.randn(5, 2)) == pytest.approx(37.0, abs=1e-6)


def test_synflow_tiny_conv_by_hand():
    # |w| = [[1,1],[2,2]] on a 3x3 all-ones image: 4 outputs of 1+1+2+2 = 6, R = 24; each weight
    # touches 4 ones, dR/dw = 4, so the score is 4 * (1+1+2+2) = 24. Without the absolute values
    # every output would be 1-1+2-2 = 0, the ReLU would pass no gradient, and the score would be 0.
    model = nn.Sequential(conv([[1, -1], [2, -2]]), nn.ReLU(), nn.Flatten())
    assert synflow(model, torch.zeros(3, 1, 3, 3)) == pytest.approx(24.0, abs=1e-6)


class Negate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_synflow_saliencies_are_absolute_where_the_flow_is_negative():
    # |w| = [1,2]; R = -(1 + 2) = -3, dR/dw = [-1,-1]: |w * dR/dw| = [1,2], synflow = 3 (not -3)
    model = nn.Sequential(linear([[1, -2]]), Negate())
    assert synflow(model, torch.zeros(1, 2)) == pytest.approx(3.0, abs=1e-6)


# -- jacob_cov ------------------------------------------------------------------------------------
def test_jacob_cov_by_hand():
    # f(x) = [1,2,3] . relu(x): the input gradient is [1,2,3] * (x > 0), so
    # J1 = [1,0,3] (mean 4/3, centred [-1,-4,5]/3), J2 = [1,2,0] (mean 1, centred [0,1,-1]).
    # r = (-4/3 - 5/3) / sqrt(42/9 * 2) = -3 / sqrt(84/9) = -9/sqrt(84) = -0.98198050606;
    # the 2x2 correlation [[1,r],[r,1]] has eigenvalues 1+r and 1-r, and with k = 1e-5
    # score = -sum over them of log(l + k) + 1/(l + k) = -52.6375724176.
    model = nn.Sequential(linear(np.eye(3), [0, 0, 0]), nn.ReLU(), linear([[1, 2, 3]], [0]))
    r, k = -9 / math.sqrt(84), 1e-5
    expected = -sum(math.log(lam + k) + 1 / (lam + k) for lam in (1 + r, 1 - r))
    assert expected == pytest.approx(-52.6375724176, abs=1e-9)
    assert jacob_cov(model, X2) == pytest.approx(expected, abs=1e-6)


def test_jacob_cov_of_an_output_blind_to_its_input_is_minus_inf():
    model = nn.Sequential(linear([[0, 0, 0]], [1.0]))  # J = 0: no correlation is defined
    assert jacob_cov(model, X2) == -math.inf


# -- snip and grad_norm ---------------------------------------------------------------------------
def _two_layers() -> nn.Module:
    # h = I x, z = W2 h + b2 with W2 = [[1,-2],[3,-4]], b2 = 0
    return nn.Sequential(linear(np.eye(2)), linear([[1, -2], [3, -4]], [0, 0]))


XY = (torch.tensor([[1.0, 2.0]]), torch.tensor([0]))


def test_snip_by_hand():
    # z = W2 x = [1-4, 3-8] = [-3,-5]; cross-entropy with label 0: dL/dz = p - e0 = [-S, S].
    # dL/dW2 = dz x^T = [[-S,-2S],[S,2S]]; |dL/dW2 * W2| = S*(1 + 4 + 3 + 8) = 16 S.
    # dL/dh = W2^T dz = [2S, -2S]; dL/dW1 = [[2S,4S],[-2S,-4S]]; |. * I| = 2S + 4S = 6 S.
    # snip = 22 S = 2.6224642845 (b2 = 0 adds nothing either way).
    assert snip(_two_layers(), *XY) == pytest.approx(22 * S, abs=1e-6)


def test_grad_norm_is_the_sum_of_layer_norms_by_hand():
    # ||dL/dW2|| = S sqrt(1+4+1+4) = sqrt(10) S, ||dL/dW1|| = S sqrt(4+16+4+16) = 2 sqrt(10) S:
    # the sum of layer norms is 3 sqrt(10) S = 1.1308582120; one global norm would be
    # sqrt(50) S = 0.8428919450, and counting the bias gradient [-S, S] would add sqrt(2) S.
    assert grad_norm(_two_layers(), *XY) == pytest.approx(3 * math.sqrt(10) * S, abs=1e-6)


@pytest.mark.parametrize("fn", [nwot, jacob_cov, snip, grad_norm])
def test_data_proxies_average_over_batches(fn):
    model = nn.Sequential(linear(np.eye(3), [0, 0, 0]), nn.ReLU(),
                          linear([[1, 2, 3], [-1, 0, 1]], [0, 0]))
    batches = [(X2, torch.tensor([0, 1])),
               (torch.tensor([[1.0, 2.0, -3.0], [-1.0, 2.0, 3.0]]), torch.tensor([1, 1]))]
    mean = (fn(model, *batches[0]) + fn(model, *batches[1])) / 2
    assert math.isfinite(mean)
    assert compute_proxy(fn.__name__, model, batches, input_shape=(3,)) == pytest.approx(mean)


# -- the proxies leave the model alone and are deterministic -------------------------------------
@pytest.fixture(scope="module")
def tiny_data() -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 4, 4, generator=g)
    y = torch.randint(0, 3, (40,), generator=g)
    return Dataset(name="tiny", x_train=x[:32], y_train=y[:32], x_val=x[32:], y_val=y[32:],
                   num_classes=3, mean=(0.0,), std=(1.0,))


def _tiny_conv_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                         nn.Flatten(), nn.Dropout(0.5), nn.Linear(8, 3))


def test_params_and_macs(tiny_data):
    # conv 1->2 channels, 3x3, no bias: 18 params; 4x4 -> 2x2 outputs: 2*2*2*9 = 72 MACs;
    # BN of 2 channels: 2 + 2 params, no MACs; linear 8 -> 3: 24 + 3 params, 24 MACs.
    # Total 18 + 4 + 27 = 49 parameters and 72 + 24 = 96 MACs.
    got = zero_cost_scores(_tiny_conv_net(), tiny_data, ["params", "macs"])
    assert got == {"params": 49.0, "macs": 96.0}


def test_same_seed_same_scores_and_model_untouched(tiny_data):
    torch.manual_seed(3)
    model = _tiny_conv_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timings: dict[str, float] = {}
    first = zero_cost_scores(model, tiny_data, seed=7, batch_size=8, batches=2, timings=timings)
    torch.manual_seed(123)  # the global state does not leak into the scores
    again = zero_cost_scores(model, tiny_data, seed=7, batch_size=8, batches=2)
    assert list(first) == list(PROXIES) and first == again
    assert set(timings) == set(PROXIES) and all(t >= 0 for t in timings.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())
    other = zero_cost_scores(model, tiny_data, ["snip", "nwot"], seed=8, batch_size=8, batches=2)
    assert other["snip"] != first["snip"]  # the seed picks the batches and the dropout masks


def test_batches_follow_the_seed(tiny_data):
    a, b, c = (draw_batches(tiny_data, batches=2, batch_size=8, seed=s) for s in (7, 7, 8))
    assert [len(x) for x, _ in a] == [8, 8]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb)
               for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], c[0][0])
    with pytest.raises(UsageError, match="32 samples holds 4 full batches of 8, not 5"):
        draw_batches(tiny_data, batches=5, batch_size=8, seed=0)


def test_positive_score_is_increasing_and_positive():
    values = [-math.inf, -1e300, -1e6, -52.6, -1.0, 0.0, 1e-9, 1.0, 3.04, 1e6, 1e300]
    mapped = [positive_score(v) for v in values]
    assert mapped[0] == 0.0 and all(m > 0 for m in mapped[1:])
    assert all(a < b for a, b in zip(mapped, mapped[1:], strict=False))
    assert positive_score(0.0) == 1.0 and positive_score(1e6) == pytest.approx(2e6)
    assert positive_score(-1e6) == pytest.approx(1 / 2e6) and math.isfinite(mapped[-1])


# -- the evaluator --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Dataset:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("zc") / "small.npz"
    np.savez(path, x_train=rng.normal(size=(60, 3, 8, 8)).astype(np.float32),
             y_train=np.arange(60) % 3)
    return load_dataset(f"npz:{path}", val_fraction=0.2)


@pytest.fixture(scope="module")
def space(small):
    return space_for_dataset("nasbench201", small, channels=4, cells_per_stage=1)


ARCH = {"node1.from0": "nor_conv_3x3", "node2.from0": "nor_conv_1x1",
        "node2.from1": "skip_connect", "node3.from0": "skip_connect",
        "node3.from1": "nor_conv_3x3", "node3.from2": "avg_pool_3x3"}
OPTIONS = {"batch_size": 16, "batches": 2}
REWARD = RewardConfig(target=1000.0, metric="params", accuracy_key="zc_score")


def _settings(options=OPTIONS, reward=REWARD) -> EvalSettings:
    return EvalSettings(evaluator="zero_cost", evaluator_options=dict(options), reward=reward,
                        train=TrainConfig(seed=5), latency=LatencyConfig(mode="skip"))


def test_evaluator_end_to_end(space, small):
    rec = evaluate_arch(space, ARCH, _settings(), dataset=small)
    assert rec["status"] == "complete" and rec["error"] is None
    assert "accuracy" not in rec  # a proxy is not an accuracy
    torch.manual_seed(5)  # the trial seed initialises the child, as evaluate_arch does
    model = space.build(space.validate(ARCH))
    expected = zero_cost_scores(model, small, seed=5, batch_size=16, batches=2)
    assert {k: rec[f"zc_{k}"] for k in PROXIES} == expected
    assert (rec["zc_params"], rec["zc_macs"]) == (rec["params"], rec["macs"])
    assert rec["zc_score_proxy"] == "nwot" and rec["zc_score"] == positive_score(rec["zc_nwot"])
    assert rec["reward"] == pytest.approx(rec["zc_score"] * (rec["params"] / 1000.0) ** -0.07)
    assert {f"zc_{k}_s" for k in PROXIES} | {"zc_data_s"} <= set(rec["timings"])
    json.dumps(rec, allow_nan=False)
    stored = {k: v for k, v in rec.items() if k.startswith("zc_")}
    assert metric_problem(stored) is None  # what the run folder checks on reading it back
    again = evaluate_arch(space, ARCH, _settings(), dataset=small)
    assert {k: v for k, v in again.items() if k.startswith("zc_")} == {
        k: v for k, v in rec.items() if k.startswith("zc_")}


def test_evaluator_scores_by_another_proxy(space, small):
    options = {**OPTIONS, "proxies": ["jacob_cov", "params"], "score": "jacob_cov"}
    rec = evaluate_arch(space, ARCH, _settings(options), dataset=small)
    assert set(k for k in rec if k.startswith("zc_")) == {
        "zc_jacob_cov", "zc_params", "zc_score", "zc_score_proxy"}
    assert rec["zc_jacob_cov"] <= -16  # each eigenvalue term is >= 1
    assert 0 < rec["zc_score"] == positive_score(rec["zc_jacob_cov"]) < 1 / 32


def test_stored_zero_cost_numbers_are_checked():
    assert number_problem("zc_score", -0.5) == "zc_score=-0.5: must be a finite number >= 0"
    assert number_problem("zc_score", math.inf) is not None
    assert number_problem("zc_macs", 1.5) == "zc_macs=1.5: must be a non-negative integer"
    assert number_problem("zc_nwot", -3.0) is None  # raw proxies may be negative


def test_degenerate_child_scores_zero_and_is_stored(space, small):
    arch = dict.fromkeys(ARCH, "none")  # the cells pass nothing: every code and gradient is 0
    rec = evaluate_arch(space, arch, _settings(), dataset=small)
    assert rec["status"] == "complete"
    assert rec["zc_nwot"] is None and rec["zc_jacob_cov"] is None  # -inf, stored as null
    assert rec["zc_score"] == 0.0 and rec["reward"] == 0.0
    json.dumps(rec, allow_nan=False)


@pytest.mark.parametrize(("options", "message"), [
    ({"proxies": ["nwot", "magic"]}, "evaluator.options.proxies='magic': allowed values"),
    ({"proxies": []}, "evaluator.options.proxies=[]: must be a non-empty list"),
    ({"proxies": "nwot"}, "evaluator.options.proxies='nwot': must be a non-empty list"),
    ({"proxies": ["snip", "snip"]}, "evaluator.options.proxies=['snip', 'snip']: names a"),
    ({"proxies": ["nwot"], "score": "snip"}, "evaluator.options.score='snip': not among"),
    ({"score": "accuracy"}, "evaluator.options.score='accuracy': allowed values"),
    ({"batches": 0}, "evaluator.options.batches=0: must be an integer >= 1"),
    ({"batch_size": 1}, "evaluator.options.batch_size=1: must be an integer >= 2"),
    ({"batch": 2}, "evaluator.options.batch: unknown key (did you mean 'batches'?)"),
])
def test_option_errors_are_one_line_naming_the_key(options, message):
    with pytest.raises(ConfigError) as err:
        ZeroCostOptions.from_dict(options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_default_score_and_unknown_option():
    assert ZeroCostOptions.from_dict({}).score == "nwot"
    assert ZeroCostOptions.from_dict({"proxies": ["snip", "synflow"]}).score == "snip"
    with pytest.raises(ConfigError, match="^evaluator.options.seed: not an option of evaluator"):
        check_evaluator("zero_cost", {"seed": 1})


def test_reward_must_read_zc_score(space, small):
    with pytest.raises(ConfigError) as err:
        evaluate_arch(space, ARCH, _settings(reward=RewardConfig(target=1.0)), dataset=small)
    assert str(err.value).startswith("reward.accuracy_key='accuracy': evaluator 'zero_cost' "
                                     "reports no accuracy") and "\n" not in str(err.value)


def _config(evaluator: dict, reward: dict):
    return parse_config({
        "name": "zc", "space": {"name": "nasbench201",
                                "options": {"channels": 4, "cells_per_stage": 1}},
        "controller": {"name": "random"}, "latency": {"mode": "skip"},
        "evaluator": {"name": "zero_cost", "dataset": "digits", **evaluator},
        "reward": {"preset": "hard", "target": 1e5, "metric": "params", **reward},
        "search": {"trials": 2}})


def test_search_config_checked_before_it_starts():
    exp = build_experiment(_config({"options": {"score": "synflow"}},
                                   {"accuracy_key": "zc_score"}))
    assert exp.settings.evaluator == "zero_cost"
    with pytest.raises(ConfigError, match="^reward.accuracy_key='accuracy'"):
        build_experiment(_config({}, {}))
    with pytest.raises(ConfigError, match=r"^evaluator.options.batch_size=1000: 2 batch\(es\)"):
        build_experiment(_config({"options": {"batch_size": 1000, "batches": 2}},
                                 {"accuracy_key": "zc_score"}))
