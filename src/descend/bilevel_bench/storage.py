"""Where bilevel runs live: records of family ``"bilevel"`` in the shared results table (``descend_results``).

One :class:`~descend.results.store.Record` per run: study = the plan's name, method = the solver (``"reference"``
for hyper-cleaning's reference points), seed, setting = ``{"phase": tune | final | reference, "config": the grid
point}`` (part of the unique key, so a run is stored once), curve = the run's history as columns (oracle counts,
solver time, outer value, the problem's metrics), summary = ``{"problem", "diverged", "wall_time"}``,
provenance with the solver's class and resolved keyword arguments.  Plans are in the generic plans table (family
``"bilevel"``; every ``run``'s solvers and seeds under family ``"bilevel-request"``, which workers read); leases in
``descend_claims``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from ..results.db import digest, loads
from ..results.store import Record
from ..results.study import StudyStore

__all__ = ["FAMILY", "REQUESTS", "BilevelRun", "BilevelStorage", "config_key"]

FAMILY, REQUESTS = "bilevel", "bilevel-request"


def config_key(config: dict[str, Any]) -> str:
    """A grid point's short key (lease names, grouping): the first 16 hex digits of its :func:`digest`."""
    return digest(config)[:16]


@dataclass
class BilevelRun:
    """One stored run."""

    plan: str
    problem: str
    solver: str
    phase: str
    config: dict[str, Any]
    seed: int
    history: list[dict[str, float]]
    diverged: bool = False
    wall_time: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


def _columns(history: list[dict[str, float]]) -> dict[str, list[float]]:
    keys = list(history[0]) if history else []
    if any(list(row) != keys for row in history):
        raise ValueError("a run's history rows must all have the same fields")
    return {k: [row[k] for row in history] for k in keys}


def _rows(curve: dict[str, list[float]]) -> list[dict[str, float]]:
    n = {len(col) for col in curve.values()}
    if len(n) > 1:
        raise ValueError("a stored bilevel run has columns of different lengths")
    return [{k: col[i] for k, col in curve.items()} for i in range(n.pop() if n else 0)]


class BilevelStorage:
    """The bilevel runs and plans of a descend database (any ``--storage`` URL; see the module docstring)."""

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True) -> None:
        self.store = StudyStore(url, create=create)
        self.url, self.display_url, self.engine = self.store.url, self.store.display_url, self.store.engine
        self.leases = self.store.leases
        with self.store._errors("import the former bilevel tables"):
            self._import_legacy()

    def _import_legacy(self) -> None:
        """Copy a database's former ``descend_bilevel_plans`` / ``descend_bilevel_runs`` (descend before the shared
        core) into the shared tables, once; the old tables are left as they were."""
        tables = set(sa.inspect(self.engine).get_table_names())
        if not {"descend_bilevel_plans", "descend_bilevel_runs"} <= tables:
            return
        with self.engine.connect() as conn:
            if conn.execute(sa.text("SELECT value FROM descend_info WHERE key = 'bilevel_legacy'")).first():
                return
            plans = conn.execute(sa.text("SELECT name, config FROM descend_bilevel_plans ORDER BY created")).all()
            rows = conn.execute(sa.text("SELECT plan, problem, solver, phase, config, seed, diverged, wall_time, "
                                        "history, provenance FROM descend_bilevel_runs ORDER BY id")).all()
        for name, config in plans:
            self.save_plan(name, loads(config))
            mine = [r for r in rows if r[0] == name]
            solvers = list(dict.fromkeys(r[2] for r in mine if r[3] != "reference"))
            seeds = len({r[5] for r in mine if r[3] == "final"})
            if solvers and seeds:
                self.save_request(name, {"solvers": solvers, "seeds": seeds, "threads": 1})
        for plan, problem, solver, phase, config, seed, diverged, wall, history, prov in rows:
            self.add(BilevelRun(plan, problem, solver, phase, loads(config), int(seed), loads(history),
                                bool(diverged), float(wall), loads(prov)))
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO descend_info (key, value) VALUES ('bilevel_legacy', 'imported')"))
        except sa.exc.IntegrityError:  # another process imported them at the same time (the copies are idempotent)
            pass

    def save_plan(self, name: str, config: dict[str, Any]) -> None:
        self.store.save_plan(FAMILY, name, config)

    def plans(self) -> dict[str, dict[str, Any]]:
        return self.store.plans(FAMILY)

    def save_request(self, name: str, request: dict[str, Any]) -> None:
        """Record what a ``run`` asked of plan ``name`` (solvers, seeds): workers do the union of the requests."""
        self.store.save_plan(REQUESTS, f"{name}/{config_key(request)}", {"plan": name, **request})

    def requests(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.store.plans(REQUESTS).values() if r.get("plan") == name]

    def add(self, run: BilevelRun) -> bool:
        """Insert a finished run; ``False`` (nothing stored) if it is already there."""
        return self.store.add(Record(FAMILY, run.plan, run.solver, run.seed,
                                     setting={"phase": run.phase, "config": run.config},
                                     curve=_columns(run.history),
                                     summary={"problem": run.problem, "diverged": run.diverged,
                                              "wall_time": run.wall_time},
                                     provenance=run.provenance))

    def has(self, plan: str, solver: str, phase: str, config: dict[str, Any], seed: int) -> bool:
        return self.store.has(FAMILY, plan, solver, seed, {"phase": phase, "config": config})

    def runs(self, plan: str | None = None, phase: str | None = None, solver: str | None = None) -> list[BilevelRun]:
        out = []
        for r in self.store.records(FAMILY, study=plan, method=solver):
            s = r.setting
            if phase is not None and s["phase"] != phase:
                continue
            out.append(BilevelRun(plan=r.study, problem=r.summary["problem"], solver=r.method, phase=s["phase"],
                                  config=dict(s["config"]), seed=r.seed, history=_rows(dict(r.curve)),
                                  diverged=bool(r.summary["diverged"]), wall_time=float(r.summary["wall_time"]),
                                  provenance=dict(r.provenance or {})))
        return out
