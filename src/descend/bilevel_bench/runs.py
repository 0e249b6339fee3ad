"""One bilevel benchmark run: a solver at a grid point on a seed, evaluated along its budget (off the clock).

Pure torch (and the problem builders of :mod:`descend.bilevel`): this is what a worker process or a Ray task
executes; storing and scheduling are :mod:`.work`'s.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..results.db import owner_id
from .spec import ORACLE_KEYS, PROBLEMS, SOLVERS, VALIDATION_KEY, Budget

__all__ = ["RunOutput", "execute", "get_problem", "make_solver", "resolved_kwargs", "run_one"]

_PROBLEM_CACHE: dict[tuple[str, int], Any] = {}
_PROBLEM_LOCK = threading.Lock()  # runs in drain's threads build the same problem once


def get_problem(name: str, seed: int) -> Any:
    spec = PROBLEMS[name]
    key = (name, 0 if spec.fixed_data else seed)
    with _PROBLEM_LOCK:
        if key not in _PROBLEM_CACHE:
            if len(_PROBLEM_CACHE) > 16:
                _PROBLEM_CACHE.clear()
            _PROBLEM_CACHE[key] = spec.build(key[1])
        return _PROBLEM_CACHE[key]


def make_solver(solver: str, problem_name: str, config: dict[str, float], seed: int, batch_size: int) -> Any:
    """The solver of a grid point (see :func:`resolved_kwargs`)."""
    from ..bilevel import SOLVERS as CLASSES

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


@dataclass
class RunOutput:
    """What :func:`execute` returns (plain data: it travels back from a Ray task)."""

    history: list[dict[str, float]]
    diverged: bool
    wall_time: float
    solver_kwargs: dict[str, Any]
    executed_by: str = ""  # host:pid:thread of the process that ran it (a Ray worker's, with --executor ray)


def execute(solver: str, problem_name: str, config: dict[str, float], seed: int, budget: str, batch_size: int,
            n_eval: int, threads: int) -> RunOutput:
    """:func:`run_one` with ``threads`` torch threads, timed: a worker's or a Ray task's unit of work.

    The thread count is left set (a process's runs share it: :func:`descend.bilevel_bench.work.run_plan` restores
    the caller's when the plan is done), so that runs in flight at once never see each other's restore.
    """
    import torch

    from .spec import parse_budget

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    hist, diverged = run_one(solver, problem_name, config, seed, parse_budget(budget), batch_size, n_eval)
    wall = time.perf_counter() - t0
    return RunOutput(hist, diverged, wall, resolved_kwargs(solver, problem_name, config, seed, batch_size),
                     owner_id())
