"""Discounted policy-gradient algorithms: REINFORCE, GPOMDP, normalized PG, N-PG-IGT, HARPG and N-HARPG.

Paper: Ilyas Fatkhullin, Anas Barakat, Anastasia Kireeva, Niao He (2023), "Stochastic Policy Gradient Methods:
Improved Sample Complexity for Fisher-non-degenerate Policies", ICML 2023, arXiv:2302.01734.  Baselines: REINFORCE
(Williams 1992), GPOMDP (Baxter & Bartlett 2001), normalized PG (the normalized-momentum template of Cutkosky &
Mehta 2020 without momentum).  All maximize ``J(θ) = E[Σ_{h<H} γ^h r_h]``; ``g`` is GPOMDP's estimate and ``B``
HARPG's Hessian term (:mod:`descend.rl.estimators`).

N-PG-IGT (the paper's Algorithm 1; one trajectory per iteration)::

    θ̃_t = θ_t + ((1 − η_t)/η_t)(θ_t − θ_{t−1})                 (implicit gradient transport, θ_{−1} = θ_0)
    τ_t ~ π_{θ̃_t};   d_t = (1 − η_t) d_{t−1} + η_t g(τ_t, θ̃_t)
    θ_{t+1} = θ_t + γ_t d_t / ‖d_t‖

(N-)HARPG (the paper's Algorithm 2; two trajectories per iteration, one at ``t = 0`` where ``θ_t − θ_{t−1} = 0``)::

    q_t ~ U[0, 1];   θ̂_t = q_t θ_t + (1 − q_t) θ_{t−1}
    τ_t ~ π_{θ_t},  τ̂_t ~ π_{θ̂_t};   v_t = B(τ̂_t, θ̂_t)(θ_t − θ_{t−1})
    d_t = (1 − η_t)(d_{t−1} + v_t) + η_t g(τ_t, θ_t)
    θ_{t+1} = θ_t + γ_t d_t / ‖d_t‖   (N-HARPG)        θ_{t+1} = θ_t + γ_t d_t   (HARPG)

Defaults.  The schedule forms are checked against the authors' released code (garage-based; ``NIGT_optimizer.py``,
``STORMHess_optimizer.py``, ``run_PG.py``; the paper's theorem text itself could not be read offline): N-PG-IGT
``η_t = η_0 (2/(t+2))^{4/5}``, ``γ_t = γ_0 · 2/(t+2)``; N-HARPG ``η_t = η_0 · 2/(t+2)``, ``γ_t = γ_0 · 2/(t+2)``;
HARPG (unnormalized) ``η_t = η_0 · 2/(t+2)``, ``γ_t = γ_0 (2/(t+2))^{1/2}`` — ours have the same forms (``η_0 = 1``,
the code's default).  Differences: the code counts ``t`` from 1 at the first update (ours from 0, so its first
``η`` is ``(2/3)^{4/5}``, not 1), its run script uses ``γ_0 = 0.1`` with batches of 1000–5000 environment steps and a
separate Hessian batch of ≥ 32 steps (ours: one trajectory per estimate by default, as the paper's algorithms state;
``batch_size`` and ``hessian_batch_size`` set them), and the constants
``γ_0`` here (1 for the normalized methods, 0.01 for HARPG) were chosen on the tabular check MDP.  Every schedule
is an argument (a number means a constant).

Checked against: the estimators against exact derivatives of the tabular MDP (``tests/rl/test_estimators.py``:
exact expectation by enumeration to 1e-10, sampled means within 5 % relative); the algorithms on the claims of
``tests/rl/test_tabular.py``.  Deviations: HARPG's first iteration samples one trajectory (its Hessian term is 0).
Option ``hessian_batch_size`` ((N-)HARPG; default ``batch_size``): the number of trajectories sampled at ``θ̂`` for
the Hessian term, separate from the gradient's batch, as in the authors' run script (a separate Hessian batch).
Option ``baseline=True`` (GPOMDP, normalized PG, N-PG-IGT, (N-)HARPG; ``batch_size ≥ 2``): GPOMDP's leave-one-out
baseline in ``g`` and in ``Φ`` of the Hessian term, both still unbiased (exactly, over all pairs of a tiny MDP:
``tests/rl/test_baseline.py``).  The authors' code subtracts a baseline too (garage's linear feature baseline); the
papers' algorithms have none, so it is off by default (on in the CartPole setting of :mod:`descend.rl.study`).

Every algorithm is deterministic given ``seed``: sampling uses one ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from descend._validate import check_choice, check_int, check_optional_int

from .estimators import FlatPolicy, gpomdp, harpg_hvp, reinforce
from .policies import Policy
from .schedules import MOMENTUM_HARPG, MOMENTUM_IGT, STEP_2_OVER_T, Power, Schedule, as_schedule
from .trajectories import Sampler, Trajectories

#: HARPG's default step ``γ_t = 0.01 (2/(t+2))^{1/2}``: the authors' code's form, our ``γ_0``
HARPG_STEP = Power(0.01, 0.5)

__all__ = ["GPOMDP", "HARPG", "NHARPG", "NPGIGT", "REINFORCE", "NormalizedPG", "PolicyGradient", "StepInfo"]


@dataclass
class StepInfo:
    """What one iteration sampled: the trajectories' undiscounted returns and lengths."""

    returns: list[float]
    steps: int


def _normalize(d: Tensor) -> Tensor:
    n = d.norm()
    return d / n if n > 0 else d


class PolicyGradient:
    """Base class: a policy, a sampler, the iterate ``θ`` (flat float64) and the counters.

    ``step()`` runs one iteration; ``trajectories``/``env_steps`` count everything sampled so far.
    ``baseline``: GPOMDP's leave-one-out baseline in the estimators that take it (needs ``batch_size ≥ 2``).
    """

    name = "pg"

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule, batch_size: int = 1,
                 baseline: bool = False, seed: int = 0) -> None:
        self.lr = as_schedule("lr", lr)
        self.batch_size = check_int("batch_size", batch_size, 1)
        if baseline and batch_size < 2:
            raise ValueError(f"baseline=True needs batch_size ≥ 2, got {batch_size}")
        self.baseline = bool(baseline)
        check_int("seed", seed, 0)
        self.policy, self.sampler = policy, sampler
        self.flat = FlatPolicy(policy)
        self.theta = self.flat.get()
        self.generator = torch.Generator().manual_seed(seed)
        self.t = 0
        self.trajectories = 0
        self.env_steps = 0

    def _sample(self, theta: Tensor, n: int | None = None) -> Trajectories:
        """``n`` trajectories (default ``batch_size``) from ``π_theta``, counted."""
        self.flat.set(theta)
        traj = self.sampler.sample(self.policy, self.batch_size if n is None else n, self.generator)
        self.trajectories += traj.n
        self.env_steps += traj.steps
        self._sampled.append(traj)
        return traj

    def _update(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def step(self) -> StepInfo:
        """One iteration; returns what it sampled."""
        self._sampled: list[Trajectories] = []
        self._update()
        self.t += 1
        self.flat.set(self.theta)
        rets = [r for tr in self._sampled for r in tr.returns().tolist()]
        return StepInfo(rets, sum(tr.steps for tr in self._sampled))

    def run(self, trajectories: int, callback: Callable[[PolicyGradient, StepInfo], None] | None = None) -> None:
        """Iterate until ``trajectories`` trajectories have been sampled (the last iteration may pass it)."""
        check_int("trajectories", trajectories, 1)
        while self.trajectories < trajectories:
            info = self.step()
            if callback is not None:
                callback(self, info)


class REINFORCE(PolicyGradient):
    """Stochastic gradient ascent with the REINFORCE estimator: ``θ_{t+1} = θ_t + γ_t g_R(τ_t, θ_t)``."""

    name = "reinforce"

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = 0.01, batch_size: int = 1,
                 seed: int = 0) -> None:
        super().__init__(policy, sampler, lr=lr, batch_size=batch_size, seed=seed)

    def _update(self) -> None:
        g = reinforce(self.flat, self.theta, self._sample(self.theta))
        self.theta = self.theta + self.lr(self.t) * g


class GPOMDP(PolicyGradient):
    """Stochastic gradient ascent with GPOMDP: ``θ_{t+1} = θ_t + γ_t g(τ_t, θ_t)`` (optional leave-one-out
    baseline, off by default)."""

    name = "gpomdp"

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = 0.01, batch_size: int = 1,
                 baseline: bool = False, seed: int = 0) -> None:
        super().__init__(policy, sampler, lr=lr, batch_size=batch_size, baseline=baseline, seed=seed)

    def _update(self) -> None:
        g = gpomdp(self.flat, self.theta, self._sample(self.theta), baseline=self.baseline)
        self.theta = self.theta + self.lr(self.t) * g


class NormalizedPG(PolicyGradient):
    """Normalized PG: ``θ_{t+1} = θ_t + γ_t ĝ_t/‖ĝ_t‖`` with ``ĝ`` GPOMDP (default) or REINFORCE."""

    name = "normalized_pg"

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = STEP_2_OVER_T,
                 estimator: str = "gpomdp", batch_size: int = 1, baseline: bool = False, seed: int = 0) -> None:
        self.estimator = check_choice("estimator", estimator, ("gpomdp", "reinforce"))
        if baseline and estimator != "gpomdp":
            raise ValueError("baseline=True needs estimator='gpomdp'")
        super().__init__(policy, sampler, lr=lr, batch_size=batch_size, baseline=baseline, seed=seed)

    def _update(self) -> None:
        traj = self._sample(self.theta)
        g = gpomdp(self.flat, self.theta, traj, baseline=self.baseline) if self.estimator == "gpomdp" else \
            reinforce(self.flat, self.theta, traj)
        self.theta = self.theta + self.lr(self.t) * _normalize(g)


class NPGIGT(PolicyGradient):
    """N-PG-IGT (Fatkhullin et al. 2023, Algorithm 1): normalized momentum with implicit gradient transport."""

    name = "n_pg_igt"

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = STEP_2_OVER_T,
                 momentum: float | Schedule = MOMENTUM_IGT, batch_size: int = 1, baseline: bool = False,
                 seed: int = 0) -> None:
        super().__init__(policy, sampler, lr=lr, batch_size=batch_size, baseline=baseline, seed=seed)
        self.momentum = as_schedule("momentum", momentum)
        self.prev = self.theta.clone()
        self.d = torch.zeros_like(self.theta)

    def _update(self) -> None:
        eta = min(1.0, self.momentum(self.t))
        theta_tilde = self.theta + ((1.0 - eta) / eta) * (self.theta - self.prev)
        g = gpomdp(self.flat, theta_tilde, self._sample(theta_tilde), baseline=self.baseline)
        self.d = (1.0 - eta) * self.d + eta * g
        self.prev = self.theta
        self.theta = self.theta + self.lr(self.t) * _normalize(self.d)


class HARPG(PolicyGradient):
    """HARPG (Fatkhullin et al. 2023, Algorithm 2 without normalization): recursive momentum with a
    Hessian-vector correction at a uniformly random point of the last step."""

    name = "harpg"
    normalized = False

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = HARPG_STEP,
                 momentum: float | Schedule = MOMENTUM_HARPG, batch_size: int = 1,
                 hessian_batch_size: int | None = None, baseline: bool = False, seed: int = 0) -> None:
        # checked before anything is built; None: batch_size, with its own checks
        hessian = check_optional_int("hessian_batch_size", hessian_batch_size)
        if baseline and hessian is not None and hessian < 2:
            raise ValueError(f"baseline=True needs hessian_batch_size ≥ 2, got {hessian}")
        super().__init__(policy, sampler, lr=lr, batch_size=batch_size, baseline=baseline, seed=seed)
        self.hessian_batch_size = batch_size if hessian is None else hessian
        self.momentum = as_schedule("momentum", momentum)
        self.prev = self.theta.clone()
        self.d = torch.zeros_like(self.theta)

    def _update(self) -> None:
        eta = min(1.0, self.momentum(self.t))
        g = gpomdp(self.flat, self.theta, self._sample(self.theta), baseline=self.baseline)
        if self.t == 0:
            self.d = g
        else:
            q = float(torch.rand((), generator=self.generator, dtype=torch.float64))
            theta_hat = q * self.theta + (1.0 - q) * self.prev
            v = self._hessian_vector(theta_hat, self.theta - self.prev)
            self.d = (1.0 - eta) * (self.d + v) + eta * g
        self.prev = self.theta
        step = _normalize(self.d) if self.normalized else self.d
        self.theta = self.theta + self.lr(self.t) * step


    def _hessian_vector(self, theta_hat: Tensor, delta: Tensor) -> Tensor:
        """The correction ``B(τ̂, θ̂)·Δ`` from ``hessian_batch_size`` fresh trajectories at ``θ̂`` (one HVP,
        :func:`harpg_hvp`)."""
        v = harpg_hvp(self.flat, theta_hat, self._sample(theta_hat, self.hessian_batch_size), delta,
                      baseline=self.baseline)
        assert isinstance(v, Tensor)
        return v


class NHARPG(HARPG):
    """N-HARPG (Fatkhullin et al. 2023, Algorithm 2 with normalized steps)."""

    name = "n_harpg"
    normalized = True

    def __init__(self, policy: Policy, sampler: Sampler, *, lr: float | Schedule = STEP_2_OVER_T,
                 momentum: float | Schedule = MOMENTUM_HARPG, batch_size: int = 1,
                 hessian_batch_size: int | None = None, baseline: bool = False, seed: int = 0) -> None:
        super().__init__(policy, sampler, lr=lr, momentum=momentum, batch_size=batch_size,
                         hessian_batch_size=hessian_batch_size, baseline=baseline, seed=seed)
