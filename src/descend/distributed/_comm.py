"""Communication helpers on ``torch.distributed`` shared by the distributed package.

* :func:`ordered_mean` — the mean of a tensor over the ranks of a process group, summed in rank order
  (all-gather, then ``((x_0 + x_1) + x_2) + …``, then ``/ N``): every rank gets the same bits, and they equal a
  single process that accumulates the N per-rank values in that order.  A ring all-reduce sums in an order that
  depends on the chunk, so a 3-rank result differs from any single-process sum in the last bits.
* :func:`deterministic_allreduce_hook` — a DDP communication hook doing :func:`ordered_mean` on each bucket:
  ``ddp.register_comm_hook(None, deterministic_allreduce_hook)`` makes DDP gradients bitwise reproducible and
  equal to gradient accumulation over the ranks' micro-batches (at the cost of an all-gather instead of a
  reduction: N× the bytes received, fine for tests and small models).
* :func:`local_chunk` — the local shard of a full tensor for a DTensor's placements on a 1-D mesh, computed
  locally (``distribute_tensor(..., src_data_rank=None)``: no communication).
"""

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["deterministic_allreduce_hook", "is_dtensor", "local_chunk", "ordered_mean", "rank_and_world"]


def rank_and_world(group: Any = None) -> tuple[int, int]:
    """``(rank, world_size)`` in ``group``; ``(0, 1)`` without an initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (FSDP2 parameters and their gradients)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return isinstance(t, DTensor)


def ordered_mean(x: torch.Tensor, group: Any = None) -> torch.Tensor:
    """Mean of ``x`` over the ranks of ``group``, accumulated in rank order (bitwise the same on every rank)."""
    _, world = rank_and_world(group)
    if world == 1:
        return x.clone()
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous(), group=group)
    out = parts[0].clone()
    for p in parts[1:]:
        out += p
    return out.div_(world)


def deterministic_allreduce_hook(state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: the bucket's mean over ranks by :func:`ordered_mean` (``state``: process group or None).

    (This module has no ``from __future__ import annotations``: DDP checks the hook's annotations as objects.)
    """
    buf = bucket.buffer()
    fut: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    fut.set_result(ordered_mean(buf, state))
    return fut


def local_chunk(full: torch.Tensor, like: Any) -> torch.Tensor:
    """The local part of ``full`` (the global tensor) under the DTensor ``like``'s mesh and placements."""
    from torch.distributed.tensor import distribute_tensor

    d = distribute_tensor(full.detach(), like.device_mesh, like.placements, src_data_rank=None)
    return d.to_local()
