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
    Composite,
    OpenProblem,
    compose,
    consistency_constraints,
    distributed_gd,
    dual_decomposition,
)

from ._spawn import spawn

DT = torch.float64
P = [[2.1154, -0.3038, 0.368, -1.5728, -1.203], [-0.3038, 1.5697, 1.0226, 0.159, -0.946],
     [0.368, 1.0226, 1.847, -0.4916, -1.2668], [-1.5728, 0.159, -0.4916, 2.2192, 1.5315],
     [-1.203, -0.946, -1.2668, 1.5315, 1.9281]]
Q = [[0.2456, 0.3564, -0.0088], [0.3564, 0.5912, -0.0914], [-0.0088, -0.0914, 0.8774]]
R = [[2.0546, -1.333, -0.5263, 0.3189], [-1.333, 1.0481, -0.0211, 0.2462], [-0.5263, -0.0211, 0.951, -0.7813],
     [0.3189, 0.2462, -0.7813, 1.5813]]
a = [-0.26, 0.22, 0.09, 0.19, -0.96]
b = [-0.72, 0.12, 0.41]
c = [0.55, 0.51, 0.6, -0.61]


def _quadratic(M: Any, v: Any) -> OpenProblem:
    Mt, vt = torch.tensor(M, dtype=DT), torch.tensor(v, dtype=DT)
    return OpenProblem(lambda x: x @ Mt @ x + vt @ x, len(v), ())


def readme_instance() -> tuple[Composite, list[torch.Tensor], list[torch.Tensor]]:
    """AlgebraicOptimization.jl's README: p1 exposes local vars 2, 4 (1-based) as (u, x); p2 all as (u, w, y);
    p3 vars 1, 3, 4 as (u, w, z); junctions u, w, x, y, z = 0..4."""
    mats, vecs = [P, Q, R], [a, b, c]
    ports = [(1, 3), (0, 1, 2), (0, 2, 3)]
    problems = [OpenProblem(_quadratic(M, v).objective, len(v), pt) for M, v, pt in zip(mats, vecs, ports, strict=True)]
    comp = compose(problems, [(0, 2), (0, 1, 3), (0, 1, 4)], 5)
    return comp, [torch.tensor(M, dtype=DT) for M in mats], [torch.tensor(v, dtype=DT) for v in vecs]


def random_instance(n_problems: int = 6, seed: int = 0) -> tuple[Composite, list[torch.Tensor], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    n_j = 8
    problems, mats, vecs, wiring = [], [], [], []  # junctions relabelled below so that every one is used
    for _ in range(n_problems):
        n = int(torch.randint(3, 7, (1,), generator=g))
        k = int(torch.randint(1, min(n, 4) + 1, (1,), generator=g))
        B = torch.randn(n, n, generator=g, dtype=DT)
        M = B @ B.T / n + 0.5 * torch.eye(n, dtype=DT)
        v = torch.randn(n, generator=g, dtype=DT)
        ports = tuple(int(i) for i in torch.randperm(n, generator=g)[:k])
        junctions = tuple(int(j) for j in torch.randperm(n_j, generator=g)[:k])
        problems.append(OpenProblem(lambda x, M=M, v=v: x @ M @ x + v @ x, n, ports))
        mats.append(M)
        vecs.append(v)
        wiring.append(junctions)
    used = sorted({j for w in wiring for j in w})
    relabel = {j: k for k, j in enumerate(used)}
    return compose(problems, [tuple(relabel[j] for j in w) for w in wiring], len(used)), mats, vecs


def assembled(comp: Composite, mats: list[torch.Tensor], vecs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    Ptot = torch.zeros(comp.n_vars, comp.n_vars, dtype=DT)
    qtot = torch.zeros(comp.n_vars, dtype=DT)
    for leg, M, v in zip(comp.legs, mats, vecs, strict=True):
        idx = torch.tensor(leg)
        Ptot.index_put_((idx[:, None], idx[None, :]), M, accumulate=True)
        qtot.index_add_(0, idx, v)
    return Ptot, qtot


def _run(comp: Composite, mats: list[torch.Tensor], vecs: list[torch.Tensor], comm: Any, workers: list[int],
         readme_steps: int | None = None) -> dict[str, Any]:
    """``readme_steps``: the README's run (γ = 0.1, that many steps); else γ = 2/(λ_min + λ_max) of ∇²F and
    as many steps as the contraction needs to bring ‖x0 − x*‖ below 1e-10."""
    Ptot, qtot = assembled(comp, mats, vecs)
    lam = torch.linalg.eigvalsh(2 * Ptot)
    gamma = 0.1 if readme_steps is not None else 2.0 / float(lam.min() + lam.max())
    rho = max(abs(1 - gamma * float(lam.min())), abs(1 - gamma * float(lam.max())))
    x0 = torch.full((comp.n_vars,), 100.0, dtype=DT)
    xstar = torch.linalg.solve(2 * Ptot, -qtot)
    steps = (readme_steps if readme_steps is not None
             else math.ceil(math.log(1e-10 / float((x0 - xstar).norm())) / math.log(rho)))
    ref = x0.clone()
    worst = [0.0]

    def check(t: int, x: torch.Tensor) -> None:
        nonlocal ref
        r = ref.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(comp.objective(r), r)
        ref = (ref - gamma * grad).detach()
        worst[0] = max(worst[0], float((x - ref).abs().max() / ref.abs().max()))

    local = distributed_gd(comp, x0, gamma, steps, comm, workers, callback=check)
    err = max(float((local[i] - comp.pullback(i, xstar)).abs().max()) for i in workers)
    return {"worst_step_diff": worst[0], "minimiser_err": err, "steps": steps, "rho": rho,
            "rounds": comm.rounds, "lam_min": float(lam.min())}


def _three_ranks(rank: int, world: int) -> dict[str, Any]:
    comp, mats, vecs = readme_instance()
    return _run(comp, mats, vecs, TorchDistributed(), [rank], readme_steps=100)


def test_readme_instance_on_three_gloo_ranks() -> None:
    """The README's run (x0 = 100·1, γ = 0.1, 100 steps) on three ranks, one subproblem each."""
    results = spawn(_three_ranks, 3)
    for r in results:
        assert r["lam_min"] > 0  # P_tot is positive definite: the minimiser exists
        assert r["worst_step_diff"] <= 1e-12
        assert r["rounds"] == r["steps"] == 100  # one all-reduce per iteration


def test_readme_instance_in_process_matches() -> None:
    comp, mats, vecs = readme_instance()
    assert comp.n_vars == 9  # 5 junctions + 3 hidden variables of p1 + 1 of p3
    r = _run(comp, mats, vecs, InProcess(), [0, 1, 2])
    assert r["worst_step_diff"] <= 1e-12 and r["minimiser_err"] <= 1e-8


def test_random_instance() -> None:
    comp, mats, vecs = random_instance()
    r = _run(comp, mats, vecs, InProcess(), list(range(len(comp.problems))))
    assert r["worst_step_diff"] <= 1e-12 and r["minimiser_err"] <= 1e-8


def test_wrong_wiring_is_refused() -> None:
    p = OpenProblem(lambda x: x @ x, 2, (0,))
    with pytest.raises(ValueError, match="wiring"):
        compose([p], [(5,)], 2)


def test_dual_decomposition_equality_constrained() -> None:
    """Private copies + the diagram's consistency rows + one user constraint (sum of the exposed x, y, z = 1);
    dual ascent reaches the KKT solution of the constrained composite to 1e-8."""
    comp, mats, vecs = random_instance(n_problems=4, seed=3)
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
