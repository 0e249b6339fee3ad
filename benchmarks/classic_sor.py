"""Time to a 1e-8 relative residual on shifted 10×10 Laplacians: SOR at the ω Tsallis-INF plays (online, learning
as it goes), SOR at the instance-optimal ω*, and scipy.sparse.linalg.cg, side by side on the same instances.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/classic_sor.py --instances 300 --regime high
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from descend.classic import sor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=300)
    ap.add_argument("--regime", default="high", choices=sorted(sor.REGIMES))
    ap.add_argument("--warmup", type=int, default=2000, help="bandit rounds played before the timed instances")
    args = ap.parse_args()
    torch.set_num_threads(1)
    total = args.warmup + args.instances
    shifts, rhs = sor.sample_instances(total, args.regime, seed=0)
    base = sor.laplacian_2d(10)
    base_np = base.numpy()
    learner = sor.TsallisINF(seed=1)
    for k in range(args.warmup):  # learning phase (not timed): costs by the residual recursion
        arm = learner.predict()
        learner.update(sor.sor_iterations(base_np + shifts[k] * np.eye(100), rhs[k], sor.GRID[arm]))
    rows = {"SOR, Tsallis-INF ω (online)": [0.0, 0], "SOR, instance-optimal ω*": [0.0, 0],
            "scipy.sparse.linalg.cg": [0.0, 0]}
    eye = torch.eye(100, dtype=torch.float64)
    for k in range(args.warmup, total):
        a = base + shifts[k] * eye
        b = torch.from_numpy(rhs[k])
        t0 = time.perf_counter()
        arm = learner.predict()
        res = sor.sor_solve(a, b, sor.GRID[arm])
        learner.update(res.iterations)
        rows["SOR, Tsallis-INF ω (online)"][0] += time.perf_counter() - t0
        rows["SOR, Tsallis-INF ω (online)"][1] += res.iterations
        t0 = time.perf_counter()
        res = sor.sor_solve(a, b, sor.optimal_omega(a))
        rows["SOR, instance-optimal ω*"][0] += time.perf_counter() - t0
        rows["SOR, instance-optimal ω*"][1] += res.iterations
        a_sp = sp.csr_matrix(a.numpy())
        its = [0]
        t0 = time.perf_counter()
        sla.cg(a_sp, rhs[k], rtol=1e-8, atol=0.0, maxiter=10000,
               callback=lambda _x, its=its: its.__setitem__(0, its[0] + 1))
        rows["scipy.sparse.linalg.cg"][0] += time.perf_counter() - t0
        rows["scipy.sparse.linalg.cg"][1] += its[0]
    print(f"| method ({args.regime} variance, {args.instances} instances) | mean iterations | mean ms / solve |")
    print("|---|---|---|")
    for name, (secs, its_total) in rows.items():
        print(f"| {name} | {its_total / args.instances:.1f} | {1e3 * secs / args.instances:.2f} |")


if __name__ == "__main__":
    main()
