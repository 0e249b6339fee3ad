"""``descend bilevel run | report | list``: the fair bilevel-solver benchmark's commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._common import fail, split_list

app = typer.Typer(help="The fair bilevel-solver benchmark (benchmark_bilevel's protocol).",
                          no_args_is_help=True)


@app.command("run")
def bilevel_run(
    problem: Annotated[str, typer.Option(help="problem name (see `descend bilevel list`)")] = "hyper_cleaning_digits",
    solvers: Annotated[list[str] | None, typer.Option(
        help="solver names (repeatable or comma-separated; default: aid_cg,soba,stocbio,lancbio,bome,f2sa)")] = None,
    grid: Annotated[str, typer.Option(help="tiny | small | medium | large (step × outer/inner ratio)")] = "small",
    seeds: Annotated[int, typer.Option(help="final seeds of the selected configuration")] = 3,
    tune_seeds: Annotated[int, typer.Option(help="seeds of every grid point (selection by their median)")] = 2,
    budget: Annotated[str, typer.Option(help="per run: oracle calls ('1000oracles', gradients + HVPs + JVPs; "
                                             "reproducible), iterations ('300it') or seconds of solver time ('1s', "
                                             "load-dependent)")] = "1000oracles",
    batch_size: Annotated[int, typer.Option(help="mini-batch size of the stochastic solvers")] = 64,
    select: Annotated[str, typer.Option(help="final | auc (of the median validation curve)")] = "final",
    threads: Annotated[int, typer.Option(help="torch threads during the runs")] = 1,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    name: Annotated[str | None, typer.Option(help="plan name (default: derived from the options)")] = None,
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no per-run lines")] = False,
) -> None:
    """Grid on the tuning seeds, select by median validation curve, rerun on fresh seeds (resumable)."""
    from ..bilevel import bench as bb

    names = split_list(solvers) or ["aid_cg", "soba", "stocbio", "lancbio", "bome", "f2sa"]
    try:
        plan = bb.Plan(problem=problem, solvers=names, grid=grid, seeds=seeds, tune_seeds=tune_seeds,
                       budget=bb.parse_budget(budget), batch_size=batch_size, select=select, threads=threads,
                       name=name)
        db = bb.BilevelStorage(storage)
        t0 = time.perf_counter()
        n = bb.run_plan(plan, db, progress=None if quiet else typer.echo)
    except (ValueError, RuntimeError) as exc:
        raise fail(exc) from None
    typer.echo(f"{n} runs done in {time.perf_counter() - t0:.0f} s; results in {db.url} (plan {plan.name!r})")
    summary = bb.summarize(db, plan.name)
    typer.echo(bb.markdown_table(summary))
    for line in bb.edge_warnings(summary):
        typer.echo(line)
    if report is not None:
        typer.echo(f"report: {bb.write_html(summary, report)}")


@app.command("report")
def bilevel_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="plan name (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("bilevel-report.html"),
    target: Annotated[float | None, typer.Option(help="target of the report metric (default: from the best "
                                                       "solver)")] = None,
) -> None:
    """Print the results table and write the HTML report of a bilevel plan."""
    from ..bilevel import bench as bb

    try:
        summary = bb.summarize(bb.BilevelStorage(storage), plan, target)
    except (ValueError, RuntimeError) as exc:
        raise fail(exc) from None
    typer.echo(bb.markdown_table(summary))
    for line in bb.edge_warnings(summary):
        typer.echo(line)
    typer.echo(f"report: {bb.write_html(summary, out)}")


@app.command("list")
def bilevel_list() -> None:
    """List bilevel benchmark problems, solvers and grids."""
    from ..bilevel import bench as bb

    typer.echo(bb.describe())
