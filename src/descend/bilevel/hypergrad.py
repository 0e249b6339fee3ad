"""Hypergradients ∇h(x) = ∇_x f(x, y*) − J A⁻¹ ∇_y f(x, y*) of a bilevel problem at a point (x, y).

Notation: A = ∇²_yy g(x, y), J = ∇²_xy g(x, y), b = ∇_y f(x, y); every method approximates v ≈ A⁻¹ b (or
differentiates through the inner solver) using products only.  :func:`hypergradient` is the public entry:

``"cg"`` — AID with conjugate gradient on the symmetric system A v = b, warm-started from ``v0``
    (Pedregosa 2016, "Hyperparameter optimization with approximate gradient", ICML, arXiv:1602.02355, Alg. 1;
    Grazzi, Franceschi, Pontil & Salzo 2020, "On the iteration complexity of hypergradient computation",
    ICML, arXiv:2006.16218, Sec. 2.2).
``"neumann"`` — AID with the fixed-point / Neumann iterations v = α Σ_{i=0}^{K} (I − αA)^i b (Lorraine, Vicol &
    Duvenaud 2020, "Optimizing millions of hyperparameters by implicit differentiation", AISTATS,
    arXiv:1911.02590, Alg. 3; Grazzi et al. 2020, Sec. 2.2).
``"lanczos"`` — the Krylov subspace solve of LancBiO with a frozen Hessian (Yang, Gao & Yuan 2025, ICLR,
    arXiv:2404.03331, eq. (3.3)); the dynamic, one-vector-per-iteration version is the
    :class:`~descend.bilevel.lancbio.LancBiO` solver.
``"itd"`` — iterative differentiation: reverse mode through T inner steps y_{t+1} = Φ(x, y_t), truncated to the
    last K (Franceschi, Donini, Frasconi & Pontil 2017, "Forward and reverse gradient-based hyperparameter
    optimization", ICML, arXiv:1703.01785, Alg. 1; Shaban, Cheng, Hatch & Boots 2019, "Truncated
    back-propagation for bilevel optimization", AISTATS, arXiv:1810.10667).  Memory grows linearly in K.
``"fixed_point"`` — AID on the fixed-point map Φ(x, y) = prox_{γr}(y − γ∇_y g(x, y)) of a possibly nonsmooth
    inner problem, with the generalised Jacobian of the prox (Grazzi, Pontil & Salzo 2024, "Nonsmooth Implicit
    Differentiation: Deterministic and Stochastic Convergence Rates", ICML, arXiv:2403.11687, Alg. AID-FP):
    v_{k+1} = ∂_yΦᵀ v_k + ∇_y f,  ∇h ≈ ∇_x f + ∂_xΦᵀ v_K.  Without a prox, Φ = y − γ∇_y g and this is AID with
    Neumann iterations.
``"nsid"`` — the stochastic version (NSID, same paper, Alg. 1): v_{k+1} = (1 − η_k) v_k + η_k (∂_yΦ̂ᵀ v_k + ∇_y f̂)
    with sampled maps, η_k = η₀ (constant) or η₀/(k+1)^decay, and a fresh sample for the final ∂_xΦ̂ᵀ v.

Defaults: ``steps = 20``; α, γ = 1/L with L from the problem (``inner_lipschitz``) or 20 power iterations
(counted as HVPs).  All second-order products are autograd double-backward products (no Hessian is formed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int, check_vector
from .linsolve import conjugate_gradient, lanczos_solve, neumann
from .oracles import Oracles
from .problems import BilevelProblem

__all__ = ["METHODS", "HypergradientEstimate", "estimate_lipschitz", "fixed_point_map", "hypergradient"]

METHODS = ("cg", "neumann", "lanczos", "itd", "fixed_point", "nsid")


@dataclass
class HypergradientEstimate:
    """Result of :func:`hypergradient`: the estimate, the linear-system solution v (``None`` for ITD), the y
    it was evaluated at, and the oracle calls it cost."""

    grad: Tensor
    v: Tensor | None
    y: Tensor
    counts: dict[str, int] = field(default_factory=dict)


def estimate_lipschitz(oracles: Oracles, x: Tensor, y: Tensor, iters: int = 20, seed: int = 0) -> float:
    """Largest eigenvalue of ∇²_yy g(x, y) by ``iters`` power iterations (each one HVP), times 1.05."""
    iters = check_int("iters", iters, 1)
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(y.shape, generator=gen, dtype=y.dtype)
    v = v / torch.linalg.vector_norm(v)
    apply = oracles.hessian_operator(x, y)
    lam = 0.0
    for _ in range(iters):
        w = apply(v)[0]
        lam = float(torch.linalg.vector_norm(w))
        if lam == 0.0:
            return 1.0
        v = w / lam
    return 1.05 * lam


def _step_size(problem: BilevelProblem, oracles: Oracles, x: Tensor, y: Tensor, step_size: float | None) -> float:
    if step_size is not None:
        return check_float("step_size", step_size, 0.0, low_open=True)
    L = problem.lipschitz(x)
    if L is None:
        L = estimate_lipschitz(oracles, x, y)
    return 1.0 / L


def fixed_point_map(problem: BilevelProblem, x: Tensor, y: Tensor, step: float,
                    idx: Tensor | None = None) -> Tensor:
    """Φ(x, y) = prox(x, y − γ∇_y g(x, y), γ) (or y − γ∇_y g without prox), differentiable in (x, y).

    ``x`` and ``y`` must be part of the autograd graph when derivatives of Φ are wanted.
    """
    with torch.enable_grad():
        (gy,) = torch.autograd.grad(problem.inner_on(x, y, idx), y, create_graph=True)
        z = y - step * gy
        return z if problem.prox is None else problem.prox(x, z, step)


def _inner_steps(problem: BilevelProblem, oracles: Oracles, x: Tensor, y: Tensor, steps: int, step: float,
                 stochastic: bool = False) -> Tensor:
    """Warm-started (proximal) gradient steps on the inner problem, without graph."""
    for _ in range(steps):
        idx = oracles.sample_inner() if stochastic else None
        z = y - step * oracles.grad_inner_y(x, y, idx)
        y = z if problem.prox is None else problem.prox(x, z, step).detach()
    return y


def _itd(problem: BilevelProblem, oracles: Oracles, x: Tensor, y: Tensor, steps: int, truncate: int,
         step: float) -> tuple[Tensor, Tensor]:
    """Reverse mode through ``steps`` inner steps, keeping the graph of the last ``truncate``."""
    y = _inner_steps(problem, oracles, x, y, steps - truncate, step)
    xl = x.detach().requires_grad_(True)
    with torch.enable_grad():
        yt = y.detach().requires_grad_(True)
        for _ in range(truncate):
            oracles.counts["grad_inner"] += 1
            yt = fixed_point_map(problem, xl, yt, step)
        oracles.counts["grad_outer"] += 1
        val = problem.outer(xl, yt)
        (grad,) = torch.autograd.grad(val, xl, allow_unused=True)
    oracles.counts["hvp"] += truncate  # the reverse pass through one step costs one HVP and one JVP
    oracles.counts["jvp"] += truncate
    return (torch.zeros_like(x) if grad is None else grad), yt.detach()


class _VJP(Protocol):
    """``vjp(v, want_x=False) -> (∂_yΦᵀ v, ∂_xΦᵀ v or None)`` (a ``Callable`` cannot say ``want_x`` has a default)."""

    def __call__(self, v: Tensor, want_x: bool = False) -> tuple[Tensor, Tensor | None]: ...


def _fp_vjp(problem: BilevelProblem, oracles: Oracles, x: Tensor, y: Tensor, step: float,
            idx: Tensor | None) -> _VJP:
    """v ↦ (∂_yΦᵀ v, ∂_xΦᵀ v if wanted) at (x, y); the graph of Φ is built once."""
    xl, yl = x.detach().requires_grad_(True), y.detach().requires_grad_(True)
    phi = fixed_point_map(problem, xl, yl, step, idx)

    def vjp(v: Tensor, want_x: bool = False) -> tuple[Tensor, Tensor | None]:
        oracles.counts["hvp"] += 1
        if want_x:
            oracles.counts["jvp"] += 1
            gy, gx = torch.autograd.grad(phi, (yl, xl), v, retain_graph=True, allow_unused=True)
            return gy, (torch.zeros_like(x) if gx is None else gx)
        (gy,) = torch.autograd.grad(phi, yl, v, retain_graph=True)
        return gy, None

    return vjp


def hypergradient(problem: BilevelProblem, x: Tensor, y: Tensor, method: str = "cg", *, steps: int = 20,
                  step_size: float | None = None, inner_steps: int = 0, truncate: int | None = None,
                  v0: Tensor | None = None, tol: float = 0.0, eta: float = 0.5, eta_decay: float = 0.0,
                  batch_size: int | None = None, seed: int = 0, oracles: Oracles | None = None
                  ) -> HypergradientEstimate:
    """Estimate the hypergradient ∇h(x) at (x, y) with ``method`` (see the module docstring).

    Args:
        problem: the bilevel problem.
        x, y: the point; ``y`` should approximate y*(x) (AID) or is the starting point of the unrolled
            inner steps (ITD).
        method: one of :data:`METHODS`.
        steps: CG / Neumann / Lanczos / fixed-point iterations K (ITD: the number T of unrolled steps).
        step_size: α of Neumann, γ of the fixed-point map and of the inner steps (default 1/L).
        inner_steps: gradient (or proximal gradient) steps on y from ``y`` before the AID solve.
        truncate: ITD only: back-propagate through the last ``truncate`` steps (default: all).
        v0: warm start of CG / Lanczos / fixed point (default 0).
        tol: CG only: stop once ‖A v − b‖ ≤ tol ‖b‖.
        eta, eta_decay: NSID only: η_k = eta / (k + 1)^eta_decay, eta in (0, 1].
        batch_size: NSID only: inner and outer mini-batch size (``None``: full batch).
        seed: seed of the mini-batches and of the power iteration.
        oracles: count into these oracles (default: fresh ones); ``counts`` holds this call's calls only.

    Raises:
        ValueError: an invalid argument (named), a shape mismatch, or a non-finite objective.
    """
    check_choice("method", method, METHODS)
    if not isinstance(problem, BilevelProblem):
        raise ValueError(f"problem must be a BilevelProblem, got {type(problem).__name__}")
    problem.check_point(x, y)
    steps = check_int("steps", steps, 1 if method in ("lanczos", "itd") else 0)
    inner_steps = check_int("inner_steps", inner_steps, 0)
    if truncate is not None and method != "itd":
        raise ValueError("truncate is only used by method='itd'")
    truncate = steps if truncate is None else check_int("truncate", truncate, 0, steps)
    if v0 is not None:
        check_vector("v0", v0, y)
    eta = check_float("eta", eta, 0.0, 1.0, low_open=True)
    eta_decay = check_float("eta_decay", eta_decay, 0.0, 1.0)
    if oracles is None:
        oracles = Oracles(problem, inner_batch_size=batch_size, outer_batch_size=batch_size, seed=seed)
    before = oracles.snapshot()
    x, y = x.detach(), y.detach()
    if problem.prox is not None and method in ("cg", "neumann", "lanczos"):
        raise ValueError(f"method={method!r} needs a smooth inner problem; this problem has a prox "
                         "(use 'fixed_point', 'nsid' or 'itd')")
    needs_step = method in ("neumann", "itd", "fixed_point", "nsid") or inner_steps > 0
    step = _step_size(problem, oracles, x, y, step_size) if needs_step else 1.0

    v: Tensor | None
    if method == "itd":
        grad, y = _itd(problem, oracles, x, y, steps, truncate, step)
        v = None
    else:
        y = _inner_steps(problem, oracles, x, y, inner_steps, step, stochastic=method == "nsid")
        if method in ("cg", "neumann", "lanczos"):
            gx_f, b = oracles.grad_outer(x, y)
            apply = oracles.hessian_operator(x, y)

            def apply_A(u: Tensor) -> Tensor:
                return apply(u)[0]

            if method == "cg":
                v, _ = conjugate_gradient(apply_A, b, steps, v0, tol)
            elif method == "neumann":
                v = neumann(apply_A, b, steps, step)
            else:
                v = lanczos_solve(apply_A, b, steps, v0)
            grad = gx_f - apply.jvp(v)  # the same graph of ∇_y g as the products
        elif method == "fixed_point":
            gx_f, b = oracles.grad_outer(x, y)
            vjp = _fp_vjp(problem, oracles, x, y, step, None)
            v = torch.zeros_like(y) if v0 is None else v0.clone()
            for _ in range(steps):
                v = vjp(v)[0] + b
            grad = gx_f + vjp(v, True)[1]  # type: ignore[operator]
        else:  # nsid
            v = torch.zeros_like(y) if v0 is None else v0.clone()
            for k in range(steps):
                eta_k = eta / (k + 1) ** eta_decay
                _, b = oracles.grad_outer(x, y, oracles.sample_outer())
                Phi_v = _fp_vjp(problem, oracles, x, y, step, oracles.sample_inner())(v)[0]
                v = (1 - eta_k) * v + eta_k * (Phi_v + b)
            gx_f, _ = oracles.grad_outer(x, y, oracles.sample_outer())
            grad = gx_f + _fp_vjp(problem, oracles, x, y, step, oracles.sample_inner())(v, True)[1]  # type: ignore[operator]
    if not bool(torch.isfinite(grad).all()):
        raise ValueError(f"the hypergradient estimate is not finite (method={method!r}); reduce step_size or "
                         "check that ∇²_yy g is positive definite at (x, y)")
    counts = {k: oracles.counts[k] - before[k] for k in before}
    return HypergradientEstimate(grad=grad.detach(), v=None if v is None else v.detach(), y=y.detach(),
                                 counts=counts)
