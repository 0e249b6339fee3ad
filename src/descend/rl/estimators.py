"""Policy-gradient estimators on a batch of trajectories: REINFORCE, GPOMDP and HARPG's Hessian-vector term.

All estimators are written for *ascent* on ``J(θ) = E_τ[Σ_{h<H} γ^h r_h]`` and work on a flat parameter vector
``θ`` (:class:`FlatPolicy` evaluates the policy module at any ``θ`` with ``torch.func.functional_call``).

* REINFORCE (Williams 1992): ``g_R(τ, θ) = (Σ_h ∇ log π_θ(a_h|s_h)) · Σ_h γ^h r_h``.
* GPOMDP (Baxter & Bartlett 2001): ``g(τ, θ) = Σ_h (Σ_{t≤h} ∇ log π_θ(a_t|s_t)) γ^h r_h = ∇Φ(τ, θ)`` with the
  surrogate ``Φ(τ, θ) = Σ_t log π_θ(a_t|s_t) Σ_{h≥t} γ^h r_h``.
* HARPG's term (Fatkhullin et al. 2023, Eq. for ``B``): ``B(τ, θ) = ∇Φ(τ,θ) ∇ log p(τ|θ)ᵀ + ∇²Φ(τ,θ)`` with
  ``log p(τ|θ) = Σ_t log π_θ(a_t|s_t) + (terms free of θ)``; ``E_τ[B(τ,θ)] = ∇²J(θ)``.  ``B v`` for a batch is
  ``(1/B) Σ_i [g_i c_i + ∇²Φ_i v]`` with ``c_i = ∇ log p(τ_i|θ)·v``: the ``c_i`` come from a directional
  derivative of the per-trajectory log-likelihoods, and ``Σ_i g_i c_i + ∇(Σ_i ∇Φ_i·v)`` is the gradient of the scalar
  ``Σ_i c_i Φ_i + (∇Σ_iΦ_i)·v`` (``c`` held fixed) — one Hessian-vector product, no Hessian is formed; the
  product ``∇²Φ v`` comes from :class:`descend.curvature.ClosureHVPOperator` (one implementation of HVPs).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from descend.curvature import ClosureHVPOperator

from .policies import Policy
from .trajectories import Trajectories

__all__ = ["FlatPolicy", "gpomdp", "harpg_hvp", "reinforce"]


class FlatPolicy:
    """A policy module viewed as a function of one flat float64 parameter vector.

    ``set(θ)`` writes ``θ`` into the module; estimators then differentiate the module's own parameters and return
    flat gradients (plain reverse-mode autograd: ``torch.func.functional_call``/``jvp`` cost ~5× more per call on
    the small networks used here, and every iteration of these algorithms is a few small autograd calls).
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy.double()
        self.params = list(policy.parameters())
        self.numels = [p.numel() for p in self.params]

    @property
    def dim(self) -> int:
        return sum(self.numels)

    def get(self) -> Tensor:
        """The module's current parameters as a flat float64 vector (a copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    def set(self, theta: Tensor) -> None:
        """Write ``θ`` into the module."""
        with torch.no_grad():
            for p, chunk in zip(self.params, theta.split(self.numels), strict=True):
                p.copy_(chunk.reshape(p.shape))

    def grad(self, scalar: Tensor, create_graph: bool = False) -> Tensor:
        """Flat gradient of ``scalar`` w.r.t. the module's parameters (zeros where unused)."""
        gs = torch.autograd.grad(scalar, self.params, create_graph=create_graph, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(gs, self.params,
                                                                                              strict=True)])

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``log π(a | s)`` at the module's current parameters."""
        return self.policy.log_prob(obs, actions)


def _obs(traj: Trajectories) -> Tensor:
    o = traj.obs
    return o.to(torch.float64) if o.is_floating_point() else o


def _acts(traj: Trajectories) -> Tensor:
    a = traj.actions
    return a.to(torch.float64) if a.is_floating_point() else a


def step_log_probs(flat: FlatPolicy, traj: Trajectories) -> Tensor:
    """``log π(a_t | s_t)`` per step at the module's parameters, zero on padding: ``(B, H)``."""
    return flat.log_prob(_obs(traj), _acts(traj)) * traj.mask


def _weights(traj: Trajectories, weights: Tensor | None) -> Tensor:
    if weights is None:
        return torch.full((traj.n,), 1.0 / traj.n, dtype=torch.float64)
    if weights.shape != (traj.n,):
        raise ValueError(f"weights must have shape ({traj.n},), got {tuple(weights.shape)}")
    return weights.to(torch.float64)


def gpomdp(flat: FlatPolicy, theta: Tensor, traj: Trajectories, baseline: bool = False,
           weights: Tensor | None = None) -> Tensor:
    """Mean GPOMDP estimate over the batch, ``(1/B) Σ_i g(τ_i, θ)`` (``Σ_i w_i g(τ_i, θ)`` with ``weights``).

    ``baseline=True`` subtracts, at each time step, the mean of ``Σ_{h≥t} γ^h r_h`` over the *other* trajectories
    of the batch (leave-one-out, so the estimate stays unbiased; needs ``B ≥ 2``).  Off by default: the papers'
    estimator has no baseline.
    """
    flat.set(theta)
    rtg = _reward_to_go(traj, baseline)
    w = _weights(traj, weights)
    return flat.grad(((step_log_probs(flat, traj) * rtg).sum(-1) * w).sum())


def _reward_to_go(traj: Trajectories, baseline: bool) -> Tensor:
    """``Σ_{h≥t} γ^h r_h``, less the leave-one-out mean over the batch's other trajectories with ``baseline``."""
    rtg = traj.reward_to_go()
    if not baseline:
        return rtg
    if traj.n < 2:
        raise ValueError(f"baseline=True needs at least 2 trajectories, got {traj.n}")
    valid = traj.mask.to(torch.float64)
    tot, cnt = (rtg * valid).sum(0), valid.sum(0)
    return rtg - (tot - rtg * valid) / (cnt - valid).clamp_min(1.0)


def reinforce(flat: FlatPolicy, theta: Tensor, traj: Trajectories) -> Tensor:
    """Mean REINFORCE estimate over the batch: the whole discounted return weighs every score."""
    flat.set(theta)
    total = traj.discounted_rewards().sum(-1)
    return flat.grad((step_log_probs(flat, traj).sum(-1) * total).sum() / traj.n)


def harpg_hvp(flat: FlatPolicy, theta: Tensor, traj: Trajectories, v: Tensor, with_gradient: bool = False,
              weights: Tensor | None = None, baseline: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Mean of ``B(τ_i, θ) v`` over the batch (``Σ_i w_i B(τ_i, θ) v`` with ``weights``); no Hessian is formed.

    ``c_i = ∇ log p(τ_i|θ)·v`` by the double-backward trick (the gradient of ``u ↦ (∇_θ Σ_i u_i log p_i)·v``);
    ``∇²Φ v`` is one product of :class:`descend.curvature.ClosureHVPOperator` on ``Φ = Σ_i w_i Φ_i`` (whose
    gradient is GPOMDP's estimate), and ``Σ_i w_i c_i ∇Φ_i`` the gradient of ``Σ_i w_i c_i Φ_i`` (``c`` fixed).
    ``with_gradient=True`` also returns the GPOMDP estimate at ``θ`` on the same batch (it comes for free).
    ``baseline=True`` uses :func:`gpomdp`'s leave-one-out baseline in ``Φ_i``: it is built from the *other*
    trajectories' rewards, constant in ``θ`` and independent of ``τ_i``, so its terms have zero mean for every
    ``θ`` and ``E[B v]`` is still ``∇²J(θ) v`` (needs ``B ≥ 2``).
    """
    flat.set(theta)
    v = v.detach().to(torch.float64)
    lp = step_log_probs(flat, traj)
    u = torch.zeros(traj.n, dtype=torch.float64, requires_grad=True)
    gl = flat.grad((u * lp.sum(-1)).sum(), create_graph=True)
    (c,) = torch.autograd.grad(gl @ v, u, retain_graph=True)
    phi_i = (lp * _reward_to_go(traj, baseline)).sum(-1) * _weights(traj, weights)
    op = ClosureHVPOperator(phi_i.sum, flat.params)
    bv = op.matvec(v) + flat.grad((c.detach() * phi_i).sum())   # the product first: the last backward frees the graph
    if with_gradient:
        return bv, op.gradient
    return bv


EstimatorFn = Callable[[FlatPolicy, Tensor, Trajectories], Tensor]
