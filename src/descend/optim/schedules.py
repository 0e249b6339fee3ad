r"""Learning-rate schedules that are research contributions in their own right, and their registry.

A schedule is not an optimizer: it is a ``torch.optim.lr_scheduler.LRScheduler`` that rescales
``group["lr"]`` of *any* optimizer, so it is registered here, in a registry of its own, instead of as an
:class:`~descend.optim.registry.OptimizerSpec` (whose contract — per-group learning rates that a scheduler
may set freely — a baked-in schedule would break).  Combine the two registries::

    >>> import torch, descend.optim as do
    >>> from descend.optim import schedules
    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = torch.optim.SGD([w], lr=0.1)
    >>> sched = schedules.create("logarithmic", opt, total_steps=100)
    >>> [round(lr, 4) for lr in schedules.lr_values(opt, sched, 3)]
    [0.1, 0.0849, 0.0761]

Logarithmic step size
=====================

Paper: M. Soheil Shamaee, S. Fathi Hafshejani, Z. Saeidian (2025), "New logarithmic step size for
stochastic gradient descent", Frontiers of Computer Science 19(1):191301, arXiv:2404.01257.

Within a cycle of ``T`` steps, step ``t = 1, ..., T`` uses::

    eta_t = eta_min + (eta_0 - eta_min) * (1 - ln(t) / ln(T))

so ``eta_1 = eta_0``, ``eta_T = eta_min`` (the paper: ``eta_min = 0``, the last step of a cycle is a zero
step) and ``eta_t = (eta_0 + eta_min) / 2`` at ``t = sqrt(T)``.  Cycles restart (warm restarts, the paper's
two-loop algorithm); like SGDR, cycle ``i`` has length ``T_0 * T_mult**i``.  ``eta_0`` is the optimizer's
learning rate when the scheduler is created (``base_lrs``), so the schedule composes with any optimizer.

Conventions this implementation fixes (the paper uses 1-based ``t``; the spec marks the formula
[SUMMARY]):

* ``last_epoch = k`` (``k`` scheduler steps taken) selects global step ``k + 1``; its position in the cycle
  is ``t = k - (start of the cycle) + 1``.  The scheduler's constructor sets ``eta_1 = eta_0``.
* A cycle of length ``T = 1`` (``ln T = 0``) uses ``eta_0``: ``eta_1 = eta_0`` holds for every ``T`` and
  wins over ``eta_T = eta_min``.  ``T_0 = 1, T_mult = 1`` is therefore a constant step.
* ``T_0 >= 1`` and ``T_mult >= 1`` are integers, ``eta_min >= 0``; anything else raises ``ValueError``.

Theory (paper): for L-smooth non-convex f and SGD with variance ``sigma^2``, a single cycle with
``eta_0 = 1/c`` and ``c ∝ sqrt(T) / ln T`` gives ``sum_t eta_t E||grad f(x_t)||^2 / sum_t eta_t =
O(1/sqrt(T))``.  (Check: ``sum_t eta_t ≈ eta_0 T / ln T`` and ``sum_t eta_t^2 ≈ 2 eta_0^2 T / ln^2 T``, so
the usual bound ``(2 Delta + L sigma^2 sum eta^2) / sum eta`` is ``O(1/sqrt(T))`` for
``eta_0 = c' ln T / sqrt(T)``.)  ``tests/optim/test_schedules.py`` measures the exponent on a smooth
non-convex stochastic problem with known ``L`` and ``sigma`` (``f = sum x^2/2 + cos(1.5 x)``, ``L = 3.25``,
``sigma = 1``, ``eta_0 = 0.5 ln T / sqrt(T)``, T = 100 ... 6400, 128 runs): the weighted average of
``E||grad f||^2`` decays like ``T^-0.53`` (and stays below the standard bound), the last iterate's like
``T^-0.78``; a constant step stalls at its noise floor (exponent ~0).

What was confirmed: the formula ``eta_t = eta_0 (1 - ln t / ln T)``, the two-loop warm-restart algorithm
and the ``O(1/sqrt(T))`` rate for ``c ∝ sqrt(T) / ln T`` agree between the spec and a third-party summary
of arXiv:2404.01257 (sciencestack.ai); the 1-based ``t``, ``eta_1 = eta_0`` and the probability-mass
argument (``eta_t / sum eta_t`` larger on late iterates than cosine) agree with the abstract and the
publisher's summary.  Not confirmed (the paper's body was not retrievable here): the restart length the
experiments used (per epoch or per run) and the exact constant in ``eta_0``.  ``eta_min`` and ``T_mult``
are extensions (SGDR's); their defaults (0 and 1) give the paper's schedule.

Reference implementation: none published; the values are checked against the closed form above.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from ._validate import check_float, check_int
from .registry import Dimension, IntRange

__all__ = [
    "LogarithmicLR",
    "ScheduleSpec",
    "available",
    "create",
    "cycle_position",
    "get",
    "log_step_factor",
    "lr_values",
    "register",
]


def cycle_position(step: int, T_0: int, T_mult: int = 1) -> tuple[int, int]:
    """``(t, T_i)`` for 0-based global ``step``: 1-based position in its cycle and that cycle's length.

    Examples:
        >>> [cycle_position(k, 3, 2) for k in range(5)]
        [(1, 3), (2, 3), (3, 3), (1, 6), (2, 6)]
    """
    check_int("step", step, 0)
    check_int("T_0", T_0, 1)
    check_int("T_mult", T_mult, 1)
    if T_mult == 1:
        return step % T_0 + 1, T_0
    length = T_0
    while step >= length:  # exact integer arithmetic; O(log step) cycles
        step -= length
        length *= T_mult
    return step + 1, length


def log_step_factor(t: int, T: int) -> float:
    """``1 - ln(t) / ln(T)`` for ``1 <= t <= T``; 1 when ``T = 1`` (``eta_1 = eta_0`` for every ``T``)."""
    check_int("T", T, 1)
    check_int("t", t, 1, T)
    if t == 1:
        return 1.0
    return 1.0 - math.log(t) / math.log(T)


class LogarithmicLR(LRScheduler):
    """Logarithmic step size with warm restarts (Shamaee, Hafshejani & Saeidian, 2025).

    Args:
        optimizer: any ``torch.optim.Optimizer``; each group's ``lr`` at construction is its ``eta_0``.
        T_0: length of the first cycle (integer ``>= 1``); the paper's ``T``.
        T_mult: each cycle is ``T_mult`` times longer than the previous one (integer ``>= 1``).
        eta_min: value reached at the last step of every cycle (``>= 0``; the paper: 0).
        last_epoch: index of the last scheduler step, ``-1`` for a fresh schedule (LRScheduler contract).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        T_0: int,
        *,
        T_mult: int = 1,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        self.T_0 = check_int("T_0", T_0, 1)
        self.T_mult = check_int("T_mult", T_mult, 1)
        self.eta_min = check_float("eta_min", eta_min, 0.0)
        check_int("last_epoch", last_epoch, -1)
        super().__init__(optimizer, last_epoch)

    def _lrs_at(self, step: int) -> list[float | torch.Tensor]:
        t, T = cycle_position(step, self.T_0, self.T_mult)
        factor = log_step_factor(t, T)
        return [self.eta_min + (base_lr - self.eta_min) * factor for base_lr in self.base_lrs]

    def get_lr(self) -> list[float | torch.Tensor]:
        """The learning rates for scheduler step ``last_epoch`` (closed form, so resuming is exact)."""
        return self._lrs_at(self.last_epoch)

    def _get_closed_form_lr(self) -> list[float | torch.Tensor]:
        return self._lrs_at(self.last_epoch)


# ---------------------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class ScheduleSpec:
    """A registered schedule.

    Attributes:
        name: registry key (lower-case ``snake_case``).
        factory: ``factory(optimizer, total_steps, **hyperparameters) -> LRScheduler`` for a run of
            ``total_steps`` optimizer steps (so benchmarks can build any schedule the same way).
        paper: authors, year, title (and arXiv id).
        defaults: documented default hyperparameters (keyword arguments of ``factory``).
        search_space: tuning space; keys must be in ``defaults``.
        summary: one line for listings.
    """

    name: str
    factory: Callable[..., LRScheduler]
    paper: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Dimension] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or " " in self.name:
            raise ValueError(f"schedule name must be lower-case snake_case, got {self.name!r}")
        unknown = set(self.search_space) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name}: search-space keys {sorted(unknown)} have no documented default")

    def create(self, optimizer: torch.optim.Optimizer, total_steps: int, **hyperparameters: Any) -> LRScheduler:
        """Build the schedule for a run of ``total_steps`` steps with the defaults overridden."""
        check_int("total_steps", total_steps, 1)
        return self.factory(optimizer, total_steps, **{**self.defaults, **hyperparameters})


_SCHEDULES: dict[str, ScheduleSpec] = {}


def register(spec: ScheduleSpec, *, replace: bool = False) -> ScheduleSpec:
    """Add ``spec`` to the schedule registry (``replace=True`` to overwrite)."""
    if spec.name in _SCHEDULES and not replace:
        raise ValueError(f"a schedule named {spec.name!r} is already registered")
    _SCHEDULES[spec.name] = spec
    return spec


def get(name: str) -> ScheduleSpec:
    """The schedule registered under ``name``."""
    try:
        return _SCHEDULES[name]
    except KeyError:
        raise KeyError(f"unknown schedule {name!r}; available: {', '.join(available())}") from None


def available() -> list[str]:
    """Names of all registered schedules, sorted."""
    return sorted(_SCHEDULES)


def create(name: str, optimizer: torch.optim.Optimizer, total_steps: int, **hyperparameters: Any) -> LRScheduler:
    """Build the schedule ``name`` for ``optimizer`` and a run of ``total_steps`` steps."""
    return get(name).create(optimizer, total_steps, **hyperparameters)


def lr_values(optimizer: torch.optim.Optimizer, scheduler: LRScheduler, steps: int) -> list[float]:
    """The first group's learning rate for the next ``steps`` steps (advances ``scheduler``, not params)."""
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
        for _ in range(steps):
            out.append(float(optimizer.param_groups[0]["lr"]))
            scheduler.step()
    return out


def logarithmic(
    optimizer: torch.optim.Optimizer, total_steps: int, *, cycles: int = 1, T_mult: int = 1, eta_min: float = 0.0
) -> LogarithmicLR:
    """:class:`LogarithmicLR` whose ``cycles`` cycles cover ``total_steps`` steps.

    ``T_0`` is the smallest length such that ``cycles`` cycles (growing by ``T_mult``) reach
    ``total_steps``; with ``cycles=1`` the whole run is one cycle and its last step has ``lr = eta_min``.
    """
    check_int("cycles", cycles, 1)
    check_int("T_mult", T_mult, 1)
    weight = cycles if T_mult == 1 else (T_mult**cycles - 1) // (T_mult - 1)
    T_0 = max(1, -(-total_steps // weight))
    return LogarithmicLR(optimizer, T_0, T_mult=T_mult, eta_min=eta_min)


register(ScheduleSpec(
    name="logarithmic",
    factory=logarithmic,
    paper="Shamaee, Fathi Hafshejani & Saeidian 2025, New logarithmic step size for stochastic gradient "
          "descent, Front. Comput. Sci. 19(1):191301, arXiv:2404.01257",
    defaults={"cycles": 1, "T_mult": 1, "eta_min": 0.0},
    search_space={"cycles": IntRange(1, 8)},
    summary="eta_t = eta_0 (1 - ln t / ln T) within cycles of T steps, with warm restarts",
))
