"""Policies, the tabular MDP's exact quantities, and the Gymnasium sampler's counting."""

from __future__ import annotations

import pytest
import torch

from descend.rl import GaussianPolicy, SoftmaxPolicy, TabularMDP, TabularSoftmaxPolicy


def test_gaussian_log_prob_matches_torch_normal() -> None:
    pol = GaussianPolicy.mlp(3, 2, hidden=(4,), log_std=-0.3).double()
    with torch.no_grad():
        for p in pol.parameters():
            p.normal_()
    obs = torch.randn(7, 3, dtype=torch.float64)
    act = torch.randn(7, 2, dtype=torch.float64)
    ref = torch.distributions.Normal(pol.mean(obs), pol.log_std.exp()).log_prob(act).sum(-1)
    assert torch.allclose(pol.log_prob(obs, act), ref, rtol=1e-12, atol=1e-12)


def test_softmax_sampling_frequencies() -> None:
    pol = SoftmaxPolicy.mlp(2, 3).double()
    with torch.no_grad():
        pol.logits[0].bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    obs = torch.zeros(60_000, 2, dtype=torch.float64)
    a = pol.sample(obs, torch.Generator().manual_seed(0))
    freq = torch.bincount(a, minlength=3).double() / a.numel()
    p = torch.softmax(torch.tensor([0.0, 1.0, -1.0], dtype=torch.float64), 0)
    # binomial standard error ≤ sqrt(0.25/60000) = 0.002: 5 standard errors
    assert torch.allclose(freq, p, atol=0.01)


def test_tabular_exact_values_agree() -> None:
    mdp = TabularMDP.random(4, 3, gamma=0.8, horizon=200, seed=1)
    pol = TabularSoftmaxPolicy(4, 3)
    with torch.no_grad():
        j_inf, j_h = float(mdp.J(pol)), float(mdp.J(pol, horizon=200))
    assert abs(j_inf - j_h) <= 0.8 ** 200 / (1 - 0.8) + 1e-12        # truncation bound (rewards in [0, 1])
    assert mdp.optimal_J() >= j_inf
    d = mdp.stationary(pol)
    assert torch.allclose(d.sum(), torch.tensor(1.0, dtype=torch.float64)) and bool((d > 0).all())
    traj = mdp.sample(pol, 3, torch.Generator().manual_seed(0))
    assert traj.obs.shape == (3, 200) and traj.steps == 600


def test_bad_arguments_raise_before_state() -> None:
    with pytest.raises(ValueError, match="n_actions"):
        TabularSoftmaxPolicy(3, 1)
    with pytest.raises(ValueError, match="gamma"):
        TabularMDP.random(3, 2, gamma=1.5)
    from descend.rl import NPGIGT

    mdp = TabularMDP.random(3, 2, seed=0)
    with pytest.raises(ValueError, match="batch_size"):
        NPGIGT(TabularSoftmaxPolicy(3, 2), mdp, batch_size=0)
    with pytest.raises(ValueError, match="lr"):
        NPGIGT(TabularSoftmaxPolicy(3, 2), mdp, lr=-1.0)


def test_gym_sampler_counts_complete_episodes() -> None:
    pytest.importorskip("gymnasium")
    from descend.rl.gym import GymSampler, make_policy

    s = GymSampler("CartPole-v1", num_envs=3)
    pol = make_policy(s)
    traj = s.sample(pol, 5, torch.Generator().manual_seed(0))
    assert traj.n == 5
    lengths = traj.mask.sum(-1)
    assert torch.equal(traj.returns(), lengths.double())          # CartPole: reward 1 per step
    assert traj.steps == int(lengths.sum())
    assert bool(traj.mask[:, 0].all())
    again = s.sample(pol, 5, torch.Generator().manual_seed(0))
    assert torch.equal(again.actions, traj.actions)                # a function of the generator's seed
    p = GymSampler("Pendulum-v1", num_envs=2)
    tp = p.sample(make_policy(p), 2, torch.Generator().manual_seed(0))
    assert tp.actions.shape == (2, 200, 1) and tp.steps == 400   # Pendulum's 200-step time limit
