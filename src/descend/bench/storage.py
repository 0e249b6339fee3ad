"""One database for a benchmark: Optuna's RDB storage for tuning, plus descend's tables for runs and curves.

Any SQLAlchemy URL works (``sqlite:///bench.db`` or a bare file path by default; ``postgresql://user@host/db``
— the ``postgres`` extra installs its driver — to share a study across machines).  In-memory databases are
refused: a benchmark must survive its process.  descend's tables (created next to Optuna's):

* ``descend_plan`` — the study plan written by ``descend bench run`` (workers read it);
* ``descend_runs`` — one row per finished trial (tuning and final runs) with its hyperparameters, final
  metrics, timings, provenance and the whole per-step curve as JSON.  A row is written in one transaction
  when its trial has finished, so a process killed mid-trial leaves nothing half-written; a unique key
  (cell, phase, seed, trial number) makes duplicates impossible;
* ``descend_claims`` — leases: which process is running which piece of work, until when (the shared lease
  table of :mod:`descend.results.leases`, with its heartbeat; :class:`Storage` delegates ``claim`` / ``release``
  / ``leases`` / ``holds`` / ``claimed`` to it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..results.db import (
    StorageError,
    check_sqlite_file,
    create_tables,
    database_errors,
    dumps,
    info_table,
    loads,
    make_engine,
    normalize_url,
    owner_id,
)
from ..results.leases import LEASE, Leases, check_lease, claims_table
from ..results.plans import load_plans, save_plan

__all__ = ["LEASE", "STALE_AFTER", "RunRow", "Storage", "StorageError", "normalize_url", "owner_id"]

STALE_AFTER = LEASE  # the former name
SCHEMA_VERSION = 2  # 2: leases (descend_claims.expires)

_meta = sa.MetaData()
_info = info_table(_meta)
_plan = sa.Table("descend_plan", _meta, sa.Column("name", sa.String(200), primary_key=True),
                 sa.Column("config", sa.Text, nullable=False), sa.Column("created", sa.Float, nullable=False))
_runs = sa.Table(
    "descend_runs", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("plan", sa.String(200), nullable=False),
    sa.Column("cell", sa.String(300), nullable=False),  # workload:scale:optimizer
    sa.Column("workload", sa.String(200), nullable=False),
    sa.Column("scale", sa.String(50), nullable=False),
    sa.Column("optimizer", sa.String(100), nullable=False),
    sa.Column("phase", sa.String(10), nullable=False),  # tune | final
    sa.Column("trial_number", sa.Integer, nullable=False),  # optuna trial number (tune) or -1 (final)
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("steps", sa.Integer, nullable=False),
    sa.Column("hyperparameters", sa.Text, nullable=False),
    sa.Column("final", sa.Text, nullable=False),
    sa.Column("diverged", sa.Boolean, nullable=False),
    sa.Column("train_time", sa.Float, nullable=False),
    sa.Column("eval_time", sa.Float, nullable=False),
    sa.Column("total_time", sa.Float, nullable=False),
    sa.Column("curve", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("plan", "cell", "phase", "seed", "trial_number", name="uq_descend_run"),
)
_claims = claims_table(_meta)


@dataclass
class RunRow:
    """A stored trial."""

    plan: str
    workload: str
    scale: str
    optimizer: str
    phase: str
    trial_number: int
    seed: int
    steps: int
    hyperparameters: dict[str, Any]
    final: dict[str, float]
    diverged: bool
    train_time: float
    eval_time: float
    total_time: float
    curve: list[dict[str, float]]
    provenance: dict[str, Any]

    @property
    def cell(self) -> str:
        return f"{self.workload}:{self.scale}:{self.optimizer}"


class Storage:
    """The benchmark database (see the module docstring).

    ``create=False`` (read-only commands such as ``bench report``) refuses a database that does not exist or
    holds no descend tables instead of creating one.  ``lease``: seconds a claim lives without a heartbeat.
    Every failure to use the database — bad URL, missing driver, unreachable server, corrupt or tampered
    content — is a :class:`StorageError` with a one-line message.
    """

    def __init__(self, url: str, *, create: bool = True, lease: float = LEASE) -> None:
        lease = check_lease(lease)
        self.url = normalize_url(url)
        self.display_url = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        self.lease = float(lease)
        if self.url.startswith("sqlite:///"):
            check_sqlite_file(Path(self.url.removeprefix("sqlite:///")), create)
        self.engine = make_engine(self.url, self.display_url)
        with self._errors("open"):
            self._init_schema(create)
        self._optuna: Any = None
        self.lease_table = Leases(self.engine, _claims, self._errors, self.lease)

    def _init_schema(self, create: bool) -> None:
        def check_version(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(_info.c.value).where(_info.c.key == "schema")).first()
            if row is None:
                conn.execute(_info.insert().values(key="schema", value=str(SCHEMA_VERSION)))
            elif row[0] == "1":  # claims are transient: the lease table replaces them
                _claims.drop(conn)
                _claims.create(conn)
                conn.execute(_info.update().where(_info.c.key == "schema").values(value=str(SCHEMA_VERSION)))
            elif row[0] != str(SCHEMA_VERSION):
                raise StorageError(f"{self.display_url}: descend schema {row[0]}, this version reads "
                                   f"{SCHEMA_VERSION}")

        create_tables(self.engine, self.display_url, _meta, create=create, marker="descend_info",
                      missing="holds no descend benchmark (run `descend bench run --storage ...` first)",
                      check_version=check_version)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        """Database failures → one-line :class:`StorageError` (no traceback for a bad database)."""
        return database_errors(self.display_url, what)

    # -------------------------------------------------------------------------------------------- optuna
    def optuna(self) -> Any:
        """Optuna's RDB storage on the same database (its trial heartbeats are written by our lease thread)."""
        if self._optuna is None:
            import warnings

            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            # descend drives trials with ask/tell and records their heartbeats itself (see claim(on_beat=...))
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            with self._errors("open Optuna's tables"):
                for attempt in range(5):  # workers starting together race to create Optuna's tables: retry
                    try:
                        self._optuna = optuna.storages.RDBStorage(
                            self.url, heartbeat_interval=max(1, round(self.lease / 4)),
                            grace_period=max(1, round(self.lease)))
                        break
                    except (IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
                        if attempt == 4:
                            raise
                        time.sleep(0.2 * (attempt + 1))
        return self._optuna

    # -------------------------------------------------------------------------------------------- plan
    def save_plan(self, name: str, config: Mapping[str, Any]) -> None:
        """Store (or confirm) the plan ``name``; a different config under the same name is an error."""
        with self._errors("save the plan"):
            save_plan(self.engine, _plan, name, config)

    def plans(self) -> dict[str, dict[str, Any]]:
        with self._errors("read the plans"):
            plans = load_plans(self.engine, _plan)
            for name, cfg in plans.items():
                if not isinstance(cfg, dict):
                    raise ValueError(f"plan {name!r} is not a mapping")
            return plans

    # -------------------------------------------------------------------------------------------- runs
    def add_run(self, row: RunRow) -> bool:
        """Insert a finished trial; returns ``False`` (and stores nothing) if it is already there."""
        values = dict(plan=row.plan, cell=row.cell, workload=row.workload, scale=row.scale,
                      optimizer=row.optimizer, phase=row.phase, trial_number=row.trial_number, seed=row.seed,
                      steps=row.steps, hyperparameters=dumps(row.hyperparameters), final=dumps(row.final),
                      diverged=row.diverged, train_time=row.train_time, eval_time=row.eval_time,
                      total_time=row.total_time, curve=dumps(row.curve), provenance=dumps(row.provenance),
                      created=time.time())
        try:
            with self._errors("store a run"), self.engine.begin() as conn:
                conn.execute(_runs.insert().values(**values))
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):
                return False
            raise
        return True

    def runs(self, plan: str | None = None, phase: str | None = None, cell: str | None = None) -> list[RunRow]:
        q = sa.select(_runs).order_by(_runs.c.id)
        if plan is not None:
            q = q.where(_runs.c.plan == plan)
        if phase is not None:
            q = q.where(_runs.c.phase == phase)
        if cell is not None:
            q = q.where(_runs.c.cell == cell)
        with self._errors("read the runs"):
            with self.engine.connect() as conn:
                rows = conn.execute(q).mappings().all()
            return [RunRow(plan=r["plan"], workload=r["workload"], scale=r["scale"], optimizer=r["optimizer"],
                           phase=r["phase"], trial_number=r["trial_number"], seed=r["seed"], steps=r["steps"],
                           hyperparameters=_mapping(r["hyperparameters"]), final=_mapping(r["final"]),
                           diverged=bool(r["diverged"]), train_time=r["train_time"], eval_time=r["eval_time"],
                           total_time=r["total_time"], curve=_records(r["curve"]),
                           provenance=_mapping(r["provenance"]))
                    for r in rows]

    def has_run(self, plan: str, cell: str, phase: str, seed: int, trial_number: int) -> bool:
        q = sa.select(sa.func.count()).select_from(_runs).where(
            _runs.c.plan == plan, _runs.c.cell == cell, _runs.c.phase == phase, _runs.c.seed == seed,
            _runs.c.trial_number == trial_number)
        with self._errors("read the runs"), self.engine.connect() as conn:
            return bool(conn.execute(q).scalar())

    def missing_finals(self, plan: Any) -> int:
        """How many final runs of ``plan`` (a :class:`~descend.bench.protocol.Plan`) are not stored yet."""
        want = plan.expected_finals()
        q = sa.select(_runs.c.cell, _runs.c.seed).where(_runs.c.plan == plan.name, _runs.c.phase == "final")
        with self._errors("read the runs"), self.engine.connect() as conn:
            have = {(c, k) for c, k in conn.execute(q).all()}
        return len(want - have)

    # -------------------------------------------------------------------------------------------- leases
    # the shared lease table (descend.results.leases): the benchmark's names for its methods
    def claim(self, key: str, owner: str | None = None, *, on_beat: Callable[[], None] | None = None) -> bool:
        """See :meth:`descend.results.leases.Leases.claim`."""
        return self.lease_table.claim(key, owner, on_beat=on_beat)

    def release(self, key: str, owner: str | None = None) -> None:
        self.lease_table.release(key, owner)

    def leases(self, prefix: str = "") -> dict[str, tuple[str, float]]:
        """``key -> (owner, expires)`` of the stored leases whose key starts with ``prefix``."""
        return self.lease_table.leases(prefix)

    def holds(self, key: str, owner: str | None = None) -> bool:
        """Whether the stored lease on ``key`` is still ``owner``'s (default: the calling thread's)."""
        return self.lease_table.holds(key, owner)

    def lease_live(self, lease: tuple[str, float] | None, now: float | None = None) -> bool:
        """Whether a lease from :meth:`leases` still binds others (unexpired, and not a gone pid of this host)."""
        return self.lease_table.lease_live(lease, now)

    def claimed(self, key: str, *, on_beat: Callable[[], None] | None = None) -> AbstractContextManager[bool]:
        return self.lease_table.claimed(key, on_beat=on_beat)


def _mapping(text: str) -> dict[str, Any]:
    value = loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _records(text: str) -> list[dict[str, Any]]:
    value = loads(text)
    if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
        raise ValueError("expected a JSON list of objects")
    return value
