"""One database for a benchmark: Optuna's RDB storage for tuning, plus descend's tables for runs and curves.

Any SQLAlchemy URL works (``sqlite:///bench.db`` or a bare file path by default; ``postgresql://user@host/db``
— the ``postgres`` extra installs its driver — to share a study across machines).  In-memory databases are
refused: a benchmark must survive its process.  descend's tables (created next to Optuna's):

* ``descend_plan`` — the study plan written by ``descend bench run`` (workers read it);
* ``descend_runs`` — one row per finished trial (tuning and final runs) with its hyperparameters, final
  metrics, timings, provenance and the whole per-step curve as JSON.  A row is written in one transaction
  when its trial has finished, so a process killed mid-trial leaves nothing half-written; a unique key
  (cell, phase, seed, trial number) makes duplicates impossible;
* ``descend_claims`` — leases: which process is running which piece of work, until when.  A lease lasts
  ``lease`` seconds (:data:`LEASE`) and is renewed by a heartbeat thread every ``lease / 4`` seconds while
  its holder works; work whose lease has expired is taken over by anyone, whatever host or pid held it (a
  holder on this host whose pid is gone is taken over at once).  Hosts sharing a database need clocks that
  agree to well within a lease (NTP).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
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
    owner_alive,
    owner_id,
)

__all__ = ["LEASE", "STALE_AFTER", "RunRow", "Storage", "StorageError", "normalize_url", "owner_id"]

#: Seconds a claim lives without a heartbeat (the heartbeat renews it every ``LEASE / 4`` seconds).
LEASE = 120.0
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
_claims = sa.Table(
    "descend_claims", _meta,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("heartbeat", sa.Float, nullable=False),  # last renewal (time.time() of the holder)
    sa.Column("expires", sa.Float, nullable=False),  # the lease: free for anyone after this time
)


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
        if not (isinstance(lease, (int, float)) and math.isfinite(lease) and lease > 0):
            raise ValueError(f"lease must be a finite number of seconds > 0, got {lease!r}")
        self.url = normalize_url(url)
        self.display_url = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        self.lease = float(lease)
        if self.url.startswith("sqlite:///"):
            check_sqlite_file(Path(self.url.removeprefix("sqlite:///")), create)
        self.engine = make_engine(self.url, self.display_url)
        with self._errors("open"):
            self._init_schema(create)
        self._optuna: Any = None
        self._held: dict[str, tuple[str, Callable[[], None] | None]] = {}
        self._lock = threading.Lock()
        self._beat: threading.Thread | None = None

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
    def claim(self, key: str, owner: str | None = None, *, on_beat: Callable[[], None] | None = None) -> bool:
        """Take the lease on a piece of work: succeeds if it is free, ours, expired, or held by a pid of this
        host that is gone.  While held, a heartbeat thread renews it (and calls ``on_beat``) until
        :meth:`release`."""
        owner = owner or owner_id()
        now = time.time()
        try:
            with self._errors("claim work"), self.engine.begin() as conn:
                row = conn.execute(sa.select(_claims.c.owner, _claims.c.expires).where(_claims.c.key == key)).first()
                if row is None:
                    conn.execute(_claims.insert().values(key=key, owner=owner, heartbeat=now, expires=now + self.lease))
                else:
                    holder, expires = row
                    if holder != owner and expires > now and owner_alive(holder) is not False:
                        return False
                    # compare-and-swap: of two processes taking over the same expired lease, one wins
                    taken = conn.execute(_claims.update().where(_claims.c.key == key, _claims.c.owner == holder,
                                                                _claims.c.expires == expires)
                                         .values(owner=owner, heartbeat=now, expires=now + self.lease))
                    if taken.rowcount != 1:
                        return False
        except StorageError as exc:
            if isinstance(exc.__cause__, IntegrityError):  # inserted by another process just now
                return False
            raise
        if on_beat is not None:
            on_beat()  # the first heartbeat, at once (short trials end before the thread's first beat)
        with self._lock:
            self._held[key] = (owner, on_beat)
            if self._beat is None:
                self._beat = threading.Thread(target=self._heartbeat, name="descend-lease", daemon=True)
                self._beat.start()
        return True

    def release(self, key: str, owner: str | None = None) -> None:
        owner = owner or owner_id()
        with self._lock:
            if self._held.get(key, (None,))[0] == owner:
                del self._held[key]
        with self._errors("release work"), self.engine.begin() as conn:
            conn.execute(_claims.delete().where(_claims.c.key == key, _claims.c.owner == owner))

    def leases(self, prefix: str = "") -> dict[str, tuple[str, float]]:
        """``key -> (owner, expires)`` of the stored leases whose key starts with ``prefix``."""
        q = sa.select(_claims.c.key, _claims.c.owner, _claims.c.expires)
        if prefix:
            q = q.where(_claims.c.key.startswith(prefix, autoescape=True))
        with self._errors("read the leases"), self.engine.connect() as conn:
            return {k: (o, e) for k, o, e in conn.execute(q).all()}

    def holds(self, key: str, owner: str | None = None) -> bool:
        """Whether the stored lease on ``key`` is still ``owner``'s (default: the calling thread's)."""
        q = sa.select(_claims.c.owner).where(_claims.c.key == key)
        with self._errors("read the leases"), self.engine.connect() as conn:
            return conn.execute(q).scalar() == (owner or owner_id())

    def lease_live(self, lease: tuple[str, float] | None, now: float | None = None) -> bool:
        """Whether a lease from :meth:`leases` still binds others (unexpired, and not a gone pid of this host)."""
        if lease is None:
            return False
        holder, expires = lease
        return expires > (time.time() if now is None else now) and owner_alive(holder) is not False

    def _heartbeat(self) -> None:
        """Renew this process's leases every ``lease / 4`` s; ends when none is held (restarted by claim)."""
        while True:
            time.sleep(self.lease / 4)
            with self._lock:
                held = dict(self._held)
                if not held:
                    self._beat = None
                    return
            now = time.time()
            for key, (owner, on_beat) in held.items():
                try:
                    with self.engine.begin() as conn:
                        renewed = conn.execute(_claims.update().where(_claims.c.key == key, _claims.c.owner == owner)
                                               .values(heartbeat=now, expires=now + self.lease)).rowcount
                    if on_beat is not None:
                        on_beat()
                except Exception:  # a locked or unreachable database: retry at the next beat
                    continue
                if not renewed:  # taken over (we were stalled longer than the lease) or released meanwhile
                    with self._lock:
                        if self._held.get(key, (None,))[0] == owner:
                            del self._held[key]

    @contextmanager
    def claimed(self, key: str, *, on_beat: Callable[[], None] | None = None) -> Iterator[bool]:
        ok = self.claim(key, on_beat=on_beat)
        try:
            yield ok
        finally:
            if ok:
                self.release(key)


def save_plan(engine: sa.Engine, table: sa.Table, name: str, config: Mapping[str, Any]) -> None:
    """Store (or confirm) plan ``name`` in a plan ``table`` (name, config, created); a different config under the
    same name raises :class:`StorageError`.  Shared by the optimizer and the bilevel benchmarks."""
    text = dumps(config)
    with engine.begin() as conn:
        row = conn.execute(sa.select(table.c.config).where(table.c.name == name)).first()
        if row is None:
            conn.execute(table.insert().values(name=name, config=text, created=time.time()))
        elif row[0] != text:
            raise StorageError(f"plan {name!r} already exists with another configuration; "
                               "use another --name or the same options")


def load_plans(engine: sa.Engine, table: sa.Table) -> dict[str, dict[str, Any]]:
    """Every plan of a plan ``table``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.name, table.c.config).order_by(table.c.created)).all()
    return {name: loads(cfg) for name, cfg in rows}


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
