"""One ``load_state_dict`` for descend's optimizers: validated, dtype-keeping, torch-compatible.

``torch.optim.Optimizer.load_state_dict`` maps saved parameter ids to parameters and casts every floating
state tensor except ``"step"`` to its parameter's dtype.  That is right for most state (a float64 checkpoint
loaded into float32 parameters gets float32 moments), but wrong for state whose dtype is part of the
algorithm: integer ring positions, boolean masks, generator states (uint8), float64 scalars such as
estimating-sequence coefficients, float32 state kept for bfloat16 parameters, a float32 Fisher window of
float64 parameters.  And torch checks little: a state dict saved by another optimizer, one with a missing
state key, a Python-number ``step`` (older torch, many checkpoints) or hyperparameters out of range load
silently and fail (or corrupt the parameters) at the next ``step()``.

:func:`load_state_dict` is the loader every descend optimizer uses.  Before anything changes it checks

* the structure (``"state"`` and ``"param_groups"``, group count and sizes);
* every saved group's hyperparameters, through the optimizer's own validation hook
  (``optimizer._check_group(group)``, the one the constructor and ``add_param_group`` use) — a missing
  hyperparameter means the dict was saved by another optimizer;
* every saved per-parameter state's keys against the optimizer's declaration
  (``optimizer._check_param_state(keys, group, p)``, see :class:`~._base.DescendOptimizer`);

then loads with torch's loader (hooks, ``param_names``, non-parameter state) and finally sets every state
entry from the saved value with the dtype the optimizer itself would create it in
(``optimizer._state_dtype(p, group, key)``; ``None`` keeps the saved dtype).  A Python number where the
optimizer keeps a tensor (``step``) becomes a tensor of that dtype.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["convert_state_value", "load_state_dict", "validate_state_dict"]


def convert_state_value(value: Any, p: torch.Tensor, dtype: torch.dtype | None) -> Any:
    """A saved state entry as the optimizer holds it for parameter ``p``.

    Tensors are copied (detached) onto ``p``'s device — 0-dim tensors (counters, scalars) stay on the device
    they were saved on, as torch keeps ``step`` — and cast to ``dtype`` when it is given and both are floating
    point (integer, bool and uint8 state keeps its dtype).  A real Python number becomes a 0-dim tensor of
    ``dtype`` when one is given.  Anything else is deep-copied.
    """
    if isinstance(value, torch.Tensor):
        device = value.device if value.dim() == 0 else p.device
        if dtype is not None and value.is_floating_point() and dtype.is_floating_point:
            return value.detach().to(device=device, dtype=dtype, copy=True)
        return value.detach().to(device=device, copy=True)
    if dtype is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(value, dtype=dtype)
    return copy.deepcopy(value)


def _group_error(index: int, exc: Exception) -> ValueError:
    return ValueError(f"load_state_dict: parameter group {index} of the state dict: {exc}")


def validate_state_dict(optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (one line, naming what is wrong) unless ``state_dict`` fits ``optimizer``.

    Checks the structure, every saved group's hyperparameters (``optimizer._check_group`` if defined, with
    the optimizer's defaults as the list of hyperparameters a group must carry) and every saved
    per-parameter state's keys (``optimizer._check_param_state`` if defined).  Changes nothing.
    """
    name = type(optimizer).__name__
    if not isinstance(state_dict, Mapping) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError(f"load_state_dict: {name} expects a dict with 'state' and 'param_groups' "
                         "(what optimizer.state_dict() returns)")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(f"load_state_dict: the state dict has {len(saved_groups)} parameter groups, "
                         f"{name} has {len(optimizer.param_groups)}")
    check_group: Callable[[Mapping[str, Any]], Any] | None = getattr(optimizer, "_check_group", None)
    check_state: Callable[[set[Any], Mapping[str, Any], torch.Tensor], None] | None = getattr(
        optimizer, "_check_param_state", None)
    required = getattr(optimizer, "_REQUIRED_GROUP_KEYS", None)
    if required is None:
        required = list(optimizer.defaults)
    saved_state = state_dict["state"]
    for i, (saved, group) in enumerate(zip(saved_groups, optimizer.param_groups, strict=True)):
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(f"load_state_dict: parameter group {i} of the state dict has {len(saved['params'])} "
                             f"parameters, {name}'s has {len(group['params'])}")
        missing = [k for k in required if k not in saved]
        if missing:
            raise ValueError(f"load_state_dict: parameter group {i} of the state dict lacks {name}'s "
                             f"hyperparameter(s) {', '.join(map(repr, missing))}: was it saved by another "
                             "optimizer?")
        if check_group is not None:
            try:
                check_group({**saved, "params": group["params"]})
            except ValueError as exc:
                raise _group_error(i, exc) from None
        if check_state is None:
            continue
        for pid, p in zip(saved["params"], group["params"], strict=True):
            st = saved_state.get(pid)
            if not st:
                continue
            try:
                check_state(set(st), saved, p)
            except ValueError as exc:
                raise ValueError(f"load_state_dict: the saved state of parameter {pid}: {exc}") from None


def load_state_dict(optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any]) -> None:
    """Validate (:func:`validate_state_dict`), load with torch's loader, then give every per-parameter state
    entry the dtype ``optimizer._state_dtype(p, group, key)`` (``None``: the saved dtype)."""
    validate_state_dict(optimizer, state_dict)
    state_dtype: Callable[[torch.Tensor, Mapping[str, Any], str], torch.dtype | None] | None = getattr(
        optimizer, "_state_dtype", None)
    saved_groups = state_dict["param_groups"]
    saved_state = state_dict["state"]
    torch.optim.Optimizer.load_state_dict(optimizer, dict(state_dict))
    for saved, group in zip(saved_groups, optimizer.param_groups, strict=True):
        for pid, p in zip(saved["params"], group["params"], strict=True):
            st = saved_state.get(pid)
            if not st:
                continue
            loaded = optimizer.state[p]
            for key, value in st.items():
                dtype = state_dtype(p, group, key) if state_dtype is not None else None
                if dtype is None and not isinstance(value, torch.Tensor):
                    continue  # torch's value (its __setstate__ may have converted it)
                loaded[key] = convert_state_value(value, p, dtype)
