"""Hybrid (directional attack + cDSM) vs cDSM vs coordinate search on trained MLP surrogates at equal Φ budgets.

For each trained surrogate Φ: R^20 → R^3 (problem seeds), ``--starts`` feasible starts and ``--budget`` Φ evaluations
per method (white-box: a forward-backward pass counts 2; black-box: forward differences, d + 1 per gradient);
prints the median best feasible f(Φ(x)) per method and how many accepted points were infeasible (must be 0).

    python benchmarks/surrogate_attack.py [--problems 0,1,2,3] [--starts 10] [--budget 150] [--black-box]
"""

from __future__ import annotations

import argparse
import statistics

from descend.surrogate.attack import make_method
from descend.surrogate.study import feasible_start
from descend.surrogate.tasks import trained_mlp_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="0,1,2,3")
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--budget", type=int, default=150)
    ap.add_argument("--black-box", action="store_true")
    args = ap.parse_args()
    methods = ("hybrid", "cdsm", "coordinate")
    print("| problem | " + " | ".join(methods) + " | infeasible accepted |")
    print("|---" * (len(methods) + 2) + "|")
    for ps in (int(p) for p in args.problems.split(",")):
        prob = trained_mlp_problem(ps, dim=20, white_box=not args.black_box)
        best: dict[str, list[float]] = {m: [] for m in methods}
        bad = 0
        for s in range(args.starts):
            x0 = feasible_start(prob, s)
            for m in methods:
                tr = make_method(m, seed=s).run(prob, x0, args.budget)
                best[m].append(tr.best[-1])
                bad += sum(not ok for _, _, ok in tr.accepted)
        print(f"| {ps} | " + " | ".join(f"{statistics.median(best[m]):.3f}" for m in methods) + f" | {bad} |")


if __name__ == "__main__":
    main()
