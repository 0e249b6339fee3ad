"""``descend.bench.compare``: the benchmark's protocol on your own model, from Python.

A workload is a registered name (``"mlp_mnist1d"``, ``"mlp_mnist1d:m"``), a :class:`~descend.bench.workloads.Workload`
subclass, or a **callable** ``build(seed: int) -> Task`` — the minimal protocol:

* ``Task.params`` — the parameters to train (or param groups);
* ``Task.train_loss(step) -> Tensor`` — the scalar training loss on mini-batch ``step``, a deterministic function
  of the seed and ``step`` (line searches re-evaluate it);
* ``Task.evaluate() -> dict`` — held-out metrics computed without gradients, with at least ``"val_loss"`` (the
  judged metric unless ``metric=`` says otherwise; lower is better);
* ``Task.model`` (optional) — the ``nn.Module``, so optimizers that group parameters by role (Muon) can.

``build`` must put everything it randomises under ``seed`` (``torch.manual_seed(seed)`` first is enough) and must
be cheap to call again: every trial builds a fresh task.  The callable runs in this process (a callable cannot be
named in a database for other workers; register a Workload subclass to share a study).

Example (runs in a few seconds; see ``tests/bench/test_compare.py``)::

    import torch
    from descend.bench import compare
    from descend.bench.workloads import Task

    def build(seed):
        torch.manual_seed(seed)
        X, w = torch.randn(512, 8), torch.randn(8, 1)
        y = X @ w + 0.1 * torch.randn(512, 1)
        model = torch.nn.Linear(8, 1)
        def train_loss(step):
            g = torch.Generator().manual_seed(seed * 100_003 + step)
            i = torch.randint(0, 384, (32,), generator=g)
            return torch.nn.functional.mse_loss(model(X[i]), y[i])
        def evaluate():
            with torch.no_grad():
                return {"val_loss": float(torch.nn.functional.mse_loss(model(X[384:]), y[384:]))}
        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate, model=model)

    result = compare(build, optimizers=["adamw", "lion"], trials=3, seeds=2, steps=100)
    print(result.leaderboard)        # a pandas DataFrame when pandas is installed, else a list of dicts
    print("\\n".join(result.verdict))
    result.report("compare.html")    # the same HTML report as ``descend bench report``
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["CompareResult", "compare"]


@dataclass
class CompareResult:
    """What :func:`compare` returns: the summary, the plan and where its results are stored."""

    summary: Any  # report.Summary
    plan: Any  # protocol.Plan
    storage_url: str

    @property
    def rows(self) -> list[dict[str, str]]:
        from .report import leaderboard_rows

        return leaderboard_rows(self.summary)

    @property
    def leaderboard(self) -> Any:
        """The leaderboard: a pandas ``DataFrame`` when pandas is installed, else a list of dicts."""
        try:
            import pandas as pd
        except ImportError:
            return self.rows
        return pd.DataFrame(self.rows)

    @property
    def verdict(self) -> list[str]:
        from .report import verdicts

        return verdicts(self.summary)

    def report(self, path: str | Path) -> Path:
        """Write the self-contained HTML report to ``path`` and return it."""
        from .report import write_html

        return write_html(self.summary, path)


def _callable_workload(fn: Callable[[int], Any], steps: int, metric: str) -> str:
    """Register a build callable as a workload (one scale, ``"s"``) and return its registry name."""
    from .workloads import Workload, register_workload
    from .workloads.base import _WORKLOADS

    name = "user_" + re.sub(r"[^0-9A-Za-z_]", "_", getattr(fn, "__qualname__", "workload"))
    budget, target = steps, metric

    class _User(Workload):
        scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {}}

        def build(self, seed: int, scale: str) -> Any:
            self.settings(scale)
            task = fn(seed)
            if not hasattr(task, "train_loss") or not hasattr(task, "evaluate") or not hasattr(task, "params"):
                raise TypeError(f"{name}: build(seed) must return a descend.bench.workloads.Task, got {type(task)}")
            return task

    _User.name = name
    _User.budget = {"s": budget}
    _User.target_metric = target
    _User.description = (fn.__doc__ or "a user workload").strip().splitlines()[0]
    _WORKLOADS.pop(name, None)  # the same callable (or a new version of it) may be compared again
    register_workload(_User)
    return name


def compare(workload: str | type | Callable[[int], Any], optimizers: Sequence[str] = ("adamw", "nadamw", "lion"),
            *, trials: int = 6, seeds: int = 3, storage: str | None = None, steps: int | None = None,
            scale: str | None = None, metric: str = "val_loss", name: str | None = None,
            **plan_options: Any) -> CompareResult:
    """Tune every optimizer with the same budget on ``workload``, rerun the best on seeds, measure speedups.

    Args:
        workload: a registered workload name (optionally ``name:scale``), a ``Workload`` subclass, or a callable
            ``build(seed) -> Task`` (see the module docstring).
        optimizers: registry names; ``"adamw"`` (the baseline) is added when missing, since every speedup is
            measured against its budget ladder.
        trials: tuning trials for AdamW's search space (others grow with their dimension).
        seeds: final seeds (also the ladder's).
        storage: an SQLAlchemy URL or SQLite file; default a fresh temporary file (results resume when you pass
            the same storage and options again).
        steps: the full budget T — required for a callable, else a ``budget_scale`` relative to the workload's.
        scale: the scale of a registered workload (default its first).
        metric: the judged metric of a callable workload (lower is better).
        name: the plan name (default derived from the workload and options).
        plan_options: further :class:`~descend.bench.protocol.Plan` fields (``ladder``, ``noise_floor``,
            ``sampler``, ``tune_fraction``, ``evaluations``, ``mode``...).
    """
    from .executors import drain
    from .protocol import Plan
    from .report import summarize
    from .storage import Storage
    from .workloads import Workload, get_workload, register_workload

    if trials < 1 or seeds < 1:
        raise ValueError(f"trials and seeds must be >= 1, got trials={trials}, seeds={seeds}")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if isinstance(workload, type) and issubclass(workload, Workload):
        register_workload(workload)
        wname = workload.name
    elif isinstance(workload, str):
        wname, _, sc = workload.partition(":") if workload.count(":") == 1 else (workload, "", "")
        scale = scale or sc or None
        get_workload(wname)
    elif callable(workload):
        if steps is None:
            raise ValueError("steps (the full training budget) is required for a callable workload")
        wname = _callable_workload(workload, steps, metric)
        steps = None  # the budget is the workload's own now
    else:
        raise TypeError(f"workload must be a name, a Workload subclass or a callable build(seed), got {workload!r}")
    w = get_workload(wname)
    scale = scale or next(iter(w.scales))
    opts = tuple(dict.fromkeys(["adamw", *optimizers])) if plan_options.get("baseline", "adamw") == "adamw" \
        else tuple(optimizers)
    if steps is not None:
        plan_options.setdefault("budget_scale", steps / w.budget[scale])
    plan = Plan(name=name or f"compare-{wname}-{scale}-t{trials}-s{seeds}", cells=((wname, scale),),
                optimizers=opts, trials=trials, seeds=seeds, **plan_options)
    if storage is None:
        storage = str(Path(tempfile.mkdtemp(prefix="descend-compare-")) / "bench.db")
    db = Storage(storage)
    db.save_plan(plan.name, plan.to_dict())
    drain(db, plan)
    return CompareResult(summary=summarize(db, plan.name), plan=plan, storage_url=db.url)
