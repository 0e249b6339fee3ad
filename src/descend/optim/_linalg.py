"""Shared numerical linear algebra for the matrix optimizers (Muon, SOAP, Shampoo, …).

Each section below belongs to one family of routines and says which optimizers use it.  Keep routines
pure (tensor in, tensor out, no optimizer state) so that they can be tested against a float64 oracle.
"""

from __future__ import annotations

import torch

__all__ = [
    "NS_COEFFICIENTS",
    "eigenbasis_descending",
    "eigh_retry_float64",
    "fast_bfloat16_matmul",
    "ldl_spd",
    "ldl_spd_solve",
    "lu_nopivot",
    "matrix_inverse_root",
    "newton_schulz",
    "newton_schulz_dtype",
    "newton_schulz_scalar",
    "refresh_eigenbasis_qr",
]


# ----------------------------------------------------------------------------------------------------
# Newton–Schulz orthogonalisation (Muon)
#
# Given G = U S Vᵀ (thin SVD), the odd matrix polynomial p(X) = a X + b (X Xᵀ) X + c (X Xᵀ)² X acts on the
# singular values only: p(U S Vᵀ) = U p(S) Vᵀ.  Starting from X₀ = G / ‖G‖_F (so every singular value
# lies in [0, 1]) and iterating k times gives U p^k(S/‖G‖_F) Vᵀ ≈ U Vᵀ, the orthogonal polar factor.
# The coefficients (3.4445, −4.7750, 2.0315) of Jordan et al. (2024) maximise the slope p'(0) = a
# under the constraint that the iterates stay bounded; they do not converge to 1 but oscillate in a band
# around it (measured in tests/optim/test_muon.py).

#: Jordan et al.'s quintic coefficients (a, b, c), as in torch.optim.Muon and KellerJordan/Muon.
NS_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

_NORMALIZATIONS = ("torch", "keller")


def fast_bfloat16_matmul(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are fast on ``device``: CUDA GPUs of compute capability >= 8.0, CPUs
    with AVX512-BF16 or AMX tiles.  Elsewhere (e.g. AVX2-only CPUs) torch emulates them — measured 30x slower
    than float32 at 512x512 on an AMD EPYC with AVX2, one thread."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except AttributeError:  # private probes: unknown -> the safe choice
            return False
    return False


def newton_schulz_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype | None:
    """Resolve a Newton–Schulz dtype: ``"auto"`` is bfloat16 (the references' choice) where bfloat16 matmuls
    are fast on ``device`` (:func:`fast_bfloat16_matmul`) and float32 elsewhere; anything else is returned."""
    if dtype == "auto":
        return torch.bfloat16 if fast_bfloat16_matmul(device) else torch.float32
    assert not isinstance(dtype, str), dtype
    return dtype


def newton_schulz(
    G: torch.Tensor,
    steps: int = 5,
    coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    *,
    dtype: torch.dtype | str | None = torch.bfloat16,
    normalization: str = "torch",
    eps: float = 1e-7,
) -> torch.Tensor:
    """Approximate the orthogonal polar factor ``U Vᵀ`` of a matrix ``G = U S Vᵀ`` by Newton–Schulz.

    Args:
        G: a matrix (2-D); ``G`` is not modified.
        steps: number of quintic iterations.
        coefficients: ``(a, b, c)`` of ``X ← a X + (b A + c A²) X`` with ``A = X Xᵀ``.
        dtype: dtype the iteration runs in (``None``: ``G``'s own dtype; ``"auto"``:
            :func:`newton_schulz_dtype`).  ``torch.bfloat16`` is what both references use; ``torch.float64``
            gives an exact oracle.
        normalization: how ``X₀`` is scaled: ``"torch"`` = ``X / max(‖X‖_F, eps)`` (torch.optim.Muon),
            ``"keller"`` = ``X / (‖X‖_F + eps)`` (KellerJordan/Muon).  The norm is taken after the cast
            to ``dtype``, as in both references.
        eps: the ``eps`` of the normalisation.

    Returns:
        A new tensor of ``G``'s shape in ``dtype``.  A tall ``G`` (rows > cols) is processed as ``Gᵀ`` so
        that the Gram matrix is the smaller one; the result is transposed back.  The operations (and their
        order: ``addmm`` for both polynomial products) are those of ``torch.optim.Muon``, so for equal
        ``dtype`` and ``normalization="torch"`` the result is bitwise equal to torch's.
    """
    if G.ndim != 2:
        raise ValueError(f"newton_schulz needs a 2-D matrix, got shape {tuple(G.shape)}")
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS!r}, got {normalization!r}")
    a, b, c = coefficients
    X = G.to(dtype=newton_schulz_dtype(dtype, G.device) or G.dtype, copy=True)
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    norm = X.norm()
    denom = norm.clamp(min=eps) if normalization == "torch" else norm + eps
    # ‖X‖² overflows (to inf, and X / inf = 0) once the entries exceed ~1e19 in float32/bfloat16.  The
    # polar factor does not depend on the scale of X, so such an X is divided by max|X| first; selected with
    # ``where`` (no host sync), an X whose norm is finite takes the reference's arithmetic bit for bit.
    amax = X.abs().amax()
    rescaled = X / amax.clamp(min=torch.finfo(X.dtype).tiny)
    X = torch.where(torch.isfinite(norm), X / denom, rescaled / rescaled.norm().clamp(min=eps))
    for _ in range(steps):
        A = X @ X.T
        B = torch.addmm(A, A, A, beta=b, alpha=c)
        X = torch.addmm(X, B, X, beta=a)
    return X.T if tall else X


def newton_schulz_scalar(
    s: torch.Tensor, steps: int = 5, coefficients: tuple[float, float, float] = NS_COEFFICIENTS
) -> torch.Tensor:
    """The map ``x ↦ p^k(x)`` that :func:`newton_schulz` applies to each normalised singular value."""
    a, b, c = coefficients
    x = s
    for _ in range(steps):
        x2 = x * x
        x = a * x + (b * x2 + c * x2 * x2) * x
    return x


# ----------------------------------------------------------------------------------------------------
# M-FAC (Frantar et al. 2021): unpivoted factorisation of the m x m window matrix  A = m·I + G Gᵀ / λ
#
# The reference factors A with an LU *without pivoting* (``torch.lu(pivot=False)``, CUDA only) and uses
# the pivots ``denom = diag(U)`` and the multipliers U/denom.  A is symmetric positive definite, so its
# unpivoted LU is A = L·U with L unit lower triangular and U = diag(d)·Lᵀ: the same numbers as the LDLᵀ
# factorisation, which the Cholesky factor C (A = C Cᵀ) gives directly as d = diag(C)², L = C / diag(C).
# LAPACK's Cholesky is O(m³/3) and stable for SPD matrices; :func:`lu_nopivot` (pure torch) is the literal
# factorisation of the reference, used as a fallback and as a test oracle.


def lu_nopivot(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Doolittle LU of the square matrix ``a`` without row exchanges: ``a = L @ U``.

    ``L`` is unit lower triangular, ``U`` upper triangular; runs in ``a.dtype``.  A zero pivot yields
    inf/nan entries, as an unpivoted LU must.  n - 1 vectorised rank-1 updates (O(n) Python steps), fine
    for the window sizes M-FAC uses.
    """
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"lu_nopivot needs a square matrix, got shape {tuple(a.shape)}")
    n = a.shape[0]
    work = a.clone()
    lower = torch.eye(n, dtype=a.dtype, device=a.device)
    for k in range(n - 1):
        col = work[k + 1:, k] / work[k, k]
        lower[k + 1:, k] = col
        work[k + 1:, k:] -= torch.outer(col, work[k, k:])
    return lower, torch.triu(work)


def ldl_spd(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L, d)`` with ``a = L diag(d) Lᵀ`` for a symmetric positive definite ``a`` (``L`` unit lower).

    Equals the unpivoted LU ``a = L U`` with ``U = diag(d) Lᵀ`` (up to rounding).  Uses the Cholesky
    factor in ``a.dtype``; if Cholesky fails (``a`` not numerically positive definite, e.g. a float32
    window with a tiny damping) it falls back to :func:`lu_nopivot`, which is what the reference computes.
    """
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        diag = torch.diagonal(chol)
        return chol / diag, diag * diag
    lower, upper = lu_nopivot(a)
    return lower, torch.diagonal(upper).clone()


def solve_shifted_psd(a: torch.Tensor, rhs: torch.Tensor, floor: float) -> torch.Tensor:
    """``a⁻¹ rhs`` for ``a = floor·I + (a positive semi-definite matrix)``, finite whatever the rounding.

    The LDLᵀ of :func:`ldl_spd` in ``a.dtype`` when its Cholesky succeeds (bitwise the same numbers as
    ``ldl_spd_solve(*ldl_spd(a), rhs)``); else the Cholesky of ``a`` in float64; else the eigendecomposition
    of ``a`` in float64 with the eigenvalues clamped at ``floor`` — a lower bound of ``a``'s spectrum in exact
    arithmetic that rounding (a float32 Gram matrix, or entries 1e20 times ``floor``) can violate, where an
    unpivoted LU divides by ~0 and returns inf/nan.  Non-finite entries of ``a`` are replaced by the
    largest finite float64 first (an overflowed Gram matrix).  Returns ``a.dtype``.
    """
    chol, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        diag = torch.diagonal(chol)
        return ldl_spd_solve(chol / diag, diag * diag, rhs)
    a64 = torch.nan_to_num(a.to(torch.float64), nan=0.0)
    rhs64 = rhs.to(torch.float64)
    chol, info = torch.linalg.cholesky_ex(a64)
    if int(info) == 0:
        return torch.cholesky_solve(rhs64.unsqueeze(-1), chol).squeeze(-1).to(a.dtype)
    vals, vecs = torch.linalg.eigh(a64)
    return (vecs @ ((vecs.mT @ rhs64) / vals.clamp(min=floor))).to(a.dtype)


def ldl_spd_solve(lower: torch.Tensor, d: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``(L diag(d) Lᵀ)⁻¹ rhs`` for a vector ``rhs``: forward substitution, scaling, back substitution."""
    y = torch.linalg.solve_triangular(lower, rhs.unsqueeze(-1), upper=False, unitriangular=True)
    y = y / d.unsqueeze(-1)
    return torch.linalg.solve_triangular(lower.mT, y, upper=True, unitriangular=True).squeeze(-1)


# ----------------------------------------------------------------------------------------------------
# SOAP (Vyas et al. 2024): eigenbasis of a Kronecker factor, and its power-iteration + QR refresh
#
# Both helpers take the working dtype explicitly: SOAP's reference runs them in float32 even for float64
# parameters (its trajectories carry that rounding); float64 is the tight-test option.


def eigenbasis_descending(mat: torch.Tensor, dtype: torch.dtype, *,
                          shift_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Eigenvectors of the symmetric matrix ``mat`` as columns, in descending eigenvalue order.

    ``mat`` is one ``n x n`` matrix or a batch ``(..., n, n)`` of them (one ``eigh`` call for the batch; on the
    CPU each matrix gets what it would get alone, tested; CUDA's batched ``eigh`` may use another algorithm for
    small matrices, so there it agrees to rounding only where eigenvalues are distinct).
    ``mat`` is cast to ``dtype`` and ``1e-30·I`` is added
    before ``torch.linalg.eigh``; the identity is built in ``shift_dtype`` (default ``dtype``), so the
    addition, and with it the decomposition, runs in the promoted dtype of the two (SOAP's reference builds
    it in torch's default dtype: with float64 as the default its "float32" eigh actually decomposes the
    float32-rounded factor in float64).  If eigh fails to converge it is retried in float64 -- for a batch,
    matrix by matrix, so that only the failing one takes the float64 path.  The result is cast back to
    ``mat.dtype``.
    """
    work = mat.to(dtype)
    n = work.shape[-1]
    eye_dtype = dtype if shift_dtype is None else shift_dtype
    try:
        vecs = torch.linalg.eigh(work + 1e-30 * torch.eye(n, dtype=eye_dtype, device=work.device))[1]
    except RuntimeError:  # torch.linalg.LinAlgError: no convergence
        if work.dim() > 2:
            return torch.stack([eigenbasis_descending(m, dtype, shift_dtype=shift_dtype) for m in mat.unbind(0)])
        shifted = work.to(torch.float64) + 1e-30 * torch.eye(n, dtype=eye_dtype, device=work.device)
        vecs = torch.linalg.eigh(shifted)[1].to(dtype)
    return torch.flip(vecs, [-1]).to(mat.dtype)


def refresh_eigenbasis_qr(mat: torch.Tensor, basis: torch.Tensor,
                          dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """One power-iteration step with re-orthogonalisation: an updated eigenbasis of ``mat``.

    With ``Q = basis`` (columns = current eigenvector estimates) the eigenvalue estimates are
    ``λ̂ = diag(Qᵀ M Q)``; the columns are re-ordered by descending ``λ̂`` and ``Q' = qr(M Q[:, order]).Q``.
    ``mat`` and ``basis`` are ``n x n`` or batches ``(..., n, n)`` (batched products and one batched QR).
    Everything runs in ``dtype``; returns ``(Q' cast to basis.dtype, order)`` (``order``: ``(..., n)``):
    callers re-order whatever is indexed by the eigenvectors (SOAP's second moment) with ``order``.
    """
    m = mat.to(dtype)
    q = basis.to(dtype)
    estimates = torch.diagonal(q.mT @ m @ q, dim1=-2, dim2=-1)
    order = torch.argsort(estimates, dim=-1, descending=True)
    ordered = torch.take_along_dim(q, order.unsqueeze(-2), dim=-1)  # q[..., :, order] per matrix
    new = torch.linalg.qr(m @ ordered)[0]
    return new.to(basis.dtype), order


# ----------------------------------------------------------------------------------------------------
# Shampoo (Gupta et al. 2018; Shi et al. 2023): inverse roots of a Kronecker factor, with Distributed
# Shampoo's epsilon rule (shift the spectrum only when its minimum is below ε).


def eigh_retry_float64(mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.linalg.eigh(mat)`` in ``mat``'s dtype; if it fails to converge, once more in float64.

    Returns ``(eigenvalues, eigenvectors)`` in ``mat.dtype``.  Raises if the float64 attempt fails too.
    """
    try:
        vals, vecs = torch.linalg.eigh(mat)
    except RuntimeError:  # torch.linalg.LinAlgError: no convergence
        if mat.dtype == torch.float64:
            raise
        vals, vecs = torch.linalg.eigh(mat.to(torch.float64))
    return vals.to(mat.dtype), vecs.to(mat.dtype)


def matrix_inverse_root(mat: torch.Tensor, exponent: float, *, epsilon: float,
                        dtype: torch.dtype | None = None) -> torch.Tensor:
    """``mat^(-exponent)`` of a symmetric positive semi-definite matrix, through its eigendecomposition.

    With ``mat = Q diag(λ) Qᵀ`` the eigenvalues are perturbed only if needed, as Distributed Shampoo's
    default ``PerturbationConfig(perturb_before_computation=True)`` does::

        if min(λ) < ε:  λ ← (λ - min(λ)) + ε        (otherwise ε is NOT added)
        result = Q diag(λ^(-exponent)) Qᵀ

    so a factor that rounding made slightly indefinite still gets a finite, positive definite root.
    Runs in ``dtype`` (default ``mat.dtype``; eigh is retried in float64 if it does not converge) and
    returns ``dtype``.  An eigh that fails in float64 too raises: the caller decides whether to keep an
    old root.
    """
    work = mat if dtype is None else mat.to(dtype)
    vals, vecs = eigh_retry_float64(work)
    lam_min = float(vals.min())
    if lam_min < epsilon:
        vals = vals - lam_min + epsilon
    return (vecs * vals.pow(-exponent).unsqueeze(0)) @ vecs.T
