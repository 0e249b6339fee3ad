"""First- and second-order oracles of a bilevel problem, with call counts and seeded mini-batches.

Every derivative is taken by autograd (double backward for the second-order products); no Hessian is
ever materialised.  With A = ∇²_yy g(x, y) and J = ∇²_xy g(x, y) (shape dim_x × dim_y):

* ``hvp``: A v (a Hessian-vector product),
* ``jvp``: J v = ∂/∂x ⟨∇_y g(x, y), v⟩ (a Jacobian-vector product of x ↦ ∇_y g, transposed),
* ``grad_outer`` / ``grad_inner``: one gradient of f / g (both blocks at once count as one).

Counts are kept in :attr:`Oracles.counts` under the keys ``grad_outer``, ``grad_inner``, ``hvp``, ``jvp``.
Mini-batches are drawn (with replacement) from a ``torch.Generator`` seeded at construction, so that a
seeded run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._validate import check_finite, check_optional_int
from .problems import BilevelProblem

__all__ = ["COUNT_KEYS", "Oracles", "dot"]

COUNT_KEYS = ("grad_outer", "grad_inner", "hvp", "jvp")


def dot(a: Tensor, b: Tensor) -> Tensor:
    """⟨a, b⟩ over all entries (tensors of any shape)."""
    return (a * b).sum()


def _leaf(t: Tensor) -> Tensor:
    return t.detach().requires_grad_(True)


def _grad_xy(fn: Callable[[Tensor, Tensor, Tensor | None], Tensor], what: str, x: Tensor, y: Tensor,
             idx: Tensor | None) -> tuple[Tensor, Tensor]:
    """(∂fn/∂x, ∂fn/∂y) at (x, y), zeros where fn does not depend on an argument; non-finite values raise."""
    xl, yl = _leaf(x), _leaf(y)
    with torch.enable_grad():
        val = fn(xl, yl, idx)
        check_finite(what, val.detach())
        gx, gy = torch.autograd.grad(val, (xl, yl), allow_unused=True)
    return (torch.zeros_like(x) if gx is None else gx), (torch.zeros_like(y) if gy is None else gy)


class HessianOperator:
    """v ↦ (∇²_yy g v, ∇²_xy g v or None) from one graph of ∇_y g at a fixed (x, y); see
    :meth:`Oracles.hessian_operator`."""

    def __init__(self, counts: dict[str, int], xl: Tensor, yl: Tensor, gy: Tensor, cross: bool) -> None:
        self.counts, self.xl, self.yl, self.gy, self.cross = counts, xl, yl, gy, cross

    def __call__(self, v: Tensor) -> tuple[Tensor, Tensor | None]:
        self.counts["hvp"] += 1
        if self.cross:
            self.counts["jvp"] += 1
            Av, Jv = torch.autograd.grad(self.gy, (self.yl, self.xl), v, retain_graph=True, allow_unused=True)
            return (torch.zeros_like(self.yl) if Av is None else Av), (torch.zeros_like(self.xl) if Jv is None else Jv)
        (Av,) = torch.autograd.grad(self.gy, self.yl, v, retain_graph=True, allow_unused=True)
        return (torch.zeros_like(self.yl) if Av is None else Av), None

    def jvp(self, v: Tensor) -> Tensor:
        """J v = ∂/∂x ⟨∇_y g(x, y), v⟩ from the same graph; one ``jvp``."""
        self.counts["jvp"] += 1
        (Jv,) = torch.autograd.grad(self.gy, self.xl, v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(self.xl) if Jv is None else Jv


class Oracles:
    """Counted oracles of ``problem``.

    Args:
        problem: the bilevel problem.
        inner_batch_size, outer_batch_size: mini-batch sizes for :meth:`sample_inner` / :meth:`sample_outer`
            (``None``: full batch, i.e. ``sample_*`` returns ``None``).  Ignored (full batch) when the problem
            has no samples on that level.
        seed: seed of the mini-batch generator.
    """

    def __init__(self, problem: BilevelProblem, *, inner_batch_size: int | None = None,
                 outer_batch_size: int | None = None, seed: int = 0) -> None:
        self.problem = problem
        self.inner_batch_size = check_optional_int("inner_batch_size", inner_batch_size, 1)
        self.outer_batch_size = check_optional_int("outer_batch_size", outer_batch_size, 1)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.counts: dict[str, int] = dict.fromkeys(COUNT_KEYS, 0)

    # sampling ---------------------------------------------------------------------------------------------
    def _sample(self, n: int, bs: int | None) -> Tensor | None:
        if n == 0 or bs is None:
            return None
        return torch.randint(n, (bs,), generator=self.generator)

    def sample_inner(self) -> Tensor | None:
        """Indices of an inner mini-batch (``None``: full batch)."""
        return self._sample(self.problem.n_inner, self.inner_batch_size)

    def sample_outer(self) -> Tensor | None:
        """Indices of an outer mini-batch (``None``: full batch)."""
        return self._sample(self.problem.n_outer, self.outer_batch_size)

    # values -------------------------------------------------------------------------------------------------
    def outer_value(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        """f(x, y) (not counted: a function value)."""
        with torch.no_grad():
            return self.problem.outer_on(x, y, idx)

    def inner_value(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        """g(x, y) (not counted)."""
        with torch.no_grad():
            return self.problem.inner_on(x, y, idx)

    # gradients ----------------------------------------------------------------------------------------------
    def grad_outer(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(∇_x f, ∇_y f) at (x, y); one ``grad_outer`` call."""
        self.counts["grad_outer"] += 1
        return _grad_xy(self.problem.outer_on, "the outer objective f(x, y)", x, y, idx)

    def grad_inner(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(∇_x g, ∇_y g) at (x, y); one ``grad_inner`` call."""
        self.counts["grad_inner"] += 1
        return _grad_xy(self.problem.inner_on, "the inner objective g(x, y)", x, y, idx)

    def grad_inner_y(self, x: Tensor, y: Tensor, idx: Tensor | None = None) -> Tensor:
        """∇_y g at (x, y); one ``grad_inner`` call."""
        self.counts["grad_inner"] += 1
        yl = _leaf(y)
        with torch.enable_grad():
            val = self.problem.inner_on(x.detach(), yl, idx)
            check_finite("the inner objective g(x, y)", val.detach())
            (gy,) = torch.autograd.grad(val, yl)
        return gy

    # second order -------------------------------------------------------------------------------------------
    def hessian_operator(self, x: Tensor, y: Tensor, idx: Tensor | None = None,
                         cross: bool = False) -> HessianOperator:
        """The operator v ↦ (A v, J v or None) at the fixed point (x, y), built once (∇_y g with its graph).

        Each application counts one ``hvp`` (and one ``jvp`` when ``cross``); building it counts nothing
        extra beyond the graph of ∇_y g, which is part of the products' cost.  ``operator.jvp(v)`` reuses the
        same graph for a lone J v (one ``jvp``).
        """
        xl, yl = _leaf(x), _leaf(y)
        with torch.enable_grad():
            val = self.problem.inner_on(xl, yl, idx)
            check_finite("the inner objective g(x, y)", val.detach())
            (gy,) = torch.autograd.grad(val, yl, create_graph=True)
        return HessianOperator(self.counts, xl, yl, gy, cross)

    def hvp(self, x: Tensor, y: Tensor, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """A v = ∇²_yy g(x, y) v; one ``hvp``."""
        return self.hessian_operator(x, y, idx)(v)[0]

    def jvp(self, x: Tensor, y: Tensor, v: Tensor, idx: Tensor | None = None) -> Tensor:
        """J v = ∂/∂x ⟨∇_y g(x, y), v⟩; one ``jvp``."""
        self.counts["jvp"] += 1
        xl, yl = _leaf(x), _leaf(y)
        with torch.enable_grad():
            val = self.problem.inner_on(xl, yl, idx)
            check_finite("the inner objective g(x, y)", val.detach())
            (gy,) = torch.autograd.grad(val, yl, create_graph=True)
            (Jv,) = torch.autograd.grad(gy, xl, v, allow_unused=True)
        return torch.zeros_like(x) if Jv is None else Jv

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts."""
        return dict(self.counts)
