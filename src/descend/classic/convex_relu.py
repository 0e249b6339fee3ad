r"""Convex training of two-layer ReLU networks: hyperplane arrangements, the convex program, ADMM.

Papers: Mert Pilanci, Tolga Ergen (2020), "Neural Networks are Convex Regularizers: Exact Polynomial-time Convex
Optimization Formulations for Two-layer Networks", ICML 2020; Yatong Bai, Tanmay Gautam, Somayeh Sojoudi (2023),
"Efficient Global Optimization of Two-layer ReLU Networks: Quadratic-time Algorithms and Adversarial Training",
SIAM J. Math. Data Sci. (arXiv 2201.01965), Algorithm 3.1 (ADMM).  Reference code read: ``Bai-YT/Convex-NN-Training``
(cvxpy baseline), ``zachary-shah/admmNN`` (an independent ADMM reimplementation).

Nonconvex problem (width :math:`m`, data :math:`X \in \mathbb R^{n\times d}` with a bias column):

.. math::  p^* = \min_{u_j, \alpha_j} \tfrac12 \|\textstyle\sum_j (X u_j)_+ \alpha_j - y\|^2
           + \tfrac\beta2 \sum_j (\|u_j\|^2 + \alpha_j^2).

Convex program over the arrangement patterns :math:`D_i = \mathrm{diag}(1[X g_i \ge 0])`, :math:`i = 1..P`:

.. math::  \min_{v_i, w_i} \tfrac12 \|\textstyle\sum_i D_i X (v_i - w_i) - y\|^2 + \beta \sum_i (\|v_i\| + \|w_i\|)
           \quad \text{s.t. } (2D_i - I) X v_i \ge 0,\; (2D_i - I) X w_i \ge 0,

equal to :math:`p^*` when all patterns are used and :math:`m \ge` the number of nonzero blocks.  Recovery:
:math:`u = v_i/\sqrt{\|v_i\|},\ \alpha = \sqrt{\|v_i\|}` (and :math:`-\sqrt{\|w_i\|}` for :math:`w_i`).

ADMM (Bai et al. Algorithm 3.1), :math:`u = (v_i, w_i)_i`, :math:`Fu = \sum_i D_i X (v_i - w_i)`,
:math:`Gu = ((2D_i - I) X v_i, (2D_i - I) X w_i)_i`, copy :math:`\tilde v`, slack :math:`s \ge 0`, scaled duals
:math:`\lambda, \nu`:

.. math::
    u &\leftarrow (I + F^\top F/\rho + G^\top G)^{-1}\,(F^\top y/\rho + \tilde v - \lambda + G^\top (s - \nu)) \\
    \tilde v &\leftarrow \text{group-soft-threshold}(u + \lambda,\ \beta/\rho) \qquad
    s \leftarrow \max(Gu + \nu, 0) \\
    \lambda &\leftarrow \lambda + \tfrac\gamma\rho (u - \tilde v) \qquad \nu \leftarrow \nu + \tfrac\gamma\rho (Gu - s)

The u-system is solved exactly and cheaply: :math:`G^\top G` is block diagonal with every block :math:`X^\top X`
(:math:`(2D_i - I)^2 = I`), and :math:`F^\top F` has rank :math:`\le n`, so Woodbury leaves one :math:`n\times n`
Cholesky factor, :math:`\rho I + 2\,Q \odot (D^\top D)` with :math:`Q = X (I + X^\top X)^{-1} X^\top`, computed
once (the "quadratic-time" per iteration of the paper).

Sampled convex program solved by a gradient method: the constraints move into a smooth penalty
:math:`\tfrac\mu2 \sum_i \|((2D_i - I)Xv_i)_-\|^2 + \|((2D_i - I)Xw_i)_-\|^2` and the unconstrained objective is
minimised by accelerated proximal gradient (FISTA; the prox is the group soft-threshold) over ``n_samples``
sampled patterns (the paper's "SCP" trained by gradient methods; the penalty form is our choice, [mem]; Adam on an
exact hinge penalty was tried first and stalled 3–7× above the optimum, the group norms being nonsmooth).

Defaults: β = 1e-3; ADMM ρ = 0.01, γ/ρ = 1 (the admmNN defaults; the checks use β = 0.1, a sparse optimum, and
ρ = 0.3, the best of {0.01, 0.1, 0.3, 1, 3, 10} measured); exact enumeration of arrangements when d ≤ 4, else
``n_samples`` Gaussian directions, deduplicated.

Checked (``tests/classic/test_convex_relu.py``, cvxpy/Clarabel as the reference): exact enumeration gives the
general-position count :math:`2\sum_{k<d}\binom{n-1}{k}` of patterns; the network recovered from the cvxpy
solution attains the convex optimum to 1e-6 relative (measured 2.4e-9); ADMM converges to the cvxpy objective
(within 1e-2 after 500 iterations, residuals down by > 100×); Adam on the nonconvex network from random inits never
goes below the convex optimum, and the best of the runs is within 1e-2 of it.

The claim "within 1e-3 of the cvxpy objective in ≤ 500 iterations, residuals decaying geometrically" does **not**
reproduce (strict xfails record it; ``benchmarks/classic_admm_claim.py``, 3 seeds).  Spec instance (n = 40, d = 2,
β = 1e-3, all 1561 patterns): gap after 500 iterations 8.6e-2 / 1.8e-1 / 1.8e-1 at the default ρ = 0.01 and
4.3e-2 / 8.5e-2 / 4.9e-2 at ρ = 0.1, best over ρ ∈ {0.01, 0.02, 0.03, 0.05, 0.1} 1.4e-2 / 2.8e-2 / 8.3e-3
(ρ = 0.05), 2.2e-2 … 5.7e-2 with over-relaxation α = 1.8; none stays within 1e-3 over iterations ≤ 2000–3000 (the
gap is not monotone: seed 0 at ρ = 0.03 is within 1e-3 at iterations 1302–1500, then leaves it), and seed 0 at
ρ = 0.1 first stays within 1e-3 at iteration 12314.  Approximate program (P_s = 10
sampled patterns, n = 40, β = 1e-3, ρ = 0.01): 8.0e-3 / 1.3e-3 / 2.0e-2, within 1e-3 from iteration 1653 / 517 /
1925.  The residuals are never geometric: 50-iteration ratios 0.8–0.9 over iterations 50–450 and 0.86–0.95 per 100
iterations late in the run, slowing further (0.995 per 100 at iteration 12000).  Tried, no consistent gain (prototypes,
not shipped): Anderson acceleration (type II, memory 5–20) of the fixed-point map (gap 9.9e-4 → 9.3e-4 at n = 12,
β = 0.1); separate penalties for the ``u = ṽ`` and ``Gu = s`` constraints (rescaling X with β, 0.1–10×: best
8.8e-2 vs 4.3e-2 unscaled); unit-row scaling of G (P_s = 10: 8.0e-3 → 3.4e-3 on one seed, 1.3e-3 → 2.0e-3 on
another); the larger dual step γ/ρ = 1.6 (P_s = 10: 1.3e-3 → 7.6e-5 on one seed, 2.0e-2 unchanged on another; spec
instance, ρ = 0.05: 1.4e-2 → 1.8e-2).

Reference text: Bai et al.'s full text is stored in the ``pages`` corpus (its arXiv HTML, v2 2025) but only its
opening (title, abstract, contents) is readable there; Algorithm 3.1 as used here is the restatement in Feng, Shah,
Abraham, "Scalable ADMM for Convex Neural Networks" (``zachary-shah/admmNN``, ``writing/ADMM_NN_Paper.pdf``,
Algorithm 1) and its code.  Line by line it matches the iteration above: split ``[I; G] u = (ṽ, s)``, the u-system
:math:`I + F^\top F/\rho + G^\top G` factored once, group prox at β/ρ, slack clamp, both duals stepped by γ/ρ.  The
paper's ρ, γ and experiment setup could not be read; the reimplementation's defaults (ρ = γ = 0.01, β = 1e-3,
standardized X) are the ones used here, and the synthetic X is already standardized.

Options (off by default): over-relaxation ``relaxation=α`` and residual-balancing ``adaptive_rho`` (Boyd, Parikh,
Chu, Peleato, Eckstein 2011, §3.4.3 and §3.4.1; see :func:`admm`).  Run to convergence (residuals ≤ 1e-9) each
reaches the cvxpy optimum (objective to 1e-6, fitted values to 1e-5; ``tests/classic/test_admm_options.py``).
They shrink the 500-iteration gap (n = 12: 9.9e-4 → 1.2e-4 at α = 1.8; n = 40, ρ = 0.3: 2.2e-1 → 9.2e-3; adaptive ρ
rescues a poor ρ: n = 40, ρ = 0.03: 16 → 4.8e-2) but do not make the claim reproduce.

Deviations from the restated Algorithm 3.1: none in the iteration.  The stopping rule (relative primal and dual
residuals ≤ ``tol``) replaces its absolute 1e-3 tests, and the objective is reported at the sparse copy ṽ (which
satisfies the cone constraints only to the primal residual, so the gap is taken in absolute value).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "ADMMResult",
    "ConvexSolution",
    "admm",
    "arrangement_patterns",
    "constraint_violation",
    "convex_objective",
    "enumerate_arrangements",
    "network_objective",
    "nonconvex_adam",
    "recover_network",
    "regions_in_general_position",
    "sample_arrangements",
    "sampled_program",
    "solve_cvxpy",
    "synthetic_data",
]


def synthetic_data(n: int = 20, d: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Gaussian inputs with a bias column appended (n × (d+1)), targets from a random 3-neuron ReLU teacher plus
    noise."""
    if n < 2 or d < 1:
        raise ValueError(f"n must be ≥ 2 and d ≥ 1, got n={n}, d={d}")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    x = torch.cat([x, torch.ones(n, 1, dtype=dtype)], dim=1)
    teacher = torch.randn(d + 1, 3, generator=g, dtype=dtype)
    y = torch.relu(x @ teacher) @ torch.tensor([1.0, -1.0, 0.5], dtype=dtype)
    y = y + 0.1 * torch.randn(n, generator=g, dtype=dtype)
    return x, y


# --------------------------------------------------------------------------------------------- arrangements
def regions_in_general_position(n: int, d: int) -> int:
    """Number of cells of a central arrangement of n hyperplanes in general position in R^d."""
    return 2 * sum(math.comb(n - 1, k) for k in range(d))


def _unique_rows(patterns: Tensor) -> Tensor:
    out = torch.unique(patterns.to(torch.int8), dim=0)
    return out.to(torch.bool)


def enumerate_arrangements(x: Tensor, tol: float = 1e-10) -> Tensor:
    """All sign patterns 1[X g ≥ 0] (P × n, bool, deduplicated, all-false pattern included) of the central
    arrangement {g : x_iᵀ g = 0}, for rows of X in general position.

    Every cell of an essential central arrangement touches a ray g0 spanning the null space of some d−1 rows
    X_S; next to it, the rows in S take every sign combination and the other rows keep sign(x_iᵀ g0).  Cost
    C(n, d−1)·2^d, so only for small d.
    """
    n, d = x.shape
    if d < 2:
        raise ValueError(f"x must have at least 2 columns, got {d}")
    if d > 4:
        raise ValueError(f"exact enumeration is for d ≤ 4 columns (C(n, d-1)·2^d patterns), got d={d}")
    pats: list[Tensor] = []
    signs = torch.tensor(list(itertools.product([False, True], repeat=d - 1)), dtype=torch.bool)
    for subset in itertools.combinations(range(n), d - 1):
        idx = torch.tensor(subset)
        _, sv, vh = torch.linalg.svd(x[idx], full_matrices=True)
        g0 = vh[-1]
        if d - 1 > 0 and float(sv.min()) < tol * float(sv.max()):
            raise ValueError("rows of x are not in general position (a (d-1)-subset is rank deficient)")
        proj = x @ g0
        others = torch.ones(n, dtype=torch.bool)
        others[idx] = False
        if bool((proj[others].abs() < tol * float(proj.abs().max())).any()):
            raise ValueError("rows of x are not in general position (d rows on one hyperplane through 0)")
        for sigma in (1.0, -1.0):
            base = (sigma * proj) > 0
            block = base.repeat(signs.shape[0], 1)
            block[:, idx] = signs
            pats.append(block)
    return _unique_rows(torch.cat(pats))


def sample_arrangements(x: Tensor, n_samples: int, seed: int = 0) -> Tensor:
    """Patterns 1[X g ≥ 0] for ``n_samples`` Gaussian g (deduplicated; P × n bool)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be ≥ 1, got {n_samples}")
    g = torch.randn(x.shape[1], n_samples, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)
    return _unique_rows((x @ g >= 0).T)


def arrangement_patterns(x: Tensor, n_samples: int | None = None, seed: int = 0) -> Tensor:
    """Exact enumeration when ``n_samples`` is None, else sampling; the all-false pattern is dropped (its block
    contributes nothing to the fit and is zero at the optimum)."""
    pats = enumerate_arrangements(x) if n_samples is None else sample_arrangements(x, n_samples, seed)
    return pats[pats.any(dim=1)]


# --------------------------------------------------------------------------------------------- objectives
def _fit(x: Tensor, patterns: Tensor, v: Tensor, w: Tensor) -> Tensor:
    dmat = patterns.to(x.dtype)
    return (dmat * ((v - w) @ x.T)).sum(dim=0)


def convex_objective(x: Tensor, y: Tensor, patterns: Tensor, beta: float, v: Tensor, w: Tensor) -> float:
    """½‖Σ_i D_i X (v_i − w_i) − y‖² + β Σ_i (‖v_i‖ + ‖w_i‖); v, w are P × d."""
    r = _fit(x, patterns, v, w) - y
    return float(0.5 * r @ r + beta * (v.norm(dim=1).sum() + w.norm(dim=1).sum()))


def constraint_violation(x: Tensor, patterns: Tensor, v: Tensor, w: Tensor) -> float:
    """max_i of the negative parts of (2D_i − I) X v_i and (2D_i − I) X w_i (0 when feasible)."""
    sgn = 2.0 * patterns.to(x.dtype) - 1.0
    viol = torch.cat([(-(sgn * (v @ x.T))).clamp_min(0), (-(sgn * (w @ x.T))).clamp_min(0)])
    return float(viol.max()) if viol.numel() else 0.0


def recover_network(v: Tensor, w: Tensor, threshold: float = 0.0) -> tuple[Tensor, Tensor]:
    """First-layer weights U (d × m) and output weights α (m) from the nonzero blocks of (v, w)."""
    us: list[Tensor] = []
    alphas: list[float] = []
    for blocks, sign in ((v, 1.0), (w, -1.0)):
        norms = blocks.norm(dim=1)
        for i in torch.nonzero(norms > threshold).flatten().tolist():
            nrm = float(norms[i])
            us.append(blocks[i] / math.sqrt(nrm))
            alphas.append(sign * math.sqrt(nrm))
    if not us:
        return torch.zeros(v.shape[1], 0, dtype=v.dtype), torch.zeros(0, dtype=v.dtype)
    return torch.stack(us, dim=1), torch.tensor(alphas, dtype=v.dtype)


def network_objective(x: Tensor, y: Tensor, u: Tensor, alpha: Tensor, beta: float) -> Tensor:
    """½‖(XU)_+ α − y‖² + (β/2)(‖U‖_F² + ‖α‖²) (differentiable)."""
    r = torch.relu(x @ u) @ alpha - y
    return 0.5 * r @ r + 0.5 * beta * (u.pow(2).sum() + alpha.pow(2).sum())


# --------------------------------------------------------------------------------------------- reference
@dataclass(frozen=True)
class ConvexSolution:
    v: Tensor
    w: Tensor
    objective: float
    info: dict[str, Any] = field(default_factory=dict)


def solve_cvxpy(x: Tensor, y: Tensor, patterns: Tensor, beta: float = 1e-3, solver: str | None = None,
                **solver_options: Any) -> ConvexSolution:
    """The constrained convex program in cvxpy (the reference; ``pip install cvxpy``, imported lazily)."""
    import cvxpy as cp
    import numpy as np

    xn, yn = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    dmat = patterns.cpu().numpy().astype(float)
    p, d = dmat.shape[0], xn.shape[1]
    v, w = cp.Variable((d, p)), cp.Variable((d, p))
    xv, xw = xn @ v, xn @ w  # n × P
    fit = cp.sum(cp.multiply(dmat.T, xv - xw), axis=1)
    sgn = 2.0 * dmat.T - 1.0
    obj = 0.5 * cp.sum_squares(fit - yn) + beta * (cp.sum(cp.norm(v, 2, axis=0)) + cp.sum(cp.norm(w, 2, axis=0)))
    prob = cp.Problem(cp.Minimize(obj), [cp.multiply(sgn, xv) >= 0, cp.multiply(sgn, xw) >= 0])
    prob.solve(solver=solver, **solver_options)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"cvxpy did not solve the convex program: status {prob.status}")
    if v.value is None or w.value is None:
        raise RuntimeError("cvxpy returned no solution values")
    vt = torch.from_numpy(np.ascontiguousarray(np.asarray(v.value).T)).to(x.dtype)
    wt = torch.from_numpy(np.ascontiguousarray(np.asarray(w.value).T)).to(x.dtype)
    return ConvexSolution(vt, wt, float(prob.value), {"status": prob.status, "solver": prob.solver_stats.solver_name})


# --------------------------------------------------------------------------------------------- ADMM
@dataclass
class ADMMResult:
    v: Tensor
    w: Tensor
    objective: list[float]  # convex objective at the sparse iterate (ṽ) per iteration
    primal_residual: list[float]  # ‖(u − ṽ, Gu − s)‖ / max(‖u‖, ‖ṽ‖, 1e-300)
    dual_residual: list[float]  # ρ‖(ṽ − ṽ⁻) + Gᵀ(s − s⁻)‖ / max(ρ‖λ‖, 1e-300)
    violation: list[float]  # constraint violation of ṽ
    iterations: int
    converged: bool
    rho: list[float] = field(default_factory=list)  # ρ used in each iteration (changes only with adaptive_rho)


def admm(x: Tensor, y: Tensor, patterns: Tensor, beta: float = 1e-3, rho: float = 0.01, gamma_ratio: float = 1.0,
         max_iter: int = 500, tol: float = 0.0, relaxation: float = 1.0, adaptive_rho: bool = False,
         mu: float = 10.0, tau: float = 2.0, adapt_until: int | None = None) -> ADMMResult:
    """Bai–Gautam–Sojoudi Algorithm 3.1 on the convex program with the given patterns (see the module docstring).

    ``gamma_ratio`` is the dual step γ/ρ; ``tol`` > 0 stops once both relative residuals are ≤ tol.

    Two standard accelerations (Boyd, Parikh, Chu, Peleato, Eckstein 2011, "Distributed Optimization and Statistical
    Learning via the Alternating Direction Method of Multipliers", §3.4.3 and §3.4.1), both off by default; neither
    moves the fixed point (the optimum), only the path to it:

    * ``relaxation`` α ∈ (0, 2) (over-relaxation for α > 1; 1.5–1.8 suggested): the copy, slack and dual updates
      use ``α·(u, Gu) + (1 − α)·(ṽ, s)`` in place of ``(u, Gu)``.
    * ``adaptive_rho`` (residual balancing): after an iteration with absolute primal residual
      ``r = ‖(u − ṽ, Gu − s)‖`` and dual residual ``d = ρ‖Δṽ + GᵀΔs‖``, ``ρ ← τρ`` if ``r > μd`` and ``ρ ← ρ/τ``
      if ``d > μr``; the scaled duals are rescaled by ρ_old/ρ_new and the n×n Woodbury factor is rebuilt.
      ``adapt_until`` (iterations) freezes ρ afterwards, which restores the fixed-ρ convergence guarantee.
    """
    if beta <= 0 or rho <= 0:
        raise ValueError(f"beta and rho must be > 0, got beta={beta}, rho={rho}")
    if not 0 < gamma_ratio < (1 + math.sqrt(5)) / 2:
        raise ValueError(f"gamma_ratio must be in (0, golden ratio), got {gamma_ratio}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be ≥ 1, got {max_iter}")
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must be in (0, 2), got {relaxation}")
    if not mu > 1 or not tau > 1:
        raise ValueError(f"mu and tau must be > 1, got mu={mu}, tau={tau}")
    if adapt_until is not None and adapt_until < 0:
        raise ValueError(f"adapt_until must be ≥ 0 iterations or None, got {adapt_until}")
    n, d = x.shape
    p = patterns.shape[0]
    dm = patterns.to(x.dtype)  # P × n
    sg = 2.0 * dm - 1.0
    k0 = torch.eye(d, dtype=x.dtype) + x.T @ x
    k0_chol = torch.linalg.cholesky(k0)
    xk = torch.cholesky_solve(x.T, k0_chol)  # K0⁻¹ Xᵀ  (d × n)
    q = x @ xk  # X K0⁻¹ Xᵀ
    fk_ft = 2.0 * q * (dm.T @ dm)  # F K⁻¹ Fᵀ
    small_chol = torch.linalg.cholesky(rho * torch.eye(n, dtype=x.dtype) + fk_ft)

    def f_apply(uv: Tensor, uw: Tensor) -> Tensor:  # F u
        return (dm * ((uv - uw) @ x.T)).sum(dim=0)

    def ft_apply(z: Tensor) -> tuple[Tensor, Tensor]:  # Fᵀ z
        blk = (dm * z) @ x  # P × d
        return blk, -blk

    def g_apply(uv: Tensor, uw: Tensor) -> tuple[Tensor, Tensor]:
        return sg * (uv @ x.T), sg * (uw @ x.T)

    def gt_apply(sv: Tensor, sw: Tensor) -> tuple[Tensor, Tensor]:
        return (sg * sv) @ x, (sg * sw) @ x

    def k0_solve(bv: Tensor, bw: Tensor) -> tuple[Tensor, Tensor]:
        return torch.cholesky_solve(bv.T, k0_chol).T, torch.cholesky_solve(bw.T, k0_chol).T

    def u_solve(bv: Tensor, bw: Tensor) -> tuple[Tensor, Tensor]:
        # (K + FᵀF/ρ)⁻¹ b = K⁻¹b − K⁻¹Fᵀ (ρI + F K⁻¹ Fᵀ)⁻¹ F K⁻¹ b
        zv, zw = k0_solve(bv, bw)
        t = torch.cholesky_solve(f_apply(zv, zw)[:, None], small_chol)[:, 0]
        cv, cw = ft_apply(t)
        cv, cw = k0_solve(cv, cw)
        return zv - cv, zw - cw

    zeros_u = torch.zeros(p, d, dtype=x.dtype)
    zeros_s = torch.zeros(p, n, dtype=x.dtype)
    vv, vw = zeros_u.clone(), zeros_u.clone()
    lv, lw = zeros_u.clone(), zeros_u.clone()
    sv, sw = zeros_s.clone(), zeros_s.clone()
    nv, nw = zeros_s.clone(), zeros_s.clone()
    fty_v, fty_w = ft_apply(y / rho)
    thr = beta / rho
    out = ADMMResult(vv, vw, [], [], [], [], 0, False)
    a = relaxation
    for it in range(1, max_iter + 1):
        out.rho.append(rho)
        gv, gw = gt_apply(sv - nv, sw - nw)
        uv, uw = u_solve(fty_v + vv - lv + gv, fty_w + vw - lw + gw)
        old_vv, old_vw, old_sv, old_sw = vv, vw, sv, sw
        guv, guw = g_apply(uv, uw)
        if a != 1.0:  # over-relaxation: (u, Gu) → α(u, Gu) + (1 − α)(ṽ, s) in the copy, slack and dual updates
            hv, hw = a * uv + (1.0 - a) * vv, a * uw + (1.0 - a) * vw
            hgv, hgw = a * guv + (1.0 - a) * sv, a * guw + (1.0 - a) * sw
        else:
            hv, hw, hgv, hgw = uv, uw, guv, guw
        zv, zw = hv + lv, hw + lw
        vv = zv * (1.0 - thr / zv.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp_min(0.0)
        vw = zw * (1.0 - thr / zw.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp_min(0.0)
        sv, sw = (hgv + nv).clamp_min(0.0), (hgw + nw).clamp_min(0.0)
        lv, lw = lv + gamma_ratio * (hv - vv), lw + gamma_ratio * (hw - vw)
        nv, nw = nv + gamma_ratio * (hgv - sv), nw + gamma_ratio * (hgw - sw)
        r_p = math.sqrt(float((uv - vv).pow(2).sum() + (uw - vw).pow(2).sum() + (guv - sv).pow(2).sum()
                              + (guw - sw).pow(2).sum()))
        scale_p = max(math.sqrt(float(uv.pow(2).sum() + uw.pow(2).sum())), math.sqrt(float(
            vv.pow(2).sum() + vw.pow(2).sum())), 1e-300)
        dsv, dsw = gt_apply(sv - old_sv, sw - old_sw)
        r_d = rho * math.sqrt(float((vv - old_vv + dsv).pow(2).sum() + (vw - old_vw + dsw).pow(2).sum()))
        scale_d = max(rho * math.sqrt(float(lv.pow(2).sum() + lw.pow(2).sum())), 1e-300)
        out.objective.append(convex_objective(x, y, patterns, beta, vv, vw))
        out.primal_residual.append(r_p / scale_p)
        out.dual_residual.append(r_d / scale_d)
        out.violation.append(constraint_violation(x, patterns, vv, vw))
        out.iterations = it
        if tol > 0 and out.primal_residual[-1] <= tol and out.dual_residual[-1] <= tol:
            out.converged = True
            break
        if adaptive_rho and (adapt_until is None or it < adapt_until):
            new_rho = rho * tau if r_p > mu * r_d else rho / tau if r_d > mu * r_p else rho
            if new_rho != rho:  # scaled duals λ = y/ρ: rescale; rebuild what depends on ρ
                lv, lw, nv, nw = (t * (rho / new_rho) for t in (lv, lw, nv, nw))
                rho = new_rho
                small_chol = torch.linalg.cholesky(rho * torch.eye(n, dtype=x.dtype) + fk_ft)
                fty_v, fty_w = ft_apply(y / rho)
                thr = beta / rho
    out.v, out.w = vv, vw
    return out


# --------------------------------------------------------------------------------------------- gradient methods
def nonconvex_adam(x: Tensor, y: Tensor, width: int, beta: float = 1e-3, steps: int = 5000, lr: float = 1e-2,
                   seed: int = 0) -> tuple[list[float], Tensor, Tensor]:
    """Full-batch Adam on the nonconvex two-layer objective from a Gaussian init (scale 1/√d); returns the
    objective curve and the final (U, α)."""
    if width < 1 or steps < 1:
        raise ValueError(f"width and steps must be ≥ 1, got width={width}, steps={steps}")
    g = torch.Generator().manual_seed(seed)
    d = x.shape[1]
    u = (torch.randn(d, width, generator=g, dtype=x.dtype) / math.sqrt(d)).requires_grad_(True)
    alpha = (torch.randn(width, generator=g, dtype=x.dtype) / math.sqrt(width)).requires_grad_(True)
    opt = torch.optim.Adam([u, alpha], lr=lr)
    curve: list[float] = []
    for _ in range(steps):
        opt.zero_grad()
        loss = network_objective(x, y, u, alpha, beta)
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
    curve.append(float(network_objective(x, y, u.detach(), alpha.detach(), beta)))
    return curve, u.detach(), alpha.detach()


def sampled_program(x: Tensor, y: Tensor, patterns: Tensor, beta: float = 1e-3, penalty: float = 100.0,
                    steps: int = 2000) -> tuple[list[float], Tensor, Tensor]:
    """Accelerated proximal gradient (FISTA) on the sampled program with the cone constraints as a smooth
    penalty: min ½‖Fu − y‖² + (μ/2)‖(Gu)_−‖² + β Σ‖u_blk‖ (group soft-threshold prox, step 1/L with
    L = ‖F‖² + μ‖X‖²).  Returns the convex objective of the iterates and the final (v, w)."""
    if penalty < 0 or steps < 1:
        raise ValueError(f"penalty must be ≥ 0 and steps ≥ 1, got penalty={penalty}, steps={steps}")
    p, d = patterns.shape[0], x.shape[1]
    dm = patterns.to(x.dtype)
    sg = 2.0 * dm - 1.0

    def grad(v: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        r = (dm * ((v - w) @ x.T)).sum(dim=0) - y
        gf = (dm * r) @ x
        hv, hw = (sg * (v @ x.T)).clamp_max(0.0), (sg * (w @ x.T)).clamp_max(0.0)
        return gf + penalty * (sg * hv) @ x, -gf + penalty * (sg * hw) @ x

    # ‖F‖² by power iteration on FᵀF
    zv = torch.randn(p, d, generator=torch.Generator().manual_seed(0), dtype=x.dtype)
    zw = -zv.clone()
    for _ in range(50):
        fz = (dm * ((zv - zw) @ x.T)).sum(dim=0)
        zv, zw = (dm * fz) @ x, -((dm * fz) @ x)
        nrm = math.sqrt(float(zv.pow(2).sum() + zw.pow(2).sum()))
        zv, zw = zv / nrm, zw / nrm
    fz = (dm * ((zv - zw) @ x.T)).sum(dim=0)
    lip = 1.05 * float(fz @ fz) + penalty * float(torch.linalg.matrix_norm(x, 2)) ** 2
    thr = beta / lip

    def prox(z: Tensor) -> Tensor:
        return z * (1.0 - thr / z.norm(dim=1, keepdim=True).clamp_min(1e-300)).clamp_min(0.0)

    v = torch.zeros(p, d, dtype=x.dtype)
    w = torch.zeros_like(v)
    yv, yw, tk = v.clone(), w.clone(), 1.0
    curve: list[float] = []
    for _ in range(steps):
        gv, gw = grad(yv, yw)
        v_new, w_new = prox(yv - gv / lip), prox(yw - gw / lip)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        yv = v_new + ((tk - 1.0) / t_new) * (v_new - v)
        yw = w_new + ((tk - 1.0) / t_new) * (w_new - w)
        v, w, tk = v_new, w_new, t_new
        curve.append(convex_objective(x, y, patterns, beta, v, w))
    return curve, v, w


# ------------------------------------------------------------------------------------------------ registry hook
from . import registry  # noqa: E402

_PROBLEMS = {"synthetic": "n Gaussian 2-D points + bias, 3-neuron ReLU teacher + noise, β = 0.1, all arrangements "
                          "(quick n=12, full n=20)"}


def run(request: registry.RunRequest) -> list[registry.Trace]:
    import time

    spec = registry.get("convex-relu")
    spec.check_problem(request.problem)
    n = int(request.options.get("n", 12 if request.quick else 20))
    beta = float(request.options.get("beta", 0.1))
    rho = float(request.options.get("rho", 0.3))
    iters = int(request.options.get("iterations", 500))
    relaxation = float(request.options.get("relaxation", 1.0))
    adaptive = request.options.get("adaptive_rho", 0)
    if adaptive not in (0, 1):
        raise ValueError(f"adaptive_rho must be 0 or 1, got {adaptive!r}")
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must be in (0, 2), got {relaxation}")
    x, y = synthetic_data(n, 2, seed=request.seed)
    pats = arrangement_patterns(x)
    t0 = time.perf_counter()
    sol = solve_cvxpy(x, y, pats, beta)
    t_cvx = time.perf_counter() - t0
    request.say(f"convex-relu: {pats.shape[0]} patterns, cvxpy objective {sol.objective:.6g} in {t_cvx:.2f} s")
    setting: dict[str, registry.Scalar] = {"n": n, "beta": beta}
    traces = [registry.Trace("cvxpy", {"objective": [sol.objective]}, {"objective": sol.objective,
                                                                        "seconds": t_cvx}, setting)]
    t0 = time.perf_counter()
    res = admm(x, y, pats, beta, rho=rho, max_iter=iters, relaxation=relaxation, adaptive_rho=bool(adaptive))
    t_admm = time.perf_counter() - t0
    gap = abs(res.objective[-1] - sol.objective) / sol.objective
    extra = (f", α={relaxation}" if relaxation != 1.0 else "") + (f", adaptive ρ → {res.rho[-1]:.3g}" if adaptive
                                                                  else "")
    request.say(f"convex-relu ADMM ρ={rho}{extra}: relative gap {gap:.2e} after {iters} iterations "
                f"({t_admm:.2f} s)")
    admm_setting: dict[str, registry.Scalar] = {**setting, "rho": rho}
    if relaxation != 1.0:   # options off: the setting is the one stored before they existed (still cached)
        admm_setting["relaxation"] = relaxation
    if adaptive:
        admm_setting["adaptive_rho"] = 1
    traces.append(registry.Trace("admm", {"objective": res.objective, "primal_residual": res.primal_residual,
                                          "dual_residual": res.dual_residual},
                                 {"final_relative_gap": gap, "seconds": t_admm, "reference": sol.objective},
                                 admm_setting))
    nnz = int((sol.v.norm(dim=1) > 1e-6).sum() + (sol.w.norm(dim=1) > 1e-6).sum())
    curve, _, _ = nonconvex_adam(x, y, width=2 * nnz, beta=beta, steps=1500, lr=2e-2, seed=request.seed)
    request.say(f"convex-relu nonconvex Adam (width {2 * nnz}): {curve[-1]:.6g}")
    traces.append(registry.Trace("adam-nonconvex", {"objective": curve}, {"final": curve[-1]},
                                 {**setting, "width": 2 * nnz}))
    return traces


def figure(traces: Sequence[registry.Trace]) -> object:
    """Primal objective vs iteration (ADMM, nonconvex Adam) against the cvxpy optimum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ref = next((tr.summary["objective"] for tr in traces if tr.method == "cvxpy"), None)
    for tr in traces:
        if tr.method == "cvxpy":
            continue
        obj = tr.curve["objective"]
        if ref is not None:
            ax1.semilogy([max(abs(o - ref) / ref, 1e-12) for o in obj], label=tr.method)
        if "primal_residual" in tr.curve:
            ax2.semilogy(tr.curve["primal_residual"], label="primal residual")
            ax2.semilogy(tr.curve["dual_residual"], label="dual residual")
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("|objective − cvxpy| / cvxpy")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("ADMM iteration")
    ax2.set_ylabel("relative residual")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig


registry.register(registry.SolverSpec(
    name="convex-relu",
    title="Convex two-layer ReLU training: arrangements, cvxpy, ADMM (Alg. 3.1), nonconvex Adam",
    paper="Pilanci, Ergen (ICML 2020); Bai, Gautam, Sojoudi (SIMODS 2023), Efficient Global Optimization of "
          "Two-layer ReLU Networks",
    problems=_PROBLEMS,
    run=run,
    figure=figure,
    options={"n": "points (quick 12, full 20)", "beta": "weight decay β (0.1)", "rho": "ADMM ρ (0.3)",
             "iterations": "ADMM iterations (500)",
             "relaxation": "ADMM over-relaxation α in (0, 2) (1 = off; Boyd et al. suggest 1.5–1.8)",
             "adaptive_rho": "ADMM residual-balancing ρ, 0 or 1 (0 = off; μ = 10, τ = 2)"},
    figure_caption="Relative objective gap to the cvxpy optimum per iteration (ADMM, Adam) and ADMM's residuals",
), replace=True)
