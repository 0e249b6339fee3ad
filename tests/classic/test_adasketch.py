"""AdaSketch-Newton (Hong, Na, Mahoney, Kolar 2023): sketch monotonicity, CUTEst optima, constrained logistic."""

import itertools

import pytest
import torch

from descend.classic import adasketch as A


def _random_kkt(seed, n=8, m=3):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(n, n, generator=gen, dtype=torch.float64) / n**0.5
    g = torch.randn(m, n, generator=gen, dtype=torch.float64)
    k = torch.cat([torch.cat([h @ h.T + torch.eye(n, dtype=torch.float64), g.T], 1),
                   torch.cat([g, torch.zeros(m, m, dtype=torch.float64)], 1)], 0)
    return k, torch.randn(n + m, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("method", ["gaussian", "kaczmarz"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_sketch_step_leaves_the_error_non_increasing(method, seed):
    k, rhs = _random_kkt(seed)
    zstar = torch.linalg.solve(k, rhs)
    errors = []
    _, steps = A.sketch_solve(k, rhs, torch.zeros_like(rhs), method=method, threshold=0.0, max_steps=2000,
                              generator=torch.Generator().manual_seed(seed),
                              record=lambda z: errors.append(float(torch.linalg.vector_norm(z - zstar))))
    assert steps == 2000 and len(errors) == 2000
    e = torch.tensor([float(torch.linalg.vector_norm(zstar)), *errors], dtype=torch.float64)
    # a projection onto an affine set containing z*: ‖z⁺ − z*‖² = ‖z − z*‖² − ‖z⁺ − z‖²; round-off of one step
    # is ~1e-16·‖z‖·κ, far below the 1e-12 slack
    assert bool((e[1:] <= e[:-1] + 1e-12).all())
    assert e[-1] < 0.5 * e[0]  # and it actually makes progress


# problems whose sketch solves take < ~1 s on one core; the rest run in the slow step
FAST = ["HS28", "HS40", "HS48"]


@pytest.mark.parametrize("name", list(A.cutest_problems()))
def test_direct_sqp_reaches_the_published_optimum(name):
    prob = A.cutest_problems()[name]
    res = A.adasketch_newton(prob, method="direct", max_iter=200)
    assert res.status == "converged" and res.kkt[-1] <= 1e-4
    # KKT ≤ 1e-4 with a nonsingular KKT matrix ⇒ |f − f*| = O(1e-4 · ‖∇f‖) at worst; observed ≤ 1e-6
    assert abs(res.fvals[-1] - prob.fstar) < 1e-5, res.fvals[-1]
    if prob.xstar is not None:
        assert torch.allclose(res.x, prob.xstar, atol=1e-4)


@pytest.mark.parametrize("method", ["gaussian", "kaczmarz"])
@pytest.mark.parametrize("name", FAST)
def test_sketched_newton_reaches_the_published_optimum(name, method):
    prob = A.cutest_problems()[name]
    res = A.adasketch_newton(prob, method=method, max_iter=200)
    assert res.status == "converged"
    assert abs(res.fvals[-1] - prob.fstar) < 1e-5
    assert res.alpha[-1] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gaussian", "kaczmarz"])
@pytest.mark.parametrize("name", [n for n in A.cutest_problems() if n not in FAST])
def test_sketched_newton_reaches_the_published_optimum_slow(name, method):
    prob = A.cutest_problems()[name]
    res = A.adasketch_newton(prob, method=method, max_iter=500)
    assert res.status == "converged"
    assert abs(res.fvals[-1] - prob.fstar) < 1e-5


def _logistic_check(prob, method):
    # one run to KKT ≤ 1e-9; with the same seed its prefix up to the first KKT ≤ 1e-4 *is* the default-tolerance
    # run (same iterates, same random sketches), so both claims come from one run
    tight = A.adasketch_newton(prob, method=method, tol=1e-9, max_iter=200)
    assert tight.status == "converged"
    k4 = next(i for i, v in enumerate(tight.kkt) if v <= 1e-4)
    assert k4 >= 3
    assert tight.alpha[k4 - 3:k4] == [1.0, 1.0, 1.0]  # unit steps locally
    tail = tight.kkt[k4 - 3:k4 + 1]
    assert all(b < a for a, b in itertools.pairwise(tail))  # KKT ratio < 1 per iteration
    assert float(prob.c(tight.x).abs().max()) <= 1e-4  # ‖Ax − b‖∞ and |‖x‖² − 1|
    # exact-Newton SQP from the same start to KKT ≤ 1e-12: both are within ‖K⁻¹‖·KKT ≈ 1e-8 of the KKT point
    ref = A.adasketch_newton(prob, method="direct", tol=1e-12, max_iter=200)
    assert ref.status == "converged"
    assert float((tight.x - ref.x).abs().max()) <= 1e-6


def test_constrained_logistic_small_kaczmarz():
    # reduced size (N=200, d=8, 4 linear rows + the sphere) so the sketch solves stay short
    _logistic_check(A.constrained_logistic(200, 8, 4, seed=0), "kaczmarz")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gaussian", "kaczmarz"])
def test_constrained_logistic_full(method):
    _logistic_check(A.constrained_logistic(500, 20, 10, seed=0), method)


def test_bad_arguments_are_rejected():
    prob = A.cutest_problems()["HS28"]
    with pytest.raises(ValueError, match="method must be"):
        A.adasketch_newton(prob, method="cg")
    with pytest.raises(ValueError, match="beta must be in"):
        A.adasketch_newton(prob, beta=0.7)
