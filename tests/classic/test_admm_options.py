"""ADMM's two accelerations (Boyd et al. 2011: over-relaxation §3.4.3, residual-balancing ρ §3.4.1) leave the
fixed point where it was: run to convergence, each option reaches the cvxpy optimum of the convex ReLU program.

Tolerances: ADMM stops at relative primal and dual residuals ≤ 1e-9; cvxpy/Clarabel solves to ~1e-8 relative.
The optimal objective is unique and so are the fitted values ``F u`` (the loss is strictly convex in them), but the
blocks ``(v_i, w_i)`` need not be (measured 5e-2 apart at equal objectives), so the checks compare the objective
(1e-6 relative: measured 1e-8) and the fitted values (1e-5 relative: measured 1e-7), plus feasibility (1e-7).
"""

from __future__ import annotations

import pytest
import torch

from descend.classic import convex_relu as cr

pytest.importorskip("cvxpy")

BETA = 0.1


def _instance(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, cr.ConvexSolution]:
    x, y = cr.synthetic_data(n, 2, seed=seed)
    pats = cr.arrangement_patterns(x)
    return x, y, pats, cr.solve_cvxpy(x, y, pats, BETA)


def _fitted(x: torch.Tensor, pats: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (pats.to(x.dtype) * ((v - w) @ x.T)).sum(dim=0)


def _assert_optimal(x: torch.Tensor, pats: torch.Tensor, sol: cr.ConvexSolution, res: cr.ADMMResult) -> None:
    assert res.converged, (res.iterations, res.primal_residual[-1], res.dual_residual[-1])
    assert abs(res.objective[-1] - sol.objective) <= 1e-6 * sol.objective
    ref = _fitted(x, pats, sol.v, sol.w)
    assert float((_fitted(x, pats, res.v, res.w) - ref).norm()) <= 1e-5 * float(ref.norm())
    assert res.violation[-1] < 1e-7


@pytest.mark.parametrize("alpha", [1.5, 1.8])
def test_over_relaxation_keeps_the_optimum(alpha: float) -> None:
    x, y, pats, sol = _instance(7, 2)
    plain = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=40)
    res = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=3000, tol=1e-9, relaxation=alpha)
    _assert_optimal(x, pats, sol, res)
    assert res.objective[:40] != plain.objective          # a different path to the same point
    assert res.rho == [0.3] * res.iterations


def test_adaptive_rho_keeps_the_optimum() -> None:
    x, y, pats, sol = _instance(6, 2)
    res = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=3000, tol=1e-9, adaptive_rho=True)
    assert len(set(res.rho)) > 1                         # ρ did change (duals rescaled, factor rebuilt)
    _assert_optimal(x, pats, sol, res)
    # both options at once, from a ρ ten times too small (so that balancing acts: ρ doubles 3 times)
    x, y, pats, sol = _instance(7, 2)
    both = cr.admm(x, y, pats, BETA, rho=0.03, max_iter=3000, tol=1e-9, adaptive_rho=True, relaxation=1.7)
    assert len(set(both.rho)) > 1
    _assert_optimal(x, pats, sol, both)


def test_adaptation_is_off_when_frozen_and_ratios_are_respected() -> None:
    x, y, pats, _ = _instance(6, 2)
    fixed = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=60)
    frozen = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=60, adaptive_rho=True, adapt_until=0)
    assert frozen.objective == fixed.objective            # the same arithmetic: bitwise
    res = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=200, adaptive_rho=True, tau=2.0, adapt_until=100)
    steps = {round(b / a, 12) for a, b in zip(res.rho, res.rho[1:], strict=False)}
    assert steps <= {0.5, 1.0, 2.0} and len(set(res.rho[100:])) == 1


@pytest.mark.parametrize("kw, match", [
    ({"relaxation": 2.0}, "relaxation must be in"), ({"relaxation": 0.0}, "relaxation must be in"),
    ({"mu": 1.0}, "mu and tau"), ({"tau": 0.5}, "mu and tau"), ({"adapt_until": -1}, "adapt_until"),
])
def test_bad_options_raise(kw: dict[str, float], match: str) -> None:
    x, y = cr.synthetic_data(6, 2)
    with pytest.raises(ValueError, match=match):
        cr.admm(x, y, cr.arrangement_patterns(x), **kw)  # type: ignore[arg-type]


def test_cli_options_reach_admm(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from descend.cli import app
    from descend.results import ResultStore

    runner = CliRunner()
    db = str(tmp_path / "c.db")
    base = ["classic", "run", "convex-relu", "--problem", "synthetic", "--set", "n=6", "--set", "iterations=20",
            "--storage", db, "--quiet"]
    res = runner.invoke(app, [*base, "--set", "relaxation=1.8", "--set", "adaptive_rho=1"])
    assert res.exit_code == 0, res.output
    (rec,) = [r for r in ResultStore(db).records("classic") if r.method == "admm"]
    assert rec.setting["relaxation"] == 1.8 and rec.setting["adaptive_rho"] == 1
    x, y = cr.synthetic_data(6, 2, seed=0)
    direct = cr.admm(x, y, cr.arrangement_patterns(x), 0.1, rho=0.3, max_iter=20, relaxation=1.8, adaptive_rho=True)
    assert rec.curve["objective"] == direct.objective
    for bad, msg in ((["--set", "relaxation=2"], "relaxation must be in (0, 2)"),
                     (["--set", "adaptive_rho=yes"], "adaptive_rho must be 0 or 1")):
        out = runner.invoke(app, [*base, *bad])
        assert out.exit_code == 2 and msg in out.output and "Traceback" not in out.output, out.output
