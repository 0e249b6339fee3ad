"""``descend claims list | run ID… | report``: the seed papers' theory claims as experiments with a verdict.

    descend claims list                          # ids, papers, predictions, parameters
    descend claims run E1 --set d=8 --set n=40   # prediction recomputed for the new setting, then measured
    descend claims run --all --storage bench.db  # every claim at its default setting
    descend claims report --out claims.html      # measured vs predicted plots of the stored results
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ._common import FORMAT_HELP, UserError, check_format, console, fail, print_rows, report_written

app = typer.Typer(help="Theory claims from the seed papers as experiments with a verdict.", no_args_is_help=True)


def _parse_sets(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        for tok in item.split():
            key, sep, value = tok.partition("=")
            if not sep or not key or not value:
                raise ValueError(f"--set expects key=value (e.g. --set d=8), got {tok!r}")
            out[key.strip()] = value.strip()
    return out


@app.command("list")
def claims_list(
    ids: Annotated[list[str] | None, typer.Argument(help="claim ids to describe (default: all)")] = None,
) -> None:
    """List the claims: paper, prediction, tolerance and the setting's parameters (name, default, range)."""
    from ..claims import claim_ids, get_claim

    try:
        claims = [get_claim(i) for i in (ids or claim_ids())]
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    for c in claims:
        typer.echo(f"{c.id}  {c.title}")
        typer.echo(f"    paper: {c.paper.cite()}")
        typer.echo(f"    prediction: {c.prediction}")
        typer.echo(f"    tolerance: {c.tolerance_why}")
        typer.echo("    setting: " + "  ".join(f"{n}={d}" for n, d, _, _ in c.Setting.describe()))
        if ids:
            for name, default, rng, hlp in c.Setting.describe():
                typer.echo(f"      {name:<12} {default:<22} {rng:<28} {hlp}")


@app.command("run")
def claims_run(
    ids: Annotated[list[str] | None, typer.Argument(help="claim ids (E1 … E7)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="run every claim")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a setting parameter: key=value "
                                                                 "(repeatable; lists comma-separated)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the experiment")] = 0,
    storage: Annotated[str | None, typer.Option(help="SQLAlchemy URL or SQLite file to store results in "
                                                     "(family 'claims'); default: not stored")] = None,
    threads: Annotated[int, typer.Option(help="torch threads")] = 1,
) -> None:
    """Compute each claim's prediction for the setting, run the experiment, print predicted vs measured and
    PASS / FAIL (exit code 1 if any claim fails)."""
    from ..claims import claim_ids, get_claim

    if all_ == bool(ids):
        raise fail("give claim ids or --all (not both)" if ids else "give claim ids (e.g. E1) or --all")
    if seed < 0:
        raise fail(f"--seed must be ≥ 0, got {seed}")
    if not 1 <= threads <= 256:
        raise fail(f"--threads must be in [1, 256], got {threads}")
    try:
        claims = [get_claim(i) for i in (claim_ids() if all_ else ids or [])]
        overrides = _parse_sets(set_ or [])
        settings = [c.Setting.with_overrides(overrides) for c in claims]
    except KeyError as exc:
        raise fail(exc.args[0]) from None
    except ValueError as exc:
        raise fail(exc) from None
    store: Any = None
    if storage is not None:
        from ..results import ResultStore, StorageError

        try:
            store = ResultStore(storage)
        except StorageError as exc:
            raise fail(exc) from None
    import torch
    from rich.table import Table

    from ..claims.report import to_record

    torch.set_num_threads(threads)
    out = console()
    verdicts = Table(title="descend claims")
    for col in ("claim", "check", "predicted", "measured", "verdict"):
        verdicts.add_column(col)
    failed = 0
    for claim, setting in zip(claims, settings, strict=True):
        pred = claim.predict(setting)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in list(pred.items())[:6])
        out.print(f"[bold]{claim.id}[/bold] {claim.title}\n  setting: {setting.as_dict()}\n  prediction: {shown}")
        result = claim.run(setting, seed=seed)
        failed += not result.passed
        for c in result.checks:
            verdicts.add_row(claim.id, c.name, c.expectation(), f"{c.measured:.4g}", "PASS" if c.passed else "FAIL")
        verdicts.add_row(claim.id, f"[bold]verdict[/bold] ({result.seconds:.0f} s)", "", "",
                         f"[bold]{result.verdict}[/bold]", end_section=True)
        out.print(f"  → {result.verdict} in {result.seconds:.1f} s")
        if store is not None:
            new = store.add(to_record(result))
            out.print(f"  stored in {store.display_url}" + ("" if new else " (already stored: kept the first)"))
    out.print(verdicts)
    if failed:
        raise typer.Exit(1)


@app.command("report")
def claims_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("claims.html"),
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
) -> None:
    """Print one row per stored run (claim, setting, seed, verdict) and write the HTML page: per claim, the
    measured-vs-predicted plot and the checks of each stored run."""
    from ..claims.report import FAMILY, overview_rows, write_report
    from ..results import ResultStore, StorageError

    try:
        check_format(fmt)
        store = ResultStore(storage, create=False)
        if not store.records(FAMILY):
            raise fail(f"{store.display_url} holds no claims results; run `descend claims run … --storage "
                       f"{storage}` first")
        print_rows(overview_rows(store), fmt, title="descend claims")
        path = write_report(store, out)
    except (UserError, StorageError) as exc:
        raise fail(exc) from None
    report_written(path, fmt)
