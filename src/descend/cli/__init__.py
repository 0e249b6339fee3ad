"""``descend`` command line: one typer app, one module per command group, no domain logic here.

    descend bench run --suite quick                      # the README's quick start
    descend bench report --storage bench.db              # HTML report of the stored results
    descend bilevel run --problem hyper_cleaning_digits  # the bilevel-solver benchmark

Each group is a module ``descend.cli.<group>`` defining ``app``; :data:`GROUPS` lists them (adding a group is one
line there).  Group modules import only typer at the top and their domain packages inside each command, so
``descend --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from ._common import UserError, fail

__all__ = ["GROUPS", "UserError", "app", "fail", "main"]

#: command name -> (module under descend.cli, one-line help)
GROUPS: dict[str, tuple[str, str]] = {
    "bench": ("bench", "The fair optimizer benchmark."),
    "bilevel": ("bilevel", "The fair bilevel-solver benchmark (benchmark_bilevel's protocol)."),
    "claims": ("claims", "Theory claims from the seed papers as experiments with a verdict."),
    "classic": ("classic", "Classic structured solvers from the seed papers (BCD, GNS, AdaSketch-Newton, ...)."),
    "rl": ("rl", "Variance-reduced policy gradients vs GPOMDP and PPO: learning curves over seeds."),
    "surrogate": ("surrogate", "Optimising through trained networks: IGNITE, directional attacks, LPN."),
}

app = typer.Typer(help="descend: research optimizers and a fair benchmark.", no_args_is_help=True,
                  add_completion=False)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"descend {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="print descend's version and exit")] = False) -> None:
    """descend: research optimizers and a fair benchmark."""


for _name, (_module, _help) in GROUPS.items():
    app.add_typer(importlib.import_module(f"{__name__}.{_module}").app, name=_name, help=_help)


def main() -> None:
    """Entry point of the ``descend`` script."""
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
