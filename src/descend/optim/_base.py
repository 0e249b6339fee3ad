"""What every descend optimizer shares: the start of ``step()``, validated groups, one state loader, copying.

* :func:`begin_step` — evaluate the optional closure under ``torch.enable_grad()``, then reject sparse or
  complex parameters/gradients (:func:`~._validate.check_no_sparse_or_complex`) before any state changes.
* :class:`DescendOptimizer` — a ``torch.optim.Optimizer`` base with

  - one validation hook, ``_check_group(group)``, run on the constructor's defaults (by the subclass), on
    every group given to ``add_param_group`` (defaults filled in, *before* the group is added) and on every
    group of a state dict given to ``load_state_dict`` (before anything is loaded);
  - the shared loader :func:`~._state.load_state_dict`: a state dict from another optimizer or with missing
    state keys is refused with a one-line ``ValueError``, a Python-number ``step`` becomes a tensor, and
    every state tensor gets the dtype the optimizer would create it in (``_state_dtype``);
  - copies that keep the configuration: ``copy.deepcopy``/``pickle`` go through ``__getstate__``, which
    torch restricts to ``defaults``/``state``/``param_groups``; the instance attributes listed in
    ``_CONFIG_ATTRS`` are kept too;
  - named parameters (``model.named_parameters()``) accepted wherever parameters are, as torch >= 2.6 does.

* :func:`call_step_unhooked` — run a base class's (or an inner optimizer's) ``step`` without torch's step
  hooks, so that global and per-instance hooks fire exactly once per user-visible ``step()``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from ._mixed_precision import state_dtype as _mixed_state_dtype
from ._state import load_state_dict
from ._validate import check_no_sparse_or_complex

__all__ = ["DescendOptimizer", "KeepsStateDtypes", "begin_step", "call_step_unhooked", "check_floating_params",
           "param_tensors"]


def begin_step(optimizer: torch.optim.Optimizer, closure: Callable[[], Any] | None, name: str) -> Any:
    """The common prologue of ``step()``: the closure's loss (``None`` without a closure), evaluated with
    gradients enabled, after which every parameter of every group (in order) is checked for sparse or
    complex tensors (``RuntimeError`` naming ``name``) before any state is touched."""
    loss = None
    if closure is not None:
        with torch.enable_grad():
            loss = closure()
    check_no_sparse_or_complex(name, (p for g in optimizer.param_groups for p in g["params"]))
    return loss


def call_step_unhooked(step: Callable[..., Any], optimizer: torch.optim.Optimizer, *args: Any) -> Any:
    """``step(optimizer, *args)`` without torch's hook runner.

    ``torch.optim.Optimizer`` wraps each class's ``step`` (once, in place, on the first instance) with a
    function that fires the global and per-instance step hooks.  A subclass whose ``step`` calls
    ``super().step()``, or a wrapper that steps an inner optimizer, would fire them again; this calls the
    function the hook runner wrapped (``__wrapped__``) instead.
    """
    inner = step.__wrapped__ if getattr(step, "hooked", False) else step  # type: ignore[attr-defined]
    return inner(optimizer, *args)


def param_tensors(params: Any) -> list[torch.Tensor]:
    """The tensors of a group's ``params``: a tensor, an iterable of tensors or of ``(name, tensor)``."""
    if isinstance(params, torch.Tensor):
        return [params]
    out = []
    for p in params:
        out.append(p[1] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) else p)
    return out


def check_floating_params(name: str, params: Iterable[Any]) -> None:
    """Raise ``ValueError`` for an integer or bool parameter (an optimizer step would round or fail)."""
    for p in params:
        if isinstance(p, torch.Tensor) and not (p.is_floating_point() or p.is_complex()):
            raise ValueError(f"{name} optimizes floating-point tensors, got a {p.dtype} parameter of shape "
                             f"{tuple(p.shape)}")


def _named_groups(params: Any) -> Any:
    """Materialise ``params`` once (it may be a generator such as ``named_parameters()``)."""
    return params if isinstance(params, torch.Tensor) else list(params)


class DescendOptimizer(torch.optim.Optimizer):
    """Base of descend's optimizers (see the module docstring).

    Subclasses declare:

    * ``_check_group(self, group)`` — raise ``ValueError`` naming a bad hyperparameter; may return a mapping
      of normalised values written into the added group (e.g. ``betas`` as a tuple).  ``group["params"]``
      is the list of tensors.
    * ``_STATE_KEYS`` — the keys every non-empty per-parameter state has (``None``: not checked), and
      ``_OPTIONAL_STATE_KEYS`` — ``fnmatch`` patterns of the keys it may have besides, and
      ``_STATE_KEY_SETS`` — sets of keys that are present together or not at all.
    * ``_STEP_DTYPE`` — the dtype of the ``step`` counter (a saved number becomes a tensor of it; ``None``:
      keep what torch's loader produced); ``_state_dtype(p, group, key)`` for other keys (default: floating
      state in the parameter's dtype, float32 for bfloat16/float16 parameters).
    * ``_CONFIG_ATTRS`` — instance attributes that ``copy.deepcopy`` and ``pickle`` must keep.
    """

    _STATE_KEYS: ClassVar[tuple[str, ...] | None] = None
    _OPTIONAL_STATE_KEYS: ClassVar[tuple[str, ...]] = ()
    _STATE_KEY_SETS: ClassVar[tuple[tuple[str, ...], ...]] = ()  # keys present together or not at all
    _STEP_DTYPE: ClassVar[torch.dtype | None] = torch.float64
    _CONFIG_ATTRS: ClassVar[tuple[str, ...]] = ()
    _REQUIRED_GROUP_KEYS: ClassVar[tuple[str, ...] | None] = None  # None: every key of ``defaults``

    # ------------------------------------------------------------------------------ validation

    def _check_group(self, group: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """Validate one group's hyperparameters (override); the default accepts everything."""
        return None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Validate ``param_group`` (the optimizer's defaults filled in) before adding it, then add it."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        if "params" in param_group:
            param_group["params"] = _named_groups(param_group["params"])
        tensors = param_tensors(param_group.get("params", []))
        check_floating_params(type(self).__name__, tensors)
        merged = {**self.defaults, **param_group, "params": tensors}
        updates = self._check_group(merged)
        super().add_param_group(param_group)
        if updates:
            self.param_groups[-1].update(updates)

    # ------------------------------------------------------------------------------ state dicts

    def _required_state_keys(self, group: Mapping[str, Any], p: torch.Tensor) -> list[str]:
        """Keys a non-empty state of ``p`` in ``group`` must have (default: ``_STATE_KEYS``)."""
        return list(self._STATE_KEYS or ())

    def _check_param_state(self, keys: set[Any], group: Mapping[str, Any], p: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``keys`` are those of a per-parameter state of this optimizer."""
        if self._STATE_KEYS is None:
            return
        name = type(self).__name__
        missing = [k for k in self._required_state_keys(group, p) if k not in keys]
        known = (*self._STATE_KEYS, *self._OPTIONAL_STATE_KEYS)
        unknown = sorted(str(k) for k in keys if not any(fnmatch.fnmatchcase(str(k), pat) for pat in known))
        if unknown:
            raise ValueError(f"keys {unknown} are not {name} state: was it saved by another optimizer?")
        for together in self._STATE_KEY_SETS:
            if any(k in keys for k in together):
                missing += [k for k in together if k not in keys and k not in missing]
        if missing:
            raise ValueError(f"{name} state key(s) {missing} are missing (keys saved: {sorted(map(str, keys))})")

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        """The dtype state entry ``key`` of ``p`` has when this optimizer creates it (``None``: as saved)."""
        if key == "step":
            return self._STEP_DTYPE
        return _mixed_state_dtype(p) if p.is_floating_point() else None

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Validate and load ``state_dict`` (see :func:`descend.optim._state.load_state_dict`)."""
        load_state_dict(self, state_dict)

    # ------------------------------------------------------------------------------ copying

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update({a: self.__dict__[a] for a in self._CONFIG_ATTRS if a in self.__dict__})
        return state


#: The former name of :class:`DescendOptimizer` (its loader kept every saved dtype).
KeepsStateDtypes = DescendOptimizer
