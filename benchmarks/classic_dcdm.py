"""Time to a 1e-4 relative residual on 2-D Poisson systems: DCDM with a small trained CNN against
scipy.sparse.linalg.cg (and descend's torch CG), side by side on the same held-out right-hand sides.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/classic_dcdm.py --m 16 --steps 400
"""

from __future__ import annotations

import argparse
import time

import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch

from descend.classic import dcdm
from descend.classic.sor import laplacian_2d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--n-test", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, _ = dcdm.train_dcdm_model(args.m, steps=args.steps, batch=16, n_train=1000, channels=args.channels)
    t_train = time.perf_counter() - t0
    mv = dcdm.poisson_matvec(args.m)
    a_sp = sp.csr_matrix(laplacian_2d(args.m).numpy())
    test = dcdm.sample_rhs(args.m, args.n_test, seed=999)
    rows: dict[str, list[float]] = {"DCDM (trained CNN)": [0.0, 0], "descend.classic.dcdm.cg (torch)": [0.0, 0],
                                    "scipy.sparse.linalg.cg": [0.0, 0]}
    for b in test:
        t0 = time.perf_counter()
        r = dcdm.dcdm(mv, b, model, tol=1e-4)
        rows["DCDM (trained CNN)"][0] += time.perf_counter() - t0
        rows["DCDM (trained CNN)"][1] += r.iterations
        t0 = time.perf_counter()
        r = dcdm.cg(mv, b, tol=1e-4)
        rows["descend.classic.dcdm.cg (torch)"][0] += time.perf_counter() - t0
        rows["descend.classic.dcdm.cg (torch)"][1] += r.iterations
        its = [0]
        bn = b.numpy()
        t0 = time.perf_counter()
        sla.cg(a_sp, bn, rtol=1e-4, atol=0.0, callback=lambda _x, its=its: its.__setitem__(0, its[0] + 1))
        rows["scipy.sparse.linalg.cg"][0] += time.perf_counter() - t0
        rows["scipy.sparse.linalg.cg"][1] += its[0]
    n = args.n_test
    print(f"| method ({args.m}×{args.m} Poisson, {n} held-out RHS, tol 1e-4) | mean iterations | mean ms / solve |")
    print("|---|---|---|")
    for name, (secs, its_total) in rows.items():
        print(f"| {name} | {its_total / n:.1f} | {1e3 * secs / n:.2f} |")
    print(f"(CNN training: {args.steps} Adam steps, {t_train:.1f} s, not included in the per-solve times)")


if __name__ == "__main__":
    main()
