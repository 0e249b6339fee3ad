"""Training on freshly drawn in-context tasks, shared by the attention claims (E1, E2).

``sq_errors(b)`` draws ``b`` fresh tasks (from the claim's seeded generator) and returns each task's squared error
of the model's query prediction; training minimises its mean, testing averages it over held-out tasks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["held_out_risk", "train_fresh_tasks"]


def train_fresh_tasks(params: Sequence[torch.Tensor], sq_errors: Callable[[int], torch.Tensor], *, steps: int,
                      batch: int, lr: float, points: int = 100) -> list[float]:
    """Adam with cosine decay to lr/100 over ``steps``, a fresh batch of tasks each step; the training curve as
    the mean loss over each of ``points`` equal windows."""
    opt = torch.optim.Adam(list(params), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 1e-2)
    every = max(1, steps // points)
    curve: list[float] = []
    window: list[float] = []
    for step in range(steps):
        loss = sq_errors(batch).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        window.append(float(loss.detach()))
        if (step + 1) % every == 0:
            curve.append(sum(window) / len(window))
            window = []
    return curve


def held_out_risk(sq_errors: Callable[[int], torch.Tensor], tasks: int, chunk: int) -> tuple[float, float]:
    """Mean squared error over ``tasks`` fresh tasks (drawn ``chunk`` at a time) and its standard error."""
    errs = []
    with torch.no_grad():
        left = tasks
        while left > 0:
            b = min(left, chunk)
            errs.append(sq_errors(b))
            left -= b
    sq = torch.cat(errs)
    return float(sq.mean()), float(sq.std() / math.sqrt(sq.numel()))
