"""Shared checks for optimizers with a compiled fast path (``fused=True``, :mod:`descend.optim._fused`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from descend.optim import _fused

SHAPES = [(7, 9), (9,), (3, 2, 2, 2), (1,), (5, 1)]


def random_run(factory: Callable[..., torch.optim.Optimizer], hp: dict[str, Any], *, steps: int = 12,
               fused: bool, dtype: torch.dtype = torch.float64, hessian_every: int = 0,
               seed: int = 0) -> list[torch.Tensor]:
    """Parameters after ``steps`` steps on fixed random gradients (``update_hessian`` every ``hessian_every``)."""
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype)) for s in SHAPES]
    opt = factory(params, fused=fused, **hp)
    for t in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype)
        opt.step()
        if hessian_every and (t + 1) % hessian_every == 0:
            for p in params:
                p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype)
            opt.update_hessian()
    return [p.detach().clone() for p in params]


def assert_fused_matches_eager(factory: Callable[..., torch.optim.Optimizer], hp: dict[str, Any],
                               monkeypatch: Any, **kw: Any) -> None:
    """float64: the compiled path is used (for every tensor but the 1-element one) and agrees with eager."""
    calls: list[Callable[..., Any]] = []
    real = _fused.compiled

    def spy(fn: Callable[..., Any]) -> Callable[..., Any]:
        calls.append(fn)
        return real(fn)

    eager = random_run(factory, hp, fused=False, **kw)
    monkeypatch.setattr(_fused, "compiled", spy)
    fast = random_run(factory, hp, fused=True, **kw)
    assert calls, "the fused path never called the compiled function"
    for a, b in zip(fast, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)
