"""``descend bilevel run | worker | report | list``: the fair bilevel-solver benchmark's commands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import UserError, check_format, fail, print_rows, report_written, split_list

app = typer.Typer(help="The fair bilevel-solver benchmark (benchmark_bilevel's protocol).",
                          no_args_is_help=True)


def _executor(executor: str, ray_address: str | None, parallel: int) -> Any:
    if executor not in ("local", "ray"):
        raise UserError(f"--executor must be local or ray, got {executor!r}")
    if parallel < 1:
        raise UserError(f"--parallel must be ≥ 1, got {parallel}")
    if executor == "local":
        return None
    from ..bilevel_bench import ray_executor

    return ray_executor(ray_address, num_cpus=parallel)


def _print_summary(bb: Any, summary: Any, report: Path | None, fmt: str = "markdown") -> None:
    """The results table (markdown by default, as the README shows it; ``--format table|csv|json`` through the
    shared renderer) and the grid-edge warnings (on stderr under csv/json, so that stdout parses)."""
    if fmt == "markdown":
        typer.echo(bb.markdown_table(summary))
    else:
        print_rows(bb.table_rows(summary), fmt, title=f"bilevel — {summary.metric}")
    for line in bb.edge_warnings(summary):
        typer.echo(line, err=fmt in ("csv", "json"))
    if report is not None:
        report_written(bb.write_html(summary, report), fmt)


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
    name: Annotated[str | None, typer.Option(
        "--plan", "--name", help="plan name, as `report --plan` and `worker --plan` take it (default: derived from "
                                 "the options; --name: the former spelling)")] = None,
    executor: Annotated[str, typer.Option(help="local (this process) | ray (each run a Ray task)")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray)")] = None,
    parallel: Annotated[int, typer.Option(help="runs in flight (threads locally; Ray tasks and CPUs with ray)")] = 1,
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no per-run lines")] = False,
) -> None:
    """Grid on the tuning seeds, select by median validation curve, rerun on fresh seeds (resumable; more
    processes can join with `descend bilevel worker`)."""
    import descend.bilevel_bench as bb

    from ..results.db import StorageError

    names = split_list(solvers) or ["aid_cg", "soba", "stocbio", "lancbio", "bome", "f2sa"]
    try:
        plan = bb.Plan(problem=problem, solvers=names, grid=grid, seeds=seeds, tune_seeds=tune_seeds,
                       budget=bb.parse_budget(budget), batch_size=batch_size, select=select, threads=threads,
                       name=name)
        run_executor = _executor(executor, ray_address, parallel)
        db = bb.BilevelStorage(storage)
        t0 = time.perf_counter()
        n = bb.run_plan(plan, db, progress=None if quiet else typer.echo, parallel=parallel, executor=run_executor)
        summary = bb.summarize(db, plan.name)
    except (ValueError, RuntimeError, StorageError) as exc:
        raise fail(exc) from None
    typer.echo(f"{n} runs done in {time.perf_counter() - t0:.0f} s; results in {db.display_url} (plan {plan.name!r})")
    _print_summary(bb, summary, report)


@app.command("worker")
def bilevel_worker(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file shared with `bilevel run`")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="only this plan (default: every bilevel plan, oldest first)")
                    ] = None,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray)")] = None,
    parallel: Annotated[int, typer.Option(help="runs in flight")] = 1,
    quiet: Annotated[bool, typer.Option(help="no per-run lines")] = False,
) -> None:
    """Run the pending runs of stored bilevel plans until every one is stored (several workers share a study)."""
    import descend.bilevel_bench as bb

    from ..results.db import StorageError

    try:
        db = bb.BilevelStorage(storage, create=False)
        stored = db.plans()
        if plan is not None and plan not in stored:
            raise UserError(f"no bilevel plan {plan!r} in {db.display_url}; plans: {', '.join(stored) or 'none'}")
        plans = [bb.stored_plan(db, name) for name in stored if plan is None or name == plan]
        run_executor = _executor(executor, ray_address, parallel)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
    total = 0
    try:
        for p in plans:
            told: list[bool] = []

            def waiting(p: Any = p, told: list[bool] = told) -> None:
                if not told:
                    told.append(True)
                    typer.echo(f"plan {p.name!r}: waiting for runs leased by other workers (a dead worker's lease "
                               f"expires within {db.leases.lease:.0f} s, then its runs are redone here)", err=True)

            total += bb.run_plan(p, db, progress=None if quiet else typer.echo, parallel=parallel,
                                 executor=run_executor, on_wait=waiting, save=False)
    except (ValueError, RuntimeError, StorageError) as exc:
        raise fail(exc) from None
    typer.echo(f"worker done: {total} runs")


@app.command("report")
def bilevel_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="plan name (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("bilevel-report.html"),
    target: Annotated[float | None, typer.Option(help="target of the report metric (default: from the best "
                                                       "solver)")] = None,
    format: Annotated[str, typer.Option(help="table | csv | json | markdown (the results table)")] = "markdown",
) -> None:
    """Print the results table and write the HTML report of a bilevel plan."""
    import descend.bilevel_bench as bb

    from ..results.db import StorageError

    try:
        check_format(format)
        summary = bb.summarize(bb.BilevelStorage(storage), plan, target)
    except (ValueError, RuntimeError, StorageError) as exc:
        raise fail(exc) from None
    _print_summary(bb, summary, out, format)


@app.command("list")
def bilevel_list() -> None:
    """List bilevel benchmark problems, solvers and grids."""
    import descend.bilevel_bench as bb

    typer.echo(bb.describe())
