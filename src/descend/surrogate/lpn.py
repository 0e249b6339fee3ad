r"""Learned proximal networks (LPN): a network that is exactly the proximal operator of a learned (nonconvex) prior.

Paper: Zhenghan Fang, Sam Buchanan, Jeremias Sulam (2024), "What's in a Prior? Learned Proximal Networks for Inverse
Problems", ICLR 2024.  Reference code: ``ZhenghanFang/learned-proximal-networks`` (``exps/laplacian``), read for the
architecture, initialisation and training schedule; not copied.

Model (Sec. 3): ψ_θ is an input-convex network,

    z_1 = s_β(W_0 y),   z_{l+1} = s_β(W_l z_l + A_l y + b_l)  (l = 1..L),   ψ_θ(y) = w^T z_{L+1} + a^T y + b,

with s_β(t) = log(1 + e^{βt})/β (convex, non-decreasing) and W_l ≥ 0, w ≥ 0 (hidden-to-hidden and output weights are
clamped to be non-negative after every optimizer step), so ψ_θ is convex and f_θ = ∇ψ_θ (autograd) is the gradient of
a convex function, hence (Gribonval & Nikolova) exactly f_θ = prox_{φ_θ} for some φ_θ.  The prior (Prop. 3.1):

    φ_θ(x) = ⟨y, x⟩ − ½‖x‖² − ψ_θ(y)   for any y with f_θ(y) = x        (y found by Adam on ‖f_θ(y) − x‖²)

Proximal matching (Sec. 4): ℓ_γ(x̂, x) = 1 − exp(−‖x̂ − x‖² / γ²) (for n > 1 we use ‖x̂ − x‖²/n, the per-coordinate
mean, so that γ keeps the 1-D scale), with γ annealed 0.5 → 0.4 → 0.3 → 0.2 → 0.1; as γ → 0 the minimiser over
denoisers is the MAP estimator (ℓ2 gives the MMSE, ℓ1 the posterior median).

1-D Laplacian experiment (reference notebook): x ~ Laplace(0, 1), y = x + N(0, 1); hidden 50, 4 layers, β = 10,
batch 2000; ℓ1 pretraining (Adam 1e-3 then 1e-4), then proximal matching continued from it (γ and learning rate
0.5/1e-3→1e-4, 0.4/1e-4, 0.3/1e-4, 0.2/1e-5, 0.1/1e-5→1e-6), 44k steps in all (``schedule="reference"``).  The MAP
denoiser of this model is soft-thresholding at σ²/b = 1.  Our default ``schedule="short"`` (8k steps, batch 1000,
larger learning rates) ends at f(−3..3) = [−1.99, −0.99, −0.16, 0.01, 0.19, 1.04, 1.91] (seed 0,
benchmarks/surrogate_lpn.py; ℓ2: [−2.06, −1.17, −0.51, 0.00, 0.50, 1.13, 1.95]): the thresholding region is still
shrinking over the γ stages (|f(1)| 0.30 → 0.19 in a per-stage run) and misses the ±0.1 target at ±1; three
times longer (``steps_scale=3``, 24k steps) gives [−2.01, −0.98, −0.15, −0.01, 0.16, 1.03, 2.05], still > 0.1;
the reference schedule (44k steps, batch 2000; 35 min on one shared CPU core) gives [−1.965, −0.989, −0.177,
−0.001, 0.167, 1.001, 2.029] (ℓ2: [−2.006, −1.150, −0.505, −0.001, 0.504, 1.159, 2.023]).  The miss at ±1 is the
loss's, not only the training's: the exact minimiser of the schedule's last loss (γ = 0.1) is ±0.111 at y = ±1
(:func:`laplace_loss_minimizer`, quadrature: at the threshold the posterior is flat-topped on one side, and a
kernel of width γ moves its mode), against soft-thresholding's 0; ±0.1 there needs γ below 0.1.  The trained
network is ≈ 0.06 further off (0.167 against 0.111).

Plug-and-play (Sec. 5): proximal gradient x_{k+1} = f_θ(x_k − η Aᵀ(A x_k − b)) and ADMM
x = f_θ(z − u), z = (AᵀA + ρI)⁻¹(Aᵀb + ρ(x + u)), u ← u + x − z, with the LPN as the prox.

Checked (tests/surrogate/test_lpn.py): ψ convex along random lines (second differences ≥ −1e-10 in float64) and the
Jacobian of f_θ symmetric (to 1e-10: it is a Hessian) and PSD at random points; the 1-D Laplace targets; PnP
convergence on scikit-learn digits deblurring.  As in the reference, the input layer has no bias and the skip
layers do; the constrained weights are initialised exp(N(−3 − ½ log h, 0.1)) (positive, small; the reference's
mean and std are arguments of its ``init_weights``, not read here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from descend._validate import check_choice, check_float, check_int

__all__ = [
    "GAMMA_SCHEDULE",
    "LPN",
    "laplace_loss_minimizer",
    "pnp_admm",
    "pnp_pgd",
    "prior",
    "prox_matching_loss",
    "soft_threshold",
    "train_laplace",
    "train_lpn",
]

GAMMA_SCHEDULE = (0.5, 0.4, 0.3, 0.2, 0.1)


class LPN(nn.Module):
    """Input-convex ψ_θ and its gradient f_θ = ∇ψ_θ (``forward``); call :meth:`clip_weights` after each step."""

    def __init__(self, dim: int = 1, hidden: int = 50, layers: int = 4, beta: float = 10.0) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        check_int("hidden", hidden, 1)
        check_int("layers", layers, 1)
        check_float("beta", beta, 0.0, low_open=True)
        self.dim = dim
        self.inp = nn.Linear(dim, hidden, bias=False)
        self.core = nn.ModuleList([nn.Linear(hidden, hidden, bias=False) for _ in range(layers)])
        self.out = nn.Linear(hidden, 1, bias=False)
        self.skip = nn.ModuleList([nn.Linear(dim, hidden) for _ in range(layers)] + [nn.Linear(dim, 1)])
        self.act = nn.Softplus(beta=beta)
        with torch.no_grad():  # positive init of the constrained weights: exp(N(mean, std)) as in the reference
            for lin in [*self.core, self.out]:
                lin.weight.normal_(-3.0 - math.log(hidden) / 2, 0.1).exp_()
        self.clip_weights()

    def constrained(self) -> list[torch.Tensor]:
        """Weights that must stay ≥ 0 for convexity (hidden-to-hidden and output)."""
        return [lin.weight for lin in [*self.core, self.out]]

    def clip_weights(self) -> None:
        with torch.no_grad():
            for w in self.constrained():
                w.clamp_(min=0.0)

    def scalar(self, y: torch.Tensor) -> torch.Tensor:
        """ψ_θ(y) for rows y of shape (n, dim); returns (n,)."""
        z = self.act(self.inp(y))
        for core, skip in zip(self.core, self.skip[:-1], strict=True):
            z = self.act(core(z) + skip(y))
        return (self.out(z) + self.skip[-1](y)).squeeze(-1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """f_θ(y) = ∇ψ_θ(y) (graph kept so that it can be trained through)."""
        with torch.enable_grad():
            yy = y if y.requires_grad else y.detach().requires_grad_()
            (g,) = torch.autograd.grad(self.scalar(yy).sum(), yy, create_graph=True)
        return g


def soft_threshold(y: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    """The prox of t|·|: sign(y) max(|y| − t, 0) (the MAP denoiser of the Laplace experiment)."""
    return torch.sign(y) * torch.clamp(y.abs() - t, min=0.0)


def laplace_loss_minimizer(y: float, gamma: float) -> float:
    """The denoiser value at ``y`` that minimises the *population* proximal-matching loss of the 1-D Laplace
    experiment, ``argmin_c E[1 − exp(−(c − x)²/γ²) | y]`` with x ~ Laplace(0, 1), y = x + N(0, 1): the mode of the
    posterior smoothed by a Gaussian of width γ/√2 (float64 quadrature on x ∈ [−8, 8] with spacing 1e-3; c on a
    grid of 1e-2, then of 1e-4 around the best point).  As γ → 0 it tends to the MAP denoiser, soft-thresholding;
    at finite γ it is biased where the posterior is flat-topped: at the threshold y = ±1 the posterior density's
    derivative vanishes at 0⁺, and the minimiser is ±0.111 at γ = 0.1 (the reference schedule's last γ), ±0.065 at
    γ = 0.05.  For γ ≥ 0.01 (the x grid resolves the kernel) and |y| ≤ 5 (the grid holds the posterior)."""
    check_float("gamma", gamma, 0.01)
    check_float("y", y, -5.0, 5.0)
    x = torch.linspace(-8.0, 8.0, 16_001, dtype=torch.float64)
    log_post = -x.abs() - (x - y) ** 2 / 2
    post = torch.exp(log_post - log_post.max())

    def best(c: torch.Tensor) -> float:
        score = torch.exp(-((c[:, None] - x[None, :]) ** 2) / gamma**2) @ post
        return float(c[int(score.argmax())])

    lo, hi = min(y, 0.0) - 1.0, max(y, 0.0) + 1.0
    coarse = best(torch.arange(lo, hi + 1e-9, 1e-2, dtype=torch.float64))
    return best(torch.arange(coarse - 1e-2, coarse + 1e-2 + 1e-9, 1e-4, dtype=torch.float64))


def prox_matching_loss(xhat: torch.Tensor, x: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean over rows of ``1 − exp(−‖x̂ − x‖²/(n γ²))`` (n = row length; n = 1 is the paper's 1-D form)."""
    check_float("gamma", gamma, 0.0, low_open=True)
    d2 = ((xhat - x) ** 2).reshape(x.shape[0], -1).mean(-1)
    return (1 - torch.exp(-d2 / gamma**2)).mean()


def _loss(kind: str, out: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    if kind == "l2":
        return ((out - target) ** 2).reshape(out.shape[0], -1).sum(-1).mean()
    if kind == "l1":
        return (out - target).abs().reshape(out.shape[0], -1).sum(-1).mean()
    return prox_matching_loss(out, target, gamma)


def train_lpn(model: LPN, sample: Callable[[int], torch.Tensor], sigma: float, *,
              stages: Sequence[tuple[str, float, float, int]], batch_size: int = 2000, seed: int = 0,
              log: list[dict[str, float]] | None = None) -> LPN:
    """Train ``model`` as a denoiser of ``y = x + σ ε`` (``x = sample(n)``, rows) through ``stages`` of
    ``(loss, gamma, lr, steps)`` with ``loss`` ∈ {"l2", "l1", "prox"} (Adam, weights clipped after every step)."""
    check_float("sigma", sigma, 0.0)
    check_int("batch_size", batch_size, 1)
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for kind, gamma, lr, steps in stages:
        check_choice("loss", kind, ("l2", "l1", "prox"))
        check_float("lr", lr, 0.0, low_open=True)
        check_int("steps", steps, 0)
        for group in opt.param_groups:
            group["lr"] = lr
        for _ in range(steps):
            x = sample(batch_size)
            y = x + sigma * torch.randn_like(x)
            loss = _loss(kind, model(y), x, gamma)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.clip_weights()
            if log is not None:
                log.append({"loss": float(loss.detach()), "gamma": gamma, "lr": lr})
    return model


def laplace_stages(loss: str, steps_scale: float = 1.0, schedule: str = "short") -> list[tuple[str, float, float, int]]:
    """Stages ``(loss, gamma, lr, steps)`` of the 1-D Laplace experiment.

    ``schedule="reference"``: the reference notebook's (ℓ1 or ℓ2: 10k steps at 1e-3, 10k at 1e-4; then for ``prox``
    γ = 0.5: 2k at 1e-3 + 2k at 1e-4, 0.4 and 0.3: 4k at 1e-4, 0.2: 4k at 1e-5, 0.1: 4k at 1e-5 + 4k at 1e-6).
    ``"short"`` (default, 8k steps): ℓ1 2k at 1e-2 + 1k at 1e-3, then 1k steps per γ at 1e-3, 1e-3, 1e-3, 3e-4,
    1e-4 and a last 1k at γ = 0.1, 1e-5.  ``steps_scale`` multiplies every stage length.
    """
    check_choice("loss", loss, ("prox", "l2"))
    check_choice("schedule", schedule, ("short", "reference"))

    def n(k: int) -> int:
        return max(1, round(k * steps_scale))

    if schedule == "reference":
        warm_kind = "l2" if loss == "l2" else "l1"
        warm = [(warm_kind, 0.0, 1e-3, n(10_000)), (warm_kind, 0.0, 1e-4, n(10_000))]
        if loss == "l2":
            return warm
        pm = [(0.5, 1e-3, 2000), (0.5, 1e-4, 2000), (0.4, 1e-4, 4000), (0.3, 1e-4, 4000), (0.2, 1e-5, 4000),
              (0.1, 1e-5, 4000), (0.1, 1e-6, 4000)]
        return warm + [("prox", g, lr, n(k)) for g, lr, k in pm]
    if loss == "l2":
        return [("l2", 0.0, 1e-2, n(2000)), ("l2", 0.0, 1e-3, n(1000))]
    warm = [("l1", 0.0, 1e-2, n(2000)), ("l1", 0.0, 1e-3, n(1000))]
    pm2 = [(0.5, 1e-3), (0.4, 1e-3), (0.3, 1e-3), (0.2, 3e-4), (0.1, 1e-4), (0.1, 1e-5)]
    return warm + [("prox", g, lr, n(1000)) for g, lr in pm2]


def train_laplace(loss: str = "prox", *, steps_scale: float = 1.0, seed: int = 0, batch_size: int = 1000,
                  schedule: str = "short", log: list[dict[str, float]] | None = None) -> LPN:
    """The 1-D Laplacian experiment: x ~ Laplace(0, 1), y = x + N(0, 1), LPN(1, 50, 4, β = 10) in float32."""
    check_choice("loss", loss, ("prox", "l2"))
    torch.manual_seed(seed)
    model = LPN(1, 50, 4, 10.0)
    lap = torch.distributions.Laplace(0.0, 1.0)
    return train_lpn(model, lambda n: lap.sample((n, 1)), 1.0, stages=laplace_stages(loss, steps_scale, schedule),
                     batch_size=batch_size, seed=seed, log=log)


def prior(model: LPN, x: torch.Tensor, *, steps: int = 500, lr: float = 1e-2) -> torch.Tensor:
    """φ_θ(x) = ⟨y, x⟩ − ½‖x‖² − ψ_θ(y) with y ≈ f_θ⁻¹(x) (Adam on ‖f_θ(y) − x‖² from y = x); rows of x."""
    check_int("steps", steps, 1)
    y = x.detach().clone().requires_grad_()
    opt = torch.optim.Adam([y], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        ((model(y) - x) ** 2).sum().backward()
        opt.step()
    with torch.no_grad():
        psi = model.scalar(y)
    return ((y.detach() * x).reshape(x.shape[0], -1).sum(-1) - 0.5 * (x**2).reshape(x.shape[0], -1).sum(-1)
            - psi.detach())


def _prox(model: LPN, v: torch.Tensor) -> torch.Tensor:
    return model(v).detach()


def pnp_pgd(model: LPN, forward: Callable[[torch.Tensor], torch.Tensor],
            adjoint: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *, step: float, iters: int = 100,
            x0: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """PnP proximal gradient with the LPN as prox; returns x and the relative step sizes ‖x_{k+1} − x_k‖/‖x_k‖."""
    check_float("step", step, 0.0, low_open=True)
    check_int("iters", iters, 1)
    x = adjoint(b) if x0 is None else x0.clone()
    res: list[float] = []
    for _ in range(iters):
        nxt = _prox(model, x - step * adjoint(forward(x) - b))
        res.append(float((nxt - x).norm() / x.norm().clamp_min(1e-12)))
        x = nxt
    return x, res


def pnp_admm(model: LPN, a: torch.Tensor, b: torch.Tensor, *, rho: float = 1.0, iters: int = 100
             ) -> tuple[torch.Tensor, list[float]]:
    """PnP-ADMM for ``A x ≈ b`` (rows of b are independent problems, A a matrix) with the LPN as prox of the prior;
    returns x and the residuals ‖x_k − z_k‖/‖z_k‖."""
    check_float("rho", rho, 0.0, low_open=True)
    check_int("iters", iters, 1)
    n = a.shape[1]
    lhs = a.T @ a + rho * torch.eye(n, dtype=a.dtype)
    atb = b @ a
    z = torch.linalg.solve(lhs, atb.T).T
    u = torch.zeros_like(z)
    res: list[float] = []
    x = z
    for _ in range(iters):
        x = _prox(model, z - u)
        z = torch.linalg.solve(lhs, (atb + rho * (x + u)).T).T
        u = u + x - z
        res.append(float((x - z).norm() / z.norm().clamp_min(1e-12)))
    return x, res
