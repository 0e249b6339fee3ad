"""PyTorch Lightning: Sophia-G's Hessian loop as a callback.

    trainer = lightning.Trainer(callbacks=[SophiaHessianCallback(every=10)])

Every ``every`` optimizer steps the callback runs one forward pass of the module on the current batch
(``logits_fn(module, batch)``; default ``module(batch[0])``), samples labels from the model and calls
``update_hessian`` (Gauss–Newton–Bartlett, Liu et al. 2023, Algorithm 2) on each :class:`~descend.optim.SophiaG`
among the trainer's optimizers.  Without it Sophia-G is sign-momentum (it warns after 100 steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._validate import check_int
from . import sophia_optimizers, sophia_step

__all__ = ["SophiaHessianCallback"]


def _default_logits(module: Any, batch: Any) -> torch.Tensor:
    inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
    return module(inputs)


def _callback_base() -> type:
    from lightning.pytorch.callbacks import Callback

    return Callback


class SophiaHessianCallback(_callback_base()):  # type: ignore[misc]
    """Call Sophia-G's Hessian update every ``every`` steps (see the module docstring).

    Args:
        every: optimizer steps between Hessian updates (the paper's k; default 10).
        logits_fn: ``logits_fn(module, batch) -> logits`` of shape ``(..., classes)``.
        seed: seed of the label sampling (``None``: torch's global generator).
    """

    def __init__(self, every: int = 10, logits_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                 seed: int | None = None) -> None:
        check_int("every", every, 1)
        super().__init__()
        self.every = every
        self.logits_fn = logits_fn or _default_logits
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.updates = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step % self.every != 0:
            return
        opts = sophia_optimizers(trainer.optimizers)
        if opts:
            sophia_step(opts, lambda: self.logits_fn(pl_module, batch), self.generator)
            self.updates += 1
