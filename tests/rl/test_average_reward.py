"""Average reward (Ganesh, Mondal, Aggarwal 2024) on a random ergodic MDP with exact ρ(θ) = d_πᵀ r_π.

* The epoch-based gradient estimate (Bai et al. 2024) is consistent with the exact ∇ρ: the mean over epochs lies
  within 4 standard errors (measured from the epochs) of autograd through the stationary-distribution solve.
  The estimator is biased by O(mixing^N) (window N): the MDP mixes in a few steps, so at N = 10 that bias is far
  below the standard error here.
* The claim: cumulative regret's log–log slope over T ∈ [10³, 10⁵] ≤ 0.75. Measured (seeds 0–2, this MDP, H = 200, N
  = 10, one curve point per iteration; ``descend rl run --env tabular-average --methods avg_igt --seeds 3 --budget
  500 --eval-every 1``, ``avg_hessian`` with ``--eval-every 2``): IGT at the default step γ_k = 2/(k+2): 0.792,
  0.829, 0.743 (mean 0.788: does **not** reproduce, strict xfail below); Hessian-based at the default: 0.676, 1.003,
  0.909; at ``--lr 2`` (γ_0 = 2): 0.642, 0.769, 0.748 (mean 0.720 ≤ 0.75: the slow test below). The paper's own
  schedules could not be read (only its abstract and introduction are stored offline), so these schedules stay ours:
  see descend.rl.average_reward and docs/families/rl.md. Its published version states Õ(T^{2/3}) for IGT (v1:
  Õ(T^{3/5})); one log factor, T^{2/3} log T, fitted on the same grid (one point per iteration, T ≥ 10³), has slope
  0.769. ``benchmarks/rl_average_sweep.py`` (seeds 10–14) found no step or momentum schedule better than the default
  (mean 0.765).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from descend.cli import app
from descend.results import ResultStore
from descend.rl import AverageRewardHessianPG, AverageRewardIGT, TabularMDP, TabularSoftmaxPolicy


def _mdp() -> TabularMDP:
    return TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0)


def test_epoch_gradient_estimate_is_consistent_with_exact_gradient() -> None:
    mdp = _mdp()
    policy = TabularSoftmaxPolicy(5, 2)
    alg = AverageRewardIGT(policy, mdp, epoch_length=400, window=10, seed=0)
    theta = 0.5 * torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    alg.flat.set(theta)
    exact = alg.flat.grad(mdp.average_reward(policy))
    omegas = torch.stack([alg._omega(theta) for _ in range(150)])
    err = (omegas.mean(0) - exact).norm()
    se = (omegas.std(0) / omegas.shape[0] ** 0.5).norm()
    assert err <= 4 * se, (float(err), float(se))
    assert alg.steps == 150 * 400


def test_regret_is_exact_bookkeeping_and_methods_learn() -> None:
    """Regret = Σ_epochs H (ρ* − ρ(θ_k)); after 2·10⁴ steps both methods play better than the uniform policy."""
    mdp = _mdp()
    with torch.no_grad():
        uniform_gap = mdp.optimal_average_reward() - float(mdp.average_reward(TabularSoftmaxPolicy(5, 2)))
    for cls in (AverageRewardIGT, AverageRewardHessianPG):
        alg = cls(TabularSoftmaxPolicy(5, 2), mdp, seed=0)
        curve = alg.run(20_000)
        assert curve[-1][0] == alg.steps >= 20_000
        with torch.no_grad():
            last_gap = alg.optimum - float(mdp.average_reward(alg.policy))
        assert 0.0 <= last_gap < uniform_gap, (cls.name, last_gap, uniform_gap)
        assert all(b[1] >= a[1] for a, b in itertools.pairwise(curve))   # regret is non-decreasing


def regret_slope(cls: type, seed: int, T: int = 100_000) -> float:
    alg = cls(TabularSoftmaxPolicy(5, 2), _mdp(), seed=seed)
    curve = alg.run(T)
    x = np.array([c[0] for c in curve], dtype=float)
    y = np.array([c[1] for c in curve], dtype=float)
    sel = x >= 1e3
    return float(np.polyfit(np.log(x[sel]), np.log(y[sel]), 1)[0])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="does not reproduce: IGT's regret slopes over [1e3, 1e5] are 0.792, 0.829, "
                                       "0.743 (seeds 0-2, mean 0.788 > 0.75) on this MDP at the default schedules; "
                                       "the paper's schedules could not be read to check them")
def test_igt_regret_slope_full() -> None:
    slopes = [regret_slope(AverageRewardIGT, s) for s in (0, 1, 2)]
    assert np.mean(slopes) <= 0.75, slopes


@pytest.mark.slow
def test_hessian_regret_slope_full(tmp_path: Path) -> None:
    """Hessian-based VR-PG (our Hessian term, see descend.rl.average_reward) at γ_0 = 2, through the CLI's
    ``--lr 2``: mean of 3 seeds' stored slopes (one curve point per iteration, as :func:`regret_slope` above)."""
    db = tmp_path / "avg.db"
    res = CliRunner().invoke(app, ["rl", "run", "--env", "tabular-average", "--methods", "avg_hessian",
                                   "--seeds", "3", "--budget", "500", "--eval-every", "2", "--lr", "2",
                                   "--storage", str(db), "--quiet"])
    assert res.exit_code == 0, res.output
    recs = ResultStore(db).records("rl", study="tabular-average")
    assert len(recs) == 3 and all(r.setting["defaults"]["lr"] == 2.0 for r in recs)
    assert all(r.curve["env_steps"][-1] >= 100_000 for r in recs)
    slopes = [r.summary["regret_slope"] for r in recs]
    assert np.mean(slopes) <= 0.75, slopes
