"""The start of a ``step()`` and the dtype-keeping ``load_state_dict`` shared by descend's optimizers.

* :func:`begin_step` — evaluate the optional closure under ``torch.enable_grad()``, then reject sparse or
  complex parameters/gradients (:func:`~._validate.check_no_sparse_or_complex`) before any state changes.
* :class:`KeepsStateDtypes` — an optimizer base whose ``load_state_dict`` keeps every state tensor in the dtype
  it was saved with (:func:`~._state.load_state_dict_keeping_dtypes`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ._state import load_state_dict_keeping_dtypes
from ._validate import check_no_sparse_or_complex

__all__ = ["KeepsStateDtypes", "begin_step"]


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


class KeepsStateDtypes(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` whose ``load_state_dict`` keeps the saved dtype of every state tensor.

    torch casts floating state to the parameter's dtype on load (rounding, e.g., the float32 state of
    bfloat16 parameters, and turning integer/bool/uint8 state into floats); see :mod:`._state`.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        load_state_dict_keeping_dtypes(self, state_dict)
