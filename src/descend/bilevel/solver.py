"""The solver protocol: one outer iteration per :meth:`BilevelSolver.step`, a timed :meth:`BilevelSolver.run`
loop that records a tidy per-iteration history, and the warm-started AID loop the LancBiO-repository solvers
share.

History rows are flat ``dict[str, float]`` records (ready to be stored as table rows):

* ``iteration`` (0 = the starting point), ``time`` (cumulative wall-clock seconds of the solver's own work;
  evaluation is off the clock),
* oracle counts ``grad_outer``, ``grad_inner``, ``hvp``, ``jvp`` (cumulative),
* ``outer_value`` = f(x, y) on the full outer data, ``hypergrad_norm`` = the norm of the solver's own
  hypergradient estimate in that iteration (NaN at iteration 0 and for solvers without one),
* the solver's per-iteration diagnostics (step sizes, λ, …) and ``problem.metrics(x, y)`` when evaluated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .._validate import check_float, check_int, check_vector
from .oracles import COUNT_KEYS, Oracles
from .problems import BilevelProblem

__all__ = ["AIDSolver", "BilevelResult", "BilevelSolver", "decayed_step"]


def decayed_step(lr: float, decay: float, min_lr: float, k: int) -> float:
    """lr_k = max(min_lr, lr / k^decay) (the LancBiO repository's schedule; k ≥ 1)."""
    return max(min_lr, lr / math.pow(k, decay))


@dataclass
class BilevelResult:
    """Final iterates and history of a run."""

    x: Tensor
    y: Tensor
    history: list[dict[str, float]]
    solver: str
    state: dict[str, Tensor] = field(default_factory=dict)

    def column(self, name: str) -> list[float]:
        """The values of one history field (NaN where a row lacks it)."""
        return [row.get(name, math.nan) for row in self.history]


class BilevelSolver:
    """Base class: holds the problem, its counted oracles and the iterates (x, y).

    Subclasses implement :meth:`_step` (one outer iteration on ``self.x``, ``self.y``, …) returning per-iteration
    diagnostics, including ``hypergrad_norm`` when they form a hypergradient estimate.

    Args:
        problem: the bilevel problem.
        x0, y0: starting point (default ``problem.x0``, ``problem.y0``).
        inner_batch_size, outer_batch_size: mini-batch sizes of the stochastic oracles (``None``: full batch).
        seed: seed of the mini-batch sampling (a seeded run is deterministic).
    """

    name: ClassVar[str] = "solver"

    def __init__(self, problem: BilevelProblem, *, x0: Tensor | None = None, y0: Tensor | None = None,
                 inner_batch_size: int | None = None, outer_batch_size: int | None = None,
                 seed: int = 0) -> None:
        if not isinstance(problem, BilevelProblem):
            raise ValueError(f"problem must be a BilevelProblem, got {type(problem).__name__}")
        self.problem = problem
        x = problem.x0 if x0 is None else x0
        y = problem.y0 if y0 is None else y0
        problem.check_point(x, y, ("x0", "y0"))
        self.x: Tensor = x.detach().clone()
        self.y: Tensor = y.detach().clone()
        self.oracles = Oracles(problem, inner_batch_size=inner_batch_size, outer_batch_size=outer_batch_size,
                               seed=seed)
        self.k = 0
        self.info: dict[str, float] = {}

    # ------------------------------------------------------------------------------------------------------
    def _step(self) -> dict[str, float]:
        raise NotImplementedError

    def state(self) -> dict[str, Tensor]:
        """The current iterates (x, y and any auxiliary variable such as v)."""
        return {"x": self.x, "y": self.y}

    def step(self) -> dict[str, float]:
        """Run one outer iteration; raise ``ValueError`` if an iterate becomes non-finite."""
        self.k += 1
        info = self._step()
        for name, t in self.state().items():
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{self.name}: {name} became non-finite at iteration {self.k}; reduce the step "
                                 "sizes (lr_outer / lr_inner)")
        self.info = info
        return info

    def evaluate(self) -> dict[str, float]:
        """Full-batch outer value and the problem's metrics at the current point (not counted)."""
        row = {"outer_value": float(self.oracles.outer_value(self.x, self.y))}
        if self.problem.metrics is not None:
            row.update({k: float(v) for k, v in self.problem.metrics(self.x, self.y).items()})
        return row

    def run(self, max_iter: int, *, eval_every: int = 1, max_time: float | None = None,
            callback: Callable[[Mapping[str, float]], Any] | None = None) -> BilevelResult:
        """Run up to ``max_iter`` outer iterations (or until ``max_time`` seconds of solver time).

        Args:
            max_iter: number of outer iterations (≥ 0).
            eval_every: record a history row every ``eval_every`` iterations (and the last one).
            max_time: optional budget in seconds of solver time (evaluation excluded).
            callback: called with each history row.
        """
        max_iter = check_int("max_iter", max_iter, 0)
        eval_every = check_int("eval_every", eval_every, 1)
        if max_time is not None:
            max_time = check_float("max_time", max_time, 0.0, low_open=True)
        history: list[dict[str, float]] = []
        elapsed = 0.0

        def record(info: Mapping[str, float]) -> None:
            row: dict[str, float] = {"iteration": float(self.k), "time": elapsed}
            row.update({k: float(self.oracles.counts[k]) for k in COUNT_KEYS})
            row.update(self.evaluate())
            row["hypergrad_norm"] = float(info.get("hypergrad_norm", math.nan))
            row.update({k: float(v) for k, v in info.items() if k != "hypergrad_norm"})
            history.append(row)
            if callback is not None:
                callback(row)

        record({})
        for i in range(max_iter):
            t0 = time.perf_counter()
            info = self.step()
            elapsed += time.perf_counter() - t0
            last = i == max_iter - 1 or (max_time is not None and elapsed >= max_time)
            if (i + 1) % eval_every == 0 or last:
                record(info)
            if last:
                break
        return BilevelResult(x=self.x.clone(), y=self.y.clone(), history=history, solver=self.name,
                             state={k: v.clone() for k, v in self.state().items()})


class AIDSolver(BilevelSolver):
    """Warm-started approximate implicit differentiation, one outer step per iteration.

    Iteration k (the order of the LancBiO repository's solvers, which the golden fixtures check)::

        lr_k = max(min_lr_outer, lr_outer / k^lr_outer_decay);  θ_k = max(min_lr_inner, lr_inner / k^lr_inner_decay)
        repeat T:  y ← y − θ_k ∇_y g(x, y)                      (warm start; a fresh mini-batch per step)
        b = ∇_y f(x, y);   v ← update_v(...)                    (solver-specific, v ≈ A⁻¹ b)
        x ← x − lr_k (∇_x f(x, y) − J v)                        (at the old x, the new y and v)

    Args (beyond :class:`BilevelSolver`'s):
        lr_outer, lr_inner: outer step λ and inner step θ.
        inner_steps: T, gradient steps on y per outer iteration.
        lr_outer_decay, min_lr_outer, lr_inner_decay, min_lr_inner: the schedule above.
        v0: starting v (default 0).
    """

    def __init__(self, problem: BilevelProblem, *, lr_outer: float = 1.0, lr_inner: float = 0.01,
                 inner_steps: int = 5, lr_outer_decay: float = 0.0, min_lr_outer: float = 0.0,
                 lr_inner_decay: float = 0.0, min_lr_inner: float = 0.0, v0: Tensor | None = None,
                 x0: Tensor | None = None, y0: Tensor | None = None, inner_batch_size: int | None = None,
                 outer_batch_size: int | None = None, seed: int = 0) -> None:
        super().__init__(problem, x0=x0, y0=y0, inner_batch_size=inner_batch_size,
                         outer_batch_size=outer_batch_size, seed=seed)
        self.lr_outer = check_float("lr_outer", lr_outer, 0.0, low_open=True)
        self.lr_inner = check_float("lr_inner", lr_inner, 0.0, low_open=True)
        self.inner_steps = check_int("inner_steps", inner_steps, 0)
        self.lr_outer_decay = check_float("lr_outer_decay", lr_outer_decay, 0.0)
        self.min_lr_outer = check_float("min_lr_outer", min_lr_outer, 0.0)
        self.lr_inner_decay = check_float("lr_inner_decay", lr_inner_decay, 0.0)
        self.min_lr_inner = check_float("min_lr_inner", min_lr_inner, 0.0)
        self.v = torch.zeros_like(self.y) if v0 is None else check_vector("v0", v0, self.y).detach().clone()

    def state(self) -> dict[str, Tensor]:
        return {"x": self.x, "y": self.y, "v": self.v}

    def hessian(self, x: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        """v ↦ A v at (x, y): one fixed operator with full batches, a fresh mini-batch per product otherwise."""
        o = self.oracles
        if o.problem.n_inner == 0 or o.inner_batch_size is None:
            op = o.hessian_operator(x, y)
            return lambda u: op(u)[0]
        return lambda u: o.hvp(x, y, u, o.sample_inner())

    def _update_v(self, b: Tensor, theta_k: float) -> Tensor:
        raise NotImplementedError

    def _step(self) -> dict[str, float]:
        o = self.oracles
        lr_k = decayed_step(self.lr_outer, self.lr_outer_decay, self.min_lr_outer, self.k)
        theta_k = decayed_step(self.lr_inner, self.lr_inner_decay, self.min_lr_inner, self.k)
        x, y = self.x, self.y
        for _ in range(self.inner_steps):
            y = y - theta_k * o.grad_inner_y(x, y, o.sample_inner())
        self.y = y
        gx_f, b = o.grad_outer(x, y, o.sample_outer())
        self.v = self._update_v(b, theta_k)
        hg = gx_f - o.jvp(x, y, self.v, o.sample_inner())
        self.x = x - lr_k * hg
        return {"hypergrad_norm": float(torch.linalg.vector_norm(hg)), "lr_outer": lr_k, "lr_inner": theta_k,
                **self._extra_info()}

    def _extra_info(self) -> dict[str, float]:
        return {}

