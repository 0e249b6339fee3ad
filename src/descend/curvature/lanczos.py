"""Lanczos with full reorthogonalisation: top-k eigenpairs and stochastic Lanczos quadrature (SLQ) densities.

Papers:

* Behrooz Ghorbani, Shankar Krishnan, Ying Xiao (2019), "An Investigation into Neural Net Optimization via
  Hessian Eigenvalue Density", ICML 2019, arXiv:1901.10159 -- SLQ for the Hessian spectrum (their Sec. 2-3).
* Zhewei Yao, Amir Gholami, Kurt Keutzer, Michael W. Mahoney (2020), "PyHessian: Neural Networks Through the
  Lens of the Hessian", IEEE BigData 2020, arXiv:1912.07145 -- the reference implementation anchored against.
* Lanczos (1950); full reorthogonalisation as in Golub & Van Loan, "Matrix Computations", Alg. 10.1.1 /
  Sec. 10.3.1 (Gram-Schmidt applied twice, "twice is enough").

Algorithm (``m`` steps from a unit vector ``q_1``; cost ``m`` matrix-vector products)::

    for j = 1..m:  w = A q_j;  alpha_j = q_j^T w
                   w <- w - Q_j (Q_j^T w)   (twice; Q_j = [q_1..q_j]; this removes alpha_j q_j, beta_{j-1} q_{j-1})
                   beta_j = ||w||;  q_{j+1} = w / beta_j
    T_m = tridiag(beta, alpha, beta) = S diag(theta) S^T

* Top-k eigenpairs (:func:`top_eigenpairs`): Ritz pairs ``(theta_i, Q_m s_i)``; the residual of each is
  ``||A x_i - theta_i x_i|| = beta_m |s_{m,i}|`` and iteration stops once the k wanted residuals are
  ``<= tol * max_i |theta_i|``.  Since ``A`` is symmetric, an eigenvalue's error is then at most the residual
  (Weyl) and at most residual^2 / gap (Kato-Temple).  On breakdown (``beta_j ~ 0``: an invariant subspace) it
  continues from a new random vector orthogonal to ``Q_j`` (PyHessian does the same), and after such a restart
  it stops only once the new block's own best converged Ritz value cannot enter the top k -- so an exactly
  repeated eigenvalue is found with its multiplicity (one copy per block), which plain Lanczos cannot do.
* SLQ (:func:`spectral_density`, Ghorbani et al. 2019, eq. (2)-(4)): for Rademacher ``v`` with ``||v|| = 1``,
  ``v^T f(A) v ~ sum_i tau_i f(theta_i)`` with ``tau_i = s_{1,i}^2`` (Gauss quadrature, exact for polynomials of
  degree ``<= 2m - 1``); averaging over ``n_v`` vectors, the spectral density is
  ``phi(t) ~ (1/n_v) sum_l sum_i tau_i^l g_sigma(t - theta_i^l)`` and ``tr f(A) ~ dim * (1/n_v) sum_l sum_i
  tau_i^l f(theta_i^l)``.

Defaults: ``top_eigenpairs(k=1, tol=1e-6)``, at most ``min(dim, max(100, 20 k))`` products;
``spectral_density(n_iter=100, n_vectors=1)`` like PyHessian's ``density(iter=100, n_v=1)``.

Checked against dense Hessians (``torch.autograd.functional.hessian`` + ``torch.linalg.eigvalsh``) on small
MLPs in float64 and against PyHessian 0.1 (tests/curvature); tolerances are derived in the tests.

Deviations from PyHessian: PyHessian finds top eigenvalues by power iteration with deflation (one HVP per
iteration, convergence rate lambda_2 / lambda_1); here Lanczos (convergence governed by the gap relative to the
spread, much faster).  Its SLQ is the same Lanczos recurrence; the tridiagonal is diagonalised in float64 here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int
from ._random import Seed, generator, probes
from .operators import CurvatureOperator

__all__ = ["EigenResult", "LanczosResult", "SpectralDensity", "lanczos", "spectral_density", "top_eigenpairs"]

_WHICH = ("largest", "smallest", "magnitude")


@dataclass
class LanczosResult:
    """The tridiagonal ``T`` (``alpha`` diagonal, ``beta`` off-diagonal), the basis ``Q`` (``dim x m``) and the
    norm of the last residual ``beta_last`` (``||A q_m - ...||``, 0 if the Krylov space became invariant)."""

    alpha: Tensor
    beta: Tensor
    basis: Tensor
    beta_last: float
    n_hvp: int

    def tridiagonal(self) -> Tensor:
        m = self.alpha.shape[0]
        T = torch.diag(self.alpha.double())
        if m > 1:
            off = self.beta.double()
            T += torch.diag(off, 1) + torch.diag(off, -1)
        return T


def _orthogonalise(w: Tensor, R: Tensor) -> Tensor:
    """``w`` minus its projection on the rows of ``R`` (orthonormal), Gram-Schmidt applied twice."""
    if R.shape[0] == 0:
        return w
    w = w - R.T @ (R @ w)
    return w - R.T @ (R @ w)


def lanczos(op: CurvatureOperator, m: int, v0: Tensor | None = None, *, seed: Seed = 0,
            restart_on_breakdown: bool = False, stop: Callable[[LanczosResult], bool] | None = None) -> LanczosResult:
    """``m`` Lanczos steps with full reorthogonalisation (``m`` products; ``m`` is clipped to ``op.dim``).

    ``v0``: start vector (normalised here; default a seeded Rademacher vector).  On breakdown the run stops
    (the Krylov space is invariant, so the quadrature is exact) unless ``restart_on_breakdown``, which continues
    from a fresh random vector orthogonal to the basis (``beta = 0`` there).  ``stop(partial_result)`` is called
    after every step and ends the run early when it returns ``True``.
    """
    check_int("m", m, 1)
    gen = generator(seed)
    m = min(m, op.dim)
    start = op.n_calls
    q = probes(op, 1, gen)[:, 0] if v0 is None else v0.to(device=op.device, dtype=op.dtype).reshape(-1)
    if q.shape[0] != op.dim:
        raise ValueError(f"v0 must have {op.dim} entries, got {q.shape[0]}")
    nq = torch.linalg.vector_norm(q)
    if not bool(nq > 0):
        raise ValueError("v0 must be nonzero")
    q = q / nq
    Q = torch.empty((m, op.dim), dtype=op.dtype, device=op.device)  # rows: contiguous basis vectors
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    scale = torch.zeros((), dtype=op.dtype, device=op.device)
    beta_last = 0.0
    eps = torch.finfo(op.dtype).eps
    j = 0
    while True:
        Q[j] = q
        w = op.matvec(q)
        a = torch.dot(q, w)
        if not bool(torch.isfinite(w).all()):
            raise FloatingPointError(f"non-finite matrix-vector product at Lanczos step {j + 1}")
        alphas.append(a)
        w = _orthogonalise(w, Q[: j + 1])
        b = torch.linalg.vector_norm(w)
        scale = torch.maximum(scale, a.abs() + b)
        broke = bool(b <= 10 * eps * max(float(scale), 1e-300) * op.dim ** 0.5)
        beta_last = 0.0 if broke else float(b)
        if j + 1 == m:
            break
        if stop is not None and stop(LanczosResult(torch.stack(alphas), torch.stack(betas) if betas else
                                                   a.new_zeros(0), Q[: j + 1].T, beta_last, op.n_calls - start)):
            break
        if broke:
            if not restart_on_breakdown:
                break
            r = _orthogonalise(probes(op, 1, gen)[:, 0], Q[: j + 1])
            q = r / torch.linalg.vector_norm(r)
            betas.append(torch.zeros((), dtype=op.dtype, device=op.device))
        else:
            q = w / b
            betas.append(b)
        j += 1
    n = len(alphas)
    return LanczosResult(torch.stack(alphas), torch.stack(betas) if betas else Q.new_zeros(0), Q[:n].T,
                         beta_last, op.n_calls - start)


@dataclass
class EigenResult:
    """Eigenpairs (``eigenvalues`` ordered as requested, ``eigenvectors`` as columns, unit norm), each pair's
    residual ``||A x - lambda x||``, the products used and whether every residual met the tolerance."""

    eigenvalues: Tensor
    eigenvectors: Tensor
    residuals: Tensor
    n_hvp: int
    converged: bool
    seconds: float


def _select(theta: Tensor, k: int, which: str) -> Tensor:
    if which == "largest":
        return torch.argsort(theta, descending=True)[:k]
    if which == "smallest":
        return torch.argsort(theta)[:k]
    return torch.argsort(theta.abs(), descending=True)[:k]


def top_eigenpairs(op: CurvatureOperator, k: int = 1, *, which: str = "largest", tol: float = 1e-6,
                   max_iter: int | None = None, seed: Seed = 0, v0: Tensor | None = None) -> EigenResult:
    """The ``k`` extreme eigenpairs of ``op`` by Lanczos with full reorthogonalisation.

    ``which``: ``"largest"`` (algebraic; lambda_max = sharpness), ``"smallest"`` or ``"magnitude"``.
    Stops when each wanted Ritz residual is ``<= tol * max |theta|`` or after ``max_iter`` products
    (default ``min(dim, max(100, 20 k))``; ``converged`` says which).  Cost: ``n_hvp`` products.
    """
    check_int("k", k, 1, op.dim)  # at most the operator's dimension
    check_choice("which", which, _WHICH)
    check_float("tol", tol, 0.0, low_open=True)
    if max_iter is not None:
        check_int("max_iter", max_iter, k)
    t0 = time.perf_counter()
    limit = min(op.dim, max_iter if max_iter is not None else max(100, 20 * k))

    def ritz(res: LanczosResult) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        full, S = torch.linalg.eigh(res.tridiagonal())
        idx = _select(full, k, which)
        resid = res.beta_last * S[-1, idx].abs()
        return full[idx], S[:, idx], resid, full

    def worse(a: float, b: float, margin: float) -> bool:  # is Ritz value a strictly less wanted than b?
        if which == "largest":
            return a < b - margin
        if which == "smallest":
            return a > b + margin
        return abs(a) < abs(b) - margin

    def done(res: LanczosResult) -> bool:
        n = res.alpha.shape[0]
        if n == op.dim:
            return True
        if n < k or res.beta_last == 0.0:  # breakdown: the run must restart (the rest of the space is unseen)
            return False
        theta, _, resid, full = ritz(res)
        margin = tol * float(full.abs().max().clamp_min(1e-300))
        if not bool((resid <= margin).all()):
            return False
        zeros = (res.beta == 0).nonzero()
        if zeros.numel() == 0:
            return True
        # after a restart the earlier blocks are invariant subspaces; the last block explores their orthogonal
        # complement.  Done only once its own best converged Ritz value cannot enter the top k (otherwise the
        # complement may hold further copies of a repeated eigenvalue: run on to the next breakdown).
        b0 = int(zeros[-1]) + 1
        block = LanczosResult(res.alpha[b0:], res.beta[b0:], res.basis[:, b0:], res.beta_last, 0)
        bt, bS = torch.linalg.eigh(block.tridiagonal())
        best = int(_select(bt, 1, which)[0])
        if res.beta_last * float(bS[-1, best].abs()) > margin:
            return False
        return worse(float(bt[best]), float(theta[-1]), margin)

    res = lanczos(op, limit, v0, seed=seed, restart_on_breakdown=True, stop=done)
    theta, S, resid, _ = ritz(res)
    vecs = res.basis @ S.to(res.basis.dtype)
    converged = done(res)
    return EigenResult(theta.to(op.dtype), vecs, resid.to(op.dtype), res.n_hvp, converged, time.perf_counter() - t0)


@dataclass
class SpectralDensity:
    """SLQ quadrature: per probe vector ``l``, nodes ``theta_i^l`` and weights ``tau_i^l`` (rows sum to 1;
    rows are zero-padded where a run ended early).  ``dim`` is the operator's dimension."""

    nodes: Tensor
    weights: Tensor
    dim: int
    n_hvp: int
    seconds: float

    def expectation(self, f: Callable[[Tensor], Tensor]) -> float:
        """Estimate of ``tr f(A)`` = ``dim * mean_l sum_i tau_i^l f(theta_i^l)`` (Ghorbani et al. 2019, eq. 4)."""
        return float(self.dim * (self.weights * f(self.nodes)).sum(dim=1).mean())

    def trace(self) -> float:
        """Estimate of ``tr A``."""
        return self.expectation(lambda t: t)

    def density(self, grid: Tensor, sigma: float | None = None) -> Tensor:
        """Gaussian-smoothed density ``phi(t) = mean_l sum_i tau_i^l N(t; theta_i^l, sigma^2)`` on ``grid``.

        Default ``sigma``: 1 % of the node range.  It integrates to 1 (a normalised spectral density).
        """
        if sigma is None:
            span = float(self.nodes.max() - self.nodes.min())
            sigma = max(0.01 * span, 1e-12)
        check_float("sigma", sigma, 0.0, low_open=True)
        g = grid.double().reshape(-1, 1, 1)
        kern = torch.exp(-0.5 * ((g - self.nodes.double()) / sigma) ** 2) / (sigma * (2 * torch.pi) ** 0.5)
        return (kern * self.weights.double()).sum(dim=2).mean(dim=1)


def spectral_density(op: CurvatureOperator, n_iter: int = 100, n_vectors: int = 1, *,
                     seed: Seed = 0) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ghorbani et al. 2019): ``n_vectors`` runs of ``n_iter`` Lanczos steps
    from normalised Rademacher vectors.  Cost: about ``n_iter * n_vectors`` products (``n_hvp``)."""
    check_int("n_iter", n_iter, 1)
    check_int("n_vectors", n_vectors, 1)
    t0 = time.perf_counter()
    gen = generator(seed)
    start = op.n_calls
    m = min(n_iter, op.dim)
    nodes = torch.zeros((n_vectors, m), dtype=torch.float64)
    weights = torch.zeros((n_vectors, m), dtype=torch.float64)
    for ell in range(n_vectors):
        res = lanczos(op, m, probes(op, 1, gen)[:, 0], seed=gen)
        theta, S = torch.linalg.eigh(res.tridiagonal())
        r = theta.shape[0]
        nodes[ell, :r] = theta.cpu()
        weights[ell, :r] = (S[0, :] ** 2).cpu()
        if r < m:
            nodes[ell, r:] = theta[-1].cpu()
    return SpectralDensity(nodes, weights, op.dim, op.n_calls - start, time.perf_counter() - t0)
