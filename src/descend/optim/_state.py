"""Loading optimizer state without torch's dtype casts.

``torch.optim.Optimizer.load_state_dict`` casts every state tensor except ``"step"`` to its parameter's
dtype when the parameter is floating point: integer ring positions, index lists, boolean masks and
generator states (uint8) become floats, and a float32 window kept for a bfloat16 parameter is rounded to
bfloat16.  Optimizers whose state has its own dtypes load through :func:`load_state_dict_keeping_dtypes`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["load_state_dict_keeping_dtypes"]


def load_state_dict_keeping_dtypes(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state_dict)`` (torch's), then every state tensor whose dtype torch
    changed is replaced by a copy of the saved tensor, in its saved dtype, on its parameter's device."""
    saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    by_id = dict(zip(saved_ids, params, strict=False))
    saved = {i: dict(st) for i, st in state_dict["state"].items()}
    torch.optim.Optimizer.load_state_dict(optimizer, state_dict)
    for i, st in saved.items():
        p = by_id[i]
        for key, value in st.items():
            loaded = optimizer.state[p].get(key)
            if isinstance(value, torch.Tensor) and isinstance(loaded, torch.Tensor) and loaded.dtype != value.dtype:
                optimizer.state[p][key] = value.detach().to(device=p.device, copy=True)
