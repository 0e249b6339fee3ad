"""Machinery shared by descend's stochastic line-search optimizers (:mod:`.linesearch`, :mod:`.adam_sls`,
:mod:`.salsa`).

**Closure convention** (``OptimizerSpec.requires_closure``): ``opt.step(closure)`` where ``closure()``
re-evaluates the loss on the *same* mini-batch and returns it **without** calling ``backward()``.  The
optimizer clears the gradients (``zero_grad(set_to_none=True)``), evaluates the closure once with autograd
enabled and calls ``backward()`` itself; every line-search trial evaluates the closure again under
``torch.no_grad()``.  ``step`` returns the (detached) loss at the start point.

**Randomness.**  The references (``IssamLaradji/sls``, ``SaLSa-Optimizer``) reseed the global numpy and torch
RNGs from ``time.time()`` around every closure call so that dropout masks repeat.  descend never reseeds:
either the closure is deterministic (``model.eval()``-style, or its own fixed generator), or pass
``repeat_rng=True``: the torch CPU (and, when initialised, CUDA) RNG state is captured before the first
evaluation and restored before every trial, so every evaluation of one step draws the same random numbers;
after the step the RNG continues from where the first evaluation left it, as if the closure had run once.

**Non-finite values.**  A trial whose loss is not finite is a failed trial (the step size shrinks), never
an accepted point.  If the loss or the gradient at the start point is not finite, the step is skipped:
parameters and optimizer state are left untouched and the non-finite loss is returned.

**State.**  Every scalar of the algorithms (step sizes, counters, averages) is a 0-d float64 tensor in
``self.state[p]`` of the parameters it concerns (a per-group scalar is replicated in every parameter of the
group that has state, an optimizer-wide one in every parameter with state), so ``state_dict()`` round-trips
it and parameters without gradients get no state.  ``load_state_dict`` keeps the dtype each tensor was saved
with (torch's default casts floating state to the parameter's dtype, which would round float64 step sizes
and float32 moments of bfloat16 parameters), so a resumed run is bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import torch

from ._validate import check_no_sparse_or_complex

__all__ = ["LineSearchOptimizer", "StepClosure", "read_scalars", "write_scalars"]

Closure = Callable[[], torch.Tensor]


def _rng_snapshot() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _rng_restore(snap: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(snap[0])
    if snap[1] is not None:
        torch.cuda.set_rng_state_all(snap[1])


class StepClosure:
    """Runs a user closure under descend's line-search convention for one ``step()``."""

    def __init__(self, closure: Closure | None, optimizer_name: str, *, repeat_rng: bool) -> None:
        if closure is None or not callable(closure):
            raise RuntimeError(
                f"{optimizer_name} is a line search and needs a closure: opt.step(closure), where closure() "
                "re-evaluates the loss on the same mini-batch and returns it WITHOUT calling backward() "
                "(the optimizer zeroes the gradients and calls backward() itself)")
        self._closure = closure
        self._name = optimizer_name
        self._repeat_rng = repeat_rng
        self._before: tuple[torch.Tensor, list[torch.Tensor] | None] | None = None
        self._after: tuple[torch.Tensor, list[torch.Tensor] | None] | None = None
        self.trials = 0

    def first(self, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Zero the gradients, evaluate the loss with autograd and back-propagate; return the detached loss."""
        optimizer.zero_grad(set_to_none=True)
        if self._repeat_rng:
            self._before = _rng_snapshot()
        with torch.enable_grad():
            loss = self._closure()
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TypeError(f"{self._name}: the closure must return the loss as a one-element tensor, "
                                f"got {type(loss).__name__}")
            if not loss.requires_grad:
                raise RuntimeError(
                    f"{self._name}: the loss returned by the closure does not require grad; the closure must "
                    "build the autograd graph (do not detach the loss or evaluate it under torch.no_grad())")
            loss.backward()
        if self._repeat_rng:
            self._after = _rng_snapshot()
        return loss.detach()

    def trial(self) -> float:
        """Evaluate the loss at the current parameters without autograd; return it as a Python float."""
        if self._before is not None:
            _rng_restore(self._before)
        with torch.no_grad():
            loss = self._closure()
        self.trials += 1
        return float(loss)

    def finish(self) -> None:
        """Leave the RNG where the first evaluation left it (``repeat_rng=True`` only)."""
        if self._after is not None:
            _rng_restore(self._after)


def read_scalars(params: Iterable[torch.Tensor], state: Mapping[torch.Tensor, Mapping[str, Any]],
                 defaults: Mapping[str, float]) -> dict[str, float]:
    """The replicated scalars ``defaults`` keys from the first parameter whose state holds them, as floats."""
    for p in params:
        st = state.get(p)
        if st and all(k in st for k in defaults):
            return {k: float(st[k]) for k in defaults}
    return dict(defaults)


def write_scalars(params: Iterable[torch.Tensor], state: Mapping[torch.Tensor, dict[str, Any]],
                  values: Mapping[str, float]) -> None:
    """Store ``values`` as 0-d float64 tensors in the state of every given parameter (fresh tensors: a
    ``state_dict()`` taken earlier is never mutated)."""
    for p in params:
        st = state[p]
        for k, v in values.items():
            st[k] = torch.tensor(v, dtype=torch.float64)


def finite(x: float) -> bool:
    return math.isfinite(x)


class LineSearchOptimizer(torch.optim.Optimizer):
    """Base class: dtype-preserving ``load_state_dict`` and the common frame of a line-search step.

    Subclasses validate their hyperparameters, then call ``super().__init__(params, defaults,
    repeat_rng=...)``; they implement :meth:`_check_group` and either :meth:`_group_step` (one line search
    per parameter group) or :meth:`_step` (the whole step).
    """

    _name = "line search"

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any], *, repeat_rng: bool) -> None:
        self.repeat_rng = bool(repeat_rng)
        self.last_step_info: dict[str, float] = {}
        super().__init__(params, defaults)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        """Validate one group's hyperparameters (they may have been changed since construction)."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        for group in self.param_groups:
            self._check_group(group)
        runner, loss, ok = self._begin(closure, self.repeat_rng)
        info: dict[str, float] = {"loss": float(loss)}
        if ok:
            info.update(self._step(float(loss), runner))
        runner.finish()
        self.last_step_info = info
        return loss

    def _step(self, f0: float, runner: StepClosure) -> dict[str, float]:
        """The step after a finite start point (loss ``f0``): by default one :meth:`_group_step` per group
        with a gradient and a nonzero ``lr``; the info of the first group whose info has a step size."""
        info: dict[str, float] = {}
        for group in self.param_groups:
            params = active(group)
            if params and group["lr"] != 0:
                g_info = self._group_step(group, params, f0, runner)
                if "step_size" not in info:
                    info.update(g_info)
        return info

    def _group_step(self, group: dict[str, Any], params: list[torch.Tensor], f0: float,
                    runner: StepClosure) -> dict[str, float]:
        """Search and update one group (``params``: its parameters with a gradient); return its info."""
        raise NotImplementedError

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
        params = chain.from_iterable(g["params"] for g in self.param_groups)
        for pid, p in zip(saved_ids, params, strict=True):
            saved = state_dict["state"].get(pid)
            if not saved:
                continue
            st = self.state[p]
            for k, v in saved.items():
                if isinstance(v, torch.Tensor):
                    # keep the saved dtype; float64 scalars stay on the CPU, tensors go to the parameter
                    device = v.device if v.dim() == 0 else p.device
                    st[k] = v.to(device=device, copy=True)

    def _begin(self, closure: Closure | None, repeat_rng: bool) -> tuple[StepClosure, torch.Tensor, bool]:
        """Evaluate loss and gradients; return (runner, loss, ok) with ``ok = False`` when the loss or the
        gradient is not finite (the caller then skips the step)."""
        runner = StepClosure(closure, self._name, repeat_rng=repeat_rng)
        loss = runner.first(self)
        with_grad = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        check_no_sparse_or_complex(self._name, with_grad)
        ok = finite(float(loss))
        if ok and with_grad:
            total = torch.stack([p.grad.detach().float().pow(2).sum() if p.grad.dtype in _LOW
                                 else p.grad.detach().pow(2).sum().double() for p in with_grad]).sum()
            ok = bool(torch.isfinite(total))
        return runner, loss, ok


_LOW = (torch.bfloat16, torch.float16)


def state_dtype(p: torch.Tensor) -> torch.dtype:
    """Moments of bfloat16/float16 parameters are kept in float32; otherwise in the parameter's dtype."""
    return torch.float32 if p.dtype in _LOW else p.dtype


def active(group: Mapping[str, Any]) -> list[torch.Tensor]:
    """Parameters of ``group`` that have a gradient this step."""
    return [p for p in group["params"] if p.grad is not None]


def sq_norm(tensors: Sequence[torch.Tensor]) -> float:
    """``sum_i sum(t_i * t_i)`` accumulated as in the references (float64 for float64 inputs)."""
    acc: torch.Tensor | None = None
    for t in tensors:
        t = t.float() if t.dtype in _LOW else t
        s = torch.sum(torch.mul(t, t))
        acc = s if acc is None else acc + s
    return 0.0 if acc is None else float(acc)
