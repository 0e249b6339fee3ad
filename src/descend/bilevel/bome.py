"""BOME — Liu, Ye, Wright, Stone & Liu (2022), "BOME! Bilevel Optimization Made Easy: A Simple First-Order
Approach", NeurIPS 2022, arXiv:2209.08709, Algorithm 1.

Value-function reformulation min_{x,y} f(x, y) s.t. q(x, y) = g(x, y) − g*(x) ≤ 0, solved by a dynamic
barrier gradient descent on (x, y) jointly, with g*(x) estimated by T inner gradient steps.  First order only:
no Hessian- or Jacobian-vector products.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validate import check_choice, check_float, check_int
from .oracles import dot
from .problems import BilevelProblem
from .solver import BilevelSolver

__all__ = ["BOME"]


class BOME(BilevelSolver):
    """BOME (Algorithm 1 of Liu et al. 2022).

    ::

        ŷ ← y;  repeat T:  ŷ ← ŷ − α ∇_y g(x, ŷ)          (from the CURRENT y; ŷ is then a constant)
        q̂ = g(x, y) − g(x, ŷ);   ∇q̂ = (∇_x g(x, y) − ∇_x g(x, ŷ), ∇_y g(x, y));   ∇f = (∇_x f, ∇_y f)
        "grad_norm" (paper, φ = η‖∇q̂‖²):  λ = max(η − ⟨∇f, ∇q̂⟩ / (‖∇q̂‖² + δ), 0)
        "value"     (authors' hyper-cleaning code, φ = η q̂):  λ = max(η q̂ − ⟨∇f, ∇q̂⟩, 0) / (‖∇q̂‖² + δ)
        x ← x − ξ_x (∇_x f + λ ∇_x q̂);   y ← y − ξ_y (∇_y f + λ ∇_y q̂)

    Defaults (paper): η = 0.5, T = 10, ξ = α.  δ = 10⁻⁴ is the damping of the authors' toy code (the golden
    fixture needs it); δ = 0 is the paper's formula.  Checked against the authors' ``toy_convergence.py``
    (``bome`` golden fixture, rtol 1e-10).

    Args:
        problem: the bilevel problem.
        lr_outer: ξ_x.  lr_lower: ξ_y (default ``lr_outer``).  lr_inner: α of the ŷ steps.
        inner_steps: T.  eta: η.  phi: ``"grad_norm"`` or ``"value"``.  damping: δ.
    """

    name = "bome"

    def __init__(self, problem: BilevelProblem, *, lr_outer: float = 0.01, lr_lower: float | None = None,
                 lr_inner: float = 0.01, inner_steps: int = 10, eta: float = 0.5, phi: str = "grad_norm",
                 damping: float = 1e-4, **kwargs: Any) -> None:
        super().__init__(problem, **kwargs)
        self.lr_outer = check_float("lr_outer", lr_outer, 0.0, low_open=True)
        self.lr_lower = self.lr_outer if lr_lower is None else check_float("lr_lower", lr_lower, 0.0,
                                                                             low_open=True)
        self.lr_inner = check_float("lr_inner", lr_inner, 0.0, low_open=True)
        self.inner_steps = check_int("inner_steps", inner_steps, 0)
        self.eta = check_float("eta", eta, 0.0)
        self.phi = check_choice("phi", phi, ("grad_norm", "value"))
        self.damping = check_float("damping", damping, 0.0)
        self.y_hat = self.y.clone()

    def _step(self) -> dict[str, float]:
        o = self.oracles
        x, y = self.x, self.y
        y_hat = y
        for _ in range(self.inner_steps):
            y_hat = y_hat - self.lr_inner * o.grad_inner_y(x, y_hat, o.sample_inner())
        self.y_hat = y_hat
        idx = o.sample_inner()
        gx, gy = o.grad_inner(x, y, idx)
        gx_hat, _ = o.grad_inner(x, y_hat, idx)
        q = float(o.inner_value(x, y, idx) - o.inner_value(x, y_hat, idx))
        fx, fy = o.grad_outer(x, y, o.sample_outer())
        dq_x, dq_y = gx - gx_hat, gy
        inner = dot(fx, dq_x) + dot(fy, dq_y)
        nq = dot(dq_x, dq_x) + dot(dq_y, dq_y)
        if self.phi == "grad_norm":
            lam = torch.relu(self.eta - inner / (nq + self.damping))
        else:
            den = nq + self.damping
            lam = torch.relu(self.eta * q - inner) / den if bool(den > 0) else torch.zeros_like(nq)
        d_x = fx + lam * dq_x
        self.x = x - self.lr_outer * d_x
        self.y = y - self.lr_lower * (fy + lam * dq_y)
        return {"hypergrad_norm": float(torch.linalg.vector_norm(d_x)), "lambda": float(lam), "g_gap": q}
