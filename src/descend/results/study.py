"""A study database for any family: the results table plus the generic plans table and the leases.

:class:`StudyStore` is what a family's runner (:mod:`descend.results.runner`) needs: :class:`ResultStore`'s
idempotent records (the runs), ``save_plan`` / ``plans`` keyed by family (:mod:`.plans`), and ``leases``
(:mod:`.leases`) so that several processes can share the study.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from .db import create_tables
from .leases import LEASE, Leases, claims_table
from .plans import load_plans, plans_table, save_plan
from .store import ResultStore

__all__ = ["StudyStore"]

_meta = sa.MetaData()
_plans = plans_table(_meta)
_claims = claims_table(_meta)


class StudyStore(ResultStore):
    """:class:`ResultStore` + plans + leases on one database (``lease``: seconds a claim lives unrenewed)."""

    def __init__(self, url: str | os.PathLike[str], *, create: bool = True, lease: float = LEASE) -> None:
        super().__init__(url, create=create)
        with self._errors("open"):  # descend_info exists now: the database is descend's
            create_tables(self.engine, self.display_url, _meta, create=True, marker="descend_info", missing="",
                          check_version=lambda conn: None)
        self.leases = Leases(self.engine, _claims, self._errors, lease)

    def save_plan(self, family: str, name: str, config: Mapping[str, Any]) -> None:
        """Store (or confirm) ``family``'s plan ``name``; another configuration under that name is an error."""
        with self._errors("save the plan"):
            save_plan(self.engine, _plans, name, config, family)

    def plans(self, family: str) -> dict[str, dict[str, Any]]:
        """``family``'s plans, oldest first (a stored config that is not a JSON object: corrupt database)."""
        with self._errors("read the plans"):
            plans = load_plans(self.engine, _plans, family)
            for name, cfg in plans.items():
                if not isinstance(cfg, dict):
                    raise ValueError(f"plan {name!r} is not a mapping")
            return plans
