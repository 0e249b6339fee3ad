"""HVP / GNVP operators against dense Hessians and Jacobians (float64, small MLP).

Tolerance: the operator and ``torch.autograd.functional.hessian`` compute the same float64 sums in different
orders, so entries differ by rounding only: at most ``~ c * eps * ||H||_F * ||v||`` with ``c`` the number of
accumulated terms (a few hundred here).  ``accumulation_rtol(dim)`` (4 dim eps ~ 7e-14) is that bound; a wrong
formula (missing the second-order term, a transposed Jacobian, a batch weighting error) is off by O(1) relative.
"""

from __future__ import annotations

import pytest
import torch

from descend.curvature import DenseOperator, GNVPOperator, HVPOperator
from tests.tolerances import accumulation_rtol

from .conftest import Problem


def _close(a: torch.Tensor, b: torch.Tensor, scale: float, terms: int) -> None:
    atol = accumulation_rtol(terms) * scale
    assert (a - b).abs().max().item() <= atol, ((a - b).abs().max().item(), atol)


@pytest.mark.parametrize("method", ["auto", "func", "autograd"])
def test_hvp_matches_dense_hessian(problem: Problem, method: str) -> None:
    op = HVPOperator(problem.model, problem.loss_fn, problem.batch, method=method)
    H = problem.hessian
    assert op.dim == H.shape[0]
    scale = H.norm().item()
    g = torch.Generator().manual_seed(1)
    v = torch.randn(op.dim, generator=g, dtype=torch.float64)
    _close(op.matvec(v), H @ v, scale * v.norm().item(), op.dim)
    V = torch.randn(op.dim, 5, generator=g, dtype=torch.float64)
    _close(op.matmat(V), H @ V, scale * V.norm().item(), op.dim)
    assert op.n_calls == 6  # one per column
    _close(op.to_dense(), H, scale, op.dim)
    assert op.n_calls == 6 + op.dim


def test_loader_is_the_sample_weighted_mean(problem: Problem) -> None:
    x, y = problem.batch
    loader = [(x[:10], y[:10]), (x[10:40], y[10:40]), (x[40:], y[40:])]  # unequal batches: weights 10/64, ...
    H = problem.hessian
    for method in ("func", "autograd"):
        op = HVPOperator(problem.model, problem.loss_fn, loader, method=method)
        _close(op.to_dense(), H, H.norm().item(), 3 * op.dim)


def test_from_function_and_gradient(problem: Problem) -> None:
    flat0 = torch.cat([p.detach().reshape(-1) for p in problem.model.parameters()])
    op = HVPOperator.from_function(lambda ps: problem.flat_loss(ps[0]), [flat0])
    _close(op.to_dense(), problem.hessian, problem.hessian.norm().item(), op.dim)
    g_ref = torch.func.grad(problem.flat_loss)(flat0)
    model_op = HVPOperator(problem.model, problem.loss_fn, problem.batch)
    _close(model_op.gradient(), g_ref, g_ref.norm().item(), op.dim)
    assert model_op.loss() == pytest.approx(float(problem.flat_loss(flat0)), rel=1e-14)


@pytest.mark.parametrize("method", ["func", "autograd"])
def test_gnvp_is_jt_hl_j(problem: Problem, method: str) -> None:
    flat0 = torch.cat([p.detach().reshape(-1) for p in problem.model.parameters()])
    y = problem.batch[1]
    out = problem.flat_outputs(flat0).detach()
    J = torch.autograd.functional.jacobian(problem.flat_outputs, flat0).reshape(out.numel(), -1)
    HL = torch.autograd.functional.hessian(lambda o: problem.loss_fn(o.view_as(out), y), out.reshape(-1))
    G_ref = J.T @ HL @ J
    op = GNVPOperator(problem.model, problem.loss_fn, problem.batch, method=method)
    G = op.to_dense()
    _close(G, G_ref, G_ref.norm().item(), out.numel())
    # PSD for a convex loss (cross-entropy in the logits): lambda_min >= -rounding
    assert torch.linalg.eigvalsh(G).min().item() >= -accumulation_rtol(op.dim) * G.norm().item()
    # and not the Hessian (the MLP is nonlinear in its parameters): differs at O(||H||)
    assert (G - problem.hessian).norm().item() > 1e-3 * problem.hessian.norm().item()


def test_gnvp_equals_hessian_for_a_linear_model() -> None:
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(5, 2).double()
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    loss = torch.nn.functional.mse_loss
    H = HVPOperator(model, loss, (x, y)).to_dense()
    G = GNVPOperator(model, loss, (x, y)).to_dense()
    _close(G, H, H.norm().item(), 30)


def test_snapshot_frozen_params_and_buffers() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Tanh(),
                                torch.nn.Linear(4, 1)).double().eval()
    model[0].bias.requires_grad_(False)  # frozen: not a coordinate
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    op = HVPOperator(model, torch.nn.functional.mse_loss, (x, y))
    assert op.dim == sum(p.numel() for p in model.parameters() if p.requires_grad)
    before = op.to_dense()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # the operator is a snapshot: unchanged
    _close(op.to_dense(), before, before.norm().item(), op.dim)
    assert HVPOperator(model, torch.nn.functional.mse_loss, (x, y)).to_dense().sub(before).norm() > 1e-6


def test_dense_operator_and_errors(problem: Problem) -> None:
    op = DenseOperator(problem.hessian)
    with pytest.raises(ValueError, match="length"):
        op.matvec(torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="method"):
        HVPOperator(problem.model, problem.loss_fn, problem.batch, method="magic")
    with pytest.raises(ValueError, match="one-shot"):
        HVPOperator(problem.model, problem.loss_fn, iter([problem.batch]))
    with pytest.raises(ValueError, match="data must be"):
        HVPOperator(problem.model, problem.loss_fn, 3)
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.zeros(2, 3))


def test_closure_operator_matches_dense(problem: Problem) -> None:
    from descend.curvature import ClosureHVPOperator

    x, y = problem.batch
    params = list(problem.model.parameters())
    op = ClosureHVPOperator(lambda: problem.loss_fn(problem.model(x), y), params)
    H = problem.hessian
    _close(op.to_dense(), H, H.norm().item(), op.dim)
    assert op.loss_value == pytest.approx(float(problem.loss_fn(problem.model(x), y)), rel=1e-14)
    # a snapshot: the graph computes the products at construction time, or autograd refuses (version counter)
    # when a tensor it saved was changed in place -- never a mix of two points
    v = torch.ones(op.dim, dtype=torch.float64)
    before = op.matvec(v)
    with torch.no_grad():
        params[0].add_(1.0)  # the first weight is not saved by the graph (only x and tanh's output are)
    _close(op.matvec(v), before, H.norm().item() * op.dim ** 0.5, op.dim)
    with torch.no_grad():
        params[0].sub_(1.0)
        params[2].add_(1.0)  # the second weight is saved (backward to the hidden layer)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        op.matvec(v)
    with torch.no_grad():
        params[2].sub_(1.0)
