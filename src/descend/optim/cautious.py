"""Cautious optimizers: C-AdamW, and a ``cautious(Base)`` wrapper for any optimizer (C-Lion, ...).

Paper: Kaizhao Liang, Lizhang Chen, Bo Liu, Qiang Liu (2024), "Cautious Optimizers: Improving Training with
One Line of Code", arXiv:2411.16085.

Algorithm (paper, Algorithm 1 with the mask of Eq. (7) and its rescaling; per parameter tensor, ``u`` the
base optimizer's update direction, ``g`` the current gradient)::

    m    = 1[u ⊙ g > 0]                          # elementwise: keep coordinates where u agrees with g
    u    = u ⊙ m / max(mean(m), 1e-3)            # rescale by the fraction kept (mean over the tensor)
    W   <- W * (1 - lr * wd) - lr * u            # decoupled weight decay is not masked

C-AdamW (the reference's ``AdamW``): ``m_t = β1 m + (1-β1) g``, ``v_t = β2 v + (1-β2) g²``, mask from the
*updated* ``m_t`` and ``g_t``, ``u = m_t ⊙ mask / denom``.  The reference has two code paths that differ in
where ``eps`` goes (both are reproduced, selected by ``foreach`` as in the reference):

* ``foreach=False`` (transformers-AdamW style): ``W += -lr·wd·W``; ``denom = sqrt(v_t) + eps``; step size
  ``lr·sqrt(1-β2^t)/(1-β1^t)`` (``lr`` when ``correct_bias=False``).
* ``foreach=True`` (the reference default, torch.optim.AdamW style): ``denom = sqrt(v_t)/sqrt(1-β2^t) + eps``;
  step size ``lr/(1-β1^t)``; ``correct_bias`` is ignored, as in the reference.

Defaults (the reference's): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0, correct_bias=True,
foreach=True``.

:func:`cautious` wraps any ``torch.optim.Optimizer`` class: the base step runs with its ``weight_decay``
set to 0, its update ``Δ = W_new - W_old`` is the direction ``-lr·u``, the mask is ``1[-Δ ⊙ g > 0]`` and the
wrapper writes ``W_old·(1 - lr·wd) + Δ ⊙ m / max(mean(m), 1e-3)``.  For AdamW and Lion this is exactly the
paper's C-AdamW / C-Lion (the sign of ``-Δ`` is the sign of ``u``; ``Δ`` is exact up to one rounding of
``W``).  It costs one copy of the parameters per step; bases whose decay is not ``W *= 1 - lr·wd``
(Lion's ``decoupled_weight_decay=True``) are refused.

Reference: ``kyleliang919/C-Optim@2c0517c4db2e50b56d389ba4803eab1f4b3b8ae3:c_adamw.py`` (``AdamW``).
Checked against its recorded trajectories (``c_adamw__*.json``: both code paths, small gradients where
``eps`` dominates, weight decay, ``correct_bias=False``) with rtol 1e-10, atol 1e-12 in float64.  C-Lion is
checked against a direct implementation of the rule above (tests/optim/test_cautious.py).

Deviations from the reference:

* The step counter is per parameter (a float64 tensor in the state; the foreach path of the reference keeps
  it per group).  Identical unless parameters join a group midway.
* The reference's foreach path builds ``lr``, betas and ``eps`` as default-dtype scalar tensors (float32
  when the default dtype is float32); descend uses Python floats (float64 scalars).
* ``no_deprecation_warning`` is accepted and ignored (it only silences a warning in the reference);
  invalid values raise ``ValueError`` instead of the reference's checks, ``lr = 0`` is accepted.
* No DTensor branch (the mask mean is per local tensor).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step, call_step_unhooked
from ._fused import ElementwiseBatch, check_fused
from ._validate import check_betas, check_flag, check_float
from .lion import Lion
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["CAdamW", "CLion", "cautious", "cautious_scale"]

#: floor of the mask mean in the rescaling (the reference's ``clamp(min=1e-3)``)
MASK_MEAN_FLOOR = 1e-3


def cautious_scale(u: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``1[u ⊙ g > 0] / max(mean(1[u ⊙ g > 0]), 1e-3)``: the cautious mask, rescaled (a new tensor)."""
    mask = (u * g > 0).to(u.dtype)
    return mask.div_(mask.mean().clamp_(min=MASK_MEAN_FLOOR))


class CAdamW(DescendOptimizer):
    """C-AdamW (Liang et al. 2024): AdamW whose update keeps only the coordinates where momentum and gradient
    agree in sign, rescaled by the fraction kept.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)`` in ``[0, 1)``.
        eps: added to the denominator, ``>= 0`` (where: see ``foreach``).
        weight_decay: decoupled weight decay, ``>= 0``.
        correct_bias: bias correction of the loop path (``foreach=False``); ignored by the foreach path.
        foreach: ``True`` (default) = the reference's foreach path (``eps`` after the ``sqrt(1-β2^t)``
            correction), ``False`` = its per-parameter loop (``eps`` on the uncorrected ``sqrt(v)``).
        no_deprecation_warning: accepted for compatibility with the reference, no effect.
        fused: ``None`` (default) compiled where ``torch.compile`` works (one call per group of tensors),
            ``True`` always, ``False`` eager; the same math function (:func:`c_adamw_math`) either way.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        *,
        foreach: bool = True,
        no_deprecation_warning: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "correct_bias": correct_bias, "foreach": foreach}
        _check_group(defaults)
        check_flag("no_deprecation_warning", no_deprecation_warning)  # accepted for the reference's signature
        self._fused = check_fused(fused)
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
    _CONFIG_ATTRS = ("_fused",)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        """The one validation of a group (constructor, ``add_param_group``, ``load_state_dict``)."""
        _check_group(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "CAdamW")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                scalars = c_adamw_scalars(t=int(state["step"].item()), lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                                          wd=wd, correct_bias=bool(group["correct_bias"]),
                                          foreach=bool(group["foreach"]))
                batch.add(c_adamw_math, (p, p.grad, state["exp_avg"], state["exp_avg_sq"]), scalars)
        batch.run()
        return loss


def c_adamw_scalars(*, t: int, lr: float, beta1: float, beta2: float, eps: float, wd: float, correct_bias: bool,
                    foreach: bool) -> dict[str, float]:
    """The step-dependent scalars of :func:`c_adamw_math` at step ``t`` (1-based), for either code path."""
    bc1, bc2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
    if foreach:  # eps after the sqrt(1 - β2^t) correction
        sqrt_bc2, step_size = math.sqrt(bc2), lr / bc1
    else:  # eps on the uncorrected sqrt(v)
        sqrt_bc2, step_size = 1.0, (lr * math.sqrt(bc2) / bc1 if correct_bias else lr)
    return {"decay": 1.0 - lr * wd, "beta1": beta1, "beta2": beta2, "eps": eps, "sqrt_bc2": sqrt_bc2,
            "step_size": step_size}


def c_adamw_math(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, decay: float, beta1: float,
                 beta2: float, eps: float, sqrt_bc2: float, step_size: float) -> None:
    """One C-AdamW step on one tensor, in place: the eager path and (compiled) the fast path.

    ``decay = 1 - lr·wd`` (exactly 1 without decay), ``denom = sqrt(v)/sqrt_bc2 + eps`` (``sqrt_bc2 = 1`` on the
    loop path: dividing by 1 is exact), the cautious mask and its rescaling from the updated ``m`` and ``g``.
    """
    p.mul_(decay)
    m.mul_(beta1).add_(g * (1.0 - beta1))
    v.mul_(beta2).add_(g * g * (1.0 - beta2))
    denom = v.sqrt() / sqrt_bc2 + eps
    p.sub_(m * cautious_scale(m, g) / denom * step_size)


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    for key in ("correct_bias", "foreach"):
        check_flag(key, group[key])


# ----------------------------------------------------------------------------------------------------
# the generic wrapper


_CAUTIOUS_CLASSES: dict[type[torch.optim.Optimizer], type[torch.optim.Optimizer]] = {}


def _refuse_decoupled_decay(base: type[torch.optim.Optimizer], group: Mapping[str, Any]) -> None:
    # Lion's option decays W *= 1 - lr * wd / lr_init (torch's AdamW has the key too, meaning its own decay)
    if issubclass(base, Lion) and group.get("decoupled_weight_decay") is True:
        raise ValueError("decoupled_weight_decay must be False in a cautious Lion "
                         "(its decay is taken out of the base step as W *= 1 - lr * weight_decay)")


def cautious(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """Return a subclass of ``base`` whose steps are cautious (see the module docstring).

    ``base`` must update each parameter from its gradient and apply any weight decay as
    ``W *= 1 - lr·weight_decay`` under the group keys ``"lr"`` and ``"weight_decay"`` (AdamW, Lion, ...).
    The same ``base`` returns the same class; its instances pickle (through :func:`_new_cautious`, the class
    being made at run time) and fire torch's step hooks once per ``step()``.
    """
    if not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
        raise ValueError(f"base must be a torch.optim.Optimizer subclass, got {base!r}")
    cached = _CAUTIOUS_CLASSES.get(base)
    if cached is not None:
        return cached

    class Cautious(base):  # type: ignore[valid-type, misc]
        __doc__ = f"Cautious {base.__name__} (Liang et al. 2024): see :func:`descend.optim.cautious.cautious`."

        def _check_group(self, group: Mapping[str, Any]) -> Any:
            """The base's validation (when it has one, as descend's optimizers do) and the wrapper's."""
            _refuse_decoupled_decay(base, group)
            check = getattr(super(), "_check_group", None)
            return check(group) if check is not None else None

        def add_param_group(self, param_group: dict[str, Any]) -> None:
            if isinstance(param_group, dict):  # refused before the base adds anything
                _refuse_decoupled_decay(base, {**self.defaults, **param_group})
            super().add_param_group(param_group)

        def __reduce_ex__(self, protocol: Any) -> Any:
            if type(self) is not _CAUTIOUS_CLASSES.get(base):  # a user's subclass: the default protocol
                return super().__reduce_ex__(protocol)
            return (_new_cautious, (base,), self.__getstate__())

        @torch.no_grad()
        def step(self, closure: Callable[[], Any] | None = None) -> Any:
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            saved = [(group, group.get("weight_decay", 0.0)) for group in self.param_groups]
            olds = [[p.detach().clone() if p.grad is not None else None for p in group["params"]]
                    for group in self.param_groups]
            for group, _ in saved:
                if "weight_decay" in group:
                    group["weight_decay"] = 0.0
            try:
                # the base's step without torch's hook runner: this step() already fires the hooks once
                call_step_unhooked(base.step, self)
            finally:
                for group, wd in saved:
                    if "weight_decay" in group:
                        group["weight_decay"] = wd
            for (group, wd), old in zip(saved, olds, strict=True):
                decay = 1.0 - float(group["lr"]) * float(wd)
                for p, w0 in zip(group["params"], old, strict=True):
                    if w0 is None or p.grad is None:
                        continue
                    delta = p.sub(w0)
                    g = p.grad if p.grad.dtype == delta.dtype else p.grad.to(delta.dtype)
                    delta.mul_(cautious_scale(delta.neg(), g))
                    if decay != 1.0:
                        w0.mul_(decay)
                    p.copy_(w0.add_(delta))
            return loss

    Cautious.__name__ = Cautious.__qualname__ = f"Cautious{base.__name__}"
    Cautious.__module__ = __name__
    _CAUTIOUS_CLASSES[base] = Cautious
    return Cautious


def _new_cautious(base: type[torch.optim.Optimizer]) -> torch.optim.Optimizer:
    """An empty instance of ``cautious(base)`` (unpickling fills it via ``__setstate__``)."""
    cls = cautious(base)
    return cls.__new__(cls)


CLion = cautious(Lion)
CLion.__doc__ = """C-Lion (Liang et al. 2024): Lion whose sign update is masked where it disagrees with the gradient.

Same arguments as :class:`descend.optim.Lion` (``decoupled_weight_decay`` must stay ``False``)."""


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> CAdamW:
    hp = dict(fx["hyperparameters"])
    hp["betas"] = tuple(hp["betas"])
    return CAdamW([params[n] for n in fx["param_order"]], **hp)


_PAPER = ("Liang, Chen, Liu, Liu 2024, Cautious Optimizers: Improving Training with One Line of Code, "
          "arXiv:2411.16085")

register(OptimizerSpec(
    name="c_adamw",
    factory=CAdamW,
    paper=_PAPER,
    reference="kyleliang919/C-Optim@2c0517c4db2e50b56d389ba4803eab1f4b3b8ae3:c_adamw.py",
    # Wen et al. 2025 (130M, 1x Chinchilla): lr 8e-3, betas (0.95, 0.98), eps 1e-15, wd 0.1
    search_space={
        "lr": FloatRange(1e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.98), (0.95, 0.98), (0.9, 0.95), (0.9, 0.999))),
        "eps": Categorical((1e-15, 1e-10, 1e-8, 1e-6)),
        "weight_decay": Categorical((0.0, 0.1, 0.2)),
    },
    summary="AdamW with the update masked where momentum and gradient disagree in sign (rescaled)",
    elementwise=False,  # the rescaling uses the mask's mean over the whole tensor
    fixture_names=("c_adamw",),
    from_fixture=_from_fixture,
))

register(OptimizerSpec(
    name="c_lion",
    factory=CLion,
    paper=_PAPER,
    reference="kyleliang919/C-Optim (C-Lion rule, checked against a direct implementation)",
    # Wen et al. 2025 tuned Lion (130M): lr 2e-3, betas (0.9, 0.95), wd 0.7
    search_space={
        "lr": FloatRange(1e-5, 3e-3, log=True),
        "betas": Categorical(((0.9, 0.99), (0.95, 0.98), (0.9, 0.95))),
        "weight_decay": FloatRange(1e-3, 3.0, log=True),
    },
    summary="Lion with the sign update masked where it disagrees with the gradient (rescaled)",
))
