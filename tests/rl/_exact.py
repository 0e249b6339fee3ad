"""Shared pieces of the descend.rl tests: exact derivatives of a tabular MDP's objective."""

from __future__ import annotations

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
