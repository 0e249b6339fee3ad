"""One results table for every study family that is not the optimizer benchmark's tuning machinery.

Claims, classic solvers, policy-gradient runs, surrogate optimisation, ... each store a :class:`Record` per
(family, study, method, seed, setting): the curve it produced (named columns of numbers), a summary (the
measured and predicted numbers, a verdict), the setting it ran with and the provenance.  The table lives in the
same database as ``descend bench`` (``--storage bench.db`` by default in every CLI), next to the benchmark's own
tables, so one file holds everything a user measured.

    store = ResultStore("bench.db")
    store.add(Record("claims", "E7", "min_norm", seed=0, setting={"n": 40, "p": 80},
                     curve={"p": [...], "risk": [...]}, summary={"verdict": "PASS"}))
    [r.summary for r in store.records("claims", study="E7")]

Writing is idempotent: a second :meth:`ResultStore.add` of the same key returns ``False`` and changes nothing,
so a rerun of an interrupted command only adds what is missing.  Records are JSON (no pickle): a database from
someone else can be read safely.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .db import (
    StorageError,
    check_sqlite_file,
    create_tables,
    database_errors,
    digest,
    dumps,
    info_table,
    loads,
    make_engine,
    normalize_url,
)
from .provenance import provenance as current_provenance

__all__ = ["Record", "ResultStore"]

SCHEMA_KEY, SCHEMA_VERSION = "results_schema", "1"
_NAME_MAX = 200

_meta = sa.MetaData()
_info = info_table(_meta)
_results = sa.Table(
    "descend_results", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("family", sa.String(_NAME_MAX), nullable=False),
    sa.Column("study", sa.String(_NAME_MAX), nullable=False),
    sa.Column("method", sa.String(_NAME_MAX), nullable=False),
    sa.Column("seed", sa.Integer, nullable=False),
    sa.Column("setting_key", sa.String(40), nullable=False),  # sha1 of the setting's JSON
    sa.Column("setting", sa.Text, nullable=False),
    sa.Column("curve", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("provenance", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
    sa.UniqueConstraint("family", "study", "method", "seed", "setting_key", name="uq_descend_result"),
)


def _name(what: str, value: object) -> str:
    if not (isinstance(value, str) and value.strip() and len(value) <= _NAME_MAX):
        raise ValueError(f"Record.{what} must be a non-empty string of at most {_NAME_MAX} characters, "
                         f"got {value!r}")
    return value


def _curve(curve: Mapping[str, Any]) -> dict[str, list[float]]:
    if not isinstance(curve, Mapping):
        raise ValueError(f"Record.curve must be a mapping of column name to numbers, got {type(curve).__name__}")
    out: dict[str, list[float]] = {}
    for k, col in curve.items():
        if not isinstance(k, str):
            raise ValueError(f"Record.curve: column names must be strings, got {k!r}")
        if hasattr(col, "tolist"):  # a tensor or an array
            col = col.tolist()
        try:
            out[k] = [float(v) for v in col]
        except (TypeError, ValueError):
            raise ValueError(f"Record.curve[{k!r}] must be a sequence of numbers") from None
    return out


def _json(what: str, value: Any) -> str:
    if not isinstance(value, Mapping):
        raise ValueError(f"Record.{what} must be a mapping, got {type(value).__name__}")
    try:
        return dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Record.{what} must be JSON-serialisable ({exc})") from None


@dataclass(frozen=True)
class Record:
    """One stored result: a method's run on a study at a setting and seed.

    ``curve``: named columns of numbers (e.g. ``{"step": [...], "loss": [...]}``, equal lengths by convention);
    ``summary``: the numbers a report tabulates (measured, predicted, verdict, cost, ...); ``setting``: the
    parameters the run used (part of the key: a rerun at another setting is another record).  ``provenance``
    defaults to this machine's (:func:`descend.results.provenance.provenance`).
    """

    family: str
    study: str
    method: str
    seed: int = 0
    setting: Mapping[str, Any] = field(default_factory=dict)
    curve: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] | None = None
    created: float = 0.0

    def __post_init__(self) -> None:
        for what in ("family", "study", "method"):
            _name(what, getattr(self, what))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**31:
            raise ValueError(f"Record.seed must be an int in [0, 2**31), got {self.seed!r}")
        object.__setattr__(self, "curve", _curve(self.curve))
        for what in ("setting", "summary"):
            _json(what, getattr(self, what))
        if self.provenance is not None:
            _json("provenance", self.provenance)

    @property
    def setting_key(self) -> str:
        return digest(self.setting)


class ResultStore:
    """The ``descend_results`` table of a descend database (see the module docstring).

    ``url``: an SQLAlchemy URL or an SQLite file path (the same ``--storage`` as ``descend bench``).
    ``create=False`` (read-only commands such as reports) refuses a database that does not exist.  Every
    failure to use the database is a :class:`~descend.results.db.StorageError` with a one-line message.
    """

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True) -> None:
        self.url = normalize_url(os.fspath(url) if isinstance(url, os.PathLike) else url)
        self.display_url = sa.engine.make_url(self.url).render_as_string(hide_password=True)
        if self.url.startswith("sqlite:///"):
            check_sqlite_file(Path(self.url.removeprefix("sqlite:///")), create)
        self.engine = make_engine(self.url, self.display_url)
        with self._errors("open"):
            self._init_schema(create)

    def _init_schema(self, create: bool) -> None:
        def check_version(conn: sa.Connection) -> None:
            row = conn.execute(sa.select(_info.c.value).where(_info.c.key == SCHEMA_KEY)).first()
            if row is None:
                conn.execute(_info.insert().values(key=SCHEMA_KEY, value=SCHEMA_VERSION))
            elif row[0] != SCHEMA_VERSION:
                raise StorageError(f"{self.display_url}: descend results schema {row[0]}, this version reads "
                                   f"{SCHEMA_VERSION}")

        create_tables(self.engine, self.display_url, _meta, create=create, marker="descend_results",
                      missing="holds no descend results yet", check_version=check_version)

    def _errors(self, what: str) -> AbstractContextManager[None]:
        """Database failures → one-line :class:`StorageError`."""
        return database_errors(self.display_url, what)

    def add(self, record: Record) -> bool:
        """Store ``record``; ``False`` (nothing written) when its key is already stored."""
        prov = dict(record.provenance) if record.provenance is not None else current_provenance()
        values = dict(family=record.family, study=record.study, method=record.method, seed=record.seed,
                      setting_key=record.setting_key, setting=dumps(record.setting), curve=dumps(record.curve),
                      summary=dumps(record.summary), provenance=dumps(prov), created=record.created or time.time())
        with self._errors("store a result"):
            try:
                with self.engine.begin() as conn:
                    conn.execute(_results.insert().values(**values))
            except IntegrityError:
                return False
        return True

    def has(self, family: str, study: str, method: str, seed: int, setting: Mapping[str, Any]) -> bool:
        """Whether that key is stored (to skip work already done)."""
        key = Record(family, study, method, seed, setting).setting_key
        t = _results.c
        with self._errors("read results"), self.engine.connect() as conn:
            q = sa.select(t.id).where(t.family == family, t.study == study, t.method == method, t.seed == seed,
                                      t.setting_key == key)
            return conn.execute(q).first() is not None

    def keys(self, family: str, study: str) -> set[tuple[str, int, str]]:
        """``(method, seed, setting_key)`` of every record of a study (one query: what a runner skips)."""
        t = _results.c
        with self._errors("read results"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.method, t.seed, t.setting_key).where(t.family == family,
                                                                                  t.study == study)).all()
        return {(m, int(k), key) for m, k, key in rows}

    def records(self, family: str, study: str | None = None, method: str | None = None) -> list[Record]:
        """The stored records of ``family`` (optionally one study / method), oldest first."""
        t = _results.c
        q = sa.select(_results).where(t.family == family)
        if study is not None:
            q = q.where(t.study == study)
        if method is not None:
            q = q.where(t.method == method)
        with self._errors("read results"), self.engine.connect() as conn:
            rows = conn.execute(q.order_by(t.created, t.id)).mappings().all()
            return [Record(r["family"], r["study"], r["method"], int(r["seed"]), _obj(r["setting"]),
                           _obj(r["curve"]), _obj(r["summary"]), _obj(r["provenance"]), float(r["created"]))
                    for r in rows]

    def studies(self, family: str) -> list[str]:
        """The studies of ``family`` with stored records, in order of their first record."""
        t = _results.c
        with self._errors("read results"), self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.study, sa.func.min(t.created)).where(t.family == family)
                                .group_by(t.study).order_by(sa.func.min(t.created))).all()
        return [r[0] for r in rows]


def _obj(text: str) -> dict[str, Any]:
    value = loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value

