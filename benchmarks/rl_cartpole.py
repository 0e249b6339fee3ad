"""CartPole: do the variance-reduced methods solve it (mean return ≥ 475 over the last 10 curve points), and how
fast compared with GPOMDP and PPO?  The same code path as ``descend rl run`` (results go to the store).

    python benchmarks/rl_cartpole.py --seeds 3 --budget 1500 --storage rl-cartpole.db
    descend rl report --storage rl-cartpole.db

Budget: complete episodes (trajectories) per run; a curve point every budget/50 episodes is the mean return of
the episodes sampled in that window.  Policies: linear softmax (PG methods), SB3's default 64×64 MLP (PPO).
"""

from __future__ import annotations

import argparse

import torch

from descend.results import ResultStore
from descend.rl import study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--algos", default="n_pg_igt,n_harpg,gpomdp,ppo")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=1500)
    ap.add_argument("--storage", default="rl-cartpole.db")
    a = ap.parse_args()
    torch.set_num_threads(1)
    store = ResultStore(a.storage)
    study.run_study(store, a.env, a.algos.split(","), range(a.seeds), a.budget)
    for row in study.report_rows(store, a.env):
        print(row)


if __name__ == "__main__":
    main()
