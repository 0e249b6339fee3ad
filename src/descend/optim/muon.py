r"""Muon — MomentUm Orthogonalized by Newton–Schulz — with an auxiliary AdamW for non-matrix parameters.

Paper: K. Jordan, Y. Jin, V. Boza, J. You, F. Cesista, L. Newhouse, J. Bernstein (2024), "Muon: An optimizer
for hidden layers in neural networks", https://kellerjordan.github.io/posts/muon/ (no arXiv id).  The
``"match_rms_adamw"`` scaling is from J. Liu et al. (Moonshot AI, 2025), "Muon is Scalable for LLM
Training", arXiv:2502.16982, Sec. 2.2.  Background: J. Bernstein & L. Newhouse (2024), "Old Optimizer, New
Norm: An Anthology", arXiv:2409.20325.

Algorithm (the blog post's update, in the EMA form both references use since Feb 2025; torch.optim.Muon's
docstring writes the equivalent SGD-momentum form).  For a matrix parameter ``W`` (rows A, cols B) with
gradient ``G_t``, momentum ``μ``, learning rate ``η``, decoupled weight decay ``λ``::

    M_t = μ M_{t-1} + (1 − μ) G_t                                 (momentum buffer, M_0 = 0)
    U_t = (1 − μ) G_t + μ M_t    if nesterov    else    M_t
    O_t = NS_k(U_t)              k Newton–Schulz steps, see _linalg.newton_schulz:
                                 X_0 = U_t / ‖U_t‖_F ;  X ← a X + (b XXᵀ + c (XXᵀ)²) X,
                                 (a, b, c) = (3.4445, −4.7750, 2.0315)   ≈ orthogonal polar factor of U_t
    W_t = (1 − η λ) W_{t-1} − η s(A, B) O_t

with the shape factor ``s`` chosen by ``adjust_lr_fn``:

* ``"keller"``   (KellerJordan/Muon): the update tensor is multiplied by ``sqrt(max(1, A/B))``;
* ``"original"`` (torch.optim.Muon's default, also ``None``): the learning rate is multiplied by
  ``sqrt(max(1, A/B))`` — the same number as ``"keller"``, applied to the scalar instead of the tensor
  (they differ only by rounding, and in bfloat16 by the bfloat16 multiply);
* ``"match_rms_adamw"`` (Moonshot): ``0.2·sqrt(max(A, B))``, so that the update RMS matches AdamW's;
* ``"none"``: ``s = 1``.

The weight decay always uses the unadjusted ``η`` (as both references do).

Every other parameter (1-D biases and gains, scalars, and — through :func:`muon_param_groups` —
embeddings and the output head) is updated by AdamW in the form of Keller's ``adam_update``::

    m_t = β1 m + (1 − β1) g ;  v_t = β2 v + (1 − β2) g²
    W ← (1 − η' λ) W − η' (m_t/(1 − β1^t)) / (sqrt(v_t/(1 − β2^t)) + ε)

Routing (per parameter group, flag ``use_muon``):

* ``True``: every parameter of the group is a Muon parameter (must have ``ndim ≥ 2``);
* ``False``: every parameter is an AdamW parameter; the group's ``lr`` *is* the AdamW learning rate (as in
  Keller's ``MuonWithAuxAdam``: set ``lr``, ``betas``, ``eps``, ``weight_decay`` per group);
* ``None`` (default, "auto"): parameters with ``ndim ≥ 2`` use Muon, the others AdamW.

In every group the AdamW learning rate is ``η' = lr · adam_lr_ratio``; ``adam_lr_ratio`` defaults to
``0.015`` (= Keller's 3e-4 / 0.02) in auto groups and to ``1`` in ``use_muon=False`` groups.  Deriving η'
from ``lr`` keeps LR schedulers and ``lr = 0`` meaningful for both halves of an auto group.

Conv kernels and other tensors with ``ndim > 2`` are viewed as ``[size(0), prod(rest)]`` (a conv kernel
``[out, in, kh, kw]`` becomes ``[out, in·kh·kw]``) for Newton–Schulz *and* for the shape factor.

Defaults: those of Keller's ``SingleDeviceMuonWithAuxAdam`` — ``lr=0.02, momentum=0.95, nesterov=True,
weight_decay=0, ns_steps=5, ns_dtype="auto" (bfloat16 where it is fast), normalization="keller", ns_eps=1e-7,
adjust_lr_fn="keller"``; AdamW ``betas=(0.9, 0.95), eps=1e-10, adam_lr_ratio=0.015``.

Checked against (golden fixtures, ``muon__*.json``): ``torch==2.13.0`` ``torch.optim.Muon`` and
``KellerJordan/Muon@857d1ad`` ``SingleDeviceMuon``, with the Newton–Schulz iteration in float64: rtol 1e-10,
atol 1e-12 (observed ≤ 3e-16 max abs); torch's unmodified bfloat16 run: atol 5e-2.  Live, in the tests:
``newton_schulz`` is bitwise equal to torch's private ``_zeropower_via_newtonschulz`` (bfloat16 and float64),
and whole trajectories equal torch.optim.Muon's.

Known deviations from the references, and why:

* ``grad is None``: the parameter is skipped (the torch.optim contract).  Keller's code substitutes a zero
  gradient (needed for its distributed all-gather), which still moves the parameter through momentum and
  weight decay.
* Keller's code writes the Nesterov mix into ``p.grad`` in place; the gradient is left untouched here.
* Tensors with ``ndim > 2``: torch.optim.Muon rejects them; Keller's views them as ``[out, in·kh·kw]`` but
  takes the shape factor from the *original* last two dims (``kh/kw`` for a conv kernel).  Here the factor
  comes from the 2-D view that Newton–Schulz actually orthogonalises.
* With bfloat16 parameters and ``nesterov=False``, torch.optim.Muon normalises the momentum buffer in place
  (``Tensor.bfloat16()`` returns the same tensor, then ``div_``); here Newton–Schulz always works on a copy.
* Naming: torch.optim.Muon's ``eps`` (the Newton–Schulz normalisation epsilon) is ``ns_eps`` here; ``eps``
  is the auxiliary AdamW's epsilon, as in Keller's ``MuonWithAuxAdam`` groups.  torch's default
  ``lr=1e-3, weight_decay=0.1`` are not the defaults here (Keller's are).
* State dtype: the momentum buffer and the AdamW moments are kept in the parameter's dtype (bfloat16 for
  bfloat16 parameters, as torch.optim.Muon and Keller's code do); the AdamW step count is a float64 scalar.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ._base import DescendOptimizer, begin_step
from ._linalg import NS_COEFFICIENTS, newton_schulz
from ._validate import check_betas, check_choice, check_float, check_int
from .registry import Categorical, FloatRange, OptimizerSpec, register
from .roles import NO_HIDDEN_MATRICES, NotApplicable, Role, param_roles

__all__ = ["ADJUST_LR_FNS", "NORMALIZATIONS", "Muon", "muon_param_groups", "shape_factor"]

#: Names of the shape-dependent learning-rate scalings (``None`` means ``"original"``).
ADJUST_LR_FNS = ("keller", "original", "match_rms_adamw", "none")
#: Newton–Schulz input normalisations: torch ``X / max(‖X‖_F, eps)``; Keller ``X / (‖X‖_F + eps)``.
NORMALIZATIONS = ("keller", "torch")
_NS_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32,
              "float64": torch.float64}
_KELLER_ADAM_LR = 3e-4
_KELLER_ADAM_LR_RATIO = _KELLER_ADAM_LR / 0.02


def shape_factor(adjust_lr_fn: str | None, rows: int, cols: int) -> float:
    """The factor ``s(A, B)`` multiplying Muon's update of a ``rows × cols`` matrix (see the module doc)."""
    if adjust_lr_fn in (None, "original", "keller"):
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if adjust_lr_fn == "none":
        return 1.0
    raise ValueError(f"adjust_lr_fn must be None or one of {ADJUST_LR_FNS!r}, got {adjust_lr_fn!r}")


def _ns_dtype_name(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        for name, dt in _NS_DTYPES.items():
            if dt == value:
                return name
    elif isinstance(value, str) and (value in _NS_DTYPES or value == "auto"):
        return value
    raise ValueError(f"ns_dtype must be None (the update's dtype), 'auto' or one of {tuple(_NS_DTYPES)} "
                     f"(as a string or torch.dtype), got {value!r}")


def _check_group(group: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one group's hyperparameters; returns normalised values to write back."""
    check_float("lr", group["lr"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_float("momentum", group["momentum"], 0.0, 1.0, high_open=True)
    if not isinstance(group["nesterov"], bool):
        raise ValueError(f"nesterov must be True or False, got {group['nesterov']!r}")
    check_int("ns_steps", group["ns_steps"], 1, 99)
    coeffs = group["ns_coefficients"]
    if not isinstance(coeffs, (tuple, list)) or len(coeffs) != 3:
        raise ValueError(f"ns_coefficients must be a sequence of 3 real numbers (a, b, c), got {coeffs!r}")
    coeffs = tuple(check_float(f"ns_coefficients[{i}]", c) for i, c in enumerate(coeffs))
    ns_dtype = _ns_dtype_name(group["ns_dtype"])
    check_choice("normalization", group["normalization"], NORMALIZATIONS)
    check_float("ns_eps", group["ns_eps"], 0.0, low_open=True)
    if group["adjust_lr_fn"] is not None:
        check_choice("adjust_lr_fn", group["adjust_lr_fn"], ADJUST_LR_FNS)
    betas = check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("adam_lr_ratio", group["adam_lr_ratio"], 0.0)
    if group["use_muon"] not in (None, True, False):
        raise ValueError(f"use_muon must be None (route by ndim), True or False, got {group['use_muon']!r}")
    return {"ns_coefficients": coeffs, "ns_dtype": ns_dtype, "betas": betas}


class Muon(DescendOptimizer):
    """Muon for matrix parameters plus AdamW for the rest, in one optimizer (see the module docstring).

    Args:
        params: parameters or parameter groups; a group may set ``use_muon`` (``True``/``False``/``None`` =
            route by ``ndim``) and any hyperparameter below.  :func:`muon_param_groups` builds the groups
            for an ``nn.Module`` (embeddings and the output head to AdamW).
        lr: Muon learning rate (spectral-norm units per step); in ``use_muon=False`` groups the AdamW lr.
        weight_decay: decoupled weight decay ``λ`` (``W ← (1 − lr·λ) W``), Muon and AdamW parameters alike.
        momentum: Muon's EMA momentum ``μ``.
        nesterov: use the Nesterov mix ``(1 − μ) G + μ M`` instead of ``M``.
        ns_steps: Newton–Schulz iterations.
        ns_coefficients: quintic coefficients ``(a, b, c)``.
        ns_dtype: dtype of the Newton–Schulz iteration: ``"auto"`` (default: bfloat16, as both references and
            torch.optim.Muon, where bfloat16 matmuls are fast — CUDA >= sm80, CPUs with AVX512-BF16/AMX — and
            float32 elsewhere, where bfloat16 is emulated and ~30x slower), ``"bfloat16"``, ``"float32"``,
            ``"float64"`` (exact), ``"float16"``, or ``None`` for the parameter's dtype.
        normalization: ``"keller"`` (``X/(‖X‖_F + ns_eps)``) or ``"torch"`` (``X/max(‖X‖_F, ns_eps)``).
        ns_eps: the normalisation's epsilon.
        adjust_lr_fn: shape factor: ``"keller"``, ``"original"`` (or ``None``), ``"match_rms_adamw"``,
            ``"none"``.
        betas: AdamW ``(β1, β2)``.
        eps: AdamW epsilon (added to ``sqrt(v̂)``).
        adam_lr_ratio: AdamW lr = ``lr · adam_lr_ratio`` (default 0.015 in auto groups, 1 in
            ``use_muon=False`` groups unless the group sets it).
        use_muon: default routing flag for groups that do not set one.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        *,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
        ns_dtype: str | torch.dtype | None = "auto",
        normalization: str = "keller",
        ns_eps: float = 1e-7,
        adjust_lr_fn: str | None = "keller",
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-10,
        adam_lr_ratio: float | None = None,
        use_muon: bool | None = None,
    ) -> None:
        self._default_adam_lr_ratio = (
            _KELLER_ADAM_LR_RATIO if adam_lr_ratio is None
            else check_float("adam_lr_ratio", adam_lr_ratio, 0.0)
        )
        defaults: dict[str, Any] = {
            "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
            "ns_steps": ns_steps, "ns_coefficients": ns_coefficients, "ns_dtype": ns_dtype,
            "normalization": normalization, "ns_eps": ns_eps, "adjust_lr_fn": adjust_lr_fn,
            "betas": betas, "eps": eps, "adam_lr_ratio": self._default_adam_lr_ratio, "use_muon": use_muon,
        }
        defaults.update(_check_group(defaults))
        self._explicit_adam_lr_ratio = adam_lr_ratio is not None
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; ``use_muon=False`` groups get ``adam_lr_ratio=1`` unless they (or the constructor) set it."""
        group = dict(param_group)
        use_muon = group.get("use_muon", self.defaults["use_muon"])
        if use_muon is False and "adam_lr_ratio" not in group and not self._explicit_adam_lr_ratio:
            group["adam_lr_ratio"] = 1.0
        super().add_param_group(group)

    _STATE_KEYS = ()
    _OPTIONAL_STATE_KEYS = ("momentum_buffer", "step", "exp_avg", "exp_avg_sq")
    _STATE_KEY_SETS = (("step", "exp_avg", "exp_avg_sq"),)
    _CONFIG_ATTRS = ("_default_adam_lr_ratio", "_explicit_adam_lr_ratio")

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        updates = _check_group(group)
        if group["use_muon"]:
            for p in group["params"]:
                if p.ndim < 2:
                    raise ValueError(f"use_muon=True needs parameters with ndim >= 2, got shape {tuple(p.shape)}; "
                                     "route it to AdamW (use_muon=False or None)")
        return updates

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        # Muon and its AdamW keep their state in the parameter's own dtype (bfloat16 included)
        return torch.float64 if key == "step" else (p.dtype if p.is_floating_point() else None)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_default_adam_lr_ratio", _KELLER_ADAM_LR_RATIO)
        self.__dict__.setdefault("_explicit_adam_lr_ratio", False)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of Muon (matrix parameters) and AdamW (the others); returns the closure's loss."""
        loss = begin_step(self, closure, "Muon")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                use_muon = group["use_muon"]
                if use_muon if use_muon is not None else p.ndim >= 2:
                    self._muon_step(p, group)
                else:
                    self._adamw_step(p, group)
        return loss

    def _muon_step(self, p: torch.Tensor, group: Mapping[str, Any]) -> None:
        lr, wd, mu = float(group["lr"]), group["weight_decay"], group["momentum"]
        grad = p.grad
        assert grad is not None  # step() calls this only for parameters with a gradient
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        buf = state["momentum_buffer"]
        buf.lerp_(grad, 1 - mu)
        update = grad.lerp(buf, mu) if group["nesterov"] else buf
        matrix = update if update.ndim == 2 else update.reshape(update.size(0), -1)
        ns_dtype = group["ns_dtype"]
        ortho = newton_schulz(
            matrix, group["ns_steps"], group["ns_coefficients"],
            dtype=None if ns_dtype is None else _NS_DTYPES.get(ns_dtype, ns_dtype),
            normalization=group["normalization"], eps=group["ns_eps"],
        )
        factor = shape_factor(group["adjust_lr_fn"], matrix.size(0), matrix.size(1))
        if wd != 0:
            p.mul_(1 - lr * wd)
        if group["adjust_lr_fn"] == "keller":
            ortho.mul_(factor)
            p.add_(ortho.view_as(p), alpha=-lr)
        else:
            p.add_(ortho.view_as(p), alpha=-lr * factor)

    def _adamw_step(self, p: torch.Tensor, group: Mapping[str, Any]) -> None:
        lr = float(group["lr"]) * group["adam_lr_ratio"]
        beta1, beta2 = group["betas"]
        grad = p.grad
        assert grad is not None  # step() calls this only for parameters with a gradient
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.tensor(0.0, dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["step"] += 1
        t = float(state["step"])
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        # g² clamped to the largest finite value: a float32 |g| > 1.8e19 squares to inf, and lerp(inf, inf)
        # is NaN (torch's mul/addcmul form stays at inf); the identity for every finite square
        exp_avg_sq.lerp_(grad.square().clamp_(max=torch.finfo(grad.dtype).max), 1 - beta2)
        denom = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(group["eps"])
        if group["weight_decay"] != 0:
            p.mul_(1 - lr * group["weight_decay"])
        p.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))


# ----------------------------------------------------------------------------------------------------
# parameter routing for nn.Module

def muon_param_groups(
    model: nn.Module,
    *,
    lr: float = 0.02,
    adam_lr: float = 3e-4,
    weight_decay: float = 0.0,
    adam_weight_decay: float = 0.0,
    vector_weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.95),
    eps: float = 1e-10,
    roles: Mapping[Any, Role | str] | None = None,
    example_input: Any = None,
    route: Callable[[str, nn.Parameter], str | None] | None = None,
    require_hidden: bool = False,
) -> list[dict[str, Any]]:
    """Parameter groups for :class:`Muon` from a module: hidden matrices to Muon, everything else to AdamW.

    The parts of the network come from :func:`descend.optim.roles.param_roles` — module *types*, not names:
    the first ``nn.Linear``/convolution is the input layer (unless there is an embedding), the last
    ``nn.Linear`` is the head, ``nn.Embedding`` weights and positional tables are embeddings, norms and
    every ``ndim < 2`` tensor are vectors, the other linear/conv weights are hidden matrices.  ``roles``
    (parameter names or parameters → :class:`~descend.optim.roles.Role`) overrides them, as do roles declared
    on the model with :func:`~descend.optim.roles.declare_roles`; ``example_input`` orders the layers by a
    forward pass instead of registration.

    Routing, in order (the first that applies wins):

    1. ``route(name, param)`` if given and it returns ``"muon"``, ``"adamw"`` or ``"adamw_no_decay"``;
       ``None`` falls through to the roles.
    2. ``HIDDEN`` → Muon with ``lr`` and ``weight_decay`` (conv kernels viewed as ``[out, in·kh·kw]``).
    3. ``INPUT``, ``HEAD``, ``EMBEDDING`` → AdamW with ``adam_lr`` and ``adam_weight_decay`` (Muon is
       meant for hidden layers only; its authors optimise embeddings, heads and the input layer with AdamW).
    4. ``VECTOR`` → AdamW with ``vector_weight_decay``.

    ``require_hidden``: raise :class:`~descend.optim.roles.NotApplicable` (``"n/a: no hidden matrices"``) when
    nothing goes to Muon — it would then be plain AdamW (the benchmark's hook sets it).

    Returns up to three groups (empty ones omitted), each with a ``"name"``: ``"muon"`` (``use_muon=True``),
    ``"adamw"`` and ``"adamw_no_decay"`` (``use_muon=False``, ``lr=adam_lr``, ``adam_lr_ratio=1``).
    Pass them to ``Muon(groups, ...)``; constructor keywords fill what the groups leave unset.
    """
    by_role = param_roles(model, roles, example_input=example_input)
    buckets: dict[str, list[nn.Parameter]] = {"muon": [], "adamw": [], "adamw_no_decay": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        choice = route(name, p) if route is not None else None
        if choice is None:
            role = by_role[p]
            choice = ("muon" if role is Role.HIDDEN else "adamw_no_decay" if role is Role.VECTOR else "adamw")
        if choice not in buckets:
            raise ValueError(f"route({name!r}) must return 'muon', 'adamw', 'adamw_no_decay' or None, "
                             f"got {choice!r}")
        if choice == "muon" and p.ndim < 2:
            raise ValueError(f"parameter {name!r} of shape {tuple(p.shape)} was sent to Muon (route or roles); "
                             "Muon needs ndim >= 2")
        buckets[choice].append(p)
    if require_hidden and not buckets["muon"]:
        raise NotApplicable(NO_HIDDEN_MATRICES)

    adam = {"use_muon": False, "lr": adam_lr, "adam_lr_ratio": 1.0, "betas": betas, "eps": eps}
    groups = [
        {"name": "muon", "params": buckets["muon"], "use_muon": True, "lr": lr, "weight_decay": weight_decay},
        {"name": "adamw", "params": buckets["adamw"], **adam, "weight_decay": adam_weight_decay},
        {"name": "adamw_no_decay", "params": buckets["adamw_no_decay"], **adam,
         "weight_decay": vector_weight_decay},
    ]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------------------------------------------------
# registry


def _from_fixture(fx: Mapping[str, Any], params_by_name: Mapping[str, torch.Tensor]) -> Muon:
    """Map a torch.optim.Muon or KellerJordan/Muon fixture onto :class:`Muon` (all fixture params are 2-D)."""
    hp = dict(fx["hyperparameters"])
    ref = str(fx.get("reference", ""))
    ns_dtype = (fx.get("replay") or {}).get("newton_schulz_dtype", "bfloat16")
    params = [params_by_name[n] for n in fx["param_order"]]
    if "KellerJordan/Muon" in ref:  # SingleDeviceMuon(lr=0.02, weight_decay=0, momentum=0.95)
        unknown = set(hp) - {"lr", "weight_decay", "momentum"}
        if unknown:
            raise ValueError(f"unknown SingleDeviceMuon hyperparameters {sorted(unknown)}")
        return Muon(params, lr=hp.get("lr", 0.02), weight_decay=hp.get("weight_decay", 0.0),
                    momentum=hp.get("momentum", 0.95), nesterov=True, ns_steps=5, ns_dtype=ns_dtype,
                    normalization="keller", ns_eps=1e-7, adjust_lr_fn="keller", use_muon=True)
    if "torch/optim/_muon.py" in ref or "torch.optim.Muon" in ref:
        unknown = set(hp) - {"lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps",
                             "ns_steps", "adjust_lr_fn"}
        if unknown:
            raise ValueError(f"unknown torch.optim.Muon hyperparameters {sorted(unknown)}")
        return Muon(params, lr=hp.get("lr", 1e-3), weight_decay=hp.get("weight_decay", 0.1),
                    momentum=hp.get("momentum", 0.95), nesterov=hp.get("nesterov", True),
                    ns_steps=hp.get("ns_steps", 5),
                    ns_coefficients=tuple(hp.get("ns_coefficients", NS_COEFFICIENTS)),
                    ns_dtype=ns_dtype, normalization="torch", ns_eps=hp.get("eps", 1e-7),
                    adjust_lr_fn=hp.get("adjust_lr_fn") or "original", use_muon=True)
    raise ValueError(f"no mapping for Muon reference {ref!r}")


def _adam_lr(hp: Mapping[str, Any]) -> float:
    """The auxiliary AdamW's learning rate: ``lr × adam_lr_ratio`` when a ratio is given explicitly, else the
    absolute ``adam_lr`` (what the benchmark tunes, in AdamW's own range)."""
    if hp.get("adam_lr_ratio") is not None:
        return float(hp["lr"]) * float(hp["adam_lr_ratio"])
    return float(hp.get("adam_lr", _KELLER_ADAM_LR))


def _module_groups(model: nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: :func:`muon_param_groups` with the (tuned) hyperparameters; ``NotApplicable`` on a model
    without hidden matrices (Muon would be AdamW there)."""
    return muon_param_groups(model, lr=hp["lr"], adam_lr=_adam_lr(hp),
                             weight_decay=hp["weight_decay"], adam_weight_decay=hp["weight_decay"],
                             betas=tuple(hp["betas"]), eps=hp["eps"], require_hidden=True)


def _factory(params: Iterable[Any], *, adam_lr: float = _KELLER_ADAM_LR, adam_lr_ratio: float | None = None,
             **hyperparameters: Any) -> Muon:
    """Registry factory: :class:`Muon` whose auxiliary AdamW learning rate is the absolute ``adam_lr``.

    Auto groups (``use_muon=None``, bare parameters) get ``adam_lr_ratio = adam_lr / lr``, so the AdamW half
    starts at ``adam_lr`` and still follows the schedule of ``lr``; the groups of :func:`muon_param_groups`
    carry their own AdamW ``lr``.  An explicit ``adam_lr_ratio`` takes precedence over ``adam_lr``.
    """
    if adam_lr_ratio is None:
        check_float("adam_lr", adam_lr, 0.0)
        lr = check_float("lr", hyperparameters.get("lr", 0.02), 0.0, low_open=True)
        adam_lr_ratio = adam_lr / lr
    return Muon(params, adam_lr_ratio=adam_lr_ratio, **hyperparameters)


_factory.builds = Muon  # type: ignore[attr-defined]  # the registry reads Muon's signature defaults too


register(OptimizerSpec(
    name="muon",
    factory=_factory,
    paper="Jordan, Jin, Boza, You, Cesista, Newhouse & Bernstein 2024, Muon: An optimizer for hidden layers "
          "in neural networks (kellerjordan.github.io/posts/muon); match_rms_adamw: Liu et al. 2025, "
          "arXiv:2502.16982",
    reference="torch==2.13.0 torch.optim.Muon; KellerJordan/Muon@857d1ad muon.py#SingleDeviceMuon",
    # no defaults here: Muon's signature holds them (bfloat16 Newton–Schulz, as torch.optim.Muon) and
    # _factory's the absolute auxiliary AdamW lr (adam_lr = 3e-4, Keller's 0.02 x 0.015)
    search_space={
        "lr": FloatRange(1e-3, 0.1, log=True),
        "momentum": Categorical((0.9, 0.95, 0.98)),
        "weight_decay": Categorical((0.0, 0.01, 0.1, 0.3)),  # Wen et al.: 0.1, the old largest choice
        # the auxiliary AdamW's lr as an absolute value in AdamW's own range (lr x adam_lr_ratio put only 14 %
        # of the space in a useful AdamW range); Wen et al. tune it to 0.2 x 1.6e-2 = 3.2e-3
        "adam_lr": FloatRange(1e-4, 3e-2, log=True),
        "adjust_lr_fn": Categorical(("keller", "match_rms_adamw")),
    },
    summary="Newton–Schulz-orthogonalised momentum for matrices, AdamW for the rest (one optimizer)",
    module_groups=_module_groups,
    fixture_names=("muon",),
    from_fixture=_from_fixture,
))
