"""Search directions of the line searches: the gradient (SLS) and Adam's preconditioner (Adam+Armijo, SaLSa).

The Adam moments are computed out of place and written to the step's pending state, so a step that does not
complete leaves them untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .engine import StepContext, state_dtype

__all__ = ["AdamPreconditioner", "sq_norm"]

_LOW = (torch.bfloat16, torch.float16)


def sq_norm(tensors: Sequence[torch.Tensor]) -> float:
    """``sum_i sum(t_i * t_i)`` accumulated as in the references (float64 for float64 inputs)."""
    acc: torch.Tensor | None = None
    for t in tensors:
        t = t.float() if t.dtype in _LOW else t
        s = torch.sum(torch.mul(t, t))
        acc = s if acc is None else acc + s
    return 0.0 if acc is None else float(acc)


def _sum(terms: list[torch.Tensor]) -> float:
    if not terms:
        return 0.0
    acc = terms[0]
    for x in terms[1:]:
        acc = acc + x
    return float(acc)


class AdamPreconditioner:
    r"""Adam's moments and diagonal preconditioner for some parameters at one step.

    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
    :math:`P = 1/(\sqrt{v/(1-\beta_2^k)} + \epsilon)`, :math:`\hat m = m/(1-\beta_1^k)` with the
    bias-correction exponent ``k`` the algorithm chooses.  Moments are kept in float32 for
    bfloat16/float16 parameters (``exp_avg``, ``exp_avg_sq`` in the state).
    """

    def __init__(self, ctx: StepContext, params: Sequence[torch.Tensor], beta1: float, beta2: float,
                 eps: float, k: int) -> None:
        bc1, bc2 = 1 - beta1 ** k, 1 - beta2 ** k
        self.grads: list[torch.Tensor] = []
        self.precond: list[torch.Tensor] = []
        self._m: list[torch.Tensor] = []
        self._bc1 = bc1
        for p in params:
            m, v = ctx.get(p, "exp_avg"), ctx.get(p, "exp_avg_sq")
            if m is None:
                m = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
                v = torch.zeros_like(p, dtype=state_dtype(p), memory_format=torch.preserve_format)
            g = ctx.grads[p].to(m.dtype)
            v = torch.mul(v, beta2).add_(torch.mul(g, g).mul_(1 - beta2))
            m = torch.mul(m, beta1).add_(torch.mul(g, 1 - beta1))
            ctx.put(p, "exp_avg", m)
            ctx.put(p, "exp_avg_sq", v)
            self.grads.append(g)
            self._m.append(m)
            self.precond.append(1.0 / (torch.sqrt(v / bc2) + eps))

    def gradient(self) -> list[torch.Tensor]:
        """The preconditioned gradient :math:`P g`."""
        return [pv * g for pv, g in zip(self.precond, self.grads, strict=True)]

    def momentum(self) -> list[torch.Tensor]:
        r"""The preconditioned momentum :math:`P \hat m` (Adam's update direction)."""
        return [pv * (m / self._bc1) for pv, m in zip(self.precond, self._m, strict=True)]

    def gradient_norm(self) -> float:
        r""":math:`\langle g, P g\rangle`, the slope of the line along :math:`-P g`."""
        return _sum([(torch.mul(g, g) * pv).sum() for g, pv in zip(self.grads, self.precond, strict=True)])

    def slope(self, dirs: Sequence[torch.Tensor]) -> float:
        r""":math:`\langle g, d\rangle`, the slope of the line along :math:`-d`."""
        return _sum([torch.inner(g.flatten(), d.flatten()) for g, d in zip(self.grads, dirs, strict=True)])
