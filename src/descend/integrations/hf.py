"""Hugging Face Trainer: Sophia-G's Hessian loop as a ``TrainerCallback``.

    trainer = transformers.Trainer(model, args, train_dataset=ds, optimizers=(SophiaG(model.parameters()), None),
                                   callbacks=[SophiaHessianTrainerCallback(ds_batches, every=10)])

The Trainer gives callbacks the model and the optimizer but not the batch, so the callback draws its own
batches from ``batches`` (an iterable of model-input dicts, cycled), runs the model, samples labels from the
logits and calls ``update_hessian`` (Gauss–Newton–Bartlett, Liu et al. 2023, Algorithm 2) every ``every``
optimizer steps.  For a causal LM the logits are ``outputs.logits`` of shape ``(batch, tokens, vocab)``;
``attention_mask`` (when the batch has one) excludes padding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .._validate import check_int
from ..optim.sophia import gnb_hessian_update
from . import sophia_optimizers

__all__ = ["SophiaHessianTrainerCallback"]


def _callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class SophiaHessianTrainerCallback(_callback_base()):  # type: ignore[misc]
    """Call Sophia-G's Hessian update every ``every`` optimizer steps of a ``transformers.Trainer``.

    Args:
        batches: model inputs (dicts of tensors, as the model's ``forward`` takes them), cycled.
        every: optimizer steps between Hessian updates (the paper's k; default 10).
        seed: seed of the label sampling (``None``: torch's global generator).
    """

    def __init__(self, batches: Iterable[Mapping[str, torch.Tensor]], every: int = 10, seed: int | None = None) -> None:
        check_int("every", every, 1)
        super().__init__()
        self.batches = itertools.cycle(batches)
        self.every = every
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.updates = 0

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                    **kwargs: Any) -> None:
        if model is None or optimizer is None or state.global_step % self.every != 0:
            return
        opts = sophia_optimizers(optimizer)
        if not opts:
            return
        batch = {k: v.to(next(model.parameters()).device) for k, v in next(self.batches).items()
                 if k != "labels"}
        was_training = model.training
        model.train()
        for opt in opts:
            logits = model(**batch).logits
            mask = batch.get("attention_mask")
            gnb_hessian_update(opt, logits, mask=None if mask is None else mask.bool(), generator=self.generator)
        model.train(was_training)
        self.updates += 1
