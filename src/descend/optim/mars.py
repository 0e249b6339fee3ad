"""MARS: variance-reduced momentum for AdamW, Lion and Shampoo bases (approximate and exact forms).

Paper: Huizhuo Yuan, Yifeng Liu, Shuang Wu, Xun Zhou, Quanquan Gu (2024), "MARS: Unleashing the Power of
Variance Reduction for Training Large Models", arXiv:2411.10438.

Algorithm (paper, Algorithm 1 with the approximation of Section 3 "MARS-approx" and the instantiations of
Algorithms 2-4; per matrix parameter ``W``, ``g_t`` the gradient, ``g_0 = 0``)::

    c_t = g_t + γ · β1/(1-β1) · (g_t - g_{t-1})          # Eq. (7): scaled gradient correction
    c_t = c_t / ‖c_t‖_F   if ‖c_t‖_F > 1                # clipped to norm 1 (per tensor)
    m_t = β1 m + (1-β1) c_t
    mars-adamw:    v_t = β2 v + (1-β2) c_t²
                   W  -= lr · (wd·W + m_t / ((sqrt(v_t)/sqrt(1-β2^t) + eps)·(1-β1^t)))
                   (amsgrad: max over the v_t seen so far)
    mars-lion:     W  -= lr · (wd·W + sign(m_t))
    mars-shampoo:  W  -= lr · (sqrt(max(1, rows/cols)) · NS5(m_t/(1-β1)) + wd·W)

``NS5`` is five Newton-Schulz iterations with Jordan et al.'s coefficients, ``X/(‖X‖_F + eps)`` normalisation
and ``eps`` the optimizer's (:func:`descend.optim._linalg.newton_schulz`, shared with Muon).  Step 1 uses
``c_1 = (1 + γ·β1/(1-β1))·g_1`` (``g_0 = 0``).

Exact form (``is_approx=False``; paper, Algorithm 1 as written): ``g_{t-1}`` is replaced by
``∇f(x_{t-1}, ξ_t)``, the gradient of the *current* mini-batch at the previous iterate, with ``x_0 = x_1`` (no
correction at step 1).  ``step(closure)`` is then required: the closure (torch/LBFGS convention: zero the
gradients, evaluate the loss on the current batch, ``backward()``, return the loss; ``backward()`` is called
for it if it only returns the loss) runs at ``x_t`` and, with the parameters temporarily set to the saved
``x_{t-1}`` (state ``prev_param``), a second time; it must be deterministic given the batch (seed any dropout).
Twice the gradient cost per step.  Vectors (``ndim < 2``) take plain AdamW with ``betas_1d``,
learning rate ``lr·lr_1d/lr_init`` (``lr_init``: the constructor's ``lr``) and ``weight_decay_1d`` in the
same form as mars-adamw, unless ``optimize_1d=True``, in which case they go through MARS with
``weight_decay`` (mars-shampoo then uses its AdamW form for them).

Defaults (the reference's): ``lr=3e-3, betas=(0.95, 0.99), eps=1e-8, weight_decay=0, amsgrad=False,
gamma=0.025, mars_type="mars-adamw", optimize_1d=False, lr_1d=3e-3, betas_1d=(0.9, 0.95),
weight_decay_1d=0.1``; Newton-Schulz in bfloat16 as in the reference
where bfloat16 is fast, else float32 (``ns_dtype="auto"``).

Reference: ``AGI-Arena/MARS@4831e28eba863a4e69d7e9474ff8e73bc1b410fe:MARS/optimizers/mars.py`` (``MARS``).
Checked against its recorded trajectories (``mars__*.json``: mars-adamw with and without optimize_1d and
amsgrad, mars-lion, mars-shampoo with float64 Newton-Schulz) with rtol 1e-10, atol 1e-12 in float64.

Deviations from the reference:

* The exact form is driven by ``step(closure)`` (the optimizer evaluates both gradients); the reference's exact
  mode leaves that to the training loop (``update_previous_grad()``/``update_last_grad()`` around a second
  model copy).  It is checked against a direct float64 implementation of Algorithm 1
  (tests/optim/test_mars_exact.py, rtol 1e-11); no reference fixture covers it.
* Every tensor with ``ndim >= 2`` is a matrix (the reference: ``ndim == 2`` only, so conv kernels went to the
  1-D AdamW); mars-shampoo reshapes such a tensor to ``[shape[0], -1]``.
* ``last_grad`` is a copy of the gradient (the reference keeps a reference to ``p.grad``).
* Every hyperparameter is per parameter group (the reference reads ``gamma``, ``mars_type``, ``optimize_1d``,
  ``lr_1d``, ``betas_1d``, ``weight_decay_1d`` from the constructor only).  The 1-D learning rate is
  ``group lr · lr_1d / lr_init`` with ``lr_init`` the constructor's ``lr`` (the reference's
  ``lr_1d_factor = lr_1d / lr``), stored in every group as ``"lr_init"``: a group's own ``lr`` and a schedule
  scale the 1-D rate as they scale the matrices' (torch's per-group contract); a group may set its own
  ``lr_1d`` too.  With ``lr_init = 0`` (the reference divides by zero) the 1-D parameters stay frozen.
* A group's ``weight_decay`` applies to its MARS tensors only; its AdamW vectors (``optimize_1d=False``)
  take the group's ``weight_decay_1d`` (as in the reference, where it is the constructor's).
* The Newton-Schulz normalisation takes the norm after the cast to ``ns_dtype`` (the reference: before);
  identical in float64.
* Invalid values raise ``ValueError`` naming the argument (``gamma``, ``weight_decay`` are checked too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused, copy_back
from ._linalg import newton_schulz
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_choice, check_float, check_no_sparse_or_complex
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["MARS", "MARS_TYPES"]

MARS_TYPES = ("mars-adamw", "mars-lion", "mars-shampoo")
_NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


class MARS(DescendOptimizer):
    """MARS (Yuan et al. 2024), approximate or exact form: a clipped, variance-reduced gradient feeds an AdamW, Lion or
    Shampoo (Newton-Schulz) update of the matrices; vectors take AdamW.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)`` in ``[0, 1)``.
        eps: denominator / Newton-Schulz ``eps``, ``>= 0``.
        weight_decay: decay of the MARS tensors, ``>= 0`` (``W -= lr·wd·W``, inside the step).
        amsgrad: AdamW forms keep the running maximum of ``v``.
        gamma: scale of the gradient correction, ``>= 0`` (``0`` = the base optimizer on clipped gradients).
        is_approx: ``True`` (default): the previous step's gradient; ``False``: the exact form (needs
            ``step(closure)``, two gradient evaluations per step).
        mars_type: ``"mars-adamw"``, ``"mars-lion"`` or ``"mars-shampoo"``.
        optimize_1d: vectors through MARS too (else plain AdamW with the ``*_1d`` hyperparameters).
        lr_1d: learning rate of the vectors' AdamW at the constructor's ``lr``, ``>= 0`` (a group's ``lr``, and a
            schedule, scale it by ``lr / lr_init``).
        betas_1d: betas of the vectors' AdamW, in ``[0, 1)``.
        weight_decay_1d: weight decay of the vectors' AdamW, ``>= 0``.
        ns_dtype: dtype of the Newton-Schulz iteration (mars-shampoo): ``"auto"`` (default: bfloat16, the
            reference's, where bfloat16 matmuls are fast, else float32 —
            :func:`descend.optim._linalg.newton_schulz_dtype`), ``torch.bfloat16``,
            ``torch.float32`` or ``torch.float64``, or its name (``"float32"``: the registry default).
        ns_steps: Newton-Schulz iterations, ``>= 1``.
        fused: mars-adamw's matrices: ``None`` (default) compiled where ``torch.compile`` works (one call per
            group of tensors), ``True`` always, ``False`` eager; one math function (:func:`mars_adamw_math`)
            either way.  The Lion and Shampoo forms and the vectors' AdamW run eagerly.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 3e-3,
        betas: tuple[float, float] = (0.95, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        gamma: float = 0.025,
        is_approx: bool = True,
        mars_type: str = "mars-adamw",
        optimize_1d: bool = False,
        lr_1d: float = 3e-3,
        betas_1d: tuple[float, float] = (0.9, 0.95),
        weight_decay_1d: float = 0.1,
        *,
        ns_dtype: torch.dtype | str = "auto",
        ns_steps: int = 5,
        fused: bool | None = None,
    ) -> None:
        if not isinstance(is_approx, bool):
            raise ValueError(f"is_approx must be True (approximate form) or False (exact form), got {is_approx!r}")
        self.is_approx = is_approx
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                    "gamma": gamma, "mars_type": mars_type, "optimize_1d": optimize_1d, "lr_1d": lr_1d,
                    "betas_1d": betas_1d, "weight_decay_1d": weight_decay_1d, "ns_dtype": ns_dtype,
                    "ns_steps": ns_steps}
        _check_group(defaults)
        self._fused = check_fused(fused)
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "exp_avg")
    _OPTIONAL_STATE_KEYS = ("last_grad", "exp_avg_sq", "max_exp_avg_sq", "prev_param")
    _CONFIG_ATTRS = ("is_approx", "_fused")

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The one validation of a group (constructor, ``add_param_group``, ``load_state_dict``); a new group
        gets ``lr_init``, the constructor's ``lr`` (the 1-D learning rate is ``lr·lr_1d/lr_init``)."""
        _check_group(group)
        return {"lr_init": check_float("lr_init", group.get("lr_init", self.defaults["lr"]), 0.0)}

    def _contract_not_applicable(self, check: str) -> str | None:
        """For :mod:`descend.optim.testing`: why a generic contract check cannot apply (``None``: it does)."""
        if check == "param_groups_weight_decay" and not all(g["optimize_1d"] for g in self.param_groups):
            return ("MARS decays its vectors (ndim < 2, optimize_1d=False) by the group's weight_decay_1d, "
                    "weight_decay only its matrices (the reference's design), and the check's second group "
                    "holds only a bias vector; tests/optim/test_mars.py checks both keys per group")
        return None

    def _required_state_keys(self, group: Mapping[str, Any], p: torch.Tensor) -> list[str]:
        """The keys :func:`_init_state` creates for ``p`` in ``group`` (the group the state was saved with)."""
        through_mars = p.ndim >= 2 or bool(group["optimize_1d"])
        keys = ["step", "exp_avg"]
        if through_mars:
            keys.append("last_grad")
        if _uses_v(group, p, through_mars):
            keys += ["exp_avg_sq", "max_exp_avg_sq"] if group["amsgrad"] else ["exp_avg_sq"]
        if not getattr(self, "is_approx", True):
            keys.append("prev_param")
        return keys

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        if key == "prev_param":  # the previous iterate, bit for bit in the parameter's own dtype
            return p.dtype
        return super()._state_dtype(p, group, key)

    def _exact_gradients(self, closure: Callable[[], Any] | None) -> tuple[Any, dict[torch.Tensor, torch.Tensor]]:
        """The exact form's two gradients of the current batch: ``closure`` at ``x_t`` (left in ``p.grad``) and at
        the previous iterate ``x_{t-1}`` (returned, for parameters that have one; ``x_0 = x_1``)."""
        if closure is None or not callable(closure):
            raise RuntimeError("MARS(is_approx=False) needs step(closure): the closure zeroes the gradients, "
                               "evaluates the loss on the current mini-batch and calls backward(), as for LBFGS; "
                               "it is called at the current and at the previous parameters")
        params = [p for g in self.param_groups for p in g["params"]]
        loss = _evaluate(closure, params)
        check_no_sparse_or_complex("MARS", params)
        current = {p: p.grad for p in params if p.grad is not None}
        back = [p for p in current if "prev_param" in self.state[p]]
        if not back:
            return loss, {}
        now = {p: p.detach().clone() for p in back}
        kept = {p: g.detach().clone() for p, g in current.items()}
        for p in back:
            p.copy_(self.state[p]["prev_param"])
        try:
            for p in params:
                p.grad = None
            _evaluate(closure, params)
            previous = {p: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for p in back}
        finally:
            for p in back:
                p.copy_(now[p])
            for p in params:
                p.grad = kept.get(p)
        return loss, previous

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        exact = not self.is_approx
        if exact:
            loss, previous = self._exact_gradients(closure)
        else:
            loss, previous = begin_step(self, closure, "MARS"), {}
        batch = ElementwiseBatch(self._fused)  # mars-adamw's matrices: one compiled call per group
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dtype = state_dtype(p)
                through_mars = p.ndim >= 2 or bool(group["optimize_1d"])
                state = self.state[p]
                if len(state) == 0:
                    _init_state(state, p, dtype, group, through_mars)
                state["step"] += 1
                w = p if p.dtype == dtype else p.to(dtype)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                if exact:
                    if through_mars:  # g(x_{t-1}, ξ_t); at the first step x_0 = x_1: no correction
                        state["last_grad"].copy_(previous.get(p, g))
                    state["prev_param"] = p.detach().clone()
                if through_mars and (group["mars_type"] == "mars-adamw"
                                     or (group["mars_type"] == "mars-shampoo" and p.ndim < 2)):
                    batch.add(mars_adamw_math, (w, g, state["last_grad"], state["exp_avg"], state["exp_avg_sq"],
                                                state.get("max_exp_avg_sq") if group["amsgrad"] else None),
                              _mars_adamw_scalars(group, int(state["step"].item()), keep_last=not exact),
                              None if w is p else copy_back(p, w))
                    continue
                if through_mars:
                    _mars_update(w, g, state, group, keep_last=not exact)
                else:
                    _adamw_1d_update(w, g, state, group)
                if w is not p:
                    p.copy_(w)
        batch.run()
        return loss


def _uses_v(group: Mapping[str, Any], p: torch.Tensor, through_mars: bool) -> bool:
    return not through_mars or group["mars_type"] == "mars-adamw" or (
        group["mars_type"] == "mars-shampoo" and p.ndim < 2)


def _init_state(state: dict[str, Any], p: torch.Tensor, dtype: torch.dtype, group: Mapping[str, Any],
                through_mars: bool) -> None:
    state["step"] = torch.tensor(0.0, dtype=torch.float64)
    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
    if through_mars:
        state["last_grad"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
    if _uses_v(group, p, through_mars):
        state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)


def _adam_direction(c: torch.Tensor, state: dict[str, Any], beta1: float, beta2: float, eps: float, t: int,
                    amsgrad: bool) -> torch.Tensor:
    """``m_t / ((sqrt(v_t)/sqrt(1-β2^t) + eps)·(1-β1^t))`` after updating ``v`` (and its max) in place."""
    v = state["exp_avg_sq"]
    v.mul_(beta2).addcmul_(c, c, value=1.0 - beta2)
    if amsgrad:
        torch.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        v = state["max_exp_avg_sq"]
    denom = v.sqrt().mul_(1.0 / math.sqrt(1.0 - beta2 ** t)).add_(eps).mul_(1.0 - beta1 ** t)
    return state["exp_avg"].div(denom)


def _evaluate(closure: Callable[[], Any], params: list[torch.Tensor]) -> Any:
    """``closure()`` with gradients enabled; ``backward()`` on its loss if the closure did not call it."""
    with torch.enable_grad():
        loss = closure()
        if all(p.grad is None for p in params) and isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
    return loss


def _mars_adamw_scalars(group: Mapping[str, Any], t: int, keep_last: bool) -> dict[str, Any]:
    beta1, beta2 = (float(b) for b in group["betas"])
    return {"c_scale": _c_scale(group), "beta1": beta1, "beta2": beta2,
            "eps": float(group["eps"]), "lr": float(group["lr"]), "wd": float(group["weight_decay"]),
            "inv_sqrt_bc2": 1.0 / math.sqrt(1.0 - beta2 ** t), "bc1": 1.0 - beta1 ** t, "keep_last": keep_last}


def _c_scale(group: Mapping[str, Any]) -> float:
    """The correction's scale ``γ·β1/(1−β1)``."""
    beta1 = float(group["betas"][0])
    return float(group["gamma"]) * (beta1 / (1.0 - beta1))


def clipped_correction(g: torch.Tensor, last: torch.Tensor, c_scale: float) -> torch.Tensor:
    """MARS's variance-reduced gradient ``c = g + c_scale·(g − g_prev)``, clipped to norm 1 (``c / max(‖c‖, 1)``:
    a norm ≤ 1 divides by exactly 1), as a new tensor; every form (AdamW, Lion, Shampoo) starts from it."""
    c = (g - last) * c_scale + g
    return c / torch.clamp(torch.linalg.vector_norm(c), min=1.0)


def mars_adamw_math(w: torch.Tensor, g: torch.Tensor, last: torch.Tensor, m: torch.Tensor, v: torch.Tensor,
                    v_max: torch.Tensor | None, *, c_scale: float, beta1: float, beta2: float, eps: float, lr: float,
                    wd: float, inv_sqrt_bc2: float, bc1: float, keep_last: bool) -> None:
    """One MARS-AdamW step on one matrix, in place: the eager path and (compiled) the fast path.

    :func:`clipped_correction`, then AdamW on it with decay inside the step; ``keep_last`` stores ``g`` as the
    next step's ``g_prev`` (the approximate form).
    """
    c = clipped_correction(g, last, c_scale)
    m.mul_(beta1).add_(c * (1.0 - beta1))
    v.mul_(beta2).add_(c * c * (1.0 - beta2))
    if v_max is not None:
        v_max.copy_(torch.maximum(v_max, v))
        v = v_max
    denom = (v.sqrt() * inv_sqrt_bc2 + eps) * bc1
    w.sub_((w * wd + m / denom) * lr)
    if keep_last:
        last.copy_(g)


def _mars_update(w: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: Mapping[str, Any],
                 keep_last: bool = True) -> None:
    t = int(state["step"].item())
    kind = group["mars_type"]
    if kind == "mars-adamw" or (kind == "mars-shampoo" and w.ndim < 2):  # the AdamW form
        mars_adamw_math(w, g, state["last_grad"], state["exp_avg"], state["exp_avg_sq"],
                        state.get("max_exp_avg_sq") if group["amsgrad"] else None,
                        **_mars_adamw_scalars(group, t, keep_last))
        return
    lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
    beta1 = float(group["betas"][0])
    c = clipped_correction(g, state["last_grad"], _c_scale(group))
    m = state["exp_avg"]
    m.mul_(beta1).add_(c, alpha=1.0 - beta1)
    if kind == "mars-lion":
        w.add_(torch.mul(w, wd).add_(m.sign()), alpha=-lr)
    else:  # mars-shampoo on a matrix
        mat = m.reshape(m.shape[0], -1).mul(1.0 / (1.0 - beta1))
        factor = max(1.0, mat.shape[0] / mat.shape[1]) ** 0.5
        ns_dtype = _NS_DTYPES.get(group["ns_dtype"], group["ns_dtype"])
        ortho = newton_schulz(mat, int(group["ns_steps"]), dtype=ns_dtype, normalization="keller",
                              eps=eps).to(w.dtype).reshape(w.shape)
        w.add_(ortho.mul_(factor).add_(w, alpha=wd), alpha=-lr)
    if keep_last:  # the approximate form: the next step's g_{t-1}
        state["last_grad"].copy_(g)


def _adamw_1d_update(w: torch.Tensor, g: torch.Tensor, state: dict[str, Any], group: Mapping[str, Any]) -> None:
    lr_init = float(group["lr_init"])
    lr = float(group["lr"]) * (float(group["lr_1d"]) / lr_init) if lr_init > 0 else 0.0
    beta1, beta2 = (float(b) for b in group["betas_1d"])
    t = int(state["step"].item())
    state["exp_avg"].mul_(beta1).add_(g, alpha=1.0 - beta1)
    direction = _adam_direction(g, state, beta1, beta2, float(group["eps"]), t, bool(group["amsgrad"]))
    w.add_(torch.mul(w, float(group["weight_decay_1d"])).add_(direction), alpha=-lr)


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_float("gamma", group["gamma"], 0.0)
    check_choice("mars_type", group["mars_type"], MARS_TYPES)
    check_float("lr_1d", group["lr_1d"], 0.0)
    check_betas("betas_1d", group["betas_1d"])
    check_float("weight_decay_1d", group["weight_decay_1d"], 0.0)
    for key in ("amsgrad", "optimize_1d"):
        if not isinstance(group[key], bool):
            raise ValueError(f"{key} must be a bool, got {group[key]!r}")
    check_choice("ns_dtype", group["ns_dtype"], ("auto", *_NS_DTYPES, *_NS_DTYPES.values()))
    steps = group["ns_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"ns_steps must be an integer >= 1, got {steps!r}")


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> MARS:
    hp = dict(fx["hyperparameters"])
    hp["betas"] = tuple(hp["betas"])
    hp["betas_1d"] = tuple(hp["betas_1d"])
    ns = (fx.get("replay") or {}).get("newton_schulz_dtype", "bfloat16")
    if ns not in _NS_DTYPES:
        raise ValueError(f"replay.newton_schulz_dtype must be one of {sorted(_NS_DTYPES)}, got {ns!r}")
    return MARS([params[n] for n in fx["param_order"]], **hp, ns_dtype=_NS_DTYPES[ns])


register(OptimizerSpec(
    name="mars",
    factory=MARS,
    paper="Yuan, Liu, Wu, Zhou, Gu 2024, MARS: Unleashing the Power of Variance Reduction for Training Large "
          "Models, arXiv:2411.10438",
    reference="AGI-Arena/MARS@4831e28eba863a4e69d7e9474ff8e73bc1b410fe:MARS/optimizers/mars.py",
    # Wen et al. 2025 (130M, 1x Chinchilla): lr 1.6e-2, betas (0.9, 0.95), gamma 0.025, eps 1e-25, wd 0.1
    search_space={
        "lr": FloatRange(3e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.95), (0.95, 0.99), (0.9, 0.98), (0.95, 0.98))),
        "gamma": Categorical((0.0125, 0.025, 0.05)),
        "eps": Categorical((1e-25, 1e-15, 1e-8)),
        "weight_decay": Categorical((0.0, 0.1, 0.2)),
    },
    summary="variance-reduced, clipped gradient correction (approximate MARS) on an AdamW/Lion/Shampoo base",
    fixture_names=("mars",),
    from_fixture=_from_fixture,
))
