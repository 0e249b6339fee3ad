"""``descend`` command line: ``descend bench run | report | list | worker`` and ``descend bilevel run | report | list``.

    descend bench run --suite quick                      # the README's quick start
    descend bench run --workloads mlp_mnist1d:s cnn_mnist1d:s --optimizers adamw lion soap --trials 8 --seeds 3
    descend bench report --storage bench.db              # HTML report of the stored results
    descend bench worker --storage postgresql://...      # join a shared study from another machine
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="descend: research optimizers and a fair benchmark.", no_args_is_help=True,
                  add_completion=False)
bench = typer.Typer(help="The fair optimizer benchmark.", no_args_is_help=True)
app.add_typer(bench, name="bench")

DEFAULT_OPTIMIZERS = ("adamw", "nadamw", "lion", "adabelief", "soap", "muon")
STATS = {"train": 0.0, "eval": 0.0}  # seconds of training steps / evaluation run by this process


def _parse_cells(suite: str | None, workloads: list[str] | None) -> list[tuple[str, str]]:
    from .bench.protocol import SUITES
    from .bench.workloads import get_workload

    if workloads:
        cells = []
        for w in workloads:
            parts = w.split(":")
            is_import = "." in parts[0]
            name = ":".join(parts[:2]) if is_import else parts[0]
            scale = (parts[2] if len(parts) > 2 else "") if is_import else (parts[1] if len(parts) > 1 else "")
            wl = get_workload(name)
            cells.append((wl.name, scale or next(iter(wl.scales))))
        return cells
    suite = suite or "quick"
    if suite not in SUITES:
        raise typer.BadParameter(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
    return list(SUITES[suite])


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _leaderboard_table(storage: Any, plan_name: str) -> Any:
    from rich.table import Table

    from .bench.report import leaderboard_rows, summarize

    table = Table(title=f"leaderboard — {plan_name}", show_lines=False)
    for col in ("workload", "optimizer", "final val (mean [95% CI])", "speedup vs AdamW", "steps to target",
                "trials"):
        table.add_column(col)
    try:
        rows = leaderboard_rows(summarize(storage, plan_name))
    except (KeyError, RuntimeError):
        rows = []
    for r in rows:
        table.add_row(r["cell"], r["optimizer"], r["final"], r["speedup"], r["steps_to_target"], r["trials"])
    return table


def _drain_with_progress(storage: Any, plan: Any, parallel: int, executor: Any, quiet: bool) -> int:
    from rich.console import Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .bench.executors import drain

    total = plan.total_work()
    done_before = len(storage.runs(plan=plan.name))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    overall = progress.add_task("trials", total=total, completed=min(done_before, total))
    steps_task = progress.add_task("steps", total=1)
    state = {"board": None if quiet else _leaderboard_table(storage, plan.name), "last": time.time()}
    stats = STATS

    def on_event(kind: str, item: Any, row: Any) -> None:
        if kind == "start":
            steps = plan.steps(item.workload, item.scale) if item.phase != "tune" else \
                plan.tune_steps(item.workload, item.scale)
            progress.reset(steps_task, total=steps, description=f"{item.cell} {item.phase} seed {item.seed}")
        elif kind == "done":
            stats["train"] += row.train_time
            stats["eval"] += row.eval_time
            progress.advance(overall)
            if not quiet and time.time() - state["last"] > 10:  # summarizing reads every stored curve
                state["board"] = _leaderboard_table(storage, plan.name)
                state["last"] = time.time()

    def on_progress(item: Any, k: int) -> None:
        if k % 10 == 0:
            progress.update(steps_task, completed=k)

    if quiet:
        return drain(storage, plan, parallel=parallel, executor=executor, on_event=on_event)
    with Live(Group(progress, state["board"]), refresh_per_second=4, transient=False) as live:
        def on_event_live(kind: str, item: Any, row: Any) -> None:
            on_event(kind, item, row)
            live.update(Group(progress, state["board"]))

        n = drain(storage, plan, parallel=parallel, executor=executor, on_event=on_event_live,
                  progress=on_progress)
        live.update(Group(progress, _leaderboard_table(storage, plan.name)))
    return n


@bench.command("run")
def run(
    suite: Annotated[str | None, typer.Option(help="quick | full (ignored with --workloads)")] = None,
    workloads: Annotated[list[str] | None, typer.Option(
        help="workload[:scale] or package.module:Class (repeatable)")] = None,
    optimizers: Annotated[list[str] | None, typer.Option(help="registry names (repeatable)")] = None,
    trials: Annotated[int, typer.Option(min=1, help="tuning trials per optimizer and workload")] = 6,
    seeds: Annotated[int, typer.Option(min=1, help="final runs of the best configuration")] = 3,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    name: Annotated[str | None, typer.Option(help="plan name (default: derived from the options)")] = None,
    sampler: Annotated[str, typer.Option(help="tpe | cd (coordinate-descent grid)")] = "tpe",
    tune_fraction: Annotated[float, typer.Option(help="tuning budget as a fraction of the full budget")] = 0.5,
    budget_scale: Annotated[float, typer.Option(help="multiply every workload's default budget")] = 1.0,
    threads: Annotated[int, typer.Option(min=1, help="torch threads per trial (timings compare only at equal threads)")
                       ] = 1,
    executor: Annotated[str, typer.Option(help="local | ray")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster address (default: a local Ray)")] = None,
    parallel: Annotated[int, typer.Option(min=1, help="trials in flight (ray)")] = 2,
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = Path(
        "bench-report.html"),
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    ladder: Annotated[str, typer.Option(help="AdamW budget ladder, factors of T (comma-separated; must include 1)")
                      ] = "0.25,0.5,1,2,4",
    ladder_retune: Annotated[bool, typer.Option(help="tune AdamW anew at every rung (costs a tuning per rung)")
                             ] = False,
    noise_floor: Annotated[bool, typer.Option(help="tune AdamW a second time to measure the tuning noise")] = True,
    trial_scaling: Annotated[str, typer.Option(help="dim (trials grow with the search-space dimension) | fixed")
                             ] = "dim",
    mode: Annotated[str, typer.Option(help="standard | data-constrained")] = "standard",
    widen: Annotated[int, typer.Option(min=0, help="rounds of range widening when a best value sits on an edge")
                     ] = 1,
) -> None:
    """Tune every optimizer with the same budget on each workload, rerun the best on seeds, report."""
    from .bench.protocol import Plan
    from .bench.storage import Storage, StorageError

    opts = tuple(optimizers or [o for o in DEFAULT_OPTIMIZERS if o in _available()])
    imports = tuple(":".join(w.split(":")[:2]) for w in (workloads or []) if "." in w.split(":")[0])
    plan_name = name or f"{suite or 'custom'}-t{trials}-s{seeds}-{sampler}"
    try:
        cells = _parse_cells(suite, workloads)  # an unknown workload is a KeyError: a clean exit 2, no traceback
        try:
            factors = tuple(float(f) for f in ladder.split(",") if f.strip())
        except ValueError as exc:
            raise ValueError(f"--ladder must be comma-separated numbers, got {ladder!r}") from exc
        plan = Plan(name=plan_name, cells=tuple(cells), optimizers=opts, trials=trials, seeds=seeds,
                    sampler=sampler, tune_fraction=tune_fraction, budget_scale=budget_scale, threads=threads,
                    workload_imports=imports, ladder=factors, ladder_retune=ladder_retune, noise_floor=noise_floor,
                    trial_scaling=trial_scaling, mode=mode, widen=widen)
        db = Storage(storage)
        db.save_plan(plan.name, plan.to_dict())
    except (ValueError, KeyError, StorageError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    run_executor = None
    if executor == "ray":
        from .bench.executors import ray_executor

        run_executor = ray_executor(ray_address, num_cpus=parallel)
    elif executor != "local":
        raise typer.BadParameter("executor must be local or ray")
    start = time.time()
    n = _drain_with_progress(db, plan, parallel if executor == "ray" else 1, run_executor, quiet)
    wall = time.time() - start
    typer.echo(f"\n{n} trials run in {wall:.0f} s; results in {db.url} (plan {plan.name!r})")
    if n and executor == "local" and wall > 0:
        harness = max(wall - STATS["train"] - STATS["eval"], 0.0)
        typer.echo(f"time: training steps {STATS['train']:.0f} s, evaluation {STATS['eval']:.0f} s, harness "
                   f"(data, models, tuning bookkeeping, storage) {harness:.0f} s = {100 * harness / wall:.1f} % "
                   "of the wall time")
    if report is not None:
        _write_report(db, plan.name, report)


def _available() -> list[str]:
    from . import optim

    return optim.available()


def _write_report(db: Any, plan_name: str, out: Path) -> None:
    from .bench.report import summarize, write_html

    path = write_html(summarize(db, plan_name), out)
    typer.echo(f"report: {path}")


@bench.command("report")
def report_cmd(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="plan name (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("bench-report.html"),
) -> None:
    """Print the leaderboard and write the HTML report from a benchmark database."""
    from .bench.storage import Storage, StorageError

    try:
        db = Storage(storage)
        plans = db.plans()
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not plans:
        typer.echo(f"error: no benchmark plan in {storage}", err=True)
        raise typer.Exit(2)
    name = plan or list(plans)[-1]
    if name not in plans:
        typer.echo(f"error: no plan {name!r}; plans: {', '.join(plans)}", err=True)
        raise typer.Exit(2)
    _console().print(_leaderboard_table(db, name))
    _write_report(db, name, out)


@bench.command("list")
def list_cmd() -> None:
    """List workloads (with scales and budgets), suites and optimizers."""
    from . import optim
    from .bench.protocol import SUITES
    from .bench.workloads import available_workloads, get_workload

    typer.echo("workloads:")
    for w in available_workloads():
        wl = get_workload(w)
        scales = ", ".join(f"{s} ({wl.budget[s]} steps)" for s in wl.scales)
        typer.echo(f"  {w:<24} {scales:<40} {wl.description}")
    typer.echo("suites:")
    for s, cells in SUITES.items():
        typer.echo(f"  {s:<8} " + " ".join(f"{w}:{sc}" for w, sc in cells))
    typer.echo("optimizers:")
    for o in optim.available():
        typer.echo(f"  {o:<20} {optim.get(o).summary}")


@bench.command("worker")
def worker(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file shared with `bench run`")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="only this plan (default: every plan, oldest first)")] = None,
) -> None:
    """Run pending trials of the plans in a shared database until none is left."""
    from .bench.executors import drain
    from .bench.protocol import Plan
    from .bench.storage import Storage, StorageError

    try:
        db = Storage(storage)
    except StorageError as exc:  # a corrupt or foreign database: exit 2 like `run` and `report`
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    total = 0
    for name, cfg in db.plans().items():
        if plan is None or name == plan:
            total += drain(db, Plan.from_dict(cfg))
    typer.echo(f"worker done: {total} trials")


def main() -> None:
    """Entry point of the ``descend`` script."""
    app()


if __name__ == "__main__":
    sys.exit(main())


# -------------------------------------------------------------------------------------------- bilevel
bilevel_app = typer.Typer(help="The fair bilevel-solver benchmark (benchmark_bilevel's protocol).",
                          no_args_is_help=True)
app.add_typer(bilevel_app, name="bilevel")


@bilevel_app.command("run")
def bilevel_run(
    problem: Annotated[str, typer.Option(help="problem name (see `descend bilevel list`)")] = "hyper_cleaning_digits",
    solvers: Annotated[list[str] | None, typer.Option(
        help="solver names (repeatable or comma-separated; default: aid_cg,soba,stocbio,lancbio,bome,f2sa)")] = None,
    grid: Annotated[str, typer.Option(help="tiny | small | medium | large (step × outer/inner ratio)")] = "small",
    seeds: Annotated[int, typer.Option(help="final seeds of the selected configuration")] = 3,
    tune_seeds: Annotated[int, typer.Option(help="seeds of every grid point (selection by their median)")] = 2,
    budget: Annotated[str, typer.Option(help="per run: seconds of solver time ('1s') or iterations ('300it')")] = "1s",
    batch_size: Annotated[int, typer.Option(help="mini-batch size of the stochastic solvers")] = 64,
    select: Annotated[str, typer.Option(help="final | auc (of the median validation curve)")] = "final",
    threads: Annotated[int, typer.Option(help="torch threads during the runs")] = 1,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    name: Annotated[str | None, typer.Option(help="plan name (default: derived from the options)")] = None,
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no per-run lines")] = False,
) -> None:
    """Grid on the tuning seeds, select by median validation curve, rerun on fresh seeds (resumable)."""
    from .bilevel import bench as bb

    names = [s for item in (solvers or ["aid_cg,soba,stocbio,lancbio,bome,f2sa"])
             for s in item.replace(",", " ").split()]
    try:
        plan = bb.Plan(problem=problem, solvers=names, grid=grid, seeds=seeds, tune_seeds=tune_seeds,
                       budget=bb.parse_budget(budget), batch_size=batch_size, select=select, threads=threads,
                       name=name)
        db = bb.BilevelStorage(storage)
        t0 = time.perf_counter()
        n = bb.run_plan(plan, db, progress=None if quiet else typer.echo)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{n} runs done in {time.perf_counter() - t0:.0f} s; results in {db.url} (plan {plan.name!r})")
    summary = bb.summarize(db, plan.name)
    typer.echo(bb.markdown_table(summary))
    if report is not None:
        typer.echo(f"report: {bb.write_html(summary, report)}")


@bilevel_app.command("report")
def bilevel_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="plan name (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("bilevel-report.html"),
    target: Annotated[float | None, typer.Option(help="target of the report metric (default: from the best "
                                                       "solver)")] = None,
) -> None:
    """Print the results table and write the HTML report of a bilevel plan."""
    from .bilevel import bench as bb

    try:
        summary = bb.summarize(bb.BilevelStorage(storage), plan, target)
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(bb.markdown_table(summary))
    typer.echo(f"report: {bb.write_html(summary, out)}")


@bilevel_app.command("list")
def bilevel_list() -> None:
    """List bilevel benchmark problems, solvers and grids."""
    from .bilevel import bench as bb

    typer.echo(bb.describe())
