"""Exact tabular MDPs: random Dirichlet transitions, with the objective and its derivatives by linear algebra.

``TabularMDP.random(S, A, seed=…)`` draws ``P(· | s, a) ~ Dirichlet(α·1)``, rewards ``r(s, a) ~ U[0, 1]`` and a
uniform initial distribution.  For a :class:`~descend.rl.policies.TabularSoftmaxPolicy` the quantities below are
exact and differentiable in the policy parameters (autograd through the linear algebra), so they are the ground
truth the stochastic estimators are tested against:

* discounted, infinite horizon: ``J(θ) = ρᵀ (I − γ P_π)⁻¹ r_π``;
* discounted, truncated at ``H`` (what a trajectory of length ``H`` estimates, no truncation bias):
  ``J_H(θ) = Σ_{h<H} γ^h ρ_hᵀ r_π`` with ``ρ_{h+1} = P_πᵀ ρ_h``;
* average reward (ergodic chains): ``ρ(θ) = d_πᵀ r_π`` with ``d_π`` the stationary distribution of ``P_π``.

The optima: ``J*`` by value iteration to machine precision; the average-reward optimum by enumerating the
deterministic stationary policies (an optimal one exists for a unichain MDP; enumeration is exact and only used
for small ``|A|^|S|``).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from descend._validate import check_float, check_int

from .policies import Policy, SoftmaxPolicy
from .trajectories import Trajectories

__all__ = ["ContinuingSampler", "TabularMDP"]


@dataclass
class TabularMDP:
    """A finite MDP ``(P, r, ρ, γ)`` with trajectories truncated at ``horizon`` (see the module docstring)."""

    P: Tensor          # (S, A, S) float64, rows sum to 1
    r: Tensor          # (S, A) float64
    rho: Tensor        # (S,) float64
    gamma: float = 0.9
    horizon: int = 50
    _cumP: list[list[list[float]]] = field(default_factory=list, repr=False)
    _states: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_int("horizon", self.horizon, 1)
        S, A = self.r.shape
        if self.P.shape != (S, A, S) or self.rho.shape != (S,):
            raise ValueError(f"P must be (S, A, S) and rho (S,) for r of shape {(S, A)}, got {tuple(self.P.shape)}, "
                             f"{tuple(self.rho.shape)}")
        self._cumP = np.cumsum(self.P.numpy(), -1).tolist()
        self._r_np = self.r.numpy()

    @classmethod
    def random(cls, n_states: int = 5, n_actions: int = 3, *, gamma: float = 0.9, horizon: int = 50,
               concentration: float = 1.0, seed: int = 0) -> TabularMDP:
        """A random MDP: Dirichlet(``concentration``) transitions, U[0,1] rewards, uniform start."""
        check_int("n_states", n_states, 1)
        check_int("n_actions", n_actions, 2)
        check_float("concentration", concentration, 0.0, low_open=True)
        g = np.random.default_rng(seed)
        P = g.dirichlet(np.full(n_states, concentration), size=(n_states, n_actions))
        r = g.uniform(0.0, 1.0, size=(n_states, n_actions))
        rho = np.full(n_states, 1.0 / n_states)
        return cls(torch.from_numpy(P), torch.from_numpy(r), torch.from_numpy(rho), gamma, horizon)

    @property
    def n_states(self) -> int:
        return int(self.r.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.r.shape[1])

    # ---------------------------------------------------------------- exact quantities (differentiable)
    def policy_table(self, policy: SoftmaxPolicy) -> Tensor:
        """``π(a | s)`` for all states, ``(S, A)`` float64, differentiable in the policy's parameters."""
        if self._states is None:
            self._states = torch.arange(self.n_states)
        return policy.log_probs_all(self._states).exp().to(torch.float64)

    def _markov(self, pi: Tensor) -> tuple[Tensor, Tensor]:
        P_pi = torch.einsum("sa,sat->st", pi, self.P)
        r_pi = (pi * self.r).sum(-1)
        return P_pi, r_pi

    def J(self, policy: SoftmaxPolicy, horizon: int | None = None) -> Tensor:
        """Exact discounted return: infinite horizon (``horizon=None``) or truncated at ``horizon`` steps."""
        P_pi, r_pi = self._markov(self.policy_table(policy))
        if horizon is None:
            eye = torch.eye(self.n_states, dtype=torch.float64)
            v = torch.linalg.solve(eye - self.gamma * P_pi, r_pi)
            return self.rho @ v
        check_int("horizon", horizon, 1)
        d, total, disc = self.rho, torch.zeros((), dtype=torch.float64), 1.0
        for _ in range(horizon):
            total = total + disc * (d @ r_pi)
            d = d @ P_pi
            disc *= self.gamma
        return total

    def stationary(self, policy: SoftmaxPolicy) -> Tensor:
        """Stationary distribution ``d_π`` of the chain ``P_π`` (ergodic MDPs), differentiable."""
        P_pi, _ = self._markov(self.policy_table(policy))
        return self._stationary(P_pi)

    def _stationary(self, P_pi: Tensor) -> Tensor:
        S = self.n_states
        M = P_pi.T - torch.eye(S, dtype=torch.float64)
        M = torch.cat([M[:-1], torch.ones(1, S, dtype=torch.float64)])
        b = torch.zeros(S, dtype=torch.float64)
        b[-1] = 1.0
        return torch.linalg.solve(M, b)

    def average_reward(self, policy: SoftmaxPolicy) -> Tensor:
        """Exact long-run average reward ``d_πᵀ r_π``."""
        P_pi, r_pi = self._markov(self.policy_table(policy))
        return self._stationary(P_pi) @ r_pi

    def optimal_J(self, tol: float = 1e-13) -> float:
        """``J* = ρᵀ V*`` (infinite-horizon discounted optimum) by value iteration."""
        if self.gamma >= 1.0:
            raise ValueError("optimal_J needs gamma < 1; use optimal_average_reward for gamma = 1")
        V = torch.zeros(self.n_states, dtype=torch.float64)
        for _ in range(100_000):
            V_new = (self.r + self.gamma * torch.einsum("sat,t->sa", self.P, V)).max(-1).values
            if (V_new - V).abs().max().item() < tol:
                V = V_new
                break
            V = V_new
        return float(self.rho @ V)

    def optimal_average_reward(self, max_policies: int = 1 << 16) -> float:
        """Best long-run average reward over deterministic stationary policies (exact enumeration)."""
        if self.n_actions ** self.n_states > max_policies:
            raise ValueError(f"|A|^|S| = {self.n_actions ** self.n_states} policies exceed max_policies={max_policies}")
        best = -float("inf")
        for choice in itertools.product(range(self.n_actions), repeat=self.n_states):
            pi = torch.zeros(self.n_states, self.n_actions, dtype=torch.float64)
            pi[torch.arange(self.n_states), torch.tensor(choice)] = 1.0
            P_pi, r_pi = self._markov(pi)
            best = max(best, float(self._stationary(P_pi) @ r_pi))
        return best

    # ---------------------------------------------------------------- sampling
    def sample(self, policy: Policy, n: int, generator: torch.Generator) -> Trajectories:
        """``n`` trajectories of ``horizon`` steps from ``ρ`` (the policy table is computed once per call)."""
        check_int("n", n, 1)
        if not isinstance(policy, SoftmaxPolicy):
            raise TypeError("a tabular MDP needs a SoftmaxPolicy over state indices")
        H = self.horizon
        with torch.no_grad():
            pi = self.policy_table(policy).numpy()
        u = torch.rand(3, n, H, generator=generator, dtype=torch.float64).numpy()
        cum_pi = np.cumsum(pi, -1)
        cum_rho = np.cumsum(self.rho.numpy())
        S, A = self.n_states, self.n_actions
        states = np.empty((n, H), dtype=np.int64)
        actions = np.empty((n, H), dtype=np.int64)
        if n <= 4:  # scalar path: a few µs per step instead of numpy's per-call overhead
            cp, cP, cr = cum_pi.tolist(), self._cumP, cum_rho.tolist()
            for i in range(n):
                s = min(bisect.bisect_right(cr, u[0, i, 0]), S - 1)
                ui, ua = u[1, i].tolist(), u[2, i].tolist()
                for h in range(H):
                    a = min(bisect.bisect_right(cp[s], ui[h]), A - 1)
                    states[i, h], actions[i, h] = s, a
                    s = min(bisect.bisect_right(cP[s][a], ua[h]), S - 1)
        else:
            cumP = np.cumsum(self.P.numpy(), -1)
            s = np.minimum((cum_rho[None, :] <= u[0, :, :1]).sum(-1), S - 1)
            for h in range(H):
                a = np.minimum((cum_pi[s] <= u[1, :, h:h + 1]).sum(-1), A - 1)
                states[:, h], actions[:, h] = s, a
                s = np.minimum((cumP[s, a] <= u[2, :, h:h + 1]).sum(-1), S - 1)
        rewards = self._r_np[states, actions]
        return Trajectories(torch.from_numpy(states), torch.from_numpy(actions), torch.from_numpy(rewards),
                            torch.ones(n, H, dtype=torch.bool), self.gamma)


class ContinuingSampler:
    """One never-ending trajectory of a tabular MDP (the average-reward setting): ``run`` continues it."""

    def __init__(self, mdp: TabularMDP, generator: torch.Generator) -> None:
        self.mdp, self.generator = mdp, generator
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        self.state = min(bisect.bisect_right(np.cumsum(mdp.rho.numpy()).tolist(), u), mdp.n_states - 1)
        self.steps = 0

    def run(self, policy: SoftmaxPolicy, steps: int) -> tuple[Tensor, Tensor, Tensor]:
        """``steps`` more steps under ``policy``: (states, actions, rewards) as tensors of length ``steps``."""
        check_int("steps", steps, 1)
        mdp = self.mdp
        with torch.no_grad():
            cp = np.cumsum(mdp.policy_table(policy).numpy(), -1).tolist()
        u = torch.rand(2, steps, generator=self.generator, dtype=torch.float64).tolist()
        S, A, cP = mdp.n_states, mdp.n_actions, mdp._cumP
        states, actions = [0] * steps, [0] * steps
        s = self.state
        for h in range(steps):
            a = min(bisect.bisect_right(cp[s], u[0][h]), A - 1)
            states[h], actions[h] = s, a
            s = min(bisect.bisect_right(cP[s][a], u[1][h]), S - 1)
        self.state = s
        self.steps += steps
        st, ac = torch.tensor(states), torch.tensor(actions)
        return st, ac, mdp.r[st, ac]
