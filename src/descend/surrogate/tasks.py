"""Offline-optimization tasks that need no downloads: synthetic oracles sampled into a low-score-biased data set.

Design-Bench (Trabucco et al., 2022) builds each offline task from a large pool of scored designs, hides the best
ones and hands the optimizer the rest; a method proposes ``k = 128`` designs, the hidden ground-truth oracle scores
them, and the reported number is the 100th percentile (the best of the ``k``) *normalised* by the pool:
``(y - y_min) / (y_max - y_min)`` with ``y_min, y_max`` the minimum and maximum over the full pool.  Here the pool is
``n_pool`` uniform samples of a box, the offline set is its bottom ``keep`` fraction (the design-bench convention of
removing the top part), and the oracles are closed-form, so scores are exact and the known optimum is reported too:

* ``branin``: the negated Branin-Hoo function on ``[-5, 10] x [0, 15]``, maximum ``-0.397887`` at three points.
* ``hartmann6``: the six-dimensional Hartmann function on ``[0, 1]^6``, maximum ``3.32237`` at
  ``(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)``.
* ``teacher``: a random two-layer tanh network ``R^d -> R`` on ``[-1, 1]^d`` (seeded); its maximum over the box is
  not known in closed form, so ``optimum`` is estimated by multi-start projected gradient ascent on the oracle.

All oracles are maximised; everything is float64 torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from descend._validate import check_choice, check_float, check_int

__all__ = ["TASKS", "OfflineTask", "branin", "hartmann6", "make_task", "teacher_oracle", "trained_mlp_problem"]

Oracle = Callable[[torch.Tensor], torch.Tensor]


def branin(x: torch.Tensor) -> torch.Tensor:
    """Negated Branin-Hoo ``-(x2 - 5.1 x1^2/(4 pi^2) + 5 x1/pi - 6)^2 - 10 (1 - 1/(8 pi)) cos x1 - 10``; rows of x."""
    x1, x2 = x[..., 0], x[..., 1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return -((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * torch.cos(x1) + 10)


_H_ALPHA = torch.tensor([1.0, 1.2, 3.0, 3.2], dtype=torch.float64)
_H_A = torch.tensor([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                     [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]], dtype=torch.float64)
_H_P = 1e-4 * torch.tensor([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                            [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]],
                           dtype=torch.float64)


def hartmann6(x: torch.Tensor) -> torch.Tensor:
    """Hartmann-6 ``sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2)`` (maximum 3.32237 on ``[0, 1]^6``)."""
    a, p, al = _H_A.to(x), _H_P.to(x), _H_ALPHA.to(x)
    inner = (a * (x.unsqueeze(-2) - p) ** 2).sum(-1)
    return (al * torch.exp(-inner)).sum(-1)


def teacher_oracle(dim: int, hidden: int = 32, seed: int = 0) -> Oracle:
    """A random two-layer network ``x -> v^T tanh(W x + b)`` with ``W ~ N(0, 2/d)``, ``v ~ N(0, 1/h)`` (seeded)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    w = torch.randn(hidden, dim, generator=g, dtype=torch.float64) * math.sqrt(2.0 / dim)
    b = torch.randn(hidden, generator=g, dtype=torch.float64) * 0.5
    v = torch.randn(hidden, generator=g, dtype=torch.float64) / math.sqrt(hidden)

    def oracle(x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ w.T.to(x) + b.to(x)) @ v.to(x)

    return oracle


@dataclass
class OfflineTask:
    """An offline data set ``(x, y)`` (the low-score part of a scored pool) and its hidden oracle.

    ``lower``/``upper``: the box of valid designs; ``y_min``/``y_max``: min/max of the *full* pool (the design-bench
    normalisation); ``optimum``: the oracle's maximum over the box (known or estimated, see the module docstring).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    oracle: Oracle
    lower: torch.Tensor
    upper: torch.Tensor
    y_min: float
    y_max: float
    optimum: float

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def normalized(self, y: torch.Tensor | float) -> torch.Tensor:
        """Design-bench normalised score ``(y - y_min) / (y_max - y_min)``: 1 = the best design of the full pool."""
        return (torch.as_tensor(y, dtype=torch.float64) - self.y_min) / (self.y_max - self.y_min)

    def score(self, designs: torch.Tensor) -> dict[str, float]:
        """Oracle-score proposed designs (clipped to the box): 100th/50th percentile, normalised and raw."""
        d = designs.detach().to(torch.float64).clamp(self.lower, self.upper)
        y = self.oracle(d)
        return {"p100": float(self.normalized(y.max())), "p50": float(self.normalized(y.median())),
                "raw_max": float(y.max()), "offline_best": float(self.normalized(self.y.max())),
                "optimum_normalized": float(self.normalized(self.optimum))}


def _estimate_max(oracle: Oracle, lower: torch.Tensor, upper: torch.Tensor, seed: int) -> float:
    g = torch.Generator().manual_seed(20_000 + seed)
    x = (lower + (upper - lower) * torch.rand(256, lower.numel(), generator=g, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.Adam([x], lr=0.02 * float((upper - lower).max()))
    for _ in range(500):
        opt.zero_grad()
        (-oracle(x).sum()).backward()
        opt.step()
        with torch.no_grad():
            x.copy_(torch.maximum(torch.minimum(x, upper), lower))
    with torch.no_grad():
        return float(oracle(x).max())


TASKS = ("branin", "hartmann6", "teacher")


def make_task(name: str, *, n_pool: int = 5000, keep: float = 0.5, seed: int = 0, dim: int = 8) -> OfflineTask:
    """Sample a pool of ``n_pool`` uniform designs, score it, keep the bottom ``keep`` fraction as the offline set.

    ``dim`` is used by ``teacher`` only.  The pool and the teacher network depend on ``seed``.
    """
    check_choice("name", name, TASKS)
    check_int("n_pool", n_pool, 20)
    check_float("keep", keep, 0.0, 1.0, low_open=True)
    check_int("dim", dim, 1, 1000)
    if name == "branin":
        lower = torch.tensor([-5.0, 0.0], dtype=torch.float64)
        upper = torch.tensor([10.0, 15.0], dtype=torch.float64)
        oracle: Oracle = branin
        optimum = -0.397887357729739
    elif name == "hartmann6":
        lower, upper = torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
        oracle, optimum = hartmann6, 3.322368011391339
    else:
        lower, upper = -torch.ones(dim, dtype=torch.float64), torch.ones(dim, dtype=torch.float64)
        oracle = teacher_oracle(dim, seed=seed)
        optimum = _estimate_max(oracle, lower, upper, seed)
    g = torch.Generator().manual_seed(seed)
    pool = lower + (upper - lower) * torch.rand(n_pool, lower.numel(), generator=g, dtype=torch.float64)
    y_pool = oracle(pool)
    order = torch.argsort(y_pool)
    n_keep = max(2, round(keep * n_pool))
    idx = order[:n_keep]
    return OfflineTask(name, pool[idx], y_pool[idx], oracle, lower, upper, float(y_pool.min()),
                       float(y_pool.max()), optimum)


def trained_mlp_problem(seed: int = 0, *, dim: int = 6, out: int = 3, hidden: int = 32, n_train: int = 1000,
                        train_steps: int = 200, white_box: bool = True, threshold: float = 0.0) -> Any:
    """A small MLP ``Φ: R^dim → R^out`` trained (Adam, MSE) on a random smooth teacher, wrapped as an
    :class:`~descend.surrogate.attack.NNProblem`: maximise ``f(y) = y_0 − 0.05 Σ_j y_j²`` (smooth; the quadratic
    keeps maximisers interior in output space) subject to ``c(y) = y_1 − threshold ≤ 0`` on ``[−2, 2]^dim``."""
    from .attack import NNProblem

    check_int("dim", dim, 1, 1000)
    check_int("out", out, 2, 1000)
    g = torch.Generator().manual_seed(30_000 + seed)
    w1 = torch.randn(dim, 16, generator=g, dtype=torch.float64) / math.sqrt(dim)
    w2 = torch.randn(16, out, generator=g, dtype=torch.float64)
    x = 4 * torch.rand(n_train, dim, generator=g, dtype=torch.float64) - 2
    y = torch.sin(x @ w1) @ w2 / 2
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                              torch.nn.Tanh(), torch.nn.Linear(hidden, out)).double()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(train_steps):
        opt.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        opt.step()
    net.requires_grad_(False)

    def f(yy: torch.Tensor) -> torch.Tensor:
        return yy[..., 0] - 0.05 * (yy**2).sum(-1)

    def c(yy: torch.Tensor) -> torch.Tensor:
        return yy[..., 1] - threshold

    lo = -2 * torch.ones(dim, dtype=torch.float64)
    return NNProblem(net, f, c, lo, -lo, white_box=white_box)
