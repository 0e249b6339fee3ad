"""Small test problems with known optima, and a driver that runs any registered optimizer on them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from descend.optim.registry import OptimizerSpec


@dataclass
class Problem:
    params: list[torch.nn.Parameter]
    loss: Callable[[], torch.Tensor]
    optimum: list[torch.Tensor] | None = None

    def distance(self) -> float:
        assert self.optimum is not None
        return math.sqrt(sum(float(((p.detach().double() - o.double()) ** 2).sum())
                             for p, o in zip(self.params, self.optimum, strict=True)))


def quadratic(dtype: torch.dtype = torch.float64, seed: int = 0) -> Problem:
    """Noiseless least squares: 0.5 mean((X W^T + b - Y)^2), W 3x5, b 3; strongly convex, optimum known."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(64, 5, generator=g, dtype=torch.float64)
    w_star = torch.randn(3, 5, generator=g, dtype=torch.float64)
    b_star = torch.randn(3, generator=g, dtype=torch.float64)
    Y = X @ w_star.T + b_star
    W = torch.nn.Parameter((0.1 * torch.randn(3, 5, generator=g, dtype=torch.float64)).to(dtype))
    b = torch.nn.Parameter((0.1 * torch.randn(3, generator=g, dtype=torch.float64)).to(dtype))
    Xd, Yd = X.to(dtype), Y.to(dtype)

    def loss() -> torch.Tensor:
        return 0.5 * ((Xd @ W.T + b - Yd) ** 2).mean()

    return Problem([W, b], loss, [w_star, b_star])


def rosenbrock(dtype: torch.dtype = torch.float64) -> Problem:
    """Sum over the rows of x (shape (2, 2)) of (1 - a)^2 + 100 (b - a^2)^2; optimum all ones."""
    x = torch.nn.Parameter(torch.tensor([[-1.2, 1.0], [-0.5, 1.5]], dtype=dtype))

    def loss() -> torch.Tensor:
        a, b = x[:, 0], x[:, 1]
        return ((1 - a) ** 2 + 100 * (b - a**2) ** 2).sum()

    return Problem([x], loss, [torch.ones(2, 2, dtype=torch.float64)])


def mixed(dtype: torch.dtype = torch.float64, seed: int = 0, matrix_only: bool = False) -> Problem:
    """A non-quadratic problem over a matrix, a bias, a 4-D conv-like kernel and a gain vector."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 6, generator=g, dtype=torch.float64)
    Y = torch.randn(32, 4, generator=g, dtype=torch.float64)
    C = torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)
    W = torch.nn.Parameter((0.3 * torch.randn(4, 6, generator=g, dtype=torch.float64)).to(dtype))
    b = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64).to(dtype))
    K = torch.nn.Parameter((0.3 * torch.randn(3, 2, 2, 2, generator=g, dtype=torch.float64)).to(dtype))
    s = torch.nn.Parameter((1 + 0.1 * torch.randn(5, generator=g, dtype=torch.float64)).to(dtype))
    Xd, Yd, Cd = X.to(dtype), Y.to(dtype), C.to(dtype)
    params = [W, K] if matrix_only else [W, b, K, s]

    def loss() -> torch.Tensor:
        out = torch.tanh(Xd @ W.T) + (0 if matrix_only else b)
        val = 0.5 * ((out - Yd) ** 2).mean() + 0.1 * ((K - Cd) ** 2).sum() + 0.01 * (K**4).sum()
        if not matrix_only:
            val = val + ((s - 2) ** 2 * torch.arange(1, 6, dtype=s.dtype)).sum() * 0.1
        return val

    return Problem(params, loss)


def step(spec: OptimizerSpec, opt: torch.optim.Optimizer, problem: Problem, t: int = 0, *,
         use_closure: bool = False) -> torch.Tensor | None:
    """Step ``t`` (0-based) on ``problem`` with the closure convention the spec asks for.

    Optimizers with a Sophia-style ``update_hessian()`` hook get it called after every 10th step, from the
    current gradient.
    """
    if spec.requires_closure:
        return opt.step(problem.loss)
    if use_closure:
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = problem.loss()
            loss.backward()
            return loss
        return opt.step(closure)
    opt.zero_grad()
    loss = problem.loss()
    loss.backward()
    opt.step()
    if hasattr(opt, "update_hessian") and (t + 1) % 10 == 0:
        opt.update_hessian()
    return loss


def scheduler(opt: torch.optim.Optimizer, kind: str, steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if kind == "constant":
        return None
    if kind == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    if kind == "linear":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, 1 - t / steps))
    raise ValueError(kind)
