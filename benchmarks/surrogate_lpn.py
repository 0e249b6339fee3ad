"""LPN on the 1-D Laplace experiment: f_θ(−3..3) after proximal matching vs ℓ2 training, against soft-thresholding.

    python benchmarks/surrogate_lpn.py [--schedule short|reference] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import torch

from descend.surrogate.lpn import soft_threshold, train_laplace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--schedule", default="short", choices=("short", "reference"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    pts = torch.tensor([-3.0, -2, -1, 0, 1, 2, 3]).unsqueeze(1)
    target = soft_threshold(pts).squeeze(1)
    print("target (soft-threshold):", [round(float(v), 3) for v in target])
    for loss in ("prox", "l2"):
        t0 = time.perf_counter()
        f = train_laplace(loss, seed=args.seed, schedule=args.schedule,
                          batch_size=2000 if args.schedule == "reference" else 1000)(pts).detach().squeeze(1)
        err = float((f - target).abs().max())
        print(f"{loss}: f(-3..3) = {[round(float(v), 3) for v in f]}  max|f - soft-thr| = {err:.3f}  "
              f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
