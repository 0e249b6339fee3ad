"""``descend surrogate run | report``: optimising through trained networks (IGNITE, directional attacks, LPN)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import FORMAT_HELP, check_format, fail, print_rows, report_written

app = typer.Typer(help="Optimising through trained networks: IGNITE, directional-attack hybrid, LPN.",
                  no_args_is_help=True)


@app.command("run")
def surrogate_run(
    method: Annotated[str, typer.Argument(help="ignite | attack | lpn")],
    task: Annotated[str | None, typer.Option(help="ignite: branin | hartmann6 | teacher; attack: mlp-whitebox | "
                                                  "mlp-blackbox; lpn: laplace1d")] = None,
    seeds: Annotated[int, typer.Option(help="seeds (attack: starts) 0..N-1")] = 3,
    budget: Annotated[int, typer.Option(help="attack: Φ evaluations per start")] = 150,
    quick: Annotated[bool, typer.Option("--quick/--full", help="reduced sizes (seconds instead of minutes), or "
                                                               "the full ones (the default)")] = False,
    no_quick: Annotated[bool, typer.Option("--no-quick", hidden=True, help="old name of --full")] = False,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
) -> None:
    """Run METHOD on a task for each seed and store the curves (family "surrogate"); reruns are cached."""
    from ..results import ResultStore, StorageError
    from ..surrogate import study

    if method not in study.METHODS:
        raise fail(f"METHOD must be one of {', '.join(study.METHODS)}, got {method!r}")
    try:
        store = ResultStore(storage)
        n = study.run_study(method, task, seeds, store, quick=quick and not no_quick, budget=budget,
                            progress=None if quiet else typer.echo)
        typer.echo(f"{n} new records in {storage}")
        if report is not None:
            typer.echo(f"report: {study.build_report(store, report)}")
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None


@app.command("report")
def surrogate_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("surrogate.html"),
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
) -> None:
    """Print the stored results (one row per study and method) and write the HTML report: one figure and table
    per stored method family."""
    from ..results import ResultStore, StorageError
    from ..surrogate import study

    try:
        check_format(fmt)
        store = ResultStore(storage, create=False)
        path = study.build_report(store, out)  # raises (exit 2) when nothing is stored
        print_rows(study.report_rows(store), fmt, title="descend surrogate")
        report_written(path, fmt)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
