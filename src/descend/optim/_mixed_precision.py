"""Low-precision parameters (bfloat16, float16) in elementwise optimizers.

Policy: the optimizer state of a bfloat16/float16 parameter is kept in float32 (an EMA with ``beta2 = 0.999``
cannot move in bfloat16: ``0.999 * s`` rounds back to ``s``), the update is computed in float32 on a float32
copy of the parameter and of its gradient, and the result is rounded once into the parameter.  float32 and
float64 parameters keep their state in their own dtype and are updated in place.

``torch.optim.Optimizer.load_state_dict`` would round that float32 state to the parameter's dtype; load
through :func:`descend.optim._state.load_state_dict_keeping_dtypes` (or call :func:`restore_state_dtypes`
after torch's ``load_state_dict``) so that a resumed run stays bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain
from typing import Any

import torch

__all__ = ["LOW_PRECISION", "restore_state_dtypes", "state_dtype"]

LOW_PRECISION = (torch.bfloat16, torch.float16)


def state_dtype(p: torch.Tensor) -> torch.dtype:
    """The dtype of the optimizer state (and of the update arithmetic) for parameter ``p``."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype


def restore_state_dtypes(optimizer: torch.optim.Optimizer, state_dict: Mapping[str, Any]) -> None:
    """After torch's ``load_state_dict``: give low-precision parameters back their float32 state."""
    saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    params = chain.from_iterable(g["params"] for g in optimizer.param_groups)
    for pid, p in zip(saved_ids, params, strict=True):
        if p.dtype not in LOW_PRECISION or pid not in state_dict["state"]:
            continue
        for key, value in state_dict["state"][pid].items():
            if key != "step" and isinstance(value, torch.Tensor) and value.dtype == torch.float32:
                optimizer.state[p][key] = value.detach().to(device=p.device, copy=True)
