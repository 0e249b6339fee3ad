r"""IGNITE: surrogate training with a gradient-norm (sharpness) constraint, and the offline-optimisation loop around it.

Paper: Manh Cuong Dao, Phi Le Nguyen, Thao Nguyen Truong, Trong Nghia Hoang (2024), "Incorporating Surrogate
Gradient Norm to Improve Offline Optimization Techniques", NeurIPS 2024.  Reference code: ``cuong-dm/IGNITE``
(TensorFlow, built on design-baselines), read for the update order and the defaults; not copied.

Algorithm (the constrained training problem and its primal-dual solution, per minibatch and per ensemble member)::

    min_β L(β)   s.t.   ρ ‖∇_β G(β)‖ ≤ ε,      G(β) = (1/n) Σ_i g_β(x_i)   (mean surrogate output on the inputs)

    g_L  = ∇_β L(β)
    g_G  = ∇_β G(β),        u = g_G / ‖g_G‖
    g_G' = ∇_β G(β + r u)                                   (evaluated on a perturbed copy; β is restored)
    grad = g_L + λ (ρ / r) (g_G' − g_G)                     (finite difference of ∇_β ρ‖∇_β G‖ = ρ H_G u)
    β    ← optimizer step with grad                         (any torch.optim optimizer: Adam in the paper)
    λ    ← max(0, λ + η_λ (ρ ‖g_G‖ − ε))                    (dual ascent)

Defaults (from the reference code): ``lam0 = 1e-3``, ``eps = 1e-3``, ``lr_lambda = 1e-3``, ``rho = 0.05``,
``r = 0.05``.  The outer loop is design-baselines' gradient ascent: an ensemble of surrogates trained on the
standardised offline data, ``k = 128`` starting designs (the best offline ones), ``steps`` steps of Adam ascent on
the ensemble's mean (``grad-mean``) or minimum (``grad-min``) prediction, projected onto the box; the hidden oracle
scores the final designs (100th-percentile normalised score, see :mod:`descend.surrogate.tasks`).

Checked: (tests/surrogate/test_ignite.py) the finite-difference term (g_G' − g_G)/r equals the double-backprop
Hessian-vector product H_G u within 1e-2 relative at r = 1e-3 in float64 (the truncation error is
O(r ‖∇³G‖/‖H_G u‖); measured ~1e-4 on the test network); ρ‖∇G‖ decreases toward ε under the constraint and λ
rises exactly on violated steps.  The end-to-end score gain is measured, not asserted (benchmarks/surrogate_ignite.py).

Deviations: (1) G is the mean prediction on the *minibatch* inputs, as in the reference code's training step,
not the whole offline set. (2) λ is clipped at 0 (the reference code does not clip; a negative multiplier would
reward sharpness). (3) Surrogates are small SiLU MLPs (hidden 64 × 2) trained with MSE instead of design-baselines'
2048-wide Gaussian-NLL networks; SiLU keeps H_G defined everywhere, so the finite difference approximates it.
(4) Note on feasibility: a network with an output bias b has ∂G/∂b = 1, so ‖∇_β G‖ ≥ 1 and the default constraint
ρ‖∇G‖ ≤ ε = 1e-3 (ρ = 0.05) can never hold; λ then grows linearly and IGNITE acts as an increasing penalty.  The
regulariser supports ``exclude`` (parameters left out of the constraint, e.g. the output bias) to make it feasible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from descend._validate import check_choice, check_float, check_int

from .tasks import OfflineTask

__all__ = ["IGNITE", "MLP", "OfflineResult", "gradient_ascent", "hvp_double_backprop", "run_offline",
           "train_surrogate"]


def _flat_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.detach() ** 2).sum() for t in tensors))  # type: ignore[arg-type]


class IGNITE:
    """The IGNITE training step: ``g_L + λ ρ/r (∇G(β + r u) − ∇G(β))`` handed to any torch optimizer, then dual ascent.

    Usage::

        reg = IGNITE(model, torch.optim.Adam(model.parameters(), 1e-3))
        for xb, yb in batches:
            stats = reg.step(lambda: ((model(xb) - yb) ** 2).mean(), xb)

    ``exclude``: parameters kept out of the sharpness term (their ``g_G`` entries are not counted); by default every
    parameter with ``requires_grad`` is in it, as in the paper.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, lam0: float = 1e-3, eps: float = 1e-3,
                 lr_lambda: float = 1e-3, rho: float = 0.05, r: float = 0.05,
                 exclude: Iterable[torch.Tensor] = ()) -> None:
        check_float("lam0", lam0, 0.0)
        check_float("eps", eps, 0.0)
        check_float("lr_lambda", lr_lambda, 0.0)
        check_float("rho", rho, 0.0, low_open=True)
        check_float("r", r, 0.0, low_open=True)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self.lam, self.eps, self.lr_lambda, self.rho, self.r = float(lam0), float(eps), float(lr_lambda), rho, r
        skip = {id(p) for p in exclude}
        self.params = [p for p in model.parameters() if p.requires_grad and id(p) not in skip]
        if not self.params:
            raise ValueError("model must have at least one trainable parameter outside `exclude`")
        self.history: list[dict[str, float]] = []

    def _grad_G(self, x: torch.Tensor) -> list[torch.Tensor]:
        G = self.model(x).mean()
        grads = torch.autograd.grad(G, self.params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, grads, strict=True)]

    def sharpness_terms(self, x: torch.Tensor, r: float | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Return ``((g_G' − g_G)/r per parameter, ‖g_G‖)``: the finite-difference estimate of ``∇‖∇_β G‖ = H_G u``."""
        r = self.r if r is None else r
        g = self._grad_G(x)
        norm = _flat_norm(g)
        if float(norm) == 0.0:
            return [torch.zeros_like(p) for p in self.params], norm
        u = [gi / norm for gi in g]
        with torch.no_grad():
            for p, ui in zip(self.params, u, strict=True):
                p.add_(ui, alpha=r)
        try:
            g_pert = self._grad_G(x)
        finally:
            with torch.no_grad():
                for p, ui in zip(self.params, u, strict=True):
                    p.sub_(ui, alpha=r)
        return [(gp - gi) / r for gp, gi in zip(g_pert, g, strict=True)], norm

    def step(self, closure: Callable[[], torch.Tensor], x: torch.Tensor) -> dict[str, float]:
        """One IGNITE step: ``closure()`` returns the loss L (not yet backpropagated); ``x``: the inputs of G."""
        self.optimizer.zero_grad()
        loss = closure()
        loss.backward()
        fd, norm = self.sharpness_terms(x)
        lam = self.lam
        with torch.no_grad():
            for p, d in zip(self.params, fd, strict=True):
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                p.grad.add_(d, alpha=lam * self.rho)
        self.optimizer.step()
        sharp = self.rho * float(norm)
        self.lam = max(0.0, lam + self.lr_lambda * (sharp - self.eps))
        stats = {"loss": float(loss.detach()), "lambda": lam, "lambda_next": self.lam, "sharpness": sharp}
        self.history.append(stats)
        return stats


def hvp_double_backprop(model: nn.Module, x: torch.Tensor, params: Sequence[torch.Tensor] | None = None
                        ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Reference ``H_G u`` with ``u = ∇G/‖∇G‖`` by double backprop (``∇_β ‖∇_β G‖``), and ``‖∇G‖``; for tests."""
    ps = list(model.parameters()) if params is None else list(params)
    G = model(x).mean()
    g = torch.autograd.grad(G, ps, create_graph=True)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))  # type: ignore[arg-type]
    hu = torch.autograd.grad(norm, ps, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(ps, hu, strict=True)], norm.detach()


class MLP(nn.Module):
    """``d -> hidden -> ... -> 1`` with SiLU activations (the surrogate ``g_β``)."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, *, out_bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, 1, bias=out_bias))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def train_surrogate(x: torch.Tensor, y: torch.Tensor, *, ignite: dict[str, Any] | None = None, epochs: int = 100,
                    batch_size: int = 128, lr: float = 1e-3, hidden: int = 64, seed: int = 0,
                    optimizer: str = "adam") -> tuple[MLP, list[dict[str, float]]]:
    """Train one MSE surrogate on standardised ``(x, y)``; with ``ignite`` (IGNITE keyword arguments, ``{}`` for the
    defaults) each minibatch step is an :class:`IGNITE` step, else a plain step of the same optimizer.

    ``optimizer``: ``"adam"`` (torch.optim.Adam, as in the paper) or any name in ``descend.optim.available()``.
    """
    check_int("epochs", epochs, 1)
    check_int("batch_size", batch_size, 1)
    check_float("lr", lr, 0.0, low_open=True)
    torch.manual_seed(seed)
    model = MLP(x.shape[1], hidden).to(x.dtype)
    if optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        import descend.optim as do

        check_choice("optimizer", optimizer, ("adam", *do.available()))
        opt = do.create(optimizer, model.parameters(), lr=lr)
    reg = IGNITE(model, opt, **ignite) if ignite is not None else None
    g = torch.Generator().manual_seed(seed)
    log: list[dict[str, float]] = []
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]

            def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                return ((model(xb) - yb) ** 2).mean()

            if reg is not None:
                log.append(reg.step(closure, xb))
            else:
                opt.zero_grad()
                loss = closure()
                loss.backward()
                opt.step()
                log.append({"loss": float(loss.detach())})
    return model, log


def gradient_ascent(models: Sequence[nn.Module], x0: torch.Tensor, *, steps: int = 100, lr: float = 0.05,
                    aggregate: str = "mean", lower: torch.Tensor | None = None,
                    upper: torch.Tensor | None = None,
                    callback: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Adam ascent on the ensemble's mean or min prediction from ``x0`` (rows), projected onto ``[lower, upper]``.

    ``callback(t, x)`` is called before step ``t = 0..steps-1`` and once more with ``t = steps`` at the end."""
    check_choice("aggregate", aggregate, ("mean", "min"))
    check_int("steps", steps, 0)
    x = x0.detach().clone().requires_grad_()
    opt = torch.optim.Adam([x], lr=lr)
    for t in range(steps):
        if callback is not None:
            callback(t, x.detach())
        preds = torch.stack([m(x) for m in models])
        score = preds.mean(0) if aggregate == "mean" else preds.min(0).values
        opt.zero_grad()
        (-score.sum()).backward()
        opt.step()
        if lower is not None and upper is not None:
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, upper), lower))
    if callback is not None:
        callback(steps, x.detach())
    return x.detach()


@dataclass
class OfflineResult:
    """Scores of one offline-optimisation run; ``curve['p100']`` is the normalised 100th percentile per ascent step."""

    summary: dict[str, float]
    curve: dict[str, list[float]] = field(default_factory=dict)


def run_offline(task: OfflineTask, *, ignite: dict[str, Any] | None = None, aggregate: str = "mean",
                n_models: int = 3, k: int = 128, steps: int = 100, ascent_lr: float = 0.05, epochs: int = 100,
                seed: int = 0, record_every: int = 10, **train_kw: Any) -> OfflineResult:
    """Train an ensemble (IGNITE-regularised when ``ignite`` is not None), ascend from the best ``k`` offline designs,
    score on the hidden oracle.  All surrogates see standardised inputs and targets."""
    check_int("n_models", n_models, 1)
    check_int("k", k, 1)
    check_int("record_every", record_every, 1)
    mu, sd = task.x.mean(0), task.x.std(0).clamp_min(1e-12)
    ymu, ysd = task.y.mean(), task.y.std().clamp_min(1e-12)
    xs, ys = (task.x - mu) / sd, (task.y - ymu) / ysd
    models, sharp = [], []
    for m in range(n_models):
        model, log = train_surrogate(xs, ys, ignite=ignite, epochs=epochs, seed=seed * 1000 + m, **train_kw)
        model.requires_grad_(False)
        models.append(model)
        if log and "sharpness" in log[-1]:
            sharp.append(log[-1]["sharpness"])
    top = torch.argsort(task.y, descending=True)[:k]
    x = xs[top]
    lo, hi = (task.lower - mu) / sd, (task.upper - mu) / sd
    curve: dict[str, list[float]] = {"step": [], "p100": [], "p50": []}

    def record(t: int, xt: torch.Tensor) -> None:
        if t % record_every == 0 or t == steps:
            s = task.score(xt * sd + mu)
            curve["step"].append(float(t))
            curve["p100"].append(s["p100"])
            curve["p50"].append(s["p50"])

    x = gradient_ascent(models, x, steps=steps, lr=ascent_lr, aggregate=aggregate, lower=lo, upper=hi,
                        callback=record)
    summary = task.score(x * sd + mu)
    if sharp:
        summary["final_sharpness"] = sum(sharp) / len(sharp)
    return OfflineResult(summary, curve)
