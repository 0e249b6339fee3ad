"""Time to KKT ≤ 1e-4 on equality-constrained problems: AdaSketch-Newton (Gaussian sketch, Kaczmarz), the direct
SQP on the same merit, and scipy.optimize's trust-constr and SLSQP (exact derivatives), side by side, float64.
For scipy the KKT residual is recomputed the same way, ‖(∇f + Gᵀλ, c)‖, with λ the least-squares multiplier at
scipy's x (so every row is judged by one yardstick).

    python benchmarks/classic_adasketch.py [--problems logistic,HS7,HS40,BT2]
"""

from __future__ import annotations

import argparse
import time

import scipy.optimize as so
import torch
from torch.autograd.functional import hessian, jacobian

from descend.classic import adasketch as A


def kkt_at(prob, x):
    xt = torch.tensor(x, dtype=torch.float64)
    g = jacobian(prob.f, xt)
    jac = jacobian(prob.c, xt).reshape(-1, xt.numel())
    lam = torch.linalg.lstsq(jac.T, -g.unsqueeze(-1)).solution.squeeze(-1)
    return float(torch.linalg.vector_norm(torch.cat([g + jac.T @ lam, prob.c(xt)])))


def scipy_run(prob, method):
    f = lambda x: float(prob.f(torch.tensor(x)))  # noqa: E731
    g = lambda x: jacobian(prob.f, torch.tensor(x)).numpy()  # noqa: E731
    c = lambda x: prob.c(torch.tensor(x)).numpy()  # noqa: E731
    cj = lambda x: jacobian(prob.c, torch.tensor(x)).reshape(-1, len(x)).numpy()  # noqa: E731
    x0 = prob.x0.numpy()
    if method == "trust-constr":
        hess = lambda x: hessian(prob.f, torch.tensor(x)).numpy()  # noqa: E731

        def chess(x, v):
            return hessian(lambda y: torch.tensor(v).dot(prob.c(y)), torch.tensor(x)).numpy()

        con = so.NonlinearConstraint(c, 0.0, 0.0, jac=cj, hess=chess)
        r = so.minimize(f, x0, jac=g, hess=hess, method="trust-constr", constraints=[con],
                        options={"gtol": 1e-8, "xtol": 1e-12, "maxiter": 5000})
    else:
        r = so.minimize(f, x0, jac=g, method="SLSQP", constraints=[{"type": "eq", "fun": c, "jac": cj}],
                        options={"ftol": 1e-12, "maxiter": 1000})
    return r.x, int(r.nit)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problems", default="logistic,HS7,HS40,BT2")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cutest = A.cutest_problems()
    print("| problem | method | iterations | KKT | f | time (s) |\n|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        prob = A.constrained_logistic() if name == "logistic" else cutest[name]
        for method in ("gaussian", "kaczmarz", "direct"):
            t0 = time.perf_counter()
            r = A.adasketch_newton(prob, method=method)
            dt = time.perf_counter() - t0
            label = {"gaussian": "AdaSketch GV", "kaczmarz": "AdaSketch RK", "direct": "SQP direct (same merit)"}
            print(f"| {name} | {label[method]} | {len(r.alpha)} ({sum(r.sketch_steps)} sketch steps) | "
                  f"{r.kkt[-1]:.1e} | {r.fvals[-1]:.8f} | {dt:.2f} |")
        for method in ("trust-constr", "SLSQP"):
            t0 = time.perf_counter()
            x, nit = scipy_run(prob, method)
            dt = time.perf_counter() - t0
            print(f"| {name} | scipy {method} | {nit} | {kkt_at(prob, x):.1e} | "
                  f"{float(prob.f(torch.tensor(x))):.8f} | {dt:.2f} |")


if __name__ == "__main__":
    main()
