"""Summarising a bilevel plan: selection by the median validation curve, bands, targets, tables.

* the configuration whose **median validation curve** (the outer objective f(x, y) on the full validation data,
  against the budget's unit) is best at the end (``select="final"``, default) or on average (``"auc"``) is
  rerun on K fresh seeds (:func:`select_config`);
* the report metric (test error, or ‖∇h‖² / the upper-level value on synthetic problems) is summarised per solver
  over those seeds: final value median and 20–80 % band, solver time and oracle calls to a target (misses counted
  as not reached); a selected configuration on the edge of the grid (first or last step size or ratio) is
  flagged, since the best one may lie beyond the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..results.curves import steps_to_target
from ..results.plans import choose_plan
from .spec import GRIDS, PROBLEMS, VALIDATION_KEY, ProblemSpec
from .storage import BilevelRun, BilevelStorage, config_key

__all__ = ["BilevelSummary", "SolverResult", "band", "edge_warnings", "grid_edges", "markdown_table",
           "select_config", "summarize", "table_rows"]

def _median(vals: Iterable[float]) -> float:
    return _quantile(list(vals), 0.5)


def _quantile(vals: list[float], q: float) -> float:
    """Linear-interpolation quantile that tolerates +inf (diverged runs); NaN for an empty list."""
    v = sorted(x for x in vals if not math.isnan(x))
    if not v:
        return math.nan
    pos = q * (len(v) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or v[lo] == v[hi]:
        return v[lo]
    if math.isinf(v[hi]):
        return math.inf
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _value_at(hist: list[dict[str, float]], x_key: str, y_key: str, x: float) -> float:
    """Value of the last record with ``x_key ≤ x`` (a run's state between evaluations)."""
    y = math.nan
    for row in hist:
        if row.get(x_key, math.inf) <= x + 1e-12:
            y = row.get(y_key, math.nan)
        else:
            break
    return y


def band(histories: Sequence[list[dict[str, float]]], x_key: str, y_key: str, points: int = 60,
         lo_q: float = 0.2, hi_q: float = 0.8) -> tuple[list[float], list[float], list[float], list[float]]:
    """(xs, 20 %, median, 80 %) of ``y_key`` over runs on a common grid of ``x_key`` (up to the shortest run's
    end, so every quantile is over all runs)."""
    ends = [h[-1].get(x_key, 0.0) for h in histories if h]
    if not ends:
        return [], [], [], []
    end = min(ends)
    xs = [end * i / (points - 1) for i in range(points)] if end > 0 else [0.0]
    lo, mid, hi = [], [], []
    for x in xs:
        vals = [_value_at(h, x_key, y_key, x) for h in histories]
        lo.append(_quantile(vals, lo_q))
        mid.append(_quantile(vals, 0.5))
        hi.append(_quantile(vals, hi_q))
    return xs, lo, mid, hi


@dataclass
class SolverResult:
    solver: str
    config: dict[str, Any]
    histories: list[list[dict[str, float]]]
    finals: list[float]
    times_to_target: list[float] = field(default_factory=list)
    oracles_to_target: list[float] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)  # see :func:`grid_edges`


@dataclass
class BilevelSummary:
    plan: str
    problem: str
    metric: str
    target: float
    results: dict[str, SolverResult]
    references: dict[str, list[float]]
    config: dict[str, Any]
    provenance: dict[str, Any]
    tuned_runs: int


def grid_edges(grid: str, config: dict[str, Any]) -> list[str]:
    """Where ``config`` sits on the edge of ``grid``: e.g. ``["step at the largest grid value 3"]`` (empty when
    every searched axis is interior).  An axis with one value was not searched and is not reported; on an axis
    with two values every choice is an edge."""
    notes = []
    for axis, values in zip(("step", "ratio"), GRIDS[grid], strict=True):
        v = config.get(axis)
        if len(values) < 2 or v is None:
            continue
        if v == min(values):
            notes.append(f"{axis} at the smallest grid value {v:g}")
        elif v == max(values):
            notes.append(f"{axis} at the largest grid value {v:g}")
    return notes


def edge_warnings(summary: BilevelSummary) -> list[str]:
    """One line per solver whose selected configuration is on the grid's edge."""
    return [f"warning: {s}: selected configuration on the edge of grid {summary.config.get('grid')!r} "
            f"({'; '.join(r.edges)}); the best one may lie outside the grid (try a larger --grid)"
            for s, r in summary.results.items() if r.edges]


def _target(spec: ProblemSpec, results: dict[str, SolverResult]) -> float:
    meds = [_median(r.finals) for r in results.values()]
    best = min((m for m in meds if math.isfinite(m)), default=math.nan)
    kind, _, val = spec.target.partition(":")
    return best + float(val) if kind == "abs" else best * float(val)


def summarize(storage: BilevelStorage, plan: str | None = None, target: float | None = None) -> BilevelSummary:
    plans = storage.plans()
    name = choose_plan(plans, plan, storage.url, "bilevel plan")
    cfg = plans[name]
    spec = PROBLEMS[cfg["problem"]]
    key = spec.report_key
    results: dict[str, SolverResult] = {}
    for r in sorted(storage.runs(name, "final"), key=lambda r: r.seed):  # seed order, whoever stored first
        res = results.setdefault(r.solver, SolverResult(r.solver, r.config, [], [],
                                                        edges=grid_edges(cfg["grid"], r.config)))
        res.histories.append(r.history)
        res.finals.append(math.inf if r.diverged else r.history[-1].get(key, math.nan))
    tgt = _target(spec, results) if target is None else target
    for res in results.values():
        for h in res.histories:
            ys = [row.get(key, math.nan) for row in h]
            ys = [math.inf if math.isnan(y) else y for y in ys]
            res.times_to_target.append(steps_to_target([row["time"] for row in h], ys, tgt))
            res.oracles_to_target.append(steps_to_target([row["oracle_calls"] for row in h], ys, tgt))
    refs: dict[str, list[float]] = {}
    for r in storage.runs(name, "reference"):
        for k, v in r.history[0].items():
            refs.setdefault(k, []).append(v)
    runs = storage.runs(name)
    prov = runs[0].provenance if runs else {}
    return BilevelSummary(name, cfg["problem"], key, tgt, dict(sorted(results.items())), refs, cfg, prov,
                          sum(r.phase == "tune" for r in runs))


def _fmt(x: float, digits: int = 4) -> str:
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "diverged" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def _to_target(vals: list[float], digits: int = 3) -> str:
    """Median over seeds (misses count as +inf) and on how many seeds the target was reached, in words."""
    n, reached, med = len(vals), sum(math.isfinite(v) for v in vals), _median(vals)
    if reached == 0:
        return f"not reached on any of {n} seed{'s' if n != 1 else ''}"
    if not med < math.inf:
        return f"median not reached; reached on {reached} of {n} seeds"
    if reached == n:
        return f"{_fmt(med, digits)} (reached on all {n} seed{'s' if n != 1 else ''})"
    return f"{_fmt(med, digits)} (reached on {reached} of {n} seeds)"


def table_rows(summary: BilevelSummary) -> list[dict[str, str]]:
    """Per solver: final metric median [20 %, 80 %], time and oracle calls to target (median over seeds, misses
    = not reached; reached/seeds), the selected config; then the reference points."""
    rows = []
    for s, r in summary.results.items():
        rows.append({"solver": s, "final": f"{_fmt(_median(r.finals))} [{_fmt(_quantile(r.finals, 0.2))}, "
                                           f"{_fmt(_quantile(r.finals, 0.8))}]",
                     "time_to_target": _to_target(r.times_to_target),
                     "oracles_to_target": _to_target(r.oracles_to_target),
                     "config": f"step={r.config.get('step')}/L ratio={r.config.get('ratio')}"
                               + (f" (grid edge: {'; '.join(r.edges)})" if r.edges else ""),
                     "seeds": str(len(r.finals))})
    labels = {"val_only_test_error": "reference: clean validation only",
              "true_labels_test_error": "reference: true labels"}
    for k, vals in summary.references.items():
        rows.append({"solver": labels.get(k, k), "final": f"{_fmt(_median(vals))} [{_fmt(_quantile(vals, 0.2))}, "
                                                          f"{_fmt(_quantile(vals, 0.8))}]",
                     "time_to_target": "", "oracles_to_target": "", "config": "L-BFGS, full batch",
                     "seeds": str(len(vals))})
    return rows


def markdown_table(summary: BilevelSummary) -> str:
    head = (f"| solver | final {summary.metric} median [20 %, 80 %] | time to {_fmt(summary.target)} (s) | "
            "oracle calls to target | selected config |\n|---|---|---|---|---|\n")
    return head + "".join(f"| {r['solver']} | {r['final']} | {r['time_to_target']} | {r['oracles_to_target']} | "
                          f"{r['config']} |\n" for r in table_rows(summary))


def select_config(runs: Sequence[BilevelRun], how: str = "final", x_key: str = "time") -> dict[str, Any] | None:
    """The config with the best median validation curve (lowest; diverged = +inf) over its seeds; ``None`` if
    every config's median diverged.

    ``how="final"``: median over seeds of the last validation value; ``"auc"``: mean over a common grid of
    ``x_key`` (the budget's unit, so that the choice is as reproducible as the budget) of the median curve.
    Ties go to the first config in the order of ``runs``.
    """
    by: dict[str, list[BilevelRun]] = {}
    for r in runs:
        by.setdefault(config_key(r.config), []).append(r)
    best, best_score = None, math.inf
    for group in by.values():
        if how == "final":
            score = _median([r.history[-1].get(VALIDATION_KEY, math.inf) if not r.diverged else math.inf
                             for r in group])
        else:
            hists = [r.history if not r.diverged else [*r.history[:-1], {**r.history[-1], VALIDATION_KEY: math.inf}]
                     for r in group]
            curve = band(hists, x_key, VALIDATION_KEY, points=50)
            score = sum(curve[2]) / len(curve[2]) if curve[2] else math.inf
        if math.isfinite(score) and score < best_score:
            best, best_score = group[0].config, score
    return best
