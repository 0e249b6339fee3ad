"""Tabular check of Fatkhullin et al. (2023): one trajectory per iteration, a budget of trajectories, final gap.

    python benchmarks/rl_tabular.py                      # 10 seeds, 2000 trajectories, defaults (the README's table)
    python benchmarks/rl_tabular.py --seeds 3 --lr 0.3 --lr-power 0.5

MDP: |S|=5, |A|=3, Dirichlet(1) transitions, U[0,1] rewards, γ=0.9, trajectories of H=50 steps (MDP seed 0).
Gap: (J* − J(θ_T))/|J*| with the exact infinite-horizon J (linear solve) and J* by value iteration.
N-HARPG samples 2 trajectories per iteration, so at the same budget it runs half the iterations.
Prints mean gap with a 95 % t-interval over seeds, and the fraction of seeds with gap ≤ 0.05.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import torch

from descend.rl import NHARPG, NPGIGT, NormalizedPG, Power, TabularMDP, TabularSoftmaxPolicy
from descend.rl.algorithms import PolicyGradient

METHODS = {
    "n_pg_igt": lambda p, m, lr, s: NPGIGT(p, m, lr=lr, seed=s),
    "n_harpg": lambda p, m, lr, s: NHARPG(p, m, lr=lr, seed=s),
    "normalized_pg": lambda p, m, lr, s: NormalizedPG(p, m, lr=lr, seed=s),
    "normalized_reinforce": lambda p, m, lr, s: NormalizedPG(p, m, lr=lr, estimator="reinforce", seed=s),
}
T_975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 19: 2.09}


def final_gaps(method: str, seeds: Sequence[int], budget: int = 2000, lr: float = 1.0, lr_power: float = 1.0,
               horizon: int = 50) -> list[float]:
    """Relative final gaps of ``method`` over ``seeds`` (one trajectory per sample, ``budget`` trajectories)."""
    mdp = TabularMDP.random(5, 3, gamma=0.9, horizon=horizon, seed=0)
    j_star = mdp.optimal_J()
    gaps = []
    for s in seeds:
        policy = TabularSoftmaxPolicy(5, 3)
        alg: PolicyGradient = METHODS[method](policy, mdp, Power(lr, lr_power), s)
        alg.run(budget)
        with torch.no_grad():
            gaps.append((j_star - float(mdp.J(policy))) / abs(j_star))
    return gaps


def mean_ci(xs: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95 % t-interval."""
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, math.inf
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    return m, T_975.get(n - 1, 2.0) * sd / math.sqrt(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=0.3, help="γ_0 of γ_t = γ_0 (2/(t+2))^p")
    ap.add_argument("--lr-power", type=float, default=0.5, help="p of γ_t = γ_0 (2/(t+2))^p")
    ap.add_argument("--methods", default=",".join(METHODS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    for m in a.methods.split(","):
        t0 = time.time()
        gaps = final_gaps(m, range(1, a.seeds + 1), a.budget, a.lr, a.lr_power)
        mean, hw = mean_ci(gaps)
        ok = sum(g <= 0.05 for g in gaps)
        print(f"{m:22s} gap {mean:.4f} ± {hw:.4f} (95% CI)  ≤0.05 on {ok}/{len(gaps)} seeds  "
              f"[{', '.join(f'{g:.3f}' for g in gaps)}]  {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
