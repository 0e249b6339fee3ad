"""Executors: who runs the trials of a plan.

* ``local`` — this process, one trial at a time.
* ``ray`` — trials run as Ray tasks (``ray.init(address)`` for an existing cluster, or a local Ray with the
  machine's CPUs); this process only asks Optuna for configurations and stores the results.
* workers — start ``descend bench worker --storage URL`` in as many processes (or machines) as you like;
  each one runs :func:`drain` on the plans it finds in the database.  Claims in the database keep them from
  duplicating work.

No scheduler of our own: ordering and idempotence come from the database (see :mod:`.protocol`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from ..optim._fused import ENV_VAR
from .protocol import Plan, WorkItem, pending_work, run_work
from .storage import RunRow, Storage
from .trial import TrialResult, run_trial

__all__ = ["drain", "ray_executor"]

OnEvent = Callable[[str, WorkItem, RunRow | None], None]


def drain(storage: Storage, plan: Plan, *, parallel: int = 1, executor: Callable[..., TrialResult] | None = None,
          on_event: OnEvent | None = None, progress: Callable[[WorkItem, int], None] | None = None,
          poll: float = 2.0, on_wait: Callable[[], None] | None = None) -> int:
    """Run the plan's pending work until none is left; returns the number of trials this call ran.

    ``parallel`` > 1 keeps that many trials in flight (threads that wait on ``executor``, e.g. Ray tasks).
    Work leased by another live process is waited for, not duplicated; work whose lease expired (its
    process died, on any host) is taken over.  Returns only once every final run of the plan is stored;
    ``on_wait()`` is called whenever it waits for work leased by others.
    """
    parallel = max(parallel, 1)
    import torch._dynamo  # noqa: F401  (torch.optim imports it lazily at the first step: keep that out of trials)

    # Trials run descend's optimizers eagerly unless DESCEND_COMPILE says otherwise: a compiled default path
    # costs 10-45 s on its first step in every trial process, more than a whole quick-suite trial, and the
    # benchmark's default cost axis is steps (wall-time profiles are labelled as this machine's).  Set
    # DESCEND_COMPILE=1 to benchmark the compiled paths (Ray workers inherit the variable).
    os.environ.setdefault(ENV_VAR, "0")

    done = 0
    in_flight: dict[Future[RunRow | None], WorkItem] = {}
    finished: set[str] = set()
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while True:
            for item in pending_work(storage, plan, finished):
                if len(in_flight) >= parallel:
                    break
                if item.phase == "final" and item in in_flight.values():
                    continue
                if on_event:
                    on_event("start", item, None)
                cb = (lambda k, item=item: progress(item, k)) if progress else None
                in_flight[pool.submit(run_work, storage, plan, item, progress=cb, executor=executor)] = item
            if not in_flight:
                if storage.missing_finals(plan) == 0:
                    return done
                # nothing to start, yet the plan is unfinished: other processes hold leases on the tuning
                # trials left; wait until they finish or their leases expire (then their trials are reclaimed)
                if on_wait:
                    on_wait()
                time.sleep(poll)
                continue
            completed, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)  # not `finished`: the cell cache
            progressed = False
            for fut in completed:
                item = in_flight.pop(fut)
                row = fut.result()
                progressed |= row is not None
                done += row is not None
                if on_event:
                    on_event("done" if row is not None else "skipped", item, row)
            if not progressed:
                time.sleep(poll)  # the work left is claimed by other live processes: wait for them


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Callable[..., TrialResult]:
    """An executor that runs each trial as a Ray task (one CPU each; torch threads as the plan says)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)

    @ray.remote(num_cpus=1)
    def _remote(*args: Any, **kwargs: Any) -> TrialResult:
        return run_trial(*args, **kwargs)

    def run(*args: Any, progress: Callable[[int], None] | None = None, **kwargs: Any) -> TrialResult:
        result = ray.get(_remote.remote(*args, **kwargs))
        if progress is not None:
            progress(args[5] if len(args) > 5 else kwargs.get("steps", 0))
        return result

    return run
