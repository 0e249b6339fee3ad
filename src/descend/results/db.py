"""The database layer every descend family shares: URLs, engines, JSON columns, owners, one error type.

``--storage`` is any SQLAlchemy URL (``postgresql://user@host/db`` with the ``postgres`` extra) or a bare path,
meaning an SQLite file.  In-memory databases are refused (results must outlive the process); every failure to
use a database is a :class:`StorageError` with a one-line message (the CLIs print it and exit with code 2).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

__all__ = ["StorageError", "check_sqlite_file", "create_tables", "database_errors", "digest", "dumps", "info_table",
           "loads",
           "make_engine", "normalize_url", "owner_alive", "owner_id"]


class StorageError(RuntimeError, ValueError):
    """The database cannot be used as a descend benchmark database (or a request conflicts with it)."""


def owner_id() -> str:
    """``host:pid:thread`` of the calling thread."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def owner_alive(owner: str) -> bool | None:
    """Whether the process of ``host:pid[:thread]`` is alive; ``None`` if on another host (cannot tell).

    ``True`` is only a hint (the pid may have been reused by another process): leases decide.
    """
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
    """JSON text of ``x`` (keys sorted; infinities and NaN kept as the strings "inf", "-inf", "nan")."""
    return json.dumps(_jsonable(x), sort_keys=True)


def digest(x: Any) -> str:
    """SHA-1 hex digest of :func:`dumps` ``(x)``: a stable key for a JSON-able value (settings, configurations)."""
    return hashlib.sha1(dumps(x).encode()).hexdigest()


def loads(s: str) -> Any:
    """The inverse of :func:`dumps`."""
    return _unjson(json.loads(s))


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL of ``--storage``: a bare path means an SQLite file, ``postgresql://`` means psycopg 3.

    Raises :class:`StorageError` for what cannot hold a benchmark: an empty string, an in-memory database
    (``sqlite://``, ``:memory:``), a directory, a malformed URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise StorageError("--storage is empty; give an SQLite file path or a database URL")
    memory = "an in-memory database would lose every result when the process ends; give a file path " \
             "(e.g. bench.db) or a server URL (postgresql://...)"
    if "://" not in url:
        if url.strip() == ":memory:":
            raise StorageError(f"--storage {url}: {memory}")
        path = Path(url).expanduser().resolve()
        if path.is_dir():
            raise StorageError(f"--storage {url} is a directory; give a database file path inside it, "
                               f"e.g. {path / 'bench.db'}")
        return f"sqlite:///{path}"
    try:
        u = sa.engine.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise StorageError(f"--storage {url!r} is not a database URL ({exc})") from None
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if db in ("", ":memory:") or db.startswith("file::memory:") or u.query.get("mode") == "memory":
            raise StorageError(f"--storage {u.render_as_string()}: {memory}")
        if Path(db).expanduser().is_dir():
            raise StorageError(f"--storage {u.render_as_string()} is a directory; give a database file path")
    if u.drivername in ("postgresql", "postgres"):  # the `postgres` extra installs psycopg 3
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, shown: str) -> sa.Engine:
    """``create_engine`` with one-line errors for an unknown dialect or a missing driver."""
    try:
        return sa.create_engine(url, future=True)
    except sa.exc.NoSuchModuleError:
        name = sa.engine.make_url(url).drivername
        raise StorageError(f"--storage {shown}: unknown database dialect {name!r}; use a file path, "
                           "sqlite:///path/bench.db or postgresql://user@host/db") from None
    except ImportError as exc:
        u = sa.engine.make_url(url)
        hint = "pip install 'descend[postgres]'" if u.get_backend_name() == "postgresql" else \
            f"install the Python package that provides {exc.name or 'it'}"
        raise StorageError(f"--storage {shown}: the {u.drivername} driver is not installed "
                           f"(no module {exc.name!r}); {hint}") from None
    except sa.exc.ArgumentError as exc:
        raise StorageError(f"--storage {shown}: {exc}") from None


def check_sqlite_file(path: Path, create: bool = True) -> None:
    if path.is_dir():
        raise StorageError(f"--storage {path} is a directory; give a database file path, e.g. {path / 'bench.db'}")
    if not path.exists():
        if not create:
            raise StorageError(f"no benchmark database at {path} (run `descend bench run --storage {path}` first)")
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    if path.stat().st_size == 0:
        if not create:
            raise StorageError(f"{path} is empty: no benchmark database there")
        return
    with open(path, "rb") as fh:
        header = fh.read(16)
    if header != b"SQLite format 3\x00":
        raise StorageError(f"{path} exists but is not an SQLite database (corrupt or foreign file); "
                           "choose another --storage path")


def info_table(meta: sa.MetaData) -> sa.Table:
    """``descend_info`` (key → value; schema versions) on ``meta``: its presence marks a database as descend's."""
    return sa.Table("descend_info", meta, sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))


@contextmanager
def database_errors(display_url: str, what: str) -> Iterator[None]:
    """Database failures inside the block → one-line :class:`StorageError` (no traceback for a bad database).

    ``what`` names the operation (``"open"`` reports an unreachable server or bad credentials as such);
    malformed stored JSON or values (``ValueError``, ``TypeError``, ``KeyError``) mean a corrupt or tampered
    database.
    """
    try:
        yield
    except StorageError:
        raise
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = detail[0] if detail else type(exc).__name__
        if isinstance(exc, sa.exc.OperationalError) and what == "open":  # server down, bad credentials, ...
            raise StorageError(f"cannot open {display_url}: {first}") from exc
        raise StorageError(f"{display_url} is not a usable descend database ({what}: {first})") from exc
    except (ValueError, TypeError, KeyError) as exc:
        raise StorageError(f"{display_url} is corrupt or was tampered with ({what}: "
                           f"{type(exc).__name__}: {exc})") from exc


def create_tables(engine: sa.Engine, display_url: str, meta: sa.MetaData, *, create: bool, marker: str,
                  missing: str, check_version: Callable[[sa.Connection], None]) -> None:
    """Create ``meta``'s tables in one transaction, refusing foreign databases.

    A database with tables but no ``descend_info`` belongs to something else; with ``create=False`` a database
    without the ``marker`` table is refused with ``f"{display_url} {missing}"``; ``check_version(conn)`` records
    or checks the family's schema version in ``descend_info``.  Two processes creating the tables at once: the
    loser retries.
    """
    for attempt in range(3):
        try:
            with engine.begin() as conn:
                tables = set(sa.inspect(conn).get_table_names())
                if tables and "descend_info" not in tables:
                    raise StorageError(f"{display_url} is a database of something else (tables: "
                                       f"{sorted(tables)[:5]}...); descend will not write into it — choose "
                                       "another --storage")
                if not create and marker not in tables:
                    raise StorageError(f"{display_url} {missing}")
                meta.create_all(conn)
                check_version(conn)
            return
        except (IntegrityError, sa.exc.ProgrammingError):
            if attempt == 2:
                raise
