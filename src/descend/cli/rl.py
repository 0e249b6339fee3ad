"""``descend rl run | report``: policy-gradient learning curves over seeds (family ``rl`` of the results store)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from ._common import FORMAT_HELP, check_format, fail, print_rows, report_written, split_list

app = typer.Typer(help="Variance-reduced policy gradients vs GPOMDP and PPO: learning curves over seeds.",
                  no_args_is_help=True)

_METHODS = ("reinforce, gpomdp, normalized_pg, n_pg_igt, harpg, n_harpg, ppo; "
            "on --env tabular-average: avg_igt, avg_hessian")


@app.command("run")
def rl_run(
    env: Annotated[str, typer.Option(help="'tabular', 'tabular-average' (average reward) or a Gymnasium id "
                                          "(CartPole-v1, Acrobot-v1, Pendulum-v1, ...)")] = "CartPole-v1",
    methods: Annotated[list[str] | None, typer.Option(help=f"methods (repeatable or comma-separated): {_METHODS}")]
    = None,
    algos: Annotated[list[str] | None, typer.Option(hidden=True, help="old name of --methods")] = None,
    seeds: Annotated[int, typer.Option(help="number of seeds (0, 1, ..., seeds-1)")] = 3,
    budget: Annotated[int, typer.Option(help="trajectories (complete episodes) per run; epochs on tabular-average")]
    = 1000,
    eval_every: Annotated[int | None, typer.Option(help="trajectories per curve point (default budget/50)")] = None,
    storage: Annotated[str, typer.Option(help="SQLAlchemy URL or SQLite file")] = "bench.db",
    report: Annotated[Path | None, typer.Option(help="write the HTML report here when done")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress lines")] = False,
    epoch_length: Annotated[int | None, typer.Option(help="average reward: steps per epoch H (default 200)")] = None,
    window: Annotated[int | None, typer.Option(help="average reward: advantage window N in [1, H] (default 10)")]
    = None,
    lr: Annotated[float | None, typer.Option(help="average reward: step-size scale γ_0 > 0 of γ_k = γ_0·2/(k+2) "
                                                  "(default 1)")] = None,
) -> None:
    """Run every missing (method, seed) on one environment and store its learning curve (resumable)."""
    import torch

    from ..rl import study

    average = env == study.AVERAGE_ENV
    names = split_list([*(methods or []), *(algos or [])] or
                       [",".join(study.AVERAGE_METHODS) if average else "n_pg_igt,n_harpg,gpomdp"]) or []
    if not names:
        raise fail(f"--methods must name at least one of {_METHODS}")
    bad = [m for m in names if m not in study.METHODS]
    if bad:
        raise fail(f"--methods must be among {_METHODS}; got {', '.join(bad)}")
    wrong = [m for m in names if (m in study.AVERAGE_METHODS) != average]
    if wrong:
        raise fail(f"--methods {', '.join(wrong)}: " + (f"--env {env} runs only {', '.join(study.AVERAGE_METHODS)}"
                                                         if average else f"needs --env {study.AVERAGE_ENV}"))
    if not average and (epoch_length is not None or window is not None):
        raise fail(f"--epoch-length and --window apply only to --env {study.AVERAGE_ENV}")
    if not average and lr is not None:
        raise fail(f"--lr applies only to --env {study.AVERAGE_ENV} (the other environments' step sizes are "
                   "per-environment defaults)")
    step_scale = study.AVERAGE_LR if lr is None else lr
    if not (math.isfinite(step_scale) and step_scale > 0):
        raise fail(f"--lr must be a finite number > 0, got {step_scale}")
    h = study.EPOCH_LENGTH if epoch_length is None else epoch_length
    if h < 2:
        raise fail(f"--epoch-length must be ≥ 2 steps, got {h}")
    n_window = study.WINDOW if window is None else window
    if not 1 <= n_window <= h:
        raise fail(f"--window must be in [1, --epoch-length={h}], got {n_window}")
    if seeds < 1:
        raise fail(f"--seeds must be ≥ 1, got {seeds}")
    if budget < 1:
        raise fail(f"--budget must be ≥ 1 trajectory, got {budget}")
    if eval_every is not None and not 1 <= eval_every <= budget:
        raise fail(f"--eval-every must be in [1, --budget={budget}], got {eval_every}")
    if env == "tabular" and "ppo" in names:
        raise fail("--methods ppo needs a Gymnasium --env, not 'tabular'")
    if env not in ("tabular", study.AVERAGE_ENV):
        try:
            import gymnasium as gym

            gym.spec(env)
        except ImportError:
            raise fail("--env needs gymnasium: pip install 'descend[rl]'") from None
        except Exception:
            raise fail(f"--env must be 'tabular' or a registered Gymnasium id (or '{study.AVERAGE_ENV}'), "
                       f"got {env!r}") from None
    from ..results import ResultStore, StorageError

    torch.set_num_threads(1)
    try:
        store = ResultStore(storage)
        n = study.run_study(store, env, names, range(seeds), budget, eval_every,
                            log=_silent if quiet else typer.echo, epoch_length=h, window=n_window,
                            lr=step_scale)
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
