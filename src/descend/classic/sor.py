r"""Learning to relax: SOR with the relaxation parameter ω chosen online by a bandit.

Paper: Mikhail Khodak, Edmond Chow, Maria-Florina Balcan, Ameet Talwalkar (2024), "Learning to Relax: Setting
Solver Parameters Across a Sequence of Linear System Instances", ICLR 2024 (arXiv 2310.02246).  Reference code:
``mkhodak/learning-to-relax`` (MATLAB: ``solvers/sor.m``, ``solvers/omega_opt.m``, ``learners/TsallisINF.m``,
``learners/ChebCB.m``, ``scripts/learning.m``, ``scripts/contextual.m``).

SOR (``solvers/sor.m``), for :math:`A = L + D + U` and :math:`M_\omega = D/\omega + L`:

.. math::  x_{k+1} = x_k + M_\omega^{-1}(b - A x_k), \qquad
           \text{cost}(A, b, \omega) = \min\{k \ge 1 : \|b - A x_k\| < \epsilon \|b - A x_0\|\}

with :math:`x_0 = 0`, :math:`\epsilon = 10^{-8}`, capped at 10000 iterations.

Instance-optimal ω (``omega_opt.m``; Young's formula): :math:`\omega^*(A) = 1 + (\beta/(1+\sqrt{1-\beta^2}))^2`,
:math:`\beta = \rho(I - D^{-1}A)` the Jacobi spectral radius.

Tsallis-INF (the paper's bandit over the grid ``linspace(1, 1.95, 20)``, :math:`\eta_t = 2/\sqrt t`):

.. math::  p_{t,i} = 4\,(\eta_t(\hat L_i/s_t - x_t))^{-2}, \quad x_t < \min_i \hat L_i/s_t
           \text{ solving } \textstyle\sum_i p_{t,i} = 1; \qquad
           \hat L_{i_t} \mathrel{+}= (\ell_t - 1)/p_{t,i_t}, \quad s_{t+1} = \operatorname{mean}(\ell_{1..t}) - 1.

ChebCB (contextual; context :math:`c` = the diagonal shift): per arm, a box-constrained least-squares fit of the
normalised cost :math:`(\ell-1)/s` on Chebyshev polynomials :math:`T_0..T_{m-1}` of the rescaled context
(:math:`m = 6`), then inverse-gap weighting :math:`p_i = 1/(d + \eta_t(\hat y_i - \hat y_{i^*}))` for
:math:`i \ne i^* = \arg\min \hat y`, with the reference's time-varying :math:`\eta_t` and box bounds.

Problem (``scripts/learning.m``): :math:`A_t = \Delta_h + c_t I` with :math:`\Delta_h` the 5-point Laplacian on a
10×10 interior grid (``delsq(numgrid('S', 12))``), :math:`c_t = -0.15 + 0.6\,\mathrm{Beta}(0.5, 1.5)` ("high"
variance) or :math:`\mathrm{Beta}(2, 6)` ("low"), :math:`b_t \sim N(0, I)` radially truncated to
:math:`\|b\| \le \sqrt n`.

Checked (``tests/classic/test_sor.py``): the stencil SOR equals the dense ``M⁻¹`` iteration to round-off
(1e-12 relative) and gives the same iteration counts; Young's ω* from the numerical Jacobi radius equals the
closed form :math:`\beta = 4\cos(\pi/(m+1))/(4+c)` to 1e-12; Tsallis-INF's last-1000-instance mean cost is within
10 % of the best fixed grid ω on both variance regimes and its two most-played arms are within one grid step of
it; the probabilities sum to 1 to 1e-12 on every round.

Deviations from the reference:

* **Safeguarded normaliser.**  The reference finds :math:`x_t` with 20 plain Newton steps from :math:`x = -1`;
  ported literally this overshoots past :math:`\min_i \hat L_i/s_t` and the learner never concentrates.  Here
  Newton starts from the right end of the bracket :math:`[\min \hat L - 2\sqrt K/\eta, \min \hat L - 2/\eta]`
  (where :math:`\sum p \ge 1`); the function is convex and increasing on :math:`(-\infty, \min \hat L)`, so the
  iterates decrease monotonically to the root and never leave the bracket.
* ChebCB: the regret term uses the targets :math:`(\ell-1)/s` the regression is fitted to (the reference mixes
  :math:`\ell/s`), the box-constrained fit is an accelerated projected-gradient solve (the reference calls
  ``lsqlin``), and the ``resnorm`` correction of the reference's :math:`\eta_t` is dropped.
* Costs of the fixed-ω baselines are computed in one batched *wavefront* sweep (the lexicographic
  Gauss–Seidel order, anti-diagonals in parallel): the same arithmetic as the row-by-row sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int

__all__ = [
    "GRID",
    "REGIMES",
    "ChebCB",
    "RelaxationStudy",
    "SORResult",
    "TsallisINF",
    "jacobi_spectral_radius",
    "laplacian_2d",
    "optimal_omega",
    "run_relaxation_study",
    "sample_instances",
    "sor_iterations",
    "sor_solve",
    "stencil_sor_costs",
]

#: The paper's bandit action grid ``linspace(1, 1.95, 20)``.
GRID: tuple[float, ...] = tuple(float(w) for w in np.linspace(1.0, 1.95, 20))
#: Beta parameters of the shift distribution ``c = -0.15 + 0.6 Beta(a, b)`` for each variance regime.
REGIMES: dict[str, tuple[float, float]] = {"high": (0.5, 1.5), "low": (2.0, 6.0)}
CONTEXT_RANGE: tuple[float, float] = (-0.15, 0.65)


def _check_omega(omega: float) -> None:
    check_float("omega", omega, 0.0, 2.0, low_open=True, high_open=True)


def _check_tol(tol: float, max_iter: int) -> None:
    check_float("tol", tol, 0.0, 1.0, low_open=True, high_open=True)
    check_int("max_iter", max_iter, 1)


def laplacian_2d(m: int, shift: float = 0.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """Dense 5-point Laplacian (4 on the diagonal, -1 to each neighbour) on an ``m``×``m`` interior grid, plus
    ``shift``·I; lexicographic order (``delsq(numgrid('S', m + 2))`` up to the grid's transposition)."""
    check_int("m", m, 1)
    t = 2.0 * torch.eye(m, dtype=dtype) - torch.diag(torch.ones(m - 1, dtype=dtype), 1)
    t = t - torch.diag(torch.ones(m - 1, dtype=dtype), -1)
    eye = torch.eye(m, dtype=dtype)
    return torch.kron(t, eye) + torch.kron(eye, t) + shift * torch.eye(m * m, dtype=dtype)


def jacobi_spectral_radius(a: Tensor) -> float:
    """ρ(I − D⁻¹A) for a symmetric ``a`` with positive diagonal (through the symmetric D^{-1/2}AD^{-1/2})."""
    d = torch.diagonal(a)
    if bool((d <= 0).any()):
        raise ValueError("a must have a positive diagonal")
    s = d.rsqrt()
    j = torch.eye(a.shape[0], dtype=a.dtype) - s[:, None] * a * s[None, :]
    return float(torch.linalg.eigvalsh(0.5 * (j + j.T)).abs().max())


def optimal_omega(a: Tensor) -> float:
    """Young's asymptotically optimal SOR parameter ω* = 1 + (β / (1 + √(1 − β²)))², β = ρ(Jacobi)."""
    beta = jacobi_spectral_radius(a)
    if beta >= 1.0:
        raise ValueError(f"the Jacobi spectral radius must be < 1 for Young's formula, got {beta}")
    return 1.0 + (beta / (1.0 + math.sqrt(1.0 - beta * beta))) ** 2


@dataclass(frozen=True)
class SORResult:
    x: Tensor
    iterations: int
    residuals: list[float]  # ‖b − A x_k‖ / ‖b − A x_0‖ for k = 0..iterations
    converged: bool


def sor_solve(a: Tensor, b: Tensor, omega: float, x0: Tensor | None = None, tol: float = 1e-8,
              max_iter: int = 10000) -> SORResult:
    """SOR x ← x + M⁻¹(b − Ax), M = D/ω + tril(A, −1), until ‖r‖ < tol·‖r₀‖ (``sor.m``)."""
    _check_omega(omega)
    _check_tol(tol, max_iter)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or b.shape != (a.shape[0],):
        raise ValueError(f"a must be n×n and b of length n, got {tuple(a.shape)} and {tuple(b.shape)}")
    m_mat = torch.diag(torch.diagonal(a)) / omega + torch.tril(a, -1)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - a @ x
    norm0 = float(r.norm())
    residuals = [1.0]
    if norm0 == 0.0:
        return SORResult(x, 0, residuals, True)
    for k in range(1, max_iter + 1):
        x = x + torch.linalg.solve_triangular(m_mat, r[:, None], upper=False)[:, 0]
        r = b - a @ x
        residuals.append(float(r.norm()) / norm0)
        if residuals[-1] < tol:
            return SORResult(x, k, residuals, True)
    return SORResult(x, max_iter, residuals, False)


def sor_iterations(a: Tensor | np.ndarray, b: Tensor | np.ndarray, omega: float, tol: float = 1e-8,
                   max_iter: int = 10000) -> int:
    """The SOR cost of :func:`sor_solve` from x₀ = 0, computed through the residual recursion
    r ← (I − A M⁻¹) r (one mat-vec per iteration; equal to the solve's residuals to round-off).  Runs in numpy
    float64: at n = 100 a numpy mat-vec costs a fraction of a torch call's overhead."""
    _check_omega(omega)
    _check_tol(tol, max_iter)
    a_np = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a, dtype=np.float64)
    r = (b.detach().cpu().numpy() if isinstance(b, Tensor) else np.asarray(b, dtype=np.float64)).copy()
    m_mat = np.diag(np.diag(a_np)) / omega + np.tril(a_np, -1)
    # A M⁻¹ = (M⁻ᵀ Aᵀ)ᵀ: one triangular solve with a matrix right-hand side.
    h = np.eye(a_np.shape[0]) - _solve_upper(m_mat.T, a_np.T).T
    threshold = tol * float(np.sqrt(r @ r))
    thr2 = threshold * threshold
    for k in range(1, max_iter + 1):
        r = h @ r
        if r @ r < thr2:
            return k
    return max_iter


def _solve_upper(u: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    t = torch.linalg.solve_triangular(torch.from_numpy(u), torch.from_numpy(rhs), upper=True)
    return t.numpy()


def stencil_sor_costs(m: int, shifts: Tensor | np.ndarray, rhs: Tensor | np.ndarray, omegas: Tensor | np.ndarray,
                      tol: float = 1e-8, max_iter: int = 10000) -> np.ndarray:
    """SOR iteration counts for a batch of systems (Δ_h + c_j I) x = b_j on an m×m grid, one ω_j each.

    Lexicographic SOR on the 5-point stencil updates the anti-diagonals i + j = k in order; the points of one
    anti-diagonal depend only on the previous (new values) and next (old values) anti-diagonal, so each is one
    vectorised update (the same arithmetic as the row-by-row sweep).  Layout: ``s[k + 1, i + 1, batch]`` holds x
    at grid point (i, k − i), zero-padded, so the four neighbours are contiguous slices of the adjacent
    anti-diagonals.  Converged systems leave the batch.  numpy float64 (many small vectorised ops per sweep).
    """
    _check_tol(tol, max_iter)
    shifts_np, rhs_np, omegas_np = (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
                                    for x in (shifts, rhs, omegas))
    nb = shifts_np.shape[0]
    if rhs_np.shape != (nb, m * m) or omegas_np.shape != (nb,):
        raise ValueError(f"rhs must be ({nb}, {m * m}) and omegas ({nb},), got {rhs_np.shape}, {omegas_np.shape}")
    if bool(((omegas_np <= 0) | (omegas_np >= 2)).any()):
        raise ValueError("omegas must be in (0, 2)")
    ii, jj = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    kk = (ii + jj + 1).reshape(-1)
    pp = (ii + 1).reshape(-1)
    nd = 2 * m + 1
    mask = np.zeros((nd, m + 2, 1))
    mask[kk, pp, 0] = 1.0
    bs = np.zeros((nd, m + 2, nb))
    bs[kk, pp, :] = rhs_np.astype(np.float64).T
    s = np.zeros_like(bs)
    diag = 4.0 + shifts_np.astype(np.float64)
    w1 = 1.0 - omegas_np.astype(np.float64)
    w2 = omegas_np.astype(np.float64) / diag
    thresh2 = (tol * np.linalg.norm(rhs_np, axis=1)) ** 2
    cost = np.full(nb, max_iter, dtype=np.int64)
    active = np.arange(nb)
    pending = np.ones(nb, dtype=bool)
    masks = [mask[k, 1:m + 1] for k in range(nd)]
    for it in range(1, max_iter + 1):
        for k in range(1, 2 * m):
            nbr = s[k - 1, 0:m] + s[k - 1, 1:m + 1]
            nbr += s[k + 1, 1:m + 1]
            nbr += s[k + 1, 2:m + 2]
            nbr += bs[k, 1:m + 1]
            nbr *= w2
            nbr += w1 * s[k, 1:m + 1]
            nbr *= masks[k]
            s[k, 1:m + 1] = nbr
        res = s[0:2 * m - 1, 0:m] + s[0:2 * m - 1, 1:m + 1]
        res += s[2:2 * m + 1, 1:m + 1]
        res += s[2:2 * m + 1, 2:m + 2]
        res += bs[1:2 * m, 1:m + 1]
        res -= diag * s[1:2 * m, 1:m + 1]
        res *= mask[1:2 * m, 1:m + 1]
        done = (np.einsum("ijb,ijb->b", res, res) < thresh2) & pending
        if done.any():
            cost[active[done]] = it
            pending &= ~done
            left = int(pending.sum())
            if left == 0:
                break
            if left <= 0.8 * pending.size:  # compact only when a fifth has converged: copies cost a sweep
                keep = pending
                active, s, bs, pending = active[keep], s[..., keep], bs[..., keep], pending[keep]
                diag, w1, w2, thresh2 = diag[keep], w1[keep], w2[keep], thresh2[keep]
    return cost


# ----------------------------------------------------------------------------------------------------- problems
def sample_instances(t: int, regime: str, seed: int = 0, m: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``t`` shifts c_t = −0.15 + 0.6 Beta(a, b) and right-hand sides b_t ~ N(0, I) truncated to ‖b‖ ≤ √n."""
    check_choice("regime", regime, sorted(REGIMES))
    check_int("t", t, 1)
    rng = np.random.default_rng(seed)
    a_, b_ = REGIMES[regime]
    shifts = -0.15 + 0.6 * rng.beta(a_, b_, size=t)
    n = m * m
    rhs = np.empty((t, n))
    for i in range(t):
        while True:
            v = rng.standard_normal(n)
            if v @ v <= n:
                rhs[i] = v
                break
    return shifts, rhs


# ----------------------------------------------------------------------------------------------------- learners
class TsallisINF:
    """Tsallis-INF over a finite grid with η_t = 2/√t and the running-mean loss scale (``TsallisINF.m``), with a
    safeguarded normaliser (see the module docstring)."""

    def __init__(self, grid: Sequence[float] = GRID, seed: int = 0) -> None:
        if len(grid) < 2:
            raise ValueError(f"grid must have at least 2 arms, got {len(grid)}")
        self.grid = tuple(float(g) for g in grid)
        self.k = np.zeros(len(self.grid))
        self.t = 1
        self.scale = 1.0
        self.losses: list[float] = []
        self.rng = np.random.default_rng(seed)
        self.probs = np.full(len(self.grid), 1.0 / len(self.grid))
        self.index = 0

    def distribution(self) -> np.ndarray:
        """The sampling distribution p_t (sums to 1 up to round-off before the final renormalisation)."""
        eta = 2.0 / math.sqrt(self.t)
        big_l = self.k / self.scale
        lo = float(big_l.min())
        x = lo - 2.0 / eta  # Σ p ≥ 1 here; the root lies in [lo − 2√K/η, lo − 2/η]
        for _ in range(100):
            gap = eta * (big_l - x)
            f = float(np.sum(4.0 / gap**2)) - 1.0
            if abs(f) < 1e-13:
                break
            fprime = float(np.sum(8.0 * eta / gap**3))
            x_new = x - f / fprime
            if x_new >= x:  # monotone from the right; a non-decrease means round-off level
                break
            x = x_new
        p = 4.0 / (eta * (big_l - x)) ** 2
        return p / p.sum()

    def predict(self) -> int:
        self.probs = self.distribution()
        self.index = int(self.rng.choice(len(self.grid), p=self.probs))
        return self.index

    def update(self, loss: float) -> None:
        self.losses.append(float(loss))
        scale = float(np.mean(self.losses)) - 1.0
        self.scale = scale if scale > 0 else 1.0
        self.k[self.index] += (loss - 1.0) / self.probs[self.index]
        self.t += 1


def _chebyshev(z: float, m: int) -> np.ndarray:
    out = np.ones(m)
    if m > 1:
        out[1] = z
    for j in range(2, m):
        out[j] = 2.0 * z * out[j - 1] - out[j - 2]
    return out


def _box_lsq(f: np.ndarray, y: np.ndarray, ub: np.ndarray, x0: np.ndarray, iters: int = 300) -> np.ndarray:
    """min ‖F θ − y‖² s.t. |θ| ≤ ub, by accelerated projected gradient (FISTA) from ``x0``."""
    g = f.T @ f
    lip = float(np.linalg.eigvalsh(g)[-1])
    if lip <= 0:
        return np.clip(x0, -ub, ub)
    fy = f.T @ y
    x = np.clip(x0, -ub, ub)
    z, tk = x.copy(), 1.0
    for _ in range(iters):
        x_new = np.clip(z - (g @ z - fy) / lip, -ub, ub)
        t_new = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * tk * tk))
        z = x_new + ((tk - 1.0) / t_new) * (x_new - x)
        x, tk = x_new, t_new
    return x


class ChebCB:
    """Contextual bandit with per-arm Chebyshev regression of cost on a scalar context (``ChebCB.m``)."""

    def __init__(self, grid: Sequence[float] = GRID, m: int = 6, context_range: tuple[float, float] = CONTEXT_RANGE,
                 seed: int = 0) -> None:
        check_int("m", m, 1)
        if not context_range[1] > context_range[0]:
            raise ValueError(f"context_range must be (a, b) with b > a, got {context_range}")
        self.grid = tuple(float(g) for g in grid)
        self.d, self.m = len(self.grid), m
        self.a, self.bma = context_range[0], context_range[1] - context_range[0]
        self.theta = np.zeros((self.d, m))
        self.features: list[np.ndarray] = []
        self.actions: list[int] = []
        self.losses: list[float] = []
        self.predicted: list[float] = []
        self.eta = 0.0
        self.scale = 0.0
        self.rng = np.random.default_rng(seed)

    def predict(self, context: float) -> int:
        feat = _chebyshev(2.0 / self.bma * (context - self.a) - 1.0, self.m)
        yhat = self.theta @ feat
        istar = int(np.argmin(yhat))
        probs = 1.0 / (self.d + self.eta * (yhat - yhat[istar]))
        probs[istar] = 0.0
        probs[istar] = 1.0 - probs.sum()
        i = int(self.rng.choice(self.d, p=probs))
        self.features.append(feat)
        self.actions.append(i)
        self.predicted.append(float(self.theta[i] @ feat))
        return i

    def update(self, loss: float) -> None:
        self.losses.append(float(loss))
        losses = np.asarray(self.losses)
        kmax = float(losses.max())
        lip = (kmax - float(losses.min())) / self.bma
        n_ = 2.0 + 4.0 * self.bma * lip / kmax * (1.0 + math.log(self.m))
        refit_all = self.scale != kmax * n_
        self.scale = kmax * n_
        ub = np.concatenate([[1.0 / n_], 2.0 * self.bma * lip / self.scale / np.arange(1, self.m)])
        actions = np.asarray(self.actions)
        feats = np.asarray(self.features)
        targets = (losses - 1.0) / self.scale
        for i in range(self.d):
            if not (refit_all or i == self.actions[-1]):
                continue
            idx = actions == i
            if not idx.any():
                continue
            theta = np.linalg.lstsq(feats[idx], targets[idx], rcond=None)[0]
            if np.any(np.abs(theta) > ub):
                theta = _box_lsq(feats[idx], targets[idx], ub, theta)
            self.theta[i] = theta
        t = len(self.losses)
        alpha = (math.pi + 2.0 / math.pi * math.log(2.0 * self.m + 1)) / (2.0 * self.scale * (self.m + 1)) * self.bma
        alpha *= lip
        r = float(np.sum((np.asarray(self.predicted) - targets) ** 2))
        self.eta = 2.0 * t * math.sqrt(self.d * t / max(r + 2.0 * alpha**2 * t, 1e-300))


# ----------------------------------------------------------------------------------------------------- the study
@dataclass
class RelaxationStudy:
    """Costs of one run over a sequence of instances (arrays of length T unless noted)."""

    regime: str
    grid: tuple[float, ...]
    shifts: np.ndarray
    learner_costs: dict[str, np.ndarray] = field(default_factory=dict)
    learner_arms: dict[str, np.ndarray] = field(default_factory=dict)
    window: int = 1000
    eval_index: np.ndarray | None = None  # instances (of the last ``window``) where the baselines were costed
    fixed_costs: np.ndarray | None = None  # (len(eval_index), len(grid)): every grid ω
    oracle_costs: np.ndarray | None = None  # (len(eval_index),): instance-optimal ω*

    def window_mean(self, learner: str) -> float:
        """Mean cost over all of the last ``window`` instances."""
        return float(self.learner_costs[learner][-self.window:].mean())

    def paired_mean(self, learner: str) -> float:
        """Mean cost over the instances where the baselines were costed (a paired comparison)."""
        assert self.eval_index is not None
        return float(self.learner_costs[learner][self.eval_index].mean())

    def fixed_means(self) -> np.ndarray:
        assert self.fixed_costs is not None
        return self.fixed_costs.mean(axis=0)

    def best_fixed(self) -> tuple[int, float]:
        means = self.fixed_means()
        i = int(np.argmin(means))
        return i, float(means[i])

    def most_played(self, learner: str, top: int = 2) -> list[int]:
        counts = np.bincount(self.learner_arms[learner][-self.window:], minlength=len(self.grid))
        return [int(i) for i in np.argsort(-counts, kind="stable")[:top]]


def run_relaxation_study(t: int = 3000, regime: str = "high", seed: int = 0, learners: Sequence[str] = ("tsallis",),
                         window: int = 1000, m: int = 10, tol: float = 1e-8, max_iter: int = 10000,
                         grid: Sequence[float] = GRID, stride: int = 1) -> RelaxationStudy:
    """Play each learner on the same T instances; cost every grid ω and ω* on every ``stride``-th of the last
    ``window`` instances (``stride`` > 1 makes the baselines a paired subsample of the window: the learners are
    compared on exactly those instances)."""
    check_int("window", window, 1, t)  # at most t, the number of instances
    check_int("stride", stride, 1)
    unknown = set(learners) - {"tsallis", "chebcb"}
    if unknown:
        raise ValueError(f"learners must be among ['chebcb', 'tsallis'], got {sorted(unknown)}")
    shifts, rhs = sample_instances(t, regime, seed, m)
    base = laplacian_2d(m).numpy()
    eye = np.eye(m * m)
    study = RelaxationStudy(regime, tuple(grid), shifts, window=window)
    for name in learners:
        learner: TsallisINF | ChebCB = TsallisINF(grid, seed + 1) if name == "tsallis" else ChebCB(grid, seed=seed + 1)
        costs = np.empty(t)
        arms = np.empty(t, dtype=np.int64)
        for k in range(t):
            arm = learner.predict() if isinstance(learner, TsallisINF) else learner.predict(float(shifts[k]))
            cost = sor_iterations(base + shifts[k] * eye, rhs[k], grid[arm], tol, max_iter)
            learner.update(cost)
            costs[k], arms[k] = cost, arm
        study.learner_costs[name], study.learner_arms[name] = costs, arms
    eval_index = np.arange(t - window, t)[::stride]
    study.eval_index = eval_index
    w_shifts, w_rhs = shifts[eval_index], rhs[eval_index]
    k_arms = len(grid)
    fixed = stencil_sor_costs(m, np.repeat(w_shifts, k_arms), np.repeat(w_rhs, k_arms, axis=0),
                              np.tile(np.asarray(grid), len(eval_index)), tol, max_iter)
    study.fixed_costs = fixed.reshape(len(eval_index), k_arms).astype(float)
    beta = 4.0 * math.cos(math.pi / (m + 1)) / (4.0 + w_shifts)  # ρ(Jacobi) of Δ_h + cI in closed form
    omega_star = 1.0 + (beta / (1.0 + np.sqrt(1.0 - beta * beta))) ** 2
    study.oracle_costs = stencil_sor_costs(m, w_shifts, w_rhs, omega_star, tol, max_iter).astype(float)
    return study


# ------------------------------------------------------------------------------------------------ registry hook
from . import registry  # noqa: E402  (the hook is the module's last part; registry imports nothing of ours)

_PROBLEMS = {
    "high": "Δ_h(10×10) + cI, c = −0.15 + 0.6·Beta(0.5, 1.5), b ~ truncated N(0, I): high variance",
    "low": "Δ_h(10×10) + cI, c = −0.15 + 0.6·Beta(2, 6): low variance",
}


def _running_mean(values: np.ndarray, width: int = 100) -> list[float]:
    c = np.cumsum(np.concatenate([[0.0], values]))
    out = [(c[k + 1] - c[max(0, k + 1 - width)]) / (k + 1 - max(0, k + 1 - width)) for k in range(len(values))]
    return [float(v) for v in out]


def run(request: registry.RunRequest) -> list[registry.Trace]:
    spec = registry.get("sor")
    spec.check_problem(request.problem)
    t = int(request.options.get("T", 3000))
    window = int(request.options.get("window", min(1000, t)))
    stride = int(request.options.get("stride", 10 if request.quick else 1))
    study = run_relaxation_study(t, request.problem, seed=request.seed, learners=("tsallis", "chebcb"),
                                 window=window, stride=stride)
    best, best_mean = study.best_fixed()
    setting: dict[str, registry.Scalar] = {"T": t, "window": window, "stride": stride}
    traces = []
    for name in ("tsallis", "chebcb"):
        costs = study.learner_costs[name]
        summary = {"window_mean": study.window_mean(name), "paired_mean": study.paired_mean(name),
                   "ratio_to_best_fixed": study.paired_mean(name) / best_mean,
                   "most_played_omega": study.grid[study.most_played(name, 1)[0]]}
        request.say(f"sor {request.problem} {name}: last-{window} mean cost {summary['window_mean']:.1f} "
                    f"(best fixed ω = {study.grid[best]:.2f}: {best_mean:.1f})")
        traces.append(registry.Trace(name, {"cost": [float(c) for c in costs], "running_mean": _running_mean(costs),
                                            "omega": [study.grid[i] for i in study.learner_arms[name]]},
                                     summary, setting))
    assert study.fixed_costs is not None and study.oracle_costs is not None
    means = study.fixed_means()
    traces.append(registry.Trace("fixed-omega", {"omega": list(study.grid), "mean_cost": [float(v) for v in means]},
                                 {"best_omega": study.grid[best], "best_mean": best_mean}, setting))
    traces.append(registry.Trace("instance-optimal", {"cost": [float(c) for c in study.oracle_costs]},
                                 {"mean": float(study.oracle_costs.mean())}, setting))
    request.say(f"sor {request.problem} instance-optimal ω*: mean {study.oracle_costs.mean():.1f}")
    return traces


def figure(traces: Sequence[registry.Trace]) -> object:
    """Cost per instance (running mean over 100) of each learner, with the best fixed ω and ω* as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for tr in traces:
        if "running_mean" in tr.curve:
            ax1.plot(tr.curve["running_mean"], label=tr.method)
        elif tr.method == "fixed-omega":
            ax1.axhline(tr.summary["best_mean"], ls="--", c="k", label=f"best fixed ω={tr.summary['best_omega']:.2f}")
            ax2.semilogy(tr.curve["omega"], tr.curve["mean_cost"], "o-")
        elif tr.method == "instance-optimal":
            ax1.axhline(tr.summary["mean"], ls=":", c="g", label="instance-optimal ω*")
    ax1.set_xlabel("instance")
    ax1.set_ylabel("SOR iterations (running mean)")
    ax1.set_yscale("log")
    ax1.legend(fontsize=7)
    ax2.set_xlabel("fixed ω")
    ax2.set_ylabel("mean cost on the window")
    fig.tight_layout()
    return fig


registry.register(registry.SolverSpec(
    name="sor",
    title="Learning to relax: SOR with ω chosen online (Tsallis-INF, ChebCB)",
    paper="Khodak, Chow, Balcan, Talwalkar (ICLR 2024), Learning to Relax: Setting Solver Parameters Across a "
          "Sequence of Linear System Instances",
    problems=_PROBLEMS,
    run=run,
    figure=figure,
    options={"T": "number of instances (default 3000)", "window": "last instances compared (default 1000)",
             "stride": "cost the fixed-ω baselines on every stride-th window instance (quick 10, full 1)"},
    figure_caption="SOR cost per instance of the learners against the best fixed ω and the instance-optimal ω*",
), replace=True)
