"""A fair benchmark of bilevel solvers (benchmark_bilevel's protocol; ``descend bilevel run | report | list``).

Protocol (spec ``bilevel.md``, "Benchmark protocol"):

* every solver gets the same grid over its **step size** (the inner step θ = ``lr_inner``, as a multiple of 1/L,
  L = the problem's inner smoothness constant at x0) × its **outer/inner ratio** r (``lr_outer = r · lr_inner``;
  r is relative to a per-problem base ratio), the same budget and the same tuning seeds. The budget is counted
  in **oracle calls** by default (gradients + HVPs + JVPs, whatever their batch size: ``"1000oracles"``), so a
  plan's stored results do not depend on the machine's load; iterations (``"300it"``) and seconds of solver time
  (``"1s"``, benchmark_bilevel's choice, load-dependent) are options;
* the configuration whose **median validation curve** (the outer objective f(x, y) on the full validation data,
  against the budget's unit) is best at the end (``select="final"``, default) or on average (``"auc"``) is rerun on
  K fresh seeds;
* every run's history rows (oracle counts, solver time, outer value, the problem's metrics — evaluation is off
  the clock, see :meth:`BilevelSolver.evaluate`) are stored in the table ``descend_bilevel_runs`` of the same
  database as ``descend bench`` (:class:`~descend.bench.storage.Storage`), one transaction per finished run and
  a unique key (plan, solver, phase, config, seed), so an interrupted ``run`` resumes where it stopped;
* the report draws the report metric (test error, or ‖∇h‖² / the upper-level value on synthetic problems)
  against solver time and against oracle calls (gradients + HVPs + JVPs), median and 20–80 % band over seeds,
  and a table of final values and time / oracle calls to a target (misses counted as not reached); a selected
  configuration on the edge of the grid (first or last step size or ratio) is flagged, since the best one may
  lie beyond the grid.

Hyper-cleaning also stores its two reference points per final seed (a model trained on the clean validation set
alone, and one trained on the true labels).
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..bench import metrics
from ..bench.storage import Storage, dumps, load_plans, loads, save_plan

__all__ = [
    "GRIDS",
    "PROBLEMS",
    "SOLVERS",
    "BilevelRun",
    "BilevelStorage",
    "Budget",
    "Plan",
    "parse_budget",
    "run_plan",
    "select_config",
    "summarize",
    "write_html",
]

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
    from .problems import QuadraticProblem

    return QuadraticProblem(20, 20, rank=3, condition=10.0, n_samples=64, noise=0.1, seed=0)


def _lancbio(seed: int) -> Any:
    from .problems import lancbio_synthetic

    return lancbio_synthetic(n=100, kappa=100.0, seed=0)


def _hc(dataset: str, p: float) -> Callable[[int], Any]:
    def build(seed: int) -> Any:
        from .datasets import hyper_cleaning

        if dataset == "mnist1d":
            return hyper_cleaning(dataset, p, seed=seed, mnist1d_samples=4000)
        return hyper_cleaning(dataset, p, seed=seed)

    return build


def _logreg(seed: int) -> Any:
    from .datasets import logreg_l2

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


# ------------------------------------------------------------------------------------------------ storage

_meta = sa.MetaData()
_bl_plans = sa.Table("descend_bilevel_plans", _meta, sa.Column("name", sa.String(200), primary_key=True),
                     sa.Column("config", sa.Text, nullable=False), sa.Column("created", sa.Float, nullable=False))
_bl_runs = sa.Table(
    "descend_bilevel_runs", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan", sa.String(200), nullable=False),
    sa.Column("problem", sa.String(100), nullable=False),
    sa.Column("solver", sa.String(100), nullable=False),
    sa.Column("phase", sa.String(10), nullable=False),  # tune | final | reference
    sa.Column("config_key", sa.String(64), nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("diverged", sa.Boolean, nullable=False),
    sa.Column("wall_time", sa.Float, nullable=False),
    sa.Column("history", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("plan", "solver", "phase", "config_key", "seed", name="uq_descend_bilevel_run"),
)


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha1(dumps(config).encode()).hexdigest()[:16]


@dataclass
class BilevelRun:
    """One stored run."""

    plan: str
    problem: str
    solver: str
    phase: str
    config: dict[str, Any]
    seed: int
    history: list[dict[str, float]]
    diverged: bool = False
    wall_time: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


class BilevelStorage:
    """The bilevel tables in a ``descend bench`` database (URL handling and checks by :class:`Storage`)."""

    def __init__(self, url: str) -> None:
        self.storage = Storage(url)
        self.url, self.engine = self.storage.url, self.storage.engine
        with self.engine.begin() as conn:
            _meta.create_all(conn)

    def save_plan(self, name: str, config: dict[str, Any]) -> None:
        save_plan(self.engine, _bl_plans, name, config)

    def plans(self) -> dict[str, dict[str, Any]]:
        return load_plans(self.engine, _bl_plans)

    def add(self, run: BilevelRun) -> bool:
        """Insert a finished run; ``False`` (nothing stored) if it is already there."""
        try:
            with self.engine.begin() as conn:
                conn.execute(_bl_runs.insert().values(
                    plan=run.plan, problem=run.problem, solver=run.solver, phase=run.phase,
                    config_key=config_key(run.config), config=dumps(run.config), seed=run.seed,
                    diverged=run.diverged, wall_time=run.wall_time, history=dumps(run.history),
                    provenance=dumps(run.provenance), created=time.time()))
        except IntegrityError:
            return False
        return True

    def has(self, plan: str, solver: str, phase: str, config: dict[str, Any], seed: int) -> bool:
        q = sa.select(sa.func.count()).select_from(_bl_runs).where(
            _bl_runs.c.plan == plan, _bl_runs.c.solver == solver, _bl_runs.c.phase == phase,
            _bl_runs.c.config_key == config_key(config), _bl_runs.c.seed == seed)
        with self.engine.connect() as conn:
            return bool(conn.execute(q).scalar())

    def runs(self, plan: str | None = None, phase: str | None = None, solver: str | None = None) -> list[BilevelRun]:
        q = sa.select(_bl_runs).order_by(_bl_runs.c.id)
        for col, val in ((_bl_runs.c.plan, plan), (_bl_runs.c.phase, phase), (_bl_runs.c.solver, solver)):
            if val is not None:
                q = q.where(col == val)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [BilevelRun(plan=r["plan"], problem=r["problem"], solver=r["solver"], phase=r["phase"],
                           config=loads(r["config"]), seed=r["seed"], history=loads(r["history"]),
                           diverged=bool(r["diverged"]), wall_time=r["wall_time"], provenance=loads(r["provenance"]))
                for r in rows]


# ------------------------------------------------------------------------------------------------ running


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


_PROBLEM_CACHE: dict[tuple[str, int], Any] = {}


def get_problem(name: str, seed: int) -> Any:
    spec = PROBLEMS[name]
    key = (name, 0 if spec.fixed_data else seed)
    if key not in _PROBLEM_CACHE:
        if len(_PROBLEM_CACHE) > 16:
            _PROBLEM_CACHE.clear()
        _PROBLEM_CACHE[key] = spec.build(key[1])
    return _PROBLEM_CACHE[key]


def make_solver(solver: str, problem_name: str, config: dict[str, float], seed: int, batch_size: int) -> Any:
    """The solver of a grid point (see :func:`resolved_kwargs`)."""
    from . import SOLVERS as CLASSES

    kwargs = resolved_kwargs(solver, problem_name, config, seed, batch_size)
    return CLASSES[SOLVERS[solver].solver](get_problem(problem_name, seed), **kwargs)


def resolved_kwargs(solver: str, problem_name: str, config: dict[str, float], seed: int,
                    batch_size: int) -> dict[str, Any]:
    """The solver's keyword arguments at a grid point: lr_inner = step / L, lr_outer = ratio · base_ratio ·
    lr_inner (BOME: ξ_x = lr_outer, ξ_y = lr_inner); mini-batches for the stochastic solvers."""
    spec = SOLVERS[solver]
    problem = get_problem(problem_name, seed)
    L = problem.lipschitz(problem.x0) or 1.0
    lr_inner = config["step"] / L
    kwargs: dict[str, Any] = dict(spec.fixed, lr_inner=lr_inner,
                                  lr_outer=config["ratio"] * PROBLEMS[problem_name].base_ratio * lr_inner, seed=seed)
    if spec.solver == "bome":  # ξ_y: the inner step (the outer/inner ratio scales the step on x only)
        kwargs["lr_lower"] = lr_inner
    if spec.stochastic and problem.n_inner:
        kwargs.update(inner_batch_size=min(batch_size, problem.n_inner),
                      outer_batch_size=min(batch_size, problem.n_outer) if problem.n_outer else None)
    return kwargs


def _row(s: Any, elapsed: float, info: dict[str, float], report_key: str) -> dict[str, float]:
    row: dict[str, float] = {"iteration": float(s.k), "time": elapsed}
    row.update({k: float(s.oracles.counts[k]) for k in ORACLE_KEYS})
    row["oracle_calls"] = sum(row[k] for k in ORACLE_KEYS)
    row.update(s.evaluate())
    if report_key == "hypergrad_sq":
        row["hypergrad_sq"] = row.get("true_hypergrad_norm", math.nan) ** 2
    row["hypergrad_norm"] = float(info.get("hypergrad_norm", math.nan))
    return row


def run_one(solver: str, problem_name: str, config: dict[str, float], seed: int, budget: Budget,
            batch_size: int = 64, n_eval: int = 20) -> tuple[list[dict[str, float]], bool]:
    """Run one configuration; evaluate at ``n_eval`` evenly spaced points of the budget (off the clock).

    Returns the history rows and whether the run diverged (its last row then has infinite values).
    """
    import torch

    torch.manual_seed(seed)
    s = make_solver(solver, problem_name, config, seed, batch_size)
    key = PROBLEMS[problem_name].report_key
    history = [_row(s, 0.0, {}, key)]
    elapsed, nxt, j = 0.0, budget.value / n_eval, 1
    max_iter = int(budget.value) if budget.unit == "it" else 10**7
    calls = s.oracles.counts
    for _ in range(max_iter):
        t0 = time.perf_counter()
        try:
            info = s.step()
        except ValueError:  # non-finite iterate
            elapsed += time.perf_counter() - t0
            bad = {k: math.inf for k in history[-1] if k not in ("iteration", "time", *ORACLE_KEYS, "oracle_calls")}
            history.append({**history[-1], **bad, "iteration": float(s.k), "time": elapsed})
            return history, True
        elapsed += time.perf_counter() - t0
        progress = (elapsed if budget.unit == "s" else s.k if budget.unit == "it"
                    else sum(calls[k] for k in ORACLE_KEYS))
        if progress >= nxt - 1e-12:
            history.append(_row(s, elapsed, info, key))
            while nxt <= progress + 1e-12:
                j += 1
                nxt = budget.value * j / n_eval
            if progress >= budget.value - 1e-12:
                break
    diverged = not all(math.isfinite(history[-1].get(k, 0.0)) for k in (VALIDATION_KEY, key))
    return history, diverged


def _provenance(threads: int) -> dict[str, Any]:
    from ..bench.protocol import provenance

    return {**provenance(), "torch_threads": threads}


def select_config(runs: Sequence[BilevelRun], how: str = "final", x_key: str = "time") -> dict[str, Any] | None:
    """The config with the best median validation curve (lowest; diverged = +inf) over its seeds; ``None`` if
    every config's median diverged.

    ``how="final"``: median over seeds of the last validation value; ``"auc"``: mean over a common grid of
    ``x_key`` (the budget's unit, so that the choice is as reproducible as the budget) of the median curve.
    Ties go to the first config in the order of ``runs``.
    """
    by: dict[str, list[BilevelRun]] = {}
    for r in runs:
        by.setdefault(config_key(r.config), []).append(r)
    best, best_score = None, math.inf
    for group in by.values():
        if how == "final":
            score = _median([r.history[-1].get(VALIDATION_KEY, math.inf) if not r.diverged else math.inf
                             for r in group])
        else:
            hists = [r.history if not r.diverged else [*r.history[:-1], {**r.history[-1], VALIDATION_KEY: math.inf}]
                     for r in group]
            curve = band(hists, x_key, VALIDATION_KEY, points=50)
            score = sum(curve[2]) / len(curve[2]) if curve[2] else math.inf
        if math.isfinite(score) and score < best_score:
            best, best_score = group[0].config, score
    return best


def run_plan(plan: Plan, storage: BilevelStorage, progress: Callable[[str], None] | None = None) -> int:
    """Run what is missing of ``plan`` (grid on the tuning seeds, then the selection on the final seeds, and the
    reference points); returns the number of runs done now."""
    import torch

    say = progress or (lambda _msg: None)
    storage.save_plan(plan.name or "", plan.config())
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    prov = _provenance(plan.threads)
    done = 0
    try:
        for solver in plan.solvers:
            for config in plan.grid_configs():
                for seed in plan.tune_seed_list:
                    done += _do(plan, storage, solver, "tune", config, seed, prov, say)
            tuned = [r for r in storage.runs(plan.name, "tune", solver)
                     if config_key(r.config) in {config_key(c) for c in plan.grid_configs()}]
            best = select_config(tuned, plan.select, plan.budget.x_key)
            if best is None:
                say(f"{solver}: every configuration diverged; no final runs")
                continue
            for seed in plan.final_seed_list:
                done += _do(plan, storage, solver, "final", best, seed, prov, say)
        if PROBLEMS[plan.problem].references:
            from .datasets import hyper_cleaning_baselines

            for seed in plan.final_seed_list:
                if storage.has(plan.name or "", "reference", "reference", {}, seed):
                    continue
                ref = hyper_cleaning_baselines(get_problem(plan.problem, seed))
                storage.add(BilevelRun(plan.name or "", plan.problem, "reference", "reference", {}, seed, [ref],
                                       provenance=prov))
                done += 1
    finally:
        torch.set_num_threads(threads)
    return done


def _do(plan: Plan, storage: BilevelStorage, solver: str, phase: str, config: dict[str, Any], seed: int,
        prov: dict[str, Any], say: Callable[[str], None]) -> int:
    name = plan.name or ""
    if storage.has(name, solver, phase, config, seed):
        return 0
    t0 = time.perf_counter()
    hist, diverged = run_one(solver, plan.problem, config, seed, plan.budget, plan.batch_size, plan.n_eval)
    wall = time.perf_counter() - t0
    kw = resolved_kwargs(solver, plan.problem, config, seed, plan.batch_size)
    added = storage.add(BilevelRun(name, plan.problem, solver, phase, config, seed, hist, diverged, wall,
                                   {**prov, "solver_class": SOLVERS[solver].solver, "solver_kwargs": kw}))
    last = hist[-1]
    say(f"{phase:5} {solver:10} step={config['step']:<5g} ratio={config['ratio']:<5g} seed={seed:<5d} "
        f"val={last.get(VALIDATION_KEY, math.nan):.4g}{' DIVERGED' if diverged else ''} ({wall:.1f} s)")
    return int(added)


# ------------------------------------------------------------------------------------------------ summary


def _median(vals: Iterable[float]) -> float:
    return _quantile(list(vals), 0.5)


def _quantile(vals: list[float], q: float) -> float:
    """Linear-interpolation quantile that tolerates +inf (diverged runs); NaN for an empty list."""
    v = sorted(x for x in vals if not math.isnan(x))
    if not v:
        return math.nan
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or v[lo] == v[hi]:
        return v[lo]
    if math.isinf(v[hi]):
        return math.inf
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _value_at(hist: list[dict[str, float]], x_key: str, y_key: str, x: float) -> float:
    """Value of the last record with ``x_key ≤ x`` (a run's state between evaluations)."""
    y = math.nan
    for row in hist:
        if row.get(x_key, math.inf) <= x + 1e-12:
            y = row.get(y_key, math.nan)
        else:
            break
    return y


def band(histories: Sequence[list[dict[str, float]]], x_key: str, y_key: str, points: int = 60,
         lo_q: float = 0.2, hi_q: float = 0.8) -> tuple[list[float], list[float], list[float], list[float]]:
    """(xs, 20 %, median, 80 %) of ``y_key`` over runs on a common grid of ``x_key`` (up to the shortest run's
    end, so every quantile is over all runs)."""
    ends = [h[-1].get(x_key, 0.0) for h in histories if h]
    if not ends:
        return [], [], [], []
    end = min(ends)
    xs = [end * i / (points - 1) for i in range(points)] if end > 0 else [0.0]
    lo, mid, hi = [], [], []
    for x in xs:
        vals = [_value_at(h, x_key, y_key, x) for h in histories]
        lo.append(_quantile(vals, lo_q))
        mid.append(_quantile(vals, 0.5))
        hi.append(_quantile(vals, hi_q))
    return xs, lo, mid, hi


@dataclass
class SolverResult:
    solver: str
    config: dict[str, Any]
    histories: list[list[dict[str, float]]]
    finals: list[float]
    times_to_target: list[float] = field(default_factory=list)
    oracles_to_target: list[float] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)  # see :func:`grid_edges`


@dataclass
class BilevelSummary:
    plan: str
    problem: str
    metric: str
    target: float
    results: dict[str, SolverResult]
    references: dict[str, list[float]]
    config: dict[str, Any]
    provenance: dict[str, Any]
    tuned_runs: int


def grid_edges(grid: str, config: dict[str, Any]) -> list[str]:
    """Where ``config`` sits on the edge of ``grid``: e.g. ``["step at the largest grid value 3"]`` (empty when
    every searched axis is interior).  An axis with one value was not searched and is not reported; on an axis
    with two values every choice is an edge."""
    notes = []
    for axis, values in zip(("step", "ratio"), GRIDS[grid], strict=True):
        v = config.get(axis)
        if len(values) < 2 or v is None:
            continue
        if v == min(values):
            notes.append(f"{axis} at the smallest grid value {v:g}")
        elif v == max(values):
            notes.append(f"{axis} at the largest grid value {v:g}")
    return notes


def edge_warnings(summary: BilevelSummary) -> list[str]:
    """One line per solver whose selected configuration is on the grid's edge."""
    return [f"warning: {s}: selected configuration on the edge of grid {summary.config.get('grid')!r} "
            f"({'; '.join(r.edges)}); the best one may lie outside the grid (try a larger --grid)"
            for s, r in summary.results.items() if r.edges]


def _target(spec: ProblemSpec, results: dict[str, SolverResult]) -> float:
    meds = [_median(r.finals) for r in results.values()]
    best = min((m for m in meds if math.isfinite(m)), default=math.nan)
    kind, _, val = spec.target.partition(":")
    return best + float(val) if kind == "abs" else best * float(val)


def summarize(storage: BilevelStorage, plan: str | None = None, target: float | None = None) -> BilevelSummary:
    plans = storage.plans()
    if not plans:
        raise ValueError(f"no bilevel plan in {storage.url}")
    name = plan or list(plans)[-1]
    if name not in plans:
        raise ValueError(f"no bilevel plan {name!r}; plans: {', '.join(plans)}")
    cfg = plans[name]
    spec = PROBLEMS[cfg["problem"]]
    key = spec.report_key
    results: dict[str, SolverResult] = {}
    for r in storage.runs(name, "final"):
        res = results.setdefault(r.solver, SolverResult(r.solver, r.config, [], [],
                                                        edges=grid_edges(cfg["grid"], r.config)))
        res.histories.append(r.history)
        res.finals.append(math.inf if r.diverged else r.history[-1].get(key, math.nan))
    tgt = _target(spec, results) if target is None else target
    for res in results.values():
        for h in res.histories:
            ys = [row.get(key, math.nan) for row in h]
            ys = [math.inf if math.isnan(y) else y for y in ys]
            res.times_to_target.append(metrics.steps_to_target([row["time"] for row in h], ys, tgt))
            res.oracles_to_target.append(metrics.steps_to_target([row["oracle_calls"] for row in h], ys, tgt))
    refs: dict[str, list[float]] = {}
    for r in storage.runs(name, "reference"):
        for k, v in r.history[0].items():
            refs.setdefault(k, []).append(v)
    runs = storage.runs(name)
    prov = runs[0].provenance if runs else {}
    return BilevelSummary(name, cfg["problem"], key, tgt, dict(sorted(results.items())), refs, cfg, prov,
                          sum(r.phase == "tune" for r in runs))


def _fmt(x: float, digits: int = 4) -> str:
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "diverged" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _to_target(vals: list[float], digits: int = 3) -> str:
    """Median over seeds (misses count as +inf) and on how many seeds the target was reached, in words."""
    n, reached, med = len(vals), sum(math.isfinite(v) for v in vals), _median(vals)
    if reached == 0:
        return f"not reached on any of {n} seed{'s' if n != 1 else ''}"
    if not med < math.inf:
        return f"median not reached; reached on {reached} of {n} seeds"
    if reached == n:
        return f"{_fmt(med, digits)} (reached on all {n} seed{'s' if n != 1 else ''})"
    return f"{_fmt(med, digits)} (reached on {reached} of {n} seeds)"


def table_rows(summary: BilevelSummary) -> list[dict[str, str]]:
    """Per solver: final metric median [20 %, 80 %], time and oracle calls to target (median over seeds, misses
    = not reached; reached/seeds), the selected config; then the reference points."""
    rows = []
    for s, r in summary.results.items():
        rows.append({"solver": s, "final": f"{_fmt(_median(r.finals))} [{_fmt(_quantile(r.finals, 0.2))}, "
                                           f"{_fmt(_quantile(r.finals, 0.8))}]",
                     "time_to_target": _to_target(r.times_to_target),
                     "oracles_to_target": _to_target(r.oracles_to_target),
                     "config": f"step={r.config.get('step')}/L ratio={r.config.get('ratio')}"
                               + (f" (grid edge: {'; '.join(r.edges)})" if r.edges else ""),
                     "seeds": str(len(r.finals))})
    labels = {"val_only_test_error": "reference: clean validation only",
              "true_labels_test_error": "reference: true labels"}
    for k, vals in summary.references.items():
        rows.append({"solver": labels.get(k, k), "final": f"{_fmt(_median(vals))} [{_fmt(_quantile(vals, 0.2))}, "
                                                          f"{_fmt(_quantile(vals, 0.8))}]",
                     "time_to_target": "", "oracles_to_target": "", "config": "L-BFGS, full batch",
                     "seeds": str(len(vals))})
    return rows


def markdown_table(summary: BilevelSummary) -> str:
    head = (f"| solver | final {summary.metric} median [20 %, 80 %] | time to {_fmt(summary.target)} (s) | "
            "oracle calls to target | selected config |\n|---|---|---|---|---|\n")
    return head + "".join(f"| {r['solver']} | {r['final']} | {r['time_to_target']} | {r['oracles_to_target']} | "
                          f"{r['config']} |\n" for r in table_rows(summary))


def _curve_figure(summary: BilevelSummary, x_key: str, colors: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..results.html import png_base64

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    positive = True
    for s, r in summary.results.items():
        xs, lo, mid, hi = band(r.histories, x_key, summary.metric)
        fin = [(x, a, m, b) for x, a, m, b in zip(xs, lo, mid, hi, strict=True) if math.isfinite(m)]
        if not fin:
            continue
        xs, lo, mid, hi = (list(t) for t in zip(*fin, strict=True))
        hi = [h if math.isfinite(h) else max(mid) for h in hi]
        positive &= all(v > 0 for v in lo + mid)
        ax.plot(xs, mid, label=s, color=colors[s])
        ax.fill_between(xs, lo, hi, color=colors[s], alpha=0.18)
    for k, vals in summary.references.items():
        ax.axhline(_median(vals), ls="--", lw=1, color="gray" if k.startswith("val") else "black",
                   label="clean validation only" if k.startswith("val") else "true labels")
    if math.isfinite(summary.target):
        ax.axhline(summary.target, ls=":", lw=1, color="red", label="target")
    ax.set_xlabel("solver wall time (s)" if x_key == "time" else "oracle calls (gradients + HVPs + JVPs)")
    ax.set_ylabel(summary.metric)
    if positive and summary.metric != "test_error":
        ax.set_yscale("log")
    ax.set_title(f"{summary.problem}: median, 20–80 % band over seeds", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return png_base64(fig)


def write_html(summary: BilevelSummary, path: str | Path) -> Path:
    """One self-contained HTML file (figures as base64 PNG, like ``descend bench report``)."""
    from ..results.html import colors, write_document

    esc = html.escape
    palette = colors(list(summary.results))
    figs = [(f"{summary.metric} vs solver wall time", _curve_figure(summary, "time", palette)),
            (f"{summary.metric} vs oracle calls", _curve_figure(summary, "oracle_calls", palette))]
    rows = table_rows(summary)
    table = "".join(f"<tr><td>{esc(r['solver'])}</td><td>{esc(r['final'])}</td><td>{esc(r['time_to_target'])}</td>"
                    f"<td>{esc(r['oracles_to_target'])}</td><td>{esc(r['config'])}</td><td>{esc(r['seeds'])}</td>"
                    "</tr>" for r in rows)
    images = "".join(f'<figure><img alt="{esc(t)}" src="data:image/png;base64,{b}"><figcaption>{esc(t)}'
                     "</figcaption></figure>" for t, b in figs)
    prov = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>"
                   for k, v in sorted(summary.provenance.items()))
    plan = "".join(f"<tr><td>{esc(str(k))}</td><td>{esc(str(v))}</td></tr>" for k, v in sorted(summary.config.items()))
    spec = PROBLEMS[summary.problem]
    warns = edge_warnings(summary)
    warn = ("<p><strong>Grid edge:</strong> a configuration on the edge of the grid was selected; the best one may "
            "lie outside it (rerun with a larger grid):</p><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warns)
            + "</ul>") if warns else ""
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>descend bilevel — {esc(summary.plan)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1300px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
figure{{display:inline-block;margin:6px}}figcaption{{font-size:12px;color:#444}}</style></head>
<body><h1>descend bilevel: {esc(summary.plan)}</h1>
<p>{esc(spec.description)}. Every solver got the same grid over step size (× 1/L) × outer/inner step ratio and the
same budget ({esc(str(summary.config.get("budget")))}) on the same {summary.config.get("tune_seeds")} tuning seed(s)
({summary.tuned_runs} tuning runs); the configuration with the best median validation curve (outer objective,
{esc(str(summary.config.get("select")))}) was rerun on fresh seeds. Curves: median and 20–80 % band over those
seeds. Target = {_fmt(summary.target)} ({esc(spec.target)} of the best solver's median final value); time and oracle
calls to target are medians over seeds, misses counted as not reached. Evaluation is off the clock.</p>
{warn}
<h2>Results</h2>
<table><tr><th>solver</th><th>final {esc(summary.metric)} median [20 %, 80 %]</th><th>solver time to target (s)
</th><th>oracle calls to target</th><th>selected config</th><th>seeds</th></tr>{table}</table>
<h2>Figures</h2>{images}
<h2>Plan</h2><table>{plan}</table>
<h2>Provenance</h2><table>{prov}</table>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} by descend.</p>
</body></html>
"""
    return write_document(doc, path)


def describe() -> str:
    """The text of ``descend bilevel list``."""
    lines = ["problems:"]
    lines += [f"  {n:<24} {p.description} (report: {p.report_key})" for n, p in PROBLEMS.items()]
    lines.append("solvers:")
    lines += [f"  {n:<12} {s.description}" for n, s in SOLVERS.items()]
    lines.append("grids (step × 1/L values; outer/inner ratio × problem base):")
    lines += [f"  {n:<8} {json.dumps(list(s))} × {json.dumps(list(r))}" for n, (s, r) in GRIDS.items()]
    return "\n".join(lines)
