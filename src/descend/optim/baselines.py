"""Baselines: torch's own AdamW and NAdamW, registered so that the benchmark and the contract tests treat
them like every other optimizer.

* AdamW — Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (ICLR), Algorithm 2.
* NAdamW — Dozat 2016, "Incorporating Nesterov Momentum into Adam" (ICLR workshop) with decoupled weight
  decay as in AdamW (``torch.optim.NAdam(decoupled_weight_decay=True)``), the variant AlgoPerf's baseline
  and "Fantastic Pretraining Optimizers" (Wen et al. 2025) use.

Both are torch's implementations, unchanged; only their registry entries (defaults, search spaces) are ours.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .registry import Categorical, ConvergenceCheck, FloatRange, OptimizerSpec, register

__all__ = ["nadamw"]


def nadamw(params: Iterable[Any], **hyperparameters: Any) -> torch.optim.NAdam:
    """``torch.optim.NAdam`` with decoupled weight decay (NAdamW)."""
    return torch.optim.NAdam(params, decoupled_weight_decay=True, **hyperparameters)


_ADAM_SPACE = {
    "lr": FloatRange(1e-4, 3e-2, log=True),
    "betas": Categorical(((0.9, 0.95), (0.9, 0.98), (0.9, 0.999), (0.95, 0.98))),
    "weight_decay": FloatRange(1e-5, 0.3, log=True),
}
_ADAM_CHECKS = {
    "quadratic": ConvergenceCheck({"lr": 0.05, "weight_decay": 0.0}, steps=600, schedule="cosine"),
    "rosenbrock": ConvergenceCheck({"lr": 0.02, "weight_decay": 0.0}, steps=3000, schedule="cosine"),
}

register(OptimizerSpec(
    name="adamw",
    factory=torch.optim.AdamW,
    paper="Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization (ICLR), arXiv:1711.05101",
    reference="torch.optim.AdamW (used as is)",
    defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
    search_space=_ADAM_SPACE,
    summary="Adam with decoupled weight decay (torch's implementation); the benchmark's baseline",
    convergence=_ADAM_CHECKS,
    invalid={"lr": (-1.0,), "eps": (-1e-8,), "betas": ((1.0, 0.999),)},
))

register(OptimizerSpec(
    name="nadamw",
    factory=nadamw,
    paper="Dozat 2016, Incorporating Nesterov Momentum into Adam (ICLR workshop); decoupled decay as in AdamW",
    reference="torch.optim.NAdam(decoupled_weight_decay=True) (used as is)",
    defaults={"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
    search_space=_ADAM_SPACE,
    summary="Nesterov Adam with decoupled weight decay (torch's implementation)",
    convergence=_ADAM_CHECKS,
    invalid={"lr": (-1.0,), "eps": (-1e-8,), "betas": ((1.0, 0.999),)},
))
