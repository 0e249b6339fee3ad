"""The runner every study family shares: pending work → claim → run → store, until the study is complete.

A family describes its study as a :class:`Work` (the adapter): which items can start now, how to do one (claim
its lease in the database, run it, store the result — ``None`` when another process did or is doing it), and
how many results the study must still end with.  :func:`drain` does the rest, for one process or many:

* ``parallel`` items in flight (threads; each may wait on a remote executor, e.g. a Ray task: :func:`ray_remote`);
* work leased by another live process is waited for, never duplicated; work whose lease expired (its process
  died, on any host) is offered again by the adapter and taken over;
* it returns only once :meth:`Work.missing` is 0, so a run never ends with results missing.

Idempotence and ordering come from the database (leases and unique keys), not from a scheduler, so any number
of ``drain`` calls — in this process, other processes or other machines — can share one study.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol, TypeVar

__all__ = ["Work", "drain", "ray_remote"]

I = TypeVar("I")  # a work item
R = TypeVar("R")  # what running an item stores (and returns)
R_co = TypeVar("R_co", covariant=True)


class Work(Protocol[I, R_co]):
    """A family's adapter (see the module docstring)."""

    def pending(self) -> Iterable[I]:
        """Items that can start now, in the order they should (re-scanned after every finished item)."""
        ...

    def run(self, item: I, progress: Callable[[int], None] | None) -> R_co | None:
        """Claim, run and store ``item``; ``None`` when someone else did (or is doing) it."""
        ...

    def missing(self) -> int:
        """How many results the study must end with are not stored yet."""
        ...

    def exclusive(self, item: I) -> bool:
        """Whether an item equal to ``item`` already in flight keeps this one from starting."""
        ...


def drain(work: Work[I, R], *, parallel: int = 1, on_event: Callable[[str, I, R | None], None] | None = None,
          progress: Callable[[I, int], None] | None = None, poll: float = 2.0,
          on_wait: Callable[[], None] | None = None) -> int:
    """Run ``work``'s pending items until none is left and nothing is missing; the number of items this call ran.

    ``on_event(kind, item, result)``: ``"start"`` (result ``None``), ``"done"`` or ``"skipped"`` (someone else
    had it); ``progress(item, k)`` is forwarded to :meth:`Work.run`; ``on_wait()`` is called whenever this call
    waits for work leased by other processes (every ``poll`` seconds).
    """
    parallel = max(int(parallel), 1)
    done = 0
    in_flight: dict[Future[R | None], I] = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while True:
            for item in work.pending():
                if len(in_flight) >= parallel:
                    break
                if work.exclusive(item) and item in in_flight.values():
                    continue
                if on_event:
                    on_event("start", item, None)
                cb = (lambda k, item=item: progress(item, k)) if progress else None
                in_flight[pool.submit(work.run, item, cb)] = item
            if not in_flight:
                if work.missing() == 0:
                    return done
                # nothing to start, yet results are missing: other processes hold leases on the work left;
                # wait until they finish or their leases expire (then the adapter offers that work again)
                if on_wait:
                    on_wait()
                time.sleep(poll)
                continue
            completed, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            progressed = False
            for fut in completed:
                item = in_flight.pop(fut)
                result = fut.result()
                progressed |= result is not None
                done += result is not None
                if on_event:
                    on_event("done" if result is not None else "skipped", item, result)
            if not progressed:
                time.sleep(poll)  # the work left is claimed by other live processes: wait for them


def ray_remote(fn: Callable[..., Any], address: str | None = None, num_cpus: int | None = None) -> Callable[..., Any]:
    """``fn`` run as a Ray task of one CPU (``ray.init(address)`` for a cluster, else a local Ray of ``num_cpus``):
    the returned callable blocks on the task's result (call it from :func:`drain`'s threads)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, num_cpus=num_cpus if address is None else None, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1)(fn)

    def run(*args: Any, **kwargs: Any) -> Any:
        return ray.get(remote.remote(*args, **kwargs))

    return run
