"""HARPG's ``B(τ,θ)v`` and the average-reward Hessian term take their Hessian-vector products from
``descend.curvature.ClosureHVPOperator``: equal to the fused double-backward they replaced.

The reference below is the previous private implementation, kept here as the oracle.  Both compute the same
derivatives of the same per-step sums; they differ only in the order autograd accumulates them (the new code adds
``∇²Φ v`` and ``Σ_i c_i ∇Φ_i`` after two backward passes, the old one summed them inside one).  So the difference
is round-off: at most a few ulps per accumulated term, with ≤ B·H = 256 terms per coordinate here, hence the bound
``‖new − old‖ ≤ 1e3 · eps · (‖∇²Φ v‖ + ‖Σ c_i ∇Φ_i‖)`` (float64) — relative to the two parts' sizes, not to
their sum, which may cancel.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from descend.rl import (
    AverageRewardHessianPG,
    FlatPolicy,
    GaussianPolicy,
    TabularMDP,
    TabularSoftmaxPolicy,
    Trajectories,
    harpg_hvp,
)
from descend.rl.estimators import _weights, step_log_probs

EPS = torch.finfo(torch.float64).eps


def _reference(flat: FlatPolicy, theta: Tensor, traj: Trajectories, v: Tensor,
               weights: Tensor | None = None) -> tuple[Tensor, Tensor, float]:
    """The previous implementation: ``(B v, g, scale)`` with scale = ‖∇²Φ v‖ + ‖Σ c_i ∇Φ_i‖."""
    flat.set(theta)
    lp = step_log_probs(flat, traj)
    u = torch.zeros(traj.n, dtype=torch.float64, requires_grad=True)
    gl = flat.grad((u * lp.sum(-1)).sum(), create_graph=True)
    (c,) = torch.autograd.grad(gl @ v, u, retain_graph=True)
    phi_i = (lp * traj.reward_to_go()).sum(-1) * _weights(traj, weights)
    g = flat.grad(phi_i.sum(), create_graph=True)
    bv = flat.grad((c.detach() * phi_i).sum() + g @ v, create_graph=True).detach()   # (create_graph keeps the
    hv = flat.grad(g @ v, create_graph=True).detach()                                  # graph for the next two)
    cg = flat.grad((c.detach() * phi_i).sum())
    return bv, g.detach(), float(hv.norm() + cg.norm())


def _gaussian_batch(policy: GaussianPolicy, gen: torch.Generator, B: int = 8, H: int = 32) -> Trajectories:
    obs = torch.randn(B, H, 3, generator=gen, dtype=torch.float64)
    acts = torch.randn(B, H, 2, generator=gen, dtype=torch.float64)
    rewards = torch.rand(B, H, generator=gen, dtype=torch.float64) - 0.5
    lengths = torch.randint(1, H + 1, (B,), generator=gen)
    mask = torch.arange(H)[None, :] < lengths[:, None]          # padded episodes of different lengths
    return Trajectories(obs, acts, rewards * mask, mask, 0.95)


@pytest.mark.parametrize("case", ["tabular", "gaussian_mlp", "gaussian_weighted"])
def test_harpg_term_equals_previous_double_backward(case: str) -> None:
    gen = torch.Generator().manual_seed(7)
    weights = None
    if case == "tabular":
        mdp = TabularMDP.random(5, 3, gamma=0.9, horizon=32, seed=0)
        policy: TabularSoftmaxPolicy | GaussianPolicy = TabularSoftmaxPolicy(5, 3)
        flat = FlatPolicy(policy)
        theta = 0.5 * torch.randn(flat.dim, generator=gen, dtype=torch.float64)
        flat.set(theta)
        traj = mdp.sample(policy, 8, gen)
    else:
        torch.manual_seed(0)
        policy = GaussianPolicy.mlp(3, 2, hidden=(8,))
        flat = FlatPolicy(policy)
        theta = flat.get() + 0.1 * torch.randn(flat.dim, generator=gen, dtype=torch.float64)
        traj = _gaussian_batch(policy, gen)
        if case == "gaussian_weighted":
            weights = torch.rand(traj.n, generator=gen, dtype=torch.float64)
    v = torch.randn(flat.dim, generator=gen, dtype=torch.float64)
    ref, g_ref, scale = _reference(flat, theta, traj, v, weights)
    out = harpg_hvp(flat, theta, traj, v, with_gradient=True, weights=weights)
    assert isinstance(out, tuple)
    bv, g = out
    assert scale > 0 and float((bv - ref).norm()) <= 1e3 * EPS * scale, (float((bv - ref).norm()), scale)
    assert float((g - g_ref).norm()) <= 1e3 * EPS * float(g_ref.norm())


def test_average_reward_hessian_term_equals_previous_double_backward() -> None:
    """The average-reward ``Ĥ v`` (one HVP of the frozen-advantage surrogate): the same epoch replayed (same
    generator and chain state) through the old double backward and through the curvature operator."""
    mdp = TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0)
    gen = torch.Generator().manual_seed(3)
    alg = AverageRewardHessianPG(TabularSoftmaxPolicy(5, 2), mdp, epoch_length=100, window=5, seed=1)
    theta = 0.5 * torch.randn(alg.flat.dim, generator=gen, dtype=torch.float64)
    v = torch.randn(alg.flat.dim, generator=gen, dtype=torch.float64)
    state, chain = alg.generator.get_state(), alg.sampler.state
    new = alg._hvp(theta, v)
    alg.generator.set_state(state)
    alg.sampler.state = chain
    s, a, adv, _ = alg._epoch(theta)
    lp = alg.flat.log_prob(s, a)
    g = alg.flat.grad((adv * torch.exp(lp - lp.detach())).sum() / alg.H, create_graph=True)
    old = alg.flat.grad(g @ v)
    # one HVP of one scalar, the same backward graph (the operator differentiates the gradient with grad_outputs=v
    # instead of the dot product g·v): equal to a few ulps of the result
    assert float((new - old).norm()) <= 1e3 * EPS * float(old.norm()), (float((new - old).norm()), float(old.norm()))
