"""Tolerances for tests that compare two different floating-point computations of the same quantity.

Two correct computations (an optimizer and a NumPy transcription, LAPACK's eigh and SciPy's Schur-Padé root,
MKL and OpenBLAS) round differently; how far apart they may land follows from the conditioning of what is
computed, not from what one machine happened to produce.  Each helper returns a *relative* bound (first-order
perturbation theory, constant 1, times ``safety``); a test uses it as ``rtol`` and, for entries near zero,
``atol = rtol * max|expected|``.  The bounds are far below what any wrong formula produces (those differ at
O(1) or at the size of a hyperparameter), so a tolerance derived here cannot hide a bug.
"""

from __future__ import annotations

import math

import numpy as np
import torch

EPS64 = float(torch.finfo(torch.float64).eps)  # 2.2e-16
EPS32 = float(torch.finfo(torch.float32).eps)  # 1.2e-7


def eps_of(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps)


def condition(matrix: np.ndarray | torch.Tensor) -> float:
    """2-norm condition number ``lambda_max / lambda_min`` of a symmetric positive definite matrix."""
    lam = np.linalg.eigvalsh(np.asarray(matrix, dtype=np.float64))
    return float(lam.max() / lam.min())


def inverse_root_rtol(kappa: float, n: int, exponent: float, eps: float = EPS64, safety: float = 2.0) -> float:
    """Relative forward error of ``A^(-p)`` for SPD ``A`` of size ``n`` and condition ``kappa``.

    A backward-stable eigendecomposition is exact for ``A + E``, ``||E|| <= n eps ||A||``; the Fréchet
    derivative of ``x^(-p)`` is bounded by ``p lambda_min^(-p-1)``, so relative to ``||A^(-p)|| =
    lambda_min^(-p)`` the error is at most ``p n eps kappa`` (for p = 1 the classical ``n eps kappa`` of an
    inverse).  ``safety = 2``: both computations compared carry such an error.
    """
    return safety * max(exponent, 1e-3) * n * eps * kappa


def regularised_root_step_rtol(lam_max: float, epsilon: float, n: int, exponent: float, steps: int,
                               eps: float = EPS64, safety: float = 2.0) -> float:
    """Relative error of ``(A + epsilon I)^(-p) g`` for a *singular* ``A`` (sum of a few ``g gᵀ``) and ``g``
    in its range -- the case of Shampoo / full-matrix AdaGrad in the first steps.

    Rounding (``n eps`` relative to ``||A|| = lam_max``) puts a component of size ``~ n eps |g|`` of ``g`` into
    the computed null space, where it is amplified by ``epsilon^(-p)`` instead of ``~ lam_max^(-p)``: a
    relative error ``n eps (lam_max / epsilon)^p`` per step, accumulated over ``steps`` steps.
    """
    return safety * steps * n * eps * (lam_max / epsilon) ** exponent


def accumulation_rtol(terms: int, eps: float = EPS64, growth: float = 1.0, safety: float = 4.0) -> float:
    """Relative error of a quantity built by ``terms`` rounded operations (a sum, a recurrence over steps):
    at most ``terms * eps`` per unit of ``growth`` (the factor by which the recurrence can amplify an earlier
    error; 1 for a contraction).  ``safety = 4``: two computations and a few operations per term."""
    return safety * terms * eps * growth


def sqrt_n_eps(n: int, eps: float = EPS64) -> float:
    """Typical (not worst-case) relative rounding of an n-term reduction, for statistical assertions."""
    return math.sqrt(n) * eps
