"""The discounted claim of Fatkhullin et al. (2023) on the exact tabular MDP (benchmarks/rl_tabular.py's setting).

|S|=5, |A|=3, Dirichlet(1) transitions, U[0,1] rewards, γ=0.9, H=50 (MDP seed 0); one trajectory per sample, a
budget of 2000 trajectories (N-HARPG: 1000 iterations of 2), step size γ_t = 0.3·(2/(t+2))^{1/2} for every
method (the schedule chosen on 3 seeds; the paper's recalled 1/t form reaches only gap ≈ 0.10).  Gap =
(J* − J(θ_T))/|J*| with the exact J.  Measured, 10 seeds (mean ± 95 % t-interval):
N-PG-IGT 0.049 ± 0.031 (≤ 0.05 on 5/10 seeds), N-HARPG 0.118 ± 0.056 (1/10), normalized PG (GPOMDP)
0.147 ± 0.016, normalized REINFORCE 0.213 ± 0.025.  So: both VR methods beat normalized REINFORCE (intervals
disjoint); N-PG-IGT reaches 0.05 on the mean only, N-HARPG does not reach it (strict xfail below).

Why N-HARPG misses it (``python benchmarks/rl_tabular_stall.py``): its runs end nearly deterministic on a suboptimal
action in some state (min_s π(a*|s) ≤ 6e-4 on 9/10 seeds), where the softmax policy's Fisher information vanishes —
outside the paper's Fisher-non-degenerate assumption.  Not the budget: 4000 trajectories leave seeds 1–3 at 0.101 →
0.102; not the schedule's reach: exact-gradient normalized ascent with the same γ_t reaches gap < 1e-4 in 1000
iterations; the one-trajectory Hessian term is part of it: made exact, the 10 seeds' mean goes 0.118 → 0.094
(5/10 ≤ 0.05), still above the target.  The authors' code's own step form γ_t = 2/(t+2) is worse (0.176 on seeds
1–3), and so is its t-count (η_t = 2/(t+3) here: 0.199 over 10 seeds).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "rl_tabular_bench", Path(__file__).resolve().parents[2] / "benchmarks" / "rl_tabular.py")
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
sys.modules["rl_tabular_bench"] = bench
_spec.loader.exec_module(bench)


def _gaps(method: str, seeds: range) -> list[float]:
    return list(bench.final_gaps(method, seeds, budget=2000, lr=0.3, lr_power=0.5))


def test_igt_beats_normalized_reinforce_reduced() -> None:
    """One seed at the full budget: N-PG-IGT's final gap is well below normalized REINFORCE's."""
    igt = _gaps("n_pg_igt", range(1, 2))[0]
    nr = _gaps("normalized_reinforce", range(1, 2))[0]
    assert igt < 0.5 * nr, (igt, nr)


@pytest.mark.slow
def test_vr_methods_beat_normalized_reinforce_full() -> None:
    """10 seeds: each VR method's 95 % interval lies below normalized REINFORCE's; N-PG-IGT's mean gap ≤ 0.05."""
    seeds = range(1, 11)
    nr_mean, nr_hw = bench.mean_ci(_gaps("normalized_reinforce", seeds))
    igt = _gaps("n_pg_igt", seeds)
    for method, gaps in (("n_pg_igt", igt), ("n_harpg", _gaps("n_harpg", seeds))):
        mean, hw = bench.mean_ci(gaps)
        assert mean + hw < nr_mean - nr_hw, (method, mean, hw, nr_mean, nr_hw)
    assert bench.mean_ci(igt)[0] <= 0.05


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="does not reproduce: N-HARPG's mean gap after 2000 trajectories is "
                                       "0.118 ± 0.056 over 10 seeds (≤ 0.05 on 1/10); the runs stall at "
                                       "near-deterministic suboptimal policies (see the module docstring)")
def test_nharpg_reaches_five_percent_full() -> None:
    assert bench.mean_ci(_gaps("n_harpg", range(1, 11)))[0] <= 0.05
