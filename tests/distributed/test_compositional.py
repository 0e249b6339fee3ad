"""Compositional gradient descent (issue 14, item 4; Hanks–Klawonn–Fairbanks).

The distributed iterate (workers hold only their subproblem; messages are junction sums) equals autograd GD on
the composite F at every iteration to 1e-12 relative: both compute x − γ∇F(x) with the same products, the
distributed one summing the per-problem gradients in another order — a few ulps per iteration, and a
contraction (γ < 2/L) does not amplify them.  Converged iterates equal the closed-form minimiser
−½ P_tot⁻¹ q_tot to 1e-8 (run until the contraction factor^t · ‖x0 − x*‖ < 1e-10; cond(P_tot) ≈ 1e2 keeps the
solve's own error ~1e-14).  Three gloo ranks host the README instance's three subproblems; the random
instance and the dual decomposition run over the in-process communicator (the same code).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from descend.distributed._comm import InProcess, TorchDistributed
from descend.distributed.compositional import (
    OpenProblem,
    compose,
    consistency_constraints,
    dual_decomposition,
)
from descend.distributed.examples import assembled, random_composition, readme_composition, run_against_autograd

from ._spawn import spawn

DT = torch.float64


def _three_ranks(rank: int, world: int) -> dict[str, Any]:
    comp, mats, vecs = readme_composition()
    return run_against_autograd(comp, mats, vecs, TorchDistributed(), [rank], readme_steps=100)


def test_readme_instance_on_three_gloo_ranks() -> None:
    """The README's run (x0 = 100·1, γ = 0.1, 100 steps) on three ranks, one subproblem each."""
    results = spawn(_three_ranks, 3)
    for r in results:
        assert r["lam_min"] > 0  # P_tot is positive definite: the minimiser exists
        assert r["worst_step_diff"] <= 1e-12
        assert r["rounds"] == r["steps"] == 100  # one all-reduce per iteration


def test_readme_instance_in_process_matches() -> None:
    comp, mats, vecs = readme_composition()
    assert comp.n_vars == 9  # 5 junctions + 3 hidden variables of p1 + 1 of p3
    r = run_against_autograd(comp, mats, vecs, InProcess(), [0, 1, 2])
    assert r["worst_step_diff"] <= 1e-12 and r["minimiser_err"] <= 1e-8


def test_random_composition() -> None:
    comp, mats, vecs = random_composition()
    r = run_against_autograd(comp, mats, vecs, InProcess(), list(range(len(comp.problems))))
    assert r["worst_step_diff"] <= 1e-12 and r["minimiser_err"] <= 1e-8


def test_wrong_wiring_is_refused() -> None:
    p = OpenProblem(lambda x: x @ x, 2, (0,))
    with pytest.raises(ValueError, match="wiring"):
        compose([p], [(5,)], 2)


def test_dual_decomposition_equality_constrained() -> None:
    """Private copies + the diagram's consistency rows + one user constraint (sum of the exposed x, y, z = 1);
    dual ascent reaches the KKT solution of the constrained composite to 1e-8."""
    comp, mats, vecs = random_composition(n_problems=4, seed=3)
    A, bvec = consistency_constraints(comp)
    Ptot, qtot = assembled(comp, mats, vecs)
    # user constraint: the composite variables 0 and 1 (two junctions) sum to 1, on the first copies
    first: dict[int, tuple[int, int]] = {}
    for i, leg in enumerate(comp.legs):
        for s, n in enumerate(leg):
            first.setdefault(n, (i, s))
    A = [torch.cat([Ai, torch.zeros(1, Ai.shape[1], dtype=DT)]) for Ai in A]
    crow = torch.zeros(comp.n_vars, dtype=DT)
    for n in (0, 1):
        i, s = first[n]
        A[i][-1, s] = 1.0
        crow[n] = 1.0
    bvec = torch.cat([bvec, torch.ones(1, dtype=DT)])
    problems = [OpenProblem(p.objective, p.n_vars, p.ports) for p in comp.problems]
    # dual curvature: Σ A_i (2 M_i)^{-1} A_iᵀ; α = 1/λ_max, contraction 1 − λ_min/λ_max
    Hd = sum(Ai @ torch.linalg.solve(2 * M, Ai.T) for Ai, M in zip(A, mats, strict=True))
    ev = torch.linalg.eigvalsh(Hd)
    assert float(ev.min()) > 0  # constraints independent: the dual is strongly concave
    alpha = 1.0 / float(ev.max())
    steps = math.ceil(math.log(1e-12) / math.log(1 - float(ev.min()) / float(ev.max())))
    y, _ = dual_decomposition(problems, A, bvec, alpha, steps, InProcess(), list(range(len(problems))))
    K = torch.zeros(comp.n_vars + 1, comp.n_vars + 1, dtype=DT)
    K[:-1, :-1], K[:-1, -1], K[-1, :-1] = 2 * Ptot, crow, crow
    sol = torch.linalg.solve(K, torch.cat([-qtot, torch.ones(1, dtype=DT)]))[:-1]
    for i, leg in enumerate(comp.legs):
        assert float((y[i] - sol[list(leg)]).abs().max()) <= 1e-8
