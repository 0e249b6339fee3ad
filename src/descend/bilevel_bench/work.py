"""The bilevel family's adapter of the shared runner (:mod:`descend.results.runner`): its work items, their
leases and storage, and :func:`run_plan` — locally (``parallel`` threads), on Ray, or in any number of
``descend bilevel worker`` processes sharing one database.

Work items, per solver: every grid point on every tuning seed; once all of them are stored, the selected
configuration (:func:`~.summary.select_config`) on every final seed; then, for hyper-cleaning, the two reference
points per final seed.  An item is claimed by a lease (``bilevel/<plan>/<solver>/<phase>/<config>/<seed>``)
while it runs and stored once (the results table's unique key), so an interrupted plan resumes where it stopped
(a SIGKILLed process's leases are taken over at once on its host, after :data:`~descend.results.leases.LEASE`
seconds from another host) and workers never duplicate a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..results import runner
from ..results.db import owner_id
from ..results.provenance import provenance
from .runs import RunOutput, execute, get_problem
from .spec import PROBLEMS, SOLVERS, VALIDATION_KEY, Plan
from .storage import BilevelRun, BilevelStorage, config_key
from .summary import select_config

__all__ = ["BilevelItem", "BilevelWork", "ray_executor", "run_plan", "stored_plan"]

Executor = Callable[..., RunOutput]


@dataclass(frozen=True)
class BilevelItem:
    """One run to do: ``solver`` at grid point ``config`` (sorted (key, value) pairs) on ``seed``."""

    solver: str
    phase: str  # "tune" | "final" | "reference"
    config: tuple[tuple[str, float], ...]
    seed: int

    @property
    def cfg(self) -> dict[str, float]:
        return dict(self.config)


def _item(solver: str, phase: str, config: dict[str, float], seed: int) -> BilevelItem:
    return BilevelItem(solver, phase, tuple(sorted(config.items())), seed)


class BilevelWork:
    """A bilevel :class:`Plan` as :class:`descend.results.runner.Work` (see the module docstring).

    ``executor(solver, problem, config, seed, budget, batch_size, n_eval, threads)`` runs one item (default
    :func:`~.runs.execute` in this process; :func:`ray_executor` for Ray tasks).
    """

    def __init__(self, storage: BilevelStorage, plan: Plan, executor: Executor | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.storage, self.plan, self.executor = storage, plan, executor or execute
        self.say = say or (lambda _msg: None)
        self.name = plan.name or ""
        self._best: dict[str, dict[str, Any] | None] = {}  # solver → selected config (once its tuning is stored)
        self._prov = {**provenance(), "torch_threads": plan.threads}

    def lease_key(self, item: BilevelItem) -> str:
        return f"bilevel/{self.name}/{item.solver}/{item.phase}/{config_key(item.cfg)}/{item.seed}"

    def _stored(self) -> set[tuple[str, int, str]]:
        return self.storage.store.keys("bilevel", self.name)

    def _is_stored(self, stored: set[tuple[str, int, str]], item: BilevelItem) -> bool:
        from ..results.store import Record

        key = Record("bilevel", self.name, item.solver, item.seed, {"phase": item.phase, "config": item.cfg})
        return (item.solver, item.seed, key.setting_key) in stored

    def _best_config(self, solver: str) -> dict[str, Any] | None:
        if solver not in self._best:
            # in grid order (ties go to the first grid point), whichever process stored them first
            order = {config_key(c): i for i, c in enumerate(self.plan.grid_configs())}
            tuned = sorted((r for r in self.storage.runs(self.name, "tune", solver) if config_key(r.config) in order),
                           key=lambda r: (order[config_key(r.config)], r.seed))
            self._best[solver] = best = select_config(tuned, self.plan.select, self.plan.budget.x_key)
            if best is None:
                self.say(f"{solver}: every configuration diverged; no final runs")
        return self._best[solver]

    def _todo(self) -> Iterator[BilevelItem | None]:
        """Every item not stored yet, in order; ``None`` stands for a solver's final seeds while its tuning is
        unfinished (not yet startable, but missing)."""
        stored, plan = self._stored(), self.plan
        for solver in plan.solvers:
            tune = [_item(solver, "tune", c, k) for c in plan.grid_configs() for k in plan.tune_seed_list]
            left = [it for it in tune if not self._is_stored(stored, it)]
            if left:
                yield from left
                yield from (None for _ in plan.final_seed_list)
                continue
            best = self._best_config(solver)
            if best is not None:
                finals = (_item(solver, "final", best, k) for k in plan.final_seed_list)
                yield from (it for it in finals if not self._is_stored(stored, it))
        if PROBLEMS[plan.problem].references:
            refs = (_item("reference", "reference", {}, k) for k in plan.final_seed_list)
            yield from (it for it in refs if not self._is_stored(stored, it))

    def pending(self) -> Iterator[BilevelItem]:
        leases = self.storage.leases
        held = leases.leases(f"bilevel/{self.name}/")
        for item in self._todo():
            if item is not None and not leases.lease_live(held.get(self.lease_key(item))):
                yield item

    def missing(self) -> int:
        return sum(1 for _ in self._todo())

    def exclusive(self, item: BilevelItem) -> bool:
        return True

    def run(self, item: BilevelItem, progress: Callable[[int], None] | None = None) -> BilevelRun | None:
        plan, storage = self.plan, self.storage
        with storage.leases.claimed(self.lease_key(item)) as ok:
            if not ok or storage.has(self.name, item.solver, item.phase, item.cfg, item.seed):
                return None
            if item.phase == "reference":
                from ..bilevel.datasets import hyper_cleaning_baselines

                ref = hyper_cleaning_baselines(get_problem(plan.problem, item.seed))
                run = BilevelRun(self.name, plan.problem, "reference", "reference", {}, item.seed, [ref],
                                 provenance=self._prov)
            else:
                out = self.executor(item.solver, plan.problem, item.cfg, item.seed, str(plan.budget),
                                    plan.batch_size, plan.n_eval, plan.threads)
                prov = {**self._prov, "owner": owner_id(), "executed_by": out.executed_by,
                        "solver_class": SOLVERS[item.solver].solver, "solver_kwargs": out.solver_kwargs}
                run = BilevelRun(self.name, plan.problem, item.solver, item.phase, item.cfg, item.seed, out.history,
                                 out.diverged, out.wall_time, prov)
            if not storage.add(run):  # cannot happen while leases work: say so rather than hide it
                self.say(f"{item.phase} {item.solver} {item.cfg} seed={item.seed}: already stored by another "
                         "process; this run's result discarded")
                return None
        if item.phase != "reference":
            last = run.history[-1]
            self.say(f"{item.phase:5} {item.solver:10} step={item.cfg['step']:<5g} ratio={item.cfg['ratio']:<5g} "
                     f"seed={item.seed:<5d} val={last.get(VALIDATION_KEY, math.nan):.4g}"
                     f"{' DIVERGED' if run.diverged else ''} ({run.wall_time:.1f} s)")
        return run


def run_plan(plan: Plan, storage: BilevelStorage, progress: Callable[[str], None] | None = None, *,
             parallel: int = 1, executor: Executor | None = None, poll: float = 2.0,
             on_wait: Callable[[], None] | None = None, save: bool = True) -> int:
    """Run what is missing of ``plan`` (grid on the tuning seeds, then the selection on the final seeds, and the
    reference points) until all of it is stored — waiting for runs leased by other processes; returns the number
    of runs this call did.  ``save``: store the plan and this request first (workers run stored plans)."""
    import torch

    if save:
        storage.save_plan(plan.name or "", plan.config())
        storage.save_request(plan.name or "", plan.request())
    threads = torch.get_num_threads()
    torch.set_num_threads(plan.threads)
    try:
        return runner.drain(BilevelWork(storage, plan, executor, progress), parallel=parallel, poll=poll,
                            on_wait=on_wait)
    finally:
        torch.set_num_threads(threads)


def stored_plan(storage: BilevelStorage, name: str) -> Plan:
    """The plan ``name`` as stored (identity and the union of its requests), for a worker."""
    plans = storage.plans()
    if name not in plans:
        raise ValueError(f"no bilevel plan {name!r} in {storage.display_url}; plans: {', '.join(plans) or 'none'}")
    try:
        return Plan.from_stored(name, plans[name], storage.requests(name))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{storage.display_url}: bilevel plan {name!r} is corrupt or was tampered with "
                         f"({type(exc).__name__}: {exc})") from None


def ray_executor(address: str | None = None, num_cpus: int | None = None) -> Executor:
    """Each run as a Ray task of one CPU (:func:`descend.results.runner.ray_remote` of :func:`~.runs.execute`)."""
    run: Executor = runner.ray_remote(execute, address, num_cpus)
    return run
