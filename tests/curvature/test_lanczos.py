"""Lanczos eigenpairs and SLQ against dense eigendecompositions (float64).

Tolerances come from symmetric perturbation theory, not from observed errors: a Ritz pair ``(theta, x)`` with
residual ``r = ||H x - theta x||`` has an eigenvalue within ``r`` of ``theta`` (Weyl / Bauer-Fike for symmetric
matrices) and, if the gap to the rest of the spectrum is ``delta``, ``sin angle(x, u) <= r / delta``
(Davis-Kahan).  Lanczos reports ``r``; the tests check it is honest (recomputed densely) and then use it.
"""

from __future__ import annotations

import pytest
import torch

from descend.curvature import DenseOperator, HVPOperator, lanczos, spectral_density, top_eigenpairs
from tests.tolerances import accumulation_rtol

from .conftest import Problem


@pytest.mark.parametrize("which", ["largest", "smallest", "magnitude"])
def test_top_eigenpairs_match_dense(problem: Problem, which: str) -> None:
    H = problem.hessian
    lam, U = torch.linalg.eigh(H)
    order = {"largest": torch.argsort(lam, descending=True), "smallest": torch.argsort(lam),
             "magnitude": torch.argsort(lam.abs(), descending=True)}[which]
    k = 3
    op = HVPOperator(problem.model, problem.loss_fn, problem.batch)
    res = top_eigenpairs(op, k, which=which, tol=1e-8)
    assert res.converged and res.n_hvp == op.n_calls < op.dim  # fewer products than the dimension
    rounding = accumulation_rtol(op.dim) * H.norm().item()
    for i in range(k):
        theta, x = res.eigenvalues[i].item(), res.eigenvectors[:, i]
        r_dense = (H @ x - theta * x).norm().item()
        assert r_dense <= res.residuals[i].item() + 1e3 * rounding  # the reported residual is honest
        assert abs(theta - lam[order[i]].item()) <= r_dense + rounding  # Weyl
        others = torch.cat([lam[order[:i]], lam[order[i + 1:]]])
        gap = (others - lam[order[i]]).abs().min().item()
        sin = max(1 - torch.dot(x, U[:, order[i]]).abs().item() ** 2, 0.0) ** 0.5  # cos may round above 1
        assert sin <= (r_dense + rounding) / gap + 1e-7  # Davis-Kahan (+ sqrt-rounding of 1 - cos^2)
    assert (res.eigenvectors.T @ res.eigenvectors - torch.eye(k, dtype=H.dtype)).abs().max() < 1e-10


def test_full_run_recovers_every_eigenvalue_and_restarts_on_breakdown() -> None:
    # 3 distinct eigenvalues, each 4 times: the Krylov space from one vector has dimension 3, so k = 5 needs
    # restarts from vectors orthogonal to the basis (a plain Lanczos run would break down after 3 steps).
    lam = torch.tensor([5.0, 2.0, -1.0], dtype=torch.float64).repeat_interleave(4)
    Qm, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    op = DenseOperator(Qm @ torch.diag(lam) @ Qm.T)
    res = top_eigenpairs(op, 5, tol=1e-10)
    assert torch.allclose(res.eigenvalues, torch.tensor([5.0, 5, 5, 5, 2], dtype=torch.float64), atol=1e-10)
    plain = lanczos(op, 12)
    assert plain.alpha.shape[0] == 3 and plain.beta_last == 0.0  # invariant subspace found, run stopped


def test_slq_density_nodes_weights_and_trace(problem: Problem) -> None:
    H = problem.hessian
    lam = torch.linalg.eigvalsh(H)
    op = DenseOperator(H)
    full = spectral_density(op, n_iter=op.dim, n_vectors=2, seed=3)
    # m = dim steps (with full reorthogonalisation): nodes are the eigenvalues where weights are non-negligible
    for ell in range(2):
        w = full.weights[ell]
        assert w.sum().item() == pytest.approx(1.0, abs=1e-12) and (w >= -1e-15).all()
        big = full.nodes[ell][w > 1e-8]
        dist = (big.reshape(-1, 1) - lam.reshape(1, -1)).abs().min(dim=1).values
        assert dist.max().item() <= 1e-9 * lam.abs().max().item()
    # the density integrates to 1
    grid = torch.linspace(lam.min().item() - 1, lam.max().item() + 1, 4001, dtype=torch.float64)
    phi = full.density(grid, sigma=0.02)
    assert torch.trapezoid(phi, grid).item() == pytest.approx(1.0, abs=1e-6)
    # dim * v^T H v over normalised Rademacher v equals z^T H z: unbiased for tr(H).  Across 200 vectors the
    # mean lies within 4 standard errors of the truth (a 6e-5 false-alarm rate for a Gaussian mean).
    many = spectral_density(op, n_iter=10, n_vectors=200, seed=0)
    per = op.dim * (many.weights * many.nodes).sum(dim=1)
    se = per.std().item() / 200 ** 0.5
    assert abs(many.trace() - H.trace().item()) <= 4 * se
    assert many.n_hvp == 200 * 10


def test_seeded_and_counted(problem: Problem) -> None:
    op = HVPOperator(problem.model, problem.loss_fn, problem.batch)
    a = spectral_density(op, n_iter=8, n_vectors=2, seed=5)
    b = spectral_density(op, n_iter=8, n_vectors=2, seed=torch.Generator().manual_seed(5))
    c = spectral_density(op, n_iter=8, n_vectors=2, seed=6)
    assert torch.equal(a.nodes, b.nodes) and not torch.equal(a.nodes, c.nodes)
    assert a.n_hvp == 16 and op.n_calls == 48


def test_bad_arguments(problem: Problem) -> None:
    op = DenseOperator(problem.hessian)
    with pytest.raises(ValueError, match=r"^k must be an integer in \[1, \d+\], got 0$"):
        top_eigenpairs(op, 0)
    with pytest.raises(ValueError, match=r"^which must be one of \(.*'largest'.*\), got 'middle'$"):
        top_eigenpairs(op, 1, which="middle")
    with pytest.raises(ValueError, match=r"^n_iter must be an integer in \[1, inf\], got 0$"):
        spectral_density(op, n_iter=0)
    with pytest.raises(ValueError, match="seed"):
        spectral_density(op, seed=1.5)  # type: ignore[arg-type]
