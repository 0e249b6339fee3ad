"""Muon on the MNIST-1D MLP: hidden matrices only (roles from module types) vs every matrix (name routing).

Before parameter roles, ``muon_param_groups`` recognised heads by module *name*; in the MLP's ``nn.Sequential``
the names are "0", "2", "4", so the input layer and the 10×128 output layer went to Muon too.  This script
trains the same MLP with both routings and with AdamW, each at its best learning rate(s) of a small grid
(selected on the validation loss of seed 0, at the workload's full budget, the bench's warm-up + cosine
schedule), then reruns the selected configuration on fresh seeds and reports validation and test loss.

    python benchmarks/muon_routing.py [--scales s s4k] [--seeds 3] [--threads 1] [--defaults]

``--defaults``: no grid, every optimizer at its registry defaults (what an untuned run gets).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import statistics
import time
from typing import Any

from torch import nn

import descend.optim as do
from descend.bench.trial import run_trial
from descend.bench.workloads import get_workload
from descend.optim.muon import _adam_lr, muon_param_groups

GRIDS: dict[str, list[dict[str, Any]]] = {
    "adamw": [{"lr": lr} for lr in (3e-3, 1e-2, 3e-2, 1e-1)],
    "muon": [{"lr": lr, "adam_lr": a} for lr, a in itertools.product((0.02, 0.05, 0.1, 0.2), (3e-3, 1e-2, 3e-2))],
}
GRIDS["muon_all_matrices"] = GRIDS["muon"]


def _all_matrices_hook(model: nn.Module, hp: dict[str, Any]) -> list[dict[str, Any]]:
    """The old routing on an nn.Sequential: every ndim >= 2 tensor to Muon."""
    return muon_param_groups(model, lr=hp["lr"], adam_lr=_adam_lr(hp), weight_decay=hp["weight_decay"],
                             adam_weight_decay=hp["weight_decay"], betas=tuple(hp["betas"]), eps=hp["eps"],
                             route=lambda name, p: "muon" if p.ndim >= 2 else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="mlp_mnist1d")
    ap.add_argument("--scales", nargs="+", default=["s", "s4k"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--defaults", action="store_true", help="registry defaults only (no learning-rate grid)")
    args = ap.parse_args()
    do.register(dataclasses.replace(do.get("muon"), name="muon_all_matrices", module_groups=_all_matrices_hook),
                replace=True)
    for scale in args.scales:
        steps = get_workload(args.workload).budget[scale]
        print(f"== {args.workload}:{scale}, {steps} steps")
        for opt, grid in GRIDS.items():
            t0 = time.perf_counter()
            tuned = []
            grid = [{}] if args.defaults else grid
            for hp in grid:
                res = run_trial(args.workload, scale, opt, hp, 0, steps, evaluations=4, threads=args.threads)
                tuned.append((res.final.get("val_loss", math.inf), hp))
            best_val, best = min(tuned, key=lambda t: t[0])
            finals = [run_trial(args.workload, scale, opt, best, seed, steps, evaluations=4, threads=args.threads).final
                      for seed in range(1, args.seeds + 1)]
            val = [f["val_loss"] for f in finals]
            test = [f["test_loss"] for f in finals]
            sd = statistics.stdev(val) if len(val) > 1 else 0.0
            edge = [k for k, v in best.items()
                    if len(grid) > 1 and v in (min(h[k] for h in grid), max(h[k] for h in grid))]
            at_edge = f" (at the grid edge: {', '.join(edge)})" if edge else ""
            print(f"{opt:18s} best {best}{at_edge} (tuning val {best_val:.3f}); seeds 1..{args.seeds}: "
                  f"val {statistics.mean(val):.3f} ± {sd:.3f}, test {statistics.mean(test):.3f}, "
                  f"test acc {statistics.mean(f['test_acc'] for f in finals):.3f}  [{time.perf_counter() - t0:.0f} s]",
                  flush=True)


if __name__ == "__main__":
    main()
