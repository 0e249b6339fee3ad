"""Sophia-G: second-order clipped stochastic optimization with a Gauss-Newton-Bartlett Hessian estimate.

Paper: Hong Liu, Zhiyuan Li, David Hall, Percy Liang, Tengyu Ma (2023), "Sophia: A Scalable Stochastic
Second-order Optimizer for Language Model Pre-training", ICLR 2024, arXiv:2305.14342.

Algorithm (paper, Algorithm 3 "Sophia" with the Gauss-Newton-Bartlett estimator of Algorithm 2, in the
parameterisation of the authors' code; per parameter tensor, elementwise)::

    every step:        W <- W * (1 - lr * wd)
                       m <- beta1 m + (1 - beta1) g
                       W <- W - lr * sign(m) * min(|m| / (rho * bs * h + 1e-15), 1)
    every k steps      sample y_hat ~ softmax(logits) for a mini-batch, g_hat = grad of the mean loss at
    (update_hessian):  y_hat, then  h <- beta2 h + (1 - beta2) g_hat * g_hat

``h`` starts at zero and there is no bias correction, so until the first Hessian update every coordinate
takes the clipped step ``lr * sign(m)`` (signSGD with momentum).  The paper's batch-size factor ``B`` of the
estimator is folded into ``bs`` (the number of tokens per batch; 480 x 1024 in the GPT-2 runs) and the
code's ``lr`` is the paper's ``rho * eta``.  The README advises tuning ``rho`` so that the fraction of
un-clipped coordinates (:meth:`SophiaG.unclipped_fraction`) stays in 0.1-0.5.

Defaults (the authors'): ``lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=0.1``, ``bs=5120``.

Reference: ``sophia-opt==0.2.2`` (``SophiaG``; the same code as Liuhong99/Sophia ``sophia.py``).  Checked
against its recorded trajectories (``sophia_g__*.json``: parameters and ``unclipped_fraction``) with rtol
1e-10, atol 1e-12 in float64, and live against the package.

Usage::

    opt = SophiaG(model.parameters(), lr=6e-4, rho=0.05, weight_decay=0.2, bs=480 * 1024)
    for it, batch in enumerate(loader):
        loss_fn(model(batch)).backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if it % 10 == 9:
            gnb_hessian_update(opt, model(batch.inputs))   # sample labels, backward, update_hessian

Fast path: ``fused=True`` runs :func:`sophia_update` and :func:`sophia_hessian_ema` -- the same functions
as the eager path -- compiled by ``torch.compile`` into one loop per tensor (:mod:`descend.optim._fused`).
Default ``fused=None``: compiled where ``torch.compile`` works, eager (one warning) where it does not.

bfloat16/float16 parameters: state in float32, update in float32, rounded once into the parameter.

Deviations from the reference:

* ``bs`` is also a (per-group) constructor argument; ``step(bs=...)`` overrides it for one step, as in the
  reference.  :meth:`SophiaG.unclipped_fraction` uses the group's ``bs``.
* The step counter is a float64 tensor; ``capturable`` (CUDA graphs) is not offered.
* Invalid values raise ``ValueError`` (also ``bs <= 0``, which the reference does not check).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused, copy_back
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_float, check_no_sparse_or_complex
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["SophiaG", "gnb_hessian_update", "sophia_hessian_ema", "sophia_update"]

_DENOM_EPS = 1e-15  # the reference's constant in the clipping denominator
#: steps without a Hessian update after which SophiaG warns (10x the paper's k = 10): it is sign-momentum then
HESSIAN_OVERDUE = 100


def sophia_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, h: torch.Tensor, *, lr: float,
                  beta1: float, decay: float, rho_bs: float, maximize: bool) -> None:
    """One Sophia step on one tensor, in place: the math of both the eager and the compiled path."""
    p.mul_(decay)
    if maximize:
        g = -g
    m.mul_(beta1).add_(g * (1.0 - beta1))
    ratio = (m.abs() / (h * rho_bs + _DENOM_EPS)).clamp_(max=1.0)
    p.sub_(m.sign() * ratio * lr)


def sophia_hessian_ema(h: torch.Tensor, g: torch.Tensor, *, beta2: float) -> None:
    """``h <- beta2 h + (1 - beta2) g * g`` in place (``g``: gradient of the loss at sampled labels)."""
    h.mul_(beta2).add_(g * g * (1.0 - beta2))


class SophiaG(DescendOptimizer):
    """Sophia with the Gauss-Newton-Bartlett Hessian estimator (Liu et al. 2023).

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0`` (the paper's ``rho * eta``).
        betas: ``(beta1, beta2)`` in ``[0, 1)``: EMA of the gradient, EMA of the Hessian estimate.
        rho: clipping scale, ``>= 0``.
        weight_decay: decoupled, ``W *= 1 - lr * weight_decay``; ``>= 0``.
        bs: tokens (examples) per batch, ``> 0``; multiplies ``rho * h``.
        maximize: maximize the objective.
        fused: ``None`` (default) compiled where ``torch.compile`` works, ``True`` always, ``False`` eager.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 1e-1,
        *,
        bs: float = 5120,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        self._fused = check_fused(fused)
        defaults = {"lr": lr, "betas": betas, "rho": rho, "weight_decay": weight_decay, "bs": bs,
                    "maximize": maximize}
        _check_group(defaults)
        super().__init__(params, defaults)
        self._since_hessian = 0  # steps since the last update_hessian() in this process (see step())

    _STATE_KEYS = ("step", "exp_avg", "hessian")
    _CONFIG_ATTRS = ("_fused",)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _check_group(group)

    def _state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if len(state) == 0:
            dtype = state_dtype(p)
            state["step"] = torch.tensor(0.0, dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None, bs: float | None = None) -> Any:
        """One optimization step.  ``bs`` (optional) overrides the groups' ``bs`` for this step only."""
        if bs is not None:
            check_float("bs", bs, 0.0, low_open=True)
        loss = begin_step(self, closure, "SophiaG")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1 = float(group["betas"][0])
            rho_bs = float(group["rho"]) * float(group["bs"] if bs is None else bs)
            scalars = {"lr": lr, "beta1": beta1, "decay": 1.0 - lr * float(group["weight_decay"]),
                       "rho_bs": rho_bs, "maximize": bool(group["maximize"])}
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._state(p)
                state["step"] += 1
                dtype = state["exp_avg"].dtype
                w = p if p.dtype == dtype else p.to(dtype)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                batch.add(sophia_update, (w, g, state["exp_avg"], state["hessian"]), scalars,
                          None if w is p else copy_back(p, w))
        batch.run()
        self._since_hessian = getattr(self, "_since_hessian", 0) + 1
        if self._since_hessian == HESSIAN_OVERDUE:
            warnings.warn(f"SophiaG: {HESSIAN_OVERDUE} steps without update_hessian(); until it is called, every "
                          "coordinate takes the clipped step lr*sign(m) (sign-momentum, not Sophia). Call "
                          "gnb_hessian_update(opt, logits) every k=10 steps (Lightning / HF Trainer: "
                          "descend.integrations).", RuntimeWarning, stacklevel=2)
        return loss

    @torch.no_grad()
    def update_hessian(self) -> None:
        """``h <- beta2 h + (1 - beta2) g * g`` from the parameters' current ``.grad``.

        Call it after back-propagating the loss at labels sampled from the model (Gauss-Newton-Bartlett,
        see :func:`gnb_hessian_update`); parameters without a gradient are skipped.
        """
        for group in self.param_groups:
            check_no_sparse_or_complex("SophiaG", group["params"])
        batch = ElementwiseBatch(self._fused)
        for group in self.param_groups:
            beta2 = float(group["betas"][1])
            for p in group["params"]:
                if p.grad is None:
                    continue
                h = self._state(p)["hessian"]
                g = p.grad if p.grad.dtype == h.dtype else p.grad.to(h.dtype)
                batch.add(sophia_hessian_ema, (h, g), {"beta2": beta2})
        batch.run()
        self._since_hessian = 0

    @torch.no_grad()
    def unclipped_fraction(self) -> float:
        """Fraction of coordinates whose step is not clipped: ``|m| / (rho * bs * h + 1e-15) < 1``.

        The authors' "win rate"; their README suggests tuning ``rho`` so that it stays in 0.1-0.5.
        Uses each group's ``bs``.  ``nan`` before the first step.
        """
        unclipped, total = 0, 0
        for group in self.param_groups:
            rho_bs = float(group["rho"]) * float(group["bs"])
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                ratio = state["exp_avg"].abs() / (state["hessian"] * rho_bs + _DENOM_EPS)
                unclipped += int((ratio < 1).sum())
                total += ratio.numel()
        return unclipped / total if total else float("nan")


def gnb_hessian_update(optimizer: SophiaG, logits: torch.Tensor, *, mask: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> None:
    """Gauss-Newton-Bartlett Hessian estimate for a classifier (paper, Algorithm 2), then ``update_hessian``.

    Samples labels ``y_hat ~ softmax(logits)`` (one per row of ``logits.reshape(-1, C)``), back-propagates the
    mean cross-entropy at ``y_hat`` and calls ``optimizer.update_hessian()``.  ``logits`` must come from a
    forward pass of the model with autograd enabled.  The optimizer's gradients are zeroed (set to ``None``)
    before and after, so call it between steps, not between ``backward()`` and ``step()``.

    Args:
        optimizer: the :class:`SophiaG` optimizer of the model.
        logits: ``(..., C)`` class scores.
        mask: optional boolean tensor of shape ``logits.shape[:-1]``; ``False`` rows (padding) are excluded.
        generator: random generator for the label sampling.
    """
    optimizer.zero_grad(set_to_none=True)
    flat = logits.reshape(-1, logits.shape[-1])
    with torch.no_grad():
        probs = torch.softmax(flat.detach().float(), dim=-1)
        labels = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    if mask is not None:
        keep = mask.reshape(-1).to(torch.bool)
        flat, labels = flat[keep], labels[keep]
    with torch.enable_grad():
        F.cross_entropy(flat, labels, reduction="mean").backward()
    optimizer.update_hessian()
    optimizer.zero_grad(set_to_none=True)


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"])
    check_float("rho", group["rho"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_float("bs", group["bs"], 0.0, low_open=True)
    if not isinstance(group["maximize"], bool):
        raise ValueError(f"maximize must be a bool, got {group['maximize']!r}")


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> SophiaG:
    hp = dict(fx["hyperparameters"])
    if hp.pop("capturable", False):
        raise ValueError("capturable=True (CUDA graphs) is not supported")
    hp["betas"] = tuple(hp["betas"])
    bs = (fx.get("replay") or {}).get("step_kwargs", {}).get("bs")
    if bs is not None:
        hp["bs"] = bs
    return SophiaG([params[n] for n in fx["param_order"]], **hp)


def _observables(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    assert isinstance(optimizer, SophiaG)
    return {"unclipped_fraction": optimizer.unclipped_fraction()}


register(OptimizerSpec(
    name="sophia_g",
    factory=SophiaG,
    paper="Liu, Li, Hall, Liang, Ma 2023, Sophia: A Scalable Stochastic Second-order Optimizer for Language "
          "Model Pre-training (ICLR 2024), arXiv:2305.14342",
    reference="sophia-opt==0.2.2",
    search_space={
        # Wen et al. 2025 (Sophia-G, 130M): lr 4e-3 and wd 0 — both outside the old space ([1e-5, 3e-3], a log
        # range from 1e-3 that cannot hold 0); the per-coordinate step is clipped at lr in both implementations
        "lr": FloatRange(1e-5, 3e-2, log=True),
        "betas": Categorical(((0.965, 0.99), (0.9, 0.95), (0.95, 0.99))),
        "rho": FloatRange(0.01, 0.1, log=True),
        "weight_decay": Categorical((0.0, 0.01, 0.1, 0.3, 1.0)),
    },
    summary="clipped diagonal-Newton step with an EMA of Gauss-Newton-Bartlett Hessian estimates "
            "(needs update_hessian() every k steps)",
    elementwise=True,
    fixture_names=("sophia_g",),
    from_fixture=_from_fixture,
    observables=_observables,
))
