"""Hutchinson and Hutch++ against the dense trace (float64 Hessian of a small MLP).

Statistical assertions use many fixed seeds so they are deterministic here and sound anywhere: a mean of
``S`` independent estimates is within 4 standard errors of its expectation except with probability ~6e-5.
"""

from __future__ import annotations

import pytest
import torch

from descend.curvature import DenseOperator, HVPOperator, trace

from .conftest import Problem

SEEDS = range(100)


def _errors(op: DenseOperator, method: str, budget: int, truth: float) -> torch.Tensor:
    return torch.tensor([trace(op, method, budget, seed=s).estimate - truth for s in SEEDS], dtype=torch.float64)


def test_exact_and_wiring(problem: Problem) -> None:
    op = HVPOperator(problem.model, problem.loss_fn, problem.batch)
    truth = problem.hessian.trace().item()
    ex = trace(op, "exact")
    assert ex.estimate == pytest.approx(truth, rel=1e-12, abs=1e-12) and ex.n_hvp == op.dim
    for method, budget in (("hutchinson", 7), ("hutch++", 10)):
        r = trace(op, method, budget, seed=1)
        assert r.n_hvp == budget
        # same probes on the dense matrix give the same estimate (the operator path is wired correctly)
        d = trace(DenseOperator(problem.hessian), method, budget, seed=1)
        assert r.estimate == pytest.approx(d.estimate, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_unbiased(problem: Problem, method: str) -> None:
    op = DenseOperator(problem.hessian)
    err = _errors(op, method, 12, problem.hessian.trace().item())
    assert abs(err.mean().item()) <= 4 * err.std().item() / len(SEEDS) ** 0.5


def test_hutchinson_std_error_is_calibrated(problem: Problem) -> None:
    # |error| <= 2 se should hold ~95 % of the time; a wrong se (off by sqrt(m), say) gives ~30 % or ~100 %.
    op = DenseOperator(problem.hessian)
    truth = problem.hessian.trace().item()
    hits = [abs(r.estimate - truth) <= 2 * r.std_error for r in (trace(op, "hutchinson", 40, seed=s) for s in SEEDS)]
    assert 0.85 <= sum(hits) / len(hits) <= 1.0


def test_hutchpp_error_falls_faster_than_hutchinson_rate(problem: Problem) -> None:
    """Meyer et al. (2021), Theorem 1: Hutch++'s error falls like 1/m on spectra that decay (Hessians do),
    Hutchinson's like 1/sqrt(m).  Quadrupling the budget must therefore cut Hutch++'s mean |error| by more
    than the factor 1/2 that Hutchinson's rate gives (measured: ~0.16 at m = 12 -> 48 on this Hessian); the
    mean of 100 seeds has a relative standard error ~7 %, far from the 0.5 threshold."""
    op = DenseOperator(problem.hessian)
    truth = problem.hessian.trace().item()
    small = _errors(op, "hutch++", 12, truth).abs().mean().item()
    large = _errors(op, "hutch++", 48, truth).abs().mean().item()
    hutch_large = _errors(op, "hutchinson", 48, truth).abs().mean().item()
    assert large < 0.5 * small
    assert large < hutch_large  # and at budget 48 beats plain Hutchinson


def test_bad_arguments(problem: Problem) -> None:
    op = DenseOperator(problem.hessian)
    with pytest.raises(ValueError, match=r"^budget \(for hutch\+\+\) must be an integer in \[3, inf\], got 2$"):
        trace(op, "hutch++", 2)
    with pytest.raises(ValueError, match="method"):
        trace(op, "lucky", 10)
    with pytest.raises(ValueError, match="distribution"):
        trace(op, "hutchinson", 10, distribution="uniform")
