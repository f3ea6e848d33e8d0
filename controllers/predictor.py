"""A small ensemble of MLP regressors: the performance predictor of model-based controllers.

BANANAS (White, Neiswanger & Savani, arXiv:1910.11858) predicts a child's accuracy from an
encoding of its architecture with an ensemble of feed-forward networks that differ only in their
random initialisation; the spread of the members' predictions stands in for the predictor's
uncertainty in the acquisition function. The members are trained here as one batched network
(every weight carries a leading member dimension), full batch with Adam, from scratch at every fit
with a generator the caller seeds, so a fit is a pure function of the data and the seed: a
controller that restores its data and its RNG refits the same ensemble without saving weights.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["MLPEnsemble"]


class MLPEnsemble:
    """``members`` MLPs of ``layers`` hidden layers of ``width`` ReLU units, trained together.

    Args:
        members: ensemble size (>= 2 for a spread).
        width: hidden units per layer.
        layers: hidden layers (>= 1).
        epochs: full-batch Adam steps per fit.
        lr: Adam learning rate.
        weight_decay: L2 penalty (AdamW-style decoupled decay).
        bootstrap: each member weighs the rows by its own Exp(1) draws (the Bayesian bootstrap,
            Rubin 1981), times the caller's weights, so members differ in the data they saw as
            well as in their initialisation: a pattern that only a few rows support is fitted
            by some members and not others, and the ensemble's spread shows it.
    """

    def __init__(self, *, members: int = 5, width: int = 32, layers: int = 2, epochs: int = 200,
                 lr: float = 0.01, weight_decay: float = 1e-4, bootstrap: bool = False) -> None:
        self.members, self.width, self.layers = members, width, layers
        self.bootstrap = bootstrap
        self.epochs, self.lr, self.weight_decay = epochs, lr, weight_decay
        self._params: list[torch.Tensor] = []
        self._mean, self._scale = 0.0, 1.0

    def _init(self, n_in: int, gen: torch.Generator) -> list[torch.Tensor]:
        sizes = [n_in] + [self.width] * self.layers + [1]
        params = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / np.sqrt(a)  # PyTorch's default Linear initialisation range
            w = (torch.rand(self.members, a, b, generator=gen) * 2 - 1) * bound
            bias = (torch.rand(self.members, 1, b, generator=gen) * 2 - 1) * bound
            params += [w.requires_grad_(), bias.requires_grad_()]
        return params

    def _forward(self, x: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.members, -1, -1)
        for i in range(0, len(params), 2):
            h = torch.baddbmm(params[i + 1], h, params[i])
            if i + 2 < len(params):
                h = torch.relu(h)
        return h.squeeze(-1)  # members x N

    def fit(self, x: np.ndarray, y: np.ndarray, seed: int,
            weights: np.ndarray | None = None) -> MLPEnsemble:
        """Fit every member on ``(x, y)`` (targets standardised internally); ``weights``: one
        non-negative weight per row in the squared error (default: all equal); with
        ``bootstrap`` each member's row weights are these times its own Exp(1) draws (from the
        seeded generator, so a fit stays a pure function of the data and the seed)."""
        gen = torch.Generator().manual_seed(int(seed))
        y = np.asarray(y, dtype=np.float64)
        self._mean = float(y.mean())
        self._scale = float(y.std()) or 1.0
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
        yt = torch.as_tensor(((y - self._mean) / self._scale).astype(np.float32))
        params = self._init(xt.shape[1], gen)
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        wt = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            wt = torch.as_tensor((w / max(w.mean(), 1e-12)).astype(np.float32))
        if self.bootstrap:  # Bayesian bootstrap: each member its own Exp(1) row weights
            boot = -torch.log(1.0 - torch.rand(self.members, len(y), generator=gen))
            boot = boot if wt is None else boot * wt
            wt = boot / boot.mean(1, keepdim=True).clamp_min(1e-12)
        for _ in range(self.epochs):
            opt.zero_grad(set_to_none=True)
            err = (self._forward(xt, params) - yt) ** 2
            loss = err.mean() if wt is None else (err * wt).mean()
            loss.backward()
            opt.step()
        self._params = [p.detach() for p in params]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions of every member, ``members x N``, in the units of the fitted targets."""
        if not self._params:
            raise RuntimeError("MLPEnsemble.predict before fit")
        with torch.no_grad():
            out = self._forward(torch.as_tensor(np.asarray(x, dtype=np.float32)), self._params)
        return out.numpy().astype(np.float64) * self._scale + self._mean
