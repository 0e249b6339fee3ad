"""Time to the convex two-layer ReLU optimum: cvxpy (Clarabel) against ADMM (Bai et al. Alg. 3.1) and the
sampled program by FISTA, side by side on the same problem (all arrangements enumerated).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/classic_convex_relu.py --n 20
"""

from __future__ import annotations

import argparse
import time

import torch

from descend.classic import convex_relu as cr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--rho", type=float, default=0.3)
    ap.add_argument("--iterations", type=int, default=500)
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y = cr.synthetic_data(args.n, 2, seed=0)
    pats = cr.arrangement_patterns(x)
    t0 = time.perf_counter()
    sol = cr.solve_cvxpy(x, y, pats, args.beta)
    t_cvx = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = cr.admm(x, y, pats, args.beta, rho=args.rho, max_iter=args.iterations)
    t_admm = time.perf_counter() - t0
    per_it = t_admm / res.iterations
    print(f"| method (n={args.n}, {pats.shape[0]} patterns, β={args.beta}) | seconds | relative gap |")
    print("|---|---|---|")
    print(f"| cvxpy ({sol.info['solver']}) | {t_cvx:.2f} | 0 (reference) |")
    for target in (1e-1, 1e-2, 1e-3):
        # the sparse iterate's objective is not monotone: count from the last iteration still above the target
        above = [k for k, o in enumerate(res.objective) if abs(o - sol.objective) > target * sol.objective]
        hit = 0 if not above else above[-1] + 1
        cell = "not reached" if hit >= len(res.objective) else f"{(hit + 1) * per_it:.2f} ({hit + 1} it)"
        print(f"| ADMM ρ={args.rho}, stays within {target:g} | {cell} | ≤ {target:g} |")
    gap = abs(res.objective[-1] - sol.objective) / sol.objective
    print(f"| ADMM ρ={args.rho}, {args.iterations} it | {t_admm:.2f} | {gap:.1e} |")
    t0 = time.perf_counter()
    _, v, w = cr.sampled_program(x, y, pats, args.beta, penalty=100.0, steps=2000)
    t_f = time.perf_counter() - t0
    u, alpha = cr.recover_network(v, w)
    net = float(cr.network_objective(x, y, u, alpha, args.beta))
    rel = (net - sol.objective) / sol.objective
    print(f"| FISTA, penalised program, 2000 it (recovered net) | {t_f:.2f} | {rel:.1e} |")


if __name__ == "__main__":
    main()
