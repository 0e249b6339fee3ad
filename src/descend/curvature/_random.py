"""Seeded probe vectors shared by the estimators (drawn on the CPU, so a seed gives the same probes on any device)."""

from __future__ import annotations

import torch
from torch import Tensor

from .operators import CurvatureOperator

Seed = int | torch.Generator
_DISTRIBUTIONS = ("rademacher", "gaussian")


def generator(seed: Seed) -> torch.Generator:
    """A CPU ``torch.Generator``: ``seed`` itself, or a new one seeded with the integer ``seed``."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def probes(op: CurvatureOperator, k: int, gen: torch.Generator, distribution: str = "rademacher") -> Tensor:
    """``op.dim x k`` random probes with ``E[z z^T] = I`` (Rademacher +-1 or standard Gaussian)."""
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(_DISTRIBUTIONS)}, got {distribution!r}")
    if distribution == "rademacher":
        z = torch.randint(0, 2, (op.dim, k), generator=gen, dtype=torch.int8).to(op.dtype) * 2 - 1
    else:
        z = torch.randn((op.dim, k), generator=gen, dtype=op.dtype)
    return z.to(op.device)
