"""Executors: who runs the trials of a plan — the optimizer family's adapter of :mod:`descend.results.runner`.

* ``local`` — this process, one trial at a time (or ``parallel`` threads).
* ``ray`` — trials run as Ray tasks (``ray.init(address)`` for an existing cluster, or a local Ray with the
  machine's CPUs); this process only asks Optuna for configurations and stores the results.
* workers — start ``descend bench worker --storage URL`` in as many processes (or machines) as you like;
  each one runs :func:`drain` on the plans it finds in the database.  Leases in the database keep them from
  duplicating work.

No scheduler of our own: ordering and idempotence come from the database (see :mod:`.protocol`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..results import runner
from .protocol import Plan, WorkItem, pending_work, run_work
from .storage import RunRow, Storage
from .trial import TrialResult, run_trial

__all__ = ["OptimizerWork", "drain", "ray_executor"]

OnEvent = Callable[[str, WorkItem, RunRow | None], None]


class OptimizerWork:
    """A plan of the optimizer benchmark as :class:`descend.results.runner.Work`: its tuning trials, final
    seeds and ladder rungs (:func:`~descend.bench.protocol.pending_work`), run by ``executor`` (default
    :func:`~descend.bench.trial.run_trial` in this process)."""

    def __init__(self, storage: Storage, plan: Plan, executor: Callable[..., TrialResult] | None = None) -> None:
        self.storage, self.plan, self.executor = storage, plan, executor
        self.finished: set[str] = set()  # cells (and tuning rounds) found complete: never scanned again

    def pending(self) -> Iterator[WorkItem]:
        return pending_work(self.storage, self.plan, self.finished)

    def run(self, item: WorkItem, progress: Callable[[int], None] | None) -> RunRow | None:
        return run_work(self.storage, self.plan, item, progress=progress, executor=self.executor)

    def missing(self) -> int:
        return self.storage.missing_finals(self.plan)

    def exclusive(self, item: WorkItem) -> bool:
        # a cell's next tuning item is the same value for every trial it asks for: several may run at once
        return item.phase == "final"


def drain(storage: Storage, plan: Plan, *, parallel: int = 1, executor: Callable[..., TrialResult] | None = None,
          on_event: OnEvent | None = None, progress: Callable[[WorkItem, int], None] | None = None,
          poll: float = 2.0, on_wait: Callable[[], None] | None = None) -> int:
    """Run the plan's pending work until none is left; returns the number of trials this call ran.

    ``parallel`` > 1 keeps that many trials in flight (threads that wait on ``executor``, e.g. Ray tasks).
    Work leased by another live process is waited for, not duplicated; work whose lease expired (its
    process died, on any host) is taken over.  Returns only once every final run of the plan is stored;
    ``on_wait()`` is called whenever it waits for work leased by others.  Trials run descend's optimizers
    eagerly unless ``DESCEND_COMPILE`` says otherwise, set per trial (:func:`~descend.bench.trial.compile_setting`).
    """
    import torch._dynamo  # noqa: F401  (torch.optim imports it lazily at the first step: keep that out of trials)

    return runner.drain(OptimizerWork(storage, plan, executor), parallel=parallel, on_event=on_event,
                        progress=progress, poll=poll, on_wait=on_wait)


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Callable[..., TrialResult]:
    """An executor that runs each trial as a Ray task (one CPU each; torch threads as the plan says)."""
    remote = runner.ray_remote(run_trial, address, num_cpus)

    def run(*args: Any, progress: Callable[[int], None] | None = None, **kwargs: Any) -> TrialResult:
        result: TrialResult = remote(*args, **kwargs)
        if progress is not None:
            progress(args[5] if len(args) > 5 else kwargs.get("steps", 0))
        return result

    return run
