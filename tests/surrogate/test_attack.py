"""Directional-attack hybrid vs cDSM vs coordinate search on trained MLP surrogates; cDSM convergence."""

from __future__ import annotations

import statistics

import pytest
import torch

from descend.surrogate.attack import CDSM, EvaluationBudget, NNProblem, make_method
from descend.surrogate.study import feasible_start
from descend.surrogate.tasks import trained_mlp_problem


def _compare(problem_seed: int, n_starts: int, budget: int) -> dict[str, list[float]]:
    prob = trained_mlp_problem(problem_seed, dim=20, white_box=True)
    out: dict[str, list[float]] = {"hybrid": [], "cdsm": [], "coordinate": []}
    for s in range(n_starts):
        x0 = feasible_start(prob, s)
        for name in out:
            tr = make_method(name, seed=s).run(prob, x0, budget)
            assert len(tr.best) == budget and tr.evals <= budget
            assert all(feasible for _, _, feasible in tr.accepted)  # every accepted point is feasible
            for x, _, _ in tr.accepted:  # ... re-checked from scratch on Φ
                _, feas = prob.objective(prob.phi(x.unsqueeze(0)))
                assert bool(feas[0])
            out[name].append(tr.best[-1])
    return out


def test_hybrid_beats_cdsm_and_coordinate_search_at_equal_budget() -> None:
    """White-box Φ: R^20 → R^3 (trained MLP), f(y) = y_0 − 0.05‖y‖², c(y) = y_1 ≤ 0; 10 starts × 150 evaluations.

    The claim is an ordering of medians, and it does not hold on every surrogate: over problem seeds 0-3 (8 starts,
    150 evaluations) the hybrid's median beat cDSM's on seeds 1, 2, 3 (3.47/3.36, 2.58/2.33, 3.05/2.83) and lost on
    seed 0 (1.88 vs 2.06); this test pins seed 3 (see benchmarks/surrogate_attack.py for all seeds)."""
    res = _compare(3, 10, 150)
    med = {k: statistics.median(v) for k, v in res.items()}
    assert med["hybrid"] > med["cdsm"], med
    assert med["hybrid"] > med["coordinate"], med


def test_cdsm_converges_to_known_local_optimum() -> None:
    """Smooth concave f(x) = −Σ w_i (x_i − a_i)² with the identity as Φ and no constraint: cDSM's incumbent ends
    within 1e-3 of a (the mesh shrinks below 1e-6 of the box width before the budget ends)."""
    a = torch.tensor([0.3, -0.7, 0.5], dtype=torch.float64)
    w = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)
    prob = NNProblem(lambda x: x, lambda y: -(w * (y - a) ** 2).sum(-1), None,
                     -2 * torch.ones(3, dtype=torch.float64), 2 * torch.ones(3, dtype=torch.float64))
    m = CDSM(seed=0)
    tr = m.run(prob, torch.zeros(3, dtype=torch.float64), 3000)
    assert float((m.x - a).norm()) < 1e-3
    assert tr.best[-1] > -1e-6
    assert min(m.deltas) < 1e-6 * 4


def test_black_box_gradient_is_forward_differences() -> None:
    prob = trained_mlp_problem(1, dim=4, white_box=False, train_steps=20)
    ev = EvaluationBudget(prob, 100)
    x = torch.zeros(4, dtype=torch.float64)
    g_fd = ev.vjp(x, lambda y: y[:, 0])
    assert ev.trace.evals == 5  # d + 1 evaluations
    xx = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(prob.phi(xx.unsqueeze(0))[0, 0], xx)
    assert torch.allclose(g_fd, g, atol=1e-5)  # forward difference, h = 1e-6: error O(h‖∇²Φ‖) + O(eps/h)


def test_infeasible_start_and_bad_method_are_rejected() -> None:
    prob = trained_mlp_problem(0, dim=4, train_steps=5, threshold=-100.0)  # nothing is feasible
    with pytest.raises(ValueError, match="x0 must be feasible"):
        CDSM().run(prob, torch.zeros(4, dtype=torch.float64), 10)
    with pytest.raises(ValueError, match="method must be one of"):
        make_method("nelder-mead")


@pytest.mark.slow
@pytest.mark.parametrize("problem_seed", [4, 5])
def test_hybrid_ordering_on_held_out_surrogates(problem_seed: int) -> None:
    """The same claim on surrogates not looked at while choosing the defaults (measured medians, 10 starts × 150:
    seed 4: 2.42 / 2.23 / 1.95, seed 5: 3.75 / 3.58 / 3.31 for hybrid / cDSM / coordinate)."""
    res = _compare(problem_seed, 10, 150)
    med = {k: statistics.median(v) for k, v in res.items()}
    assert med["hybrid"] > med["cdsm"] and med["hybrid"] > med["coordinate"], med
