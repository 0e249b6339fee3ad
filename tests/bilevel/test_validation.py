"""Invalid budgets, shape mismatches and non-finite objectives give clear ValueErrors naming the argument."""

from __future__ import annotations

import pytest
import torch

from descend.bilevel import (
    BOME,
    F2SA,
    SABA,
    AmIGO,
    BilevelProblem,
    LancBiO,
    QuadraticProblem,
    StocBiO,
    hypergradient,
)

DT = torch.float64


@pytest.fixture(scope="module")
def quad():
    return QuadraticProblem(4, 3, rank=1, seed=0)


@pytest.mark.parametrize("kwargs, name", [
    ({"method": "magic"}, "method"),
    ({"steps": -1}, "steps"),
    ({"method": "lanczos", "steps": 0}, "steps"),
    ({"method": "itd", "steps": 5, "truncate": 6}, "truncate"),
    ({"method": "neumann", "step_size": 0.0}, "step_size"),
    ({"inner_steps": 1.5}, "inner_steps"),
    ({"method": "nsid", "eta": 1.5}, "eta"),
    ({"v0": torch.zeros(5, dtype=DT)}, "v0"),
    ({"tol": -1.0}, "tol"),
])
def test_hypergradient_invalid_arguments(quad, kwargs, name):
    x, y = quad.x0, quad.y0
    with pytest.raises(ValueError, match=name):
        hypergradient(quad, x, y, **kwargs)


def test_shape_and_dtype_mismatch(quad):
    with pytest.raises(ValueError, match=r"x must have shape \(4,\)"):
        hypergradient(quad, torch.zeros(5, dtype=DT), quad.y0)
    with pytest.raises(ValueError, match="y must have dtype"):
        hypergradient(quad, quad.x0, quad.y0.float())
    with pytest.raises(ValueError, match="y0 must have shape"):
        LancBiO(quad, y0=torch.zeros(4, dtype=DT))
    with pytest.raises(ValueError, match="v0 must have shape"):
        AmIGO(quad, v0=torch.zeros(4, dtype=DT))


@pytest.mark.parametrize("cls, kwargs, name", [
    (LancBiO, {"lr_outer": 0.0}, "lr_outer"),
    (LancBiO, {"inner_steps": -1}, "inner_steps"),
    (LancBiO, {"subspace_dim": 3, "max_subspace_dim": 2}, "max_subspace_dim"),
    (LancBiO, {"growth": 0.5}, "growth"),
    (StocBiO, {"hessian_steps": -2}, "hessian_steps"),
    (AmIGO, {"v_solver": "lu"}, "v_solver"),
    (AmIGO, {"inner_batch_size": 0}, "inner_batch_size"),
    (BOME, {"phi": "other"}, "phi"),
    (BOME, {"eta": float("nan")}, "eta"),
    (F2SA, {"penalty": 10.0, "max_penalty": 1.0}, "max_penalty"),
    (SABA, {"lr_inner": -0.1}, "lr_inner"),
])
def test_solver_invalid_arguments(quad, cls, kwargs, name):
    with pytest.raises(ValueError, match=name):
        cls(quad, **kwargs)


def test_invalid_run_budget(quad):
    s = LancBiO(quad)
    with pytest.raises(ValueError, match="max_iter"):
        s.run(-1)
    with pytest.raises(ValueError, match="eval_every"):
        s.run(3, eval_every=0)
    with pytest.raises(ValueError, match="max_time"):
        s.run(3, max_time=0.0)


def test_non_finite_objective_is_reported():
    p = BilevelProblem(outer=lambda x, y: (x * y).sum() / 0.0 * 0.0, inner=lambda x, y: ((y - x) ** 2).sum(),
                       x0=torch.ones(2, dtype=DT), y0=torch.ones(2, dtype=DT))
    with pytest.raises(ValueError, match="outer objective"):
        hypergradient(p, p.x0, p.y0)
    with pytest.raises(ValueError, match="not finite"):
        AmIGO(p).step()


def test_divergence_is_reported(quad):
    with pytest.raises(ValueError, match=r"non-finite|not finite"):
        AmIGO(quad, lr_inner=10.0, lr_outer=10.0).run(200)


def test_problem_validation():
    with pytest.raises(ValueError, match="outer"):
        BilevelProblem(outer=None, inner=lambda x, y: y.sum(), x0=torch.zeros(1), y0=torch.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inner_batch"):
        BilevelProblem(outer=lambda x, y: y.sum(), inner=lambda x, y: y.sum(), x0=torch.zeros(1),
                       y0=torch.zeros(1), n_inner=5)
    with pytest.raises(ValueError, match="condition"):
        QuadraticProblem(3, 3, condition=0.5)
