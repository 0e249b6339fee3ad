"""Anchor: descend.curvature against PyHessian 0.1 (Yao, Gholami, Keutzer, Mahoney 2020) on the same model/batch.

PyHessian draws its probes from torch's global RNG, so the two agree only within their estimators' variance:

* top eigenvalue: PyHessian's power iteration stops when the relative change of the Rayleigh quotient is below
  ``tol``; with ratio ``r = lambda_2 / lambda_1`` the remaining error is a geometric tail ``<= tol * lambda_1 *
  r^2 / (1 - r^2)`` (factor 4 safety for the asymptotic rate) -- compared with Lanczos at a tight tolerance;
* trace: both are unbiased, and the difference of two independent means is within 4 combined standard errors;
* density (SLQ): the tr(H) and tr(H^2) moments of the two quadratures within 4 combined standard errors (over
  their probe vectors), and the largest node of each run equals lambda_max (Lanczos converges there first;
  PyHessian's to ~1e-5 relative only, because it normalises vectors by ``||w|| + 1e-6``).

PyHessian 0.1's ``density`` calls ``torch.eig``, removed in torch 1.9+; the test supplies it for the symmetric
tridiagonal PyHessian passes (``torch.linalg.eigh`` in ``torch.eig``'s return format) -- that shim is the only
change to PyHessian's code path.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from descend.curvature import HVPOperator, spectral_density, top_eigenpairs, trace

from .conftest import Problem, make_problem

pyhessian = pytest.importorskip("pyhessian")


@pytest.fixture
def f64() -> Iterator[None]:  # PyHessian draws probes with the default dtype; the test model is float64
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def anchor() -> Problem:
    return make_problem(seed=1)


def _ph(p: Problem) -> object:
    return pyhessian.hessian(p.model, p.loss_fn, data=p.batch, cuda=False)


def test_top_eigenvalue(anchor: Problem, f64: None) -> None:
    torch.manual_seed(0)
    tol = 1e-6
    lam_ph = _ph(anchor).eigenvalues(maxIter=2000, tol=tol)[0][0]
    res = top_eigenpairs(HVPOperator(anchor.model, anchor.loss_fn, anchor.batch), 1, tol=1e-10)
    lam = torch.linalg.eigvalsh(anchor.hessian)
    lam1, lam2 = lam[-1].item(), max(lam[-2].item(), -lam[0].item())
    r2 = (lam2 / lam1) ** 2
    assert abs(lam_ph - res.eigenvalues[0].item()) <= 4 * tol * lam1 * r2 / (1 - r2)
    assert res.n_hvp < 60  # Lanczos at 1e-10 still needs few products on this 83-dim Hessian


def test_trace(anchor: Problem, f64: None) -> None:
    torch.manual_seed(0)
    samples = torch.tensor(_ph(anchor).trace(maxIter=200, tol=0.0))
    assert samples.numel() == 200
    ours = trace(HVPOperator(anchor.model, anchor.loss_fn, anchor.batch), "hutchinson", 200, seed=0)
    se_ph = samples.std().item() / 200 ** 0.5
    assert abs(samples.mean().item() - ours.estimate) <= 4 * (se_ph ** 2 + ours.std_error ** 2) ** 0.5
    pp = trace(HVPOperator(anchor.model, anchor.loss_fn, anchor.batch), "hutch++", 60, seed=0)
    exact = anchor.hessian.trace().item()
    assert abs(samples.mean().item() - exact) <= 4 * se_ph
    assert abs(pp.estimate - exact) < 4 * se_ph  # Hutch++ with 60 products vs PyHessian's 200-sample error bar


def test_density(anchor: Problem, f64: None, monkeypatch: pytest.MonkeyPatch) -> None:
    def eig(T: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        w, V = torch.linalg.eigh(T)  # T is PyHessian's symmetric Lanczos tridiagonal
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    monkeypatch.setattr(torch, "eig", eig, raising=False)
    torch.manual_seed(0)
    n_v, m = 12, 30
    nodes_ph, weights_ph = _ph(anchor).density(iter=m, n_v=n_v)
    nodes_ph_t, weights_ph_t = torch.tensor(nodes_ph), torch.tensor(weights_ph)
    ours = spectral_density(HVPOperator(anchor.model, anchor.loss_fn, anchor.batch), n_iter=m, n_vectors=n_v)
    dim = anchor.hessian.shape[0]
    lam_max = torch.linalg.eigvalsh(anchor.hessian)[-1].item()
    for power in (1, 2):
        a = dim * (weights_ph_t * nodes_ph_t ** power).sum(dim=1)
        b = dim * (ours.weights * ours.nodes ** power).sum(dim=1)
        se = (a.var().item() / n_v + b.var().item() / n_v) ** 0.5
        assert abs(a.mean().item() - b.mean().item()) <= 4 * se, power
        exact = torch.trace(torch.linalg.matrix_power(anchor.hessian, power)).item()
        assert abs(b.mean().item() - exact) <= 4 * (b.var().item() / n_v) ** 0.5
    # m = 30 Lanczos steps on an 83-dim Hessian: the largest Ritz value has converged to lambda_max (ours to
    # rounding).  PyHessian normalises by ``||w|| + 1e-6``, so its Lanczos vectors have norm ``1 - 1e-6 / beta_j``
    # (beta_j ~ 0.05-0.3 here) and its nodes carry a relative bias ~1e-5 (measured 1.4e-5): allowed 1e-4.
    assert (nodes_ph_t.max(dim=1).values - lam_max).abs().max().item() <= 1e-4 * lam_max
    assert (ours.nodes.max(dim=1).values - lam_max).abs().max().item() <= 1e-9 * lam_max
