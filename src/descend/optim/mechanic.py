r"""Mechanic: a learning-rate *scale* tuner wrapped around any base optimizer.

Paper: Ashok Cutkosky, Aaron Defazio, Harsh Mehta (2023), "Mechanic: A Learning Rate Tuner", NeurIPS 2023,
arXiv:2306.00144.  The practical algorithm of the paper: its MECHANIC pseudo-code (the reduction of
learning-rate scaling to 1-D online learning, a sum of coin-betting TUNERs with several betas and the λ
"weight decay" term), in the form the authors' PyTorch package implements it.

Mechanic leaves the base optimizer (SGD, Adam, AdamW, Lion, ... with its own schedule) untouched and learns
one scalar: the iterate is ``x_ref + (Σ_i s_i) · Δ`` where ``Δ`` accumulates the base optimizer's updates
and ``s`` (one entry per beta) is chosen by a parameter-free, coin-betting online learner fed with the
inner products ``h`` of ``Δ`` and the gradients.  Algorithm, as in the PyTorch reference (``store_delta``
off: ``Δ`` is not stored but reconstructed from the parameters)::

    state (global):  s = 0,  m = 1e-6,  v = 0,  r = 0          (vectors of n = len(s_betas) entries)
                     x_ref = the parameters before the first step
    per step, with g = ∇f(x) and x the current parameters:
        u  = base_step(x, g) - x                                   # the base optimizer's update
        S  = Σ_i s_i                                               # scale of the previous step
        Δ  = (x - x_ref) / (S + ε)           [store_delta: Δ kept in the state]
        x⁺ = x + u                                                 # parameters after the base step
        h  = ⟨Δ, g + λ S ‖g‖ / (‖x⁺‖ + ε) · x⁺⟩                    # norms over ALL parameters
        m  = max(β m, |h|);   v = β² v + h²;   r = max(0, β r - s h)
        s  = (s_init / n · m + r) / (√v + ε)                      # elementwise over the n betas
        x  ← x_ref + (Δ + u) · max(Σ_i s_i, 0)    [store_delta: Δ ← Δ + u]

λ = ``s_decay``, β = ``s_betas``, ε = ``s_eps``.

Defaults (``mechanic-pytorch``): ``s_decay=0.01``, ``s_betas=(0.9, 0.99, 0.999, 0.9999, 0.99999,
0.999999)``, ``s_init=1e-8``, ``s_eps=1e-8``, ``store_delta=False``.  The registry entry ``mechanic`` wraps
``torch.optim.AdamW`` with ``lr=1e-3, weight_decay=0`` (Mechanic's own ``s_decay`` regularises instead).

API
---
* ``mechanize(Base, *, s_decay=..., ...)`` returns an :class:`~torch.optim.Optimizer` class;
  ``mechanize(Base)(params, lr=..., **base_kwargs, s_decay=..., s_betas=..., s_init=..., s_eps=...,
  store_delta=..., tuner_dtype=...)`` builds it.  Mechanic's arguments are keyword-only and all carry an
  ``s_``/``store_``/``tuner_`` name so they never collide with the base's (Adam's ``betas``/``eps``):
  the reference's ``betas``/``eps`` are spelled ``s_betas``/``s_eps`` here.  Values given to
  ``mechanize`` are the class's defaults; the constructor may override them.
* ``Mechanic(base_optimizer, *, s_decay=..., ...)`` wraps an existing optimizer instance.
* ``opt.param_groups``, ``opt.state`` and ``opt.defaults`` *are* the base optimizer's objects, so LR
  schedulers, per-group hyperparameters (base lr, weight decay, ...) and ``add_param_group`` act on the base.
  Mechanic's own hyperparameters are global (one tuner for all groups, as in the paper); they are
  constructor arguments and are not read from a state dict.

State (all tensors in ``opt.state``, so ``state_dict``/``load_state_dict`` into a *fresh* optimizer
resumes bitwise):

* ``state["mechanic"]`` (a string key, next to the per-parameter entries): ``s``, ``m``, ``v``, ``r``
  (``tuner_dtype``, float64 by default, never cast to the parameters' dtype) and ``step`` (int64);
* ``state[p]["mechanic_ref"]`` (``x_ref``) and, with ``store_delta``, ``state[p]["mechanic_delta"]``
  (without it and below float64: ``state[p]["mechanic_offset"]``, the exact ``x - x_ref``, see the
  deviations), next to the base optimizer's own entries.  They are in the parameter's dtype, except for low-precision
  parameters (bfloat16/float16) where they and Mechanic's elementwise arithmetic are float32 (the result
  is rounded into the parameter); with such parameters prefer ``store_delta=True``, since reconstructing
  Δ from rounded parameters loses precision.

``load_state_dict`` hands the base optimizer its own part (so the base's casting rules apply to it) and
restores Mechanic's part unchanged; a plain base-optimizer state dict loads too (the tuner then starts
afresh).  Memory: one extra copy of the parameters (two with ``store_delta`` or below float64, where the
exact offset is kept) plus, in float64, in bfloat16/float16 and with ``store_delta``, a scratch copy of the
parameters before the base step, kept between steps (the reference allocates it anew every step), and, for
bases other than torch's own, a copy of the gradients during ``step``.

Parameters without a gradient: skipped, as in the reference — no Mechanic state is created for them,
they take no part in ``h`` and the norms, and they are not moved.  ``x_ref`` of a parameter is taken the
first time it has a gradient (the reference takes it at the first step for every parameter; the two agree
because the base optimizer never moves a parameter without a gradient).  With ``store_delta=False`` a
parameter that skips steps has its Δ reconstructed with the current ``S`` when it comes back (reference
behaviour); ``store_delta=True`` has no such drift.  A step in which no parameter has a gradient runs the
base step and leaves the tuner alone (the reference crashes).  Because the learned scale keeps moving the
accumulated offset, ``lr=0`` midway through a run does *not* freeze the parameters (registry:
``zero_lr_freezes=False``); a group whose lr is 0 from the start never moves.

Closure: evaluated once (under ``torch.enable_grad``); the base optimizer receives a closure that returns
that loss on its first call and re-evaluates on later calls (LBFGS-style bases).  ``step`` returns the loss.
Mechanic's arithmetic runs under ``torch.no_grad``; the base step runs in the caller's grad mode.

Reference and tolerance
-----------------------
``mechanic-pytorch==0.0.1`` (``mechanize``), the authors' PyTorch package.  Golden fixtures
``mechanic__sgd_base``, ``mechanic__adam_base``, ``mechanic__sgd_momentum_store_delta`` (float64,
rtol 1e-10, atol 1e-12) and a live comparison on random problems (``tests/optim/test_mechanic.py``, float64,
rtol 1e-12; measured <= 3.5e-14).

Fast path: per tensor, Mechanic reads its inputs twice -- :func:`mechanic_sums` (the four inner products, one
pass) and :func:`mechanic_apply` (the new offset and parameters) -- compiled where ``torch.compile`` works
(``tuner_fused``, :mod:`descend.optim._fused`); the reference makes about ten passes.  For that,
``h = ⟨Δ, g⟩ + c ⟨Δ, x⁺⟩`` with ``c = λ S ‖g‖ / (‖x⁺‖ + ε)`` is summed as two inner products (the reference:
one, of ``Δ`` with ``g + c x⁺``), which changes rounding only.  Below float64 the four sums are accumulated in
float32 (per tensor; across tensors in the tuner's dtype) where the same pass's maxima of ``|x⁺|``, ``|g|``,
``|Δ|`` show that no product over- or underflows (each maximum 0 or in ``[2^-30, 2^30]``); a tensor outside that
range has its sums recomputed in float64 (eagerly) in that step.  float64 accumulation halves the vector width:
before 0.5 the squared norms were always accumulated in float64, and a step next to fused AdamW took 63.0 ms
(12.6 M parameters, one thread; 49.7 ms with the float32 sums; ``benchmarks/step_time.py --optimizers
adamw,mechanic``).

Where the exact offset ``D`` is kept (below float64, ``store_delta=False``: the default for float32 models) the
parameters before the base step are not copied: they are rebuilt as ``x = x_ref + D``, the value the previous
step wrote (compiled, to one rounding: the loop may fuse ``x_ref + Δ·S`` into one multiply-add).  Memory streams
per step (float32, around fused AdamW): 7 (the base) + 3 (sums) + 5 (apply) = 15, against fused AdamW's 7 (19
with the copy).  That is valid while nothing else wrote the parameter.  A write through the tensor (``p.add_``,
``p.copy_``, ``module.load_state_dict``, ``nn.init``) moves its version counter, and an assignment ``p.data = t``
(``torch.nn.utils.vector_to_parameters``, ``model_averaging.average_parameters``) moves its storage; either
makes that step copy ``x`` and take ``D = x - x_ref`` from the written value, as the reference does
(``load_state_dict`` of this optimizer forgets the record too).  In-place writes that bypass the version counter
leave no trace: ``p.data.copy_(...)``, ``torch.distributed.broadcast(p)`` / ``all_reduce(p)``, a numpy view, a
flat buffer that ``p``'s data views, another fused optimizer stepping ``p`` (torch's fused AdamW does not move
it).  Such a write is taken as part of the next base step's update (scaled by the learned scale), where the
reference keeps it whole; descend before 0.5 dropped it entirely in float32, and the reference itself drops it
with ``store_delta=True`` (as does descend with that option).  Write parameters through the tensor under
``torch.no_grad()``.  The gradients are not copied before the base
step when the base is one of torch's optimizers that never write ``p.grad`` (SGD, Adam, AdamW, NAdam, RAdam,
Adamax, Adagrad, RMSprop).  The registry's :func:`mechanic` builds a torch Adam/AdamW base with ``fused=True``
where torch's fused kernel applies (the caller chose none of ``fused``/``foreach``/``capturable``/
``differentiable``).

Deviations from the PyTorch reference (none numerical in float64 beyond rounding):

* ``store_delta=False`` below float64 (float32, bfloat16, float16 parameters): the reference rebuilds
  Δ = (x − x_ref)/(S + ε) by subtracting the *rounded* parameters.  While the scale S is small (it starts
  at 0, ~1e-6 after the first step) the offset S·u is below float32's resolution at |x| ≈ 1: x rounds back
  to x_ref, Δ becomes 0, h = 0 and the scale never grows — training stalls (issue 10, ‖Wx + b‖² with
  unit-scale parameters, 300 steps: float64 149.2 → 1.3e-5, float32 149.2 → 149.2 in the reference and in
  descend before the fix).  descend keeps the exact offset D = Δ·S in the state (``mechanic_offset``, one
  parameter copy, the memory ``store_delta=True`` costs) and forms Δ = D/(S + ε): the reference's
  algorithm in exact arithmetic, without the loss.  In float64 the reconstruction loses at most
  ~1e-16·|x| per step and is kept, so the float64 fixtures replay bit for bit;
* its tuner state is keyed by parameter tensors inside ``state["_mechanic"]``, so ``load_state_dict`` into
  a new optimizer fails (optimizedlearning/mechanic#2); here every piece is a tensor in ``opt.state``;
* its tuner vectors use torch's *default* dtype (float32 unless changed); here ``tuner_dtype`` (float64);
* the object is not an instance of the base class (``isinstance(opt, torch.optim.AdamW)`` is False; use
  ``opt.base``); logging (``log_func``/``log_every``) is not reproduced: read ``opt.s_sum``;
* it evaluates the closure with gradients disabled; here under ``torch.enable_grad``;
* a step without any gradient is a no-op for the tuner (the reference raises).

Differences between this (PyTorch) algorithm and the JAX one the paper's experiments used
(``optax.contrib.mechanize``), not reproduced here:

* optax starts ``s`` at ``s_init`` (default 1e-6) instead of 0, so its first step already moves by
  ``n·s_init·u``; PyTorch's first step is ~0 (Σs starts at 0);
* optax starts ``m`` at 0 and updates ``m = max(β m, |h| + ε)``; PyTorch starts at 1e-6 without ``+ ε``;
* optax feeds ``r`` with ``h`` clipped to ``[-m_prev, m_prev]`` and stores ``r`` unclipped (``max(0, r)`` is
  used only for the wealth); PyTorch uses the raw ``h`` and stores ``max(0, r)``;
* optax evaluates the decay term and its norm at the parameters *before* the base step (``x``),
  PyTorch at ``x⁺ = x + u``;
* optax fixes ``β_i = 1 - 10^{-i}`` (``num_betas``), keeps the state in the parameters' lowest dtype and
  has ``s_init = 1e-6`` by default.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ._base import begin_step, call_step_unhooked, check_floating_params, param_tensors
from ._fused import check_fused, run_elementwise_many, torch_fused_supported
from ._state import convert_state_value
from ._validate import check_betas, check_choice, check_float
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["Mechanic", "mechanic", "mechanic_apply", "mechanic_sums", "mechanize", "resolve_base"]

DEFAULT_S_BETAS: tuple[float, ...] = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)
_TUNER = "mechanic"  # key of the global tuner state in ``optimizer.state``
_REF, _DELTA = "mechanic_ref", "mechanic_delta"  # per-parameter keys
_OFFSET = "mechanic_offset"  # store_delta=False: the exact offset x - x_ref (see "Deviations")
_M_INIT = 1e-6  # initial running max of |h| (reference value)
_TUNER_DTYPES = (torch.float64, torch.float32)
_K = TypeVar("_K", bound=Hashable)


def _check_mechanic_args(s_decay: float, s_betas: Sequence[float], s_init: float, s_eps: float,
                         store_delta: bool, tuner_dtype: torch.dtype) -> dict[str, Any]:
    if isinstance(s_betas, str) or not isinstance(s_betas, Sequence) or len(s_betas) == 0:
        raise ValueError(f"s_betas must be a non-empty sequence of numbers in [0, 1), got {s_betas!r}")
    return {
        "s_decay": check_float("s_decay", s_decay, 0.0),
        "s_betas": check_betas("s_betas", s_betas, len(s_betas)),
        "s_init": check_float("s_init", s_init, 0.0, low_open=True),
        "s_eps": check_float("s_eps", s_eps, 0.0, low_open=True),
        "store_delta": bool(check_choice("store_delta", store_delta, (False, True))),
        "tuner_dtype": check_choice("tuner_dtype", tuner_dtype, _TUNER_DTYPES),
    }


def _check_base_group(group: Mapping[str, Any]) -> None:
    """The base hyperparameters Mechanic relies on: a finite ``lr >= 0`` and ``weight_decay >= 0``, and where
    the base has them (Adam-like bases), ``betas`` in [0, 1) and ``eps >= 0`` — torch's own optimizers check
    none of these in ``add_param_group`` or ``load_state_dict``."""
    for key in ("lr", "weight_decay", "eps"):
        if key in group:
            check_float(key, group[key], 0.0)
    if "betas" in group:
        check_betas("betas", group["betas"])


def _check_base_state_keys(base: torch.optim.Optimizer, saved: Mapping[Any, Any]) -> None:
    """Refuse a saved base state in which one parameter lacks a key the others have.

    torch's optimizers load such a state silently and fail (or re-initialise) at the next step; a base that
    validates its own state (a descend optimizer) is left to do so.  torch's per-parameter states all have
    the same keys (Adam's ``step``, ``exp_avg``, ``exp_avg_sq``; SGD's ``momentum_buffer``), so a key present
    for one parameter and absent for another marks a damaged dict."""
    if hasattr(base, "_check_param_state"):
        return
    states = {k: v for k, v in saved.items() if isinstance(v, Mapping) and v}
    union = {key for v in states.values() for key in v}
    for k, v in states.items():
        missing = sorted(str(key) for key in union - set(v))
        if missing:
            raise ValueError(f"load_state_dict: the saved {type(base).__name__} state of parameter {k} lacks "
                             f"{missing}, which the other parameters' states have")


def _keeps_offset(store_delta: bool, compute_dtype: torch.dtype) -> bool:
    """Whether the exact offset ``x - x_ref`` is kept in the state (``store_delta=False`` below float64)."""
    return not store_delta and compute_dtype != torch.float64


def _compute_dtype(p: torch.Tensor) -> torch.dtype:
    """Mechanic's elementwise arithmetic: the parameter's dtype, at least float32."""
    return torch.promote_types(p.dtype, torch.float32)


class Mechanic(torch.optim.Optimizer):
    """Mechanic learning-rate scale tuner around an existing optimizer instance (see module docstring).

    Args:
        base: the base optimizer (any ``torch.optim.Optimizer``); it must not be stepped on its own.
        s_decay: λ, the tuner's weight-decay-like term (>= 0).
        s_betas: the tuner's decay rates, one scale ``s_i`` per beta (each in [0, 1)).
        s_init: initial wealth scale (> 0).
        s_eps: ε of the tuner (> 0).
        store_delta: keep Δ in the state (one more parameter copy) instead of reconstructing it.
        tuner_dtype: dtype of ``s, m, v, r`` (float64 or float32).
        tuner_fused: Mechanic's per-tensor passes (:func:`mechanic_sums`, :func:`mechanic_apply`) compiled
            where ``torch.compile`` works (``None``, default), always (``True``) or never (``False``).
    """

    # Set only on the classes :func:`mechanize` builds at run time (``__reduce_ex__`` checks ``cls.__dict__``).
    base_class: ClassVar[type[torch.optim.Optimizer]]
    mechanic_defaults: ClassVar[dict[str, Any]]

    def __init__(
        self,
        base: torch.optim.Optimizer,
        *,
        s_decay: float = 0.01,
        s_betas: Sequence[float] = DEFAULT_S_BETAS,
        s_init: float = 1e-8,
        s_eps: float = 1e-8,
        store_delta: bool = False,
        tuner_dtype: torch.dtype = torch.float64,
        tuner_fused: bool | None = None,
    ) -> None:
        if not isinstance(base, torch.optim.Optimizer):
            raise TypeError(f"Mechanic wraps a torch.optim.Optimizer instance, got {type(base).__name__}")
        if isinstance(base, Mechanic):
            raise TypeError("Mechanic cannot wrap another Mechanic optimizer")
        args = _check_mechanic_args(s_decay, s_betas, s_init, s_eps, store_delta, tuner_dtype)
        check_floating_params("Mechanic", (p for g in base.param_groups for p in g["params"]))
        # Sets up the hook dictionaries; the empty placeholder group is replaced by the base's groups.
        super().__init__([{"params": []}], {})
        self.base = base
        self.param_groups = base.param_groups
        self.state = base.state
        self.defaults = base.defaults
        self.s_decay: float = args["s_decay"]
        self.s_betas: tuple[float, ...] = args["s_betas"]
        self.s_init: float = args["s_init"]
        self.s_eps: float = args["s_eps"]
        self.store_delta: bool = args["store_delta"]
        self.tuner_dtype: torch.dtype = args["tuner_dtype"]
        self.tuner_fused: bool | None = check_fused(tuner_fused)

    # ------------------------------------------------------------------------------------------ plumbing

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update({k: self.__dict__[k] for k in ("base", "s_decay", "s_betas", "s_init", "s_eps",
                                                    "store_delta", "tuner_dtype", "tuner_fused")})
        return state

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle a :func:`mechanize` class's instance through the module-level factory that rebuilds its
        class (the class is made at run time, so pickle cannot find it by name)."""
        cls = type(self)
        if "base_class" not in cls.__dict__:  # Mechanic itself, or a user's subclass: the default protocol
            return super().__reduce_ex__(protocol)
        return (_new_mechanized, (cls.base_class, dict(cls.mechanic_defaults)), self.__getstate__())

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(base={self.base!r}, s_decay={self.s_decay}, s_betas={self.s_betas}, "
                f"s_init={self.s_init}, s_eps={self.s_eps}, store_delta={self.store_delta}, "
                f"tuner_dtype={self.tuner_dtype})")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group to the base optimizer (whose ``param_groups`` this optimizer shares); its ``lr`` and
        ``weight_decay`` are validated first (the base may be a torch optimizer that checks neither)."""
        base = self.__dict__.get("base")
        if base is None:  # the placeholder group of ``Optimizer.__init__``
            super().add_param_group(param_group)
            return
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        _check_base_group(param_group)
        if "params" in param_group and not isinstance(param_group["params"], torch.Tensor):
            param_group["params"] = list(param_group["params"])
        check_floating_params("Mechanic", param_tensors(param_group.get("params", [])))
        base.add_param_group(param_group)

    def _tuner_entry(self) -> dict[str, torch.Tensor] | None:
        """The tuner's state, kept under the string key ``_TUNER`` in ``self.state`` (the state-dict layout
        saved checkpoints have).  torch types ``state`` as keyed by parameters, so the key is cast."""
        return self.state.get(cast(torch.Tensor, _TUNER))

    def _set_tuner_entry(self, tuner: dict[str, torch.Tensor]) -> None:
        self.state[cast(torch.Tensor, _TUNER)] = tuner  # string key: see ``_tuner_entry``

    @property
    def s_sum(self) -> float:
        """The current learned scale ``Σ_i s_i`` (0 before the first step)."""
        tuner = self._tuner_entry()
        return 0.0 if tuner is None else float(tuner["s"].sum())

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict saved by a Mechanic optimizer (or by a bare base optimizer)."""
        state_dict = dict(state_dict)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = dict(result)
        if not isinstance(state_dict.get("state"), Mapping) or "param_groups" not in state_dict:
            raise ValueError("load_state_dict: Mechanic expects a dict with 'state' and 'param_groups' "
                             "(what optimizer.state_dict() returns)")
        # the base's numerical hyperparameters must all be there (else: saved by another optimizer)
        numeric = [k for k, v in self.base.defaults.items()
                   if isinstance(v, (float, int, tuple)) and not isinstance(v, bool)]
        for i, group in enumerate(state_dict["param_groups"]):
            missing = [k for k in numeric if k not in group]
            if missing:
                raise ValueError(f"load_state_dict: parameter group {i} of the state dict lacks the "
                                 f"{type(self.base).__name__} hyperparameter(s) {missing}: was it saved by "
                                 "another optimizer?")
            try:
                _check_base_group(group)
            except ValueError as exc:
                raise ValueError(f"load_state_dict: parameter group {i} of the state dict: {exc}") from None
        saved = dict(state_dict["state"])
        tuner = saved.pop(_TUNER, None)
        n = len(self.s_betas)
        if tuner is not None:
            missing = [key for key in ("s", "m", "v", "r", "step") if key not in tuner]
            if missing:
                raise ValueError(f"load_state_dict: the saved Mechanic tuner lacks {missing}")
            for key in ("s", "m", "v", "r"):
                if not isinstance(tuner[key], torch.Tensor) or tuple(tuner[key].shape) != (n,):
                    shape = tuple(tuner[key].shape) if isinstance(tuner[key], torch.Tensor) else tuner[key]
                    raise ValueError(f"the saved Mechanic tuner has {shape} entries in {key!r} "
                                     f"but this optimizer has {n} s_betas")
        keys = (_REF, _DELTA, _OFFSET)
        mine: dict[Any, dict[str, torch.Tensor]] = {}
        for k, v in list(saved.items()):
            if isinstance(v, Mapping) and any(name in v for name in keys):
                mine[k] = {name: v[name] for name in keys if name in v}
                if self.store_delta and _DELTA not in v:
                    raise ValueError(f"load_state_dict: the saved state of parameter {k} has no {_DELTA!r}; "
                                     "it was saved with store_delta=False")
                rest = {name: val for name, val in v.items() if name not in keys}
                if rest:
                    saved[k] = rest
                else:
                    del saved[k]
        _check_base_state_keys(self.base, saved)
        self.base.load_state_dict({**state_dict, "state": saved})
        self.param_groups = self.base.param_groups
        self.state = self.base.state
        self.defaults = self.base.defaults
        for key in ("_written", "_scratch"):  # the parameters' values are no longer what this optimizer wrote
            self.__dict__.pop(key, None)
        index = [p for g in self.param_groups for p in g["params"]]
        for k, entries in mine.items():
            p = index[k]
            for name, value in entries.items():  # Mechanic's arithmetic dtype (torch casts to the parameter's)
                self.state[p][name] = convert_state_value(value, p, _compute_dtype(p))
        if tuner is not None:
            device = index[0].device if index else torch.device("cpu")
            self._set_tuner_entry({
                **{key: tuner[key].to(dtype=self.tuner_dtype, device=device, copy=True)
                   for key in ("s", "m", "v", "r")},
                "step": torch.as_tensor(tuner["step"]).to(dtype=torch.int64, device="cpu", copy=True),
            })
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    # ------------------------------------------------------------------------------------------ step

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run the base optimizer's step, then re-scale the accumulated offset with the tuned scale."""
        grad_enabled = torch.is_grad_enabled()
        loss = begin_step(self, closure, type(self).__name__)
        params = [p for group in self.param_groups for p in group["params"]]
        active = [p for p in params if p.grad is not None]
        # The gradients are copied unless the base is one of torch's optimizers that never write ``p.grad``.
        copy_grads = type(self.base) not in _GRAD_PRESERVING_BASES
        with torch.no_grad():
            # x before the base step: rebuilt as x_ref + D where nothing wrote the parameter since the last
            # step (no copy), else copied (see "Fast path")
            moved = [self._moved(p) for p in active]
            before = [None if m is None else self._saved(p) for p, m in zip(active, moved, strict=True)]
            grads = [p.grad.detach().to(_compute_dtype(p), copy=copy_grads) for p in active]

        # The base's step runs without torch's hook runner: the step hooks (global and this optimizer's)
        # fire once, around this ``step``, not a second time for the inner optimizer.
        base_step = type(self.base).step
        with torch.set_grad_enabled(grad_enabled):
            if closure is None:
                call_step_unhooked(base_step, self.base)
            else:
                calls = 0

                def base_closure() -> Any:
                    nonlocal calls
                    calls += 1
                    return loss if calls == 1 else closure()

                call_step_unhooked(base_step, self.base, base_closure)

        if active:
            with torch.no_grad():
                self._tune(active, before, grads, [m is True for m in moved])
            written = self.__dict__.get("_written")
            if written is None:
                written = self.__dict__["_written"] = WeakIdKeyDictionary()
            for p in active:
                written[p] = _write_mark(p)
        return loss

    def _moved(self, p: torch.Tensor) -> bool | None:
        """``None`` if ``x`` can be rebuilt as ``x_ref + D`` (the exact offset is kept, as for float32
        parameters, and neither ``p``'s version counter nor its storage changed since this optimizer wrote it);
        else whether something wrote ``p`` in between (``True``: Δ is then taken from the new value, as the
        reference does; ``False``: no record, e.g. the first step or after ``load_state_dict``)."""
        written = self.__dict__.get("_written")
        seen = None if written is None else written.get(p)
        if seen is None:
            return False
        if seen != _write_mark(p):
            return True
        st = self.state.get(p)
        if (st is None or _OFFSET not in st or p.dtype != _compute_dtype(p)
                or not _keeps_offset(self.store_delta, p.dtype)):
            return False
        scratch = self.__dict__.get("_scratch")
        if scratch is not None:
            scratch.pop(p, None)  # the copy is not needed any more
        return None

    def _saved(self, p: torch.Tensor) -> torch.Tensor:
        """``p`` before the base step, copied into a scratch buffer that lives across steps.

        Not optimizer state (neither saved nor copied).  Re-allocating the copy every step, as the reference
        does, costs more than the copy itself on the CPU (fresh pages are faulted in on first touch).
        """
        scratch = self.__dict__.get("_scratch")
        if scratch is None:
            scratch = self.__dict__["_scratch"] = WeakIdKeyDictionary()
        dtype = _compute_dtype(p)
        buf = scratch.get(p)
        if buf is None or buf.shape != p.shape or buf.dtype != dtype or buf.device != p.device:
            buf = scratch[p] = torch.empty(p.shape, dtype=dtype, device=p.device)
        return buf.copy_(p.detach())

    def _tuner_state(self, device: torch.device) -> dict[str, torch.Tensor]:
        tuner = self._tuner_entry()
        if tuner is None:
            n, dtype = len(self.s_betas), self.tuner_dtype
            tuner = {
                "s": torch.zeros(n, dtype=dtype, device=device),
                "m": torch.full((n,), _M_INIT, dtype=dtype, device=device),
                "v": torch.zeros(n, dtype=dtype, device=device),
                "r": torch.zeros(n, dtype=dtype, device=device),
                "step": torch.tensor(0, dtype=torch.int64),
            }
            self._set_tuner_entry(tuner)
        return tuner

    def _tune(self, active: list[torch.Tensor], before: list[torch.Tensor | None], grads: list[torch.Tensor],
              moved: list[bool]) -> None:
        tuner = self._tuner_state(active[0].device)
        s, m, v, r = tuner["s"], tuner["m"], tuner["v"], tuner["r"]
        dev, tdt, eps = s.device, s.dtype, self.s_eps
        fused = getattr(self, "tuner_fused", None)
        s_old = s.sum()
        offset_scale = float(s_old + eps)

        # Pass 1 (one read of x, x⁺, g, x_ref/Δ per tensor): ‖x⁺‖², ‖g‖², ⟨Δ, g⟩, ⟨Δ, x⁺⟩.
        works: list[torch.Tensor] = []
        kinds: list[tuple[str, torch.Tensor | None]] = []
        sums = torch.zeros(4, dtype=tdt, device=dev)
        for p, x, g, written in zip(active, before, grads, moved, strict=True):
            st = self.state[p]
            exact = _keeps_offset(self.store_delta, g.dtype)
            if _REF not in st:
                assert x is not None  # no record of a write before a tensor's first step: x was copied
                st[_REF] = x.clone()
                if self.store_delta:
                    st[_DELTA] = torch.zeros_like(x)
                elif exact:
                    st[_OFFSET] = torch.zeros_like(x)
            if self.store_delta:
                kind, stored = "delta", st[_DELTA]
            elif exact:
                # Δ = D / (S + ε) from the exact offset D = x - x_ref: the reference subtracts the rounded
                # parameters, which in float32 lose an offset below |x|·6e-8 and stall the tuner
                if _OFFSET not in st or written:  # state saved without the offset, or p written since
                    assert x is not None
                    st[_OFFSET] = x - st[_REF]
                kind, stored = "offset", st[_OFFSET]
            else:  # float64: reconstructed from the parameters, as the reference
                kind, stored = "ref", None
            kinds.append((kind, stored))
            x_new = p if p.dtype == g.dtype else p.detach().to(g.dtype)
            works.append(x_new)
        # one compiled call per (kind, float64?) (the tensors' sums are accumulated in their order, as one by one)
        args = [(x, x_new, g, self.state[p][_REF], stored)
                for p, x, g, x_new, (_, stored) in zip(active, before, grads, works, kinds, strict=True)]
        outs: list[Any] = [None] * len(active)
        wides = [g.dtype == torch.float64 for g in grads]
        for (kind, wide), idx in _indices_by([(k, w) for (k, _), w in zip(kinds, wides, strict=True)]).items():
            res = run_elementwise_many(mechanic_sums, fused, [args[i] for i in idx], offset_scale=offset_scale,
                                       kind=kind, wide=wide)
            for i, out in zip(idx, res, strict=True):
                outs[i] = out
        narrow = [i for i, wide in enumerate(wides) if not wide]
        if narrow:
            maxima = torch.stack([m.to(device=dev, dtype=torch.float32) for i in narrow for m in outs[i][4:]])
            redo = [i for i, ok in zip(narrow, _float32_sums_safe(maxima.view(len(narrow), 3)), strict=True)
                    if not ok]
            # where a product may over- or underflow float32: that tensor's sums again, in float64 (eagerly: a
            # rare step is not worth a second compiled graph)
            for kind, idx in _indices_by([kinds[i][0] for i in redo]).items():
                res = run_elementwise_many(mechanic_sums, False, [args[redo[j]] for j in idx],
                                           offset_scale=offset_scale, kind=kind, wide=True)
                for j, out in zip(idx, res, strict=True):
                    outs[redo[j]] = out
        for out in outs:
            sums += torch.stack(out[:4]).to(device=dev, dtype=tdt)
        p_norm, g_norm = sums[0].sqrt(), sums[1].sqrt()
        # h = <Δ, g + λ S ‖g‖/(‖x⁺‖ + ε) x⁺> = <Δ, g> + λ S ‖g‖/(‖x⁺‖ + ε) <Δ, x⁺>
        h = sums[2] + self.s_decay * s_old * g_norm / (p_norm + eps) * sums[3]

        # The tuner (one coin-betting learner per beta).
        betas = torch.tensor(self.s_betas, dtype=tdt, device=dev)
        m.copy_(torch.maximum(betas * m, h.abs()))
        v.mul_(betas**2).add_(h.square())
        r.mul_(betas).sub_(s * h).clamp_(min=0.0)
        wealth = m * self.s_init / len(self.s_betas) + r
        s.copy_(wealth / (v.sqrt() + eps))
        tuner["step"] += 1

        # Pass 2: Δ += u = x⁺ - x, x = x_ref + Δ · max(Σ s, 0) (and the exact offset D = Δ · max(Σ s, 0)).
        scale = float(s.sum().clamp(min=0.0))
        applies = [(x_new, x, self.state[p][_REF], stored)
                   for p, x, x_new, (_, stored) in zip(active, before, works, kinds, strict=True)]
        for kind, idx in _indices_by([k for k, _ in kinds]).items():
            run_elementwise_many(mechanic_apply, fused, [applies[i] for i in idx], offset_scale=offset_scale,
                                 scale=scale, kind=kind)
        for p, x_new in zip(active, works, strict=True):
            if x_new is not p:
                p.copy_(x_new)


def _write_mark(p: torch.Tensor) -> tuple[int, int, int]:
    """What changes when something writes ``p`` through the tensor (its version counter) or assigns its data
    (``p.data = t``: the storage moves): Mechanic rebuilds x only while this is what it was after its step."""
    return p._version, p.untyped_storage().data_ptr(), int(p.storage_offset())


def _indices_by(keys: Sequence[_K]) -> dict[_K, list[int]]:
    """Indices of the tensors of each key (a Δ kind "delta"/"offset"/"ref", or a (kind, wide) pair), in order:
    one call of :func:`mechanic_sums` or :func:`mechanic_apply` per key."""
    out: dict[_K, list[int]] = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return out


#: torch optimizers whose ``step`` never writes ``p.grad`` (Mechanic need not copy the gradients).
_GRAD_PRESERVING_BASES = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam,
                          torch.optim.RAdam, torch.optim.Adamax, torch.optim.Adagrad, torch.optim.RMSprop)


def _offset(x: torch.Tensor | None, ref: torch.Tensor, stored: torch.Tensor | None, offset_scale: float,
            kind: str) -> torch.Tensor:
    """Mechanic's Δ: the stored Δ (``kind="delta"``), the stored exact offset over ``S + ε`` (``"offset"``), or
    ``(x - x_ref) / (S + ε)`` rebuilt from the parameters (``"ref"``, the reference's form)."""
    if kind == "delta":
        assert stored is not None
        return stored
    if kind == "offset":
        assert stored is not None
        return stored / offset_scale
    assert x is not None
    return (x - ref) / offset_scale


def mechanic_sums(x: torch.Tensor | None, x_new: torch.Tensor, g: torch.Tensor, ref: torch.Tensor,
                  stored: torch.Tensor | None, *, offset_scale: float, kind: str,
                  wide: bool) -> tuple[torch.Tensor, ...]:
    """Mechanic's reductions over one tensor: ``(‖x⁺‖², ‖g‖², ⟨Δ, g⟩, ⟨Δ, x⁺⟩, max|x⁺|, max|g|, max|Δ|)``
    (Δ: :func:`_offset`), the math of the eager and the compiled path (:mod:`descend.optim._fused`): one read
    of each input instead of one pass per term.

    The sums are accumulated in the inputs' dtype, or with ``wide`` in float64 from float64 copies of the inputs
    (Δ included; the maxima are then not computed and are returned as 0): what float64 parameters use, and the
    fallback of :meth:`Mechanic._tune` for a float32 tensor whose maxima show that a product may leave float32's
    range (:func:`_float32_sums_safe`).  float64 accumulation of float32 inputs halves the vector width
    (``benchmarks/memory_passes.py``: 15.4 ms in float32 against 42.9 ms in float64 at 12.6 M elements).
    """
    if wide:
        x_new, g, ref = x_new.to(torch.float64), g.to(torch.float64), ref.to(torch.float64)
        wide_x, wide_stored = (None if t is None else t.to(torch.float64) for t in (x, stored))
        delta = _offset(wide_x, ref, wide_stored, offset_scale, kind)
        zero = x_new.new_zeros(())
        return (x_new * x_new).sum(), (g * g).sum(), (delta * g).sum(), (delta * x_new).sum(), zero, zero, zero
    delta = _offset(x, ref, stored, offset_scale, kind)
    if x_new.numel() == 0:  # (amax has no identity; an empty tensor never reaches the compiled path)
        zero = x_new.new_zeros(())
        return zero, zero, zero, zero, zero, zero, zero
    return ((x_new * x_new).sum(), (g * g).sum(), (delta * g).sum(), (delta * x_new).sum(),
            x_new.abs().amax(), g.abs().amax(), delta.abs().amax())


#: Range of the maxima of |x⁺|, |g|, |Δ| (besides 0) inside which float32 sums are taken (see below).
_F32_SAFE_RANGE = (2.0**-30, 2.0**30)


def _float32_sums_safe(maxima: torch.Tensor) -> list[bool]:
    """Per row of ``maxima`` (one tensor's max|x⁺|, max|g|, max|Δ|): whether its float32 sums lose nothing to
    float32's range, compared with float64 accumulation.

    With every nonzero maximum in ``[2^-30, 2^30]``: a product of two factors is at most ``2^60``, so a sum of up
    to ``2^67`` of them stays below float32's ``2^128``.  The products that fall below float32's normal range
    (``2^-126``, or flushed to zero) change a sum by at most ``n · 2^-126`` in all, which is ``n · 2^-66`` of
    ``max|a| · max|b| ≥ 2^-60`` and so of ``‖a‖ ‖b‖`` (``2^-42`` at 16 M elements): for the squared norms that
    is relative to the sum, for the inner products relative to the Cauchy–Schwarz bound ``‖Δ‖ ‖g‖``, the scale
    their float32 rounding has anyway (about ``2^-24`` per addition).  A maximum of 0 makes its products exactly
    0.  NaN or inf fails the test (the float64 pass then shows the same NaN or inf).
    """
    lo, hi = _F32_SAFE_RANGE
    return [bool(ok) for ok in ((maxima == 0) | ((maxima >= lo) & (maxima <= hi))).all(dim=1).tolist()]


def mechanic_apply(x_new: torch.Tensor, x: torch.Tensor | None, ref: torch.Tensor, stored: torch.Tensor | None, *,
                   offset_scale: float, scale: float, kind: str) -> None:
    """``Δ += x⁺ - x`` and ``x⁺ <- x_ref + Δ · scale`` in place, writing back the stored Δ (``kind="delta"``)
    or the exact offset ``Δ · scale`` (``"offset"``): the math of the eager and the compiled path.  ``x=None``
    (``"offset"`` only): ``x`` is rebuilt as ``x_ref + D``, the value the previous step wrote."""
    if x is None:
        assert kind == "offset" and stored is not None
        x = ref + stored
    d = _offset(x, ref, stored, offset_scale, kind) + (x_new - x)
    if kind == "delta":
        assert stored is not None
        stored.copy_(d)
        x_new.copy_(ref + d * scale)
    elif kind == "offset":
        assert stored is not None
        off = d * scale
        stored.copy_(off)
        x_new.copy_(ref + off)
    else:
        x_new.copy_(ref + d * scale)


# ---------------------------------------------------------------------------------------------- mechanize


_MECHANIC_KEYS = ("s_decay", "s_betas", "s_init", "s_eps", "store_delta", "tuner_dtype", "tuner_fused")
_CLASS_CACHE: dict[tuple[Any, ...], type[Mechanic]] = {}


def resolve_base(base: type[torch.optim.Optimizer] | str) -> type[torch.optim.Optimizer]:
    """The base optimizer class: a class, or the name of a ``torch.optim`` class (``"torch.optim.SGD"``
    or ``"SGD"``).  Names are looked up in ``torch.optim`` only."""
    if isinstance(base, str):
        name = base.removeprefix("torch.optim.")
        cls = getattr(torch.optim, name, None) if name.isidentifier() else None
        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)
                and cls is not torch.optim.Optimizer):
            raise ValueError(f"base must name an optimizer class of torch.optim (e.g. 'torch.optim.AdamW'), "
                             f"got {base!r}")
        return cls
    if not (isinstance(base, type) and issubclass(base, torch.optim.Optimizer)):
        raise ValueError(f"base must be a torch.optim.Optimizer subclass or the name of one, got {base!r}")
    if issubclass(base, Mechanic):
        raise ValueError("base must not itself be a Mechanic optimizer")
    return base


def mechanize(
    base: type[torch.optim.Optimizer] | str,
    *,
    s_decay: float = 0.01,
    s_betas: Sequence[float] = DEFAULT_S_BETAS,
    s_init: float = 1e-8,
    s_eps: float = 1e-8,
    store_delta: bool = False,
    tuner_dtype: torch.dtype = torch.float64,
) -> type[Mechanic]:
    """An optimizer class that runs ``base`` with a Mechanic-tuned scale.

    ``mechanize(torch.optim.SGD)(params, lr=1.0)``; the keyword arguments given here are the class's
    defaults for Mechanic's arguments, which the constructor accepts too (keyword-only); every other
    constructor argument goes to ``base``.  The same arguments return the same class.
    """
    base_cls = resolve_base(base)
    defaults = _check_mechanic_args(s_decay, s_betas, s_init, s_eps, store_delta, tuner_dtype)
    key = (base_cls, *defaults.items())
    cls = _CLASS_CACHE.get(key)
    if cls is not None:
        return cls

    def __init__(self: Mechanic, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        mech = {k: kwargs.pop(k) for k in _MECHANIC_KEYS if k in kwargs}
        _check_base_group(kwargs)
        Mechanic.__init__(self, base_cls(params, *args, **kwargs), **{**defaults, **mech})

    name = f"Mechanic{base_cls.__name__}"
    cls = type(name, (Mechanic,), {
        "__init__": __init__,
        "__doc__": f"Mechanic around {base_cls.__module__}.{base_cls.__qualname__} (see descend.optim.mechanic).",
        "__module__": __name__,
        "base_class": base_cls,
        "mechanic_defaults": dict(defaults),
    })
    _CLASS_CACHE[key] = cls
    return cls


def _construct(cls: type[Mechanic]) -> Callable[..., Mechanic]:
    """``cls`` as a constructor: a :func:`mechanize` class's ``__init__`` takes the base optimizer's arguments
    (``params, *args, **kwargs``), not :class:`Mechanic`'s (``base, *, s_decay, ...``) that the type declares."""
    return cls


def _new_mechanized(base_cls: type[torch.optim.Optimizer], defaults: dict[str, Any]) -> Mechanic:
    """An empty instance of ``mechanize(base_cls, **defaults)`` (unpickling fills it via ``__setstate__``)."""
    cls = mechanize(base_cls, **defaults)
    return cls.__new__(cls)


def mechanic(
    params: Iterable[Any],
    lr: float = 1e-3,
    *,
    base: type[torch.optim.Optimizer] | str = torch.optim.AdamW,
    s_decay: float = 0.01,
    s_betas: Sequence[float] = DEFAULT_S_BETAS,
    s_init: float = 1e-8,
    s_eps: float = 1e-8,
    store_delta: bool = False,
    tuner_dtype: torch.dtype = torch.float64,
    **base_kwargs: Any,
) -> Mechanic:
    """Mechanic around ``base`` (default ``torch.optim.AdamW``) built with ``lr`` and ``base_kwargs``."""
    _check_base_group({"lr": lr, **base_kwargs})
    cls = mechanize(base, s_decay=s_decay, s_betas=s_betas, s_init=s_init, s_eps=s_eps,
                    store_delta=store_delta, tuner_dtype=tuner_dtype)
    if cls.base_class in (torch.optim.Adam, torch.optim.AdamW) and base_kwargs.get("fused") is None \
            and not any(base_kwargs.get(k) for k in ("foreach", "capturable", "differentiable")):
        params = list(params)
        base_kwargs = {k: v for k, v in base_kwargs.items() if k != "fused"}
        if torch_fused_supported(params):
            base_kwargs["fused"] = True
    return _construct(cls)(params, lr=lr, **base_kwargs)


# ---------------------------------------------------------------------------------------------- registry

_FIXTURE_NAMES = {"s_decay": "s_decay", "betas": "s_betas", "s_init": "s_init", "eps": "s_eps",
                  "store_delta": "store_delta"}
_FIXTURE_IGNORED = ("log_every", "log_func")  # logging only


def _tuple_lists(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> Mechanic:
    hp = fx["hyperparameters"]
    mech: dict[str, Any] = {}
    for k, value in hp.get("mechanize", {}).items():
        if k in _FIXTURE_IGNORED:
            continue
        if k not in _FIXTURE_NAMES:
            raise ValueError(f"unknown mechanize argument {k!r} in the fixture")
        mech[_FIXTURE_NAMES[k]] = tuple(value) if isinstance(value, list) else value
    default_dtype = (fx.get("replay") or {}).get("torch_default_dtype", "float32")
    mech["tuner_dtype"] = torch.float64 if default_dtype == "float64" else torch.float32
    cls = mechanize(hp["Base"], **mech)
    return _construct(cls)([params[n] for n in fx["param_order"]], **_tuple_lists(hp.get("base", {})))


register(OptimizerSpec(
    name="mechanic",
    factory=mechanic,
    paper="Cutkosky, Defazio & Mehta 2023, Mechanic: A Learning Rate Tuner (NeurIPS), arXiv:2306.00144",
    reference="mechanic-pytorch==0.0.1 (mechanize)",
    # weight_decay goes to the base optimizer through **base_kwargs (AdamW's own default is 0.01)
    defaults={"weight_decay": 0.0},
    search_space={
        "lr": FloatRange(3e-4, 3e-3, log=True),  # Mechanic learns the scale: the base lr barely matters
        "s_decay": FloatRange(1e-3, 1e-1, log=True),
        "weight_decay": Categorical((0.0, 0.01, 0.1)),
    },
    summary="learns the learning-rate scale of a base optimizer (AdamW by default) by coin betting",
    fixture_names=("mechanic",),
    from_fixture=_from_fixture,
    observables=lambda opt: {"s_sum": opt.s_sum} if isinstance(opt, Mechanic) else {},
    zero_lr_freezes=False,
))
