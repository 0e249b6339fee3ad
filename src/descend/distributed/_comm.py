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


class Communicator:
    """How workers of one algorithm exchange messages: the same node code runs over torch.distributed (one or
    more workers per process) or in one process (:class:`InProcess`, for tests and simulations).

    * ``sum(contributions)``: ``contributions`` maps this process's worker ids to tensors of one shape; returns
      the sum over *all* workers (every process gets it).
    * ``neighbors(values, graph)``: ``values`` maps this process's node ids to tensors; returns, for each of
      them, ``{neighbor: value of neighbor}`` — messages only along the edges of ``graph`` (adjacency lists).
    * ``rounds``: number of communication rounds so far (one per call).
    """

    rounds: int = 0

    def sum(self, contributions: dict[int, torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def neighbors(self, values: dict[int, torch.Tensor], graph: list[list[int]]
                  ) -> dict[int, dict[int, torch.Tensor]]:  # pragma: no cover - interface
        raise NotImplementedError


class InProcess(Communicator):
    """All workers in this process: sums in worker-id order, neighbour values looked up directly."""

    def __init__(self) -> None:
        self.rounds = 0

    def sum(self, contributions: dict[int, torch.Tensor]) -> torch.Tensor:
        self.rounds += 1
        keys = sorted(contributions)
        out = contributions[keys[0]].clone()
        for k in keys[1:]:
            out += contributions[k]
        return out

    def neighbors(self, values: dict[int, torch.Tensor], graph: list[list[int]]
                  ) -> dict[int, dict[int, torch.Tensor]]:
        self.rounds += 1
        return {i: {j: values[j] for j in graph[i]} for i in values}


class TorchDistributed(Communicator):
    """Workers spread over the ranks of a process group: worker ``w`` lives on rank ``owner(w)``
    (``w % world_size`` by default).  ``sum`` is an all-reduce; ``neighbors`` sends each node's value to its
    graph neighbours with point-to-point ``isend``/``irecv`` (one message per directed edge between ranks)."""

    def __init__(self, group: Any = None, owner: Any = None) -> None:
        self.group, self.rounds = group, 0
        self.rank, self.world = rank_and_world(group)
        self.owner = owner if owner is not None else (lambda w: w % self.world)

    def sum(self, contributions: dict[int, torch.Tensor]) -> torch.Tensor:
        self.rounds += 1
        keys = sorted(contributions)
        out = contributions[keys[0]].clone()
        for k in keys[1:]:
            out += contributions[k]
        dist.all_reduce(out, group=self.group)
        return out

    def neighbors(self, values: dict[int, torch.Tensor], graph: list[list[int]]
                  ) -> dict[int, dict[int, torch.Tensor]]:
        self.rounds += 1
        like = next(iter(values.values()))
        out: dict[int, dict[int, torch.Tensor]] = {i: {} for i in values}
        ops = []
        for i in sorted(values):
            for j in graph[i]:
                if j in values:
                    out[i][j] = values[j]
                    continue
                peer = self._global(self.owner(j))
                buf = torch.empty_like(like)
                out[i][j] = buf
                ops.append(dist.P2POp(dist.irecv, buf, peer, self.group, tag=j * len(graph) + i))
                ops.append(dist.P2POp(dist.isend, values[i].contiguous(), peer, self.group, tag=i * len(graph) + j))
        if ops:
            for w in dist.batch_isend_irecv(ops):
                w.wait()
        return out

    def _global(self, r: int) -> int:
        return r if self.group is None else dist.get_global_rank(self.group, r)
