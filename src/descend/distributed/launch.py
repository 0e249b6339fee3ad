"""Start a CPU process group without a cluster: ``spawn`` N gloo processes, or join the one ``torchrun`` made.

``spawn(fn, world_size, *args)`` starts ``world_size`` processes (``torch.multiprocessing.spawn``), each with a
gloo process group initialised from a file store in a temporary directory (no port to pick or race for) and one
intra-op thread (reductions inside a rank keep a fixed order), and returns ``[fn(rank, world_size, *args) for
every rank]``.  Results travel as JSON, so they must be JSON-serialisable; a failing rank re-raises in the parent.

``init_from_env()`` joins the group ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR``...) with the gloo backend, unless one is already initialised, and returns ``(rank, world)``.
Everything in :mod:`descend.distributed` runs unchanged on NCCL; these helpers are for CPU runs and tests.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._validate import check_int

__all__ = ["init_from_env", "spawn"]


def _entry(rank: int, world: int, store: str, out: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    os.environ.setdefault("DESCEND_COMPILE", "0")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))


def spawn(fn: Callable[..., Any], world_size: int, *args: Any) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` fresh gloo processes; their results, by rank."""
    check_int("world_size", world_size, 1)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.spawn(_entry, args=(world_size, store, tmp, fn, args), nprocs=world_size, join=True)
        return [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world_size)]


def init_from_env(backend: str = "gloo") -> tuple[int, int]:
    """Join the process group ``torchrun`` set up (one intra-op thread per rank); returns ``(rank, world)``."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        torch.set_num_threads(1)
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()
