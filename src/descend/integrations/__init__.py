"""Framework integrations: callbacks for what PyTorch Lightning and the Hugging Face Trainer have no place for.

* :mod:`descend.integrations.lightning` — :class:`~descend.integrations.lightning.SophiaHessianCallback`.
* :mod:`descend.integrations.hf` — :class:`~descend.integrations.hf.SophiaHessianTrainerCallback`.

Each module imports its framework lazily (install ``lightning`` / ``transformers`` yourself); the rest of
descend never needs them.  Line searches (SLS, SaLSa, Adam+Armijo) need no integration: Lightning calls
``optimizer.step(closure)`` with a closure that runs forward and backward, which descend's line searches accept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..optim.sophia import SophiaG, gnb_hessian_update

__all__ = ["sophia_optimizers", "sophia_step"]


def sophia_optimizers(optimizers: Any) -> list[SophiaG]:
    """The :class:`SophiaG` instances among ``optimizers`` (unwrapping Lightning's / Accelerate's wrappers)."""
    found = []
    for opt in optimizers if isinstance(optimizers, (list, tuple)) else [optimizers]:
        inner = opt
        for _ in range(3):  # LightningOptimizer._optimizer, AcceleratedOptimizer.optimizer
            if isinstance(inner, SophiaG):
                break
            inner = getattr(inner, "_optimizer", None) or getattr(inner, "optimizer", None)
        if isinstance(inner, SophiaG):
            found.append(inner)
    return found


def sophia_step(optimizers: list[SophiaG], logits_fn: Callable[[], torch.Tensor],
                generator: torch.Generator | None = None) -> None:
    """One Gauss–Newton–Bartlett Hessian update of each optimizer from ``logits_fn()`` (a fresh forward pass)."""
    for opt in optimizers:
        gnb_hessian_update(opt, logits_fn(), generator=generator)
