"""Step time and optimizer-state memory per rank vs world size, Muon and SOAP on FSDP2 (gloo, CPU).

Each world size runs in its own spawned group (or under ``torchrun``: ``torchrun --nproc-per-node 2
benchmarks/distributed_step_time.py --torchrun``).  A stack of ``--layers`` square ``--dim``×``--dim`` linear
layers is ``fully_shard``-ed; gradients are synthetic (the optimizer step is what is timed).  For each optimizer
the ``owner`` mode (each rank owns a subset of matrices: Newton–Schulz / eigendecompositions split across
ranks, results broadcast) is compared with ``replicate`` (every rank gathers and processes every matrix).
Reported: median step seconds (max over ranks), and state bytes on the most loaded rank.

    PYTHONPATH=src python benchmarks/distributed_step_time.py --worlds 1 2 4 --dim 256 --layers 8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

from descend.distributed.launch import spawn


def _bench(rank: int, world: int, dim: int, layers: int, steps: int) -> dict[str, Any]:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_tensor

    from descend.distributed import ShardedOptimizer

    out: dict[str, Any] = {}
    for name, kw in (("muon", {"ns_dtype": "float32"}), ("soap", {"precondition_frequency": 1})):
        for mode in ("owner", "replicate"):
            torch.manual_seed(0)
            model = torch.nn.Sequential(*[torch.nn.Linear(dim, dim, bias=False) for _ in range(layers)])
            for m in model:
                fully_shard(m)
            fully_shard(model)
            params = list(model.parameters())
            opt = ShardedOptimizer(params, name, mode=mode, **kw)
            times = []
            for t in range(steps + 1):
                g = torch.Generator().manual_seed(t)
                for p in params:
                    p.grad = distribute_tensor(torch.randn(p.shape, generator=g), p.device_mesh, p.placements,
                                               src_data_rank=None)
                dist.barrier()
                s = time.perf_counter()
                opt.step()
                dist.barrier()
                if t > 0:  # the first step allocates the state
                    times.append(time.perf_counter() - s)
            out[f"{name}/{mode}"] = {"step_s": statistics.median(times), "state_bytes": opt.state_bytes()}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--torchrun", action="store_true", help="run once in the torchrun-launched group")
    a = ap.parse_args(argv)
    for name, v in (("--dim", a.dim), ("--layers", a.layers), ("--steps", a.steps)):
        if v < 1:
            ap.error(f"{name} must be >= 1, got {v}")
    if a.torchrun:
        torch.set_num_threads(1)
        dist.init_process_group("gloo")
        res = _bench(dist.get_rank(), dist.get_world_size(), a.dim, a.layers, a.steps)
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, res)
        if dist.get_rank() == 0:
            _print({dist.get_world_size(): gathered})
        dist.destroy_process_group()
        return
    _print({w: spawn(_bench, w, a.dim, a.layers, a.steps) for w in a.worlds})


def _print(results: dict[int, list[dict[str, Any]]]) -> None:
    print("| optimizer / mode | world | step s (max over ranks) | state MiB (max rank) | state MiB (sum) |")
    print("|---|---|---|---|---|")
    for key in results[next(iter(results))][0]:
        for w, per_rank in results.items():
            step = max(r[key]["step_s"] for r in per_rank)
            mem = [r[key]["state_bytes"] / 2**20 for r in per_rank]
            print(f"| {key} | {w} | {step:.4f} | {max(mem):.2f} | {sum(mem):.2f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
