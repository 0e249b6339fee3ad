"""IGNITE vs the unregularised gradient-ascent ensemble on the download-free offline tasks, with paired CIs.

For each task and seed: an offline set (bottom half of a uniform pool), an ensemble of surrogates trained three
ways (``baseline``: plain Adam; ``ignite``: the paper's defaults λ0 = ε = η_λ = 1e-3, ρ = r = 0.05;
``ignite-strong``: λ0 = 1, η_λ = 0.1, ε = 0.01), 100 Adam ascent steps from the 128 best offline designs, the hidden
oracle's 100th-percentile normalised score.  Prints the mean per method and the mean paired difference to the
baseline with a 95 % percentile-bootstrap CI over seeds.  Records go to the storage (family "surrogate"), so
``descend surrogate report`` draws them.

    python benchmarks/surrogate_ignite.py [--seeds 5] [--tasks branin,hartmann6,teacher] [--full] [--storage bench.db]
"""

from __future__ import annotations

import argparse
import time

from descend.results import ResultStore
from descend.surrogate.study import IGNITE_VARIANTS, bootstrap_ci, run_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tasks", default="branin,hartmann6,teacher")
    ap.add_argument("--full", action="store_true", help="pool 5000, 3 models x 100 epochs (default: quick sizes)")
    ap.add_argument("--storage", default="bench.db")
    args = ap.parse_args()
    store = ResultStore(args.storage)
    print("| task | method | p100 mean | paired Δ vs baseline [95% CI] |")
    print("|---|---|---|---|")
    for task in args.tasks.split(","):
        t0 = time.perf_counter()
        run_study("ignite", task, args.seeds, store, quick=not args.full)
        recs = [r for r in store.records("surrogate", "ignite") if r.setting["task"] == task
                and r.setting["quick"] == (not args.full) and r.seed < args.seeds]
        by = {(r.method, r.seed): r.summary["p100"] for r in recs}
        for m in IGNITE_VARIANTS:
            vals = [by[(m, s)] for s in range(args.seeds)]
            mean = sum(vals) / len(vals)
            if m == "baseline":
                print(f"| {task} | {m} | {mean:.4f} | |")
                continue
            diff = [by[(m, s)] - by[("baseline", s)] for s in range(args.seeds)]
            d, lo, hi = bootstrap_ci(diff)
            print(f"| {task} | {m} | {mean:.4f} | {d:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
        print(f"<!-- {task}: {time.perf_counter() - t0:.0f} s -->")


if __name__ == "__main__":
    main()
