"""MkDocs hooks: the pages that must follow the code are generated from it at build time.

* ``optimizers.md`` and ``optimizers/<name>.md``: one page per registered optimizer, from its registry spec (paper,
  reference, defaults read from the signature, search space, replayed fixtures) and its class docstring.
* ``cli.md``: every ``descend`` command, option, default and help text, walked from the typer app.
"""

from __future__ import annotations

import inspect
from typing import Any

from mkdocs.structure.files import File, Files


def _code(value: Any) -> str:
    return f"`{value!r}`".replace("|", "\\|")


def _target(spec: Any) -> Any:
    """The class an optimizer's factory builds (function factories name it in ``.builds``)."""
    f = spec.factory
    return f if inspect.isclass(f) else getattr(f, "builds", f)


def _api_path(target: Any) -> str:
    """Where mkdocstrings (which reads source statically) finds ``target``: the class, or its module when the class
    is made at import time (``CautiousLion = cautious(Lion)``)."""
    import importlib

    module = importlib.import_module(target.__module__)
    if f"class {target.__qualname__}" in inspect.getsource(module):
        return f"{target.__module__}.{target.__qualname__}"
    return target.__module__


def optimizer_page(spec: Any) -> str:
    target = _target(spec)
    lines = [f"# {spec.name}", "", spec.summary, "", f"- **Paper**: {spec.paper}",
             f"- **Checked against**: {spec.reference}"]
    if spec.fixture_names:
        lines.append(f"- **Golden fixtures replayed**: {', '.join(f'`{n}`' for n in spec.fixture_names)}")
    if spec.requires_closure:
        lines.append("- **step() needs a closure** that returns the loss (with or without calling `backward()`).")
    lines += ["", "## Defaults", "", "| hyperparameter | default |", "|---|---|"]
    lines += [f"| `{k}` | {_code(v)} |" for k, v in spec.defaults.items()]
    if spec.search_space:
        lines += ["", "## Search space used by `descend bench`", "", "| hyperparameter | range |", "|---|---|"]
        lines += [f"| `{k}` | {_code(v)} |" for k, v in spec.search_space.items()]
    lines += ["", "## Usage", "", "```python", "import descend.optim as do", "",
              f'opt = do.create("{spec.name}", model.parameters())  # or {target.__name__}(...) directly',
              "```", "", "## Algorithm and API", "", f"::: {_api_path(target)}", ""]
    return "\n".join(lines)


def optimizers_index(specs: list[Any]) -> str:
    lines = ["# Optimizers", "", "Every optimizer is a drop-in `torch.optim.Optimizer`, passes the same contract suite "
             "(PyTorch's generic optimizer checks and descend's own) and, where the authors' code exists, replays "
             "golden trajectories recorded from it.", "", "| name | what it is | checked against |", "|---|---|---|"]
    lines += [f"| [{s.name}](optimizers/{s.name}.md) | {s.summary} | {s.reference} |" for s in specs]
    return "\n".join(lines) + "\n"


def _option_rows(cmd: Any) -> list[str]:
    rows = []
    for p in cmd.params:
        if getattr(p, "hidden", False) or p.name == "help":
            continue
        names = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts)) or f"`{p.name}`"
        default = "" if p.default is None or callable(p.default) else _code(p.default)
        help_text = (getattr(p, "help", "") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {names} | {help_text} | {default} |")
    return rows


def cli_page() -> str:
    import click
    import typer

    from descend.cli import app

    root = typer.main.get_command(app)
    lines = ["# CLI reference", "", "Generated from the `descend` typer app. Every list option takes comma lists and "
             "repeated flags alike; every user error prints one `error:` line and exits with code 2.", ""]

    def walk(cmd: Any, path: str) -> None:
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                walk(cmd.commands[name], f"{path} {name}")
            return
        lines.extend([f"## `{path}`", "", inspect.cleandoc(cmd.help or ""), ""])
        rows = _option_rows(cmd)
        if rows:
            lines.extend(["| option | meaning | default |", "|---|---|---|", *rows, ""])

    walk(root, "descend")
    return "\n".join(lines)


def on_files(files: Files, config: Any) -> Files:
    import descend.optim as do

    specs = [do.get(n) for n in do.available()]
    files.append(File.generated(config, "optimizers.md", content=optimizers_index(specs)))
    for spec in specs:
        files.append(File.generated(config, f"optimizers/{spec.name}.md", content=optimizer_page(spec)))
    files.append(File.generated(config, "cli.md", content=cli_page()))
    return files
