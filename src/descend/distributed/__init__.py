"""Distributed descend on ``torch.distributed`` (gloo on CPU, the same code on NCCL).

* :mod:`.sharded` — descend's matrix optimizers (Muon, SOAP, Shampoo, FRUGAL) on FSDP2/DTensor and DDP
  parameters, the per-matrix work split across ranks, DCP checkpoints that reshard N → M ranks.
* :mod:`._comm` — a bitwise-deterministic DDP all-reduce hook and shard helpers.
"""

from ._comm import deterministic_allreduce_hook, ordered_mean, rank_and_world
from .sharded import ELEMENTWISE, PER_TENSOR, ShardedOptimizer, assign_owners, default_mode

__all__ = ["ELEMENTWISE", "PER_TENSOR", "ShardedOptimizer", "assign_owners", "default_mode",
           "deterministic_allreduce_hook", "ordered_mean", "rank_and_world"]
