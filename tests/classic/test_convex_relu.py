"""Convex two-layer ReLU training (Pilanci–Ergen; Bai–Gautam–Sojoudi ADMM), checked against cvxpy.

Problem: n Gaussian 2-D points plus a bias column, targets from a 3-neuron ReLU teacher plus noise, β = 0.1, all
hyperplane arrangements enumerated exactly (so the convex program equals the nonconvex optimum).  β = 0.1 (not
the spec's 1e-3) keeps the optimum sparse (16 active neurons at n = 20); at β = 1e-3 it uses 63 neurons for 20
points, nearly interpolating, which leaves nothing for a width-limited nonconvex baseline to find.
"""

from __future__ import annotations

import math

import pytest
import torch

from descend.classic import convex_relu as cr

cvxpy = pytest.importorskip("cvxpy")

BETA = 0.1


@pytest.fixture(scope="module", params=[12])
def problem(request):
    n = request.param
    x, y = cr.synthetic_data(n, 2, seed=0)
    pats = cr.arrangement_patterns(x)
    sol = cr.solve_cvxpy(x, y, pats, BETA)
    return x, y, pats, sol


@pytest.mark.parametrize("n,d", [(12, 3), (20, 3), (9, 4)])
def test_exact_enumeration_counts_cells_in_general_position(n, d):
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    pats = cr.enumerate_arrangements(x)
    assert pats.shape == (cr.regions_in_general_position(n, d), n)
    # every sampled pattern is one of the enumerated cells, and dense sampling finds most of them
    sampled = cr.sample_arrangements(x, 20000, seed=1)
    enumerated = {tuple(r.tolist()) for r in pats}
    assert all(tuple(r.tolist()) in enumerated for r in sampled)
    assert sampled.shape[0] >= 0.8 * pats.shape[0]


def test_recovered_network_attains_the_convex_optimum(problem):
    x, y, pats, sol = problem
    # the reference solves to ~1e-8 relative; the recovered ReLU net equals the convex fit wherever the cone
    # constraints hold, so the two objectives agree to the solver's feasibility tolerance
    assert cr.constraint_violation(x, pats, sol.v, sol.w) < 1e-7
    scale = float(torch.cat([sol.v.norm(dim=1), sol.w.norm(dim=1)]).max())
    u, alpha = cr.recover_network(sol.v, sol.w, threshold=1e-7 * scale)
    net = float(cr.network_objective(x, y, u, alpha, BETA))
    assert abs(net - sol.objective) <= 1e-6 * sol.objective
    assert cr.convex_objective(x, y, pats, BETA, sol.v, sol.w) == pytest.approx(sol.objective, rel=1e-6)


def test_admm_converges_to_the_cvxpy_objective(problem):
    x, y, pats, sol = problem
    res = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=500)
    gaps = [abs(o - sol.objective) / sol.objective for o in res.objective]
    assert gaps[-1] < 1e-2
    assert max(gaps[400:]) < max(gaps[50:100])
    # residuals shrink by orders of magnitude over the run
    assert res.primal_residual[-1] < 1e-2 * res.primal_residual[0]
    assert res.dual_residual[-1] < 1e-2 * res.dual_residual[0]
    # the network recovered from ADMM's sparse iterate is a real ReLU network: never below the optimum
    u, alpha = cr.recover_network(res.v, res.w)
    assert float(cr.network_objective(x, y, u, alpha, BETA)) >= sol.objective * (1 - 1e-6)


def _claim(x, y, pats, sol, beta=BETA, **kw):
    """The spec's claim: within 1e-3 of the cvxpy objective after 500 iterations, residuals decaying geometrically."""
    res = cr.admm(x, y, pats, beta, max_iter=500, **kw)
    assert abs(res.objective[-1] - sol.objective) <= 1e-3 * sol.objective
    ratios = [res.primal_residual[k + 50] / res.primal_residual[k] for k in range(50, 450, 50)]
    assert max(ratios) < 0.5  # geometric: each 50 iterations halve the residual at least


@pytest.mark.xfail(strict=True, reason="measured at n = 12 (ρ = 0.3): the gap after 500 iterations is 9.9e-4, inside "
                   "1e-3, but the residuals do not decay geometrically (50-iteration primal-residual ratios up to "
                   "0.78, not < 0.5); at n = 20 the gap is 1.7e-3 (ρ = 0.3) to 9e-3 (ρ = 3): the claim does not "
                   "reproduce")
def test_admm_claim_1e3_in_500_iterations(problem):
    x, y, pats, sol = problem
    _claim(x, y, pats, sol, rho=0.3)


@pytest.mark.xfail(strict=True, reason="measured at n = 12 with over-relaxation α = 1.8 and residual balancing "
                   "(Boyd et al. 2011 §3.4): the gap after 500 iterations falls to 1.2e-4 (from 9.9e-4), but the "
                   "residual ratios reach 0.94: still not geometric, so the claim does not reproduce with the options "
                   "either")
def test_admm_claim_with_over_relaxation_and_adaptive_rho(problem):
    x, y, pats, sol = problem
    _claim(x, y, pats, sol, rho=0.3, relaxation=1.8, adaptive_rho=True)


@pytest.mark.xfail(strict=True, reason="approximate program (the paper's quadratic-time case), spec's β = 1e-3, n = 40,"
                   " P_s = 10 sampled patterns, default ρ = 0.01: measured gap after 500 iterations 8.0e-3 / 1.3e-3 / "
                   "2.0e-2 (seeds 0/1/2; within 1e-3 only from iteration 1653 / 517 / 1925) and 50-iteration "
                   "residual ratios up to 1.18 / 1.34 / 1.40: the claim does not reproduce")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_admm_claim_on_the_sampled_program_spec_beta(seed):
    x, y = cr.synthetic_data(40, 2, seed=seed)
    pats = cr.sample_arrangements(x, 10, seed=seed + 100)
    sol = cr.solve_cvxpy(x, y, pats, 1e-3)
    _claim(x, y, pats, sol, beta=1e-3)


def test_over_relaxation_shrinks_the_gap_at_500_iterations(problem):
    """What the options do buy at n = 12 (measured 9.9e-4 → 1.2e-4 with α = 1.8): a smaller final gap."""
    x, y, pats, sol = problem
    plain = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=500)
    fast = cr.admm(x, y, pats, BETA, rho=0.3, max_iter=500, relaxation=1.8, adaptive_rho=True)
    gap = [abs(r.objective[-1] - sol.objective) / sol.objective for r in (plain, fast)]
    assert gap[1] < 0.5 * gap[0], gap


def test_nonconvex_adam_never_beats_the_convex_optimum(problem):
    x, y, _pats, sol = problem
    nnz = int((sol.v.norm(dim=1) > 1e-6).sum() + (sol.w.norm(dim=1) > 1e-6).sum())
    finals = [cr.nonconvex_adam(x, y, width=2 * nnz, beta=BETA, steps=1500, lr=2e-2, seed=s)[0][-1] for s in range(3)]
    # p_cvx is the global minimum of the nonconvex problem (width ≥ nnz); cvxpy's value is accurate to ~1e-8
    assert min(finals) >= sol.objective * (1 - 1e-6)
    assert min(finals) <= sol.objective * (1 + 1e-2)


def test_sampled_program_by_proximal_gradient_reaches_the_sampled_optimum(problem):
    x, y, _, sol = problem
    sampled = cr.arrangement_patterns(x, n_samples=200, seed=3)
    ref = cr.solve_cvxpy(x, y, sampled, BETA)  # the sampled constrained program: an upper bound on p*
    assert ref.objective >= sol.objective * (1 - 1e-6)
    curve, v, w = cr.sampled_program(x, y, sampled, BETA, penalty=100.0, steps=2000)
    # the smooth penalty leaves a small infeasibility (measured 2e-3 at μ = 100), which lowers the convex
    # objective below the constrained optimum; the recovered ReLU network is the honest measure
    assert cr.constraint_violation(x, sampled, v, w) < 1e-2
    assert curve[-1] < curve[99]
    u, alpha = cr.recover_network(v, w)
    net = float(cr.network_objective(x, y, u, alpha, BETA))
    assert sol.objective * (1 - 1e-6) <= net <= ref.objective * 1.02


def test_bad_arguments_raise_before_work():
    x, y = cr.synthetic_data(6, 2)
    pats = cr.arrangement_patterns(x)
    with pytest.raises(ValueError, match="rho"):
        cr.admm(x, y, pats, rho=0.0)
    with pytest.raises(ValueError, match="n_samples"):
        cr.sample_arrangements(x, 0)
    with pytest.raises(ValueError, match="d ≤ 4"):
        cr.enumerate_arrangements(torch.randn(8, 5, dtype=torch.float64))
    assert math.isfinite(cr.regions_in_general_position(6, 3))


@pytest.fixture(scope="module")
def problem40():
    x, y = cr.synthetic_data(40, 2, seed=0)
    pats = cr.arrangement_patterns(x)  # 1561 patterns
    return x, y, pats, cr.solve_cvxpy(x, y, pats, BETA)


@pytest.mark.slow
def test_full_size_n40(problem40):
    x, y, _, sol = problem40
    u, alpha = cr.recover_network(sol.v, sol.w, threshold=1e-7 * float(sol.v.norm(dim=1).max()))
    assert float(cr.network_objective(x, y, u, alpha, BETA)) == pytest.approx(sol.objective, rel=1e-6)
    nnz = int((sol.v.norm(dim=1) > 1e-6).sum() + (sol.w.norm(dim=1) > 1e-6).sum())
    finals = [cr.nonconvex_adam(x, y, width=2 * nnz, beta=BETA, steps=5000, lr=2e-2, seed=s)[0][-1] for s in range(10)]
    assert min(finals) >= sol.objective * (1 - 1e-6)
    assert min(finals) <= sol.objective * (1 + 1e-2)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured at n = 40 (1561 patterns): after 500 iterations the gap is 2.2e-1 "
                   "(ρ = 0.3), 1.3e-2 (ρ = 1), 1.5e-2 (ρ = 3), 2.6e-2 (ρ = 10): the 1e-3 claim does not reproduce")
def test_full_size_admm_claim(problem40):
    x, y, pats, sol = problem40
    res = cr.admm(x, y, pats, BETA, rho=1.0, max_iter=500)
    assert abs(res.objective[-1] - sol.objective) <= 1e-3 * sol.objective


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured at n = 40 with the options: best gap after 500 iterations 6.3e-3 "
                   "(ρ = 1, α = 1.8; 8e-3 at α = 1.6; with adaptive ρ from ρ ∈ {1, 3}: 6.4e-3 to 1.7e-2); at the "
                   "spec's β = 1e-3 the best is 1.9e-2 (ρ = 0.01, α = 1.8, adaptive): the 1e-3 claim does not "
                   "reproduce")
def test_full_size_admm_claim_with_options(problem40):
    x, y, pats, sol = problem40
    res = cr.admm(x, y, pats, BETA, rho=1.0, max_iter=500, relaxation=1.8)
    assert abs(res.objective[-1] - sol.objective) <= 1e-3 * sol.objective


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the spec's instance (n = 40, β = 1e-3, all 1561 patterns), default ρ = 0.01: "
                   "measured gap after 500 iterations 8.6e-2 / 1.8e-1 / 1.8e-1 (seeds 0/1/2; 4.3e-2 / 8.5e-2 / 4.9e-2 "
                   "at ρ = 0.1), none within 1e-3 by iteration 3000 (seed 0, ρ = 0.1: from iteration 12314), residual "
                   "ratios 0.81-0.90 per 50 iterations: the claim does not reproduce")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_size_admm_claim_spec_beta(seed):
    x, y = cr.synthetic_data(40, 2, seed=seed)
    pats = cr.arrangement_patterns(x)
    sol = cr.solve_cvxpy(x, y, pats, 1e-3)
    _claim(x, y, pats, sol, beta=1e-3)
