r"""Distributed adversarial training (DAT): per-worker adversarial examples, optional unbiased b-bit gradient
quantization before the all-reduce, LAMB update.

Paper: G. Zhang, S. Lu, Y. Zhang, X. Chen, P.-Y. Chen, Q. Fan, L. Martie, L. Horesh, M. Hong, S. Liu (2022),
"Distributed Adversarial Training to Robustify Deep Neural Networks at Scale", UAI 2022, arXiv:2206.06257.
Reference code read (not copied): the ``Capsar/dat`` fork (``trainer/dat/main.py``, ``lamb.py``,
``quantization.py``, ``attack.py``).  Quantizer: D. Alistarh et al. (2017), "QSGD", NeurIPS, Lemma 3.1.

Per step, worker k of M (Algorithm 1 of the paper, as the code runs it)::

    x̃ = attack(θ, x_k, y_k)    PGD: δ ~ U[−ε, ε], δ ← Π_ε(δ + α·sign ∇_δ ℓ), K steps, clamp to [lo, hi]
                                 fast FGSM: one step of α = 1.25 ε from the uniform start
    g_k = ∇_θ ℓ(θ; x̃, y_k)
    [quantize per tensor] s = 2^b − 1:  ξ = ⌊s|g|/‖g‖⌋ + Bernoulli(s|g|/‖g‖ − ⌊s|g|/‖g‖⌋),
                          ĝ = ‖g‖ · sign(g) · ξ / s          (E ĝ = g;  E‖ĝ − g‖² ≤ min(d/s², √d/s)‖g‖²)
    g = (1/M) Σ_k ĝ_k        (all-reduce)
    LAMB per tensor (no bias correction, as the reference's lamb.py):
        m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  a = m/(√v + ε) + λ w
        r = min(‖w‖, 10)/‖a‖  (1 if ‖w‖ = 0 or ‖a‖ = 0);   w ← w − η r a

Defaults (the reference's): lr 0.01, weight decay 1e-4, betas (0.9, 0.999), ε_LAMB 1e-6, b = 7 bits, PGD
ε = 8/255, α = 2/255, 10 steps (CIFAR scale; the digits test uses ε = 0.1 on [0, 1] pixels).
Checked: quantizer mean/variance by sampling, the trust ratio against its definition, and on scikit-learn
digits DAT on 2 gloo ranks against single-process adversarial training at the same total batch
(``tests/distributed/test_dat.py``).  Deviations: the reference sends (ξ, sign, ‖g‖) and dequantizes after
the gather; here each worker dequantizes before a float all-reduce — the same sum, more bytes (the bytes
saved are not what is measured here).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .._validate import check_betas, check_float, check_int
from ._comm import rank_and_world

__all__ = ["LAMB", "dat_step", "fgsm_fast", "pgd", "qsgd", "qsgd_variance_bound"]


def qsgd(g: torch.Tensor, bits: int, generator: torch.Generator | None = None, dim: int | None = None
         ) -> torch.Tensor:
    """Unbiased stochastic quantization of ``g`` to ``s = 2^bits − 1`` levels of ``|g|/‖g‖`` (dequantized).

    The norm is over the whole tensor, or along ``dim`` (each slice quantized independently: a batch of draws).
    """
    check_int("bits", bits, 1, 16)
    norm = g.norm() if dim is None else g.norm(dim=dim, keepdim=True)
    s = 2**bits - 1
    level = torch.where(norm > 0, g.abs() / torch.where(norm > 0, norm, 1.0) * s, 0.0)
    low = level.floor()
    u = torch.rand(g.shape, generator=generator, dtype=g.dtype, device=g.device)
    xi = low + (u < (level - low)).to(g.dtype)
    return norm * g.sign() * xi / s


def qsgd_variance_bound(d: int, bits: int) -> float:
    """QSGD Lemma 3.1: ``E‖ĝ − g‖² ≤ min(d/s², √d/s) ‖g‖²`` — returns the factor."""
    s = 2**bits - 1
    return min(d / s**2, d**0.5 / s)


class LAMB(torch.optim.Optimizer):
    """LAMB as in DAT's reference (no bias correction; trust ratio ``min(‖w‖, 10)/‖a‖`` per tensor).

    The last trust ratio of each parameter is kept in ``state["trust_ratio"]`` (a float64 scalar)."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 1e-4, clamp: float = 10.0) -> None:
        check_float("lr", lr, 0.0)
        check_betas("betas", betas)
        check_float("eps", eps, 0.0)
        check_float("weight_decay", weight_decay, 0.0)
        check_float("clamp", clamp, 0.0, low_open=True)
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                                  "clamp": clamp})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                    st["trust_ratio"] = torch.tensor(1.0, dtype=torch.float64)
                m, v = st["exp_avg"], st["exp_avg_sq"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                a = m / (v.sqrt() + group["eps"])
                if group["weight_decay"] != 0:
                    a.add_(p, alpha=group["weight_decay"])
                w_norm = float(p.norm().clamp(max=group["clamp"]))
                a_norm = float(a.norm())
                trust = 1.0 if w_norm == 0.0 or a_norm == 0.0 else w_norm / a_norm
                st["trust_ratio"].fill_(trust)
                p.add_(a, alpha=-group["lr"] * trust)
        return loss


def _loss_grad_x(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xx), y)
        (gx,) = torch.autograd.grad(loss, xx)
    return gx


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
        generator: torch.Generator | None = None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """ℓ∞ PGD from a uniform start in the ε-ball (sign steps of ``alpha``, projected, clamped to [lo, hi])."""
    delta = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * eps
    xa = (x + delta).clamp(lo, hi)
    for _ in range(steps):
        xa = xa + alpha * _loss_grad_x(model, xa, y).sign()
        xa = torch.min(torch.max(xa, x - eps), x + eps).clamp(lo, hi)
    return xa.detach()


def fgsm_fast(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
              generator: torch.Generator | None = None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """"Fast" FGSM (Wong et al. 2020, as DAT's code): uniform start, one step of 1.25 ε, projected."""
    return pgd(model, x, y, eps, 1.25 * eps, 1, generator, lo, hi)


def dat_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
             attack: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor], bits: int | None = None,
             generator: torch.Generator | None = None, group: Any = None, distributed: bool = True) -> float:
    """One DAT step on this worker's batch ``(x, y)``: attack, gradient, [quantize], all-reduce mean, step.
    Without an initialised process group (or with ``distributed=False``) it is single-process adversarial
    training.  Returns the local loss."""
    model.eval()  # attacks on the current weights (no BN/dropout in the test models; eval keeps it general)
    xa = attack(model, x, y)
    model.train()
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(xa), y)
    loss.backward()
    world = rank_and_world(group)[1] if distributed else 1
    for p in model.parameters():
        if p.grad is None:
            continue
        if bits is not None:
            p.grad.copy_(qsgd(p.grad, bits, generator))
        if world > 1:
            dist.all_reduce(p.grad, group=group)
            p.grad.div_(world)
    opt.step()
    return float(loss.detach())
