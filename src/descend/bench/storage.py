"""One database for a benchmark: Optuna's RDB storage for tuning, plus descend's tables for runs and curves.

Any SQLAlchemy URL works (``sqlite:///bench.db`` by default; PostgreSQL to share a study across machines).
descend's tables (created next to Optuna's):

* ``descend_plan`` — the study plan written by ``descend bench run`` (workers read it);
* ``descend_runs`` — one row per finished trial (tuning and final runs) with its hyperparameters, final
  metrics, timings, provenance and the whole per-step curve as JSON.  A row is written in one transaction
  when its trial has finished, so a process killed mid-trial leaves nothing half-written; a unique key
  (cell, phase, seed, trial number) makes duplicates impossible;
* ``descend_claims`` — which process is running which piece of work, so that concurrent workers do not
  duplicate work and a killed process's work is taken over (same host: its pid is gone; elsewhere: its
  heartbeat is older than ``STALE_AFTER`` seconds).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError, IntegrityError

__all__ = ["STALE_AFTER", "RunRow", "Storage", "StorageError", "owner_id"]

STALE_AFTER = 1800.0
SCHEMA_VERSION = 1

_meta = sa.MetaData()
_info = sa.Table("descend_info", _meta, sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.Text, nullable=False))
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
    sa.Column("heartbeat", sa.Float, nullable=False),
)


class StorageError(RuntimeError, ValueError):
    """The database cannot be used as a descend benchmark database (or a request conflicts with it)."""


def owner_id() -> str:
    """``host:pid:thread`` of the calling thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process of ``host:pid[:thread]`` is alive; ``None`` if on another host (cannot tell)."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if not owner or host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)  # "inf" / "nan": JSON has no infinities
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _unjson(x: Any) -> Any:
    if isinstance(x, str) and x in ("inf", "-inf", "nan"):
        return float(x)
    if isinstance(x, dict):
        return {k: _unjson(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return x


def dumps(x: Any) -> str:
    return json.dumps(_jsonable(x), sort_keys=True)


def loads(s: str) -> Any:
    return _unjson(json.loads(s))


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
    """The benchmark database (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        if self.url.startswith("sqlite:///"):
            _check_sqlite_file(Path(self.url.removeprefix("sqlite:///")))
        try:
            self.engine = sa.create_engine(self.url, future=True)
            with self.engine.begin() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                if tables and "descend_info" not in tables:
                    raise StorageError(f"{url} is a database of something else (tables: {sorted(tables)[:5]}...); "
                                       "descend will not write into it — choose another --storage")
                _meta.create_all(conn)
                row = conn.execute(sa.select(_info.c.value).where(_info.c.key == "schema")).first()
                if row is None:
                    conn.execute(_info.insert().values(key="schema", value=str(SCHEMA_VERSION)))
                elif int(row[0]) != SCHEMA_VERSION:
                    raise StorageError(f"{url}: descend schema {row[0]}, this version reads {SCHEMA_VERSION}")
        except DatabaseError as exc:
            raise StorageError(f"{url} is not a usable database: {exc.orig}") from exc
        self._optuna: Any = None

    # -------------------------------------------------------------------------------------------- optuna
    def optuna(self) -> Any:
        """Optuna's RDB storage on the same database (with heartbeats, so dead trials can be detected)."""
        if self._optuna is None:
            import warnings

            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            # descend drives trials with ask/tell and uses the heartbeat only to find dead trials
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed", category=UserWarning)
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            self._optuna = optuna.storages.RDBStorage(self.url, heartbeat_interval=60, grace_period=STALE_AFTER)
        return self._optuna

    # -------------------------------------------------------------------------------------------- plan
    def save_plan(self, name: str, config: Mapping[str, Any]) -> None:
        """Store (or confirm) the plan ``name``; a different config under the same name is an error."""
        save_plan(self.engine, _plan, name, config)

    def plans(self) -> dict[str, dict[str, Any]]:
        return load_plans(self.engine, _plan)

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
            with self.engine.begin() as conn:
                conn.execute(_runs.insert().values(**values))
        except IntegrityError:
            return False
        return True

    def runs(self, plan: str | None = None, phase: str | None = None, cell: str | None = None) -> list[RunRow]:
        q = sa.select(_runs).order_by(_runs.c.id)
        if plan is not None:
            q = q.where(_runs.c.plan == plan)
        if phase is not None:
            q = q.where(_runs.c.phase == phase)
        if cell is not None:
            q = q.where(_runs.c.cell == cell)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return [RunRow(plan=r["plan"], workload=r["workload"], scale=r["scale"], optimizer=r["optimizer"],
                       phase=r["phase"], trial_number=r["trial_number"], seed=r["seed"], steps=r["steps"],
                       hyperparameters=loads(r["hyperparameters"]), final=loads(r["final"]),
                       diverged=bool(r["diverged"]), train_time=r["train_time"], eval_time=r["eval_time"],
                       total_time=r["total_time"], curve=loads(r["curve"]), provenance=loads(r["provenance"]))
                for r in rows]

    def has_run(self, plan: str, cell: str, phase: str, seed: int, trial_number: int) -> bool:
        q = sa.select(sa.func.count()).select_from(_runs).where(
            _runs.c.plan == plan, _runs.c.cell == cell, _runs.c.phase == phase, _runs.c.seed == seed,
            _runs.c.trial_number == trial_number)
        with self.engine.connect() as conn:
            return bool(conn.execute(q).scalar())

    # -------------------------------------------------------------------------------------------- claims
    def claim(self, key: str, owner: str | None = None) -> bool:
        """Claim a piece of work; succeeds if unclaimed, or claimed by a dead or stale owner."""
        owner = owner or owner_id()
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(_claims.c.owner, _claims.c.heartbeat).where(_claims.c.key == key)).first()
            if row is not None:
                holder, beat = row
                alive = owner_alive(holder)
                if holder != owner and (alive is True or (alive is None and now - beat < STALE_AFTER)):
                    return False
                conn.execute(_claims.update().where(_claims.c.key == key, _claims.c.owner == holder)
                             .values(owner=owner, heartbeat=now))
                return True
            try:
                conn.execute(_claims.insert().values(key=key, owner=owner, heartbeat=now))
            except IntegrityError:
                return False
        return True

    def release(self, key: str, owner: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(_claims.delete().where(_claims.c.key == key, _claims.c.owner == (owner or owner_id())))

    @contextmanager
    def claimed(self, key: str) -> Iterator[bool]:
        ok = self.claim(key)
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


def normalize_url(url: str) -> str:
    """A bare file path means an SQLite file."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    return url


def _check_sqlite_file(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise StorageError(f"{path} exists but is not an SQLite database (corrupt or foreign file); "
                           "choose another --storage path")
