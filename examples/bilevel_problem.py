"""A bilevel problem of your own: weighted ridge regression whose weights are tuned on validation data.

    python examples/bilevel_problem.py
"""

from __future__ import annotations

import torch

from descend.bilevel import BilevelProblem, LancBiO

g = torch.Generator().manual_seed(0)
A_train, A_val = torch.randn(40, 5, generator=g, dtype=torch.float64), torch.randn(40, 5, generator=g,
                                                                                   dtype=torch.float64)
w = torch.randn(5, generator=g, dtype=torch.float64)
b_train = A_train @ w + 0.3 * torch.randn(40, generator=g, dtype=torch.float64)
b_val = A_val @ w


def inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # ridge regression with penalties exp(x)
    return 0.5 * ((A_train @ y - b_train) ** 2).mean() + 0.5 * (x.exp() * y**2).sum()


def outer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # validation error of the inner solution
    return 0.5 * ((A_val @ y - b_val) ** 2).mean()


if __name__ == "__main__":
    problem = BilevelProblem(outer=outer, inner=inner, x0=torch.zeros(5, dtype=torch.float64),
                             y0=torch.zeros(5, dtype=torch.float64))
    result = LancBiO(problem).run(max_iter=100)
    first, last = result.history[0]["outer_value"], result.history[-1]["outer_value"]
    print(f"validation error {first:.4f} -> {last:.4f} after {len(result.history) - 1} LancBiO iterations "
          f"({int(result.history[-1]['hvp'])} Hessian-vector products); penalties exp(x) = {result.x.exp()}")
    assert last < 0.1 * first
