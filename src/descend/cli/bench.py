"""``descend bench run | report | list | worker``: the fair optimizer benchmark's commands.

    descend bench run --suite quick                      # the README's quick start
    descend bench run --workloads mlp_mnist1d:s,cnn_mnist1d:s --optimizers adamw,lion,soap --trials 8 --seeds 3
    descend bench report --storage bench.db              # HTML report of the stored results
    descend bench worker --storage postgresql://...      # join a shared study from another machine
"""

from __future__ import annotations

import dataclasses
import sys
import time
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from ..results.plans import choose_plan
from ._common import UserError, check_format, console, fail, report_written, rows_text, split_list

app = typer.Typer(help="The fair optimizer benchmark.", no_args_is_help=True)

DEFAULT_OPTIMIZERS = ("adamw", "nadamw", "lion", "adabelief", "soap", "muon")
STATS = {"train": 0.0, "eval": 0.0}  # seconds of training steps / evaluation run by this process




def _is_import_path(spec: str) -> bool:
    """``module:Class[:scale]`` (a plug-in) rather than ``workload[:scale]`` (a registered name)."""
    from ..bench.workloads import available_workloads

    parts = spec.split(":")
    if parts[0] in available_workloads() or len(parts) < 2:
        return False
    return "." in parts[0] or parts[1][:1].isupper()


def load_workload_plugin(path: str) -> str:
    """Import the plug-in workload ``module:Class`` named on the command line and register it; its name.

    The current directory is on the import path (a top-level ``my_module.py`` works).  Every failure is a
    :class:`UserError` naming what was wrong.
    """
    import importlib
    import os

    from ..bench.workloads import Workload, register_workload

    module, _, attr = path.partition(":")
    if not (module and all(p.isidentifier() for p in module.split(".")) and attr.isidentifier()):
        raise UserError(f"--workloads {path!r}: a plug-in workload is module.path:ClassName")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise UserError(f"--workloads {path}: no module named {module!r} (looked in the current directory "
                            "and on the Python path)") from None
        raise UserError(f"--workloads {path}: importing {module!r} failed: {exc}") from None
    except Exception as exc:
        raise UserError(f"--workloads {path}: importing {module!r} failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(mod, attr, None)
    if cls is None:
        raise UserError(f"--workloads {path}: module {module!r} has no attribute {attr!r}")
    if not (isinstance(cls, type) and issubclass(cls, Workload)):
        raise UserError(f"--workloads {path}: {attr} is not a subclass of descend.bench.workloads.Workload")
    try:
        register_workload(cls)
    except ValueError as exc:
        raise UserError(f"--workloads {path}: {exc}") from None
    return cls.name


def _parse_cells(suite: str | None, workloads: list[str] | None) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """The plan's (workload, scale) cells and the plug-in import paths among ``--workloads``."""
    from ..bench.protocol import SUITES
    from ..bench.workloads import available_workloads, get_workload

    if workloads:
        cells, imports = [], []
        for w in workloads:
            parts = w.split(":")
            if _is_import_path(w):
                path = ":".join(parts[:2])
                name, scale = load_workload_plugin(path), ":".join(parts[2:])
                imports.append(path)
            else:
                name, scale = parts[0], ":".join(parts[1:])
                if name not in available_workloads():
                    raise UserError(f"--workloads {w}: unknown workload {name!r}; available: "
                                    f"{', '.join(available_workloads())}, or a plug-in module.path:ClassName")
            wl = get_workload(name)
            cells.append((wl.name, scale or next(iter(wl.scales))))
        return cells, tuple(dict.fromkeys(imports))
    suite = suite or "quick"
    if suite not in SUITES:
        raise UserError(f"--suite {suite}: unknown suite; suites: {', '.join(SUITES)}")
    return list(SUITES[suite]), ()


def _stored_plan(db: Any, name: str, cfg: Any, given: tuple[str, ...]) -> Any:
    """The :class:`Plan` stored under ``name``, without importing anything it names.

    A plan with plug-in workloads needs the same ``--workloads module:Class`` on this command line (a database
    is data: a tampered one must not run code); anything malformed is reported as a corrupt database.
    """
    from ..bench.protocol import Plan

    imports = cfg.get("workload_imports", ()) if isinstance(cfg, dict) else None
    if not isinstance(imports, (list, tuple)) or not all(isinstance(p, str) for p in imports):
        raise UserError(f"{db.display_url}: plan {name!r} is corrupt or was tampered with (workload_imports)")
    missing = [p for p in imports if p not in given]
    if missing:
        raise UserError(f"plan {name!r} uses plug-in workload code that descend never imports from a database; "
                        f"if you trust it, pass {' '.join('--workloads ' + p for p in missing)}")
    try:
        return Plan.from_dict(cfg)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{db.display_url}: plan {name!r} is corrupt or was tampered with "
                        f"({type(exc).__name__}: {exc})") from None


def _plugins(workloads: list[str] | None) -> tuple[str, ...]:
    """Load the plug-ins given to ``worker`` / ``report`` (import paths only); their paths."""
    paths = []
    for w in workloads or []:
        path = ":".join(w.split(":")[:2])
        if not _is_import_path(path):
            raise UserError(f"--workloads {w}: here it names plug-in code to allow, as module.path:ClassName")
        load_workload_plugin(path)
        paths.append(path)
    return tuple(paths)


def _check_out(option: str, path: Path | None) -> None:
    if path is not None and path.is_dir():
        raise UserError(f"{option} {path} is a directory; give an HTML file path, e.g. {path / 'bench-report.html'}")


def _leaderboard_table(storage: Any, plan_name: str, summary: Any = None) -> Any:
    from rich.table import Table
    from rich.text import Text

    from ..bench.report import leaderboard_rows, summarize

    try:
        summary = summary if summary is not None else summarize(storage, plan_name)
        rows = leaderboard_rows(summary)
    except (KeyError, RuntimeError):  # nothing finished yet
        rows = []
    table = Table(title=Text(f"leaderboard — {plan_name}"), caption=Text(_seed_caveat(summary) if rows else ""),
                  show_lines=False)
    for col in LEADERBOARD_COLUMNS.values():
        table.add_column(Text(col), overflow="fold")
    for r in rows:  # Text: a scale ":m" or a "[...]" CI is shown as written, never as an emoji or markup
        table.add_row(*(Text(r[k]) for k in LEADERBOARD_COLUMNS))
    return table


#: leaderboard_rows() key -> column title, for the table and for ``--format csv|json|markdown``
LEADERBOARD_COLUMNS = {"cell": "workload", "optimizer": "optimizer", "final": "final val (mean [95% CI])",
                       "test": "held-out test", "speedup": "speedup vs AdamW", "steps_to_target": "steps to target",
                       "trials": "trials"}


def _seed_caveat(summary: Any) -> str:
    seeds = int(summary.settings.get("seeds", 0) or 0) if summary is not None else 0
    return (f"caution: the 95 % CIs rest on {seeds} seed(s); with fewer than 3 they are rough (rerun with "
            "--seeds 3 or more)" if 0 < seeds < 3 else "")


def leaderboard_text(summary: Any, fmt: str) -> str:
    """The leaderboard as ``csv``, ``json`` or ``markdown`` text (for pipes, spreadsheets and READMEs)."""
    from ..bench.report import leaderboard_rows

    rows = [{title: r[k] for k, title in LEADERBOARD_COLUMNS.items()} for r in leaderboard_rows(summary)]
    caveat = _seed_caveat(summary) if fmt == "markdown" else ""
    return rows_text(rows, fmt, list(LEADERBOARD_COLUMNS.values())) + (f"\n\n{caveat}" if caveat else "")


def _drain_with_progress(storage: Any, plan: Any, parallel: int, executor: Any, quiet: bool) -> int:
    from rich.console import Group
    from rich.live import Live
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..bench.executors import drain

    total = plan.total_work()
    done_before = len(storage.runs(plan=plan.name))
    # markup=False: a cell "mlp_mnist1d:m:soap" must not become an emoji; the ETA extrapolates finished trials
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    overall = progress.add_task("trials", total=total, completed=min(done_before, total))
    steps_task = progress.add_task("steps", total=1)
    board: Any = None if quiet else _leaderboard_table(storage, plan.name)  # a rich Table (rich loads lazily)
    last = time.time()
    stats = STATS

    def on_event(kind: str, item: Any, row: Any) -> None:
        nonlocal board, last
        if kind == "start":
            steps = plan.steps(item.workload, item.scale) if item.phase != "tune" else \
                plan.tune_steps(item.workload, item.scale)
            progress.reset(steps_task, total=steps, description=f"{item.cell} {item.phase} seed {item.seed}")
        elif kind == "done":
            stats["train"] += row.train_time
            stats["eval"] += row.eval_time
            progress.advance(overall)
            if not quiet and time.time() - last > 10:  # summarizing reads every stored curve
                board = _leaderboard_table(storage, plan.name)
                last = time.time()

    def on_progress(item: Any, k: int) -> None:
        if k % 10 == 0:
            progress.update(steps_task, completed=k)

    if quiet:
        return drain(storage, plan, parallel=parallel, executor=executor, on_event=on_event)
    with Live(Group(progress, board), refresh_per_second=4, transient=False) as live:
        def on_event_live(kind: str, item: Any, row: Any) -> None:
            on_event(kind, item, row)
            live.update(Group(progress, board))

        n = drain(storage, plan, parallel=parallel, executor=executor, on_event=on_event_live,
                  progress=on_progress)
        live.update(Group(progress, _leaderboard_table(storage, plan.name)))
    return n


@app.command("run")
def run(
    suite: Annotated[str | None, typer.Option(help="quick | full (ignored with --workloads)")] = None,
    workloads: Annotated[list[str] | None, typer.Option(
        help="workload[:scale] or package.module:Class (comma list or repeated)")] = None,
    optimizers: Annotated[list[str] | None, typer.Option(help="registry names (comma list or repeated)")] = None,
    trials: Annotated[int, typer.Option(min=1, help="tuning trials per optimizer and workload")] = 6,
    seeds: Annotated[int, typer.Option(min=1, help="final runs of the best configuration")] = 3,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    name: Annotated[str | None, typer.Option(
        "--plan", "--name", help="plan name, as `report --plan` and `worker --plan` take it (default: derived from the "
                                 "whole configuration, so rerunning a command resumes it and another command never "
                                 "collides with it; --name: the former spelling)")] = None,
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
    monitor: Annotated[list[str] | None, typer.Option(
        help="curvature monitors on the final runs: sharpness | trace | param_change (comma list or repeated); "
             "stored in the curves, plotted in the report")] = None,
    monitor_every: Annotated[int, typer.Option(help="evaluate the monitors every this many steps")] = 50,
    ensemble: Annotated[int, typer.Option(
        help="data-constrained mode: also score the ensemble of each optimizer's first K final seeds "
             "(K in [2, --seeds]; 0 = off; MNIST-1D workloads)")] = 0,
) -> None:
    """Tune every optimizer with the same budget on each workload, rerun the best on seeds, report."""
    import math

    from ..bench.protocol import Plan
    from ..bench.storage import Storage, StorageError

    try:
        if not (math.isfinite(budget_scale) and budget_scale > 0):
            raise UserError(f"--budget-scale must be a finite number > 0, got {budget_scale}")
        if not (math.isfinite(tune_fraction) and 0 < tune_fraction <= 1):
            raise UserError(f"--tune-fraction must be in (0, 1], got {tune_fraction}")
        if executor not in ("local", "ray"):
            raise UserError(f"--executor must be local or ray, got {executor!r}")
        _check_out("--report", report)
        optimizers, workloads = split_list(optimizers), split_list(workloads)
        from ..bench.trial import MONITORS

        monitors = tuple(split_list(monitor) or ())
        for m in monitors:
            if m not in MONITORS:
                raise UserError(f"--monitor must be one of {', '.join(MONITORS)}, got {m!r}")
        if monitors and monitor_every < 1:
            raise UserError(f"--monitor-every must be >= 1, got {monitor_every}")
        if ensemble and (mode != "data-constrained" or not 2 <= ensemble <= seeds):
            raise UserError(f"--ensemble must be 0 or in [2, --seeds={seeds}] and needs --mode data-constrained, "
                            f"got {ensemble} with --mode {mode}")
        opts = tuple(optimizers or [o for o in DEFAULT_OPTIMIZERS if o in _available()])
        cells, imports = _parse_cells(suite, workloads)
        try:
            factors = tuple(float(f) for f in ladder.split(",") if f.strip())
        except ValueError as exc:
            raise UserError(f"--ladder must be comma-separated numbers, got {ladder!r}") from exc
        plan = Plan(name=name or "unnamed", cells=tuple(cells), optimizers=opts, trials=trials, seeds=seeds,
                    sampler=sampler, tune_fraction=tune_fraction, budget_scale=budget_scale, threads=threads,
                    workload_imports=imports, ladder=factors, ladder_retune=ladder_retune, noise_floor=noise_floor,
                    trial_scaling=trial_scaling, mode=mode, widen=widen, monitors=monitors,
                    monitor_every=monitor_every if monitors else 0, ensemble=ensemble)
        if name is None:
            plan = dataclasses.replace(plan, name=default_plan_name(plan, suite if not workloads else None))
        db = Storage(storage)
        db.save_plan(plan.name, plan.to_dict())
    except (ValueError, KeyError, StorageError) as exc:  # UserError, bad options, a bad database: exit 2
        raise fail(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc) from None
    run_executor = None
    if executor == "ray":
        from ..bench.executors import ray_executor

        run_executor = ray_executor(ray_address, num_cpus=parallel)
    start = time.time()
    try:
        n = _drain_with_progress(db, plan, parallel if executor == "ray" else 1, run_executor, quiet)
    except StorageError as exc:  # the database became unusable (server gone, file corrupted) mid-run
        raise fail(exc) from None
    wall = time.time() - start
    typer.echo(f"\n{n} trials run in {wall:.0f} s; results in {db.display_url} (plan {plan.name!r})")
    if n and executor == "local" and wall > 0:
        harness = max(wall - STATS["train"] - STATS["eval"], 0.0)
        typer.echo(f"time: training steps {STATS['train']:.0f} s, evaluation {STATS['eval']:.0f} s, harness "
                   f"(data, models, tuning bookkeeping, storage) {harness:.0f} s = {100 * harness / wall:.1f} % "
                   "of the wall time")
    if report is not None:
        _write_report(db, plan.name, report)


def default_plan_name(plan: Any, suite: str | None) -> str:
    """``{suite|custom}-t{trials}-s{seeds}-{sampler}-{digest}``: the digest covers the whole configuration."""
    import hashlib
    import json

    cfg = {k: v for k, v in plan.to_dict().items() if k != "name"}
    digest = hashlib.sha1(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{suite or 'custom'}-t{plan.trials}-s{plan.seeds}-{plan.sampler}-{digest}"


def _available() -> list[str]:
    from .. import optim

    return optim.available()


def _write_report(db: Any, plan_name: str, out: Path, summary: Any = None, fmt: str = "table") -> None:
    from ..bench.report import summarize, write_html
    from ..bench.storage import StorageError

    try:
        if summary is None:
            summary = summarize(db, plan_name)
    except StorageError as exc:
        raise fail(exc) from None
    except (KeyError, TypeError, AttributeError, IndexError) as exc:
        raise fail(f"{db.display_url}: plan {plan_name!r} has corrupt or tampered results "
                    f"({type(exc).__name__}: {exc})") from None
    try:
        path = write_html(summary, out)
    except OSError as exc:
        raise fail(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    report_written(path, fmt)  # on stderr under --format csv|json, so that stdout parses


@app.command("report")
def report_cmd(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="plan name (default: the latest)")] = None,
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("bench-report.html"),
    workloads: Annotated[list[str] | None, typer.Option(
        help="plug-in workload code the plan uses, package.module:Class (comma list or repeated; never imported "
             "from the database)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="leaderboard as table | csv | json | markdown (for pipes "
                                                         "and files)")] = "table",
) -> None:
    """Print the leaderboard and write the HTML report from a benchmark database."""
    from ..bench.report import summarize
    from ..bench.storage import Storage, StorageError

    try:
        check_format(fmt)
        _check_out("--out", out)
        given = _plugins(split_list(workloads))
        db = Storage(storage, create=False)  # a missing file is an error, not a new empty database
        plans = db.plans()
        name = choose_plan(plans, plan, db.display_url, "benchmark plan")
        _stored_plan(db, name, plans[name], given)
        try:
            summary = summarize(db, name)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise UserError(f"{db.display_url}: plan {name!r} has corrupt or tampered results "
                            f"({type(exc).__name__}: {exc})") from None
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
    if fmt == "table":
        console().print(_leaderboard_table(db, name, summary))
    else:
        typer.echo(leaderboard_text(summary, fmt))
    _write_report(db, name, out, summary, fmt)


@app.command("list")
def list_cmd() -> None:
    """List workloads (with scales and budgets), suites and optimizers."""
    from .. import optim
    from ..bench.protocol import SUITES
    from ..bench.workloads import available_workloads, get_workload

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


@app.command("worker")
def worker(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file shared with `bench run`")] = "bench.db",
    plan: Annotated[str | None, typer.Option(help="only this plan (default: every plan, oldest first)")] = None,
    workloads: Annotated[list[str] | None, typer.Option(
        help="plug-in workload code the plans use, package.module:Class (comma list or repeated; never imported "
             "from the database)")] = None,
) -> None:
    """Run pending trials of the plans in a shared database until none is left."""
    from ..bench.executors import drain
    from ..bench.storage import Storage, StorageError

    try:
        given = _plugins(split_list(workloads))
        db = Storage(storage, create=False)
        stored = db.plans()
        if plan is not None and plan not in stored:
            raise UserError(f"no plan {plan!r} in {db.display_url}; plans: {', '.join(stored) or 'none'}")
        plans = [_stored_plan(db, name, cfg, given) for name, cfg in stored.items() if plan is None or name == plan]
    except (ValueError, StorageError) as exc:  # a corrupt, foreign or missing database, code it would import
        raise fail(exc) from None
    total, told = 0, set()

    def waiting(name: str) -> None:
        if name not in told:
            told.add(name)
            typer.echo(f"plan {name!r}: waiting for trials leased by other workers (a dead worker's lease expires "
                       f"within {db.lease:.0f} s, then its trials are redone here)", err=True)

    try:
        for p in plans:
            total += drain(db, p, on_wait=partial(waiting, p.name))
    except StorageError as exc:
        raise fail(exc) from None
    typer.echo(f"worker done: {total} trials")


