"""Shared pieces of the descend.rl tests: exact derivatives of a tabular MDP's objective, every trajectory."""

from __future__ import annotations

import itertools

import torch

from descend.rl import FlatPolicy, TabularMDP, TabularSoftmaxPolicy


def exact_grad_and_hvp(mdp: TabularMDP, theta: torch.Tensor, v: torch.Tensor,
                       horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``∇J_H(θ)`` and ``∇²J_H(θ) v`` by autograd through the exact (linear-algebra) objective."""
    policy = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    flat = FlatPolicy(policy)
    flat.set(theta)
    g = flat.grad(mdp.J(policy, horizon=horizon), create_graph=True)
    hv = flat.grad(g @ v)
    return g.detach(), hv


def exact_grad(mdp: TabularMDP, theta: torch.Tensor, horizon: int) -> torch.Tensor:
    policy = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    flat = FlatPolicy(policy)
    flat.set(theta)
    return flat.grad(mdp.J(policy, horizon=horizon))


def enumerate_trajectories(mdp: TabularMDP, policy: TabularSoftmaxPolicy
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (states, actions) sequence of ``mdp``'s horizon with its probability under ``policy``: the rows of
    ``states``/``actions`` (``[n, H]``) and ``probs`` (float64, summing to 1) — exact expectations by enumeration."""
    S, A, H = mdp.n_states, mdp.n_actions, mdp.horizon
    with torch.no_grad():
        pi = mdp.policy_table(policy)
    states, actions, probs = [], [], []
    for ss in itertools.product(range(S), repeat=H):
        for aa in itertools.product(range(A), repeat=H):
            p = mdp.rho[ss[0]]
            for h in range(H):
                p = p * pi[ss[h], aa[h]]
                if h + 1 < H:
                    p = p * mdp.P[ss[h], aa[h], ss[h + 1]]
            states.append(ss)
            actions.append(aa)
            probs.append(float(p))
    return torch.tensor(states), torch.tensor(actions), torch.tensor(probs, dtype=torch.float64)


def random_point(mdp: TabularMDP, seed: int = 0
                 ) -> tuple[TabularSoftmaxPolicy, FlatPolicy, torch.Tensor, torch.Tensor]:
    """A softmax policy of ``mdp`` set at random parameters θ (float64), and a random direction v."""
    policy = TabularSoftmaxPolicy(mdp.n_states, mdp.n_actions)
    flat = FlatPolicy(policy)
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(flat.dim, generator=gen, dtype=torch.float64)
    v = torch.randn(flat.dim, generator=gen, dtype=torch.float64)
    flat.set(theta)
    return policy, flat, theta, v
