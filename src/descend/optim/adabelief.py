"""AdaBelief: Adam with the second moment of the gradient's deviation from its EMA ("belief").

Paper: Juntang Zhuang, Tommy Tang, Yifan Ding, Sekhar Tatikonda, Nicha Dvornek, Xenophon Papademetris,
James S. Duncan (2020), "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed Gradients",
NeurIPS 2020, arXiv:2010.07468.

Algorithm (paper, Algorithm 2, in the form of the authors' package ``adabelief-pytorch==0.2.1``, which the
authors say produced the paper's results; per parameter tensor, elementwise, step ``t = 1, 2, ...``)::

    if weight_decouple:  W <- W * (1 - lr * wd)       (fixed_decay: W <- W * (1 - wd))    # before moments
    else:                g <- g + wd * W                                                # L2, coupled
    m <- beta1 m + (1 - beta1) g
    s <- beta2 s + (1 - beta2) (g - m)^2              # with the *new* m
    s <- s + eps                                      # eps accumulates INTO the state, every step
    amsgrad:  s_max <- max(s_max, s)
    not rectify:   W <- W - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps),  v = s_max or s
    rectify (RAdam, Liu et al. 2020, arXiv:1908.03265, Algorithm 2):
        rho_inf = 2 / (1 - beta2) - 1,   rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        rho_t >= 5:  r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
                     W <- W - lr r_t sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(s) + eps)
        rho_t < 5:   degenerated_to_sgd:  W <- W - lr / (1 - beta1^t) * m      else: W unchanged

eps semantics (the package's, reproduced exactly because the fixtures test them): eps is added to ``s`` in
place at every step (so it accumulates, ``s_t >= eps / (1 - beta2)`` asymptotically) *and* added again
outside the square root; eps_AdaBelief ~ eps_Adam^2.  With ``rectify`` and ``amsgrad`` the rectified step
divides by ``sqrt(s) + eps``, not by the running maximum (the maximum is tracked but unused): package
behaviour.

Defaults (the package's 0.2.x): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=0, amsgrad=False,
weight_decouple=True, fixed_decay=False, rectify=True, degenerated_to_sgd=True``.

Reference: ``adabelief-pytorch==0.2.1`` (``adabelief_pytorch.AdaBelief``).  Checked against its recorded
trajectories (``adabelief__*.json``) with rtol 1e-10, atol 1e-12 in float64, and live against the package.

Fast path: ``fused=True`` runs the same per-tensor functions (:func:`adabelief_adaptive`,
:func:`adabelief_rectified`, :func:`adabelief_sgd`, :func:`adabelief_moments_only`) compiled by
``torch.compile`` into one loop per tensor (see :mod:`descend.optim._fused`).  Default ``fused=None``:
compiled where ``torch.compile`` works, eager (one warning) where it does not.

bfloat16/float16 parameters: state in float32, update in float32, rounded once into the parameter (the
package upcasts float16 the same way; :mod:`descend.optim._mixed_precision`).

Deviations from the reference:

* ``weight_decouple``, ``fixed_decay``, ``rectify`` and ``degenerated_to_sgd`` are per-group hyperparameters
  (the package reads them from the optimizer object), so different groups may use different settings.
* Coupled weight decay does not modify ``p.grad`` in place (the package does).
* The rectification term is computed from the current ``betas`` at every step; the package caches it per
  step number in a list shared between groups (stale if a group's ``beta2`` changes).
* The step counter is a float64 tensor (``state["step"]``) so that ``state_dict`` round-trips it; no change
  log is printed (``print_change_log`` is accepted only when replaying fixtures).
* Invalid values raise ``ValueError``; a negative ``weight_decay`` is rejected (the package accepts it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused, copy_back
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_float
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = [
    "AdaBelief",
    "adabelief_adaptive",
    "adabelief_moments_only",
    "adabelief_rectified",
    "adabelief_sgd",
    "rectified_step_multiplier",
]

_FLAGS = ("amsgrad", "weight_decouple", "fixed_decay", "rectify", "degenerated_to_sgd")


# ---------------------------------------------------------------------------------------------------------
# The math, per tensor and in place.  These functions are both the eager path and (compiled) the fast path.


def _belief_moments(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                    s_max: torch.Tensor | None, decay: float, wd: float, coupled: bool, beta1: float,
                    beta2: float, eps: float) -> None:
    p.mul_(decay)  # decoupled decay; decay = 1 (exact no-op) otherwise
    if coupled:
        g = g + p * wd
    m.mul_(beta1).add_(g * (1.0 - beta1))
    residual = g - m
    s.mul_(beta2).add_(residual * residual * (1.0 - beta2))
    s.add_(eps)
    if s_max is not None:
        s_max.copy_(torch.maximum(s_max, s))


def adabelief_adaptive(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                       s_max: torch.Tensor | None, *, decay: float, wd: float, coupled: bool, beta1: float,
                       beta2: float, eps: float, step_size: float, sqrt_bc2: float) -> None:
    """Unrectified step: ``W -= step_size * m / (sqrt(v) / sqrt_bc2 + eps)``, ``v = s_max`` or ``s``."""
    _belief_moments(p, g, m, s, s_max, decay, wd, coupled, beta1, beta2, eps)
    v = s if s_max is None else s_max
    p.sub_(m / (v.sqrt() / sqrt_bc2 + eps) * step_size)


def adabelief_rectified(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                        s_max: torch.Tensor | None, *, decay: float, wd: float, coupled: bool, beta1: float,
                        beta2: float, eps: float, step_size: float) -> None:
    """Rectified step (rho_t >= 5): ``W -= step_size * m / (sqrt(s) + eps)`` (``s``, even with amsgrad)."""
    _belief_moments(p, g, m, s, s_max, decay, wd, coupled, beta1, beta2, eps)
    p.sub_(m / (s.sqrt() + eps) * step_size)


def adabelief_sgd(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                  s_max: torch.Tensor | None, *, decay: float, wd: float, coupled: bool, beta1: float,
                  beta2: float, eps: float, step_size: float) -> None:
    """SGD-with-momentum fallback while rho_t < 5: ``W -= step_size * m``."""
    _belief_moments(p, g, m, s, s_max, decay, wd, coupled, beta1, beta2, eps)
    p.sub_(m * step_size)


def adabelief_moments_only(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, s: torch.Tensor,
                           s_max: torch.Tensor | None, *, decay: float, wd: float, coupled: bool,
                           beta1: float, beta2: float, eps: float) -> None:
    """rho_t < 5 without the SGD fallback: decay and moments only, the parameter takes no step."""
    _belief_moments(p, g, m, s, s_max, decay, wd, coupled, beta1, beta2, eps)


def rectified_step_multiplier(step: int, beta1: float, beta2: float) -> float | None:
    """RAdam's ``r_t sqrt(1 - beta2^t) / (1 - beta1^t)``, or ``None`` while ``rho_t < 5``."""
    beta2_t = beta2**step
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    rho_t = rho_inf - 2.0 * step * beta2_t / (1.0 - beta2_t)
    if rho_t < 5.0:
        return None
    r2 = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    return math.sqrt(r2 * (1.0 - beta2_t)) / (1.0 - beta1**step)


# ---------------------------------------------------------------------------------------------------------


class AdaBelief(DescendOptimizer):
    """AdaBelief (Zhuang et al. 2020) with the options of ``adabelief-pytorch==0.2.1``.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)``, each in ``[0, 1)``.
        eps: added to the belief ``s`` every step and to the denominator, ``>= 0`` (see module docs).
        weight_decay: ``>= 0``; decoupled (``W *= 1 - lr * wd``) or L2 (added to the gradient).
        amsgrad: divide by the running maximum of ``s`` (unrectified steps only, as the package does).
        weight_decouple: decoupled weight decay (else L2 added to the gradient).
        fixed_decay: with ``weight_decouple``: ``W *= 1 - wd``, independent of the learning rate.
        rectify: RAdam's variance rectification.
        degenerated_to_sgd: with ``rectify``: SGD-with-momentum steps while ``rho_t < 5`` (else no step).
        fused: ``None`` (default) compiled where ``torch.compile`` works, ``True`` always, ``False`` eager.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        weight_decay: float = 0.0,
        *,
        amsgrad: bool = False,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = True,
        degenerated_to_sgd: bool = True,
        fused: bool | None = None,
    ) -> None:
        self._fused = check_fused(fused)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "weight_decouple": weight_decouple, "fixed_decay": fixed_decay, "rectify": rectify,
                    "degenerated_to_sgd": degenerated_to_sgd}
        _check_group(defaults)
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_var")
    _OPTIONAL_STATE_KEYS = ("max_exp_avg_var",)
    _CONFIG_ATTRS = ("_fused",)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _check_group(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "AdaBelief")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            lr, wd, eps = float(group["lr"]), float(group["weight_decay"]), float(group["eps"])
            beta1, beta2 = (float(b) for b in group["betas"])
            if group["weight_decouple"]:
                decay = 1.0 - wd if group["fixed_decay"] else 1.0 - lr * wd
                coupled = False
            else:
                decay, coupled = 1.0, wd != 0.0
            common = {"decay": decay, "wd": wd, "coupled": coupled, "beta1": beta1, "beta2": beta2, "eps": eps}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                dtype = state_dtype(p)
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                    state["exp_avg_var"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                if group["amsgrad"] and "max_exp_avg_var" not in state:
                    state["max_exp_avg_var"] = torch.zeros_like(p, dtype=dtype,
                                                                memory_format=torch.preserve_format)
                state["step"] += 1
                t = int(state["step"].item())
                fn, extra = _update_rule(group, t, lr, beta1, beta2)
                w = p if p.dtype == dtype else p.to(dtype)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                s_max = state["max_exp_avg_var"] if group["amsgrad"] else None
                batch.add(fn, (w, g, state["exp_avg"], state["exp_avg_var"], s_max), {**common, **extra},
                          None if w is p else copy_back(p, w))
        batch.run()
        return loss


def _update_rule(group: Mapping[str, Any], t: int, lr: float, beta1: float,
                 beta2: float) -> tuple[Callable[..., None], dict[str, float]]:
    """The per-tensor function of step ``t`` and its step-dependent scalars."""
    bias_correction1 = 1.0 - beta1**t
    if not group["rectify"]:
        return adabelief_adaptive, {"step_size": lr / bias_correction1, "sqrt_bc2": math.sqrt(1.0 - beta2**t)}
    multiplier = rectified_step_multiplier(t, beta1, beta2)
    if multiplier is not None:
        return adabelief_rectified, {"step_size": lr * multiplier}
    if group["degenerated_to_sgd"]:
        return adabelief_sgd, {"step_size": lr / bias_correction1}
    return adabelief_moments_only, {}


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    for flag in _FLAGS:
        if not isinstance(group[flag], bool):
            raise ValueError(f"{flag} must be a bool, got {group[flag]!r}")


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> AdaBelief:
    hp = dict(fx["hyperparameters"])
    hp.pop("print_change_log", None)  # the package's logging switch, no numerical effect
    hp["betas"] = tuple(hp["betas"])
    return AdaBelief([params[n] for n in fx["param_order"]], **hp)


register(OptimizerSpec(
    name="adabelief",
    factory=AdaBelief,
    paper="Zhuang, Tang, Ding, Tatikonda, Dvornek, Papademetris, Duncan 2020, AdaBelief Optimizer: Adapting "
          "Stepsizes by the Belief in Observed Gradients (NeurIPS), arXiv:2010.07468",
    reference="adabelief-pytorch==0.2.1",
    search_space={
        "lr": FloatRange(1e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.95), (0.9, 0.98), (0.9, 0.999), (0.95, 0.98))),
        "eps": Categorical((1e-16, 1e-12, 1e-8)),
        "weight_decay": FloatRange(1e-5, 1.0, log=True),  # as AdamW's (Wen et al.: wd 0.1 for Adam-type methods)
        "rectify": Categorical((True, False)),
    },
    summary="Adam whose second moment tracks (g - m)^2, with RAdam rectification (package defaults)",
    elementwise=True,
    fixture_names=("adabelief",),
    from_fixture=_from_fixture,
))
