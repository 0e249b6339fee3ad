r"""E6 — the Deep Linearly Gated Network: features are products of sigmoids of half-spaces, and they are learned.

Paper: Mahesh Lorik Yadav, Harish Guruprasad Ramaswamy, Chandrashekar Lakshminarayanan (2024), "Half-Space Feature
Learning in Neural Networks" (arXiv 2404.04312).

Architecture (from the abstract and the spec; the paper's equations were not retrievable here, so details such as
the value network's all-ones input are as recalled in ``/work/shared/specs/claims.md`` §7e). Input ``x̃ = (x, 1)``
(a constant coordinate so that half-spaces need not pass through the origin — without it no disk can be carved).
Gating network, deep linear: ``h^g_0 = x̃``, ``h^g_l = W^g_l h^g_{l−1}``; gates ``g_l = σ(β h^g_l)``. Value
network: ``h^v_0 = 1``, ``h^v_l = (W^v_l h^v_{l−1}) ⊙ g_l``; output ``ŷ = w_outᵀ h^v_L`` (a logit). Hence the
path-sum

    ŷ(x) = Σ_{i_0 … i_L} w_out[i_L] Π_l W^v_l[i_l, i_{l−1}] · Π_l σ(β ⟨(W^g_l ⋯ W^g_1)[i_l], x̃⟩):

every feature is a product of L sigmoids of half-spaces of the input ("an intersection of L half-spaces").

Predictions.
1. The forward pass equals the explicit path-sum (gates computed from the effective matrices ``W^g_l ⋯ W^g_1``).
2. On the 2-D circle task (``x ~ U[−1, 1]²``, label ``1[‖x‖ < radius]``), a DLGN (``depth`` × ``width``, β)
   trained with Adam reaches ≥ ``min_acc`` (95%) train accuracy, while a deep linear network of the same shape
   (an affine classifier) stays at the majority rate.

Tolerances. (1) numerical: the forward pass and the path-sum add the same products in different orders, so they
differ by at most ``4·P·ε·Σ|terms|`` (``P`` paths, ε float64 eps). (2) the 95% is the spec's target (not derived);
the deep linear net may exceed the majority rate by at most 2 binomial standard deviations of an accuracy over
``points`` samples (``2·√(q(1−q)/points)``): the best affine classifier's edge over the majority on a disk is a
sampling effect.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ._base import Check, Claim, Paper, Setting, param

__all__ = ["CLAIM", "DLGN", "DLGNSetting", "path_sum"]


@dataclass(frozen=True)
class DLGNSetting(Setting):
    width: int = param(16, lo=1, hi=256, help="hidden width of the trained networks")
    depth: int = param(4, lo=1, hi=10, help="layers of the trained networks")
    beta: float = param(10.0, lo=0.01, hi=1000.0, help="gate temperature β")
    points: int = param(1000, lo=20, hi=10**5, help="training points of the circle task")
    radius: float = param(0.7, lo=0.05, hi=1.4, help="label = 1[‖x‖ < radius]")
    steps: int = param(2000, lo=10, hi=10**6, help="full-batch Adam steps")
    lr: float = param(1e-2, lo=1e-6, hi=1.0, help="Adam learning rate")
    min_acc: float = param(0.95, lo=0.0, hi=1.0, help="the DLGN's train accuracy must reach this")
    check_width: int = param(4, lo=1, hi=8, help="width of the path-sum check network")
    check_depth: int = param(3, lo=1, hi=5, help="depth of the path-sum check network")


class DLGN(torch.nn.Module):
    """Deep Linearly Gated Network; ``gated=False`` gives the deep linear network of the same shape."""

    def __init__(self, d_in: int, width: int, depth: int, beta: float, gated: bool = True,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.beta, self.gated, self.d_in = beta, gated, d_in
        dims = [d_in] + [width] * depth

        def lin(a: int, b: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(b, a, dtype=dtype) / math.sqrt(a))

        self.gate = torch.nn.ParameterList([lin(a, b) for a, b in itertools.pairwise(dims)]) if gated else None
        self.value = torch.nn.ParameterList([lin(a, b) for a, b in itertools.pairwise(dims)])
        self.out = torch.nn.Parameter(torch.randn(width, dtype=dtype) / math.sqrt(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:  # deep linear network on x̃
            h = x
            for w in self.value:
                h = h @ w.T
            return h @ self.out
        hg = x
        hv = torch.ones_like(x)
        for wg, wv in zip(self.gate, self.value, strict=True):
            hg = hg @ wg.T
            hv = (hv @ wv.T) * torch.sigmoid(self.beta * hg)
        return hv @ self.out


def path_sum(net: DLGN, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(ŷ by explicit enumeration of paths, Σ over paths of |term|) for a gated ``net``."""
    assert net.gate is not None
    eff = []
    m = torch.eye(net.d_in, dtype=x.dtype)
    for wg in net.gate:
        m = wg @ m  # W^g_l ⋯ W^g_1
        eff.append(m)
    gates = [torch.sigmoid(net.beta * (x @ e.T)) for e in eff]  # (B, width) per layer
    sizes = [net.d_in] + [w.shape[0] for w in net.value]
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    absum = torch.zeros(x.shape[0], dtype=x.dtype)
    for path in itertools.product(*[range(s) for s in sizes]):
        term = net.out[path[-1]] * torch.ones(x.shape[0], dtype=x.dtype)  # h^v_0[i_0] = 1
        for layer in range(len(net.value)):
            term = term * net.value[layer][path[layer + 1], path[layer]] * gates[layer][:, path[layer + 1]]
        total = total + term
        absum = absum + term.abs()
    return total, absum


def circle_data(s: DLGNSetting, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(s.points, 2, generator=gen) * 2 - 1
    y = (x.norm(dim=1) < s.radius).float()
    return torch.cat([x, torch.ones(s.points, 1)], 1), y


def _train(net: DLGN, x: torch.Tensor, y: torch.Tensor, s: DLGNSetting) -> tuple[float, list[float]]:
    opt = torch.optim.Adam(net.parameters(), lr=s.lr)
    accs = []
    every = max(1, s.steps // 100)
    for step in range(s.steps):
        logits = net(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % every == 0:
            accs.append(float(((logits.detach() > 0).float() == y).float().mean()))
    with torch.no_grad():
        acc = float(((net(x) > 0).float() == y).float().mean())
    return acc, accs


class DLGNClaim(Claim):
    id = "E6"
    title = "DLGN: path-sum of products of half-space sigmoids; learns the circle a deep linear net cannot"
    paper = Paper("Mahesh Lorik Yadav, Harish Guruprasad Ramaswamy, Chandrashekar Lakshminarayanan", 2024,
                  "Half-Space Feature Learning in Neural Networks", "arXiv 2404.04312")
    Setting = DLGNSetting
    prediction = ("forward = Σ_paths w_out Π W^v Π σ(β⟨(W^g_l⋯W^g_1)_i, x̃⟩); circle task: DLGN train acc ≥ 95%, "
                  "deep linear net ≈ majority rate")
    tolerance_why = ("path-sum: 4·P·ε·Σ|terms| (summation order); DLGN 95% (the spec's target); deep linear ≤ "
                     "majority + 2 binomial SD")
    reduced: ClassVar[dict[str, Any]] = {"width": 8, "depth": 3, "points": 400, "steps": 300, "lr": 3e-2}

    def predict(self, setting: Any) -> dict[str, float]:
        s: DLGNSetting = setting
        inside = math.pi * s.radius**2 / 4 if s.radius <= 1 else float("nan")  # area fraction for radius ≤ 1
        return {"path_sum_gap": 0.0, "dlgn_acc_min": s.min_acc, "majority_rate": max(inside, 1 - inside)}

    def measure(self, setting: Any, seed: int) -> tuple[list[Check], dict[str, list[float]]]:
        s: DLGNSetting = setting
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        small = DLGN(3, s.check_width, s.check_depth, s.beta / 10, dtype=torch.float64)
        xs = torch.randn(64, 3, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            fwd = small(xs)
            ps, absum = path_sum(small, xs)
        n_paths = 3 * s.check_width**s.check_depth
        bound = float((4 * n_paths * torch.finfo(torch.float64).eps * absum).max())
        checks = [Check.close(f"|forward − path-sum| ({n_paths} paths, float64)", 0.0,
                              float((fwd - ps).abs().max()), atol=bound)]
        x, y = circle_data(s, gen)
        q = float(y.mean())
        majority = max(q, 1 - q)
        dlgn_acc, dlgn_curve = _train(DLGN(3, s.width, s.depth, s.beta), x, y, s)
        dln_acc, dln_curve = _train(DLGN(3, s.width, s.depth, s.beta, gated=False), x, y, s)
        checks.append(Check.at_least("circle: DLGN train accuracy", dlgn_acc, s.min_acc))
        checks.append(Check.at_most("circle: deep linear net train accuracy", dln_acc,
                                    majority + 2 * math.sqrt(q * (1 - q) / s.points),
                                    note=f"majority rate {majority:.3f}"))
        every = max(1, s.steps // 100)
        curve = {"step": [float((i + 1) * every) for i in range(len(dlgn_curve))], "dlgn_acc": dlgn_curve,
                 "dln_acc": dln_curve, "majority": [majority], "min_acc": [s.min_acc]}
        return checks, curve

    def plot(self, curve: Mapping[str, Sequence[float]], setting: Mapping[str, Any], fig: Any) -> None:
        ax = fig.subplots(1, 1)
        ax.plot(curve["step"], curve["dlgn_acc"], label="DLGN (measured)")
        ax.plot(curve["step"], curve["dln_acc"], label="deep linear net (measured)")
        ax.axhline(curve["min_acc"][0], ls="--", color="k", label="predicted: DLGN ≥ this")
        ax.axhline(curve["majority"][0], ls=":", color="gray", label="majority rate (deep linear prediction)")
        ax.set(xlabel="Adam step", ylabel="train accuracy", ylim=(0.4, 1.01), title="circle task")
        ax.legend(fontsize=7)


CLAIM = DLGNClaim()
