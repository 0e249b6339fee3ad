r"""E4 — the minima SGD can converge to satisfy η·tr(H)/2 ≤ 1; GD's only satisfy η·λ_max(H)/2 ≤ 1.

Paper: Lei Wu, Weijie J. Su (2023), "The Implicit Regularization of Dynamical Stability in Stochastic Gradient
Descent", ICML 2023 (arXiv 2305.17490). Claim (abstract): a global minimum that is linearly stable for SGD (batch 1,
squared loss, interpolation) has ``tr(H) ≤ 2/η``, whereas linear stability for GD only bounds ``λ_max(H) ≤ 2/η``.

Setting (the spec's, §7c). Diagonal linear network ``f(x) = (u ⊙ v)ᵀx`` on ``n`` samples ``x ~ N(0, I_d)``,
``y = xᵀβ*`` with β* ``sparsity``-sparse (unit entries at random coordinates); loss
``(1/2n) Σ_i (f(x_i) − y_i)²``; init ``u = v = init·1 + 0.01·N(0, 1)``. SGD: one uniformly drawn sample per step;
GD: full batch; each run stops when the loss is ≤ ``loss_tol`` (converged), exceeds 1e3 / is not finite (diverged),
or after ``max_steps`` (undecided — excluded from the checks, reported). At every converged minimum the Hessian
of the full loss is measured with :mod:`descend.curvature` (``HVPOperator.from_function``; exact trace from the
basis products, λ_max by Lanczos).

Predictions. (1) every SGD-converged minimum has ``η·tr(H)/2 ≤ 1``; (2) SGD minima get flatter as η grows (mean
tr(H) at the largest η where SGD converged < at the smallest η); (3) GD converges to minima that violate the trace
bound (``max η·tr(H)/2 > 1``) while all satisfy ``η·λ_max/2 ≤ 1``.

Tolerances: none beyond the bound itself — the trace is exact (``op.dim`` HVPs, float64 round-off ~1e-12
relative) and λ_max is a converged Lanczos value; the bound is a theorem about linear stability, so a converged
SGD run above it is a FAIL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ._base import Check, Claim, Paper, Setting, param

__all__ = ["CLAIM", "SGDStabilitySetting", "hessian_stats"]


@dataclass(frozen=True)
class SGDStabilitySetting(Setting):
    n: int = param(20, lo=2, hi=1000, help="training samples")
    d: int = param(40, lo=2, hi=1000, help="input dimension")
    sparsity: int = param(3, lo=1, hi=1000, help="non-zeros of β*")
    init: float = param(0.5, lo=0.01, hi=5.0, help="init of u and v")
    etas: tuple[float, ...] = param((0.02, 0.05, 0.08, 0.12, 0.15, 0.3, 0.5), lo=1e-4, hi=10.0, help="step sizes")
    seeds: int = param(3, lo=1, hi=100, help="SGD seeds per step size")
    max_steps: int = param(40000, lo=100, hi=10**7, help="step cap per run")
    loss_tol: float = param(1e-12, lo=1e-20, hi=1e-2, help="converged when the loss is below this")

    def validate(self) -> None:
        if self.sparsity > self.d:
            raise ValueError(f"sparsity must be ≤ d={self.d}, got {self.sparsity}")


def hessian_stats(x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """(tr H, λ_max H) of the full-batch loss at (u, v), with descend.curvature."""
    from ..curvature import HVPOperator, top_eigenpairs, trace

    xt, yt = torch.as_tensor(x), torch.as_tensor(y)

    def loss(params: Sequence[torch.Tensor]) -> torch.Tensor:
        return 0.5 * ((xt @ (params[0] * params[1]) - yt) ** 2).mean()

    op = HVPOperator.from_function(loss, [torch.as_tensor(u).clone(), torch.as_tensor(v).clone()])
    tr = trace(op, "exact").estimate
    lam = float(top_eigenpairs(op, k=1, tol=1e-10).eigenvalues[0])
    return float(tr), lam


def _run(x: np.ndarray, y: np.ndarray, eta: float, s: SGDStabilitySetting, rng: np.random.Generator | None,
         init: tuple[np.ndarray, np.ndarray]) -> tuple[str, np.ndarray, np.ndarray, int]:
    """SGD (rng given) or GD (rng None): ('converged' | 'diverged' | 'undecided', u, v, steps)."""
    u, v = init[0].copy(), init[1].copy()
    n = x.shape[0]
    idx = rng.integers(0, n, size=s.max_steps) if rng is not None else None
    check_every = 50
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run overflows before the next check
        return _loop(x, y, eta, s, idx, u, v, check_every)


def _loop(x: np.ndarray, y: np.ndarray, eta: float, s: SGDStabilitySetting, idx: np.ndarray | None, u: np.ndarray,
          v: np.ndarray, check_every: int) -> tuple[str, np.ndarray, np.ndarray, int]:
    n = x.shape[0]
    for t in range(s.max_steps):
        if t % check_every == 0:
            full = x @ (u * v) - y
            loss = 0.5 * float(full @ full) / n
            if not math.isfinite(loss) or loss > 1e3:
                return "diverged", u, v, t
            if loss <= s.loss_tol:
                return "converged", u, v, t
        if idx is None:
            r = x @ (u * v) - y
            g = x.T @ r / n
        else:
            xi = x[idx[t]]
            g = xi * (xi @ (u * v) - y[idx[t]])
        u, v = u - eta * g * v, v - eta * g * u
    full = x @ (u * v) - y
    loss = 0.5 * float(full @ full) / n
    return ("converged" if loss <= s.loss_tol else "undecided"), u, v, s.max_steps


class SGDStabilityClaim(Claim):
    id = "E4"
    title = "SGD's minima satisfy η·tr(H)/2 ≤ 1 and flatten as η grows; GD's only η·λmax/2 ≤ 1"
    paper = Paper("Lei Wu, Weijie J. Su", 2023, "The Implicit Regularization of Dynamical Stability in Stochastic "
                  "Gradient Descent", "ICML 2023, arXiv 2305.17490")
    Setting = SGDStabilitySetting
    prediction = ("SGD-converged: η·tr(H)/2 ≤ 1; tr(H) decreasing in η; GD-converged: η·λmax/2 ≤ 1 but "
                  "η·tr(H)/2 > 1 reachable")
    tolerance_why = "none: exact trace (op.dim HVPs) and converged Lanczos λmax; the bound is a stability theorem"
    reduced: ClassVar[dict[str, Any]] = {"etas": (0.03, 0.08, 0.5), "seeds": 2, "max_steps": 20000,
                                         "loss_tol": 1e-10}

    def predict(self, setting: Any) -> dict[str, float]:
        s: SGDStabilitySetting = setting
        out: dict[str, float] = {}
        for eta in s.etas:
            out[f"max_trace_eta{eta:g}"] = 2 / eta
        return out

    def measure(self, setting: Any, seed: int) -> tuple[list[Check], dict[str, list[float]]]:
        s: SGDStabilitySetting = setting
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((s.n, s.d))
        beta = np.zeros(s.d)
        beta[rng.choice(s.d, s.sparsity, replace=False)] = 1.0
        y = x @ beta
        init = (s.init + 0.01 * rng.standard_normal(s.d), s.init + 0.01 * rng.standard_normal(s.d))
        curve: dict[str, list[float]] = {"sgd_eta": [], "sgd_trace": [], "gd_eta": [], "gd_trace": [], "gd_lmax": [],
                                         "etas": list(s.etas)}
        outcomes = []
        sgd_bound, gd_trace_bound, gd_lmax_bound = [], [], []
        mean_trace: dict[float, float] = {}
        for eta in s.etas:
            traces = []
            for k in range(s.seeds):
                status, u, v, _ = _run(x, y, eta, s, np.random.default_rng([seed, k, int(eta * 1e6)]), init)
                outcomes.append(f"SGD η={eta:g} #{k}: {status}")
                if status == "converged":
                    tr, _ = hessian_stats(x, y, u, v)
                    traces.append(tr)
                    sgd_bound.append(eta * tr / 2)
                    curve["sgd_eta"].append(eta)
                    curve["sgd_trace"].append(tr)
            if traces:
                mean_trace[eta] = float(np.mean(traces))
            status, u, v, _ = _run(x, y, eta, s, None, init)
            outcomes.append(f"GD η={eta:g}: {status}")
            if status == "converged":
                tr, lam = hessian_stats(x, y, u, v)
                gd_trace_bound.append(eta * tr / 2)
                gd_lmax_bound.append(eta * lam / 2)
                curve["gd_eta"].append(eta)
                curve["gd_trace"].append(tr)
                curve["gd_lmax"].append(lam)
        note = "; ".join(outcomes)
        conv = sorted(mean_trace)
        checks = [
            Check.at_most("SGD-converged minima: max η·tr(H)/2", max(sgd_bound) if sgd_bound else math.nan, 1.0,
                          note=f"{len(sgd_bound)} converged SGD runs"),
            Check.at_most("SGD flatter as η grows: tr(H) at the largest converged η − at the smallest",
                          mean_trace[conv[-1]] - mean_trace[conv[0]] if len(conv) >= 2 else math.nan, 0.0,
                          note=", ".join(f"η={e:g}: tr {mean_trace[e]:.3g}" for e in conv)),
            Check.at_least("GD-converged minima: max η·tr(H)/2 (violates the SGD bound)",
                           max(gd_trace_bound) if gd_trace_bound else math.nan, 1.0),
            Check.at_most("GD-converged minima: max η·λmax/2", max(gd_lmax_bound) if gd_lmax_bound else math.nan,
                          1.0, note=note),
        ]
        return checks, curve

    def plot(self, curve: Mapping[str, Sequence[float]], setting: Mapping[str, Any], fig: Any) -> None:
        ax = fig.subplots(1, 1)
        etas = np.asarray(curve["etas"])
        grid = np.linspace(etas.min() * 0.8, etas.max() * 1.1, 100)
        ax.plot(grid, 2 / grid, "k--", label="predicted bound for SGD: tr(H) = 2/η")
        ax.plot(curve["sgd_eta"], curve["sgd_trace"], "o", label="SGD minima: tr(H) (measured)")
        ax.plot(curve["gd_eta"], curve["gd_trace"], "s", mfc="none", label="GD minima: tr(H) (measured)")
        ax.plot(curve["gd_eta"], curve["gd_lmax"], "^", label="GD minima: λmax(H) (measured)")
        ax.set(xlabel="η", ylabel="curvature", yscale="log", title="linear stability of SGD vs GD minima")
        ax.legend(fontsize=7)


CLAIM = SGDStabilityClaim()
