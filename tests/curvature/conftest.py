"""Small float64 problems with dense Hessians (``torch.autograd.functional.hessian``) for the curvature tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.func import functional_call


@dataclass
class Problem:
    model: torch.nn.Module
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    batch: tuple[Tensor, Tensor]
    hessian: Tensor  # dense, dim x dim
    flat_loss: Callable[[Tensor], Tensor]  # loss as a function of the flat parameter vector
    flat_outputs: Callable[[Tensor], Tensor]  # model outputs as a function of the flat parameter vector


def make_problem(width: int = 10, n: int = 64, seed: int = 0, d_in: int = 4, d_out: int = 3) -> Problem:
    """A tanh MLP ``d_in -> width -> d_out`` with cross-entropy on random data, float64, slightly trained away
    from initialisation so the Hessian is indefinite with a few dominant directions (like real networks)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(d_in, width), torch.nn.Tanh(), torch.nn.Linear(width, d_out)).double()
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, d_out, (n,), generator=g)
    loss_fn = torch.nn.functional.cross_entropy
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    numels = [p.numel() for p in model.parameters()]

    def flat_outputs(flat: Tensor) -> Tensor:
        ps = [c.view(s) for c, s in zip(torch.split(flat, numels), shapes, strict=True)]
        return functional_call(model, dict(zip(names, ps, strict=True)), (x,))

    def flat_loss(flat: Tensor) -> Tensor:
        return loss_fn(flat_outputs(flat), y)

    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    H = torch.autograd.functional.hessian(flat_loss, flat0)
    return Problem(model, loss_fn, (x, y), 0.5 * (H + H.T), flat_loss, flat_outputs)


@pytest.fixture(scope="module")
def problem() -> Problem:
    return make_problem()
