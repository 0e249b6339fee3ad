r"""AdaSketch-Newton: SQP on the exact augmented Lagrangian with randomized iterative sketching.

Paper: Ilgee Hong, Sen Na, Michael W. Mahoney, Mladen Kolar (2023), *Constrained Optimization via Exact Augmented
Lagrangian and Randomized Iterative Sketching*, ICML 2023 (arXiv 2305.18379).  Reference code (Julia):
``IlgeeHong/AdaSketch-Newton`` (``*/AdaSketchNewtonGV``, ``*/AdaSketchNewtonRK``, ``CUTEst/Parameter/Param.jl``),
read to understand, not copied.

Problem :math:`\min f(x)\ \text{s.t.}\ c(x) = 0`, Lagrangian :math:`L = f + \lambda^\top c`, :math:`G = \nabla c`.
Merit (exact augmented Lagrangian) :math:`\mathcal L_\eta = f + \lambda^\top c + \tfrac{\eta_1}{2}\|c\|^2 +
\tfrac{\eta_2}{2}\|\nabla_x L\|^2`.  One outer iteration:

.. math::

    &\xi_G = \lambda_{\min}(GG^\top) \ (\text{stop "singular" if } < 10^{-2});\quad
     B = \nabla^2_x L + t I,\ t = \xi_B + \|\nabla^2_x L\|_F \text{ if } \lambda_{\min}(Z^\top\nabla^2_x L Z) <
     10^{-6} \text{ else } 0 \\
    &\psi = 20\max(\|B\|_F^2, 1)/(\min(\xi_G,1)\min(\xi_B,1)),\ \Upsilon = \max(\|G\|_F, \|\nabla^2_xL\|_F, 1),\
     \delta \leftarrow \max(10^{-6}, \min(\delta, \tfrac{(1/2-\beta)\eta_2}{(1+\eta_1+\eta_2)\Upsilon^2\psi^2})) \\
    &K = \begin{pmatrix} B & G^\top \\ G & 0\end{pmatrix},\ b = -\begin{pmatrix}\nabla_x L\\ c\end{pmatrix};\
     \text{sketch } z \text{ until } \|K\|_F\,\psi\,\|Kz - b\| \le \theta\,\delta\,\|b\| \text{ (adaptive accuracy)}\\
    &\quad\text{Gaussian (GV): } s\sim N(0,I),\ z \leftarrow z - \frac{s^\top r}{\|K^\top s\|^2}K^\top s;\qquad
     \text{Kaczmarz (RK): } i\sim U,\ z \leftarrow z - \frac{r_i}{\|K_i\|^2}K_i^\top \\
    &\text{if } \nabla\mathcal L_\eta^\top z > -\tfrac{\eta_2}{2}\|b\|^2:\ \eta_1 \leftarrow \nu^2\eta_1,\
     \eta_2 \leftarrow \eta_2/\nu,\ \delta \leftarrow \max(10^{-6}, \min(\delta/\nu^4, \delta_{\rm trial}))
     \text{ and re-sketch} \\
    &\alpha = 1;\ \text{halve until } \mathcal L_\eta(x+\alpha\Delta x, \lambda+\alpha\Delta\lambda) \le
     \mathcal L_\eta + \alpha\beta\nabla\mathcal L_\eta^\top z;\quad (x,\lambda) \mathrel{+}= \alpha z

with :math:`\nabla\mathcal L_\eta = (\nabla_xL + \eta_2\nabla^2_xL\,\nabla_xL + \eta_1G^\top c,\
c + \eta_2 G\nabla_xL)`.  Both sketch updates are orthogonal projections onto an affine set that contains
:math:`K^{-1}b`, so :math:`\|z - K^{-1}b\|` never increases (checked in the tests).  ``method="direct"`` solves
:math:`Kz = b` exactly: the exact-Newton SQP on the same merit, the reference the tests compare against.

Defaults (``Param.jl``): η1 = 1, η2 = 0.1, δ = 0.1, ξ_B = 0.1, β = 0.1, ν = 1.5, KKT tolerance 1e-4,
10⁴ outer iterations, 10⁵ sketch steps per solve, θ = 1 (pass ``theta`` < 1, or a callable of k going to 0, for the
superlinear variant).  Norms of matrices are Frobenius, as Julia's ``norm`` is.

Checked (tests/classic/test_adasketch.py): monotone ‖z − K⁻¹b‖ for both sketches on random nonsingular K;
HS6, HS7, HS28, HS39, HS40, HS48, HS51, HS52, BT2 reach their published optima; constrained logistic regression
(10 linear constraints + ‖x‖² = 1) reaches KKT ≤ 1e-4 with unit steps at the end and agrees with the direct SQP.
Deviations from the reference code: (1) the merit gradient uses ∇²ₓL (the paper's formula; the code uses ∇²f,
which is not the gradient of the merit when c is nonlinear); (2) the sketch starts from r = Kz − b = −b (the code
starts from r = b, which makes its first sketch step move the wrong way); (3) iterations stop with status
``"singular"`` instead of returning NaNs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch.autograd.functional import hessian, jacobian

from . import registry

__all__ = [
    "EqualityProblem",
    "SQPResult",
    "adasketch_newton",
    "constrained_logistic",
    "cutest_problems",
    "sketch_solve",
]


@dataclass
class EqualityProblem:
    """min f(x) s.t. c(x) = 0 with torch-differentiable ``f`` (scalar) and ``c`` (vector of m)."""

    name: str
    f: Callable[[torch.Tensor], torch.Tensor]
    c: Callable[[torch.Tensor], torch.Tensor]
    x0: torch.Tensor
    lam0: torch.Tensor | None = None
    fstar: float | None = None
    xstar: torch.Tensor | None = None


@dataclass
class SQPResult:
    x: torch.Tensor
    lam: torch.Tensor
    kkt: list[float]
    alpha: list[float]
    sketch_steps: list[int]
    fvals: list[float]
    status: str  # "converged" | "max_iter" | "singular"
    eta: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, float] = field(default_factory=dict)


def sketch_solve(
    k: torch.Tensor,
    rhs: torch.Tensor,
    z: torch.Tensor,
    *,
    method: str,
    threshold: float,
    max_steps: int,
    generator: torch.Generator,
    chunk: int = 256,
    record: Callable[[torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, int]:
    """Randomized iterative sketching for ``k z = rhs`` from ``z`` until ‖k z − rhs‖ ≤ ``threshold`` or
    ``max_steps``.  ``method``: ``"gaussian"`` (sketch-and-project with a Gaussian vector) or ``"kaczmarz"``
    (uniform random row).  Returns (z, steps taken).  ``record`` is called with z after every step."""
    if method not in ("gaussian", "kaczmarz"):
        raise ValueError(f"method must be 'gaussian' or 'kaczmarz', got {method!r}")
    # The sweep is inherently sequential with O(n) work per step, so per-op overhead dominates: it runs on numpy
    # views of the float64 tensors (≈10× less overhead per small op than torch); randomness comes from the torch
    # generator so runs are reproducible from ``seed``.
    n = rhs.numel()
    kn = k.detach().to(torch.float64).numpy()
    bn = rhs.detach().to(torch.float64).numpy()
    zn = z.detach().to(torch.float64).numpy().copy()
    r = kn @ zn - bn
    thr2 = threshold * threshold
    steps = 0
    row_sq = (kn * kn).sum(1)
    while steps < max_steps and float(r @ r) > thr2:
        size = min(chunk, max_steps - steps)
        if method == "gaussian":
            s = torch.randn(size, n, generator=generator, dtype=torch.float64).numpy()
            w = s @ kn  # rows Kᵀs_j
            kw = w @ kn.T  # rows KKᵀs_j: the change of the residual
            den = (w * w).sum(1)
            for j in range(size):
                coef = float(s[j] @ r) / den[j]
                zn -= coef * w[j]
                r -= coef * kw[j]
                steps += 1
                if record is not None:
                    record(torch.from_numpy(zn.copy()))
                if float(r @ r) <= thr2:
                    break
        else:
            rows = torch.randint(0, n, (size,), generator=generator).tolist()
            for i in rows:
                steps += 1
                if row_sq[i] == 0.0:
                    continue
                coef = r[i] / row_sq[i]
                zn -= coef * kn[i]
                r -= coef * (kn @ kn[i])
                if record is not None:
                    record(torch.from_numpy(zn.copy()))
                if float(r @ r) <= thr2:
                    break
        r = kn @ zn - bn  # remove the drift of the recursive residual update once per chunk
    z = torch.from_numpy(zn)
    return z, steps


def _grad_jac(prob: EqualityProblem, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
    # torch.autograd.functional, not torch.func: the latter's first call costs ~10 s of lazy imports
    xg = x.detach().requires_grad_(True)
    fx = prob.f(xg)
    (gf,) = torch.autograd.grad(fx, xg)
    cx = prob.c(x.detach())
    jac = jacobian(prob.c, x.detach()).reshape(cx.numel(), x.numel())
    return fx.detach(), gf.detach(), cx.detach(), jac.detach()


def _derivatives(prob: EqualityProblem, x: torch.Tensor, lam: torch.Tensor) -> tuple[torch.Tensor, ...]:
    fx, gf, cx, jac = _grad_jac(prob, x)
    hl = hessian(lambda y: prob.f(y) + lam.dot(prob.c(y)), x.detach())
    return fx, gf, cx, jac, 0.5 * (hl + hl.T).detach()


def _merit(prob: EqualityProblem, x: torch.Tensor, lam: torch.Tensor, eta1: float, eta2: float) -> float:
    fx, gf, cx, jac = _grad_jac(prob, x)
    gl = gf + jac.T @ lam
    return float(fx + lam.dot(cx) + 0.5 * eta1 * cx.dot(cx) + 0.5 * eta2 * gl.dot(gl))


def adasketch_newton(
    prob: EqualityProblem,
    *,
    method: str = "gaussian",
    eta1: float = 1.0,
    eta2: float = 0.1,
    delta: float = 0.1,
    xi_b: float = 0.1,
    beta: float = 0.1,
    nu: float = 1.5,
    tol: float = 1e-4,
    max_iter: int = 10_000,
    max_sketch: int = 100_000,
    theta: float | Callable[[int], float] = 1.0,
    reduced_hessian_floor: float = 1e-6,
    singular_floor: float = 1e-2,
    seed: int = 0,
    callback: Callable[[int, float, float], None] | None = None,
) -> SQPResult:
    """Run AdaSketch-Newton (``method`` = ``"gaussian"`` | ``"kaczmarz"``) or exact-Newton SQP on the same merit
    (``method="direct"``) from ``prob.x0`` (λ0 = ``prob.lam0`` or 0) until ‖(∇ₓL, c)‖ ≤ ``tol``."""
    if method not in ("gaussian", "kaczmarz", "direct"):
        raise ValueError(f"method must be 'gaussian', 'kaczmarz' or 'direct', got {method!r}")
    for name, value in (("eta1", eta1), ("eta2", eta2), ("delta", delta), ("xi_b", xi_b), ("tol", tol)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if not 0 < beta < 0.5:
        raise ValueError(f"beta must be in (0, 0.5), got {beta}")
    if not nu > 1:
        raise ValueError(f"nu must be > 1, got {nu}")
    gen = torch.Generator().manual_seed(seed)
    x = prob.x0.detach().clone().to(torch.float64)
    m = prob.c(x).numel()
    n = x.numel()
    lam = torch.zeros(m, dtype=torch.float64) if prob.lam0 is None else prob.lam0.detach().clone().to(torch.float64)
    fx, gf, cx, jac, hl = _derivatives(prob, x, lam)
    gl = gf + jac.T @ lam
    kkt = [float(torch.linalg.vector_norm(torch.cat([gl, cx])))]
    alphas: list[float] = []
    steps_log: list[int] = []
    fvals = [float(fx)]
    status = "max_iter"
    it = 0
    while it < max_iter:
        if kkt[-1] <= tol:
            status = "converged"
            break
        xi_g = float(torch.linalg.eigvalsh(jac @ jac.T)[0])
        if xi_g < singular_floor:
            status = "singular"
            break
        shift = 0.0
        if m < n:
            q, _ = torch.linalg.qr(jac.T, mode="complete")
            z_basis = q[:, m:]
            if float(torch.linalg.eigvalsh(z_basis.T @ hl @ z_basis)[0]) < reduced_hessian_floor:
                shift = xi_b + float(torch.linalg.matrix_norm(hl))
        bmat = hl + shift * torch.eye(n, dtype=torch.float64)
        psi = 20.0 * max(float(torch.linalg.matrix_norm(bmat)) ** 2, 1.0) / (min(xi_g, 1.0) * min(xi_b, 1.0))
        upsilon = max(float(torch.linalg.matrix_norm(jac)), float(torch.linalg.matrix_norm(hl)), 1.0)

        def delta_trial(e1: float, e2: float, psi: float = psi, upsilon: float = upsilon) -> float:
            return (0.5 - beta) * e2 / ((1 + e1 + e2) * upsilon**2 * psi**2)

        delta = max(1e-6, min(delta, delta_trial(eta1, eta2)))
        kmat = torch.cat([torch.cat([bmat, jac.T], 1),
                          torch.cat([jac, torch.zeros(m, m, dtype=torch.float64)], 1)], 0)
        rhs = -torch.cat([gl, cx])
        knorm = float(torch.linalg.matrix_norm(kmat))
        th = theta(it) if callable(theta) else theta
        z = torch.zeros(n + m, dtype=torch.float64)
        taken = 0
        while True:
            if method == "direct":
                z = torch.linalg.solve(kmat, rhs)
            else:
                threshold = th * delta * float(torch.linalg.vector_norm(rhs)) / (knorm * psi)
                z, t = sketch_solve(kmat, rhs, z, method=method, threshold=threshold, max_steps=max_sketch,
                                    generator=gen)
                taken += t
            grad_merit = torch.cat([gl + eta2 * (hl @ gl) + eta1 * (jac.T @ cx), cx + eta2 * (jac @ gl)])
            slope = float(grad_merit.dot(z))
            if eta1 > 1e8 or eta2 < 1e-8 or slope <= -(eta2 / 2) * float(rhs.dot(rhs)):
                break
            eta1 *= nu**2
            eta2 /= nu
            delta = max(1e-6, min(delta / nu**4, delta_trial(eta1, eta2)))
        merit0 = float(fx + lam.dot(cx) + 0.5 * eta1 * cx.dot(cx) + 0.5 * eta2 * gl.dot(gl))
        alpha = 1.0
        for _ in range(60):
            trial = _merit(prob, x + alpha * z[:n], lam + alpha * z[n:], eta1, eta2)
            if trial <= merit0 + alpha * beta * slope:
                break
            alpha *= 0.5
        x = x + alpha * z[:n]
        lam = lam + alpha * z[n:]
        it += 1
        fx, gf, cx, jac, hl = _derivatives(prob, x, lam)
        gl = gf + jac.T @ lam
        kkt.append(float(torch.linalg.vector_norm(torch.cat([gl, cx]))))
        alphas.append(alpha)
        steps_log.append(taken)
        fvals.append(float(fx))
        if callback is not None:
            callback(it, kkt[-1], alpha)
    else:
        if kkt[-1] <= tol:
            status = "converged"
    return SQPResult(x=x, lam=lam, kkt=kkt, alpha=alphas, sketch_steps=steps_log, fvals=fvals, status=status,
                     eta=(eta1, eta2))


# ----------------------------------------------------------------------------------------------------- problems


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def cutest_problems() -> dict[str, EqualityProblem]:
    """Small equality-constrained CUTEst / Hock–Schittkowski problems written out in torch, with the optima
    published by Hock & Schittkowski (1981) and CUTEst's BT set (Boggs & Tolle 1989)."""
    s2, s3 = math.sqrt(2.0), math.sqrt(3.0)
    probs = [
        EqualityProblem("HS6", lambda x: (1 - x[0]) ** 2, lambda x: torch.stack([10 * (x[1] - x[0] ** 2)]),
                        _t(-1.2, 1.0), fstar=0.0, xstar=_t(1.0, 1.0)),
        EqualityProblem("HS7", lambda x: torch.log1p(x[0] ** 2) - x[1],
                        lambda x: torch.stack([(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4]),
                        _t(2.0, 2.0), fstar=-s3, xstar=_t(0.0, s3)),
        EqualityProblem("HS28", lambda x: (x[0] + x[1]) ** 2 + (x[1] + x[2]) ** 2,
                        lambda x: torch.stack([x[0] + 2 * x[1] + 3 * x[2] - 1]),
                        _t(-4.0, 1.0, 1.0), fstar=0.0, xstar=_t(0.5, -0.5, 0.5)),
        EqualityProblem("HS39", lambda x: -x[0],
                        lambda x: torch.stack([x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2]),
                        _t(2.0, 2.0, 2.0, 2.0), fstar=-1.0, xstar=_t(1.0, 1.0, 0.0, 0.0)),
        EqualityProblem("HS40", lambda x: -x[0] * x[1] * x[2] * x[3],
                        lambda x: torch.stack([x[0] ** 3 + x[1] ** 2 - 1, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]]),
                        _t(0.8, 0.8, 0.8, 0.8), fstar=-0.25,
                        xstar=_t(2 ** (-1 / 3), 2 ** (-1 / 2), 2 ** (-11 / 12), 2 ** (-1 / 4))),
        EqualityProblem("HS48", lambda x: (x[0] - 1) ** 2 + (x[1] - x[2]) ** 2 + (x[3] - x[4]) ** 2,
                        lambda x: torch.stack([x.sum() - 5, x[2] - 2 * (x[3] + x[4]) + 3]),
                        _t(3.0, 5.0, -3.0, 2.0, -2.0), fstar=0.0, xstar=torch.ones(5, dtype=torch.float64)),
        EqualityProblem("HS51", lambda x: (x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2
                        + (x[4] - 1) ** 2,
                        lambda x: torch.stack([x[0] + 3 * x[1] - 4, x[2] + x[3] - 2 * x[4], x[1] - x[4]]),
                        _t(2.5, 0.5, 2.0, -1.0, 0.5), fstar=0.0, xstar=torch.ones(5, dtype=torch.float64)),
        EqualityProblem("HS52", lambda x: (4 * x[0] - x[1]) ** 2 + (x[1] + x[2] - 2) ** 2 + (x[3] - 1) ** 2
                        + (x[4] - 1) ** 2,
                        lambda x: torch.stack([x[0] + 3 * x[1], x[2] + x[3] - 2 * x[4], x[1] - x[4]]),
                        _t(2.0, 2.0, 2.0, 2.0, 2.0), fstar=1859.0 / 349.0,
                        xstar=_t(-33 / 349, 11 / 349, 180 / 349, -158 / 349, 11 / 349)),
        EqualityProblem("BT2", lambda x: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
                        lambda x: torch.stack([x[0] * (1 + x[1] ** 2) + x[2] ** 4 - 4 - 3 * s2]),
                        _t(10.0, 10.0, 10.0), fstar=0.0325682002513),
    ]
    return {p.name: p for p in probs}


def constrained_logistic(n_samples: int = 500, dim: int = 20, n_linear: int = 10, *, seed: int = 0
                         ) -> EqualityProblem:
    """min (1/N) Σ log(1 + exp(−y_i z_iᵀx)) s.t. Ax = b (``n_linear`` rows, A ~ N(0,1)) and ‖x‖² = 1; x0 = 1,
    λ0 = 1 (the reference's start).  Deviation: b = A u with u uniform on the unit sphere (b ~ N(0,1) as in the
    reference makes the set {Ax = b, ‖x‖ = 1} empty whenever ‖A⁺b‖ > 1, which is likely)."""
    gen = torch.Generator().manual_seed(seed)
    zf = torch.randn(n_samples, dim, generator=gen, dtype=torch.float64)
    w = torch.randn(dim, generator=gen, dtype=torch.float64)
    y = torch.sign(zf @ w + 0.5 * torch.randn(n_samples, generator=gen, dtype=torch.float64))
    y[y == 0] = 1.0
    yz = y.unsqueeze(-1) * zf
    a = torch.randn(n_linear, dim, generator=gen, dtype=torch.float64)
    u = torch.randn(dim, generator=gen, dtype=torch.float64)
    b = a @ (u / torch.linalg.vector_norm(u))

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-(yz @ x)).mean()

    def c(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([a @ x - b, (x.dot(x) - 1).reshape(1)])

    return EqualityProblem("constrained-logistic", f, c, torch.ones(dim, dtype=torch.float64),
                           lam0=torch.ones(n_linear + 1, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------ registry hook

_PROBLEMS = {
    "logistic": "logistic regression N=500, d=20 s.t. 10 linear constraints and ‖x‖² = 1",
    "cutest": "HS6, HS7, HS28, HS39, HS40, HS48, HS51, HS52, BT2 (written out in torch)",
    **{name: f"CUTEst {name} alone" for name in ("HS6", "HS7", "HS28", "HS39", "HS40", "HS48", "HS51", "HS52",
                                                 "BT2")},
}


def run(request: registry.RunRequest) -> list[registry.Trace]:
    spec = registry.get("adasketch")
    spec.check_problem(request.problem)
    tol = float(request.options.get("tol", 1e-4))
    methods = str(request.options.get("methods", "gaussian,kaczmarz,direct")).split(",")
    for meth in methods:
        if meth not in ("gaussian", "kaczmarz", "direct"):
            raise ValueError(f"--set methods must be a comma list of gaussian, kaczmarz, direct; got {meth!r}")
    if request.problem == "logistic":
        probs = [constrained_logistic(seed=request.seed)]
    elif request.problem == "cutest":
        probs = list(cutest_problems().values())
    else:
        probs = [cutest_problems()[request.problem]]
    traces = []
    for prob in probs:
        for meth in methods:
            res = adasketch_newton(prob, method=meth, tol=tol, seed=request.seed)
            fgap = abs(res.fvals[-1] - prob.fstar) if prob.fstar is not None else float("nan")
            request.say(f"adasketch {prob.name} {meth}: {res.status} after {len(res.alpha)} iterations, "
                        f"KKT {res.kkt[-1]:.1e}, sketch steps {sum(res.sketch_steps)}, |f − f*| {fgap:.1e}")
            traces.append(registry.Trace(
                f"{prob.name}:{meth}",
                {"kkt": res.kkt, "alpha": [1.0, *res.alpha], "sketch_steps": [0.0, *map(float, res.sketch_steps)]},
                {"iterations": float(len(res.alpha)), "final_kkt": res.kkt[-1], "f_gap": fgap,
                 "converged": float(res.status == "converged"), "total_sketch_steps": float(sum(res.sketch_steps))},
                {"tol": tol}))
    return traces


def figure(traces: Sequence[registry.Trace]) -> object:
    """Paper-style: KKT residual vs outer iteration, one line per (problem, sketch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    styles = {"gaussian": "-", "kaczmarz": "--", "direct": ":"}
    for t in traces:
        meth = t.method.split(":")[-1]
        ax.semilogy(range(len(t.curve["kkt"])), t.curve["kkt"], styles.get(meth, "-"), label=t.method)
    ax.set_xlabel("outer iteration")
    ax.set_ylabel("‖(∇ₓL, c)‖")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


registry.register(registry.SolverSpec(
    name="adasketch",
    title="AdaSketch-Newton (exact augmented Lagrangian + randomized iterative sketching)",
    paper="Hong, Na, Mahoney, Kolar (ICML 2023), Constrained Optimization via Exact Augmented Lagrangian and "
          "Randomized Iterative Sketching",
    problems=_PROBLEMS,
    run=run,
    figure=figure,
    options={"tol": "KKT tolerance (default 1e-4)",
             "methods": "comma list of gaussian, kaczmarz, direct (default all three)"},
    figure_caption="KKT residual per outer iteration: Gaussian sketch (solid), Kaczmarz (dashed), direct (dotted)",
), replace=True)
