"""The workload plug-in API.

A workload builds a :class:`Task` (model parameters, a seeded mini-batch training loss and an evaluation)
from a seed and a scale, and declares its default budget.  Workloads know nothing about optimizers.

Adding one is one file::

    from descend.bench.workloads import Task, Workload, register_workload

    @register_workload
    class MyWorkload(Workload):
        name = "my_workload"
        scales = {"s": {...}, "m": {...}}
        budget = {"s": 500, "m": 2000}
        def build(self, seed, scale):
            ...
            return Task(params=..., train_loss=..., evaluate=...)

or, without touching descend, pass ``--workloads my_package.my_module:MyWorkload`` to ``descend bench run``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = ["Task", "Workload", "available_workloads", "get_workload", "register_workload"]


@dataclass
class Task:
    """One instantiated workload.

    Attributes:
        params: the parameters (or param groups) to optimize.
        train_loss: ``train_loss(step)`` — the training loss on mini-batch ``step`` (a deterministic
            function of the task's seed and ``step``, so line searches can re-evaluate it).
        evaluate: held-out metrics computed without gradients; must contain ``"val_loss"``.
        optimum: the minimal value of the full training objective when known (convex workloads), to report
            suboptimality; ``None`` otherwise.
        train_objective: the full-batch training objective, when ``optimum`` is given.
        model: the module, if there is one (for optimizers that build groups from a module, e.g. Muon).
    """

    params: Any
    train_loss: Callable[[int], torch.Tensor]
    evaluate: Callable[[], Mapping[str, float]]
    optimum: float | None = None
    train_objective: Callable[[], torch.Tensor] | None = None
    model: torch.nn.Module | None = None
    info: dict[str, Any] = field(default_factory=dict)


class Workload:
    """Base class of workloads: subclass, set the class attributes, implement :meth:`build`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: scale name -> workload-specific settings (the first one is the default)
    scales: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: scale name -> default number of training steps
    budget: ClassVar[Mapping[str, int]] = {}
    #: the metric used to judge (lower is better)
    target_metric: ClassVar[str] = "val_loss"

    def build(self, seed: int, scale: str) -> Task:
        raise NotImplementedError

    def settings(self, scale: str) -> Mapping[str, Any]:
        if scale not in self.scales:
            raise ValueError(f"workload {self.name!r} has no scale {scale!r}; scales: {list(self.scales)}")
        return self.scales[scale]


_WORKLOADS: dict[str, type[Workload]] = {}


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator adding a workload to the registry under ``cls.name``."""
    if not cls.name or not cls.scales or set(cls.budget) != set(cls.scales):
        raise ValueError(f"{cls.__name__}: a workload needs a name, scales and a budget per scale")
    if cls.name in _WORKLOADS and _WORKLOADS[cls.name] is not cls:
        raise ValueError(f"a workload named {cls.name!r} is already registered")
    _WORKLOADS[cls.name] = cls
    return cls


def available_workloads() -> list[str]:
    """Names of the registered workloads."""
    return sorted(_WORKLOADS)


def get_workload(name: str) -> Workload:
    """A workload by registry name, or by import path ``package.module:ClassName``."""
    if ":" in name:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, Workload)):
            raise TypeError(f"{name} is not a Workload subclass")
        register_workload(cls)
        return cls()
    try:
        return _WORKLOADS[name]()
    except KeyError:
        raise KeyError(f"unknown workload {name!r}; available: {', '.join(available_workloads())}") from None
