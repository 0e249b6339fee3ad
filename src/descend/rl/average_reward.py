"""Average-reward policy gradients with variance reduction: the epoch-based estimator, IGT and Hessian-based VR-PG.

Paper: Swetha Ganesh, Washim Uddin Mondal, Vaneet Aggarwal (2024/2025), "Order-Optimal Regret with Novel Policy
Gradient Approaches in Infinite-Horizon Average Reward MDPs" (arXiv:2404.02108; v1 "Variance-Reduced Policy
Gradient Approaches for Infinite Horizon Average Reward Markov Decision Processes"), AISTATS 2025.  The
gradient estimator is the epoch-based one of Bai, Bedi, Agarwal, Koppel, Aggarwal (2024), "Regret Analysis of
Policy Gradient Algorithm for Infinite Horizon Average Reward MDPs" (AAAI 2024).

The agent follows ONE trajectory of an ergodic MDP, split into epochs of ``H`` steps; within epoch ``k`` the
policy is fixed.  Advantage estimate at a visited pair (Bai et al., Algorithm 2)::

    scan the epoch for visits of s: at a visit τ_j (starting no later than H − N), y_j = Σ_{t=τ_j}^{τ_j+N−1} r_t,
    then skip 2N steps;   V̂(s) = mean_j y_j,   Q̂(s,a) = mean_j y_j 1[a_{τ_j} = a] / π(a|s)
    Â(s,a) = Q̂(s,a) − V̂(s)         (0 when s has no visit);     ω_k = (1/H) Σ_{t in epoch k} Â(s_t,a_t) ∇log π(a_t|s_t)

IGT-based VR-PG (one epoch per iteration)::

    θ̃_k = θ_k + ((1−η_k)/η_k)(θ_k − θ_{k−1});  epoch k under π_{θ̃_k};  d_k = (1−η_k) d_{k−1} + η_k ω_k(θ̃_k)
    θ_{k+1} = θ_k + γ_k d_k/‖d_k‖

Hessian-based VR-PG (two epochs per iteration: one under ``θ_k`` for ``ω``, one under ``θ̂_k`` for the correction)::

    q_k ~ U[0,1];  θ̂_k = q_k θ_k + (1−q_k) θ_{k−1};   v_k = Ĥ_k (θ_k − θ_{k−1})
    d_k = (1−η_k)(d_{k−1} + v_k) + η_k ω_k(θ_k);      θ_{k+1} = θ_k + γ_k d_k/‖d_k‖

**Deviations (read this).** Only the abstract of Ganesh et al. could be read offline, so (i) the Hessian estimator
``Ĥ_k`` is *ours*: the Hessian at ``θ̂_k`` of the frozen-advantage surrogate ``L(θ) = (1/H) Σ_t Â_t π_θ(a_t|s_t) /
π_θ̂(a_t|s_t)`` on the ``θ̂_k`` epoch, i.e. ``(1/H) Σ_t Â_t (∇²log π + ∇log π ∇log πᵀ)`` applied to the vector by one
Hessian-vector product (:class:`descend.curvature.ClosureHVPOperator`).  It omits the derivatives of the advantages
and of the stationary distribution, so it is a *biased* estimate of ``∇²J`` (the paper builds unbiased estimators
of an auxiliary ``J̄``); (ii) the normalized steps and the schedules ``η_k = (2/(k+2))^{4/5}`` (IGT), ``2/(k+2)``
(Hessian), ``γ_k = γ_0 · 2/(k+2)`` are carried over from the discounted algorithms of Fatkhullin et al. 2023 (forms
checked against their released code), not read from this paper: of its text only the abstract and the first section
(arXiv HTML v1, up to §1.1 "Overview") are stored offline, which state the regret orders (v1: Õ(T^{3/5}) IGT, Õ(√T)
Hessian; AISTATS version: Õ(T^{2/3}), Õ(√T)) but no algorithm block, schedule or theorem constants — searched again
for this revision, so the schedules remain unverified; (iii) ``N`` and ``H`` are arguments (the theory sets them from
mixing and hitting times).  ``lr`` scales the step: ``descend rl run --lr γ_0`` gives ``γ_k = γ_0 · 2/(k+2)``.

Measured (``tests/rl/test_average_reward.py``; 5 states, 2 actions, H = 200, N = 10, seeds 0–2): regret log–log slope
over ``[10³, 10⁵]`` IGT 0.792 / 0.829 / 0.743 at ``γ_0 = 1`` (claim ≤ 0.75 not reproduced); Hessian-based
0.676 / 1.003 / 0.909 at ``γ_0 = 1``, 0.642 / 0.769 / 0.748 at ``γ_0 = 2`` (mean 0.720).

Checked against: the exact average reward of a random ergodic tabular MDP (stationary distribution by a linear
solve); the claim tested is the cumulative-regret log–log slope over ``T ∈ [10³, 10⁵]`` (``tests/rl/``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from descend._validate import check_int
from descend.curvature import ClosureHVPOperator

from .estimators import FlatPolicy
from .policies import SoftmaxPolicy
from .schedules import MOMENTUM_HARPG, MOMENTUM_IGT, STEP_2_OVER_T, Schedule, as_schedule
from .tabular import ContinuingSampler, TabularMDP

__all__ = ["AverageRewardHessianPG", "AverageRewardIGT", "AverageRewardPG", "epoch_advantages"]


def epoch_advantages(states: Tensor, actions: Tensor, rewards: Tensor, pi: Tensor, N: int) -> Tensor:
    """Bai et al.'s advantage estimate ``Â(s_t, a_t)`` for every step of one epoch (see the module docstring).

    ``pi`` is the epoch policy's table ``π(a|s)``, ``(S, A)``; returns ``(H,)`` float64.
    """
    H = int(states.shape[0])
    S, A = pi.shape
    st, ac = states.tolist(), actions.tolist()
    csum = torch.cat([torch.zeros(1, dtype=torch.float64), rewards.to(torch.float64).cumsum(0)]).tolist()
    ysum = [[0.0] * A for _ in range(S)]
    vsum = [0.0] * S
    visits = [0] * S
    next_ok = [0] * S           # per state: first time a new sub-trajectory may start (2N after the last one)
    for tau in range(0, H - N + 1):
        s = st[tau]
        if tau >= next_ok[s]:
            y = csum[tau + N] - csum[tau]
            visits[s] += 1
            vsum[s] += y
            ysum[s][ac[tau]] += y
            next_ok[s] = tau + 2 * N
    p = pi.tolist()
    adv = [0.0] * H
    for t in range(H):
        s, a = st[t], ac[t]
        if visits[s]:
            adv[t] = ysum[s][a] / (p[s][a] * visits[s]) - vsum[s] / visits[s]
    return torch.tensor(adv, dtype=torch.float64)


class AverageRewardPG:
    """Base: one continuing trajectory of a tabular MDP, split into epochs; exact regret bookkeeping.

    ``regret`` accumulates ``H · (ρ* − ρ(θ_epoch))`` per epoch with the exact average reward ``ρ`` (the expected
    regret of the steps played, without the sampling noise of the rewards).
    """

    name = "avg_pg"
    epochs_per_iteration = 1

    def __init__(self, policy: SoftmaxPolicy, mdp: TabularMDP, *, epoch_length: int = 200, window: int = 10,
                 lr: float | Schedule = STEP_2_OVER_T, momentum: float | Schedule = MOMENTUM_IGT,
                 seed: int = 0) -> None:
        self.H = check_int("epoch_length", epoch_length, 2)
        self.N = check_int("window", window, 1, self.H)
        check_int("seed", seed, 0)
        self.lr, self.momentum = as_schedule("lr", lr), as_schedule("momentum", momentum)
        self.policy, self.mdp = policy, mdp
        self.flat = FlatPolicy(policy)
        self.theta = self.flat.get()
        self.prev = self.theta.clone()
        self.d = torch.zeros_like(self.theta)
        self.generator = torch.Generator().manual_seed(seed)
        self.sampler = ContinuingSampler(mdp, self.generator)
        self.optimum = mdp.optimal_average_reward()
        self.t = 0
        self.steps = 0
        self.regret = 0.0

    def _epoch(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Play one epoch under ``θ``: states, actions, advantages; and the log-probs (differentiable)."""
        self.flat.set(theta)
        with torch.no_grad():
            pi = self.mdp.policy_table(self.policy)
            rho = float(self.mdp._stationary(torch.einsum("sa,sat->st", pi, self.mdp.P)) @ (pi * self.mdp.r).sum(-1))
        s, a, r = self.sampler.run(self.policy, self.H)
        self.steps += self.H
        self.regret += self.H * (self.optimum - rho)
        adv = epoch_advantages(s, a, r, pi, self.N)
        return s, a, adv, pi

    def _omega(self, theta: Tensor) -> Tensor:
        s, a, adv, _ = self._epoch(theta)
        lp = self.flat.log_prob(s, a)
        return self.flat.grad((adv * lp).sum() / self.H)

    def _update(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self) -> None:
        """One iteration (one or two epochs)."""
        self._update()
        self.t += 1
        self.flat.set(self.theta)

    def run(self, steps: int) -> list[tuple[int, float]]:
        """Iterate until ``steps`` environment steps; returns ``(steps so far, cumulative regret)`` per iteration."""
        check_int("steps", steps, 1)
        curve = []
        while self.steps < steps:
            self.step()
            curve.append((self.steps, self.regret))
        return curve


class AverageRewardIGT(AverageRewardPG):
    """IGT-based variance-reduced PG for average reward (Ganesh et al. 2024; see the module docstring)."""

    name = "avg_igt"

    def _update(self) -> None:
        eta = min(1.0, self.momentum(self.t))
        theta_tilde = self.theta + ((1.0 - eta) / eta) * (self.theta - self.prev)
        self.d = (1.0 - eta) * self.d + eta * self._omega(theta_tilde)
        self.prev = self.theta
        n = self.d.norm()
        self.theta = self.theta + self.lr(self.t) * (self.d / n if n > 0 else self.d)


class AverageRewardHessianPG(AverageRewardPG):
    """Hessian-based variance-reduced PG for average reward (Ganesh et al. 2024; our Hessian term, see above)."""

    name = "avg_hessian"
    epochs_per_iteration = 2

    def __init__(self, policy: SoftmaxPolicy, mdp: TabularMDP, *, epoch_length: int = 200, window: int = 10,
                 lr: float | Schedule = STEP_2_OVER_T, momentum: float | Schedule = MOMENTUM_HARPG,
                 seed: int = 0) -> None:
        super().__init__(policy, mdp, epoch_length=epoch_length, window=window, lr=lr, momentum=momentum, seed=seed)

    def _hvp(self, theta_hat: Tensor, v: Tensor) -> Tensor:
        s, a, adv, _ = self._epoch(theta_hat)
        lp = self.flat.log_prob(s, a)
        surrogate = (adv * torch.exp(lp - lp.detach())).sum() / self.H
        return ClosureHVPOperator(lambda: surrogate, self.flat.params).matvec(v)

    def _update(self) -> None:
        eta = min(1.0, self.momentum(self.t))
        omega = self._omega(self.theta)
        if self.t == 0:
            self.d = omega
        else:
            q = float(torch.rand((), generator=self.generator, dtype=torch.float64))
            theta_hat = q * self.theta + (1.0 - q) * self.prev
            v = self._hvp(theta_hat, self.theta - self.prev)
            self.d = (1.0 - eta) * (self.d + v) + eta * omega
        self.prev = self.theta
        n = self.d.norm()
        self.theta = self.theta + self.lr(self.t) * (self.d / n if n > 0 else self.d)
