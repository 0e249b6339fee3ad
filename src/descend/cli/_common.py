"""What every command group shares: the user-error type, the exit-2 failure, the console."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["UserError", "console", "fail"]


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
