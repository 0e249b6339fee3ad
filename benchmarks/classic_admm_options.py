"""Does the ADMM claim (within 1e-3 of the cvxpy objective in 500 iterations, geometric residual decay) reproduce
with over-relaxation and residual-balancing ρ (Boyd et al. 2011 §3.4)?  One line per (ρ, α, adaptive) on the
convex two-layer ReLU program of ``tests/classic/test_convex_relu.py`` (all arrangements enumerated).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/classic_admm_options.py --n 40 --beta 0.1 --rhos 0.3,1,3 \\
        --alphas 1,1.6,1.8

Columns: gap after the last iteration (relative to cvxpy), the largest 50-iteration primal-residual ratio over
iterations 50–450 (< 0.5 would be geometric halving), the final constraint violation and the final ρ.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from descend.classic import convex_relu as cr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--rhos", default="0.3,1,3")
    ap.add_argument("--alphas", default="1,1.5,1.8")
    ap.add_argument("--iterations", type=int, default=500)
    args = ap.parse_args()
    if args.iterations < 451:
        ap.error("--iterations must be ≥ 451 (the residual ratios use iterations 50–500)")
    torch.set_num_threads(1)
    x, y = cr.synthetic_data(args.n, 2, seed=0)
    pats = cr.arrangement_patterns(x)
    sol = cr.solve_cvxpy(x, y, pats, args.beta)
    print(f"n={args.n} β={args.beta}: {pats.shape[0]} patterns, cvxpy objective {sol.objective:.8g}")
    print("| ρ | α | adaptive ρ | gap | max residual ratio | violation | final ρ | s |")
    print("|---|---|---|---|---|---|---|---|")
    for rho, alpha, adaptive in itertools.product([float(r) for r in args.rhos.split(",")],
                                                  [float(a) for a in args.alphas.split(",")], (False, True)):
        t0 = time.perf_counter()
        res = cr.admm(x, y, pats, args.beta, rho=rho, max_iter=args.iterations, relaxation=alpha,
                      adaptive_rho=adaptive)
        gap = abs(res.objective[-1] - sol.objective) / sol.objective
        pr = res.primal_residual
        ratio = max(pr[k + 50] / pr[k] for k in range(50, 450, 50))
        print(f"| {rho:g} | {alpha:g} | {adaptive} | {gap:.2e} | {ratio:.2f} | {res.violation[-1]:.1e} | "
              f"{res.rho[-1]:.3g} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    main()
