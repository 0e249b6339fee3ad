"""The leave-one-out baseline option of GPOMDP, normalized PG, N-PG-IGT and (N-)HARPG.

Exact expectation (no sampling): on a tiny MDP (2 states, 2 actions, H = 2: 16 trajectories) every *ordered pair*
of trajectories is a batch of two, weighted by ``p(τ_i) p(τ_j)``.  With the baseline, each trajectory's
reward-to-go is reduced by the other one's, so the batch estimates must still average to the exact ``∇J_H`` and
``∇²J_H v`` — to 1e-10 relative (256 float64 terms of size O(1): rounding is ~1e-13), while on one pair they
differ from the estimates without a baseline (the option is not a no-op).
"""

from __future__ import annotations

import pytest
import torch

from descend.rl import (
    GPOMDP,
    NHARPG,
    NPGIGT,
    NormalizedPG,
    TabularMDP,
    TabularSoftmaxPolicy,
    Trajectories,
    gpomdp,
    harpg_hvp,
)
from descend.rl.study import ENVS, make_env, make_method

from ._exact import enumerate_trajectories, exact_grad_and_hvp, random_point


def _pair(mdp: TabularMDP, st: torch.Tensor, ac: torch.Tensor, i: int, j: int) -> Trajectories:
    s, a = st[[i, j]], ac[[i, j]]
    return Trajectories(s, a, mdp.r[s, a], torch.ones(s.shape, dtype=torch.bool), mdp.gamma)


def test_baseline_estimators_are_exactly_unbiased_over_all_pairs() -> None:
    mdp = TabularMDP.random(2, 2, gamma=0.8, horizon=2, seed=3)
    policy, flat, theta, v = random_point(mdp)
    st, ac, p = enumerate_trajectories(mdp, policy)
    g_true, hv_true = exact_grad_and_hvp(mdp, theta, v, mdp.horizon)
    g_mean, hv_mean = torch.zeros_like(theta), torch.zeros_like(theta)
    for i in range(len(p)):
        for j in range(len(p)):
            w = p[i] * p[j]
            if w == 0:
                continue
            traj = _pair(mdp, st, ac, i, j)
            bv, g = harpg_hvp(flat, theta, traj, v, with_gradient=True, baseline=True)
            g_mean += w * g
            hv_mean += w * bv
    assert torch.allclose(g_mean, g_true, rtol=1e-10, atol=1e-12)
    assert torch.allclose(hv_mean, hv_true, rtol=1e-10, atol=1e-12)
    traj = _pair(mdp, st, ac, 0, len(p) - 1)
    assert torch.allclose(gpomdp(flat, theta, traj, baseline=True), harpg_hvp(
        flat, theta, traj, v, with_gradient=True, baseline=True)[1], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(gpomdp(flat, theta, traj, baseline=True), gpomdp(flat, theta, traj))
    bv_b = harpg_hvp(flat, theta, traj, v, baseline=True)
    bv_0 = harpg_hvp(flat, theta, traj, v)
    assert isinstance(bv_b, torch.Tensor) and isinstance(bv_0, torch.Tensor)
    assert not torch.allclose(bv_b, bv_0)


@pytest.mark.parametrize("cls", [GPOMDP, NormalizedPG, NPGIGT, NHARPG])
def test_baseline_needs_two_trajectories(cls: type) -> None:
    mdp = TabularMDP.random(3, 2, gamma=0.9, horizon=5, seed=0)
    with pytest.raises(ValueError, match="baseline=True needs batch_size ≥ 2, got 1"):
        cls(TabularSoftmaxPolicy(3, 2), mdp, baseline=True, batch_size=1)


def test_baseline_needs_gpomdp_estimator() -> None:
    mdp = TabularMDP.random(3, 2, gamma=0.9, horizon=5, seed=0)
    with pytest.raises(ValueError, match="estimator='gpomdp'"):
        NormalizedPG(TabularSoftmaxPolicy(3, 2), mdp, estimator="reinforce", baseline=True, batch_size=2)


def test_cartpole_defaults_reach_the_algorithms() -> None:
    """The CartPole setting (authors' (32, 32) policy, a baseline, batches of 5) is what the study builds."""
    pytest.importorskip("gymnasium")
    s = ENVS["CartPole-v1"]
    assert s.hidden == (32, 32) and s.baseline and s.batch_size == 5
    assert s.describe()["baseline"] is True
    assert s.hessian_batch_size == 2
    # the setting stored with a run: unchanged for the methods without a Hessian term (their stored runs match)
    assert s.describe("gpomdp") == {"gamma": 0.99, "hidden": [32, 32], "lr_normalized": repr(s.lr_normalized),
                                    "lr_sga": repr(s.lr_sga), "momentum_igt": repr(s.momentum_igt),
                                    "momentum_harpg": repr(s.momentum_harpg), "batch_size": 5, "baseline": True}
    assert s.describe("n_harpg") == {**s.describe("gpomdp"), "hessian_batch_size": 2}
    for method in ("gpomdp", "n_pg_igt", "n_harpg"):
        sampler, policy = make_env("CartPole-v1", seed=0)
        alg = make_method(method, policy, sampler, s, seed=0)
        assert alg.baseline and alg.batch_size == 5
        if method == "n_harpg":
            assert isinstance(alg, NHARPG) and alg.hessian_batch_size == 2
        assert alg.flat.dim == (4 * 32 + 32) + (32 * 32 + 32) + (32 * 2 + 2)
        alg.step()
        assert alg.trajectories == 5   # (N-)HARPG's first iteration has no Hessian term: one batch
        sampler.close()


def test_hessian_batch_is_its_own_size() -> None:
    """``hessian_batch_size`` sets how many trajectories the Hessian term samples at θ̂ (the authors' code takes a
    separate, smaller batch for it); the gradient batch keeps ``batch_size``.  Counted per iteration: the first
    iteration has no Hessian term, each later one samples batch + Hessian batch."""
    mdp = TabularMDP.random(3, 2, gamma=0.9, horizon=5, seed=0)
    alg = NHARPG(TabularSoftmaxPolicy(3, 2), mdp, batch_size=5, hessian_batch_size=2, baseline=True, seed=0)
    alg.step()
    assert alg.trajectories == 5
    alg.step()
    assert alg.trajectories == 5 + 5 + 2
    same = NHARPG(TabularSoftmaxPolicy(3, 2), mdp, batch_size=5, seed=0)   # default: the gradient's batch size
    same.step()
    same.step()
    assert same.hessian_batch_size == 5 and same.trajectories == 5 + 5 + 5


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"hessian_batch_size": 0}, "hessian_batch_size"),
    ({"hessian_batch_size": 1.5}, "hessian_batch_size"),
    ({"hessian_batch_size": 1, "baseline": True}, "baseline=True needs hessian_batch_size ≥ 2, got 1"),
])
def test_hessian_batch_is_checked(kwargs: dict[str, object], match: str) -> None:
    mdp = TabularMDP.random(3, 2, gamma=0.9, horizon=5, seed=0)
    with pytest.raises(ValueError, match=match):
        NHARPG(TabularSoftmaxPolicy(3, 2), mdp, batch_size=4, **kwargs)  # type: ignore[arg-type]
