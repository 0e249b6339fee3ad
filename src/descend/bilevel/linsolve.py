"""Matrix-free solvers for the linear system A v = b of implicit differentiation (A symmetric positive definite).

Only products ``apply_A(v)`` are used; vectors are tensors of any shape (inner products over all entries).

* :func:`conjugate_gradient` — CG (Hestenes & Stiefel, 1952) on A itself.  A = ∇²_yy g is symmetric, so CG
  applies directly; running it on the normal equations AᵀA v = Aᵀb (a common library default) squares the
  condition number and doubles the products per iteration.
* :func:`neumann` — truncated Neumann series v = α Σ_{i=0}^{K} (I − αA)^i b (Lorraine, Vicol & Duvenaud 2020;
  Ji, Yang & Liang 2021, stocBiO eq. (4)), i.e. K fixed-point iterations from 0.
* :class:`LanczosBasis` / :func:`lanczos_solve` — Lanczos tridiagonalisation and the subspace solve
  v = v̄ + Q T⁻¹ Qᵀ r (Yang, Gao & Yuan 2025, LancBiO, arXiv:2404.03331, Sec. 3, eq. (3.3)).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._validate import check_float, check_int

__all__ = ["LanczosBasis", "conjugate_gradient", "lanczos_solve", "neumann"]

Operator = Callable[[Tensor], Tensor]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.vdot(a.reshape(-1), b.reshape(-1))  # one fused pass, no temporary


def conjugate_gradient(apply_A: Operator, b: Tensor, steps: int, v0: Tensor | None = None,
                       tol: float = 0.0) -> tuple[Tensor, int]:
    """Conjugate gradient on A v = b from ``v0`` (0 when ``None``); returns (v, iterations run).

    Runs exactly ``steps`` iterations unless the residual reaches ``tol·‖b‖`` (``tol = 0``: never stops early,
    as AmIGO-CG's reference does) or vanishes.  Products: ``steps`` (+1 for the initial residual when ``v0``
    is given).  On an n-dimensional SPD system, CG in exact arithmetic terminates in at most n iterations.
    """
    steps = check_int("steps", steps, 0)
    tol = check_float("tol", tol, 0.0)
    if v0 is None:
        v = torch.zeros_like(b)
        r = -b
    else:
        if v0.shape != b.shape:
            raise ValueError(f"v0 must have shape {tuple(b.shape)}, got {tuple(v0.shape)}")
        v = v0.clone()
        r = apply_A(v) - b
    p = -r
    rr = _dot(r, r)
    stop = (tol * torch.linalg.vector_norm(b)) ** 2
    it = 0
    for it in range(1, steps + 1):
        if rr == 0 or (tol > 0 and rr <= stop):
            it -= 1
            break
        Ap = apply_A(p)
        pAp = _dot(p, Ap)
        if pAp <= 0:
            raise ValueError("conjugate_gradient: the operator is not positive definite along a search "
                             f"direction (pᵀAp = {float(pAp):.3g}); A = ∇²_yy g must be SPD at (x, y)")
        alpha = rr / pAp
        v = v + alpha * p
        r = r + alpha * Ap
        rr_new = _dot(r, r)
        p = -r + (rr_new / rr) * p
        rr = rr_new
    return v, it


def neumann(apply_A: Operator, b: Tensor, steps: int, step_size: float) -> Tensor:
    """v = α Σ_{i=0}^{K} (I − αA)^i b with K = ``steps`` products (converges to A⁻¹b when 0 < α < 2/L)."""
    steps = check_int("steps", steps, 0)
    step_size = check_float("step_size", step_size, 0.0, low_open=True)
    t = b
    s = b
    for _ in range(steps):
        t = t - step_size * apply_A(t)
        s = s + t
    return step_size * s


class LanczosBasis:
    """A Lanczos basis q₁, …, q_j and its tridiagonal matrix T_j, grown one vector at a time.

    ``expand(apply_A)`` applies A to the current vector q_j (u = A q_j − β_{j−1} q_{j−1}, α_j = q_jᵀu) and adds
    α_j (and β_{j−1}) to T; ``advance()`` then forms q_{j+1} = (u − α_j q_j)/β_j.  :meth:`solve` returns
    Q_j s with T_j s = Q_jᵀ r, using the j vectors that have an α.  No re-orthogonalisation (as in LancBiO):
    when A changes between expansions the basis is the *dynamic* one of the paper.
    """

    def __init__(self, q: Tensor) -> None:
        nq = torch.linalg.vector_norm(q)
        if not bool(nq > 0):
            raise ValueError("LanczosBasis: the starting vector must be nonzero")
        self.q = q / nq
        self.Q: list[Tensor] = [self.q]
        self.q_prev = torch.zeros_like(q)
        self.beta = torch.zeros((), dtype=q.dtype)
        self.alphas: list[Tensor] = []
        self.betas: list[Tensor] = []
        self._u: Tensor | None = None
        self.exhausted = False

    @property
    def order(self) -> int:
        """Order j of T (the number of vectors with an α)."""
        return len(self.alphas)

    def expand(self, apply_A: Operator) -> Tensor:
        """One product with the current A; returns α_j."""
        if self.exhausted:
            raise RuntimeError("LanczosBasis: the Krylov space is exhausted (β = 0); restart")
        u = apply_A(self.q) - self.beta * self.q_prev
        alpha = _dot(self.q, u)
        if self.alphas:
            self.betas.append(self.beta)
        self.alphas.append(alpha)
        self._u = u
        return alpha

    def advance(self, reorthogonalize: bool = False) -> Tensor:
        """Form the next vector q_{j+1} and β_j = ‖u − α_j q_j‖; returns β_j.

        ``reorthogonalize``: project q_{j+1} against every earlier vector (twice; static Hessians only).  The
        space is exhausted when β_j ≤ 10⁻¹² ‖u‖ (then the next :meth:`expand` raises).
        """
        if self._u is None:
            raise RuntimeError("LanczosBasis.advance() needs a preceding expand()")
        omega = self._u - self.alphas[-1] * self.q
        if reorthogonalize:
            for _ in range(2):
                for qi in self.Q:
                    omega = omega - _dot(qi, omega) * qi
        beta = torch.linalg.vector_norm(omega)
        scale = torch.linalg.vector_norm(self._u)
        self._u = None
        self.q_prev = self.q
        self.beta = beta
        if not bool(beta > 1e-12 * scale) or not bool(beta > torch.finfo(beta.dtype).tiny):
            self.exhausted = True
            return beta
        self.q = omega / beta
        self.Q.append(self.q)
        return beta

    def tridiagonal(self) -> Tensor:
        """T_j (j × j)."""
        a = torch.stack(self.alphas)
        T = torch.diag(a)
        if self.betas:
            b = torch.stack(self.betas)
            T = T + torch.diag(b, 1) + torch.diag(b, -1)
        return T

    def solve(self, r: Tensor) -> Tensor:
        """Q_j T_j⁻¹ Q_jᵀ r (dense solve of the small j × j system)."""
        j = self.order
        if j == 0:
            raise RuntimeError("LanczosBasis.solve() needs at least one expand()")
        Q = torch.stack(self.Q[:j])
        rhs = (Q * r.unsqueeze(0)).reshape(j, -1).sum(1)
        s = torch.linalg.solve(self.tridiagonal(), rhs)
        return torch.tensordot(s, Q, dims=1)


def lanczos_solve(apply_A: Operator, b: Tensor, steps: int, v0: Tensor | None = None,
                  reorthogonalize: bool = True) -> Tensor:
    """Approximately solve A v = b with ``steps`` Lanczos steps from the residual r = b − A v₀.

    v = v₀ + Q_m T_m⁻¹ Q_mᵀ r (the Galerkin solution on the Krylov space K_m(A, r); equal to CG's iterate in
    exact arithmetic).  Products: ``steps`` (+1 when ``v0`` is given); stops early when the space is
    exhausted.  With a fixed A full re-orthogonalisation (default) costs O(m² n) flops and keeps the basis
    orthonormal in floating point.
    """
    steps = check_int("steps", steps, 1)
    v = torch.zeros_like(b) if v0 is None else v0
    r = b if v0 is None else b - apply_A(v0)
    if not bool(torch.linalg.vector_norm(r) > 0):
        return v.clone()
    basis = LanczosBasis(r)
    for _ in range(steps):
        basis.expand(apply_A)
        basis.advance(reorthogonalize)
        if basis.exhausted:
            break
    return v + basis.solve(r)
