"""Time to f − f* < 1e-8 on ℓ2-logistic regression (n=500, d=50, μ=1e-2): GNS Algorithm 1 (exact Hessian, fixed
Böhning bound) vs scipy.optimize Newton-CG (exact Hessian-vector products) and L-BFGS-B, side by side, float64.

    python benchmarks/classic_gns.py [--n 500] [--d 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.optimize as so
import torch

from descend.classic import gns


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    prob = gns.logistic_problem(args.n, args.d)
    fstar = gns.solve_fstar(prob)
    tol = 1e-8

    # the same f, ∇f, ∇²f·v in numpy for scipy (what a scipy user writes)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(args.n, args.d, generator=gen, dtype=torch.float64)
    a[:, :5] *= 5.0
    w = torch.randn(args.d, generator=gen, dtype=torch.float64)
    y = torch.sign(a @ w + 0.5 * torch.randn(args.n, generator=gen, dtype=torch.float64))
    y[y == 0] = 1.0
    ya = (y.unsqueeze(-1) * a).numpy()
    n, mu = args.n, 1e-2
    assert abs(prob.f(torch.ones(args.d, dtype=torch.float64)) - (np.logaddexp(0, -(ya @ np.ones(args.d))).mean()
                                                                   + 0.5 * mu * args.d)) < 1e-9

    def fg(x):
        m = ya @ x
        s = 1 / (1 + np.exp(m))
        return np.logaddexp(0, -m).mean() + 0.5 * mu * x @ x, -(ya.T @ s) / n + mu * x

    def hessp(x, v):
        p = 1 / (1 + np.exp(-(ya @ x)))
        return ya.T @ (p * (1 - p) * (ya @ v)) / n + mu * v

    def gns_exact():
        r = gns.grad_norm_smooth(prob.f, prob.grad, prob.hessian, prob.x0, tol=tol, fstar=fstar)
        return r.f[-1], r.iterations

    def gns_bohning():
        r = gns.grad_norm_smooth(prob.f, prob.grad, prob.approximations["bohning"], prob.x0, tol=tol, fstar=fstar,
                                 max_iter=10000)
        return r.f[-1], r.iterations

    def newton_cg():
        r = so.minimize(fg, np.zeros(args.d), jac=True, hessp=hessp, method="Newton-CG",
                        options={"xtol": 1e-12, "maxiter": 1000})
        return float(r.fun), int(r.nit)

    def lbfgs():
        r = so.minimize(fg, np.zeros(args.d), jac=True, method="L-BFGS-B",
                        options={"ftol": 1e-16, "gtol": 1e-10, "maxiter": 10000})
        return float(r.fun), int(r.nit)

    def gd():
        _, fs = gns.gradient_descent(prob.f, prob.grad, prob.x0, prob.lipschitz, tol=tol, fstar=fstar)
        return fs[-1], len(fs) - 1

    print(f"logistic n={args.n} d={args.d}: f* = {fstar:.12f}; target f − f* < {tol:g}; median of {args.repeats}")
    print("| method | iterations | f − f* | time (ms) |\n|---|---|---|---|")
    for name, fn in [("GNS exact Hessian", gns_exact), ("GNS fixed Böhning bound", gns_bohning),
                     ("GD 1/L (descend)", gd), ("scipy Newton-CG (hessp)", newton_cg), ("scipy L-BFGS-B", lbfgs)]:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fval, it = fn()
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {it} | {fval - fstar:.1e} | {1e3 * statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
