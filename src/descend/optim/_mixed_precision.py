"""Low-precision parameters (bfloat16, float16) in elementwise optimizers.

Policy: the optimizer state of a bfloat16/float16 parameter is kept in float32 (an EMA with ``beta2 = 0.999``
cannot move in bfloat16: ``0.999 * s`` rounds back to ``s``), the update is computed in float32 on a float32
copy of the parameter and of its gradient, and the result is rounded once into the parameter.  float32 and
float64 parameters keep their state in their own dtype and are updated in place.

``torch.optim.Optimizer.load_state_dict`` would round that float32 state to the parameter's dtype;
descend's loader (:func:`descend.optim._state.load_state_dict`, through
:meth:`descend.optim._base.DescendOptimizer._state_dtype`) gives it back :func:`state_dtype`, so that a
resumed run stays bitwise identical to an uninterrupted one.
"""

from __future__ import annotations

import torch

__all__ = ["LOW_PRECISION", "state_dtype"]

LOW_PRECISION = (torch.bfloat16, torch.float16)


def state_dtype(p: torch.Tensor) -> torch.dtype:
    """The dtype of the optimizer state (and of the update arithmetic) for parameter ``p``."""
    return torch.float32 if p.dtype in LOW_PRECISION else p.dtype
