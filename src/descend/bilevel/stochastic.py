"""Stochastic (and, with full batches, deterministic) AID baselines: stocBiO, AmIGO, SOBA, SABA.

All share the warm-started loop of :class:`~descend.bilevel.solver.AIDSolver` (T inner steps on y, a v ≈ A⁻¹b
update, an outer step with ∇_x f − J v) except SABA, which is single-loop with variance reduction.  With
``inner_batch_size`` / ``outer_batch_size`` each oracle call draws a fresh seeded mini-batch; without, the
solvers are the deterministic versions the LancBiO repository runs (checked against its golden fixtures).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._validate import check_choice, check_float, check_int, check_vector
from .linsolve import conjugate_gradient, neumann
from .problems import BilevelProblem
from .solver import AIDSolver, BilevelSolver

__all__ = ["SABA", "SOBA", "AmIGO", "StocBiO"]


class StocBiO(AIDSolver):
    """stocBiO — Ji, Yang & Liang (2021), "Bilevel Optimization: Convergence Analysis and Enhanced Design",
    ICML, arXiv:2010.07962, Algorithm 2.

    ::

        repeat T:  y ← y − θ ∇_y G(x, y; S_t)                        (warm start)
        v = η Σ_{i=0}^{Q} Π_{j≤i} (I − η ∇²_yy G(x, y; B_j)) ∇_y F(x, y; D_F)   (independent batches B_j)
        x ← x − β (∇_x F(x, y; D_F) − ∇²_xy G(x, y; D_G) v)

    This is the paper's Hessian-inverse estimate, *with* the i = 0 term and the factor η (the original
    stocBiO code drops both; the LancBiO repository and benchmark_bilevel keep them).  v is rebuilt from
    scratch every iteration.  Paper / LancBiO synthetic defaults: T = Q = 10, η = θ.

    Args: see :class:`~descend.bilevel.solver.AIDSolver`; ``hessian_steps`` = Q; ``neumann_step`` = η
    (default: the *undecayed* ``lr_inner``, as in the reference).
    """

    name = "stocbio"

    def __init__(self, problem: BilevelProblem, *, hessian_steps: int = 10, neumann_step: float | None = None,
                 inner_steps: int = 10, **kwargs: Any) -> None:
        super().__init__(problem, inner_steps=inner_steps, **kwargs)
        self.hessian_steps = check_int("hessian_steps", hessian_steps, 0)
        self.neumann_step = self.lr_inner if neumann_step is None else check_float(
            "neumann_step", neumann_step, 0.0, low_open=True)

    def _update_v(self, b: Tensor, theta_k: float) -> Tensor:
        return neumann(self.hessian(self.x, self.y), b, self.hessian_steps, self.neumann_step)


class AmIGO(AIDSolver):
    """AmIGO — Arbel & Mairal (2022), "Amortized Implicit Differentiation for Stochastic Bilevel Optimization",
    ICLR, arXiv:2111.14580, Algorithm 1 (with its GD or CG linear-system solvers).

    ::

        repeat T:  y ← y − θ_k ∇_y g(x, y)                               (warm start)
        b = ∇_y f(x, y)
        "gd": repeat Q:  v ← v − θ_k (A v − b)       (warm start from the previous v)
        "cg": Q conjugate-gradient iterations on A v = b from the previous v (symmetric A, no early stop)
        x ← x − λ_k (∇_x f(x, y) − J v)

    The v step is the (decayed) inner step θ_k unless ``lr_v`` is given.  LancBiO-paper synthetic settings:
    T = Q = 5.  With stochastic oracles, CG uses one mini-batch for its whole solve.
    """

    name = "amigo"

    def __init__(self, problem: BilevelProblem, *, hessian_steps: int = 5, v_solver: str = "cg",
                 lr_v: float | None = None, inner_steps: int = 5, **kwargs: Any) -> None:
        super().__init__(problem, inner_steps=inner_steps, **kwargs)
        self.hessian_steps = check_int("hessian_steps", hessian_steps, 0)
        self.v_solver = check_choice("v_solver", v_solver, ("gd", "cg"))
        self.lr_v = None if lr_v is None else check_float("lr_v", lr_v, 0.0, low_open=True)

    def _update_v(self, b: Tensor, theta_k: float) -> Tensor:
        if self.v_solver == "cg":
            o = self.oracles
            op = o.hessian_operator(self.x, self.y, o.sample_inner())
            v, _ = conjugate_gradient(lambda u: op(u)[0], b, self.hessian_steps, self.v)
            return v
        step = theta_k if self.lr_v is None else self.lr_v
        apply_A = self.hessian(self.x, self.y)
        v = self.v
        for _ in range(self.hessian_steps):
            v = v - step * (apply_A(v) - b)
        return v


class SOBA(AmIGO):
    """SOBA — Dagréou, Ablin, Vaiter & Moreau (2022), "A framework for bilevel optimization that enables
    stochastic and global variance reduction algorithms", NeurIPS, arXiv:2201.13409, Sec. 2–3 (SOBA).

    Single loop: one step on y, one step on v (on ½vᵀAv − bᵀv), one step on x per iteration, each with one
    sample per oracle::

        y ← y − ρ_t ∇_y G;   v ← v − ρ_t (∇²_yy G v − ∇_y F);   x ← x − γ_t (∇_x F − ∇²_xy G v)

    with ρ_t, γ_t ∝ t^(−1/2) by default (``lr_inner_decay = lr_outer_decay = 0.5``).  As in the LancBiO
    repository (whose fixture checks this class), b and the x step are taken at the updated y.
    """

    name = "soba"

    def __init__(self, problem: BilevelProblem, *, lr_outer: float = 0.1, lr_inner: float = 0.1,
                 lr_outer_decay: float = 0.5, lr_inner_decay: float = 0.5, **kwargs: Any) -> None:
        kwargs.setdefault("inner_steps", 1)
        kwargs.setdefault("hessian_steps", 1)
        super().__init__(problem, v_solver="gd", lr_outer=lr_outer, lr_inner=lr_inner,
                         lr_outer_decay=lr_outer_decay, lr_inner_decay=lr_inner_decay, **kwargs)


class SABA(BilevelSolver):
    """SABA — Dagréou, Ablin, Vaiter & Moreau (2022), arXiv:2201.13409, Sec. 3 (SOBA with SAGA directions).

    One inner sample i and one outer sample j per iteration; every direction is a SAGA estimate
    D = d_i(new) − d_i(memory) + mean(memory) of::

        D_y = ∇_y g_i(x, y),   D_v = ∇²_yy g_i(x, y) v − ∇_y f_j(x, y),   D_x = ∇_x f_j(x, y) − ∇²_xy g_i(x, y) v
        y ← y − ρ D_y;  v ← v − ρ D_v;  x ← x − γ D_x        (constant steps ρ, γ)

    The memory is filled with one pass over the data at the start (counted).  A problem without samples
    behaves as one sample per level (SABA = SOBA with constant steps).

    Args:
        problem: the problem (finite sums with ``n_inner`` / ``n_outer`` samples for variance reduction).
        lr_outer: γ.  lr_inner: ρ (for y and v).  v0: starting v (default 0).
    """

    name = "saba"

    def __init__(self, problem: BilevelProblem, *, lr_outer: float = 0.01, lr_inner: float = 0.1,
                 v0: Tensor | None = None, x0: Tensor | None = None, y0: Tensor | None = None,
                 seed: int = 0) -> None:
        super().__init__(problem, x0=x0, y0=y0, seed=seed)
        self.lr_outer = check_float("lr_outer", lr_outer, 0.0, low_open=True)
        self.lr_inner = check_float("lr_inner", lr_inner, 0.0, low_open=True)
        self.v = torch.zeros_like(self.y) if v0 is None else check_vector("v0", v0, self.y).detach().clone()
        self._memory: dict[str, Tensor] | None = None

    def state(self) -> dict[str, Tensor]:
        return {"x": self.x, "y": self.y, "v": self.v}

    def _inner_terms(self, idx: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        o = self.oracles
        gy = o.grad_inner_y(self.x, self.y, idx)
        Av, Jv = o.hessian_operator(self.x, self.y, idx, cross=True)(self.v)
        return gy, Av, Jv  # type: ignore[return-value]

    def _outer_terms(self, idx: Tensor | None) -> tuple[Tensor, Tensor]:
        return self.oracles.grad_outer(self.x, self.y, idx)

    @staticmethod
    def _index(n: int, i: int) -> Tensor | None:
        return None if n == 0 else torch.tensor([i])

    def _init_memory(self) -> dict[str, Tensor]:
        p = self.problem
        ni, no = max(p.n_inner, 1), max(p.n_outer, 1)
        inner = [self._inner_terms(self._index(p.n_inner, i)) for i in range(ni)]
        outer = [self._outer_terms(self._index(p.n_outer, j)) for j in range(no)]
        mem = {"gy": torch.stack([t[0] for t in inner]), "Av": torch.stack([t[1] for t in inner]),
               "Jv": torch.stack([t[2] for t in inner]), "fx": torch.stack([t[0] for t in outer]),
               "fy": torch.stack([t[1] for t in outer])}
        for key in list(mem):
            mem[key + "_mean"] = mem[key].mean(0)
        return mem

    def _saga(self, key: str, i: int, new: Tensor) -> Tensor:
        mem = self._memory
        assert mem is not None
        n = mem[key].shape[0]
        direction = new - mem[key][i] + mem[key + "_mean"]
        mem[key + "_mean"] = mem[key + "_mean"] + (new - mem[key][i]) / n
        mem[key][i] = new
        return direction

    def _step(self) -> dict[str, float]:
        if self._memory is None:
            self._memory = self._init_memory()
        p, g = self.problem, self.oracles.generator
        i = int(torch.randint(max(p.n_inner, 1), (1,), generator=g))
        j = int(torch.randint(max(p.n_outer, 1), (1,), generator=g))
        gy, Av, Jv = self._inner_terms(self._index(p.n_inner, i))
        fx, fy = self._outer_terms(self._index(p.n_outer, j))
        d_y = self._saga("gy", i, gy)
        d_v = self._saga("Av", i, Av) - self._saga("fy", j, fy)
        d_x = self._saga("fx", j, fx) - self._saga("Jv", i, Jv)
        self.y = self.y - self.lr_inner * d_y
        self.v = self.v - self.lr_inner * d_v
        self.x = self.x - self.lr_outer * d_x
        return {"hypergrad_norm": float(torch.linalg.vector_norm(d_x))}
