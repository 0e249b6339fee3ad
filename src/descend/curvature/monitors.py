"""Training monitors: curvature and lazy-training indicators as callbacks in a plain training loop.

Each monitor is evaluated every ``every`` steps (``monitor(step)`` returns ``None`` in between) and returns a
dict of values plus its cost: ``<name>_hvp`` (Hessian-vector products; Jacobian-vector products for the kernel)
and ``<name>_seconds`` (wall time of the measurement).  Every reading is also appended to ``monitor.history``.

* :class:`SharpnessMonitor` -- ``sharpness`` = lambda_max(H) by Lanczos (:func:`top_eigenpairs`, warm-started
  from the previous top eigenvector), ``eos_threshold`` = 2 / eta and ``sharpness_ratio`` = eta lambda_max / 2.
  Cohen, Kaur, Li, Kolter, Talwalkar (2021), "Gradient Descent on Neural Networks Typically Occurs at the Edge
  of Stability", ICLR 2021, arXiv:2103.00065: under full-batch GD, lambda_max rises until it reaches 2/eta
  (progressive sharpening) and then hovers there (ratio ~ 1) while the loss keeps falling non-monotonically.
* :class:`TraceMonitor` -- ``trace`` = tr(H) by Hutch++ (:func:`trace`), ``trace_se`` and ``sgd_stability`` =
  eta tr(H) / 2.  Lei Wu, Weijie J. Su (2023), "The Implicit Regularization of Dynamical Stability in Stochastic
  Gradient Descent", ICML 2023, arXiv:2305.17490: for squared loss at an interpolating minimum, linear
  stability of SGD with batch size 1 requires tr(H) <= 2/eta (ratio <= 1), while GD only needs lambda_max <= 2/eta.
* :class:`ParameterChangeMonitor` -- ``param_change`` = ||theta_t - theta_0|| / ||theta_0|| (no products): the
  lazy-training indicator of Chizat, Oyallon, Bach (2019) / Jacot et al. (2018) (-> 0 with width in the NTK regime).
* :class:`KernelChangeMonitor` -- ``kernel_change`` = ||K_t - K_0||_F / ||K_0||_F for the empirical neural tangent
  kernel ``K = J J^T`` of the model's outputs on a fixed probe batch (``J``: Jacobian in the parameters; cost
  ``n_probe * n_outputs`` vector-Jacobian products, reported as ``kernel_change_hvp``).

:class:`Monitors` runs several and merges their dicts.  Usage::

    mons = Monitors([SharpnessMonitor(lambda: HVPOperator(model, loss_fn, probe), lr=opt, every=50),
                     ParameterChangeMonitor(model.parameters(), every=50)])
    for t in range(steps):
        ...; opt.step()
        row = mons(t + 1)            # None unless (t + 1) % 50 == 0
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from .._validate import check_int
from .lanczos import top_eigenpairs
from .operators import CurvatureOperator
from .trace import trace

__all__ = ["KernelChangeMonitor", "Monitor", "Monitors", "ParameterChangeMonitor", "SharpnessMonitor",
           "TraceMonitor", "resolve_lr"]

LR = float | Callable[[], float] | torch.optim.Optimizer


def resolve_lr(lr: LR) -> float:
    """A learning rate now: a number, a callable, or an optimizer (its first group's current ``lr``)."""
    if isinstance(lr, torch.optim.Optimizer):
        return float(lr.param_groups[0]["lr"])
    if callable(lr):
        return float(lr())
    return float(lr)


class Monitor:
    """Base class: ``every`` steps, :meth:`measure` returns values; ``__call__`` adds the cost and keeps history."""

    name = "monitor"
    keys: tuple[str, ...] = ()  # the value keys measure() returns

    def __init__(self, every: int = 1) -> None:
        check_int("every", every, 1)
        self.every = every
        self.history: list[dict[str, float]] = []

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def measure(self) -> tuple[dict[str, float], int]:
        """Values and the number of products they cost."""
        raise NotImplementedError

    def __call__(self, step: int, *, force: bool = False) -> dict[str, float] | None:
        if not (force or self.due(step)):
            return None
        t0 = time.perf_counter()
        try:
            values, cost = self.measure()
        except FloatingPointError:  # diverged training: non-finite curvature, recorded as nan
            values, cost = {k: math.nan for k in self.keys}, 0
        row = {**values, f"{self.name}_hvp": float(cost), f"{self.name}_seconds": time.perf_counter() - t0}
        self.history.append({"step": float(step), **row})
        return row


class SharpnessMonitor(Monitor):
    """lambda_max of the Hessian against the edge of stability 2/eta (Cohen et al. 2021).

    ``operator()`` builds a fresh :class:`~descend.curvature.CurvatureOperator` at the current parameters (e.g.
    ``lambda: HVPOperator(model, loss_fn, probe_batch)``); ``lr`` a number, callable or optimizer.  Lanczos
    stops at relative residual ``tol`` (eigenvalue error <= tol * |lambda| by Weyl) and starts from the last
    top eigenvector, which typically halves the products once the direction settles.
    """

    name = "sharpness"
    keys = ("sharpness", "eos_threshold", "sharpness_ratio")

    def __init__(self, operator: Callable[[], CurvatureOperator], lr: LR, every: int = 1, *, tol: float = 1e-3,
                 max_iter: int = 100, seed: int = 0) -> None:
        super().__init__(every)
        if not callable(operator):
            raise ValueError("operator must be callable as operator() -> CurvatureOperator")
        self.operator = operator
        self.lr = lr
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed
        self._v: Tensor | None = None

    def measure(self) -> tuple[dict[str, float], int]:
        op = self.operator()
        v0 = self._v if self._v is not None and self._v.shape[0] == op.dim else None
        res = top_eigenpairs(op, 1, tol=self.tol, max_iter=min(self.max_iter, op.dim), seed=self.seed, v0=v0)
        self._v = res.eigenvectors[:, 0].detach()
        lam = float(res.eigenvalues[0])
        eta = resolve_lr(self.lr)
        return ({"sharpness": lam, "eos_threshold": 2.0 / eta if eta > 0 else math.inf,
                 "sharpness_ratio": eta * lam / 2.0}, res.n_hvp)


class TraceMonitor(Monitor):
    """tr(H) by Hutch++ and the SGD linear-stability ratio eta tr(H) / 2 (Wu & Su 2023; <= 1 at batch size 1)."""

    name = "trace"
    keys = ("trace", "trace_se", "sgd_stability")

    def __init__(self, operator: Callable[[], CurvatureOperator], lr: LR, every: int = 1, *, budget: int = 30,
                 method: str = "hutch++", seed: int = 0) -> None:
        super().__init__(every)
        if not callable(operator):
            raise ValueError("operator must be callable as operator() -> CurvatureOperator")
        self.operator = operator
        self.lr = lr
        self.budget = budget
        self.method = method
        self.seed = seed

    def measure(self) -> tuple[dict[str, float], int]:
        res = trace(self.operator(), self.method, self.budget, seed=self.seed)
        eta = resolve_lr(self.lr)
        return ({"trace": res.estimate, "trace_se": res.std_error, "sgd_stability": eta * res.estimate / 2.0},
                res.n_hvp)


def _flat(params: Iterable[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


class ParameterChangeMonitor(Monitor):
    """||theta_t - theta_0|| / ||theta_0|| with theta_0 the parameters at construction (no products)."""

    name = "param_change"
    keys = ("param_change", "param_distance")

    def __init__(self, params: Iterable[Tensor], every: int = 1) -> None:
        super().__init__(every)
        self.params = [p for p in params]
        if not self.params:
            raise ValueError("params must hold at least one tensor")
        self.theta0 = _flat(self.params).clone()
        self._norm0 = float(torch.linalg.vector_norm(self.theta0))

    def measure(self) -> tuple[dict[str, float], int]:
        diff = float(torch.linalg.vector_norm(_flat(self.params) - self.theta0))
        return {"param_change": diff / self._norm0 if self._norm0 > 0 else math.inf, "param_distance": diff}, 0


class KernelChangeMonitor(Monitor):
    """Relative Frobenius change of the empirical NTK ``K = J J^T`` on a fixed probe batch since construction.

    ``model(inputs)`` gives outputs of shape ``(n, ...)``; ``K`` is ``(n * n_outputs)^2``, so keep the probe
    small (tens of points).  Computed by ``torch.func.jacrev`` over the trainable parameters.
    """

    name = "kernel_change"
    keys = ("kernel_change",)

    def __init__(self, model: torch.nn.Module, inputs: Any, every: int = 1) -> None:
        super().__init__(every)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.inputs = inputs
        self.kernel0, self._cost = self._kernel()
        self._norm0 = float(torch.linalg.matrix_norm(self.kernel0))

    def _kernel(self) -> tuple[Tensor, int]:
        from torch.func import functional_call, jacrev

        named = {k: p.detach() for k, p in self.model.named_parameters() if p.requires_grad}
        fixed = {k: p.detach() for k, p in self.model.named_parameters() if not p.requires_grad}
        fixed.update(dict(self.model.named_buffers()))

        def outputs(ps: dict[str, Tensor]) -> Tensor:
            return functional_call(self.model, {**fixed, **ps}, (self.inputs,)).reshape(-1)

        jac = jacrev(outputs)(named)
        J = torch.cat([j.reshape(j.shape[0], -1) for j in jac.values()], dim=1)
        return J @ J.T, J.shape[0]

    def measure(self) -> tuple[dict[str, float], int]:
        K, cost = self._kernel()
        change = float(torch.linalg.matrix_norm(K - self.kernel0))
        return {"kernel_change": change / self._norm0 if self._norm0 > 0 else math.inf}, cost


class Monitors:
    """Several monitors as one callback: ``monitors(step)`` merges the readings that are due (``None`` if none)."""

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self.monitors = list(monitors)

    def due(self, step: int) -> bool:
        return any(m.due(step) for m in self.monitors)

    def __call__(self, step: int, *, force: bool = False) -> dict[str, float] | None:
        out: dict[str, float] = {}
        for m in self.monitors:
            r = m(step, force=force)
            if r is not None:
                out.update(r)
        return out or None
