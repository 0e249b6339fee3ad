"""The optimizer registry: one :class:`OptimizerSpec` per optimizer.

A spec says what an optimizer is (paper, reference implementation), how to build it (a factory whose
signature holds the defaults: they are written once, there), how to tune it (a workload-agnostic search
space, used by ``descend bench``), how to replay a recorded reference run (``fixture_names`` +
``from_fixture``).  Adding an optimizer is one module that calls :func:`register`.  What only the tests need
(convergence settings, invalid examples) is in :mod:`descend.optim.testing` (:func:`register_test_metadata`).

>>> import torch, descend.optim as do
>>> "lion" in do.available()
True
>>> w = torch.nn.Parameter(torch.ones(3))
>>> opt = do.create("lion", [w], lr=1e-3)
>>> type(opt).__name__
'Lion'
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .testing import ConvergenceCheck  # re-exported: it lived here before the test metadata left the spec

__all__ = [
    "Categorical",
    "ConvergenceCheck",
    "FloatRange",
    "IntRange",
    "OptimizerSpec",
    "available",
    "create",
    "get",
    "register",
    "signature_defaults",
    "spec_for_fixture",
]


def _same_value(a: Any, b: Any) -> bool:
    try:
        return a is b or bool(a == b)
    except Exception:  # values without a usable ==
        return False


def signature_defaults(factory: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of ``factory``'s signature (``params`` excluded).

    For a class, its ``__init__``; for a function, its own defaults, then those of the class named by its
    ``builds`` attribute; where that forwards ``**kwargs`` to a base class (``AdamW(params, lr,
    **kwargs)`` over ``torch.optim.AdamW``), the bases' ``__init__`` defaults are followed up the MRO until
    one takes no ``**kwargs``.  A subclass's value wins over its base's.
    """
    def class_targets(cls: type) -> list[Callable[..., Any]]:
        return [c.__init__ for c in cls.__mro__ if "__init__" in vars(c) and c is not object]  # type: ignore[misc]

    if inspect.isclass(factory):
        targets = class_targets(factory)
    else:
        # a factory function that forwards ``**kwargs`` to a class names it as ``builds`` (Muon's registry
        # factory adds ``adam_lr`` and passes the rest to ``Muon``)
        built = getattr(factory, "builds", None)
        targets = [factory, *(class_targets(built) if inspect.isclass(built) else [])]
    out: dict[str, Any] = {}
    for target in targets:
        try:
            parameters = inspect.signature(target).parameters
        except (TypeError, ValueError):  # builtins without a signature
            break
        for name, p in parameters.items():
            if name not in ("self", "params") and p.default is not p.empty and name not in out:
                out[name] = p.default
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break
    return out


@dataclass(frozen=True)
class FloatRange:
    """A real hyperparameter sampled uniformly (or log-uniformly) from ``[low, high]``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"FloatRange needs finite low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scaled FloatRange needs low > 0, got {self.low}")

    def grid(self, n: int) -> list[float]:
        """``n`` evenly spaced values (geometrically if ``log``), end points included."""
        if n == 1:
            return [math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2]
        if self.log:
            a, b = math.log(self.low), math.log(self.high)
            return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
        return [self.low + (self.high - self.low) * i / (n - 1) for i in range(n)]


@dataclass(frozen=True)
class IntRange:
    """An integer hyperparameter in ``[low, high]``."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"IntRange needs low <= high, got [{self.low}, {self.high}]")


@dataclass(frozen=True)
class Categorical:
    """A hyperparameter chosen from a finite set of values."""

    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError("Categorical needs at least one choice")


Dimension = FloatRange | IntRange | Categorical


@dataclass(frozen=True)
class OptimizerSpec:
    """Everything the library, the benchmark and the tests need to know about one optimizer.

    Attributes:
        name: registry key (lower case, ``snake_case``).
        factory: ``factory(params, **hyperparameters) -> torch.optim.Optimizer``.
        paper: authors, year, title (and arXiv id).
        reference: the reference implementation it is checked against (package==version or repo@commit).
        defaults: the default hyperparameters.  Read from the factory's signature (:func:`signature_defaults`);
            the ``defaults`` given to the constructor may only add keys the signature does not state (passed
            through ``**kwargs``, e.g. Mechanic's base-optimizer ``weight_decay``) or leaves as ``None`` to
            be derived (Muon's ``adam_lr_ratio``) — a value typed twice raises ``ValueError``.  :func:`create`
            passes only those added values; the signature's own defaults apply by themselves.
        search_space: workload-agnostic tuning space; keys are factory keyword arguments.
        summary: one line for listings.
        requires_closure: ``step()`` needs a closure (line searches).  The closure returns the loss, with or
            without calling ``backward()`` (both conventions: :mod:`descend.optim.linesearch.engine`).
        lr_key: the hyperparameter that scales every update (``None`` if there is none, e.g. line search);
            the contract tests use it to check per-group learning rates and schedulers.
        fixture_names: values of a fixture's ``"optimizer"`` key that this spec replays.
        from_fixture: builds the optimizer for a fixture: ``from_fixture(fixture, params_by_name)``.
            Maps the reference's hyperparameter names to descend's.  ``None`` = use
            ``factory(list(params_by_name.values()), **fixture["hyperparameters"])``.
        observables: ``observables(optimizer) -> {name: float}`` reported after each step and compared to
            the fixture's ``extra[name][t]`` where the fixture records them (e.g. ``step_size``).
        matrix_only: the optimizer only accepts parameters with ``ndim >= 2`` (the tests then use 2-D
            parameters only).
        elementwise: every coordinate is updated from its own gradient history only (Adam-like); the
            property tests then check that splitting a tensor does not change the update.
        module_groups: ``module_groups(model, hyperparameters) -> param groups`` for optimizers that treat
            parts of a model differently (Muon: embeddings, head and vectors to AdamW).  The benchmark uses
            it when a workload provides its ``nn.Module``; ``hyperparameters`` are the defaults merged with
            the overrides.
        zero_lr_freezes: ``lr = 0`` makes ``step()`` leave the parameters untouched (``False`` for Mechanic,
            whose learned scale still moves the accumulated offset).
    """

    name: str
    factory: Callable[..., torch.optim.Optimizer]
    paper: str
    reference: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    search_space: Mapping[str, Dimension] = field(default_factory=dict)
    summary: str = ""
    requires_closure: bool = False
    lr_key: str | None = "lr"
    fixture_names: tuple[str, ...] = ()
    from_fixture: Callable[[Mapping[str, Any], Mapping[str, torch.Tensor]], torch.optim.Optimizer] | None = None
    observables: Callable[[torch.optim.Optimizer], Mapping[str, float]] | None = None
    matrix_only: bool = False
    elementwise: bool = False
    zero_lr_freezes: bool = True
    module_groups: Callable[[torch.nn.Module, Mapping[str, Any]], list[dict[str, Any]]] | None = None
    _added_defaults: Mapping[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or " " in self.name:
            raise ValueError(f"spec name must be lower-case snake_case, got {self.name!r}")
        written = signature_defaults(self.factory)
        twice = sorted(k for k in self.defaults if written.get(k) is not None)
        # dataclasses.replace(spec, ...) passes the merged defaults back in: every signature value, unchanged
        copied = all(k in self.defaults and _same_value(self.defaults[k], v) for k, v in written.items())
        if twice and not copied:
            raise ValueError(f"{self.name}: defaults {twice} are already in the signature of {self.factory!r}; "
                             "write a default once, in the signature")
        object.__setattr__(self, "_added_defaults", {k: v for k, v in self.defaults.items() if k not in twice})
        object.__setattr__(self, "defaults", {**written, **self.defaults})
        unknown = set(self.search_space) - set(self.defaults)
        if unknown:
            raise ValueError(f"{self.name}: search-space keys {sorted(unknown)} have no documented default")

    def create(self, params: Iterable[Any], **hyperparameters: Any) -> torch.optim.Optimizer:
        """Build the optimizer with its defaults, overridden by ``hyperparameters``."""
        return self.factory(params, **{**self._added_defaults, **hyperparameters})


_REGISTRY: dict[str, OptimizerSpec] = {}


def register(spec: OptimizerSpec, *, replace: bool = False) -> OptimizerSpec:
    """Add ``spec`` to the registry (``replace=True`` to overwrite an existing name)."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"an optimizer named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> OptimizerSpec:
    """The spec registered under ``name``."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown optimizer {name!r}; available: {', '.join(available())}") from None


def available() -> list[str]:
    """Names of all registered optimizers, sorted."""
    return sorted(_REGISTRY)


def create(name: str, params: Iterable[Any], **hyperparameters: Any) -> torch.optim.Optimizer:
    """Build the optimizer registered under ``name`` with its defaults overridden by ``hyperparameters``."""
    return get(name).create(params, **hyperparameters)


def spec_for_fixture(fixture_optimizer: str) -> OptimizerSpec:
    """The spec that replays fixtures whose ``"optimizer"`` key is ``fixture_optimizer``."""
    matches = [s for s in _REGISTRY.values() if fixture_optimizer in s.fixture_names]
    if not matches:
        raise LookupError(f"no registered optimizer replays fixtures of {fixture_optimizer!r}")
    if len(matches) > 1:
        raise LookupError(f"several optimizers claim fixtures of {fixture_optimizer!r}: "
                          f"{[s.name for s in matches]}")
    return matches[0]
