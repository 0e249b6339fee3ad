"""Replay golden bilevel-solver trajectories recorded from the authors' code (format ``descend-bilevel-fixture/1``).

A fixture records a short deterministic run of a reference solver: the problem (every array), the reference's
hyperparameters, the starting point, the iterates after recorded outer iterations, and per-iteration
observables.  Replaying it builds the problem, maps the reference's hyperparameter names onto the descend
solver (strictly: an unknown or missing name makes the file uninterpretable), runs the solver one outer
iteration at a time and compares every recorded iterate within the fixture's tolerance
``|actual − expected| ≤ atol + rtol·|expected|``, and every observable within its own tolerance (the
``exact`` ones exactly).

Command line::

    python -m descend.bilevel.replay --no-diagnostics
    python -m descend.bilevel.replay ../shared/reference/bilevel/*.json

replays, with no path, the fixtures packaged with descend (:mod:`descend.fixtures`, ``bilevel``: a copy of
``shared/reference/bilevel/``, so a pip install can replay them), or the given files and directories; it
prints one line per fixture (max |err| of the iterates, max err/tol over iterates and observables, or why it
was not replayed) and exits with the status of the worst file: 0 all within tolerance (a well-formed fixture
of a solver descend does not have is listed as ``skipped``; 3 with ``--strict``), 1 a fixture fails, 2 a file
is not a valid fixture (``REFUSED``: every file is validated against the whole format before it is replayed,
and the line names the file, the place and the problem) or the replay raised (``ERROR``).  Nothing is skipped
silently: an observable the replayer does not know is an error; one without a tolerance is listed as
unchecked.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._fixtures import (
    BILEVEL_FORMAT,
    BILEVEL_SCALARS,
    Comparator,
    FixtureError,
    NotRegistered,
    Outcome,
    check_bilevel_fixture,
    read_json,
    run_cli,
)
from .bome import BOME
from .lancbio import LancBiO
from .oracles import Oracles
from .problems import BilevelProblem, bome_toy_coreset, lancbio_synthetic_from_arrays
from .solver import AIDSolver, BilevelSolver
from .stochastic import AmIGO, StocBiO

__all__ = ["FixtureError", "NotRegistered", "ReplayResult", "check_fixture", "load_fixture", "main", "replay",
           "replay_file"]

FORMAT = BILEVEL_FORMAT
_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class ReplayResult:
    """Outcome of replaying one fixture."""

    name: str
    solver: str
    iterations: int
    max_abs_error: float
    max_ratio: float  # over iterates and observables: max |diff| / (atol + rtol |expected|)
    first_failing_iteration: int | None
    observable_ratios: dict[str, float] = field(default_factory=dict)
    unchecked: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (self.first_failing_iteration is None and math.isfinite(self.max_ratio)
                and self.max_ratio <= 1.0)


def check_fixture(fx: Any, where: str = "fixture") -> None:
    """Raise :class:`FixtureError` unless ``fx`` is a valid fixture of this format (the whole format: keys,
    types, finite numbers, lengths against the problem's sizes and the iteration count, tolerances that can
    fail), then :class:`NotRegistered` if no descend solver replays its ``solver``; see
    :func:`descend._fixtures.check_bilevel_fixture`."""
    check_bilevel_fixture(fx, where)
    if fx["solver"] not in _SOLVERS:
        raise NotRegistered(f"{where}: no registered solver for fixture solver {fx['solver']!r} "
                            f"(known: {', '.join(sorted(_SOLVERS))})")


def load_fixture(path: str | Path) -> dict[str, Any]:
    """Read and check a fixture file; raise :class:`FixtureError` if it is not a readable fixture."""
    fx = read_json(path)
    check_fixture(fx, Path(path).name)
    return fx


# ----------------------------------------------------------------------------------------------------
# problems


def _t(values: Any, dt: torch.dtype, what: str) -> Tensor:
    try:
        return torch.tensor(values, dtype=dt)
    except (TypeError, ValueError) as exc:
        raise FixtureError(f"{what}: not a numeric array ({exc})") from exc


def _lancbio_problem(prob: Mapping[str, Any], init: Mapping[str, Any], dt: torch.dtype) -> BilevelProblem:
    n = int(prob["n"])
    c, c_x, c_y = (_t(prob[k], dt, f"problem.{k}") for k in ("c", "c_x", "c_y"))
    G = _t(prob["G"], dt, "problem.G").reshape(n, n)
    return lancbio_synthetic_from_arrays(c, c_x, c_y, G, float(prob["gamma"]), _t(init["x0"], dt, "init.x0"),
                                         _t(init["y0"], dt, "init.y0"))


def _bome_problem(prob: Mapping[str, Any], init: Mapping[str, Any], dt: torch.dtype) -> BilevelProblem:
    dim, ncts = int(prob["dim"]), int(prob["ncts"])
    target = _t(prob["xcts0"], dt, "problem.xcts0").reshape(dim)
    points = _t(prob["xcts"], dt, "problem.xcts").reshape(ncts, dim)
    # the reference's lower variable is x and its upper variable w: ours are y and x
    return bome_toy_coreset(target, points, x0=_t(init["w0"], dt, "init.w0"), y0=_t(init["x0"], dt, "init.x0"))


_PROBLEMS: dict[str, Callable[[Mapping[str, Any], Mapping[str, Any], torch.dtype], BilevelProblem]] = {
    "lancbio_synthetic": _lancbio_problem,
    "bome_toy_coreset": _bome_problem,
}

# ----------------------------------------------------------------------------------------------------
# solvers: reference hyperparameter names → descend, and the map fixture variable → solver state key

_LANCBIO_REPO = {"K": None, "T": "inner_steps", "lam": "lr_outer", "theta": "lr_inner", "min_lam": "min_lr_outer",
                 "b": "lr_outer_decay", "min_theta": "min_lr_inner", "a": "lr_inner_decay"}


@dataclass
class _SolverSpec:
    factory: Callable[..., BilevelSolver]
    names: dict[str, str | None]  # reference name -> descend keyword (None: the iteration count)
    variables: dict[str, str]  # fixture variable -> solver state key
    fixed: dict[str, Any] = field(default_factory=dict)
    iterations_key: str = "K"
    family: str = "lancbio_repo"


_LANCBIO_VARS = {"x": "x", "y": "y", "v": "v"}
_SOLVERS: dict[str, _SolverSpec] = {
    "lancbio": _SolverSpec(LancBiO, {**_LANCBIO_REPO, "m": "subspace_dim", "dim_max": "max_subspace_dim",
                                     "dim_inc": "growth", "dim_fre": "growth_period"}, _LANCBIO_VARS),
    "amigo_cg": _SolverSpec(AmIGO, {**_LANCBIO_REPO, "hessian_q": "hessian_steps"}, _LANCBIO_VARS,
                            {"v_solver": "cg"}),
    "amigo_gd": _SolverSpec(AmIGO, {**_LANCBIO_REPO, "hessian_q": "hessian_steps"}, _LANCBIO_VARS,
                            {"v_solver": "gd"}),
    "soba": _SolverSpec(AmIGO, {**_LANCBIO_REPO, "hessian_q": "hessian_steps"}, _LANCBIO_VARS,
                        {"v_solver": "gd"}),  # the reference's SOBA is its AmIGO-GD code (T = Q = 1)
    "stocbio": _SolverSpec(StocBiO, {**_LANCBIO_REPO, "hessian_q": "hessian_steps"}, _LANCBIO_VARS),
    "bome": _SolverSpec(BOME, {"maxIter": None, "k": "inner_steps", "eta": "eta", "x_lr": "lr_lower",
                               "w_lr": "lr_outer", "xhat_lr": "lr_inner"}, {"x": "y", "w": "x"},
                        {"phi": "grad_norm", "damping": 1e-4}, "maxIter", "bome"),
}


def _build(fx: Mapping[str, Any], name: str) -> tuple[BilevelSolver, BilevelProblem, int, _SolverSpec]:
    spec = _SOLVERS[fx["solver"]]
    dt = _DTYPES[fx["dtype"]]
    try:
        problem = _PROBLEMS[fx["problem"]["name"]](fx["problem"], fx["init"], dt)
    except (LookupError, ValueError, TypeError) as exc:
        raise FixtureError(f"{name}: cannot build problem {fx['problem'].get('name')!r}: {exc}") from exc
    hp = dict(fx["hyperparameters"])
    unknown = sorted(set(hp) - set(spec.names))
    missing = sorted(set(spec.names) - set(hp))
    if unknown or missing:
        raise FixtureError(f"{name}: hyperparameters of {fx['solver']!r}: unknown {unknown}, missing {missing}")
    kwargs: dict[str, Any] = dict(spec.fixed)
    for ref, ours in spec.names.items():
        if ours is not None:
            kwargs[ours] = hp[ref]
    if spec.family == "lancbio_repo" and "v0" in fx["init"] and fx["solver"] != "stocbio":
        kwargs["v0"] = _t(fx["init"]["v0"], dt, "init.v0")
    iterations = int(hp[spec.iterations_key])
    try:
        solver = spec.factory(problem, **kwargs)
    except (TypeError, ValueError) as exc:
        raise FixtureError(f"{name}: cannot build {fx['solver']!r} from the fixture's hyperparameters: "
                           f"{exc}") from exc
    return solver, problem, iterations, spec


# ----------------------------------------------------------------------------------------------------
# observables


def _reference_hypergrad_norm(o: Oracles, x: Tensor, y: Tensor, v: Tensor, settings: Mapping[str, Any]) -> float:
    """The LancBiO repository's read-only hypergradient estimate (README: ``hypergrad_norm_estimate``)."""
    theta, eps = float(settings["theta"]), float(settings["eps"])
    for _ in range(int(settings["gd_steps"])):
        d = o.grad_inner_y(x, y)
        y = y - theta * d
        if float(torch.linalg.vector_norm(d)) < eps:
            break
    gx_f, b = o.grad_outer(x, y)
    op = o.hessian_operator(x, y)
    r = op(v)[0] - b
    p = -r
    for _ in range(int(settings["cg_steps"])):
        Ap = op(p)[0]
        alpha = (r * r).sum() / (p * Ap).sum()
        v = v + alpha * p
        r_new = r + alpha * Ap
        beta = (r_new * r_new).sum() / (r * r).sum()
        p = -r_new + beta * p
        r = r_new
        if float(torch.linalg.vector_norm(r)) < eps:
            break
    return float(torch.linalg.vector_norm(gx_f - o.jvp(x, y, v)))


def _lancbio_repo_observables(solver: BilevelSolver, fx: Mapping[str, Any], diagnostics: bool) -> dict[str, Any]:
    assert isinstance(solver, AIDSolver)
    o = Oracles(solver.problem)  # separate counters: the diagnostics are off the books
    x, y, v = solver.x, solver.y, solver.v
    _, fy = o.grad_outer(x, y)
    out: dict[str, Any] = {
        "lam_k": solver.info["lr_outer"], "theta_k": solver.info["lr_inner"],
        "residual_norm": float(torch.linalg.vector_norm(fy - o.hvp(x, y, v))),
        "g_opt": float(torch.linalg.vector_norm(o.grad_inner_y(x, y))),
        "f_value": float(o.outer_value(x, y)),
    }
    settings = fx.get("observables", {}).get("diagnostic_settings")
    if settings is not None and diagnostics:
        out["hypergrad_norm_estimate"] = _reference_hypergrad_norm(o, x, y, v, settings)
    if isinstance(solver, LancBiO):
        out.update({"m": solver.m, "restart": bool(solver.restarted), "basis_size": int(solver.info["basis_size"]),
                    "lanczos_alpha": solver.info["lanczos_alpha"], "lanczos_beta": solver.info["lanczos_beta"]})
    return out


def _bome_observables(solver: BilevelSolver, fx: Mapping[str, Any], diagnostics: bool) -> dict[str, Any]:
    assert isinstance(solver, BOME)
    return {"xhat": solver.y_hat.tolist(), "g_gap": solver.info["g_gap"], "lambda": solver.info["lambda"],
            "f_value": float(solver.oracles.outer_value(solver.x, solver.y))}


_OBSERVERS = {"lancbio_repo": _lancbio_repo_observables, "bome": _bome_observables}
# observables summarising a whole run: name -> function(list of per-iteration observables) -> value
_SUMMARIES: dict[str, Callable[[list[dict[str, Any]]], Any]] = {
    "restart_iterations": lambda rows: [i + 1 for i, r in enumerate(rows) if r.get("restart")],
    "clipped_iterations": lambda rows: [i + 1 for i, r in enumerate(rows) if r.get("lambda") == 0.0],
}
_NOT_OBSERVABLES = ("iterations", "diagnostic_settings")


_COSTLY = ("hypergrad_norm_estimate",)


def replay(fx: Mapping[str, Any], name: str = "fixture", diagnostics: bool = True) -> ReplayResult:
    """Replay one (already loaded) fixture; a numerical mismatch is reported in the result, not raised.

    ``diagnostics=False`` does not recompute the costly read-only diagnostics (:data:`_COSTLY`: the LancBiO
    repository's 500-step hypergradient estimate, ~95 % of the replay time); they are then listed in
    ``ReplayResult.unchecked``.  Raises :class:`FixtureError` if the fixture cannot be interpreted.
    """
    check_fixture(fx, name)
    return _replay(fx, name, diagnostics)


def _replay(fx: Mapping[str, Any], name: str, diagnostics: bool) -> ReplayResult:
    """:func:`replay` of a fixture that :func:`check_fixture` accepted."""
    solver, _, iterations, spec = _build(fx, name)
    tol = fx["tolerance"]
    traj = {int(e["k"]): e for e in fx["trajectory"]}
    if max(traj, default=0) > iterations:
        raise FixtureError(f"{name}: trajectory goes beyond {iterations} iterations")
    cmp = Comparator(tol["rtol"], tol["atol"])
    observables = {k: v for k, v in (fx.get("observables") or {}).items()
                   if k not in _NOT_OBSERVABLES and k not in BILEVEL_SCALARS}
    otol = fx.get("observables_tolerance") or {}
    exact = set(otol.get("exact", []))
    float_tol: dict[str, Any] = dict(otol.get("float", {}))
    for key, val in otol.items():  # per-name tolerances given beside "float" (BOME: xhat)
        if key not in ("float", "exact", "why") and isinstance(val, dict) and "rtol" in val:
            float_tol[key] = val
    rows: list[dict[str, Any]] = []
    for k in range(1, iterations + 1):
        try:
            solver.step()
        except ValueError as exc:
            return ReplayResult(name, fx["solver"], k, math.inf, math.inf, k, unchecked=[str(exc)])
        rows.append(_OBSERVERS[spec.family](solver, fx, diagnostics))
        if k in traj:
            state = solver.state()
            for var, value in traj[k].items():
                if var == "k":
                    continue
                if var not in spec.variables:
                    raise FixtureError(f"{name}: unknown trajectory variable {var!r}")
                cmp.compare(state[spec.variables[var]], value, k)

    obs_ratios: dict[str, float] = {}
    unchecked: list[str] = []
    first_fail = cmp.first_fail
    for key, expected in observables.items():
        if key in _SUMMARIES or not isinstance(expected, list) or len(expected) != iterations:
            actual_all: Any = _SUMMARIES[key](rows) if key in _SUMMARIES else None
            if actual_all is None:
                if key in exact or key in float_tol:
                    raise FixtureError(f"{name}: observable {key!r} has a tolerance but no per-iteration values")
                unchecked.append(key)
                continue
            ok = actual_all == expected if key in exact else None
            if ok is None:
                raise FixtureError(f"{name}: summary observable {key!r} has no exact tolerance")
            obs_ratios[key] = 0.0 if ok else math.inf
            if not ok and first_fail is None:
                first_fail = iterations
            continue
        if not diagnostics and key in _COSTLY:
            unchecked.append(key)
            continue
        if key not in rows[0]:
            raise FixtureError(f"{name}: the replayer does not compute observable {key!r}")
        if key in exact:
            bad = [i + 1 for i, (r, e) in enumerate(zip(rows, expected, strict=True)) if r[key] != e]
            obs_ratios[key] = math.inf if bad else 0.0
            if bad:
                first_fail = bad[0] if first_fail is None else min(first_fail, bad[0])
        elif key in float_tol:
            c = Comparator(float_tol[key]["rtol"], float_tol[key].get("atol", 0.0))
            for i, (r, e) in enumerate(zip(rows, expected, strict=True)):
                c.compare(r[key], e, i + 1)
            obs_ratios[key] = c.max_ratio
            if c.first_fail is not None:
                first_fail = c.first_fail if first_fail is None else min(first_fail, c.first_fail)
        else:
            unchecked.append(key)
    return ReplayResult(name=name, solver=fx["solver"], iterations=iterations, max_abs_error=cmp.max_abs,
                        max_ratio=max([cmp.max_ratio, *obs_ratios.values()]), first_failing_iteration=first_fail,
                        observable_ratios=obs_ratios, unchecked=unchecked)


def replay_file(path: str | Path, diagnostics: bool = True) -> ReplayResult:
    """Load and replay the fixture at ``path`` (see :func:`replay`)."""
    return _replay(load_fixture(path), Path(path).name, diagnostics)


def _replay_one(path: Path, args: argparse.Namespace) -> Outcome:
    r = replay_file(path, diagnostics=not args.no_diagnostics)
    return Outcome(passed=r.passed,
                   columns=f"{r.solver:<9} {r.iterations:>5} {r.max_abs_error:>10.2e} {r.max_ratio:>9.2e}",
                   fail_detail=f"first at iteration {r.first_failing_iteration}",
                   notes=f"  unchecked: {', '.join(r.unchecked)}" if r.unchecked else "",
                   details=[f"{key:<24} err/tol {val:.2e}" for key, val in r.observable_ratios.items()])


def _arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--no-diagnostics", action="store_true",
                    help="skip (and list as unchecked) the costly read-only diagnostics")


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status (see the module docstring)."""
    return run_cli("python -m descend.bilevel.replay", __doc__.split("\n\n")[0],
                   f"{'solver':<9} {'iters':>5} {'max|err|':>10} {'err/tol':>9}", _replay_one, argv, _arguments,
                   packaged="bilevel")


if __name__ == "__main__":
    sys.exit(main())
