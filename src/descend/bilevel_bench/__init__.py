"""The fair bilevel-solver benchmark (benchmark_bilevel's protocol; ``descend bilevel run | worker | report | list``).

The bilevel family's adapter of descend's shared study core (:mod:`descend.results`): it lives outside
:mod:`descend.bilevel` so that the library stays torch-only (this package uses SQLAlchemy and matplotlib).

* :mod:`.spec` — solvers, problems, grids, budgets and the :class:`Plan`;
* :mod:`.runs` — one run (pure torch: what a worker or a Ray task executes);
* :mod:`.storage` — runs as records of family ``"bilevel"`` in the shared results table, plans in the generic
  plans table;
* :mod:`.work` — the work items and :func:`run_plan` on the shared runner (leases, workers, Ray);
* :mod:`.summary`, :mod:`.report` — selection, tables, the HTML report.

Protocol (spec ``bilevel.md``, "Benchmark protocol"): the same grid over step size × outer/inner ratio, the same
budget (oracle calls by default) and tuning seeds for every solver; the configuration with the best median
validation curve is rerun on K fresh seeds; hyper-cleaning also stores its two reference points per final seed
(a model trained on the clean validation set alone, and one trained on the true labels).
"""

from __future__ import annotations

from .report import describe, write_html
from .runs import RunOutput, execute, get_problem, make_solver, resolved_kwargs, run_one
from .spec import (
    DEFAULT_BUDGET,
    GRIDS,
    ORACLE_KEYS,
    PROBLEMS,
    SOLVERS,
    VALIDATION_KEY,
    Budget,
    Plan,
    ProblemSpec,
    SolverSpec,
    parse_budget,
)
from .storage import BilevelRun, BilevelStorage, config_key
from .summary import (
    BilevelSummary,
    SolverResult,
    _to_target,
    band,
    edge_warnings,
    grid_edges,
    markdown_table,
    select_config,
    summarize,
    table_rows,
)
from .work import BilevelItem, BilevelWork, ray_executor, run_plan, stored_plan

__all__ = ["DEFAULT_BUDGET", "GRIDS", "ORACLE_KEYS", "PROBLEMS", "SOLVERS", "VALIDATION_KEY", "BilevelItem",
           "BilevelRun", "BilevelStorage", "BilevelSummary", "BilevelWork", "Budget", "Plan", "ProblemSpec",
           "RunOutput", "SolverResult", "SolverSpec", "_to_target", "band", "config_key", "describe",
           "edge_warnings", "execute", "get_problem", "grid_edges", "make_solver", "markdown_table",
           "parse_budget", "ray_executor", "resolved_kwargs", "run_one", "run_plan", "select_config",
           "stored_plan", "summarize", "table_rows", "write_html"]
