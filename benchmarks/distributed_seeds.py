"""The distributed seed algorithms, one process per rank: compositional GD, gradient sliding vs DeFW, and DAT.

Run under ``torchrun`` (any launcher that sets RANK / WORLD_SIZE / MASTER_ADDR; gloo on CPU)::

    torchrun --standalone --nproc-per-node 3 benchmarks/distributed_seeds.py compositional --torchrun
    torchrun --standalone --nproc-per-node 2 benchmarks/distributed_seeds.py sliding --torchrun --graph ring
    torchrun --standalone --nproc-per-node 2 benchmarks/distributed_seeds.py dat --torchrun --epochs 3 --bits 4

or without ``--torchrun`` to spawn ``--world`` gloo processes on this machine.  Workers (subproblems, graph
nodes) are spread over the ranks, worker ``w`` on rank ``w mod world``; messages go through
:class:`descend.distributed._comm.TorchDistributed` (all-reduces for compositional GD, point-to-point along the
graph's edges for sliding and DeFW, gradient all-reduces for DAT).  Rank 0 prints a table and, with ``--json``,
one JSON line.

* ``compositional`` — AlgebraicOptimization.jl's README example (3 subproblems, x0 = 100·1, γ = 0.1) or a random
  6-problem instance: the largest relative difference to autograd GD on the composite over all iterations,
  the distance to the closed-form minimiser, the communication rounds.
* ``sliding`` — ℓ1-constrained logistic regression on an 8-node ring or a 3×3 torus: gradient sliding and DeFW
  with their gradient-sample / LO-call / communication counters, optimality gap F(x̄) − F* and consensus error.
  ``sliding --target 1e-3 --dim 50 --samples 40 --radius 5`` instead races both methods in one process on both
  graphs to gap ≤ target and consensus ≤ target (the claim check; results in docs/families/distributed.md).
* ``dat`` — fast-FGSM adversarial training of a small CNN on scikit-learn digits with LAMB, each rank on its
  slice of every global batch of 64, optionally with b-bit QSGD gradients: clean and PGD-10 robust accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import torch

from descend.distributed._comm import TorchDistributed
from descend.distributed.examples import (
    random_composition,
    readme_composition,
    run_against_autograd,
    sliding_metrics,
    sliding_nodes,
    sliding_to_target,
    train_adversarial,
)
from descend.distributed.launch import init_from_env, spawn
from descend.distributed.sliding import centralized_optimum, defw, gradient_sliding, l1_lo, ring, torus

RADIUS = 3.0  # the ℓ1 ball of the sliding problem
TOL_SCALE = 0.01  # sliding: CndG stops at Wolfe gap TOL_SCALE·L_f·(2 radius)²/(k(k+1))
R_SCALE = 0.05  # sliding: R = R_SCALE · L_f (so T_k = ⌈0.05 k ‖L‖⌉ communication steps in outer step k)


def compositional(rank: int, world: int, problem: str, steps: int) -> dict[str, Any]:
    comp, mats, vecs = readme_composition() if problem == "readme" else random_composition()
    workers = [i for i in range(len(comp.problems)) if i % world == rank]
    res = run_against_autograd(comp, mats, vecs, TorchDistributed(), workers,
                               readme_steps=(steps or 100) if problem == "readme" else None)
    return {**res, "workers": workers}


def sliding(rank: int, world: int, graph_name: str, steps: int, dim: int = 10, samples: int = 20,
            radius: float = RADIUS, r_scale: float = R_SCALE, tol_scale: float = TOL_SCALE) -> dict[str, Any]:
    import torch.distributed as dist

    graph = ring(8) if graph_name == "ring" else torus(3, 3)
    every = sliding_nodes(m=len(graph), d=dim, n=samples)
    mine = {i: n for i, n in every.items() if i % world == rank}
    lf = max(float(torch.linalg.matrix_norm(n.A, 2) ** 2) / (4 * len(n.A)) for n in every.values())
    out: dict[str, Any] = {}
    for method in ("sliding", "defw"):
        comm = TorchDistributed()
        if method == "sliding":
            xs, cnt = gradient_sliding(mine, graph, l1_lo(radius), dim, steps, comm, lipschitz=lf, r=r_scale * lf,
                                       tol=tol_scale * lf * (2 * radius) ** 2)
        else:
            xs, cnt = defw(mine, graph, l1_lo(radius), dim, steps, comm)
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, {i: x.tolist() for i, x in xs.items()})
        allx = {int(i): torch.tensor(x, dtype=torch.float64) for part in gathered for i, x in part.items()}
        out[method] = {"x": {i: allx[i].tolist() for i in sorted(allx)},
                       "counters": {i: vars(c) for i, c in cnt.items()}}
    if rank == 0:
        _, fstar = centralized_optimum(list(every.values()), radius, 3000)
        for method in ("sliding", "defw"):
            xs = {int(i): torch.tensor(x, dtype=torch.float64) for i, x in out[method]["x"].items()}
            out[method]["gap"], out[method]["consensus"] = sliding_metrics(every, fstar, xs)
    return out


def dat(rank: int, world: int, seed: int, epochs: int, bits: int) -> dict[str, Any]:
    return train_adversarial(rank, world, seed, bits or None, epochs)


def _table(cmd: str, per_rank: list[dict[str, Any]]) -> str:
    first = per_rank[0]
    if cmd == "compositional":
        diff = max(r["worst_step_diff"] for r in per_rank)
        err = max(r["minimiser_err"] for r in per_rank)
        return ("| ranks | steps | rounds per rank | max rel. diff to autograd GD | distance to minimiser |\n"
                "|---:|---:|---:|---:|---:|\n"
                f"| {len(per_rank)} | {first['steps']} | {first['rounds']} | {diff:.1e} | {err:.1e} |")
    if cmd == "sliding":
        lines = ["| method | gradient samples / node | LO calls / node (max) | rounds | F(x̄) − F* | consensus |",
                 "|---|---:|---:|---:|---:|---:|"]
        for m in ("sliding", "defw"):
            cnt = [c for r in per_rank for c in r[m]["counters"].values()]
            lines.append(f"| {m} | {max(c['gradient_samples'] for c in cnt)} | {max(c['lo_calls'] for c in cnt)} | "
                         f"{max(c['rounds'] for c in cnt)} | {first[m]['gap']:.2e} | {first[m]['consensus']:.2e} |")
        return "\n".join(lines)
    return ("| ranks | clean accuracy | PGD-10 robust accuracy |\n|---:|---:|---:|\n"
            f"| {len(per_rank)} | {first['clean']:.3f} | {first['robust']:.3f} |")


def _race(a: argparse.Namespace) -> str:
    lines = [f"target {a.target:g} (gap and consensus), d = {a.dim}, {a.samples} samples/node, ℓ1 radius {a.radius:g}, "
             f"R = {a.r_scale:g}·L_f, CndG tolerance {a.tol_scale:g}·L_f·D²/(k(k+1))",
             "| graph | method | gradient samples / node | LO calls / node | rounds | at k | gap | consensus |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for graph in ("ring", "torus"):
        for method, steps in (("sliding", a.steps or 300), ("defw", a.defw_steps)):
            res = sliding_to_target(graph, method, steps, dim=a.dim, samples=a.samples, radius=a.radius,
                                    r_scale=a.r_scale, tol_scale=a.tol_scale, target=a.target)
            row, tag = (res["hit"], "") if res["hit"] is not None else (res["final"], " (not reached: final)")
            lines.append(f"| {graph} | {method}{tag} | {row['gradient_samples']} | {row['lo_calls']} | "
                         f"{row['rounds']} | {row['k']} | {row['gap']:.2e} | {row['consensus']:.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("compositional", "sliding", "dat"))
    ap.add_argument("--torchrun", action="store_true", help="join the torchrun-launched group (else spawn --world)")
    ap.add_argument("--world", type=int, default=2, help="processes to spawn without --torchrun")
    ap.add_argument("--problem", choices=("readme", "random"), default="readme", help="compositional instance")
    ap.add_argument("--graph", choices=("ring", "torus"), default="ring", help="sliding topology")
    ap.add_argument("--steps", type=int, default=0,
                    help="iterations (compositional readme: 100 by default; sliding: 60 by default)")
    ap.add_argument("--dim", type=int, default=10, help="sliding: dimension d")
    ap.add_argument("--samples", type=int, default=20, help="sliding: data points per node")
    ap.add_argument("--radius", type=float, default=RADIUS, help="sliding: ℓ1-ball radius")
    ap.add_argument("--r-scale", type=float, default=R_SCALE, help="sliding: R / L_f (communication per gradient)")
    ap.add_argument("--tol-scale", type=float, default=TOL_SCALE, help="sliding: CndG tolerance / (L_f (2 radius)²)")
    ap.add_argument("--target", type=float, default=0.0,
                    help="sliding: race both methods in ONE process (InProcess) until F(x̄) − F* and consensus are "
                         "both <= TARGET; --steps is the sliding budget (default 300), --defw-steps DeFW's")
    ap.add_argument("--defw-steps", type=int, default=4000, help="sliding --target: DeFW's iteration budget")
    ap.add_argument("--seed", type=int, default=0, help="DAT seed")
    ap.add_argument("--epochs", type=int, default=3, help="DAT epochs")
    ap.add_argument("--bits", type=int, default=0, help="DAT QSGD bits (0: unquantized gradients)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line with every rank's results")
    a = ap.parse_args(argv)
    for name, v, low in (("--world", a.world, 1), ("--steps", a.steps, 0), ("--epochs", a.epochs, 1),
                         ("--bits", a.bits, 0), ("--dim", a.dim, 1), ("--samples", a.samples, 1)):
        if v < low:
            ap.error(f"{name} must be >= {low}, got {v}")
    for name, f in (("--radius", a.radius), ("--r-scale", a.r_scale), ("--tol-scale", a.tol_scale)):
        if not f > 0:
            ap.error(f"{name} must be > 0, got {f}")
    if a.target < 0 or (a.target > 0 and a.command != "sliding"):
        ap.error(f"--target must be > 0 and only with the sliding command, got {a.target}")
    if a.target > 0:
        print(_race(a))
        return
    fn: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]
    if a.command == "compositional":
        fn, args = compositional, (a.problem, a.steps)
    elif a.command == "sliding":
        fn, args = sliding, (a.graph, a.steps or 60, a.dim, a.samples, a.radius, a.r_scale, a.tol_scale)
    else:
        fn, args = dat, (a.seed, a.epochs, a.bits)
    if a.torchrun:
        import torch.distributed as dist

        rank, world = init_from_env()
        res = fn(rank, world, *args)
        per_rank: list[Any] = [None] * world
        dist.all_gather_object(per_rank, res)
        dist.destroy_process_group()
        if rank != 0:
            return
    else:
        per_rank = spawn(fn, a.world, *args)
    print(_table(a.command, per_rank))
    if a.json:
        print(json.dumps(per_rank))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
