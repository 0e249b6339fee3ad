r"""Deep conjugate direction method (DCDM): a network proposes search directions for an SPD system.

Paper: Ayano Kaneda, Osman Akar, Jingyu Chen, Victoria Alicia Trevino Kala, David Hyde, Joseph Teran (2023),
"A Deep Conjugate Direction Method for Iteratively Solving Linear Systems", ICML 2023.  Reference code read:
``ayano721/2023_DCDM`` (TF/Keras: ``lib/conjugate_gradient.py::dcdm``, ``src/train.py``).

Iteration (A SPD, model :math:`f_\theta`):

.. math::
    r_0 &= b - A x_0, \quad p_{-1} = p_{-2} = 0 \\
    q_k &= f_\theta(r_k/\|r_k\|) - \sum_{j \in \{k-1, k-2\}} \frac{q^\top A p_j}{p_j^\top A p_j}\, p_j
        \qquad \text{(A-orthogonal to the last two directions)} \\
    x_{k+1} &= x_k + \frac{p_k^\top r_k}{p_k^\top A p_k}\, p_k, \quad p_k = q_k, \qquad r_{k+1} = b - A x_{k+1}

until :math:`\|r_k\| < \text{tol}\,\|r_0\|` (tol = 1e-4, at most 100 iterations in the paper's tests).  With
:math:`f_\theta = \mathrm{id}` this is CG (the residual is A-orthogonal to all but the last direction); with
:math:`f_\theta = A^{-1}` one step solves the system.

Training loss (per right-hand side b, :math:`q = f_\theta(b)`): the residual after one exact line search,

.. math:: \mathcal L(\theta) = \big\|b - \tfrac{q^\top b}{q^\top A q} A q\big\|^2,

minimised by :math:`q \propto A^{-1} b`.  Training right-hand sides: normalised combinations
:math:`\sum_i c_i v_i` of eigenvectors of A with :math:`c_i \sim N(0, 1)`, the low-eigenvalue half weighted ×9
(the paper uses Ritz vectors of 10000 Lanczos steps; for the Dirichlet Poisson matrix the eigenvectors are the
sine modes, which the Ritz vectors converge to, so we use them directly — a deviation).  Model: a small 2-D
convolutional network with residual blocks and average-pool / upsample levels (the paper's is 3-D, one level,
16 filters); Adam.

Checked (``tests/classic/test_dcdm.py``): the identity model reproduces ``scipy.sparse.linalg.cg``'s residual
history (relative difference ≤ 1e-9 over the first 30 iterations, growing with round-off in later ones) and its
iteration count; the exact inverse converges in one iteration; a trained CNN needs fewer iterations than CG on
held-out right-hand sides drawn like its training set.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validate import check_float, check_int

__all__ = [
    "DCDMResult",
    "PoissonCNN",
    "cg",
    "dcdm",
    "dcdm_loss",
    "poisson_eigvecs",
    "poisson_matvec",
    "sample_rhs",
    "train_dcdm_model",
]

Matvec = Callable[[Tensor], Tensor]
Model = Callable[[Tensor], Tensor]


def poisson_matvec(m: int) -> Matvec:
    """The 5-point Dirichlet Laplacian on an m×m grid (4 on the diagonal, −1 to neighbours) as a mat-vec on
    flattened (…, m·m) vectors in row-major order (equal to :func:`descend.classic.sor.laplacian_2d`)."""
    check_int("m", m, 2)

    def matvec(v: Tensor) -> Tensor:
        shape = v.shape
        g = v.reshape(-1, 1, m, m)
        kernel = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], dtype=v.dtype)
        return F.conv2d(g, kernel.view(1, 1, 3, 3), padding=1).reshape(shape)

    return matvec


def poisson_eigvecs(m: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Eigenvalues (ascending, m²) and orthonormal eigenvectors (m² × m², columns) of the m×m Poisson matrix."""
    k = torch.arange(1, m + 1, dtype=dtype)
    s = torch.sin(math.pi * torch.outer(k, k) / (m + 1)) * math.sqrt(2.0 / (m + 1))  # 1-D modes (rows: index)
    lam1 = 2.0 - 2.0 * torch.cos(math.pi * k / (m + 1))
    lam = (lam1[:, None] + lam1[None, :]).reshape(-1)
    vecs = torch.einsum("ik,jl->ijkl", s, s).reshape(m * m, m * m)
    order = torch.argsort(lam)
    return lam[order], vecs[:, order]


def sample_rhs(m: int, count: int, seed: int = 0, low_weight: float = 9.0, dtype: torch.dtype = torch.float64,
               eig: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``count`` unit right-hand sides Σ c_i v_i, c_i ~ N(0, 1), the low-eigenvalue half of the modes ×low_weight."""
    check_int("count", count, 1)
    _lam, vecs = poisson_eigvecs(m, dtype) if eig is None else eig
    n = m * m
    weights = torch.ones(n, dtype=dtype)
    weights[: n // 2] = low_weight
    c = torch.randn(count, n, generator=torch.Generator().manual_seed(seed), dtype=dtype) * weights
    b = c @ vecs.T
    return b / b.norm(dim=1, keepdim=True)


@dataclass(frozen=True)
class DCDMResult:
    x: Tensor
    iterations: int
    residuals: list[float]  # ‖r_k‖ / ‖r_0‖, k = 0..iterations
    converged: bool


def dcdm(matvec: Matvec, b: Tensor, model: Model, x0: Tensor | None = None, tol: float = 1e-4,
         max_iter: int = 100) -> DCDMResult:
    """DCDM (see the module docstring); ``model`` maps a unit residual (n,) to a direction (n,)."""
    check_float("tol", tol, 0.0, 1.0, low_open=True, high_open=True)
    check_int("max_iter", max_iter, 1)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x)
    norm0 = float(r.norm())
    residuals = [1.0]
    if norm0 == 0.0:
        return DCDMResult(x, 0, residuals, True)
    history: list[tuple[Tensor, Tensor, float]] = []  # (p, A p, pᵀ A p) of the last two directions
    for k in range(1, max_iter + 1):
        with torch.no_grad():
            q = model(r / r.norm()).to(b.dtype)
        for p, ap, alpha in history:
            q = q - p * (float(q @ ap) / alpha)
        aq = matvec(q)
        alpha_q = float(q @ aq)
        if not alpha_q > 0.0:
            return DCDMResult(x, k - 1, residuals, False)
        history = [*history[-1:], (q, aq, alpha_q)]
        x = x + q * (float(q @ r) / alpha_q)
        r = b - matvec(x)
        residuals.append(float(r.norm()) / norm0)
        if residuals[-1] < tol:
            return DCDMResult(x, k, residuals, True)
    return DCDMResult(x, max_iter, residuals, False)


def cg(matvec: Matvec, b: Tensor, tol: float = 1e-4, max_iter: int = 1000) -> DCDMResult:
    """Plain conjugate gradients (torch), stopping like :func:`dcdm` (true residuals recorded)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = float(r @ r)
    norm0 = math.sqrt(rr)
    residuals = [1.0]
    for k in range(1, max_iter + 1):
        ap = matvec(p)
        a = rr / float(p @ ap)
        x = x + a * p
        r = r - a * ap
        rr_new = float(r @ r)
        residuals.append(float((b - matvec(x)).norm()) / norm0)
        if residuals[-1] < tol:
            return DCDMResult(x, k, residuals, True)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return DCDMResult(x, max_iter, residuals, False)


class _ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.c2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.c2(F.relu(self.c1(h)))


class PoissonCNN(nn.Module):
    """A small 2-D convolutional direction model: a residual block per level, ``levels`` average-pool /
    upsample levels (a U-net without concatenation), 1 → ``channels`` → 1 channels.  Maps (…, m·m) → (…, m·m).
    """

    def __init__(self, m: int, channels: int = 16, levels: int = 2) -> None:
        super().__init__()
        if m % (2**levels) != 0:
            raise ValueError(f"m must be divisible by 2**levels = {2**levels}, got m={m}")
        self.m = m
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.down = nn.ModuleList([_ResBlock(channels) for _ in range(levels + 1)])
        self.up = nn.ModuleList([_ResBlock(channels) for _ in range(levels)])
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, v: Tensor) -> Tensor:
        shape = v.shape
        h = self.inp(v.reshape(-1, 1, self.m, self.m).to(self.inp.weight.dtype))
        skips: list[Tensor] = []
        for i, block in enumerate(self.down):
            h = block(h)
            if i < len(self.up):
                skips.append(h)
                h = F.avg_pool2d(h, 2)
        for block in self.up:
            h = skips.pop() + F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            h = block(h)
        return self.out(h).reshape(shape).to(v.dtype)


def dcdm_loss(model: nn.Module, matvec: Matvec, b: Tensor) -> Tensor:
    """Mean over the batch of ‖b − A q (qᵀb)/(qᵀAq)‖², q = model(b), rows of b of unit norm."""
    q = model(b)
    aq = matvec(q)
    step = (q * b).sum(dim=1, keepdim=True) / (q * aq).sum(dim=1, keepdim=True)
    return (b - step * aq).pow(2).sum(dim=1).mean()


def train_dcdm_model(m: int, steps: int = 400, batch: int = 32, n_train: int = 2000, lr: float = 1e-3,
                     channels: int = 16, levels: int = 2, seed: int = 0,
                     log: Callable[[int, float], None] | None = None) -> tuple[PoissonCNN, list[float]]:
    """Train :class:`PoissonCNN` on the DCDM loss (float32) for the m×m Poisson matrix; returns (model, losses)."""
    if steps < 1 or batch < 1 or n_train < batch:
        raise ValueError(f"steps, batch must be ≥ 1 and n_train ≥ batch, got {steps}, {batch}, {n_train}")
    torch.manual_seed(seed)
    model = PoissonCNN(m, channels, levels)
    data = sample_rhs(m, n_train, seed=seed, dtype=torch.float32)
    matvec = poisson_matvec(m)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    for step in range(steps):
        idx = torch.randint(0, n_train, (batch,), generator=gen)
        loss = dcdm_loss(model, matvec, data[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log(step, losses[-1])
    model.eval()
    return model, losses


# ------------------------------------------------------------------------------------------------ registry hook
from . import registry  # noqa: E402

_PROBLEMS = {"poisson": "2-D Dirichlet Poisson on an m×m grid (quick m=16, full m=32), held-out unit RHS, tol 1e-4"}


def run(request: registry.RunRequest) -> list[registry.Trace]:
    spec = registry.get("dcdm")
    spec.check_problem(request.problem)
    m = int(request.options.get("m", 16 if request.quick else 32))
    steps = int(request.options.get("steps", 150 if request.quick else 600))
    channels = int(request.options.get("channels", 8 if request.quick else 16))
    n_test = int(request.options.get("n_test", 8 if request.quick else 20))
    tol = float(request.options.get("tol", 1e-4))
    model, losses = train_dcdm_model(m, steps=steps, batch=16, n_train=1000, channels=channels, levels=2,
                                     seed=request.seed,
                                     log=lambda s, v: request.say(f"dcdm train step {s}: loss {v:.3e}"))
    mv = poisson_matvec(m)
    test = sample_rhs(m, n_test, seed=10_000 + request.seed)
    setting: dict[str, registry.Scalar] = {"m": m, "steps": steps, "channels": channels, "tol": tol}
    traces = []
    for name, fn in (("cg", None), ("dcdm-cnn", model)):
        runs = [cg(mv, b, tol=tol) if fn is None else dcdm(mv, b, fn, tol=tol) for b in test]
        its = [r.iterations for r in runs]
        request.say(f"dcdm poisson {name}: mean {np.mean(its):.1f} iterations to {tol:g}")
        curve: dict[str, list[float]] = {"residual": runs[0].residuals}
        if fn is not None:
            curve["train_loss"] = losses
        traces.append(registry.Trace(name, curve, {"mean_iterations": float(np.mean(its)),
                                                   "max_iterations": float(max(its))}, setting))
    return traces


def figure(traces: Sequence[registry.Trace]) -> object:
    """Relative residual vs iteration on one held-out right-hand side, CG against DCDM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for tr in traces:
        ax.semilogy(tr.curve["residual"], "o-", ms=3, label=f"{tr.method} ({tr.summary['mean_iterations']:.1f} it)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("‖r_k‖ / ‖r_0‖")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


registry.register(registry.SolverSpec(
    name="dcdm",
    title="Deep conjugate direction method",
    paper="Kaneda, Akar, Chen, Kala, Hyde, Teran (ICML 2023), A Deep Conjugate Direction Method for Iteratively "
          "Solving Linear Systems",
    problems=_PROBLEMS,
    run=run,
    figure=figure,
    options={"m": "grid side (quick 16, full 32; divisible by 4)", "steps": "Adam training steps (150 / 600)",
             "channels": "CNN width (8 / 16)", "n_test": "held-out right-hand sides (8 / 20)",
             "tol": "relative residual target (1e-4)"},
    figure_caption="Relative residual per iteration of CG and of DCDM with the trained CNN on a held-out RHS",
), replace=True)
