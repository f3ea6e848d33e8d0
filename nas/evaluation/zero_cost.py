"""Zero-cost proxies: scores of an untrained network from one minibatch (or from no data at all).

Each proxy is one function ``proxy(model, x, y=None, loss=cross_entropy) -> float`` written from its
paper's definition; it works on a deep copy of ``model`` (the caller's weights, gradients, mode and
BN statistics are left as they were) on the device of the batch ``x``:

- :func:`nwot`: the log-determinant of the kernel of binary ReLU codes (Mellor et al., ICML 2021).
- :func:`synflow`: the synaptic flow of the absolute-valued network (Tanaka et al., NeurIPS 2020).
- :func:`jacob_cov`: the spread of the input Jacobians' correlations (Mellor et al., v1).
- :func:`snip`: connection sensitivity summed over the weights (Lee et al., ICLR 2019).
- :func:`grad_norm`: the sum of the layers' weight-gradient norms (Abdelfattah et al., ICLR 2021).

*Weights* are the weight tensors of the linear and convolution layers (the connections that the
pruning papers score); biases and normalisation parameters are not scored. Data-dependent proxies
run the copy in training mode, batch normalisation on batch statistics, as the proxy papers compute
them on freshly built networks. ``params`` and ``macs`` come from :mod:`nas.evaluation.cost`.

:func:`zero_cost_scores` computes any of them for a model on a dataset: ``batches`` seeded batches
of the training split (the dataset's batch source with a seeded generator; each data-dependent proxy
is the mean of its per-batch values) and the proxies' own randomness (dropout) seeded, so the same
model gives the same scores. Higher is better for every proxy; NWOT and jacob_cov may be ``-inf``
(a singular kernel, an input the output does not depend on): the worst value.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from nas.errors import UsageError
from nas.evaluation.cost import count_macs, count_params

__all__ = ["PROXIES", "DATA_PROXIES", "nwot", "synflow", "jacob_cov", "snip", "grad_norm",
           "draw_batches", "compute_proxy", "zero_cost_scores", "positive_score", "scored_weights"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]

PROXIES = ("nwot", "synflow", "jacob_cov", "snip", "grad_norm", "params", "macs")
DATA_PROXIES = ("nwot", "jacob_cov", "snip", "grad_norm")
JACOB_COV_K = 1e-5  # Mellor et al. v1, section 3: k = 1e-5
RECTIFIERS = (nn.ReLU, nn.ReLU6)  # output > 0 exactly where the input is > 0
_CHUNK = 1 << 18  # ReLU units coded at a time (bounds NWOT's memory; counts stay < 2^24)


def _copy(model: nn.Module, x: torch.Tensor, *, train: bool) -> nn.Module:
    """A deep copy of ``model`` on ``x``'s device, in training or eval mode, without gradients."""
    net = copy.deepcopy(model).to(x.device)
    net.train(train)
    for p in net.parameters():
        p.grad = None
    return net


def scored_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weight tensors of ``model``'s linear and convolution layers, each once."""
    seen: dict[int, nn.Parameter] = {}
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.Linear | _ConvNd) and isinstance(weight, nn.Parameter):
            seen.setdefault(id(weight), weight)
    return list(seen.values())


def _sum_weights(net: nn.Module, term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 ) -> float:
    """``sum over scored weights w of term(w, dw)`` in float64 (a weight without a gradient,
    unused by the forward pass, adds 0)."""
    total = 0.0
    for w in scored_weights(net):
        if w.grad is not None:
            total += float(term(w.detach().double(), w.grad.detach().double()))
    return total


def nwot(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
         loss: LossFn | None = None) -> float:
    """NWOT: the log-determinant of the kernel of binary ReLU activation codes on one batch.

    Mellor et al., "Neural Architecture Search without Training", ICML 2021 (arXiv:2006.04647v2),
    section 3: each sample ``i`` gets the binary code ``c_i`` of which rectified linear units are
    active (input > 0), over every ReLU of the network (``N_A`` units); the kernel is
    ``K_H[i, j] = N_A - d_H(c_i, c_j)`` (the number of units on which the two codes agree) and the
    score is ``log |det K_H|``. ``y`` and ``loss`` are not used.

    Returns: the log-determinant; ``-inf`` when ``K_H`` is singular (e.g. two identical codes).
    Raises: UsageError when the model has no ``nn.ReLU``/``nn.ReLU6`` module.
    """
    net = _copy(model, x, train=True)
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)

    def code(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        active = output.detach().flatten(1) > 0  # the binary code of this ReLU's units
        for part in active.split(_CHUNK, dim=1):
            c = part.float()  # 0/1 sums below 2^24 are exact in float32
            on = c.sum(dim=1, keepdim=True)
            hamming = on + on.T - 2 * (c @ c.T)  # d_H(c_i, c_j): units where exactly one is on
            kernel.add_(part.shape[1] - hamming.double())  # N_A - d_H, summed over the ReLUs

    hooks = [m.register_forward_hook(code) for m in net.modules() if isinstance(m, RECTIFIERS)]
    if not hooks:
        raise UsageError("zero-cost proxy nwot: the model has no nn.ReLU or nn.ReLU6 module, so "
                         "it has no binary activation codes")
    with torch.no_grad():
        net(x)
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) > 0 else -math.inf


def _without_batchnorm(net: nn.Module) -> nn.Module:
    """``net`` with every batch-normalisation layer replaced by the identity."""
    if isinstance(net, _BatchNorm):
        return nn.Identity()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, _BatchNorm):
                setattr(module, name, nn.Identity())
    return net


def synflow(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
            loss: LossFn | None = None) -> float:
    """synflow: the synaptic saliency of the absolute-valued network on an all-ones input.

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic
    flow", NeurIPS 2020 (arXiv:2006.05467), equation 2; as a NAS proxy Abdelfattah et al.,
    "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (arXiv:2101.08134). Every parameter is
    replaced by its absolute value, one all-ones sample of ``x``'s shape goes through the network,
    ``R`` is the sum of its outputs, and the score is ``sum |theta * dR/dtheta|`` over the weights.

    Batch normalisation is removed (the identity), as Abdelfattah et al. compute synflow: the
    flow is defined for linear layers and rectifiers, and batch statistics of one constant sample
    carry nothing. The copy runs in eval mode (no dropout) and in double precision, so that the
    products of absolute weights of a deep network do not overflow. Only ``x``'s shape, dtype and
    device are used; ``y`` and ``loss`` are not.
    """
    net = _without_batchnorm(_copy(model, x, train=False)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    net(ones).sum().backward()
    return _sum_weights(net, lambda w, g: (w * g).abs().sum())


def jacob_cov(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
              loss: LossFn | None = None) -> float:
    """jacob_cov: how uncorrelated the input Jacobians of one batch are.

    Mellor et al., "Neural Architecture Search without Training", arXiv:2006.04647v1, section 3:
    ``J`` holds one row per sample, the gradient of the network's summed outputs with respect to
    that input (flattened); ``Sigma_J`` is the correlation matrix of the rows (each centred on its
    own mean), ``sigma_i`` its eigenvalues, and the score is
    ``-sum_i [log(sigma_i + k) + 1 / (sigma_i + k)]`` with ``k = 1e-5`` (at most ``-N``; the closer
    to it, the less correlated). The gradient is that of the whole batch's summed output, so in
    training mode batch normalisation couples the rows, as in the authors' computation.

    Returns: the score; ``-inf`` when a row is constant (its correlations are undefined: the
    output does not depend on that input). ``y`` and ``loss`` are not used.
    """
    net = _copy(model, x, train=True)
    inputs = x.detach().clone().requires_grad_(True)
    net(inputs).sum().backward()
    jac = inputs.grad.detach().flatten(1).double()
    centred = jac - jac.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        return -math.inf
    unit = centred / norms
    eig = torch.linalg.eigvalsh(unit @ unit.T)
    return float(-(torch.log(eig + JACOB_COV_K) + 1.0 / (eig + JACOB_COV_K)).sum())


def _loss_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                   loss: LossFn) -> nn.Module:
    """A training-mode copy of ``model`` holding the gradients of ``loss(model(x), y)``."""
    if y is None:
        raise UsageError("zero-cost proxies snip and grad_norm need the batch's labels y")
    net = _copy(model, x, train=True)
    loss(net(x), y).backward()
    return net


def snip(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
         loss: LossFn = F.cross_entropy) -> float:
    """snip: connection sensitivity ``sum |dL/dw * w|`` over the weights, on one batch.

    Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity", ICLR 2019
    (arXiv:1810.02340), equation 6: the sensitivity of connection ``j`` is
    ``|dL(c * w)/dc_j|`` at ``c = 1``, that is ``|dL/dw_j * w_j|``; as a NAS proxy (Abdelfattah et
    al., ICLR 2021) the unnormalised sensitivities are summed over every weight of the network.
    ``L = loss(model(x), y)`` (the search's training loss: cross-entropy).
    """
    net = _loss_backward(model, x, y, loss)
    return _sum_weights(net, lambda w, g: (g * w).abs().sum())


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
              loss: LossFn = F.cross_entropy) -> float:
    """grad_norm: the sum over layers of the Euclidean norm of the loss gradient, on one batch.

    Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021 (arXiv:2101.08134),
    section 3: the Euclidean norms of the gradients, summed. We follow the authors' computation:
    one L2 norm per layer (the gradient of that layer's weight tensor), summed over layers; not
    the single norm of all gradients together (which is the root of the sum of their squares).
    """
    net = _loss_backward(model, x, y, loss)
    return _sum_weights(net, lambda w, g: g.norm())


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "nwot": nwot, "synflow": synflow, "jacob_cov": jacob_cov, "snip": snip, "grad_norm": grad_norm}


def draw_batches(dataset: Any, *, batches: int, batch_size: int, seed: int,
                 device: str | torch.device = "cpu") -> list[Batch]:
    """The first ``batches`` batches of a seeded pass over the dataset's training split.

    Args:
        dataset: a :class:`nas.evaluation.data.Dataset` or any dataset with ``batch_source``.
        batches: how many batches.
        batch_size: samples per batch.
        seed: seeds the order (the same seed gives the same batches).
        device: where the batches go.

    Raises: UsageError when the training split holds fewer than ``batches`` full batches.
    """
    source = dataset.batch_source(torch.device(device))
    generator = torch.Generator().manual_seed(int(seed))
    with closing(source.train_epoch(batch_size, generator)) as stream:
        drawn = list(itertools.islice(stream, batches))
    if len(drawn) < batches:
        raise UsageError(f"zero-cost proxies: the training split of {source.num_train} samples "
                         f"holds {len(drawn)} full batches of {batch_size}, not {batches}")
    return drawn


def compute_proxy(name: str, model: nn.Module, batches: Sequence[Batch], *,
                  input_shape: Sequence[int], seed: int = 0, loss: LossFn = F.cross_entropy,
                  device: str | torch.device | None = None) -> float:
    """One proxy of ``model``: the mean over ``batches`` of a data-dependent proxy, synflow on one
    all-ones sample of ``input_shape``, or the count of ``params`` or ``macs``.

    The torch random state is forked and seeded with ``seed`` (dropout in training mode draws from
    it), so the value does not depend on what ran before and the caller's state is untouched.
    """
    if name == "params":
        return float(count_params(model))
    if name == "macs":
        return float(count_macs(model, tuple(input_shape)))
    if name not in _FUNCTIONS:
        raise UsageError(f"unknown zero-cost proxy {name!r}; known: {', '.join(PROXIES)}")
    if device is None:
        device = batches[0][0].device if batches else "cpu"
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(int(seed))
        if name == "synflow":
            return synflow(model, torch.zeros((1, *input_shape), device=device))
        if not batches:
            raise UsageError(f"zero-cost proxy {name!r} needs at least one batch")
        values = [_FUNCTIONS[name](model, x, y, loss) for x, y in batches]
    return math.fsum(values) / len(values)


def zero_cost_scores(model: nn.Module, dataset: Any, proxies: Iterable[str] = PROXIES, *,
                     seed: int = 0, batch_size: int = 64, batches: int = 1,
                     device: str | torch.device | None = None, loss: LossFn = F.cross_entropy,
                     timings: dict[str, float] | None = None) -> dict[str, float]:
    """Zero-cost proxies of a built (untrained) ``model`` on ``dataset``.

    Args:
        model: the network; left as it was (each proxy works on a copy).
        dataset: a :class:`nas.evaluation.data.Dataset` (or streamed images) that fits the model.
        proxies: names from :data:`PROXIES`.
        seed: seeds the batches and the proxies' own randomness.
        batch_size: samples per batch that data-dependent proxies average over.
        batches: how many such batches.
        device: where the proxies run (default: the model's device).
        loss: the loss of snip and grad_norm (default: cross-entropy).
        timings: if given, gets each proxy's seconds by name.

    Returns: ``{name: value}`` in the order asked (NWOT and jacob_cov may be ``-inf``).
    """
    names = list(proxies)
    for name in names:
        if name not in PROXIES:
            raise UsageError(f"unknown zero-cost proxy {name!r}; known: {', '.join(PROXIES)}")
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    data: list[Batch] = []
    if any(name in DATA_PROXIES for name in names):
        data = draw_batches(dataset, batches=batches, batch_size=batch_size, seed=seed,
                            device=device)
    out = {}
    for name in names:
        t0 = time.perf_counter()
        out[name] = compute_proxy(name, model, data, input_shape=dataset.input_shape, seed=seed,
                                  loss=loss, device=device)
        if timings is not None:
            timings[name] = time.perf_counter() - t0
    return out


def positive_score(value: float) -> float:
    """``v + sqrt(1 + v^2)`` (that is ``exp(asinh v)``): a strictly increasing map of the real line
    onto ``(0, inf)``, ``-inf`` to 0. Close to ``2v`` for large ``v`` and to ``1 / (2|v|)`` for
    large negative ``v``, so ratios of proxy values survive at both ends; computed without
    cancellation or overflow."""
    v = float(value)
    if math.isnan(v):
        return math.nan
    root = math.hypot(1.0, v)
    return v + root if v >= 0 else 1.0 / (root - v)
