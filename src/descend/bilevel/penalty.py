"""Penalty methods: F2SA — Kwon, Kwon, Wright & Nowak (2023), "A Fully First-Order Method for Stochastic
Bilevel Optimization", ICML 2023, arXiv:2301.10945, Algorithm 1 — and the fixed-penalty method analysed in
Kwon, Kwon, Wright & Nowak (2024), "On Penalty Methods for Nonconvex Bilevel Optimization and First-Order
Stochastic Approximation", ICLR 2024, arXiv:2309.01753.

With λ = 1/σ, ψ_λ(x) = λ (min_y [f/λ + g] − min_z g) and

    ∇ψ_λ(x) = ∇_x f(x, y_λ) + λ (∇_x g(x, y_λ) − ∇_x g(x, z*)),   y_λ = argmin_y f + λ g,  z* = argmin_z g;

|ψ_λ − h| = O(1/(λμ)), so λ must grow (F2SA) or be chosen O(1/ε) (penalty method).  First order only.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from .._validate import check_float, check_int
from .problems import BilevelProblem
from .solver import BilevelSolver

__all__ = ["F2SA", "PenaltyMethod"]


class F2SA(BilevelSolver):
    """F2SA (Algorithm 1 of Kwon et al. 2023).

    ::

        state x, y (≈ argmin f + λ g), z (≈ argmin g), λ ← λ₀
        iteration k:  repeat T:  y ← y − (a_k/λ) (∇_y f(x, y) + λ ∇_y g(x, y));   z ← z − c_k ∇_y g(x, z)
                      x ← x − ξ_k (∇_x f(x, y) + λ (∇_x g(x, y) − ∇_x g(x, z)));   λ ← min(λ + δ_k, λ_max)

    with a_k = a/(k+1)^(5/7), c_k = c/(k+1)^(4/7), ξ_k = ξ/(k+1)^(4/7), δ_k = δ/(k+1)^(1/7) — the schedules of
    benchmark_bilevel — and T = 10.  The y step is written a_k/λ (the paper's α_k with α_k λ ≤ 1/L_g), so
    ``lr_inner`` keeps the units of an inner step (≤ 1/L_g) as λ grows.

    Args:
        lr_outer: ξ.  lr_inner: a.  lr_z: c (default ``lr_inner``).  inner_steps: T.
        penalty: λ₀.  penalty_increment: δ.  max_penalty: λ_max.
        lr_outer_decay, lr_inner_decay, lr_z_decay, penalty_decay: the exponents above.
        z0: start of z (default y0).
    """

    name = "f2sa"

    def __init__(self, problem: BilevelProblem, *, lr_outer: float = 0.01, lr_inner: float = 0.01,
                 lr_z: float | None = None, inner_steps: int = 10, penalty: float = 1.0,
                 penalty_increment: float = 1.0, max_penalty: float = math.inf, lr_outer_decay: float = 4 / 7,
                 lr_inner_decay: float = 5 / 7, lr_z_decay: float = 4 / 7, penalty_decay: float = 1 / 7,
                 **kwargs: Any) -> None:
        super().__init__(problem, **kwargs)
        self.lr_outer = check_float("lr_outer", lr_outer, 0.0, low_open=True)
        self.lr_inner = check_float("lr_inner", lr_inner, 0.0, low_open=True)
        self.lr_z = self.lr_inner if lr_z is None else check_float("lr_z", lr_z, 0.0, low_open=True)
        self.inner_steps = check_int("inner_steps", inner_steps, 1)
        self.penalty = check_float("penalty", penalty, 0.0, low_open=True)
        self.penalty_increment = check_float("penalty_increment", penalty_increment, 0.0)
        if not (isinstance(max_penalty, (int, float)) and max_penalty >= self.penalty):
            raise ValueError(f"max_penalty must be in [penalty, inf], got {max_penalty!r}")
        self.max_penalty = float(max_penalty)
        self.decays = {name: check_float(name, val, 0.0) for name, val in (
            ("lr_outer_decay", lr_outer_decay), ("lr_inner_decay", lr_inner_decay), ("lr_z_decay", lr_z_decay),
            ("penalty_decay", penalty_decay))}
        self.z = self.y.clone()

    def state(self) -> dict[str, Tensor]:
        return {"x": self.x, "y": self.y, "z": self.z}

    def _step(self) -> dict[str, float]:
        o, k, lam = self.oracles, self.k, self.penalty
        a_k = self.lr_inner / (k + 1) ** self.decays["lr_inner_decay"]
        c_k = self.lr_z / (k + 1) ** self.decays["lr_z_decay"]
        xi_k = self.lr_outer / (k + 1) ** self.decays["lr_outer_decay"]
        x, y, z = self.x, self.y, self.z
        for _ in range(self.inner_steps):
            _, fy = o.grad_outer(x, y, o.sample_outer())
            y = y - (a_k / lam) * (fy + lam * o.grad_inner_y(x, y, o.sample_inner()))
            z = z - c_k * o.grad_inner_y(x, z, o.sample_inner())
        fx, _ = o.grad_outer(x, y, o.sample_outer())
        idx = o.sample_inner()
        gx_y, _ = o.grad_inner(x, y, idx)
        gx_z, _ = o.grad_inner(x, z, idx)
        d_x = fx + lam * (gx_y - gx_z)
        self.x, self.y, self.z = x - xi_k * d_x, y, z
        delta = self.penalty_increment / (k + 1) ** self.decays["penalty_decay"]
        self.penalty = min(lam + delta, self.max_penalty)
        return {"hypergrad_norm": float(d_x.norm()), "penalty": lam, "lr_outer": xi_k, "lr_inner": a_k}


class PenaltyMethod(F2SA):
    """The penalty method with a fixed λ = 1/σ and constant steps (F2SA with δ = 0 and no decay).

    Its fixed point is a stationary point of ψ_λ, within O(1/(λμ)) of the bilevel one (Kwon et al. 2024:
    choose σ = 1/λ = O(ε)).
    """

    name = "penalty"

    def __init__(self, problem: BilevelProblem, *, penalty: float = 100.0, **kwargs: Any) -> None:
        for key in ("penalty_increment", "lr_outer_decay", "lr_inner_decay", "lr_z_decay", "penalty_decay"):
            if key in kwargs:
                raise ValueError(f"{key} is fixed to 0 in PenaltyMethod (use F2SA for schedules)")
        super().__init__(problem, penalty=penalty, penalty_increment=0.0, lr_outer_decay=0.0,
                         lr_inner_decay=0.0, lr_z_decay=0.0, penalty_decay=0.0, **kwargs)
