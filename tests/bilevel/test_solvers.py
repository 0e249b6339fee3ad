"""Solvers reach the known solution of the quadratic problem; histories; seeded determinism."""

from __future__ import annotations

import math

import pytest
import torch

from descend.bilevel import (
    BOME,
    F2SA,
    SABA,
    SOBA,
    AmIGO,
    LancBiO,
    PenaltyMethod,
    QuadraticProblem,
    StocBiO,
    SubBiO,
)
from descend.bilevel.oracles import COUNT_KEYS

DT = torch.float64


@pytest.fixture(scope="module")
def quad():
    p = QuadraticProblem(5, 5, rank=2, condition=5.0, reg=0.1, seed=1)
    xs, ys = p.solution()
    return p, xs, ys, 1.0 / p.lipschitz(xs)


def _err(r, xs, ys):
    return float((r.x - xs).norm() / xs.norm()), float((r.y - ys).norm() / ys.norm())


def test_closed_form_solution_is_stationary(quad):
    p, xs, ys, _ = quad
    assert float(p.true_hypergradient(xs).norm()) < 1e-10
    torch.testing.assert_close(ys, p.y_star(xs))


@pytest.mark.parametrize("name, make, iters, tol", [
    ("lancbio", lambda p, a: LancBiO(p, lr_outer=0.5, lr_inner=a, max_subspace_dim=5), 200, 1e-6),
    ("subbio", lambda p, a: SubBiO(p, lr_outer=0.5, lr_inner=a), 200, 1e-6),
    ("amigo_cg", lambda p, a: AmIGO(p, lr_outer=0.5, lr_inner=a), 200, 1e-6),
    ("amigo_gd", lambda p, a: AmIGO(p, lr_outer=0.5, lr_inner=a, v_solver="gd"), 200, 1e-6),
    ("stocbio", lambda p, a: StocBiO(p, lr_outer=0.5, lr_inner=a, hessian_steps=60), 150, 1e-4),
    ("soba", lambda p, a: SOBA(p, lr_outer=0.1, lr_inner=a, lr_outer_decay=0, lr_inner_decay=0), 800, 1e-4),
    ("saba", lambda p, a: SABA(p, lr_outer=0.05, lr_inner=a), 1000, 1e-2),
    ("penalty", lambda p, a: PenaltyMethod(p, penalty=1e3, lr_outer=0.3, lr_inner=a), 200, 1e-3),
    ("f2sa", lambda p, a: F2SA(p, penalty=10.0, penalty_increment=50.0, max_penalty=1e3, lr_outer=0.3,
                               lr_inner=a, lr_outer_decay=0, lr_inner_decay=0, lr_z_decay=0, penalty_decay=0),
     200, 1e-3),
])
def test_deterministic_solvers_reach_the_solution(quad, name, make, iters, tol):
    p, xs, ys, a = quad
    r = make(p, a).run(iters, eval_every=iters)
    ex, ey = _err(r, xs, ys)
    assert ex < tol and ey < tol, (name, ex, ey)


def test_bome_reaches_a_neighbourhood_of_the_solution():
    p = QuadraticProblem(3, 3, rank=1, condition=3.0, reg=0.5, seed=1)
    xs, ys = p.solution()
    r = BOME(p, lr_outer=0.05, lr_inner=1 / p.lipschitz(xs), inner_steps=10, eta=0.5).run(150, eval_every=150)
    assert max(_err(r, xs, ys)) < 0.05


@pytest.mark.slow
def test_bome_reaches_the_solution_as_its_step_shrinks():
    """BOME's fixed points lie in a neighbourhood of the solution that shrinks with the step ξ."""
    p = QuadraticProblem(3, 3, rank=1, condition=3.0, reg=0.5, seed=1)
    xs, ys = p.solution()
    a = 1 / p.lipschitz(xs)
    errs = {}
    for lr, iters in ((0.1, 150), (0.02, 600)):
        for phi in ("grad_norm", "value"):
            r = BOME(p, lr_outer=lr, lr_inner=a, inner_steps=10, eta=0.5, phi=phi).run(iters, eval_every=iters)
            errs[phi, lr] = max(_err(r, xs, ys))
    assert errs["grad_norm", 0.02] < 0.5 * errs["grad_norm", 0.1], errs
    assert errs["grad_norm", 0.02] < 0.02 and errs["value", 0.02] < 0.04, errs


@pytest.mark.parametrize("name, make, iters, tol", [
    ("stocbio", lambda p, a: StocBiO(p, lr_outer=0.5, lr_inner=a, hessian_steps=15, inner_batch_size=10,
                                     outer_batch_size=10), 200, 0.05),
    ("amigo", lambda p, a: AmIGO(p, lr_outer=0.5, lr_inner=a, v_solver="gd", inner_batch_size=10,
                                 outer_batch_size=10), 200, 0.05),
    ("soba", lambda p, a: SOBA(p, lr_outer=0.1, lr_inner=a, lr_outer_decay=0.0, lr_inner_decay=0.0,
                               inner_batch_size=5, outer_batch_size=5), 1500, 0.05),
    ("saba", lambda p, a: SABA(p, lr_outer=0.05, lr_inner=a), 1500, 0.02),
])
def test_stochastic_solvers_reach_the_solution(name, make, iters, tol):
    p = QuadraticProblem(5, 5, rank=2, condition=5.0, reg=0.1, n_samples=20, noise=0.1, seed=1)
    xs, ys = p.solution()
    r = make(p, 1 / p.lipschitz(xs)).run(iters, eval_every=iters)
    ex, ey = _err(r, xs, ys)
    assert ex < tol and ey < tol, (name, ex, ey)


@pytest.mark.slow
def test_saba_converges_linearly_on_finite_sum():
    """Variance reduction: SABA with constant steps reaches the exact solution (SOBA would plateau)."""
    p = QuadraticProblem(3, 3, rank=1, condition=3.0, reg=0.5, n_samples=8, noise=0.3, seed=2)
    xs, ys = p.solution()
    r = SABA(p, lr_outer=0.1, lr_inner=1 / p.lipschitz(xs)).run(2000, eval_every=2000)
    assert max(_err(r, xs, ys)) < 1e-6


@pytest.mark.parametrize("cls, kwargs", [
    (StocBiO, {"inner_batch_size": 4, "outer_batch_size": 4}),
    (SOBA, {"inner_batch_size": 3, "outer_batch_size": 3}),
    (SABA, {}),
    (BOME, {"inner_batch_size": 4}),
    (F2SA, {"inner_batch_size": 4, "outer_batch_size": 4}),
])
def test_seeded_runs_are_deterministic(cls, kwargs):
    p = QuadraticProblem(4, 4, rank=1, n_samples=10, seed=0)
    runs = [cls(p, seed=7, **kwargs).run(15) for _ in range(2)]
    other = cls(p, seed=8, **kwargs).run(15)
    assert torch.equal(runs[0].x, runs[1].x) and torch.equal(runs[0].y, runs[1].y)
    strip = [[{k: v for k, v in row.items() if k != "time"} for row in r.history] for r in runs]
    assert strip[0] == strip[1]
    assert not torch.equal(runs[0].x, other.x)


def test_history_rows_are_tidy_records():
    p = QuadraticProblem(4, 4, rank=1, seed=0)
    r = LancBiO(p, lr_outer=0.5, lr_inner=0.1).run(7, eval_every=3)
    assert [row["iteration"] for row in r.history] == [0, 3, 6, 7]
    for row in r.history:
        assert all(isinstance(k, str) and isinstance(v, float) for k, v in row.items())
        assert {"iteration", "time", "outer_value", "hypergrad_norm", *COUNT_KEYS} <= set(row)
        assert "value" in row and "true_hypergrad_norm" in row  # the problem's metrics
    assert math.isnan(r.history[0]["hypergrad_norm"])
    counts = [row["hvp"] for row in r.history]
    assert counts == sorted(counts) and counts[-1] > 0
    times = r.column("time")
    assert times == sorted(times)
    # LancBiO: about one HVP per iteration plus one per restart, one JVP per iteration
    assert r.history[-1]["jvp"] == 7 and 7 < r.history[-1]["hvp"] <= 14


def test_oracle_counts_per_iteration():
    p = QuadraticProblem(4, 4, rank=1, seed=0)
    s = AmIGO(p, inner_steps=3, hessian_steps=4, v_solver="cg")
    s.step()
    # CG from v0 = 0: the initial residual costs one product (A·0), as in the reference
    assert s.oracles.counts == {"grad_outer": 1, "grad_inner": 3, "hvp": 5, "jvp": 1}
    b = BOME(p, inner_steps=6)
    b.step()
    assert b.oracles.counts == {"grad_outer": 1, "grad_inner": 8, "hvp": 0, "jvp": 0}
