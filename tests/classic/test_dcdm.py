"""Deep conjugate direction method (Kaneda et al., ICML 2023) on 2-D Poisson systems."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from descend.classic import dcdm
from descend.classic.sor import laplacian_2d

sla = pytest.importorskip("scipy.sparse.linalg")


def _scipy_cg_residuals(a: torch.Tensor, b: torch.Tensor, tol: float) -> list[float]:
    xs: list[np.ndarray] = []
    an, bn = a.numpy(), b.numpy()
    sla.cg(an, bn, rtol=tol, atol=0.0, maxiter=1000, callback=lambda xk: xs.append(xk.copy()))
    return [1.0] + [float(np.linalg.norm(bn - an @ xk) / np.linalg.norm(bn)) for xk in xs]


def test_poisson_matvec_and_modes():
    m = 8
    a = laplacian_2d(m)
    v = torch.randn(m * m, dtype=torch.float64)
    assert torch.allclose(dcdm.poisson_matvec(m)(v), a @ v, atol=1e-13)
    lam, vecs = dcdm.poisson_eigvecs(m)
    assert torch.allclose(a @ vecs, vecs * lam, atol=1e-12)
    assert torch.allclose(vecs.T @ vecs, torch.eye(m * m, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("m", [16, 32])
def test_identity_model_is_cg(m):
    a = laplacian_2d(m)
    b = dcdm.sample_rhs(m, 1, seed=123)[0]
    res = dcdm.dcdm(dcdm.poisson_matvec(m), b, lambda r: r, tol=1e-4, max_iter=500)
    ref = _scipy_cg_residuals(a, b, 1e-4)
    assert res.converged and res.iterations == len(ref) - 1
    # same Krylov iterates computed in a different order: agreement at round-off that grows slowly with k
    # (measured ≤ 2e-13 over 30 iterations, ≤ 4e-12 over all at m = 16)
    head = min(31, len(ref))
    rel = [abs(p - q) / q for p, q in zip(res.residuals[:head], ref[:head], strict=False)]
    assert max(rel) < 1e-9
    rel_all = [abs(p - q) / q for p, q in zip(res.residuals, ref, strict=False)]
    assert max(rel_all) < 1e-6


def test_exact_inverse_converges_in_one_iteration():
    m = 16
    ainv = torch.linalg.inv(laplacian_2d(m))
    b = dcdm.sample_rhs(m, 1, seed=5)[0]
    res = dcdm.dcdm(dcdm.poisson_matvec(m), b, lambda r: ainv @ r, tol=1e-4)
    assert res.iterations == 1 and res.residuals[-1] < 1e-10


def test_training_loss_is_zero_at_the_inverse():
    m = 8
    ainv = torch.linalg.inv(laplacian_2d(m))

    class Inverse(torch.nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v @ ainv.T

    b = dcdm.sample_rhs(m, 16, seed=1)
    assert float(dcdm.dcdm_loss(Inverse(), dcdm.poisson_matvec(m), b)) < 1e-24
    assert float(dcdm.dcdm_loss(torch.nn.Identity(), dcdm.poisson_matvec(m), b)) > 1e-3


def _trained_beats_cg(m: int, steps: int, channels: int, n_test: int) -> tuple[float, float]:
    model, losses = dcdm.train_dcdm_model(m, steps=steps, batch=16, n_train=1000, channels=channels, levels=2)
    assert losses[-1] < losses[0]
    mv = dcdm.poisson_matvec(m)
    test = dcdm.sample_rhs(m, n_test, seed=999)  # held out: other seed, same distribution as training
    it_d = [dcdm.dcdm(mv, b, model, tol=1e-4).iterations for b in test]
    it_c = [dcdm.cg(mv, b, tol=1e-4).iterations for b in test]
    return float(np.mean(it_d)), float(np.mean(it_c))


def test_small_trained_cnn_needs_fewer_iterations_than_cg():
    # reduced: 16×16 grid, 8 channels, 150 Adam steps (measured: 400 steps, 16 channels → 5.7 vs 34.7)
    dcdm_its, cg_its = _trained_beats_cg(16, steps=150, channels=8, n_test=8)
    assert dcdm_its < cg_its


@pytest.mark.slow
def test_full_size_trained_cnn_32():
    dcdm_its, cg_its = _trained_beats_cg(32, steps=600, channels=16, n_test=20)
    assert dcdm_its < 0.5 * cg_its


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"^tol must be in \(0\.0, 1\.0\), got 0\.0$"):
        dcdm.dcdm(dcdm.poisson_matvec(4), torch.ones(16, dtype=torch.float64), lambda r: r, tol=0.0)
    with pytest.raises(ValueError, match="divisible"):
        dcdm.PoissonCNN(10, levels=2)
