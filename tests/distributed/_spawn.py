"""Run a function on N spawned gloo processes (CPU) and collect what each rank returns.

``spawn(fn, world_size, *args)`` starts ``world_size`` processes (``torch.multiprocessing.spawn``), each with
an initialised gloo process group (file store under a temporary directory: no port races), one intra-op
thread (so reductions inside a rank have a fixed order), and returns ``[fn(rank, world_size, *args) for each
rank]`` — values must be JSON-serialisable.  A failing rank re-raises in the parent.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.multiprocessing as mp


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
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        mp.spawn(_entry, args=(world_size, store, tmp, fn, args), nprocs=world_size, join=True)
        return [json.loads(Path(tmp, f"rank{r}.json").read_text()) for r in range(world_size)]
