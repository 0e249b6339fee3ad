"""Baselines: torch's own AdamW and NAdamW, registered so that the benchmark and the contract tests treat
them like every other optimizer.

* AdamW — Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (ICLR), Algorithm 2.
* NAdamW — Dozat 2016, "Incorporating Nesterov Momentum into Adam" (ICLR workshop) with decoupled weight
  decay as in AdamW (``torch.optim.NAdam(decoupled_weight_decay=True)``), the variant AlgoPerf's baseline
  and "Fantastic Pretraining Optimizers" (Wen et al. 2025) use.

Both are torch's implementations, unchanged; only their registry entries (defaults, search spaces) are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step, call_step_unhooked
from ._validate import check_betas, check_float
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["AdamW", "NAdamW"]


def _validate_adam_args(hp: Mapping[str, Any]) -> None:
    check_float("lr", hp.get("lr", 1e-3), 0.0)
    check_betas("betas", hp.get("betas", (0.9, 0.999)))
    check_float("eps", hp.get("eps", 1e-8), 0.0)
    check_float("weight_decay", hp.get("weight_decay", 0.0), 0.0)


class _CheckedStep(DescendOptimizer):
    """Mixin for torch's optimizers: ``step`` evaluates the closure (gradients enabled) and rejects sparse or
    complex inputs before torch's ``step`` (called without the closure) creates any state.

    torch's ``step`` is called without its hook runner (the runner of this class fires the hooks once);
    groups given to ``add_param_group`` or ``load_state_dict`` are validated like the constructor's
    arguments; state dicts load through descend's loader with torch's dtype rules (state in the
    parameter's dtype, ``step`` as torch keeps it)."""

    _REQUIRED_GROUP_KEYS = ("lr", "betas", "eps", "weight_decay")
    _STEP_DTYPE = None

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _validate_adam_args(group)

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        if key in ("step", "mu_product"):  # torch's scalars (NAdam's mu_product is float32; see NAdamW)
            return None
        return p.dtype if p.is_floating_point() else None

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = begin_step(self, closure, type(self).__name__)
        call_step_unhooked(super().step.__func__, self)  # type: ignore[attr-defined]
        return loss


class AdamW(_CheckedStep, torch.optim.AdamW):
    """``torch.optim.AdamW`` with descend's argument checks and input checks.

    The math is torch's (Loshchilov & Hutter 2019, Algorithm 2).  What is added: invalid hyperparameters
    raise ``ValueError`` naming the argument and its range, and sparse or complex gradients raise *before*
    any state is created (torch creates the state of earlier parameters first).
    """

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
    _OPTIONAL_STATE_KEYS = ("max_exp_avg_sq",)

    def __init__(self, params: Any, lr: float = 1e-3, **kwargs: Any) -> None:
        _validate_adam_args({"lr": lr, **kwargs})
        super().__init__(params, lr=lr, **kwargs)


class NAdamW(_CheckedStep, torch.optim.NAdam):
    """``torch.optim.NAdam(decoupled_weight_decay=True)`` (NAdamW) with descend's checks.

    Besides the checks of :class:`AdamW`, this fixes a resume defect of torch's NAdam: its ``mu_product``
    state is a float32 scalar, but torch's ``load_state_dict`` casts it to the parameter dtype, so a float64
    run resumed from a checkpoint drifts from the uninterrupted one by an ulp.  descend's loader keeps the
    saved dtype of ``mu_product``.
    """

    _STATE_KEYS = ("step", "mu_product", "exp_avg", "exp_avg_sq")

    def __init__(self, params: Any, lr: float = 1e-3, *, weight_decay: float = 1e-2,
                 decoupled_weight_decay: bool = True, **kwargs: Any) -> None:
        # weight_decay defaults to AdamW's 1e-2 (torch's NAdam: 0), as NAdamW is AdamW's Nesterov variant
        _validate_adam_args({"lr": lr, "weight_decay": weight_decay, **kwargs})
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                         **kwargs)


_ADAM_SPACE = {
    # Wen et al. 2025 (130M, 1x Chinchilla): AdamW lr 8e-3, betas (0.9, 0.98), wd 0.1; NAdamW lr 8e-3,
    # betas (0.95, 0.98), wd 0.1.  wd 0.1 sat 11 % of the log range below the old top (0.3), and
    # data-constrained training wants larger decay: the top is 1.0
    "lr": FloatRange(1e-4, 3e-2, log=True),
    "betas": Categorical(((0.9, 0.95), (0.9, 0.98), (0.9, 0.999), (0.95, 0.98))),
    "weight_decay": FloatRange(1e-5, 1.0, log=True),
}

register(OptimizerSpec(
    name="adamw",
    factory=AdamW,
    paper="Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization (ICLR), arXiv:1711.05101",
    reference="torch.optim.AdamW (its math, unchanged; descend adds argument and input checks)",
    search_space=_ADAM_SPACE,
    summary="Adam with decoupled weight decay (torch's implementation); the benchmark's baseline",
    elementwise=True,
))

register(OptimizerSpec(
    name="nadamw",
    factory=NAdamW,
    paper="Dozat 2016, Incorporating Nesterov Momentum into Adam (ICLR workshop); decoupled decay (AdamW)",
    reference="torch.optim.NAdam(decoupled_weight_decay=True) (its math; descend adds checks, fixes resume)",
    search_space=_ADAM_SPACE,
    summary="Nesterov Adam with decoupled weight decay (torch's implementation)",
    elementwise=True,
))
