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

What a workload declares (class attributes):

* ``target_metric`` — the key of :meth:`Task.evaluate`'s output that tuning selects on and the benchmark
  judges (lower is better; default ``"val_loss"``), and ``metric_kind`` — what that number is:
  ``"validation"`` (a held-out validation loss), ``"training"`` (the training loss itself, for workloads with
  fresh data every step or no held-out data) or ``"suboptimality"`` (``f(x_T) − f*`` of a training objective
  with a known optimum).
* ``test_metric`` — the key of :meth:`Task.evaluate`'s output computed on a **held-out test split** that is
  never used for tuning (default ``"test_loss"``): select on ``target_metric``, report ``test_metric``.  The
  final evaluation of a trial (``TrialResult.final``, the last row of ``TrialResult.curve``) carries it under
  that name; intermediate checkpoints may omit it.  Every built-in workload has train / validation / test data.

What a task declares (:class:`Task` fields): ``params`` and ``model`` (the ``nn.Module``, when there is one),
``train_loss``, ``evaluate``, and ``roles`` — overrides of the parameter roles (``{"pos": "embedding",
"head.weight": "head"}``; names as in ``model.named_parameters()``, values :class:`descend.optim.roles.Role`
or their names ``"hidden"``, ``"input"``, ``"head"``, ``"embedding"``, ``"vector"``).  Roles the task does
not declare are derived from the module types (:func:`descend.optim.roles.param_roles`: first/last
``nn.Linear``, convolutions, ``nn.Embedding``, norms, biases, positional tables).  Optimizers that treat the
parts of a network differently (Muon, SOAP, Shampoo, FRUGAL) read them through their registry
``module_groups`` hooks; an optimizer that has nothing to act on (Muon without a hidden matrix, e.g. logistic
regression) is *not applicable* (:meth:`Workload.not_applicable`) instead of being run as AdamW in disguise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch

from ...optim.roles import NotApplicable, Role, declare_roles, param_roles, roles_of_params

__all__ = ["METRIC_KINDS", "Task", "Workload", "available_workloads", "get_workload", "register_workload"]

#: what a workload's judged metric is (see the module docstring)
METRIC_KINDS = ("validation", "training", "suboptimality")


@dataclass
class Task:
    """One instantiated workload.

    Attributes:
        params: the parameters (or param groups) to optimize.
        train_loss: ``train_loss(step)`` — the training loss on mini-batch ``step`` (a deterministic
            function of the task's seed and ``step``, so line searches can re-evaluate it).
        evaluate: held-out metrics computed without gradients; must contain the workload's ``target_metric``
            (by default ``"val_loss"``) and ``test_metric`` (by default ``"test_loss"``, on the test split).
        final_evaluate: the evaluation at the end of training, when it differs from ``evaluate`` (e.g. the
            char-LM: 64k validation and test bytes at the end, an 8k validation subset at intermediate
            checkpoints); ``None`` = ``evaluate``.  Its output must contain ``target_metric`` and ``test_metric``.
        optimum: the minimal value of the full training objective when known (convex workloads), to report
            suboptimality; ``None`` otherwise.
        train_objective: the full-batch training objective, when ``optimum`` is given.
        model: the module, if there is one (for optimizers that build groups from a module, e.g. Muon).
        roles: parameter-role overrides, ``{parameter name: role}`` (needs ``model``); the rest is derived
            from module types.  Declared on ``model`` (:func:`descend.optim.roles.declare_roles`), so every
            group builder sees them.
        info: anything to store with the trial's provenance (e.g. ``n_params``).
        predict: for classification workloads, the held-out predictions at the current parameters:
            ``{"val": (log_probs, labels), "test": (log_probs, labels)}`` (``log_probs``: N×C log-softmax
            outputs, ``labels``: N integers).  The data-constrained mode's ensembles
            (:func:`descend.bench.metrics.ensemble_metrics`) average the final runs' probabilities; a task
            without it cannot be ensembled.
    """

    params: Any
    train_loss: Callable[[int], torch.Tensor]
    evaluate: Callable[[], Mapping[str, float]]
    final_evaluate: Callable[[], Mapping[str, float]] | None = None
    optimum: float | None = None
    train_objective: Callable[[], torch.Tensor] | None = None
    model: torch.nn.Module | None = None
    info: dict[str, Any] = field(default_factory=dict)
    roles: Mapping[str, Role | str] | None = None
    predict: Callable[[], Mapping[str, tuple[torch.Tensor, torch.Tensor]]] | None = None

    def __post_init__(self) -> None:
        if self.roles:
            if self.model is None:
                raise ValueError("Task.roles needs Task.model (roles are keyed by the model's parameter names)")
            declare_roles(self.model, self.roles)

    def param_roles(self) -> dict[torch.nn.Parameter, Role]:
        """The role of every trainable parameter: declared, else derived from the model's module types, else
        (no model) ``vector`` below two dimensions and ``hidden`` otherwise."""
        if self.model is not None:
            return param_roles(self.model)
        return roles_of_params(self.params)


class Workload:
    """Base class of workloads: subclass, set the class attributes, implement :meth:`build`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: scale name -> workload-specific settings (the first one is the default)
    scales: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    #: scale name -> default number of training steps
    budget: ClassVar[Mapping[str, int]] = {}
    #: the metric tuning selects on and the benchmark judges (lower is better)
    target_metric: ClassVar[str] = "val_loss"
    #: what ``target_metric`` is: ``"validation"``, ``"training"`` or ``"suboptimality"``
    metric_kind: ClassVar[Literal["validation", "training", "suboptimality"]] = "validation"
    #: the held-out test-split metric to report (never used for tuning); ``None`` if the workload has none
    test_metric: ClassVar[str | None] = "test_loss"
    #: the cheapest scale to build in the test suite (``None`` = the first scale)
    test_scale: ClassVar[str | None] = None
    #: whether its tasks give :attr:`Task.predict` (held-out class probabilities), so runs can be ensembled
    predicts: ClassVar[bool] = False

    def build(self, seed: int, scale: str) -> Task:
        raise NotImplementedError

    def not_applicable(self, optimizer: str, scale: str) -> str | None:
        """Why ``optimizer`` is not applicable to this workload at ``scale`` (``"n/a: no hidden matrices"``),
        or ``None`` if it is.  Asks the optimizer's registry ``module_groups`` hook on a seed-0 task."""
        from ... import optim as do

        spec = do.get(optimizer)
        if spec.module_groups is None:
            return None
        task = self.build(0, scale)
        if task.model is None:
            return None
        try:
            spec.module_groups(task.model, dict(spec.defaults))
        except NotApplicable as exc:
            return str(exc)
        return None

    def settings(self, scale: str) -> Mapping[str, Any]:
        if scale not in self.scales:
            raise ValueError(f"workload {self.name!r} has no scale {scale!r}; scales: {list(self.scales)}")
        return self.scales[scale]


_WORKLOADS: dict[str, type[Workload]] = {}


def register_workload(cls: type[Workload]) -> type[Workload]:
    """Class decorator adding a workload to the registry under ``cls.name``."""
    if not cls.name or not cls.scales or set(cls.budget) != set(cls.scales):
        raise ValueError(f"{cls.__name__}: a workload needs a name, scales and a budget per scale")
    if cls.metric_kind not in METRIC_KINDS:
        raise ValueError(f"{cls.__name__}: metric_kind must be one of {METRIC_KINDS}, got {cls.metric_kind!r}")
    if cls.test_scale is not None and cls.test_scale not in cls.scales:
        raise ValueError(f"{cls.__name__}: test_scale {cls.test_scale!r} is not one of its scales {list(cls.scales)}")
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
