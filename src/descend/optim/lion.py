"""Lion: EvoLved Sign Momentum.

Paper: Xiangning Chen, Chen Liang, Da Huang, Esteban Real, Kaiyuan Wang, Yao Liu, Hieu Pham, Xuanyi Dong,
Thang Luong, Cho-Jui Hsieh, Yifeng Lu, Quoc V. Le (2023), "Symbolic Discovery of Optimization Algorithms",
NeurIPS 2023, arXiv:2302.06675.

Algorithm (paper, Algorithm 2 "Lion"; per parameter tensor, elementwise, ``g`` the gradient, ``m`` the
momentum initialised to zero)::

    W <- W * (1 - lr * wd)                       # decoupled weight decay, before the update
    c <- beta1 * m + (1 - beta1) * g             # update direction: interpolation with beta1
    W <- W - lr * sign(c)                        # sign(0) = 0
    m <- beta2 * m + (1 - beta2) * g             # momentum: EMA with beta2

With ``decoupled_weight_decay=True`` (lion-pytorch's option of that name) the decay is
``W <- W * (1 - lr * wd / lr_init)``, with ``lr_init`` the group's learning rate when it was added to the
optimizer: the decay then follows the learning-rate *schedule* but not its scale (``wd`` is a per-step decay
rate at the peak learning rate, as in "fully decoupled" weight decay).

Defaults (the paper's and the reference's): ``lr=1e-4, betas=(0.9, 0.99), weight_decay=0``.  The paper
recommends a learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's.

Reference: ``lion-pytorch==0.2.5`` (``lion_pytorch.Lion``; identical to google/automl ``lion_pytorch.py``
for ``decoupled_weight_decay=False``).  Checked against its recorded trajectories (``lion__*.json``) with
rtol 1e-10, atol 1e-12 in float64, and live against the package on random problems.

Fast path: ``fused=True`` runs :func:`lion_update` -- the same function as the eager path -- compiled by
``torch.compile`` into one loop per tensor (see :mod:`descend.optim._fused`).  Default ``fused=None``:
compiled where ``torch.compile`` works, eager (one warning) where it does not.

bfloat16/float16 parameters: momentum kept in float32, update computed in float32 and rounded once into
the parameter (:mod:`descend.optim._mixed_precision`).

Deviations from the reference:

* ``lr_init`` for ``decoupled_weight_decay`` is per parameter group (the reference uses the constructor's
  ``lr`` for every group); it is stored in the group as ``"lr_init"`` so that it survives ``state_dict``.
  ``decoupled_weight_decay=True`` therefore needs ``lr > 0`` when the group is added.
* Invalid values raise ``ValueError`` (the reference asserts, and accepts a negative ``weight_decay``).
  ``lr = 0`` is accepted (a frozen group); the reference asserts ``lr > 0``.
* ``use_triton`` (a CUDA kernel flag of the reference) does not exist; ``fused=True`` plays its role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused, copy_back
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_float
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["Lion", "lion_update"]


def lion_update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, *, lr: float, beta1: float, beta2: float,
                decay: float) -> None:
    """One Lion step on one tensor, in place: the math of both the eager and the compiled path."""
    p.mul_(decay)
    direction = (m * beta1).add_(g * (1.0 - beta1)).sign_()
    p.sub_(direction * lr)
    m.mul_(beta2).add_(g * (1.0 - beta2))


class Lion(DescendOptimizer):
    """Lion (Chen et al. 2023): sign of an interpolated momentum, decoupled weight decay.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)`` in ``[0, 1]``: interpolation for the update, EMA of the momentum.
        weight_decay: decoupled weight decay, ``>= 0`` (``W *= 1 - lr * weight_decay``).
        decoupled_weight_decay: divide the decay by the group's initial learning rate (lion-pytorch's option).
        fused: ``None`` (default) compiled where ``torch.compile`` works, ``True`` always, ``False`` eager.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        decoupled_weight_decay: bool = False,
        fused: bool | None = None,
    ) -> None:
        self._fused = check_fused(fused)
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay,
                    "decoupled_weight_decay": decoupled_weight_decay}
        _check_group(defaults)
        super().__init__(params, defaults)

    _STATE_KEYS = ("exp_avg",)
    _CONFIG_ATTRS = ("_fused",)

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any] | None:
        _check_group(group)
        if not group["decoupled_weight_decay"]:
            return None
        lr_init = group.get("lr_init", group["lr"])
        check_float("lr (initial, with decoupled_weight_decay=True)", lr_init, 0.0, low_open=True)
        return {"lr_init": float(lr_init)}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "Lion")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            lr = float(group["lr"])
            beta1, beta2 = group["betas"]
            wd = float(group["weight_decay"])
            if group["decoupled_weight_decay"]:
                wd = wd / group["lr_init"]
            decay = 1.0 - lr * wd
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                dtype = state_dtype(p)
                if len(state) == 0:
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                w = p if p.dtype == dtype else p.to(dtype)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                batch.add(lion_update, (w, g, state["exp_avg"]),
                          {"lr": lr, "beta1": float(beta1), "beta2": float(beta2), "decay": decay},
                          None if w is p else copy_back(p, w))
        batch.run()
        return loss


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"], allow_one=True)
    check_float("weight_decay", group["weight_decay"], 0.0)
    if not isinstance(group["decoupled_weight_decay"], bool):
        raise ValueError(f"decoupled_weight_decay must be a bool, got {group['decoupled_weight_decay']!r}")


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> Lion:
    hp = dict(fx["hyperparameters"])
    hp.pop("use_triton", None)  # kernel choice of the reference, no numerical effect
    hp["betas"] = tuple(hp["betas"])
    return Lion([params[n] for n in fx["param_order"]], **hp)


register(OptimizerSpec(
    name="lion",
    factory=Lion,
    paper="Chen, Liang, Huang, Real, Wang, Liu, Pham, Dong, Luong, Hsieh, Lu, Le 2023, "
          "Symbolic Discovery of Optimization Algorithms (NeurIPS), arXiv:2302.06675",
    reference="lion-pytorch==0.2.5",
    search_space={
        # Wen et al. 2025 tune Lion to lr 2e-3 (7 % of the log range below the old top, 3e-3), betas (0.9, 0.95),
        # wd 0.7; on the ICL task lr 1e-2 matches AdamW: the range covers [1e-4, 3e-2]
        "lr": FloatRange(3e-5, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.99), (0.95, 0.98), (0.9, 0.95))),
        "weight_decay": FloatRange(1e-3, 3.0, log=True),
    },
    summary="sign of an interpolated momentum (one state tensor), decoupled weight decay",
    elementwise=True,
    fixture_names=("lion",),
    from_fixture=_from_fixture,
))
