"""``descend classic run | report | list``: the classic structured solvers (``descend.classic``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ._common import FORMAT_HELP, check_format, fail, print_rows, report_written

app = typer.Typer(help="Classic structured solvers from the seed papers (BCD, GNS, AdaSketch-Newton, ...).",
                  no_args_is_help=True)


def _parse_options(items: list[str] | None) -> dict[str, float | int | str | bool]:
    out: dict[str, float | int | str | bool] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value, got {item!r}")
        parsed: float | int | str | bool
        try:
            parsed = int(value)
        except ValueError:
            try:
                parsed = float(value)
            except ValueError:
                parsed = value
        out[key.strip()] = parsed
    return out


@app.command("run")
def classic_run(
    solver: Annotated[str, typer.Argument(help="solver name (see `descend classic list`)")],
    problem: Annotated[str, typer.Option(help="problem name of that solver (see `descend classic list`)")],
    seed: Annotated[int, typer.Option(help="random seed (data and sketches)")] = 0,
    full: Annotated[bool, typer.Option("--full/--quick", help="the paper's sizes, or the reduced ones (the "
                                                               "default)")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="solver option key=value (repeatable)")] = None,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
) -> None:
    """Run one solver on one problem, print progress, store the curves (family "classic")."""
    from ..classic import registry
    from ..classic.report import run_and_store
    from ..results import ResultStore, StorageError

    if not 0 <= seed < 2**31:
        raise fail(f"--seed must be in [0, 2**31), got {seed}")
    try:
        spec = registry.get(solver)
        spec.check_problem(problem)
        options = _parse_options(set_)
        unknown = sorted(set(options) - set(spec.options))
        if unknown:
            raise ValueError(f"--set key must be one of {sorted(spec.options)} for {solver}, got {unknown[0]!r}")
        store = ResultStore(storage)
        t0 = time.perf_counter()
        request = registry.RunRequest(problem, seed=seed, quick=not full, options=options,
                                      progress=None if quiet else typer.echo)
        added, skipped = run_and_store(spec, request, store)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
    typer.echo(f"{added} curves stored ({skipped} already there) in {store.display_url} "
               f"in {time.perf_counter() - t0:.1f} s")


@app.command("report")
def classic_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("classic.html"),
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
) -> None:
    """Print the stored summaries (one row per record) and write the HTML page with each solver's paper-style
    figure and those summaries."""
    from ..classic.report import summary_rows, write_report
    from ..results import ResultStore, StorageError

    try:
        check_format(fmt)
        store = ResultStore(storage, create=False)
        print_rows(summary_rows(store), fmt, title="descend classic")
        path = write_report(store, out)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
    report_written(path, fmt)


@app.command("list")
def classic_list() -> None:
    """The registered solvers, their problems and options."""
    from ..classic import registry

    for name in registry.available():
        spec = registry.get(name)
        typer.echo(f"{name}: {spec.title}\n  paper: {spec.paper}")
        for prob, desc in spec.problems.items():
            typer.echo(f"  --problem {prob}: {desc}")
        for opt, desc in spec.options.items():
            typer.echo(f"  --set {opt}=…: {desc}")
