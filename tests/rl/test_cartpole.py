"""CartPole-v1 (the issue's check): N-PG-IGT at descend's CartPole defaults solves it within 1000 trajectories.

"Solved": the mean of the last 10 evaluation windows (20 trajectories each, the CLI's default for this budget)
is ≥ 475.  Measured with ``descend rl run --env CartPole-v1 --seeds 3 --budget 1000``: N-PG-IGT solved seeds
0, 1, 2 (final returns 496, 500, 500; solved after 460, 440, 580 trajectories), GPOMDP too (after 540, 580, 640),
N-HARPG none (final returns 254–286).  The test asserts the claim — most of the three seeds — rather than every
seed, since a float64 rounding difference on another CPU changes the sampled episodes of a chaotic learning run.
"""

from __future__ import annotations

import pytest

from descend.rl.study import ENVS, run_curve, summarize


@pytest.mark.slow
def test_n_pg_igt_solves_cartpole_on_most_seeds() -> None:
    pytest.importorskip("gymnasium")
    solved = []
    for seed in (0, 1, 2):
        curve = run_curve("CartPole-v1", "n_pg_igt", seed=seed, budget=1000)
        s = summarize(curve, ENVS["CartPole-v1"].solved)
        solved.append((seed, round(s["final_return"], 1), s["solved_at"]))
    assert sum(final >= 475 for _, final, _ in solved) >= 2, solved
