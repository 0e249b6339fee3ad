"""The registry of classic solvers: one :class:`SolverSpec` per solver, one line per solver in :data:`MODULES`.

A solver module builds its spec and calls :func:`register` at import time.  The CLI
(``descend classic run SOLVER --problem P``) and the report (``descend classic report``) only talk to this
registry: they never import a solver module by name.  :func:`available` imports the modules listed in
:data:`MODULES` lazily, so ``import descend.classic`` stays cheap and adding a solver is one new module plus one
line here.

The contract between a solver and the product:

* ``spec.run(RunRequest(problem, seed, quick, options, progress))`` solves one problem and returns one
  :class:`Trace` per method it compared (e.g. one per BCD selection rule).  Each trace becomes one row of the
  shared results store (family ``"classic"``, study ``f"{spec.name}/{problem}"``).
* ``spec.figure(traces)`` draws the paper-style figure from traces read back from the store (a matplotlib
  ``Figure``; matplotlib is imported lazily inside the solver's figure function, never at module import).

>>> from descend.classic import registry
>>> spec = registry.SolverSpec(name="toy", title="Toy", paper="nobody (2026)", problems={"p": "a problem"},
...                            run=lambda request: [registry.Trace("m", {"f": [1.0, 0.5]}, {"final_f": 0.5})])
>>> _ = registry.register(spec, replace=True)
>>> registry.get("toy").run(registry.RunRequest("p"))[0].curve["f"]
[1.0, 0.5]
>>> registry.unregister("toy")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MODULES",
    "RunRequest",
    "SolverSpec",
    "Trace",
    "available",
    "get",
    "register",
    "unregister",
]

#: One line per solver module; each registers its :class:`SolverSpec` when imported.
#: (Two blocks separated by comment lines so that both solver groups can add lines without merge conflicts.)
MODULES: tuple[str, ...] = (
    # -- solvers 1-3: block coordinate descent, gradient-normalized smoothness, AdaSketch-Newton
    "descend.classic.bcd",  # 1. greedy block coordinate descent (Nutini, Laradji, Schmidt, JMLR 2022)
    "descend.classic.gns",  # 2. gradient-normalized smoothness, Algorithm 1 (Semenov, Jaggi, Doikov 2025)
    "descend.classic.adasketch",  # 3. AdaSketch-Newton (Hong, Na, Mahoney, Kolar, ICML 2023)
    # -- solvers 4-6: learned SOR relaxation, deep conjugate directions, convex two-layer ReLU
    "descend.classic.sor",
    "descend.classic.dcdm",
    "descend.classic.convex_relu",
    # -- end
)

Scalar = float | int | str | bool


@dataclass(frozen=True)
class Trace:
    """One method's run on one problem: its curves (equal-length lists per key) and summary numbers.

    ``setting`` holds what distinguishes this run beyond the method name (block size, partition, γ0, …); it is
    part of the results-store key, so reruns with the same setting are idempotent.
    """

    method: str
    curve: dict[str, list[float]]
    summary: dict[str, float]
    setting: dict[str, Scalar] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRequest:
    """What the CLI asks a solver for: a problem name, a seed, reduced (``quick``) or paper sizes, free options
    (``--set key=value`` on the command line, already parsed to scalars) and a progress callback."""

    problem: str
    seed: int = 0
    quick: bool = True
    options: Mapping[str, Scalar] = field(default_factory=dict)
    progress: Callable[[str], None] | None = None

    def say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)


@dataclass(frozen=True)
class SolverSpec:
    """What a classic solver is and how the product runs and draws it.

    ``problems`` maps each problem name the solver accepts to a one-line description; ``options`` maps each
    option ``run`` understands to a one-line description (shown by ``descend classic list``).
    """

    name: str
    title: str
    paper: str
    problems: Mapping[str, str]
    run: Callable[[RunRequest], Sequence[Trace]]
    figure: Callable[[Sequence[Trace]], Any] | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    figure_caption: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"name must be a non-empty identifier (letters, digits, -, _), got {self.name!r}")
        if not self.problems:
            raise ValueError(f"problems must name at least one problem for solver {self.name!r}")

    def check_problem(self, problem: str) -> None:
        """Raise ``ValueError`` naming the allowed problems when ``problem`` is not one of them."""
        if problem not in self.problems:
            raise ValueError(f"--problem must be one of {sorted(self.problems)} for {self.name}, got {problem!r}")


_REGISTRY: dict[str, SolverSpec] = {}
_loaded = False


def register(spec: SolverSpec, *, replace: bool = False) -> SolverSpec:
    """Add ``spec``; a second registration under the same name is an error unless ``replace``."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(f"a classic solver named {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a solver (used by tests that register a toy spec)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in MODULES:
        importlib.import_module(module)
    _loaded = True


def available() -> list[str]:
    """Names of all registered solvers (imports the modules in :data:`MODULES` on first call)."""
    _load()
    return sorted(_REGISTRY)


def get(name: str) -> SolverSpec:
    """The spec named ``name``; ``ValueError`` listing the allowed names otherwise."""
    _load()
    if name not in _REGISTRY:
        raise ValueError(f"SOLVER must be one of {sorted(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]
