"""A batch of trajectories as padded tensors, and the sampler interface every environment implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from .policies import Policy

__all__ = ["Sampler", "Trajectories"]


@dataclass
class Trajectories:
    """``B`` trajectories padded to length ``H``.

    ``obs``: ``(B, H, …)``; ``actions``: ``(B, H)`` (discrete) or ``(B, H, d)``; ``rewards``: ``(B, H)`` float64;
    ``mask``: ``(B, H)`` bool, True on the steps that happened (a trajectory ends at termination, truncation or
    the horizon).  ``gamma`` is the discount the trajectories are scored with.
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    gamma: float
    _rtg: Tensor | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of trajectories."""
        return int(self.rewards.shape[0])

    @property
    def steps(self) -> int:
        """Environment steps in the batch (only those that happened)."""
        return int(self.mask.sum().item())

    def returns(self) -> Tensor:
        """Undiscounted return of each trajectory, ``(B,)``."""
        return (self.rewards * self.mask).sum(-1)

    def discounted_rewards(self) -> Tensor:
        """``γ^h r_h`` (zero on padding), ``(B, H)`` float64."""
        return self.rewards * self.mask * _discounts(self.gamma, int(self.rewards.shape[1]))

    def reward_to_go(self) -> Tensor:
        """``Σ_{h≥t} γ^h r_h`` (discounted from time 0, as in GPOMDP), ``(B, H)`` float64 (computed once)."""
        if self._rtg is None:
            self._rtg = self.discounted_rewards().flip(-1).cumsum(-1).flip(-1)
        return self._rtg


_DISCOUNTS: dict[tuple[float, int], Tensor] = {}


def _discounts(gamma: float, horizon: int) -> Tensor:
    """``γ^h`` for ``h < horizon`` (cached: every iteration of every algorithm needs it)."""
    key = (gamma, horizon)
    if key not in _DISCOUNTS:
        if len(_DISCOUNTS) > 64:
            _DISCOUNTS.clear()
        _DISCOUNTS[key] = gamma ** torch.arange(horizon, dtype=torch.float64)
    return _DISCOUNTS[key]


class Sampler(Protocol):
    """Anything that draws ``n`` trajectories of a policy, reproducibly from ``generator``."""

    gamma: float

    def sample(self, policy: Policy, n: int, generator: torch.Generator) -> Trajectories: ...
