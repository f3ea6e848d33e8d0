"""The MnasNet / NASNet reinforcement-learning controller.

MnasNet (Tan et al., arXiv:1807.11626, section 4) searches with the controller of NASNet (Zoph et
al., arXiv:1707.07012): an LSTM emits one token per decision (:mod:`controllers.rl_policy`) and is
trained with Proximal Policy Optimization (Schulman et al., arXiv:1707.06347) to maximize the
expected reward of its children. Zoph & Le (arXiv:1611.01578) trained the same kind of policy with
REINFORCE, available here as ``algorithm="reinforce"``.

Rewards are gathered in tell order into batches of ``batch_size`` children. Each full batch gives
advantages ``A = R - b`` against an exponential moving average ``b`` of earlier rewards, then
``ppo_epochs`` passes of the clipped objective over the batch (one gradient step for REINFORCE),
with Adam. The log-probabilities of the policy that sampled each child are kept with the proposal,
so children told late, after updates, still get the right PPO ratio.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import torch

from controllers._threads import one_thread
from controllers.rl_policy import LSTMPolicy, ppo_loss, reinforce_loss
from nas.errors import UsageError
from nas.registry import register_controller
from nas.search.controller import (
    Controller,
    Proposal,
    check_bool,
    check_choice,
    check_int,
    check_number,
)
from nas.search.warm import MIN_AGREEMENT_N, ORIGIN, SourceModel, agreement, normal_scores, trust
from nas.space import Arch, Space

__all__ = ["RLController"]

log = logging.getLogger(__name__)


@register_controller("rl")
class RLController(Controller):
    """LSTM policy trained with PPO (default) or REINFORCE.

    Defaults and their sources:

    * ``hidden_size=100``, ``init_range=0.1``, ``baseline_decay=0.95``: NASNet
      (arXiv:1707.07012, appendix A), whose controller MnasNet reuses.
    * ``entropy_weight=0.05`` with ``normalize=True`` (advantages in units of the rewards' moving
      standard deviation) and ``learn_repeats=False``: NASNet's ``1e-5`` on raw rewards collapsed
      the policy onto 4-5 architectures per 100 children after ~150 children on NAS-Bench-201;
      0.05 was the best of {0.02, 0.05, 0.1} at 100-300 children
      (``benchmarks/controller_sweep.py``; docs/reference/controllers.md has the figures).
    * ``clip=0.2``: PPO (arXiv:1707.06347, section 6.1, the best of the values tried).
    * ``ppo_epochs=3``: PPO's Atari setting (arXiv:1707.06347, table 5; 10 for MuJoCo).
    * ``lr=0.01``, ``batch_size=10``: NASNet's ``lr=3.5e-4`` suits its 20,000 children gathered from
      hundreds of workers and barely moves the policy in a few hundred children. 0.01 is the
      REINFORCE rate of the NATS-Bench/NAS-Bench-201 baseline (Dong et al., arXiv:2009.00437)
      and, with batches of 10, lets the policy learn within 100 children
      (``benchmarks/controllers_bench.py``).
      Pass ``lr=3.5e-4`` for the paper's setting on large budgets.

    Args:
        space: the search space.
        seed: seeds the numpy generator, from which the torch generator is seeded.
        algorithm: ``"ppo"`` (MnasNet) or ``"reinforce"`` (Zoph & Le).
        hidden_size: LSTM and embedding width (>= 1).
        lr: Adam learning rate (> 0).
        batch_size: children per policy update (>= 1).
        ppo_epochs: passes over each batch for PPO (>= 1; REINFORCE always does one).
        clip: PPO clipping range epsilon (> 0 and < 1).
        entropy_weight: weight of the entropy bonus (>= 0).
        baseline_decay: decay of the moving-average reward baseline (0 <= decay < 1).
        init_range: weights start uniform in ``[-init_range, init_range]`` (> 0).
        failure_reward: reward given to failed children; ``None`` (default) leaves them out of
            the batches entirely.
        normalize: divide advantages by a moving standard deviation of the rewards (same
            decay as the baseline), so a step's size does not depend on the reward's unit
            (percent or fraction) and the policy does not collapse onto its first good children.
        resample: draws from the policy per ask that may be spent to find an architecture not
            evaluated or outstanding yet (>= 0; the last draw is proposed regardless).
        learn_repeats: learn from results told again for an architecture already told (a search
            answering repeats from its records). Off by default: the policy learns from each
            child once, so a found optimum told again and again cannot collapse it; turn it on
            when repeats are real re-evaluations under noise (``search.dedup: false``).
        warm_steps: with warm-start sources, REINFORCE steps of pre-training on them (>= 0;
            default 20).

    **Warm start.** Before the first ask the policy is pre-trained on the sources' records:
    ``warm_steps`` REINFORCE steps (with this controller's optimizer, learning rate and entropy
    bonus) whose advantages are each record's normal score in its source (its rank, so the
    source's metric and unit do not matter) times the source's weight. Then, for two batches
    (at least 10 results), the pre-trained policy and the cold start's policy (its initial
    weights, frozen) take turns; the pre-trained policy's proposals are marked
    ``origin: warm-start``. The results judge the sources: the pre-trained policy is kept only
    when some source's trust (:func:`nas.search.warm.trust`) on the cold policy's children is
    positive (a sample the sources did not choose: on the pre-trained policy's own children,
    all from the sources' favourite region, even a useful source ranks weakly) *and* the
    pre-trained policy's children rank above the cold policy's (Mann-Whitney U, one-sided,
    beyond one standard deviation). Otherwise the policy, its optimizer and its baseline start
    again from the cold start's weights. The judging children become the first batches of the
    policy kept: all of them (re-scored under it) for the pre-trained policy; for the cold
    one only its own children, which it sampled exactly as a cold start would have, so a
    source that carries no information costs the pre-trained policy's half of two batches
    and nothing else. (A policy pre-trained on such a source is narrow: kept on a chance
    agreement, the earlier sign test's verdict in half the seeds, it cost 2.0 points of
    best@100 on NAS-Bench-201 CIFAR-100, 30 seeds.)
    """

    def __init__(
        self,
        space: Space,
        *,
        seed: int | None = None,
        algorithm: str = "ppo",
        hidden_size: int = 100,
        lr: float = 0.01,
        batch_size: int = 10,
        ppo_epochs: int = 3,
        clip: float = 0.2,
        entropy_weight: float = 0.05,
        baseline_decay: float = 0.95,
        init_range: float = 0.1,
        failure_reward: float | None = None,
        normalize: bool = True,
        resample: int = 10,
        learn_repeats: bool = False,
        warm_steps: int = 20,
    ) -> None:
        o = "rl option "
        options = {
            "algorithm": check_choice(o + "algorithm", algorithm, ("ppo", "reinforce")),
            "hidden_size": check_int(o + "hidden_size", hidden_size, minimum=1),
            "lr": check_number(o + "lr", lr, minimum=0.0, strict=True),
            "batch_size": check_int(o + "batch_size", batch_size, minimum=1),
            "ppo_epochs": check_int(o + "ppo_epochs", ppo_epochs, minimum=1),
            "clip": check_number(o + "clip", clip, minimum=0.0, maximum=0.999, strict=True),
            "entropy_weight": check_number(o + "entropy_weight", entropy_weight, minimum=0.0),
            "baseline_decay": check_number(o + "baseline_decay", baseline_decay, maximum=0.999),
            "init_range": check_number(o + "init_range", init_range, minimum=0.0, strict=True),
            "failure_reward": None if failure_reward is None
            else check_number(o + "failure_reward", failure_reward, minimum=None),
            "normalize": check_bool(o + "normalize", normalize),
            "resample": check_int(o + "resample", resample, minimum=0),
            "learn_repeats": check_bool(o + "learn_repeats", learn_repeats),
            "warm_steps": check_int(o + "warm_steps", warm_steps, minimum=0),
        }
        super().__init__(space, seed=seed, options=options)
        self.hp = options
        self._init_learner()

    def _init_learner(self) -> None:
        """A fresh policy, optimizer and baseline (seeded from the controller's generator)."""
        self.generator = torch.Generator().manual_seed(int(self.rng.integers(2**63 - 1)))
        sizes = [len(c) for c in self.space.choices().values()]
        self.policy = LSTMPolicy(sizes, self.hp["hidden_size"])
        self.policy.reset_parameters(self.hp["init_range"], self.generator)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.hp["lr"])
        self.baseline: float | None = None
        self.reward_var: float | None = None  # moving variance around the baseline
        self._batch: list[tuple[list[int], list[float], float]] = []
        self.num_updates = 0
        self._seen: set[tuple[int, ...]] = set()  # architectures told so far
        self._cold_policy = {k: v.clone() for k, v in self.policy.state_dict().items()}
        self._cold_sampler: LSTMPolicy | None = None  # the cold policy, frozen, while judging
        self._warm_judged = False  # sources judged after two batches (warm start)
        self.warm_kept: bool | None = None  # the verdict: pre-trained policy kept
        self._arms_made = 0  # proposals made while judging (even: warm policy, odd: cold)
        # results until judged: (indices, value, arm)
        self._told_values: list[tuple[tuple[int, ...], float, str]] = []

    # -- warm start ----------------------------------------------------------------------------
    def _warm_start(self) -> None:
        tokens, advantages = [], []
        for source in self._warm:
            if source.weight <= 0:
                continue
            tokens += [list(r.indices) for r in source.records]
            advantages += list(normal_scores([r.value for r in source.records]) * source.weight)
        if not tokens or not self.hp["warm_steps"]:
            self._warm_judged = True
            return
        batch = torch.tensor(tokens, dtype=torch.long)
        adv = torch.tensor(advantages, dtype=torch.float32)
        with one_thread():
            for _ in range(self.hp["warm_steps"]):
                logp, entropy = self.policy.evaluate(batch)
                loss = reinforce_loss(logp, adv, entropy, entropy_weight=self.hp["entropy_weight"])
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()

    def _keeps_warm_policy(self) -> bool:
        """Whether the judging results favour the pre-trained policy: some source's trust
        (:func:`nas.search.warm.trust`) on the cold policy's children (a sample the sources did
        not choose) is positive, and the pre-trained policy's children rank above the cold
        policy's (Mann-Whitney U, one-sided, beyond one standard deviation)."""
        from scipy.stats import rankdata

        warm = [(i, v) for i, v, arm in self._told_values if arm == "warm"]
        cold = [(i, v) for i, v, arm in self._told_values if arm == "cold"]
        if len(warm) < 2 or len(cold) < MIN_AGREEMENT_N:
            return False
        rows, values = [i for i, _ in cold], [v for _, v in cold]
        trusts = [trust(agreement(SourceModel(s).predict(rows), values), len(rows), s.weight)
                  for s in self._warm]
        if not any(t > 0 for t in trusts):
            return False
        ranks = rankdata([v for _, v in warm] + values)
        n1, n2 = len(warm), len(cold)
        u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2
        return (u - n1 * n2 / 2) / np.sqrt(n1 * n2 * (n1 + n2 + 1) / 12) > 1.0

    def _judge_sources(self) -> None:
        """After two batches: keep the pre-trained policy if the results favour it
        (:meth:`_keeps_warm_policy`), else back to the cold start's. The judging children
        become the first batches of the policy kept: all of them, re-scored under it, for the
        pre-trained policy; the cold policy's own (on-policy) only, for the cold one."""
        self._warm_judged = True
        self._cold_sampler = None
        self.warm_kept = self._keeps_warm_policy()
        if not self.warm_kept:
            log.info("rl: the warm-start sources do not pay on the first results; cold policy")
            self.policy.load_state_dict(self._cold_policy)
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.hp["lr"])
            self.baseline = self.reward_var = None
        held = [b for b in self._batch]
        arms = [arm for _, _, arm in self._told_values]
        if not self.warm_kept:  # the cold policy learns from its own children only (on-policy)
            held = [b for b, arm in zip(held, arms, strict=True) if arm == "cold"]
        self._told_values, self._batch = [], []
        for tokens, _, value in held:
            self._batch.append((tokens, self._logp_of(tokens), value))
            if len(self._batch) >= self.hp["batch_size"]:
                self._update()

    # -- ask / tell --------------------------------------------------------------------------
    def _propose(self) -> tuple[Arch, dict[str, Any]]:
        taken = self._seen | {arch.indices for arch, _ in self._outstanding.values()}
        policy, extra = self.policy, {}
        if self._warm and not self._warm_judged:  # judging: the two policies take turns
            arm = "cold" if self._arms_made % 2 else "warm"
            self._arms_made += 1
            extra["arm"] = arm
            if arm == "warm":
                extra["origin"] = ORIGIN
            else:
                if self._cold_sampler is None:
                    self._cold_sampler = LSTMPolicy(self.policy.sizes, self.hp["hidden_size"])
                    self._cold_sampler.load_state_dict(self._cold_policy)
                policy = self._cold_sampler
        with one_thread():
            for _ in range(self.hp["resample"] + 1):  # prefer a child not evaluated yet
                tokens, logps = policy.sample(self.generator)
                if tuple(tokens) not in taken:
                    break
        return self.space.decode(tokens), {"logp": logps, **extra}

    def _logp_of(self, tokens: list[int]) -> list[float]:
        with one_thread(), torch.no_grad():
            logp, _ = self.policy.evaluate(torch.tensor([tokens], dtype=torch.long))
        return [float(v) for v in logp[0]]

    def _replay_extra(self, arch: Arch) -> dict[str, Any]:
        """Log-probabilities of ``arch`` under the current policy (as if it had sampled it)."""
        return {"logp": self._logp_of(list(arch.indices))}

    def _observe(self, proposal: Proposal, value: Any, extra: dict[str, Any]) -> None:
        repeat = proposal.arch.indices in self._seen
        self._seen.add(proposal.arch.indices)
        if repeat and not self.hp["learn_repeats"]:
            return  # a repeated child adds no new child: reinforcing it only narrows the policy
        if value is None:
            value = self.hp["failure_reward"]
            if value is None:
                return
        self._batch.append((list(proposal.arch.indices), list(extra["logp"]), float(value)))
        if self._warm and not self._warm_judged:
            self._told_values.append((proposal.arch.indices, float(value),
                                      str(extra.get("arm", "warm"))))
            if len(self._told_values) >= max(2 * self.hp["batch_size"], 2 * MIN_AGREEMENT_N):
                with one_thread():
                    self._judge_sources()
            return  # while judging, the batches wait for the verdict
        if len(self._batch) >= self.hp["batch_size"]:
            with one_thread():
                self._update()

    def _update(self) -> None:
        tokens = torch.tensor([b[0] for b in self._batch], dtype=torch.long)
        old_logp = torch.tensor([b[1] for b in self._batch], dtype=torch.float32)
        rewards = np.array([b[2] for b in self._batch])
        base = float(rewards.mean()) if self.baseline is None else self.baseline
        var = float(rewards.var()) if self.reward_var is None else self.reward_var
        scale = np.sqrt(var) + 1e-8 if self.hp["normalize"] else 1.0
        advantage = torch.tensor((rewards - base) / scale, dtype=torch.float32)
        epochs = self.hp["ppo_epochs"] if self.hp["algorithm"] == "ppo" else 1
        for _ in range(epochs):
            logp, entropy = self.policy.evaluate(tokens)
            if self.hp["algorithm"] == "ppo":
                loss = ppo_loss(logp, old_logp, advantage, entropy, clip=self.hp["clip"],
                                entropy_weight=self.hp["entropy_weight"])
            else:
                loss = reinforce_loss(logp, advantage, entropy,
                                      entropy_weight=self.hp["entropy_weight"])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        decay = self.hp["baseline_decay"]
        for reward in rewards:
            var = decay * var + (1.0 - decay) * (float(reward) - base) ** 2
            base = decay * base + (1.0 - decay) * float(reward)
        self.baseline, self.reward_var = base, var
        self._batch = []
        self.num_updates += 1
        log.debug("rl update %d: loss %.4g, baseline %.4g", self.num_updates,
                  float(loss.detach()), base)

    # -- state -------------------------------------------------------------------------------
    def _algorithm_state(self) -> dict[str, Any]:
        opt = self.optimizer.state_dict()
        return {
            "torch_rng": self.generator.get_state(),
            "policy": dict(self.policy.state_dict()),
            "optimizer": {
                "state": {str(k): v for k, v in opt["state"].items()},
                "param_groups": json.loads(json.dumps(opt["param_groups"])),  # tuples -> lists
            },
            "baseline": self.baseline,
            "reward_var": self.reward_var,
            "batch": [{"indices": t, "logp": lp, "reward": r} for t, lp, r in self._batch],
            "num_updates": self.num_updates,
            "seen": [list(idx) for idx in sorted(self._seen)],
            "warm_judged": self._warm_judged,
            "told_values": [{"indices": list(i), "value": v, "arm": a}
                            for i, v, a in self._told_values],
            "arms_made": self._arms_made,
            "warm_kept": self.warm_kept,
        }

    def _load_algorithm_state(self, state: dict[str, Any]) -> None:
        opt = state["optimizer"]
        try:
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(
                {"state": {int(k): v for k, v in opt["state"].items()},
                 "param_groups": opt["param_groups"]}
            )
            self.generator.set_state(state["torch_rng"])
        except RuntimeError as exc:
            raise UsageError(f"rl: controller state does not fit this policy ({exc})") from None
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.reward_var = None if state["reward_var"] is None else float(state["reward_var"])
        self._batch = [
            ([int(i) for i in b["indices"]], [float(x) for x in b["logp"]], float(b["reward"]))
            for b in state["batch"]
        ]
        self.num_updates = int(state["num_updates"])
        self._seen = {tuple(int(i) for i in idx) for idx in state["seen"]}
        self._warm_judged = bool(state.get("warm_judged", False))
        self._told_values = [(tuple(int(i) for i in t["indices"]), float(t["value"]),
                              str(t.get("arm", "warm"))) for t in state.get("told_values", [])]
        self._arms_made = int(state.get("arms_made", 0))
        kept = state.get("warm_kept")
        self.warm_kept = None if kept is None else bool(kept)
        self._cold_sampler = None
