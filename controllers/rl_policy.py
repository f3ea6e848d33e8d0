"""The autoregressive LSTM policy of NAS controllers and its policy-gradient losses.

Zoph & Le (arXiv:1611.01578) and NASNet (Zoph et al., arXiv:1707.07012) generate an architecture
one decision at a time with an LSTM: at step ``t`` the cell reads the embedding of the token
chosen at step ``t - 1`` (a learned start token at ``t = 0``) and a per-decision softmax head picks
the next token. MnasNet (arXiv:1807.11626, section 4) uses the same controller. The policy knows
only the number of options of each decision, so it serves every space.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LSTMPolicy", "ppo_loss", "reinforce_loss"]


class LSTMPolicy(nn.Module):
    """One LSTM cell unrolled over the decisions, one softmax head per decision.

    Args:
        sizes: number of options of each decision, in space order.
        hidden_size: LSTM width (also the token embedding width).
    """

    def __init__(self, sizes: Sequence[int], hidden_size: int) -> None:
        super().__init__()
        self.sizes = [int(n) for n in sizes]
        offsets, total = [], 0
        for n in self.sizes:
            offsets.append(total)
            total += n
        self.offsets = offsets
        self.hidden_size = hidden_size
        self.embed = nn.Embedding(total + 1, hidden_size)  # row 0 is the start token
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, total)  # decision t uses rows offsets[t]:+sizes[t]

    def reset_parameters(self, init_range: float, generator: torch.Generator) -> None:
        """Every weight uniform in ``[-init_range, init_range]`` (NASNet appendix A)."""
        with torch.no_grad():
            for param in self.parameters():
                param.uniform_(-init_range, init_range, generator=generator)

    def _logits(self, h: torch.Tensor, t: int) -> torch.Tensor:
        lo, n = self.offsets[t], self.sizes[t]
        return F.linear(h, self.head.weight[lo : lo + n], self.head.bias[lo : lo + n])

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> tuple[list[int], list[float]]:
        """One architecture: the chosen option index and its log-probability, per decision."""
        h = torch.zeros(1, self.hidden_size)
        c = torch.zeros(1, self.hidden_size)
        x = self.embed.weight[:1]
        tokens: list[int] = []
        logps: list[float] = []
        for t in range(len(self.sizes)):
            h, c = self.cell(x, (h, c))
            logp = F.log_softmax(self._logits(h, t), dim=-1)
            k = int(torch.multinomial(logp.exp(), 1, generator=generator))
            tokens.append(k)
            logps.append(float(logp[0, k]))
            x = self.embed.weight[1 + self.offsets[t] + k].unsqueeze(0)
        return tokens, logps

    def evaluate(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities and entropies (both ``B x T``) of a batch of token sequences."""
        batch = tokens.shape[0]
        h = torch.zeros(batch, self.hidden_size)
        c = torch.zeros(batch, self.hidden_size)
        x = self.embed.weight[:1].expand(batch, -1)
        logps, entropies = [], []
        for t in range(len(self.sizes)):
            h, c = self.cell(x, (h, c))
            logp = F.log_softmax(self._logits(h, t), dim=-1)
            logps.append(logp.gather(1, tokens[:, t : t + 1]).squeeze(1))
            entropies.append(-(logp.exp() * logp).sum(-1))
            x = self.embed(1 + self.offsets[t] + tokens[:, t])
        return torch.stack(logps, 1), torch.stack(entropies, 1)


def ppo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantage: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip: float,
    entropy_weight: float,
) -> torch.Tensor:
    """PPO's clipped surrogate (Schulman et al., arXiv:1707.06347, eq. 7) with an entropy bonus.

    Every decision is one action of an episode whose return is the child's reward (no discount),
    so all decisions of a child share its advantage and each has its own probability ratio.
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantage.unsqueeze(1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    return -surrogate.mean() - entropy_weight * entropy.mean()


def reinforce_loss(
    logp: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor, *, entropy_weight: float
) -> torch.Tensor:
    """REINFORCE with a baseline (Williams 1992), as in Zoph & Le (arXiv:1611.01578, eq. 2)."""
    return -(logp.sum(1) * advantage).mean() - entropy_weight * entropy.mean()
