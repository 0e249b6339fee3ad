"""Baselines: torch's own AdamW and NAdamW, registered so that the benchmark and the contract tests treat
them like every other optimizer.

* AdamW — Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization" (ICLR), Algorithm 2.
* NAdamW — Dozat 2016, "Incorporating Nesterov Momentum into Adam" (ICLR workshop) with decoupled weight
  decay as in AdamW (``torch.optim.NAdam(decoupled_weight_decay=True)``), the variant AlgoPerf's baseline
  and "Fantastic Pretraining Optimizers" (Wen et al. 2025) use.

Both are torch's math, unchanged; only their registry entries (defaults, search spaces) are ours.

Fast by default:

* :class:`AdamW` uses torch's own ``fused=True`` kernel when every parameter is a floating-point tensor on the
  CPU or a CUDA device and the caller chose none of ``fused``/``foreach``/``capturable``/``differentiable``
  (torch's own default on the CPU is its per-tensor for-loop, 2-3x slower).
* :class:`NAdamW` runs :func:`nadamw_update` -- torch's single-tensor NAdam math (``_single_tensor_nadam``),
  equal to it to rounding (tested in float64) -- through :mod:`descend.optim._fused`:
  ``fused=None`` (default) compiles it where ``torch.compile`` works.  torch offers no fused NAdam, and its
  foreach NAdam is still several passes over memory.  Groups with ``capturable``, ``differentiable`` or
  ``foreach`` set, and complex parameters, take torch's own ``NAdam.step``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.optim.optimizer import _get_scalar_dtype

from ._base import DescendOptimizer, begin_step, call_step_unhooked
from ._fused import ElementwiseBatch, check_fused, torch_fused_supported
from ._validate import check_betas, check_flag, check_float
from .registry import Categorical, Dimension, FloatRange, OptimizerSpec, register

__all__ = ["AdamW", "NAdamW", "nadamw_update"]


def _validate_adam_args(hp: Mapping[str, Any]) -> None:
    check_float("lr", hp.get("lr", 1e-3), 0.0)
    check_betas("betas", hp.get("betas", (0.9, 0.999)))
    check_float("eps", hp.get("eps", 1e-8), 0.0)
    check_float("weight_decay", hp.get("weight_decay", 0.0), 0.0)
    for flag in ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"):
        if flag in hp:
            check_flag(flag, hp[flag])
    for flag in ("foreach", "fused"):  # None: torch's (or descend's) choice
        if flag in hp:
            check_flag(flag, hp[flag], allow_none=True)


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
    any state is created (torch creates the state of earlier parameters first).  ``fused=None`` (default):
    torch's fused kernel where it applies (see the module docstring), else torch's default.
    """

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
    _OPTIONAL_STATE_KEYS = ("max_exp_avg_sq",)

    def __init__(self, params: Any, lr: float = 1e-3, **kwargs: Any) -> None:
        _validate_adam_args({"lr": lr, **kwargs})
        if kwargs.get("fused") is None:
            kwargs.pop("fused", None)
            if not any(kwargs.get(k) for k in ("foreach", "capturable", "differentiable")):
                params = list(params)
                if torch_fused_supported(params):
                    kwargs["fused"] = True
        super().__init__(params, lr=lr, **kwargs)


def nadamw_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, decay: float,
                  wd: float, coupled: bool, maximize: bool, beta1: float, beta2: float, bias_correction2: float,
                  eps: float, grad_coef: float, avg_coef: float) -> None:
    """One NAdam(W) step on one tensor, in place: the math of torch's ``_single_tensor_nadam``.

    ``decay = 1 - lr * wd`` (decoupled, else 1), ``grad_coef = -lr (1 - mu_t) / (1 - prod mu_1..t)``,
    ``avg_coef = -lr mu_{t+1} / (1 - prod mu_1..t+1)``.  Written with plain tensor arithmetic: torch's
    ``lerp_``/``addcmul_(value=)``/``addcdiv_(value=)`` take their scalars as Python numbers that dynamo
    would specialise (one recompilation per learning rate), and their CPU kernels fuse multiply-adds, so the
    result equals torch's NAdam to rounding (tested in float64), not bitwise.
    """
    if maximize:
        g = -g
    p.mul_(decay)
    if coupled:
        g = g + p * wd
    m.add_((g - m) * (1.0 - beta1))  # torch: m.lerp_(g, 1 - beta1)
    v.mul_(beta2).add_(g * g * (1.0 - beta2))
    denom = (v / bias_correction2).sqrt() + eps
    p.add_((g * grad_coef + m * avg_coef) / denom)  # torch: two addcdiv_ (one division fewer per element)


class NAdamW(_CheckedStep, torch.optim.NAdam):
    """``torch.optim.NAdam(decoupled_weight_decay=True)`` (NAdamW) with descend's checks.

    Besides the checks of :class:`AdamW`, this fixes a resume defect of torch's NAdam: its ``mu_product``
    state is a float32 scalar, but torch's ``load_state_dict`` casts it to the parameter dtype, so a float64
    run resumed from a checkpoint drifts from the uninterrupted one by an ulp.  descend's loader keeps the
    saved dtype of ``mu_product``.
    """

    _STATE_KEYS = ("step", "mu_product", "exp_avg", "exp_avg_sq")
    _CONFIG_ATTRS = ("_fused",)

    def __init__(self, params: Any, lr: float = 1e-3, *, weight_decay: float = 1e-2,
                 decoupled_weight_decay: bool = True, **kwargs: Any) -> None:
        # weight_decay defaults to AdamW's 1e-2 (torch's NAdam: 0), as NAdamW is AdamW's Nesterov variant
        _validate_adam_args({"lr": lr, "weight_decay": weight_decay, **kwargs})
        self._fused = check_fused(kwargs.pop("fused", None))
        super().__init__(params, lr=lr, weight_decay=weight_decay, decoupled_weight_decay=decoupled_weight_decay,
                         **kwargs)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One NAdamW step: :func:`nadamw_update` per tensor (compiled where ``fused`` resolves so)."""
        loss = begin_step(self, closure, type(self).__name__)
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            if any(group.get(k) for k in ("capturable", "differentiable", "foreach")) \
                    or any(p.is_complex() for p in group["params"]):
                self._torch_group_step(group)
                continue
            lr = group["lr"]
            lr = float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)
            beta1, beta2 = (float(b) for b in group["betas"])
            wd, momentum_decay = float(group["weight_decay"]), float(group["momentum_decay"])
            decoupled = bool(group["decoupled_weight_decay"])
            scalars = {"decay": 1.0 - lr * wd if decoupled and wd != 0 else 1.0, "wd": wd,
                       "coupled": wd != 0 and not decoupled, "maximize": bool(group["maximize"]),
                       "beta1": beta1, "beta2": beta2, "eps": float(group["eps"])}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:  # torch's _init_group, non-capturable
                    state["step"] = torch.tensor(0.0, dtype=_get_scalar_dtype())
                    state["mu_product"] = torch.tensor(1.0, dtype=_get_scalar_dtype())
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"].item()
                mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
                mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
                state["mu_product"] *= mu
                mu_product = state["mu_product"].item()
                batch.add(nadamw_update, (p, p.grad, state["exp_avg"], state["exp_avg_sq"]),
                          {"bias_correction2": 1 - beta2**step, "grad_coef": -lr * (1.0 - mu) / (1.0 - mu_product),
                           "avg_coef": (-lr * mu_next) / (1.0 - mu_product * mu_next), **scalars})
        batch.run()
        return loss

    def _torch_group_step(self, group: dict[str, Any]) -> None:
        """torch's ``NAdam.step`` body for one group (capturable/differentiable/foreach/complex)."""
        params: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        exp_avgs: list[torch.Tensor] = []
        exp_avg_sqs: list[torch.Tensor] = []
        mu_products: list[torch.Tensor] = []
        state_steps: list[torch.Tensor] = []
        has_complex = self._init_group(group, params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps)
        beta1, beta2 = group["betas"]
        with torch.set_grad_enabled(bool(group["differentiable"])):
            torch.optim.nadam.nadam(
                params, grads, exp_avgs, exp_avg_sqs, mu_products, state_steps,
                beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
                momentum_decay=group["momentum_decay"], eps=group["eps"], maximize=group["maximize"],
                decoupled_weight_decay=group["decoupled_weight_decay"], foreach=group["foreach"],
                capturable=group["capturable"], differentiable=group["differentiable"], has_complex=has_complex)


_ADAM_SPACE: dict[str, Dimension] = {
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
