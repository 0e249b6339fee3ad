"""Stochastic policies as torch modules: softmax (discrete actions) and Gaussian (continuous actions).

A policy maps a batch of observations to a distribution over actions.  The algorithms in :mod:`descend.rl` need
only two things from it, both batched over any leading shape:

* ``log_prob(obs, actions)`` — ``log π_θ(a | s)``, differentiable in the module's parameters;
* ``sample(obs, generator)`` — actions drawn with an explicit ``torch.Generator`` (so a run is a function of its
  seed; ``torch.distributions`` cannot take a generator).

Parameters are handled as one flat vector by the algorithms (see :class:`descend.rl.estimators.FlatPolicy`), so
any ``nn.Module`` body works: :class:`TabularSoftmaxPolicy` (one logit per state-action pair, the tabular
parametrization of Agarwal et al. 2021), ``SoftmaxPolicy.mlp`` (linear when ``hidden=()``), ``GaussianPolicy.mlp``
(state-independent log standard deviation, the Fisher-non-degenerate example of Fatkhullin et al. 2023).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from descend._validate import check_float, check_int

__all__ = ["GaussianPolicy", "Policy", "SoftmaxPolicy", "TabularSoftmaxPolicy", "mlp"]


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (), activation: type[nn.Module] = nn.Tanh) -> nn.Module:
    """A fully connected network ``in_dim → hidden… → out_dim`` (linear when ``hidden`` is empty).

    The output layer starts at zero, so every policy built on it starts uniform (softmax) or centred (Gaussian).
    """
    check_int("in_dim", in_dim, 1)
    check_int("out_dim", out_dim, 1)
    layers: list[nn.Module] = []
    d = in_dim
    for i, h in enumerate(hidden):
        check_int(f"hidden[{i}]", h, 1)
        layers += [nn.Linear(d, h), activation()]
        d = h
    head = nn.Linear(d, out_dim)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


class Policy(nn.Module):
    """Interface of a stochastic policy (see the module docstring)."""

    discrete: bool = True

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class SoftmaxPolicy(Policy):
    """``π_θ(a | s) = softmax(f_θ(s))_a`` for a network ``f_θ`` giving one logit per action."""

    discrete = True

    def __init__(self, logits: nn.Module) -> None:
        super().__init__()
        self.logits = logits

    @classmethod
    def mlp(cls, obs_dim: int, n_actions: int, hidden: Sequence[int] = ()) -> SoftmaxPolicy:
        """Softmax over an MLP of the observation (linear-softmax when ``hidden=()``)."""
        check_int("n_actions", n_actions, 2)
        return cls(mlp(obs_dim, n_actions, hidden))

    def log_probs_all(self, obs: Tensor) -> Tensor:
        """``log π(· | s)`` for every action: shape ``obs.shape[:-1] + (n_actions,)`` (tabular: ``obs.shape +``)."""
        return torch.log_softmax(self.logits(obs), dim=-1)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        lp = self.log_probs_all(obs)
        return lp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            cdf = self.log_probs_all(obs).exp().cumsum(-1)
            u = torch.rand((*cdf.shape[:-1], 1), generator=generator, dtype=cdf.dtype)
            a = (cdf[..., :-1] <= u).sum(-1)       # inverse CDF: cheaper than torch.multinomial per call
        return a


class TabularSoftmaxPolicy(SoftmaxPolicy):
    """Tabular softmax: ``θ ∈ R^{|S|×|A|}``, ``π_θ(a | s) ∝ exp θ_{s,a}``; observations are state indices."""

    def __init__(self, n_states: int, n_actions: int) -> None:
        check_int("n_states", n_states, 1)
        check_int("n_actions", n_actions, 2)
        table = nn.Embedding(n_states, n_actions)
        nn.init.zeros_(table.weight)
        super().__init__(table)
        self.n_states, self.n_actions = n_states, n_actions

    def log_probs_all(self, obs: Tensor) -> Tensor:
        return torch.log_softmax(self.logits(obs.long()), dim=-1)


class GaussianPolicy(Policy):
    """``π_θ(a | s) = N(μ_θ(s), diag(σ²))`` with a learned, state-independent ``log σ``."""

    discrete = False

    def __init__(self, mean: nn.Module, action_dim: int, log_std: float = 0.0) -> None:
        super().__init__()
        check_int("action_dim", action_dim, 1)
        check_float("log_std", log_std, -20.0, 5.0)
        self.mean = mean
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std)))

    @classmethod
    def mlp(cls, obs_dim: int, action_dim: int, hidden: Sequence[int] = (), log_std: float = 0.0) -> GaussianPolicy:
        """Gaussian whose mean is an MLP of the observation (linear when ``hidden=()``)."""
        return cls(mlp(obs_dim, action_dim, hidden), action_dim, log_std)

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        mu = self.mean(obs)
        z = (actions - mu) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, obs: Tensor, generator: torch.Generator | None = None) -> Tensor:
        with torch.no_grad():
            mu = self.mean(obs)
            noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            return mu + noise * self.log_std.exp()
