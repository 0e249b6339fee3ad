"""Time to a relative suboptimality target on the dataset-A recipe (least squares 300×3000, and the non-negative ℓ1
problem): greedy BCD (VB-GSL-Hb, FB-GSQ-Hb; GSQ-NN with proximal-Newton blocks) vs scipy.optimize L-BFGS-B (with
bounds for ℓ1), side by side, float64.  BCD runs a fixed number of iterations; the reported time is to the first
iterate meeting the target (measured per iteration).

    python benchmarks/classic_bcd.py [--n 300] [--p 3000] [--target 1e-6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.optimize as so
import torch

from descend.classic import bcd


def bcd_time(loss, target_f, iters, **kw):
    t0 = time.perf_counter()
    res = bcd.bcd(loss, max_iter=iters, **kw)
    total = time.perf_counter() - t0
    hit = next((k for k, v in enumerate(res.f) if v <= target_f), None)
    # per-iteration cost is uniform for these rules, so time-to-target = total · hit / iters
    return (None if hit is None else total * hit / iters), hit, res.f[-1]


def lbfgs_time(fg, p, target_f, bounds=None):
    hits: list[float] = []
    t0 = time.perf_counter()

    def wrapped(x):
        v, g = fg(x)
        if v <= target_f and not hits:
            hits.append(time.perf_counter() - t0)
        return v, g

    r = so.minimize(wrapped, np.zeros(p), jac=True, method="L-BFGS-B", bounds=bounds,
                    options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 20000, "maxfun": 40000})
    return (hits[0] if hits else None), int(r.nit), float(r.fun)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--p", type=int, default=3000)
    ap.add_argument("--target", type=float, default=1e-6)
    args = ap.parse_args()
    torch.set_num_threads(1)
    a, y = bcd.dataset_a(args.n, args.p, seed=1)
    am, ym = a.numpy(), y.numpy()
    fstar = bcd.least_squares_fstar(a, y)
    f0 = 0.5 * float(y @ y)
    target = fstar + args.target * (f0 - fstar)
    print(f"least squares {args.n}×{args.p}: target (f − f*)/(f0 − f*) ≤ {args.target:g}")
    print("| method | iterations to target | time to target (s) |\n|---|---|---|")
    loss = bcd.LeastSquares(a, y)
    for label, kw in [("BCD VB-GSL-Hb", {"rule": "gsl", "partition": "vb", "update": "hb"}),
                      ("BCD Sort-FB-GSQ-Hb", {"rule": "gsq", "partition": "sort", "update": "hb"}),
                      ("BCD VB-GSL-Lb", {"rule": "gsl", "partition": "vb", "update": "lb"})]:
        t, hit, _ = bcd_time(loss, target, 1000, **kw)
        print(f"| {label} | {hit} | {'not reached' if t is None else f'{t:.2f}'} |")

    def fg_ls(x):
        r = am @ x - ym
        return 0.5 * r @ r, am.T @ r

    t, nit, _ = lbfgs_time(fg_ls, args.p, target)
    print(f"| scipy L-BFGS-B | {nit} (total) | {'not reached' if t is None else f'{t:.2f}'} |")

    lam = 0.1 * float((a.T @ y).abs().max())
    l1 = bcd.NonNegL1(a, y, lam)

    def fg_l1(x):
        r = am @ x - ym
        return 0.5 * r @ r + lam * x.sum(), am.T @ r + lam

    ref = so.minimize(fg_l1, np.zeros(args.p), jac=True, method="L-BFGS-B", bounds=[(0, None)] * args.p,
                      options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 50000, "maxfun": 100000})
    fl = float(ref.fun)
    target_l1 = fl + args.target * (0.5 * float(y @ y) - fl)
    print(f"\nnon-negative ℓ1 (λ = {lam:.3g}): target (F − F*)/(F0 − F*) ≤ {args.target:g}, F* from L-BFGS-B to 1e-12")
    print("| method | iterations to target | time to target (s) |\n|---|---|---|")
    for label, kw in [("BCD GSQ-NN proximal Newton", {"rule": "gsq-nn", "update": "pn"}),
                      ("BCD GSQ-NN projected gradient", {"rule": "gsq-nn", "update": "pg"})]:
        t, hit, _ = bcd_time(l1, target_l1, 600, **kw)
        print(f"| {label} | {hit} | {'not reached' if t is None else f'{t:.2f}'} |")
    t, nit, _ = lbfgs_time(fg_l1, args.p, target_l1, bounds=[(0, None)] * args.p)
    print(f"| scipy L-BFGS-B (bounds) | {nit} (total) | {'not reached' if t is None else f'{t:.2f}'} |")


if __name__ == "__main__":
    main()
