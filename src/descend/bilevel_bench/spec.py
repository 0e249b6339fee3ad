"""The bilevel benchmark's registries and plan: solvers, problems, grids, budgets (spec ``bilevel.md``).

Every solver gets the same grid over its **step size** (the inner step θ = ``lr_inner``, as a multiple of 1/L,
L = the problem's inner smoothness constant at x0) × its **outer/inner ratio** r (``lr_outer = r · lr_inner``;
r is relative to a per-problem base ratio), the same budget and the same tuning seeds.  The budget is counted in
**oracle calls** by default (gradients + HVPs + JVPs, whatever their batch size: ``"1000oracles"``), so a plan's
stored results do not depend on the machine's load; iterations (``"300it"``) and seconds of solver time (``"1s"``,
benchmark_bilevel's choice, load-dependent) are options.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_BUDGET", "GRIDS", "ORACLE_KEYS", "PROBLEMS", "SOLVERS", "VALIDATION_KEY", "Budget", "Plan",
           "ProblemSpec", "SolverSpec", "parse_budget"]

ORACLE_KEYS = ("grad_outer", "grad_inner", "hvp", "jvp")
VALIDATION_KEY = "outer_value"
# ------------------------------------------------------------------------------------------------ registries


@dataclass(frozen=True)
class SolverSpec:
    """A benchmarked solver: a :data:`descend.bilevel.SOLVERS` class with fixed settings."""

    solver: str
    fixed: dict[str, Any]
    stochastic: bool  # gets the plan's mini-batch sizes
    description: str


SOLVERS: dict[str, SolverSpec] = {
    "aid_cg": SolverSpec("amigo", {"v_solver": "cg", "inner_steps": 5, "hessian_steps": 5}, False,
                         "warm-started AID, T=5 inner GD steps, 5 warm-started CG steps on v (full batch)"),
    "aid_neumann": SolverSpec("stocbio", {"inner_steps": 5, "hessian_steps": 10}, False,
                              "warm-started AID, T=5, Neumann series Q=10 (full batch)"),
    "lancbio": SolverSpec("lancbio", {"inner_steps": 5}, False, "LancBiO, T=5, m_max=15 (full batch)"),
    "subbio": SolverSpec("subbio", {"inner_steps": 5}, False, "SubBiO, T=5 (full batch)"),
    "bome": SolverSpec("bome", {"inner_steps": 10}, False, "BOME, T=10, eta=0.5, ξ_y = inner step (full batch)"),
    "f2sa": SolverSpec("f2sa", {"inner_steps": 10}, True, "F2SA, T=10, paper schedules (mini-batch)"),
    "stocbio": SolverSpec("stocbio", {"inner_steps": 10, "hessian_steps": 10}, True, "stocBiO, T=Q=10 (mini-batch)"),
    "amigo": SolverSpec("amigo", {"v_solver": "gd", "inner_steps": 5, "hessian_steps": 5}, True,
                        "AmIGO-GD, T=Q=5 (mini-batch)"),
    "soba": SolverSpec("soba", {}, True, "SOBA, single loop, steps ∝ t^-1/2 (mini-batch)"),
    "saba": SolverSpec("saba", {}, False, "SABA, single loop, SAGA directions (one sample per oracle)"),
}


@dataclass(frozen=True)
class ProblemSpec:
    """A benchmark problem: a builder of the seed, the metric to report and how to set its target."""

    build: Callable[[int], Any]
    report_key: str  # history field (or "hypergrad_sq") drawn and tabulated; lower is better
    base_ratio: float  # lr_outer / lr_inner at grid ratio 1
    target: str  # "abs:<margin>" (best median final + margin) or "rel:<factor>" (best median final × factor)
    description: str
    references: bool = False
    fixed_data: bool = False  # the problem does not depend on the seed (only the solver's sampling does)


def _quadratic(seed: int) -> Any:
    from ..bilevel.problems import QuadraticProblem

    return QuadraticProblem(20, 20, rank=3, condition=10.0, n_samples=64, noise=0.1, seed=0)


def _lancbio(seed: int) -> Any:
    from ..bilevel.problems import lancbio_synthetic

    return lancbio_synthetic(n=100, kappa=100.0, seed=0)


def _hc(dataset: str, p: float) -> Callable[[int], Any]:
    def build(seed: int) -> Any:
        from ..bilevel.datasets import hyper_cleaning

        if dataset == "mnist1d":
            return hyper_cleaning(dataset, p, seed=seed, mnist1d_samples=4000)
        return hyper_cleaning(dataset, p, seed=seed)

    return build


def _logreg(seed: int) -> Any:
    from ..bilevel.datasets import logreg_l2

    return logreg_l2("breast_cancer", seed=seed)


PROBLEMS: dict[str, ProblemSpec] = {
    "quadratic": ProblemSpec(_quadratic, "hypergrad_sq", 1.0, "rel:10",
                             "quadratic 20×20, 64 samples (closed-form ‖∇h‖²)", fixed_data=True),
    "lancbio_synthetic": ProblemSpec(_lancbio, "outer_value", 1.0, "rel:1.05",
                                     "LancBiO synthetic n=100, κ=100 (upper-level value)", fixed_data=True),
    "hyper_cleaning_digits": ProblemSpec(_hc("digits", 0.5), "test_error", 1000.0, "abs:0.01",
                                         "hyper-cleaning, digits 1000/300/497, p=0.5", references=True),
    "hyper_cleaning_mnist1d": ProblemSpec(_hc("mnist1d", 0.5), "test_error", 1000.0, "abs:0.01",
                                          "hyper-cleaning, MNIST-1D (4000 samples), p=0.5", references=True),
    "logreg_breast_cancer": ProblemSpec(_logreg, "test_loss", 10.0, "rel:1.02",
                                        "per-feature ℓ2 logistic regression, breast_cancer"),
}

# step size (× 1/L) values × outer/inner ratio (× the problem's base ratio) values
GRIDS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "tiny": ((1.0,), (0.3, 3.0)),
    "small": ((0.3, 1.0, 3.0), (0.3, 3.0)),
    "medium": ((0.1, 0.3, 1.0, 3.0), (0.1, 1.0, 10.0)),
    "large": ((0.03, 0.1, 0.3, 1.0, 3.0), (0.03, 0.3, 1.0, 3.0, 30.0)),
}


@dataclass(frozen=True)
class Budget:
    """Per-run budget: ``oracles`` (gradient + HVP + JVP calls), ``it`` (iterations) or ``s`` (seconds of solver
    time, evaluation excluded; the only load-dependent one)."""

    value: float
    unit: str  # "oracles" | "it" | "s"

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit}"

    @property
    def x_key(self) -> str:
        """The history field the budget is counted in."""
        return {"s": "time", "it": "iteration", "oracles": "oracle_calls"}[self.unit]


DEFAULT_BUDGET = "1000oracles"

_UNITS = {"s": "s", "sec": "s", "it": "it", "i": "it", "iter": "it", "oracles": "oracles", "oracle": "oracles",
          "oc": "oracles"}


def parse_budget(text: str | float) -> Budget:
    """``"1000oracles"`` / ``"1000oc"`` (oracle calls), ``"300it"`` / ``"300i"`` (iterations), ``"2s"`` / ``"2.5"``
    (seconds of solver time)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*([a-z]+)?\s*", str(text), re.IGNORECASE)
    unit = _UNITS.get((m.group(2) or "s").lower()) if m else None
    if not m or unit is None:
        raise ValueError(f"budget must look like '1000oracles' (oracle calls), '300it' (iterations) or '2s' "
                         f"(seconds), got {text!r}")
    value = float(m.group(1))
    if value <= 0 or (unit != "s" and value != int(value)):
        raise ValueError(f"budget must be a positive integer of oracle calls or iterations or a positive number "
                         f"of seconds, got {text!r}")
    return Budget(value, unit)


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class Plan:
    """What ``descend bilevel run`` does (the name identifies it in the database)."""

    problem: str
    solvers: list[str]
    grid: str = "small"
    seeds: int = 3
    tune_seeds: int = 2
    budget: Budget = field(default_factory=lambda: parse_budget(DEFAULT_BUDGET))
    batch_size: int = 64
    n_eval: int = 20
    select: str = "final"
    threads: int = 1
    name: str | None = None

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise ValueError(f"unknown problem {self.problem!r}; problems: {', '.join(PROBLEMS)}")
        bad = [s for s in self.solvers if s not in SOLVERS]
        if bad or not self.solvers:
            raise ValueError(f"unknown solver(s) {', '.join(bad) or '(none given)'}; solvers: {', '.join(SOLVERS)}")
        if self.grid not in GRIDS:
            raise ValueError(f"unknown grid {self.grid!r}; grids: {', '.join(GRIDS)}")
        if self.select not in ("final", "auc"):
            raise ValueError(f"select must be 'final' or 'auc', got {self.select!r}")
        for key in ("seeds", "tune_seeds", "batch_size", "n_eval", "threads"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.name is None:
            self.name = f"{self.problem}-{self.grid}-{self.budget}-b{self.batch_size}-t{self.tune_seeds}"

    def config(self) -> dict[str, Any]:
        """The part of the plan that must not change under the same name (solvers and seeds may grow)."""
        return {"problem": self.problem, "grid": self.grid, "budget": str(self.budget),
                "batch_size": self.batch_size, "n_eval": self.n_eval, "select": self.select,
                "tune_seeds": self.tune_seeds}

    def grid_configs(self) -> list[dict[str, float]]:
        steps, ratios = GRIDS[self.grid]
        return [{"step": s, "ratio": r} for s in steps for r in ratios]

    @property
    def tune_seed_list(self) -> list[int]:
        return list(range(self.tune_seeds))

    @property
    def final_seed_list(self) -> list[int]:
        return [1000 + i for i in range(self.seeds)]

    def request(self) -> dict[str, Any]:
        """What a ``run`` asked of the plan beyond its identity (stored, so that workers do it too)."""
        return {"solvers": list(self.solvers), "seeds": self.seeds, "threads": self.threads}

    @classmethod
    def from_stored(cls, name: str, config: Mapping[str, Any], requests: Sequence[Mapping[str, Any]]) -> Plan:
        """The plan a worker runs: the stored identity ``config`` and the union of every stored ``request`` (the
        solvers in order of first request, the most seeds and threads asked for).  Raises ``ValueError`` for a
        stored plan this version cannot read (a corrupt or tampered database)."""
        if not requests:
            raise ValueError(f"plan {name!r} has no stored request (solvers, seeds)")
        solvers = list(dict.fromkeys(s for r in requests for s in r["solvers"]))
        keys = {"problem", "grid", "budget", "batch_size", "n_eval", "select", "tune_seeds"}
        if set(config) != keys:
            raise ValueError(f"plan {name!r}: stored configuration has keys {sorted(config)}, expected {sorted(keys)}")
        return cls(problem=config["problem"], solvers=solvers, grid=config["grid"],
                   seeds=max(int(r["seeds"]) for r in requests), tune_seeds=int(config["tune_seeds"]),
                   budget=parse_budget(config["budget"]), batch_size=int(config["batch_size"]),
                   n_eval=int(config["n_eval"]), select=config["select"],
                   threads=max(int(r.get("threads", 1)) for r in requests), name=name)
