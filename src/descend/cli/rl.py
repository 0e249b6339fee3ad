"""``descend rl run | report``: policy-gradient learning curves over seeds (family ``rl`` of the results store)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import FORMAT_HELP, check_format, fail, print_rows, report_written

app = typer.Typer(help="Variance-reduced policy gradients vs GPOMDP and PPO: learning curves over seeds.",
                  no_args_is_help=True)

_METHODS = "reinforce, gpomdp, normalized_pg, n_pg_igt, harpg, n_harpg, ppo"


def _split(items: list[str] | None, default: str) -> list[str]:
    return [s for item in (items or [default]) for s in item.replace(",", " ").split()]


@app.command("run")
def rl_run(
    env: Annotated[str, typer.Option(help="'tabular' or a Gymnasium id (CartPole-v1, Acrobot-v1, Pendulum-v1, ...)")]
    = "CartPole-v1",
    methods: Annotated[list[str] | None, typer.Option(help=f"methods (repeatable or comma-separated): {_METHODS}")]
    = None,
    algos: Annotated[list[str] | None, typer.Option(hidden=True, help="old name of --methods")] = None,
    seeds: Annotated[int, typer.Option(help="number of seeds (0, 1, ..., seeds-1)")] = 3,
    budget: Annotated[int, typer.Option(help="trajectories (complete episodes) per run")] = 1000,
    eval_every: Annotated[int | None, typer.Option(help="trajectories per curve point (default budget/50)")] = None,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
) -> None:
    """Run every missing (method, seed) on one environment and store its learning curve (resumable)."""
    import torch

    from ..rl import study

    names = _split([*(methods or []), *(algos or [])] or None, "n_pg_igt,n_harpg,gpomdp")
    bad = [m for m in names if m not in study.METHODS]
    if bad:
        raise fail(f"--methods must be among {_METHODS}; got {', '.join(bad)}")
    if seeds < 1:
        raise fail(f"--seeds must be ≥ 1, got {seeds}")
    if budget < 1:
        raise fail(f"--budget must be ≥ 1 trajectory, got {budget}")
    if eval_every is not None and not 1 <= eval_every <= budget:
        raise fail(f"--eval-every must be in [1, --budget={budget}], got {eval_every}")
    if env == "tabular" and "ppo" in names:
        raise fail("--methods ppo needs a Gymnasium --env, not 'tabular'")
    if env != "tabular":
        try:
            import gymnasium as gym

            gym.spec(env)
        except ImportError:
            raise fail("--env needs gymnasium: pip install 'descend[rl]'") from None
        except Exception:
            raise fail(f"--env must be 'tabular' or a registered Gymnasium id, got {env!r}") from None
    from ..results import ResultStore, StorageError

    torch.set_num_threads(1)
    try:
        store = ResultStore(storage)
        n = study.run_study(store, env, names, range(seeds), budget, eval_every,
                            log=_silent if quiet else typer.echo)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None
    typer.echo(f"{n} runs added; results in {storage}")
    _print_table(study.report_rows(store, env))
    if report is not None:
        typer.echo(f"report: {study.write_report(store, report)}")


@app.command("report")
def rl_report(
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("rl-report.html"),
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "table",
) -> None:
    """Print the table and write the HTML report (median and 20–80 % bands over seeds)."""
    from ..results import ResultStore, StorageError
    from ..rl import study

    try:
        check_format(fmt)
        store = ResultStore(storage, create=False)
        rows = study.report_rows(store)
        if not rows:
            raise ValueError(f"no 'rl' results in {storage}; run `descend rl run` first")
        _print_table(rows, fmt)
        report_written(study.write_report(store, out), fmt)
    except (ValueError, StorageError) as exc:
        raise fail(exc) from None


def _silent(line: str) -> None:
    """``--quiet``: progress lines are dropped."""


def _print_table(rows: list[dict[str, object]], fmt: str = "table") -> None:
    if rows:
        print_rows(rows, fmt, title="descend rl")
