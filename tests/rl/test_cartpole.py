"""CartPole-v1 (the issue's check): the variance-reduced methods at descend's CartPole defaults solve it within a
stated trajectory budget on most seeds — N-PG-IGT within 1000 trajectories, N-HARPG within 3000.

"Solved": the mean of the last 10 evaluation windows (20 trajectories each) is ≥ 475.  Measured with
``descend rl run --env CartPole-v1 --seeds 3 --budget 1000``: N-PG-IGT solved seeds 0, 1, 2 (final returns 496,
500, 500; solved after 460, 440, 580 trajectories), GPOMDP too (after 540, 580, 640), N-HARPG none (final returns
254–286, still rising).  With ``--methods n_harpg --budget 3000 --eval-every 20``: N-HARPG solved seeds 0, 1, 2
(final returns 498, 476, 495; solved after 2100, 2440, 2500 trajectories).  The test asserts the claim — most of
the three seeds — rather than every seed, since a float64 rounding difference on another CPU changes the sampled
episodes of a chaotic learning run (N-HARPG's seed 1 ends at 476, just above the line).
"""

from __future__ import annotations

import pytest

from descend.rl.study import ENVS, run_curve, summarize


@pytest.mark.slow
@pytest.mark.parametrize(("method", "budget"), [("n_pg_igt", 1000), ("n_harpg", 3000)])
def test_variance_reduced_method_solves_cartpole_on_most_seeds(method: str, budget: int) -> None:
    pytest.importorskip("gymnasium")
    solved = []
    for seed in (0, 1, 2):
        curve = run_curve("CartPole-v1", method, seed=seed, budget=budget, eval_every=20)
        s = summarize(curve, ENVS["CartPole-v1"].solved)
        solved.append((seed, round(s["final_return"], 1), s["solved_at"]))
    assert sum(final >= 475 for _, final, _ in solved) >= 2, solved
