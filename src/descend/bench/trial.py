"""One trial: (workload, scale, optimizer, hyperparameters, seed, steps) → a loss curve and final metrics.

Every optimizer gets the same learning-rate schedule (linear warm-up over the first 5 % of steps, then cosine
decay to zero — judged at the end of training, after the decay) unless it has no learning rate (line
searches).  Only the training steps (forward, backward, optimizer step) are timed; evaluation runs off the
clock at ``evaluations`` evenly spaced checkpoints.  A non-finite training loss ends the trial as diverged.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from .. import optim as do
from ..optim._fused import ENV_VAR
from .workloads import get_workload

__all__ = ["MONITORS", "TrialResult", "check_monitors", "compile_setting", "run_trial", "schedule"]


@dataclass
class TrialResult:
    """What a trial produced.  ``curve`` rows: step, train_time (s), train_loss and the evaluation metrics."""

    curve: list[dict[str, float]]
    final: dict[str, float]
    diverged: bool
    train_time: float
    eval_time: float
    total_time: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        """Fraction of the trial's wall time spent outside training steps and evaluation (harness cost)."""
        return max(self.total_time - self.train_time - self.eval_time, 0.0) / max(self.total_time, 1e-12)


def schedule(t: int, steps: int, warmup_fraction: float = 0.05) -> float:
    """Multiplier of the base lr at step ``t``: linear warm-up then cosine decay to 0 at ``steps``."""
    warm = max(1, round(warmup_fraction * steps))
    if t < warm:
        return (t + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * min(t - warm, steps - warm) / max(steps - warm, 1)))


def _checkpoints(steps: int, evaluations: int) -> set[int]:
    return {round(steps * (i + 1) / evaluations) for i in range(evaluations)} | {steps}


class _CompileState:
    lock = threading.Lock()
    depth = 0
    saved: str | None = None


@contextmanager
def compile_setting(compile: bool | None) -> Iterator[None]:
    """``DESCEND_COMPILE`` for the duration of a trial, restored when the last trial running in this process ends.

    ``compile=None``: the value the user set before any trial started, else ``"0"`` — trials run descend's
    optimizers eagerly unless asked: a compiled default path costs 10-45 s on its first step in every trial
    process, more than a whole quick-suite trial, and the benchmark's default cost axis is steps (wall-time
    profiles are labelled as this machine's).  ``True`` / ``False``: ``"1"`` / ``"0"``.  Trials running at once
    in one process share the variable: give them the same setting (a plan does).
    """
    st = _CompileState
    with st.lock:
        if st.depth == 0:
            st.saved = os.environ.get(ENV_VAR)
        user = st.saved
        os.environ[ENV_VAR] = ("1" if compile else "0") if compile is not None else (user if user is not None
                                                                                       else "0")
        st.depth += 1
    try:
        yield
    finally:
        with st.lock:
            st.depth -= 1
            if st.depth == 0:
                if st.saved is None:
                    os.environ.pop(ENV_VAR, None)
                else:
                    os.environ[ENV_VAR] = st.saved


def run_trial(workload: str, scale: str, optimizer: str, hyperparameters: dict[str, Any], seed: int,
              steps: int, *, evaluations: int = 20, threads: int | None = None,
              progress: Callable[[int], None] | None = None, monitors: Sequence[str] = (),
              monitor_every: int = 0, predictions: bool = False, compile: bool | None = None) -> TrialResult:
    """Train ``workload`` at ``scale`` with ``optimizer`` for ``steps`` steps and return its curve.

    ``hyperparameters`` may come from JSON: lists are turned back into tuples (``betas``).  ``progress(k)``
    is called after every step with the number of steps done.  ``monitors`` (names in :data:`MONITORS`) are
    evaluated every ``monitor_every`` steps and at the last step (:func:`_bench_monitors`).  ``predictions``
    stores the task's final held-out predictions (:attr:`Task.predict`) in ``info["predictions"]``
    (``{split: {"log_probs": N×C, "labels": N}}``, float32 values) for ensembles of runs.  ``compile``:
    whether descend's optimizers take their compiled paths, for this trial only (:func:`compile_setting`;
    default eager unless ``DESCEND_COMPILE`` was set).
    """
    with compile_setting(compile):
        return _run_trial(workload, scale, optimizer, hyperparameters, seed, steps, evaluations=evaluations,
                          threads=threads, progress=progress, monitors=monitors, monitor_every=monitor_every,
                          predictions=predictions)


def _run_trial(workload: str, scale: str, optimizer: str, hyperparameters: dict[str, Any], seed: int,
               steps: int, *, evaluations: int, threads: int | None, progress: Callable[[int], None] | None,
               monitors: Sequence[str], monitor_every: int, predictions: bool) -> TrialResult:
    hyperparameters = {k: tuple(v) if isinstance(v, list) else v for k, v in hyperparameters.items()}
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_monitors(monitors, monitor_every)
    start = time.perf_counter()
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    task = get_workload(workload).build(seed, scale)
    if predictions and task.predict is None:
        raise ValueError(f"workload {workload!r} gives no held-out predictions (Task.predict): it cannot be ensembled")
    spec = do.get(optimizer)
    params = task.params
    if spec.module_groups is not None and task.model is not None:
        params = spec.module_groups(task.model, {**spec.defaults, **hyperparameters})
    opt = spec.create(params, **hyperparameters)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda t: schedule(t, steps))
             if spec.lr_key is not None else None)
    at = _checkpoints(steps, evaluations)
    mons = _bench_monitors(monitors, monitor_every, task, params, opt, spec.lr_key)
    if mons is not None:  # monitor steps become checkpoints too, so every curve row carries the metrics
        at |= {t for t in range(monitor_every, steps + 1, monitor_every)}
    curve: list[dict[str, float]] = []
    train_time = eval_time = monitor_time = 0.0
    diverged = False
    loss_ema = math.nan
    for t in range(steps):
        t0 = time.perf_counter()
        loss: torch.Tensor | None
        if spec.requires_closure:
            # torch's stub types a closure and step's result as float; line searches take and return the loss tensor
            loss = opt.step(partial(task.train_loss, t))  # type: ignore[arg-type, assignment]
        else:
            opt.zero_grad(set_to_none=True)
            loss = task.train_loss(t)
            loss.backward()
            opt.step()
        value = float(loss.detach()) if loss is not None else math.nan
        train_time += time.perf_counter() - t0
        if sched is not None:
            sched.step()
        if progress is not None:
            progress(t + 1)
        loss_ema = value if math.isnan(loss_ema) else 0.9 * loss_ema + 0.1 * value
        if not math.isfinite(value) or (t + 1 in at and not all(bool(torch.isfinite(p).all()) for p in _flat(params))):
            diverged = True
            curve.append({"step": t + 1, "train_time": train_time, "train_loss": math.inf, "val_loss": math.inf})
            break
        if t + 1 in at:
            t1 = time.perf_counter()
            evaluate_last = task.final_evaluate if t + 1 == steps else None
            metrics = dict(evaluate_last() if evaluate_last is not None else task.evaluate())
            eval_time += time.perf_counter() - t1
            row = {"step": t + 1, "train_time": train_time, "train_loss": loss_ema, **metrics}
            if mons is not None:
                t2 = time.perf_counter()
                row.update(mons(t + 1, force=t + 1 == steps) or {})
                monitor_time += time.perf_counter() - t2
            curve.append(row)
    final = dict(curve[-1]) if curve else {"val_loss": math.inf}
    if diverged:
        final = {"step": curve[-1]["step"], "val_loss": math.inf, "train_loss": math.inf}
    info = dict(task.info)
    if predictions and not diverged and task.predict is not None:
        info["predictions"] = {split: {"log_probs": lp.float().tolist(), "labels": y.tolist()}
                               for split, (lp, y) in task.predict().items()}
    if mons is not None:
        info.update(monitors=list(monitors), monitor_every=monitor_every, monitor_time=monitor_time)
    return TrialResult(curve=curve, final=final, diverged=diverged, train_time=train_time, eval_time=eval_time,
                       total_time=time.perf_counter() - start, info=info)


#: curvature monitors ``descend bench run --monitor NAME`` offers (:mod:`descend.curvature.monitors`)
MONITORS = ("sharpness", "trace", "param_change")


def check_monitors(monitors: Sequence[str], every: int) -> None:
    """Refuse unknown monitor names, or monitors without a positive ``every``."""
    for m in monitors:
        if m not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {m!r}")
    if monitors and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValueError(f"monitor_every must be an int >= 1 when monitors are on, got {every!r}")


def _bench_monitors(names: Sequence[str], every: int, task: Any, params: Any, opt: torch.optim.Optimizer,
                    lr_key: str | None) -> Any:
    """The monitors of a trial, or ``None``.  Curvature is that of the training loss on a fixed probe
    mini-batch -- the task's step-0 batch, ``task.train_loss(0)`` -- at the current parameters (a fresh
    :class:`~descend.curvature.ClosureHVPOperator` per reading); ``eta`` is the optimizer's current scheduled
    learning rate (``nan`` for optimizers without one).  2/eta is the edge of stability of (S)GD; for adaptive
    optimizers it is only a reference line (their threshold is on the preconditioned sharpness)."""
    if not names:
        return None
    from ..curvature import ClosureHVPOperator, Monitors, ParameterChangeMonitor, SharpnessMonitor, TraceMonitor

    flat = [p for p in _flat(params) if p.requires_grad]

    def lr() -> float:
        return float(opt.param_groups[0].get(lr_key, math.nan)) if lr_key is not None else math.nan

    def operator() -> ClosureHVPOperator:
        return ClosureHVPOperator(partial(task.train_loss, 0), flat)

    built: list[Any] = []
    for n in names:
        if n == "sharpness":
            built.append(SharpnessMonitor(operator, lr, every))
        elif n == "trace":
            built.append(TraceMonitor(operator, lr, every))
        else:
            built.append(ParameterChangeMonitor(flat, every))
    return Monitors(built)


def _flat(params: Any) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for p in params:
        if isinstance(p, dict):
            out.extend(p["params"])
        else:
            out.append(p)
    return out
