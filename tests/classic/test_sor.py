"""Learning to relax (Khodak et al., ICLR 2024): SOR, Young's ω*, Tsallis-INF and ChebCB over shifted Laplacians."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from descend.classic import sor


def test_solve_counts_and_stencil_agree_with_dense_sor():
    shifts, rhs = sor.sample_instances(8, "high", seed=3)
    omegas = np.array([1.0, 1.3, 1.5, 1.7, 1.8, 1.9, 1.95, 1.2])
    eye = torch.eye(100, dtype=torch.float64)
    base = sor.laplacian_2d(10)
    cases = list(zip(shifts, rhs, omegas, strict=True))
    dense = [sor.sor_solve(base + c * eye, torch.from_numpy(b), float(w)) for c, b, w in cases]
    recursion = [sor.sor_iterations(base + c * eye, b, float(w)) for c, b, w in cases]
    stencil = sor.stencil_sor_costs(10, shifts, rhs, omegas)
    # three evaluations of the same iteration in different operation orders: their residuals differ at round-off
    # (≪ the 1e-8 threshold), so the counts agree unless a residual lands within round-off of the threshold
    assert [r.iterations for r in dense] == recursion == stencil.tolist()
    assert all(r.converged and r.residuals[-1] < 1e-8 <= r.residuals[-2] for r in dense)


def test_stencil_sweep_equals_the_dense_iteration_to_roundoff():
    c, omega, m = 0.1, 1.6, 6
    a = sor.laplacian_2d(m, shift=c)
    b = torch.randn(m * m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    res = sor.sor_solve(a, b, omega, tol=1e-12, max_iter=40)
    # a tolerance just above the dense run's k-th residual must stop the stencil run after exactly k sweeps
    for k in (1, 3, 7):
        tol = res.residuals[k] * 1.0001
        cost = sor.stencil_sor_costs(m, np.array([c]), b.numpy()[None], np.array([omega]), tol=tol)
        assert int(cost[0]) == k


def test_young_omega_from_the_numerical_jacobi_radius():
    for c in (-0.15, 0.0, 0.3):
        a = sor.laplacian_2d(10, shift=c)
        beta = 4.0 * math.cos(math.pi / 11) / (4.0 + c)
        assert sor.jacobi_spectral_radius(a) == pytest.approx(beta, rel=1e-12)  # eigvalsh, O(ε κ) accurate
        assert sor.optimal_omega(a) == pytest.approx(1 + (beta / (1 + math.sqrt(1 - beta**2))) ** 2, rel=1e-12)


def test_tsallis_normaliser_is_a_distribution_and_safe_where_plain_newton_overshoots():
    learner = sor.TsallisINF(seed=0)
    rng = np.random.default_rng(0)
    for t in range(1, 400):
        learner.k = np.abs(rng.standard_normal(20)) * t * 50  # widely spread importance-weighted losses
        learner.scale = 1.0 + t
        learner.t = t
        eta = 2 / math.sqrt(t)
        lo = float((learner.k / learner.scale).min())
        p = learner.distribution()
        assert abs(p.sum() - 1) < 1e-12 and (p > 0).all()
        x_impl = (learner.k / learner.scale) - 2 / (eta * np.sqrt(p))  # invert p_i = 4 (η(L_i − x))⁻²
        assert np.allclose(x_impl, x_impl[0], rtol=0, atol=1e-8 * (1 + abs(lo)))
        assert x_impl[0] < lo


@pytest.mark.parametrize("regime", ["high", "low"])
def test_tsallis_inf_matches_the_best_fixed_omega(regime):
    # T = 3000 as in the spec's run (at T = 2000 the learner was still 19 % above the best ω on "high"); reduced:
    # the fixed-ω baselines are costed on every 5th of the last 1000 instances and the learner is compared on
    # exactly those 200 (paired).  Every instance, and ChebCB, in the slow test.
    study = sor.run_relaxation_study(3000, regime, seed=0, learners=("tsallis",), window=1000, stride=5)
    best, best_mean = study.best_fixed()
    learned = study.paired_mean("tsallis")
    assert learned <= 1.10 * best_mean, (learned, best_mean, sor.GRID[best])
    assert all(abs(i - best) <= 1 for i in study.most_played("tsallis", 2))
    assert study.oracle_costs is not None and study.oracle_costs.mean() <= best_mean * 1.02


@pytest.mark.slow
@pytest.mark.parametrize("regime", ["high", "low"])
def test_full_size_tsallis_and_chebcb(regime):
    study = sor.run_relaxation_study(3000, regime, seed=0, learners=("tsallis", "chebcb"), window=1000)
    best, best_mean = study.best_fixed()
    assert study.window_mean("tsallis") <= 1.10 * best_mean
    assert all(abs(i - best) <= 1 for i in study.most_played("tsallis", 2))
    assert study.window_mean("chebcb") <= 1.10 * best_mean


def test_bad_arguments():
    a = sor.laplacian_2d(3)
    b = torch.ones(9, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"^omega must be in \(0\.0, 2\.0\), got 2\.0$"):
        sor.sor_solve(a, b, 2.0)
    with pytest.raises(ValueError, match=r"^regime must be one of \(.*\), got 'medium'$"):
        sor.sample_instances(3, "medium")
    with pytest.raises(ValueError, match=r"^window must be an integer in \[1, 10\], got 20$"):
        sor.run_relaxation_study(10, window=20)
