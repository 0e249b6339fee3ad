"""The estimators against exact derivatives of tabular MDPs.

* Exact expectation (no sampling): on a tiny MDP every trajectory of length H is enumerated with its probability;
  ``Σ_τ p(τ) g(τ, θ)`` and ``Σ_τ p(τ) B(τ, θ) v`` must equal ``∇J_H`` and ``∇²J_H v`` of the exact objective — to
  1e-10 relative (a few hundred float64 terms of size O(1): rounding is ~1e-14), and the Hessian also against a
  central finite difference of the exact gradient (error O(ε²·‖∇³J‖) ≈ 1e-8 at ε = 1e-4: tolerance 1e-6).
* Sampled means (the issue's check): over many trajectories, mean GPOMDP and mean ``B v`` within 5 % relative of
  the exact values.  The standard error of the mean is measured from 20 independent chunks and the sample size
  is chosen so that 5 % is ≥ 4 standard errors (asserted too: the check cannot pass by noise alone).  Rewards
  are shifted to [−½, ½] (the same MDP up to a constant; far less score-function variance).
"""

from __future__ import annotations

import pytest
import torch

from descend.rl import FlatPolicy, TabularMDP, TabularSoftmaxPolicy, Trajectories, gpomdp, harpg_hvp, reinforce

from ._exact import enumerate_trajectories, exact_grad, exact_grad_and_hvp, random_point


def _all_trajectories(mdp: TabularMDP, policy: TabularSoftmaxPolicy) -> tuple[Trajectories, torch.Tensor]:
    st, ac, probs = enumerate_trajectories(mdp, policy)
    return Trajectories(st, ac, mdp.r[st, ac], torch.ones(st.shape, dtype=torch.bool), mdp.gamma), probs


def test_exact_expectation_of_gpomdp_reinforce_and_hessian_term() -> None:
    mdp = TabularMDP.random(2, 2, gamma=0.8, horizon=4, seed=3)
    policy, flat, theta, v = random_point(mdp)
    traj, p = _all_trajectories(mdp, policy)
    assert abs(float(p.sum()) - 1.0) < 1e-12
    g_true, hv_true = exact_grad_and_hvp(mdp, theta, v, mdp.horizon)

    g = gpomdp(flat, theta, traj, weights=p)
    bv = harpg_hvp(flat, theta, traj, v, weights=p)
    assert isinstance(bv, torch.Tensor)
    flat.set(theta)
    r_total = traj.discounted_rewards().sum(-1)
    g_r = flat.grad(((flat.log_prob(traj.obs, traj.actions).sum(-1) * r_total) * p).sum())
    assert torch.allclose(g, g_true, rtol=1e-10, atol=1e-12)
    assert torch.allclose(g_r, g_true, rtol=1e-10, atol=1e-12)
    assert torch.allclose(bv, hv_true, rtol=1e-10, atol=1e-12)

    eps = 1e-4
    fd = (exact_grad(mdp, theta + eps * v, mdp.horizon) - exact_grad(mdp, theta - eps * v, mdp.horizon)) / (2 * eps)
    assert (bv - fd).norm() <= 1e-6 * fd.norm()


def _chunked(mdp: TabularMDP, theta: torch.Tensor, v: torch.Tensor, n: int, chunks: int, seed: int,
             hessian: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """GPOMDP and B·v means over ``chunks`` independent batches of ``n // chunks`` trajectories."""
    policy = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    flat = FlatPolicy(policy)
    flat.set(theta)
    gen = torch.Generator().manual_seed(seed)
    gs, bvs = [], []
    for _ in range(chunks):
        traj = mdp.sample(policy, n // chunks, gen)
        if hessian:
            bv, g = harpg_hvp(flat, theta, traj, v, with_gradient=True)
        else:
            bv, g = v, gpomdp(flat, theta, traj)
        gs.append(g)
        bvs.append(bv)
    return torch.stack(gs), torch.stack(bvs)


def _check_mean(samples: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    mean = samples.mean(0)
    se = float((samples.std(0) / samples.shape[0] ** 0.5).norm() / truth.norm())
    return float((mean - truth).norm() / truth.norm()), se


def _centred(mdp: TabularMDP) -> TabularMDP:
    # rewards in [-1/2, 1/2]: the same MDP up to a constant reward shift, with far less score-function variance
    return TabularMDP(mdp.P, mdp.r - 0.5, mdp.rho, mdp.gamma, mdp.horizon)


def _setting(horizon: int) -> tuple[TabularMDP, torch.Tensor, torch.Tensor]:
    mdp = _centred(TabularMDP.random(5, 3, gamma=0.9, horizon=horizon, seed=0))
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(15, generator=gen, dtype=torch.float64)
    v = torch.randn(15, generator=gen, dtype=torch.float64)
    return mdp, theta, v


def test_sampled_gpomdp_matches_exact_gradient_reduced() -> None:
    """|S|=5, |A|=3, γ=0.9 at H=20 (the full check, H=50, is the slow test below)."""
    mdp, theta, v = _setting(20)
    g_true, _ = exact_grad_and_hvp(mdp, theta, v, 20)
    gs, _ = _chunked(mdp, theta, v, 200_000, 20, seed=2, hessian=False)
    err, se = _check_mean(gs, g_true)
    assert se <= 0.0125, f"standard error {se:.4f} too large for a 5% check"
    assert err <= 0.05, f"GPOMDP mean is {err:.3%} from the exact gradient (standard error {se:.3%})"


def test_sampled_hessian_term_is_unbiased_reduced() -> None:
    """B·v at H=8 from 10⁵ trajectories: its relative standard error is ~8 % there, so this reduced version checks
    the mean within 4 standard errors of ∇²J v; the 5 % check needs ~4·10⁶ trajectories (slow test below)."""
    mdp, theta, v = _setting(8)
    _, hv_true = exact_grad_and_hvp(mdp, theta, v, 8)
    _, bvs = _chunked(mdp, theta, v, 100_000, 20, seed=3)
    err, se = _check_mean(bvs, hv_true)
    assert err <= 4 * se, f"mean B(τ,θ)v is {err:.3%} from ∇²J v, more than 4 standard errors ({se:.3%})"


@pytest.mark.slow
def test_sampled_estimators_match_exact_full() -> None:
    """The issue's check: GPOMDP at H=50 and mean B(τ,θ)v (H=8) vs the finite difference of the exact ∇J_H,
    both within 5 % relative."""
    mdp, theta, v = _setting(50)
    g_true, _ = exact_grad_and_hvp(mdp, theta, v, 50)
    gs, _ = _chunked(mdp, theta, v, 400_000, 40, seed=2, hessian=False)
    err, se = _check_mean(gs, g_true)
    assert se <= 0.0125 and err <= 0.05, (err, se)

    mdp, theta, v = _setting(8)
    eps = 1e-4
    fd = (exact_grad(mdp, theta + eps * v, 8) - exact_grad(mdp, theta - eps * v, 8)) / (2 * eps)
    _, bvs = _chunked(mdp, theta, v, 4_000_000, 40, seed=4)
    err, se = _check_mean(bvs, fd)
    assert se <= 0.0125, f"standard error {se:.4f} too large for a 5% check"
    assert err <= 0.05, f"mean B(τ,θ)v is {err:.3%} from the finite difference (standard error {se:.3%})"


def test_reinforce_and_gpomdp_agree_in_expectation_only() -> None:
    """Same mean, different estimators: on one trajectory they differ (GPOMDP drops past rewards)."""
    mdp = TabularMDP.random(3, 2, gamma=0.9, horizon=10, seed=0)
    policy = TabularSoftmaxPolicy(3, 2)
    flat = FlatPolicy(policy)
    theta = flat.get()
    traj = mdp.sample(policy, 1, torch.Generator().manual_seed(0))
    assert not torch.allclose(gpomdp(flat, theta, traj), reinforce(flat, theta, traj))
