"""Plans: a study's configuration stored under its name, so that workers and reports read what a run started.

The generic table ``descend_plans`` keys a plan by (family, name); the optimizer benchmark keeps its own
``descend_plan`` table (name → config; the layout of every database it has written), read and written by the same
functions.  Storing a name again with the same configuration is a no-op; with another configuration it is an error
("exists with another configuration"), so two processes cannot silently run different studies under one name.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from .db import StorageError, dumps, loads

__all__ = ["choose_plan", "load_plans", "plans_table", "save_plan"]


def plans_table(meta: sa.MetaData) -> sa.Table:
    """``descend_plans`` ((family, name) → config JSON, created) on ``meta``."""
    return sa.Table("descend_plans", meta, sa.Column("family", sa.String(100), primary_key=True),
                    sa.Column("name", sa.String(200), primary_key=True),
                    sa.Column("config", sa.Text, nullable=False), sa.Column("created", sa.Float, nullable=False))


def _where(table: sa.Table, family: str | None) -> list[Any]:
    if "family" in table.c:
        if family is None:
            raise ValueError(f"{table.name} keys plans by family: give one")
        return [table.c.family == family]
    return []


def save_plan(engine: sa.Engine, table: sa.Table, name: str, config: Mapping[str, Any],
              family: str | None = None) -> None:
    """Store (or confirm) plan ``name`` (of ``family``, for a table with a family column) in a plan ``table``; a
    different config under the same name raises :class:`StorageError`."""
    text = dumps(config)
    where = _where(table, family)
    with engine.begin() as conn:
        row = conn.execute(sa.select(table.c.config).where(table.c.name == name, *where)).first()
        if row is None:
            extra = {"family": family} if where else {}
            conn.execute(table.insert().values(name=name, config=text, created=time.time(), **extra))
        elif row[0] != text:
            raise StorageError(f"plan {name!r} already exists with another configuration; "
                               "use another --name or the same options")


def load_plans(engine: sa.Engine, table: sa.Table, family: str | None = None) -> dict[str, dict[str, Any]]:
    """Every plan of a plan ``table`` (of ``family``), oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.name, table.c.config).where(*_where(table, family))
                            .order_by(table.c.created)).all()
    return {name: loads(cfg) for name, cfg in rows}


def choose_plan(plans: Mapping[str, Any], name: str | None, where: str, what: str = "plan") -> str:
    """``name`` if it is one of ``plans``, the latest stored plan when ``name`` is ``None``; else a one-line
    :class:`ValueError` naming what exists (``where``: the database, for the message)."""
    if not plans:
        raise ValueError(f"no {what} in {where}")
    chosen = name or list(plans)[-1]
    if chosen not in plans:
        raise ValueError(f"no {what} {chosen!r}; plans: {', '.join(plans)}")
    return chosen

