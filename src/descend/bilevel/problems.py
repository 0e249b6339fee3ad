"""Bilevel problems: the protocol every solver consumes, and the built-in synthetic problems.

A bilevel problem is

    min_x h(x) = f(x, y*(x)),   y*(x) = argmin_y g(x, y) [+ r(x, y)]

with ``f`` the *outer* (upper-level) objective and ``g`` the *inner* (lower-level) one, both differentiable
functions of PyTorch tensors.  :class:`BilevelProblem` holds them, optional mini-batch versions over
``n_outer`` / ``n_inner`` samples (a solver's oracles draw the indices from a seeded generator), an optional
``metrics(x, y)``, and — for the nonsmooth setting of Grazzi, Pontil & Salzo (2024) — the proximal operator of
a nonsmooth inner term ``r`` (then ``inner`` is the smooth part only).

Built-in problems here (synthetic, torch only):

* :class:`QuadraticProblem` — strongly convex quadratic inner problem with closed-form ``y*(x)``, ``h(x)``,
  ``∇h(x)`` and solution, optionally a finite sum with zero-mean per-sample perturbations (for the stochastic
  solvers) and structured (diagonal + low rank) matrices so that d = 10⁴ fits in memory.
* :func:`lancbio_synthetic` — the nonconvex synthetic problem of Yang, Gao & Yuan (ICLR 2025), exactly as the
  authors' code defines it (checked against the golden fixtures).
* :func:`bome_toy_coreset` — the toy coreset problem of Liu et al. (NeurIPS 2022).
* :func:`elastic_net` — elastic-net hyperparameters on synthetic regression (nonsmooth inner problem).

Problems built on real data (scikit-learn, MNIST-1D) live in :mod:`descend.bilevel.datasets`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .._validate import check_float, check_int

__all__ = [
    "BilevelProblem",
    "QuadraticProblem",
    "bome_toy_coreset",
    "elastic_net",
    "lancbio_synthetic",
    "lancbio_synthetic_from_arrays",
    "soft_threshold",
]

Objective = Callable[[Tensor, Tensor], Tensor]
BatchObjective = Callable[[Tensor, Tensor, Tensor], Tensor]
Prox = Callable[[Tensor, Tensor, float], Tensor]


@dataclass
class BilevelProblem:
    """A bilevel problem ``min_x f(x, y*(x))``, ``y*(x) = argmin_y g(x, y) + r(x, y)``.

    Attributes:
        outer: ``f(x, y)`` on the full outer data set (a scalar tensor).
        inner: ``g(x, y)`` on the full inner data set; the *smooth part* when ``prox`` is given.
        x0, y0: default starting points (solvers clone them).
        outer_batch, inner_batch: ``f(x, y, idx)`` / ``g(x, y, idx)`` on the samples ``idx`` (a 1-D long
            tensor); required when ``n_outer`` / ``n_inner`` > 0.
        n_outer, n_inner: number of samples of the finite sums (0: deterministic, the batch oracle is the
            full one).
        metrics: optional ``metrics(x, y) -> {name: float}`` evaluated off the clock (test error, ...).
        prox: optional proximal operator ``prox(x, z, step)`` of ``step * r(x, ·)`` (differentiable in x and
            almost everywhere in z); then the inner map is the fixed point ``y = prox(x, y - step ∇_y g, step)``.
        nonsmooth: optional value ``r(x, y)`` of the nonsmooth term (reporting only).
        inner_lipschitz: optional bound L on ‖∇²_yy g‖ (a float, or a function of x) used to pick the
            default step sizes 1/L; estimated by power iteration when absent.
        name: a short identifier.
        data: free-form extra data (arrays, splits) the problem's closures or metrics use.
    """

    outer: Objective
    inner: Objective
    x0: Tensor
    y0: Tensor
    outer_batch: BatchObjective | None = None
    inner_batch: BatchObjective | None = None
    n_outer: int = 0
    n_inner: int = 0
    metrics: Callable[[Tensor, Tensor], Mapping[str, float]] | None = None
    prox: Prox | None = None
    nonsmooth: Objective | None = None
    inner_lipschitz: float | Callable[[Tensor], float] | None = None
    name: str = "problem"
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("outer", "inner"):
            if not callable(getattr(self, attr)):
                raise ValueError(f"{attr} must be a callable f(x, y) -> scalar tensor")
        for attr in ("x0", "y0"):
            t = getattr(self, attr)
            if not isinstance(t, Tensor) or not t.is_floating_point():
                raise ValueError(f"{attr} must be a floating-point torch.Tensor")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{attr} must have finite entries")
        if self.x0.dtype != self.y0.dtype:
            raise ValueError(f"x0 and y0 must share a dtype, got {self.x0.dtype} and {self.y0.dtype}")
        self.n_outer = check_int("n_outer", self.n_outer, 0)
        self.n_inner = check_int("n_inner", self.n_inner, 0)
        if self.n_outer > 0 and self.outer_batch is None:
            raise ValueError("outer_batch must be given when n_outer > 0")
        if self.n_inner > 0 and self.inner_batch is None:
            raise ValueError("inner_batch must be given when n_inner > 0")

    @property
    def dtype(self) -> torch.dtype:
        return self.x0.dtype

    def lipschitz(self, x: Tensor) -> float | None:
        """The inner smoothness constant at ``x`` if the problem knows it, else ``None``."""
        L = self.inner_lipschitz
        return float(L(x)) if callable(L) else (None if L is None else float(L))

    def outer_on(self, x: Tensor, y: Tensor, idx: Tensor | None) -> Tensor:
        """``f`` on the samples ``idx`` (full batch when ``idx`` is None)."""
        return self.outer(x, y) if idx is None else self.outer_batch(x, y, idx)  # type: ignore[misc]

    def inner_on(self, x: Tensor, y: Tensor, idx: Tensor | None) -> Tensor:
        """``g`` on the samples ``idx`` (full batch when ``idx`` is None)."""
        return self.inner(x, y) if idx is None else self.inner_batch(x, y, idx)  # type: ignore[misc]

    def check_point(self, x: Tensor, y: Tensor, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
        """Validate the shapes and dtypes of a point (x, y); raise ``ValueError`` naming the argument."""
        for name, t, ref in ((names[0], x, self.x0), (names[1], y, self.y0)):
            if not isinstance(t, Tensor):
                raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if t.shape != ref.shape:
                raise ValueError(f"{name} must have shape {tuple(ref.shape)} (the problem's {name[0]}0), "
                                 f"got {tuple(t.shape)}")
            if t.dtype != ref.dtype:
                raise ValueError(f"{name} must have dtype {ref.dtype}, got {t.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name} must have finite entries")
        return x, y


# ----------------------------------------------------------------------------------------------------
# quadratic problem with closed forms


class QuadraticProblem(BilevelProblem):
    """Quadratic bilevel problem with closed-form value function, hypergradient and solution.

        g(x, y) = ½ yᵀA y − yᵀ(B x + c),        f(x, y) = ½ ‖y − y_t‖² + ½ xᵀ diag(c_x) x

    with A = diag(a) + U Uᵀ (symmetric positive definite), B = [diag(b) 0] + V Wᵀ (dim_y × dim_x).  Then
    y*(x) = A⁻¹(Bx + c), ∇h(x) = diag(c_x) x + Bᵀ A⁻¹ (y*(x) − y_t) (A⁻¹ by the Woodbury identity, so
    d = 10⁴ costs O(d r)).

    With ``n_samples > 0`` both levels are finite sums whose per-sample terms add zero-mean perturbations
    ``½ yᵀ diag(δ_i) y − e_iᵀ y`` (inner) and ``u_iᵀ y`` (outer); the full-batch problem, and every closed
    form, is unchanged.

    Args:
        dim_x, dim_y: sizes of the outer and inner variables.
        rank: rank r of the low-rank parts U, V, W (0: diagonal A).
        condition: spread of the diagonal of A: a = linspace(1, condition, dim_y) (before U Uᵀ is added).
        n_samples: number of samples of the finite sums (0: deterministic).
        noise: scale of the per-sample perturbations.
        reg: diagonal of ``c_x`` (ridge on x, > 0 makes h strongly convex).
        seed: seed of the generator that draws every array.
        dtype: floating dtype of every array.
    """

    def __init__(self, dim_x: int = 10, dim_y: int = 10, *, rank: int = 3, condition: float = 10.0,
                 n_samples: int = 0, noise: float = 0.1, reg: float = 0.1, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> None:
        dim_x = check_int("dim_x", dim_x, 1)
        dim_y = check_int("dim_y", dim_y, 1)
        rank = check_int("rank", rank, 0, min(dim_x, dim_y))
        condition = check_float("condition", condition, 1.0)
        n_samples = check_int("n_samples", n_samples, 0)
        noise = check_float("noise", noise, 0.0)
        reg = check_float("reg", reg, 0.0)
        gen = torch.Generator().manual_seed(int(seed))

        def randn(*shape: int) -> Tensor:
            return torch.randn(*shape, generator=gen, dtype=dtype)

        self.a = torch.linspace(1.0, condition, dim_y, dtype=dtype)[torch.randperm(dim_y, generator=gen)]
        self.U = randn(dim_y, rank) * math.sqrt(condition / max(dim_y, 1))
        m = min(dim_x, dim_y)
        self.b = 1.0 + torch.rand(m, generator=gen, dtype=dtype)
        self.V = randn(dim_y, rank) / math.sqrt(max(dim_y, 1))
        self.W = randn(dim_x, rank) / math.sqrt(max(dim_x, 1))
        self.c = randn(dim_y)
        self.y_target = randn(dim_y)
        self.c_x = torch.full((dim_x,), reg, dtype=dtype)
        self.dim_x, self.dim_y, self.m = dim_x, dim_y, m
        # Woodbury core (I + Uᵀ D⁻¹ U)⁻¹
        self._core = torch.linalg.inv(torch.eye(rank, dtype=dtype) + self.U.T @ (self.U / self.a[:, None]))
        if n_samples:
            d = randn(n_samples, dim_y) * noise
            e = randn(n_samples, dim_y) * noise
            u = randn(n_samples, dim_y) * noise
            self.delta, self.e, self.u = d - d.mean(0), e - e.mean(0), u - u.mean(0)
            self.delta = self.delta.clamp(min=-0.5)  # keep every sample's Hessian positive definite
            self.delta = self.delta - self.delta.mean(0)
        lip = float(self.a.max()) + float(torch.linalg.matrix_norm(self.U, ord=2)) ** 2 + (
            2 * noise if n_samples else 0.0)

        def inner(x: Tensor, y: Tensor) -> Tensor:
            return 0.5 * torch.dot(y, self.A_mv(y)) - torch.dot(y, self.B_mv(x) + self.c)

        def outer(x: Tensor, y: Tensor) -> Tensor:
            return 0.5 * ((y - self.y_target) ** 2).sum() + 0.5 * torch.dot(x, self.c_x * x)

        def inner_batch(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
            pert = 0.5 * torch.dot(self.delta[idx].mean(0), y * y) - torch.dot(self.e[idx].mean(0), y)
            return inner(x, y) + pert

        def outer_batch(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
            return outer(x, y) + torch.dot(self.u[idx].mean(0), y)

        super().__init__(
            outer=outer, inner=inner, x0=torch.zeros(dim_x, dtype=dtype), y0=torch.zeros(dim_y, dtype=dtype),
            outer_batch=outer_batch if n_samples else None, inner_batch=inner_batch if n_samples else None,
            n_outer=n_samples, n_inner=n_samples, inner_lipschitz=lip, name="quadratic",
            metrics=self._metrics,
        )

    # linear maps --------------------------------------------------------------------------------------
    def A_mv(self, v: Tensor) -> Tensor:
        """A v = a ∘ v + U (Uᵀ v)."""
        return self.a * v + self.U @ (self.U.T @ v)

    def A_solve(self, v: Tensor) -> Tensor:
        """A⁻¹ v by the Woodbury identity."""
        Dv = v / self.a
        return Dv - (self.U / self.a[:, None]) @ (self._core @ (self.U.T @ Dv))

    def B_mv(self, x: Tensor) -> Tensor:
        """B x = [diag(b) 0] x + V (Wᵀ x)."""
        out = self.V @ (self.W.T @ x)
        return torch.cat([out[: self.m] + self.b * x[: self.m], out[self.m:]])

    def BT_mv(self, v: Tensor) -> Tensor:
        """Bᵀ v."""
        out = self.W @ (self.V.T @ v)
        return torch.cat([out[: self.m] + self.b * v[: self.m], out[self.m:]])

    def dense(self) -> tuple[Tensor, Tensor]:
        """(A, B) as dense matrices (tests and small problems only)."""
        if self.dim_x * self.dim_y > 4096 ** 2 or self.dim_y ** 2 > 4096 ** 2:
            raise ValueError("dense() is for small problems: dim_x, dim_y must be at most 4096")
        A = torch.diag(self.a) + self.U @ self.U.T
        B = self.V @ self.W.T
        B[: self.m, : self.m] += torch.diag(self.b)
        return A, B

    # closed forms ---------------------------------------------------------------------------------------
    def y_star(self, x: Tensor) -> Tensor:
        """y*(x) = A⁻¹(Bx + c)."""
        return self.A_solve(self.B_mv(x) + self.c)

    def value(self, x: Tensor) -> float:
        """h(x) = f(x, y*(x))."""
        return float(self.outer(x, self.y_star(x)))

    def true_hypergradient(self, x: Tensor) -> Tensor:
        """∇h(x) = diag(c_x) x + Bᵀ A⁻¹ (y*(x) − y_t)."""
        return self.c_x * x + self.BT_mv(self.A_solve(self.y_star(x) - self.y_target))

    def solution(self) -> tuple[Tensor, Tensor]:
        """The unique minimiser (x*, y*(x*)) (dense solve; small problems only)."""
        A, B = self.dense()
        M = torch.linalg.solve(A, B)  # A⁻¹B
        H = torch.diag(self.c_x) + M.T @ M
        rhs = M.T @ (self.y_target - torch.linalg.solve(A, self.c))
        x = torch.linalg.solve(H, rhs)
        return x, self.y_star(x)

    def _metrics(self, x: Tensor, y: Tensor) -> dict[str, float]:
        hx = self.true_hypergradient(x)
        return {"value": self.value(x), "true_hypergrad_norm": float(hx.norm()),
                "inner_error": float((y - self.y_star(x)).norm())}


# ----------------------------------------------------------------------------------------------------
# LancBiO's synthetic problem


def lancbio_synthetic_from_arrays(c: Tensor, c_x: Tensor, c_y: Tensor, G: Tensor, gamma: float,
                                  x0: Tensor | None = None, y0: Tensor | None = None) -> BilevelProblem:
    """LancBiO's synthetic problem from its arrays (Yang, Gao & Yuan 2025, arXiv:2404.03331, Sec. 5.1).

        f(x, y) = 0.1 cos(Σ_i c_i x_i y_i) + ½ Σ_i (c_x,i x_i − y_i)²
        g(x, y) = γ Σ_i sin(x_i + y_i) + log Σ_i exp(x_i y_i) + ½ Σ_i c_y,i y_i² + ½ yᵀ G y

    ``G`` must be symmetric (the reference's ∇_y g uses G y).  This is the form the authors' code
    (``Code/SyntheticProblem/problems/test_problem.py``) implements; the golden fixtures check it.
    """
    n = c.numel()
    for name, t in (("c_x", c_x), ("c_y", c_y)):
        if t.shape != c.shape:
            raise ValueError(f"{name} must have shape {tuple(c.shape)}, got {tuple(t.shape)}")
    if G.shape != (n, n):
        raise ValueError(f"G must have shape ({n}, {n}), got {tuple(G.shape)}")
    if not torch.equal(G, G.T):
        raise ValueError("G must be exactly symmetric")
    gamma = check_float("gamma", gamma)

    def outer(x: Tensor, y: Tensor) -> Tensor:
        return 0.1 * torch.cos((c * x * y).sum()) + 0.5 * ((c_x * x - y) ** 2).sum()

    def inner(x: Tensor, y: Tensor) -> Tensor:
        return (gamma * torch.sin(x + y).sum() + torch.logsumexp(x * y, 0)
                + 0.5 * (c_y * y * y).sum() + 0.5 * torch.dot(y, G @ y))

    lip = float(torch.linalg.eigvalsh(G).max()) + float(c_y.max()) + abs(gamma) + 10.0
    zeros = torch.zeros(n, dtype=c.dtype)
    return BilevelProblem(outer=outer, inner=inner, x0=zeros if x0 is None else x0,
                          y0=zeros if y0 is None else y0, inner_lipschitz=lip, name="lancbio_synthetic",
                          data={"c": c, "c_x": c_x, "c_y": c_y, "G": G, "gamma": gamma})


def lancbio_synthetic(n: int = 100, kappa: float = 100.0, gamma: float = 0.5, seed: int = 0,
                      dtype: torch.dtype = torch.float64) -> BilevelProblem:
    """Draw LancBiO's synthetic problem as the authors' script does (their distributions, our generator).

    c = 10 (U − ½), c_x = U + 0.1, c_y = γ U (U uniform on [0, 1)), G = Q diag(linspace(1, κ, n)) Qᵀ with Q from
    the QR factorisation of a Gaussian matrix; x0, y0 Gaussian.  See :func:`lancbio_synthetic_from_arrays`.
    """
    n = check_int("n", n, 1)
    kappa = check_float("kappa", kappa, 1.0)
    gamma = check_float("gamma", gamma, 0.0, 1.0, high_open=True)
    gen = torch.Generator().manual_seed(int(seed))
    c = (torch.rand(n, generator=gen, dtype=dtype) - 0.5) * 10
    c_x = torch.rand(n, generator=gen, dtype=dtype) + 0.1
    c_y = torch.rand(n, generator=gen, dtype=dtype) * gamma
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
    G = Q @ torch.diag(torch.linspace(1.0, kappa, n, dtype=dtype)) @ Q.T
    G = 0.5 * (G + G.T)
    x0 = torch.randn(n, generator=gen, dtype=dtype)
    y0 = torch.randn(n, generator=gen, dtype=dtype)
    return lancbio_synthetic_from_arrays(c, c_x, c_y, G, gamma, x0, y0)


# ----------------------------------------------------------------------------------------------------
# BOME's toy coreset problem


def bome_toy_coreset(target: Tensor | None = None, points: Tensor | None = None,
                     x0: Tensor | None = None, y0: Tensor | None = None) -> BilevelProblem:
    """The toy coreset problem of Liu, Ye, Wright, Stone & Liu (2022), "BOME! Bilevel Optimization Made Easy",
    arXiv:2209.08709, Sec. 5 (toy convergence experiment).

    Outer variable x ∈ Rⁿᶜᵗˢ (logits of the coreset weights), inner variable y ∈ Rᵈ (a point):

        f(x, y) = 0.1 ‖y − target‖²,     g(x, y) = ‖softmax(x)ᵀ points − y‖²

    so y*(x) = softmax(x)ᵀ points lies in the convex hull of the points.  (The authors' code names the
    inner variable ``x`` and the outer one ``w``.)  Defaults: the paper's target (3, −2), four points
    (1, 3), (3, 1), (−2, 2), (−3, −2), start x = 0, y = (0, 3).
    """
    dt = torch.float64
    target = torch.tensor([3.0, -2.0], dtype=dt) if target is None else target
    points = torch.tensor([[1.0, 3.0], [3.0, 1.0], [-2.0, 2.0], [-3.0, -2.0]], dtype=dt) if points is None \
        else points
    if points.ndim != 2 or points.shape[1] != target.numel():
        raise ValueError(f"points must have shape (ncts, {target.numel()}), got {tuple(points.shape)}")
    target = target.reshape(-1)

    def outer(x: Tensor, y: Tensor) -> Tensor:
        return 0.1 * ((y - target) ** 2).sum()

    def inner(x: Tensor, y: Tensor) -> Tensor:
        return ((torch.softmax(x, 0) @ points - y) ** 2).sum()

    return BilevelProblem(
        outer=outer, inner=inner,
        x0=torch.zeros(points.shape[0], dtype=points.dtype) if x0 is None else x0,
        y0=torch.tensor([0.0, 3.0], dtype=points.dtype) if y0 is None else y0,
        inner_lipschitz=2.0, name="bome_toy_coreset", data={"target": target, "points": points})


# ----------------------------------------------------------------------------------------------------
# elastic net (nonsmooth inner problem)


def soft_threshold(z: Tensor, threshold: Tensor | float) -> Tensor:
    """prox of threshold·‖·‖₁: sign(z) max(|z| − threshold, 0) (its autograd Jacobian in z is the 0/1 mask)."""
    return torch.sign(z) * torch.relu(z.abs() - threshold)


def _low_rank_design(n: int, d: int, effective_rank: int, gen: torch.Generator, dtype: torch.dtype) -> Tensor:
    """A design matrix with a bell-shaped singular profile plus a fat tail of effective rank ``effective_rank``."""
    k = min(n, d)
    U, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=dtype))
    V, _ = torch.linalg.qr(torch.randn(d, k, generator=gen, dtype=dtype))
    i = torch.arange(k, dtype=dtype)
    s = 0.9 * torch.exp(-((i / effective_rank) ** 2)) + 0.1 * torch.exp(-i / effective_rank)
    return (U * s) @ V.T


def elastic_net(n: int = 500, d: int = 100, effective_rank: int = 30, n_informative: int = 30,
                noise: float = 0.1, val_fraction: float = 0.5, seed: int = 0,
                dtype: torch.dtype = torch.float64) -> BilevelProblem:
    """Elastic-net hyperparameters on synthetic regression (Grazzi, Pontil & Salzo 2024, "Nonsmooth Implicit
    Differentiation: Deterministic and Stochastic Convergence Rates", ICML 2024, arXiv:2403.11687, Sec. 5).

    x = (log α₁, log α₂); inner: min_y 1/(2n_tr) ‖X_tr y − t_tr‖² + (α₂/2) ‖y‖² + α₁ ‖y‖₁ (smooth part ``inner``,
    ℓ1 term through ``prox``); outer: 1/(2n_val) ‖X_val y − t_val‖².  The design has a low effective rank; the
    target depends on ``n_informative`` features plus Gaussian noise.  The training rows are the inner
    samples and the validation rows the outer samples (mini-batch oracles).
    """
    n = check_int("n", n, 4)
    d = check_int("d", d, 1)
    effective_rank = check_int("effective_rank", effective_rank, 1)
    n_informative = check_int("n_informative", n_informative, 1, d)
    noise = check_float("noise", noise, 0.0)
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    gen = torch.Generator().manual_seed(int(seed))
    X = _low_rank_design(n, d, effective_rank, gen, dtype) * math.sqrt(n)
    coef = torch.zeros(d, dtype=dtype)
    coef[torch.randperm(d, generator=gen)[:n_informative]] = torch.randn(n_informative, generator=gen,
                                                                        dtype=dtype)
    t = X @ coef + noise * torch.randn(n, generator=gen, dtype=dtype)
    n_val = max(1, min(n - 1, round(val_fraction * n)))
    Xtr, ttr, Xval, tval = X[n_val:], t[n_val:], X[:n_val], t[:n_val]
    ntr = Xtr.shape[0]
    L_data = float(torch.linalg.matrix_norm(Xtr, ord=2)) ** 2 / ntr

    def inner_batch(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        r = Xtr[idx] @ y - ttr[idx]
        return 0.5 * (r * r).mean() + 0.5 * torch.exp(x[1]) * (y * y).sum()

    def inner(x: Tensor, y: Tensor) -> Tensor:
        r = Xtr @ y - ttr
        return 0.5 * (r * r).mean() + 0.5 * torch.exp(x[1]) * (y * y).sum()

    def outer_batch(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        r = Xval[idx] @ y - tval[idx]
        return 0.5 * (r * r).mean()

    def outer(x: Tensor, y: Tensor) -> Tensor:
        r = Xval @ y - tval
        return 0.5 * (r * r).mean()

    def prox(x: Tensor, z: Tensor, step: float) -> Tensor:
        return soft_threshold(z, step * torch.exp(x[0]))

    def nonsmooth(x: Tensor, y: Tensor) -> Tensor:
        return torch.exp(x[0]) * y.abs().sum()

    return BilevelProblem(
        outer=outer, inner=inner, x0=torch.tensor([math.log(1e-2), math.log(1e-2)], dtype=dtype),
        y0=torch.zeros(d, dtype=dtype), outer_batch=outer_batch, inner_batch=inner_batch, n_outer=n_val,
        n_inner=ntr, prox=prox, nonsmooth=nonsmooth,
        inner_lipschitz=lambda x: L_data + float(torch.exp(x[1])), name="elastic_net",
        data={"X_train": Xtr, "t_train": ttr, "X_val": Xval, "t_val": tval, "coef": coef})
