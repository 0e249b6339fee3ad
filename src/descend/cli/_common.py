"""What every command group shares: the user-error type, the exit-2 failure, the console, list options, and
the report output (``--format table|csv|json|markdown``)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import typer

__all__ = ["FORMATS", "FORMAT_HELP", "UserError", "check_format", "console", "fail", "print_rows",
           "report_written", "rows_text", "split_list"]


class UserError(ValueError):
    """Bad input on the command line or in a database: printed as one ``error:`` line, exit code 2."""


def fail(message: object) -> typer.Exit:
    """Print ``error: message`` on stderr; the ``typer.Exit(2)`` to raise (``raise fail(...) from None``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def console() -> Any:
    """A rich console on stdout (rich is imported only when a command prints a table)."""
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def split_list(values: list[str] | None) -> list[str] | None:
    """Every list option takes comma lists and repeated flags alike: ``--x a,b --x c`` → ``[a, b, c]``.

    ``None`` (the option not given) stays ``None``; empty items are dropped; the order is kept, duplicates once.
    """
    if values is None:
        return None
    items = [v.strip() for value in values for v in value.replace(",", " ").split()]
    return list(dict.fromkeys(v for v in items if v))


# --- Report output: one implementation of ``--format table|csv|json|markdown`` for every family's report -------

#: the values ``--format`` takes
FORMATS: tuple[str, ...] = ("table", "csv", "json", "markdown")
#: help text of every report's ``--format`` option
FORMAT_HELP = "the printed table as table | csv | json | markdown (csv/json: for pipes and files)"


def check_format(fmt: str) -> str:
    """``fmt`` if it is one of :data:`FORMATS`, else :class:`UserError` (one line naming ``--format``)."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be table, csv, json or markdown, got {fmt!r}")
    return fmt


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def rows_text(rows: Sequence[Mapping[str, Any]], fmt: str, columns: Sequence[str] | None = None) -> str:
    """``rows`` (one mapping per row; ``columns`` default: every key, in first-seen order) as ``csv``, ``json``
    or ``markdown`` text.  A cell a row lacks is empty (``null`` in JSON).  JSON keeps numbers as numbers (NaN and
    infinities become ``null``); csv writes them in full (``repr``); markdown rounds floats to 4 digits."""
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    if fmt == "json":
        return json.dumps([{c: _json_value(r.get(c)) for c in cols} for r in rows], indent=1, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([["" if r.get(c) is None else repr(r[c]) if isinstance(r[c], float) else str(r[c])
                           for c in cols] for r in rows])
        return buf.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
        return "\n".join(lines)
    raise UserError(f"--format must be csv, json or markdown here, got {fmt!r}")


def print_rows(rows: Sequence[Mapping[str, Any]], fmt: str, *, title: str = "",
               columns: Sequence[str] | None = None, caption: str = "") -> None:
    """Print ``rows`` on stdout in ``fmt``: a rich table (cells shown as written: never markup or emoji) or
    :func:`rows_text`.  ``caption`` (a caveat) goes under the table or, for markdown, after it; csv and json stay
    pure data."""
    check_format(fmt)
    if fmt != "table":
        text = rows_text(rows, fmt, columns)
        typer.echo(text + (f"\n\n{caption}" if caption and fmt == "markdown" else ""))
        return
    from rich.table import Table
    from rich.text import Text

    cols = list(columns) if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    table = Table(title=Text(title) if title else None, caption=Text(caption) if caption else None)
    for c in cols:
        table.add_column(Text(c), overflow="fold")
    for r in rows:
        table.add_row(*(Text(_cell(r.get(c))) for c in cols))
    console().print(table)


def report_written(path: object, fmt: str) -> None:
    """The ``report: PATH`` line: on stdout, or on stderr under ``--format csv|json`` so that stdout parses."""
    typer.echo(f"report: {path}", err=fmt in ("csv", "json"))
