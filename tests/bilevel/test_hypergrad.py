"""Hypergradients against closed forms: AID (CG, Neumann, Lanczos), ITD, nonsmooth fixed point and NSID."""

from __future__ import annotations

import itertools

import pytest
import torch

from descend.bilevel import QuadraticProblem, elastic_net, hypergradient
from descend.bilevel.linsolve import LanczosBasis, conjugate_gradient, lanczos_solve

from ..tolerances import accumulation_rtol, condition, inverse_root_rtol

DT = torch.float64


@pytest.fixture(scope="module")
def quad():
    p = QuadraticProblem(20, 15, rank=3, condition=10.0, seed=3)
    x = torch.randn(20, generator=torch.Generator().manual_seed(1), dtype=DT)
    return p, x, p.y_star(x), p.true_hypergradient(x)


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method, budgets", [
    ("cg", (2, 5, 10, 15)),
    ("lanczos", (2, 5, 10, 15)),
    ("neumann", (5, 20, 80, 320)),
    ("fixed_point", (5, 20, 80, 320)),
    ("itd", (5, 20, 80, 320)),
])
def test_error_shrinks_with_budget(quad, method, budgets):
    p, x, ys, true = quad
    y = torch.zeros_like(ys) if method == "itd" else ys
    errs = [_rel(hypergradient(p, x, y, method, steps=k).grad, true) for k in budgets]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] < (1e-8 if method in ("cg", "lanczos") else 1e-3), errs


def test_cg_and_lanczos_exact_at_dimension(quad):
    p, x, ys, true = quad
    for method in ("cg", "lanczos"):
        est = hypergradient(p, x, ys, method, steps=p.dim_y)
        assert _rel(est.grad, true) < 1e-10
        assert est.counts == {"grad_outer": 1, "grad_inner": 0, "hvp": p.dim_y, "jvp": 1}


def test_itd_truncation_error_shrinks(quad):
    p, x, ys, true = quad
    y0 = torch.zeros_like(ys)
    errs = [_rel(hypergradient(p, x, y0, "itd", steps=300, truncate=k).grad, true) for k in (1, 10, 40, 300)]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs
    est = hypergradient(p, x, y0, "itd", steps=300, truncate=40)
    assert est.counts["hvp"] == 40 and est.counts["grad_inner"] == 300


def test_nsid_error_shrinks(quad):
    p = QuadraticProblem(8, 8, rank=2, condition=4.0, n_samples=50, noise=0.05, seed=2)
    x = torch.ones(8, dtype=DT)
    ys, true = p.y_star(x), p.true_hypergradient(x)
    errs = []
    for k in (5, 50, 500):
        runs = [_rel(hypergradient(p, x, ys, "nsid", steps=k, eta=1.0, eta_decay=0.5, batch_size=10,
                                   seed=s).grad, true) for s in range(3)]
        errs.append(sum(runs) / len(runs))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[-1] < 0.01


def test_cg_runs_on_the_symmetric_system():
    """On an n-dim SPD system (condition 1e3), CG on A itself converges in n iterations (n products); CG on the
    normal equations (condition 1e6) does not, with the same number of products or even of iterations."""
    n = 25
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
    A = Q @ torch.diag(torch.linspace(1, 1e3, n, dtype=DT)) @ Q.T
    A = 0.5 * (A + A.T)
    b = torch.randn(n, generator=g, dtype=DT)
    calls = []

    def apply_A(v):
        calls.append(1)
        return A @ v

    v, it = conjugate_gradient(apply_A, b, steps=n)
    assert len(calls) == n and it == n
    assert float((A @ v - b).norm() / b.norm()) < 1e-8
    # normal equations AᵀA v = Aᵀ b: two products per iteration, so n/2 iterations for the same budget
    for iters in (n // 2, n):
        w, _ = conjugate_gradient(lambda u: A @ (A @ u), A @ b, steps=iters)
        assert float((A @ w - b).norm() / b.norm()) > 1e-2


def test_lanczos_subspace_solve_matches_dense():
    n, m = 12, 5
    g = torch.Generator().manual_seed(4)
    M = torch.randn(n, n, generator=g, dtype=DT)
    A = M @ M.T + n * torch.eye(n, dtype=DT)
    r = torch.randn(n, generator=g, dtype=DT)
    basis = LanczosBasis(r)
    for _ in range(m):
        basis.expand(lambda u: A @ u)
        basis.advance(reorthogonalize=True)
    Q = torch.stack(basis.Q[:m], 1)
    # reorthogonalised Lanczos keeps ||QᵀQ - I|| at a few m n eps; the tridiagonal matrix equals QᵀAQ up to
    # m n eps ||A||; solutions of these systems agree to n eps kappa (kappa(A) <= ~5 here) -- all bounds
    # far below 1e-8, the error of a basis that lost orthogonality or a wrong recurrence coefficient
    kappa, norm_a = condition(A), float(torch.linalg.matrix_norm(A, 2))
    torch.testing.assert_close(Q.T @ Q, torch.eye(m, dtype=DT), atol=accumulation_rtol(m * n), rtol=0)
    torch.testing.assert_close(basis.tridiagonal(), Q.T @ A @ Q, atol=accumulation_rtol(m * n) * norm_a, rtol=0)
    dense = Q @ torch.linalg.solve(Q.T @ A @ Q, Q.T @ r)  # Galerkin solution on span(Q)
    tol = inverse_root_rtol(kappa, n, 1.0) * m
    torch.testing.assert_close(basis.solve(r), dense, atol=tol * float(dense.abs().max()), rtol=tol)
    full = lanczos_solve(lambda u: A @ u, r, steps=n)
    expected = torch.linalg.solve(A, r)
    tol = inverse_root_rtol(kappa, n, 1.0) * n  # n steps without reorthogonalisation: errors add per step
    torch.testing.assert_close(full, expected, atol=tol * float(expected.abs().max()), rtol=tol)


def _elastic_net_truth(p, x):
    """Closed-form y* on its support (from a long proximal-gradient run) and the implicit hypergradient."""
    D = p.data
    X, t, Xv, tv = D["X_train"], D["t_train"], D["X_val"], D["t_val"]
    n, nv = X.shape[0], Xv.shape[0]
    a1, a2 = torch.exp(x)
    L = p.lipschitz(x)
    y = torch.zeros(X.shape[1], dtype=DT)
    for _ in range(5000):
        y = p.prox(x, y - (X.T @ (X @ y - t) / n + a2 * y) / L, 1 / L)
    S = y != 0
    XS = X[:, S]
    H = XS.T @ XS / n + a2 * torch.eye(int(S.sum()), dtype=DT)
    yS = torch.linalg.solve(H, XS.T @ t / n - a1 * torch.sign(y[S]))
    y = torch.zeros_like(y)
    y[S] = yS
    gS = Xv[:, S].T @ (Xv @ y - tv) / nv
    w = torch.linalg.solve(H, gS)
    # dyS/da1 = -H⁻¹ sign, dyS/da2 = -H⁻¹ yS; chain rule through a = exp(x)
    grad = torch.stack([-(w @ torch.sign(yS)) * a1, -(w @ yS) * a2])
    return y, grad


def test_nonsmooth_fixed_point_and_itd_match_elastic_net():
    p = elastic_net(n=120, d=30, effective_rank=10, n_informative=10, seed=0)
    x = torch.tensor([-3.0, -2.0], dtype=DT)
    ys, true = _elastic_net_truth(p, x)
    assert 0 < int((ys != 0).sum()) < 30  # a genuinely nonsmooth point
    errs = [_rel(hypergradient(p, x, ys, "fixed_point", steps=k).grad, true) for k in (5, 50, 500)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-6, errs
    itd = [_rel(hypergradient(p, x, torch.zeros_like(ys), "itd", steps=k).grad, true) for k in (50, 2000)]
    assert itd[1] < itd[0] and itd[1] < 1e-4, itd
    with pytest.raises(ValueError, match="prox"):
        hypergradient(p, x, ys, "cg")


@pytest.mark.slow
def test_nsid_on_elastic_net():
    p = elastic_net(n=200, d=30, effective_rank=10, n_informative=10, seed=0)
    x = torch.tensor([-3.0, -2.0], dtype=DT)
    ys, true = _elastic_net_truth(p, x)
    err = [sum(_rel(hypergradient(p, x, ys, "nsid", steps=k, eta=1.0, eta_decay=0.5, batch_size=100,
                                  seed=s).grad, true) for s in range(2)) / 2 for k in (10, 1000)]
    assert err[1] < 0.5 * err[0] and err[1] < 0.05, err
