"""Storing classic-solver runs in the shared results store and the ``descend classic report`` page.

A run (:func:`run_and_store`) turns each :class:`~descend.classic.registry.Trace` a solver returns into one
:class:`descend.results.Record` (family ``"classic"``, study ``"<solver>/<problem>"``, the trace's method, the seed,
setting = the trace's setting plus ``quick``).  Reruns with the same key are skipped by the store.  The report
(:func:`write_report`) draws each solver's paper-style figure (the spec's ``figure``) from the stored traces of each
study's first stored seed and tabulates every record's summary.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from . import registry

__all__ = ["FAMILY", "run_and_store", "summary_rows", "write_report"]

FAMILY = "classic"


def run_and_store(spec: registry.SolverSpec, request: registry.RunRequest, store: Any) -> tuple[int, int]:
    """Run ``spec`` on ``request`` and add its traces to ``store`` (a :class:`descend.results.ResultStore`).
    Returns (records added, records already stored)."""
    from ..results import Record

    spec.check_problem(request.problem)
    traces = spec.run(request)
    added = skipped = 0
    for t in traces:
        rec = Record(FAMILY, f"{spec.name}/{request.problem}", t.method, request.seed,
                     {**t.setting, "quick": request.quick}, t.curve, t.summary)
        if store.add(rec):
            added += 1
        else:
            skipped += 1
    return added, skipped


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _rows(study: str, records: list[Any]) -> list[dict[str, str]]:
    return [{"study": study, "method": r.method, "seed": str(r.seed), **{k: _fmt(v) for k, v in r.summary.items()}}
            for r in records]


def summary_rows(store: Any) -> list[dict[str, str]]:
    """One row per stored record: study (solver/problem), method, seed and its summary values (the report's
    tables, as one; ``descend classic report`` prints it)."""
    return [row for study in store.studies(FAMILY) for row in _rows(study, store.records(FAMILY, study))]


def write_report(store: Any, out: str | Path) -> Path:
    """One HTML page: per solver and study, the paper-style figure and a table of every stored record."""
    from ..results.html import figure_html, table_html, write_page

    studies = store.studies(FAMILY)
    body: list[str] = []
    if not studies:
        body.append("<p>No classic results stored yet: run <code>descend classic run SOLVER --problem P</code>.</p>")
    known = set(registry.available())
    for study in studies:
        solver = study.split("/", 1)[0]
        records = store.records(FAMILY, study)
        spec = registry.get(solver) if solver in known else None
        title = spec.title if spec is not None else solver
        body.append(f"<h2>{html.escape(study)} — {html.escape(title)}</h2>")
        if spec is not None:
            body.append(f"<p>{html.escape(spec.paper)}</p>")
        first_seed = records[0].seed
        first_quick = records[0].setting.get("quick")
        shown = [r for r in records if r.seed == first_seed and r.setting.get("quick") == first_quick]
        if spec is not None and spec.figure is not None:
            traces = [registry.Trace(r.method, dict(r.curve), dict(r.summary), dict(r.setting)) for r in shown]
            body.append(figure_html(spec.figure(traces), spec.figure_caption or study))
        rows = [{k: v for k, v in row.items() if k != "study"} for row in _rows(study, records)]
        cols = list(dict.fromkeys(k for row in rows for k in row))
        body.append(table_html(rows, cols))
    return write_page("descend classic solvers", "\n".join(body), out)
