"""DAT's seed runs on scikit-learn digits (the problem: :mod:`descend.distributed.examples`).  Used by
tests/distributed/test_dat.py and its slow seeds."""

from __future__ import annotations

from typing import Any

from descend.distributed.examples import train_adversarial


def dat_runs(rank: int, world: int, seeds: list[int], epochs: int, bits: int) -> dict[str, Any]:
    """Per seed: DAT (no quantization), DAT with ``bits``-bit QSGD, and (rank 0 only, no communication) the
    single-process adversarial training at the same total batch."""
    import torch.distributed as dist

    out: dict[str, Any] = {}
    for s in seeds:
        out[f"dat/{s}"] = train_adversarial(rank, world, s, None, epochs)
        out[f"dat_q{bits}/{s}"] = train_adversarial(rank, world, s, bits, epochs)
    dist.barrier()
    if rank == 0:  # single-process adversarial training, no communication
        for s in seeds:
            out[f"single/{s}"] = train_adversarial(0, 1, s, None, epochs, distributed=False)
    return out
