"""The seed papers' example problems, shared by the tests and by ``benchmarks/distributed_seeds.py``.

* Compositional GD (Hanks, Klawonn, Fairbanks): :func:`readme_composition` (AlgebraicOptimization.jl's README
  example), :func:`random_composition`, and :func:`run_against_autograd`, which runs distributed GD and checks
  every iterate against autograd GD on the composite objective.
* Decentralized gradient sliding vs DeFW (Nguyen, Li, Zhao 2024): :func:`sliding_nodes` (ℓ1-constrained
  logistic regression per node) and :func:`sliding_metrics` (optimality gap and consensus error).
* Distributed adversarial training (Zhang et al. 2022): scikit-learn digits (:func:`digits_split`, needs
  scikit-learn), a small CNN, fast-FGSM training with LAMB on this rank's slice of every global batch
  (:func:`train_adversarial`) and PGD-10 robust accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from .compositional import Composite, OpenProblem, compose, distributed_gd
from .dat import LAMB, dat_step, fgsm_fast, pgd
from .sliding import LogisticNode

__all__ = ["EPS", "assembled", "digits_cnn", "digits_split", "random_composition", "readme_composition",
           "robust_accuracy", "run_against_autograd", "sliding_metrics", "sliding_nodes", "sliding_to_target",
           "train_adversarial"]

DT = torch.float64
P = [[2.1154, -0.3038, 0.368, -1.5728, -1.203], [-0.3038, 1.5697, 1.0226, 0.159, -0.946],
     [0.368, 1.0226, 1.847, -0.4916, -1.2668], [-1.5728, 0.159, -0.4916, 2.2192, 1.5315],
     [-1.203, -0.946, -1.2668, 1.5315, 1.9281]]
Q = [[0.2456, 0.3564, -0.0088], [0.3564, 0.5912, -0.0914], [-0.0088, -0.0914, 0.8774]]
R = [[2.0546, -1.333, -0.5263, 0.3189], [-1.333, 1.0481, -0.0211, 0.2462], [-0.5263, -0.0211, 0.951, -0.7813],
     [0.3189, 0.2462, -0.7813, 1.5813]]
a = [-0.26, 0.22, 0.09, 0.19, -0.96]
b = [-0.72, 0.12, 0.41]
c = [0.55, 0.51, 0.6, -0.61]


def _quadratic(M: Any, v: Any) -> OpenProblem:
    Mt, vt = torch.tensor(M, dtype=DT), torch.tensor(v, dtype=DT)
    return OpenProblem(lambda x: x @ Mt @ x + vt @ x, len(v), ())


def _quadratic_of(M: torch.Tensor, v: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: x @ M @ x + v @ x


def readme_composition() -> tuple[Composite, list[torch.Tensor], list[torch.Tensor]]:
    """The example of AlgebraicOptimization.jl's README (three quadratics xᵀMx + vᵀx on 5, 3 and 4 local
    variables; returns the composite and the M's and v's).  p1 exposes local vars 2, 4
    (1-based) as (u, x); p2 all as (u, w, y); p3 vars 1, 3, 4 as (u, w, z); junctions u, w, x, y, z = 0..4."""
    mats, vecs = [P, Q, R], [a, b, c]
    ports = [(1, 3), (0, 1, 2), (0, 2, 3)]
    problems = [OpenProblem(_quadratic(M, v).objective, len(v), pt) for M, v, pt in zip(mats, vecs, ports, strict=True)]
    comp = compose(problems, [(0, 2), (0, 1, 3), (0, 1, 4)], 5)
    return comp, [torch.tensor(M, dtype=DT) for M in mats], [torch.tensor(v, dtype=DT) for v in vecs]


def random_composition(n_problems: int = 6, seed: int = 0) -> tuple[Composite, list[torch.Tensor], list[torch.Tensor]]:
    """``n_problems`` random strongly convex quadratics on 3-6 variables, 1-4 of them exposed at 8 junctions."""
    g = torch.Generator().manual_seed(seed)
    n_j = 8
    problems, mats, vecs, wiring = [], [], [], []  # junctions relabelled below so that every one is used
    for _ in range(n_problems):
        n = int(torch.randint(3, 7, (1,), generator=g))
        k = int(torch.randint(1, min(n, 4) + 1, (1,), generator=g))
        B = torch.randn(n, n, generator=g, dtype=DT)
        M = B @ B.T / n + 0.5 * torch.eye(n, dtype=DT)
        v = torch.randn(n, generator=g, dtype=DT)
        ports = tuple(int(i) for i in torch.randperm(n, generator=g)[:k])
        junctions = tuple(int(j) for j in torch.randperm(n_j, generator=g)[:k])
        problems.append(OpenProblem(_quadratic_of(M, v), n, ports))
        mats.append(M)
        vecs.append(v)
        wiring.append(junctions)
    used = sorted({j for w in wiring for j in w})
    relabel = {j: k for k, j in enumerate(used)}
    return compose(problems, [tuple(relabel[j] for j in w) for w in wiring], len(used)), mats, vecs


def assembled(comp: Composite, mats: list[torch.Tensor], vecs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The composite quadratic's ``(P, q)``: ``F(x) = xᵀPx + qᵀx``."""
    Ptot = torch.zeros(comp.n_vars, comp.n_vars, dtype=DT)
    qtot = torch.zeros(comp.n_vars, dtype=DT)
    for leg, M, v in zip(comp.legs, mats, vecs, strict=True):
        idx = torch.tensor(leg)
        Ptot.index_put_((idx[:, None], idx[None, :]), M, accumulate=True)
        qtot.index_add_(0, idx, v)
    return Ptot, qtot


def run_against_autograd(comp: Composite, mats: list[torch.Tensor], vecs: list[torch.Tensor], comm: Any,
                         workers: list[int], readme_steps: int | None = None) -> dict[str, Any]:
    """Distributed GD over ``comm`` (this process hosts ``workers``) from x0 = 100·1, checked at every step
    against autograd GD on the composite, and its end point against the closed-form minimiser ``−½ P⁻¹ q``.

    ``readme_steps``: the README's run (γ = 0.1, that many steps); else γ = 2/(λ_min + λ_max) of ∇²F and
    as many steps as the contraction needs to bring ‖x0 − x*‖ below 1e-10."""
    Ptot, qtot = assembled(comp, mats, vecs)
    lam = torch.linalg.eigvalsh(2 * Ptot)
    gamma = 0.1 if readme_steps is not None else 2.0 / float(lam.min() + lam.max())
    rho = max(abs(1 - gamma * float(lam.min())), abs(1 - gamma * float(lam.max())))
    x0 = torch.full((comp.n_vars,), 100.0, dtype=DT)
    xstar = torch.linalg.solve(2 * Ptot, -qtot)
    steps = (readme_steps if readme_steps is not None
             else math.ceil(math.log(1e-10 / float((x0 - xstar).norm())) / math.log(rho)))
    ref = x0.clone()
    worst = [0.0]

    def check(t: int, x: torch.Tensor) -> None:
        nonlocal ref
        r = ref.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(comp.objective(r), r)
        ref = (ref - gamma * grad).detach()
        worst[0] = max(worst[0], float((x - ref).abs().max() / ref.abs().max()))

    local = distributed_gd(comp, x0, gamma, steps, comm, workers, callback=check)
    err = max(float((local[i] - comp.pullback(i, xstar)).abs().max()) for i in workers)
    return {"worst_step_diff": worst[0], "minimiser_err": err, "steps": steps, "rho": rho,
            "rounds": comm.rounds, "lam_min": float(lam.min())}


def sliding_nodes(m: int = 8, d: int = 10, n: int = 20, seed: int = 0) -> dict[int, LogisticNode]:
    """``m`` nodes of ℓ1-constrained logistic regression: ``n`` Gaussian samples each in ``d`` dims, labels from
    a 3-sparse model with noise (the test instance of tests/distributed/test_sliding.py)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.zeros(d, dtype=DT)
    w[:3] = torch.randn(3, generator=g, dtype=DT) * 3
    out = {}
    for i in range(m):
        A = torch.randn(n, d, generator=g, dtype=DT)
        y = torch.sign(A @ w + 0.5 * torch.randn(n, generator=g, dtype=DT))
        out[i] = LogisticNode(A, y)
    return out


def sliding_metrics(nodes: dict[int, LogisticNode], fstar: float, xs: dict[int, torch.Tensor]) -> tuple[float, float]:
    """(F(x̄) − F*, consensus error max_i ‖x_i − x̄‖) of the nodes' iterates ``xs`` around their average x̄."""
    avg = torch.stack(list(xs.values())).mean(0)
    gap = sum(float(n.value(avg)) for n in nodes.values()) - fstar
    return gap, max(float((v - avg).norm()) for v in xs.values())


def sliding_to_target(graph_name: str, method: str, steps: int, *, dim: int = 50, samples: int = 40,
                      radius: float = 5.0, r_scale: float = 0.05, tol_scale: float = 0.01, target: float = 1e-3,
                      fstar_iters: int = 20000) -> dict[str, Any]:
    """One in-process run of ``method`` ("sliding" or "defw") on the 8-node ring or 3×3 torus instance
    (:func:`sliding_nodes` with ``dim``, ``samples``; sliding with R = ``r_scale``·L_f and CndG tolerance
    ``tol_scale``·L_f·(2·radius)²/(k(k+1))): the counters of node 0 at the first iteration where both
    F(x̄) − F* ≤ ``target`` and consensus ≤ ``target`` (``hit``, None if never within ``steps``), and the best
    gap / consensus reached (``final``: at the last iteration)."""
    from ._comm import InProcess
    from .sliding import centralized_optimum, defw, gradient_sliding, l1_lo, ring, torus

    if method not in ("sliding", "defw"):
        raise ValueError(f"method must be 'sliding' or 'defw', got {method!r}")
    graph = ring(8) if graph_name == "ring" else torus(3, 3)
    nodes = sliding_nodes(m=len(graph), d=dim, n=samples)
    _, fstar = centralized_optimum(list(nodes.values()), radius, fstar_iters)
    lf = max(float(torch.linalg.matrix_norm(n.A, 2) ** 2) / (4 * len(n.A)) for n in nodes.values())
    res: dict[str, Any] = {"graph": graph_name, "method": method, "hit": None, "final": None}

    def record(k: int, xs: dict[int, torch.Tensor], cnt: dict[int, Any]) -> None:
        gap, cons = sliding_metrics(nodes, fstar, xs)
        res["final"] = {"k": k, "gap": gap, "consensus": cons, **vars(cnt[0])}
        if res["hit"] is None and gap <= target and cons <= target:
            res["hit"] = dict(res["final"])

    if method == "sliding":
        gradient_sliding(nodes, graph, l1_lo(radius), dim, steps, InProcess(), lipschitz=lf, r=r_scale * lf,
                         tol=tol_scale * lf * (2 * radius) ** 2, callback=record)
    else:
        defw(nodes, graph, l1_lo(radius), dim, steps, InProcess(), callback=record)
    return res


EPS = 0.1


def digits_split(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's digits (8×8, pixels in [0, 1]), shuffled by ``seed``: 1400 training and 397 test images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def digits_cnn() -> nn.Module:
    """Two convolutions and a linear head (≈ 10k parameters)."""
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10))


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    """Accuracy under PGD-10 (ε = :data:`EPS`, step ε/4, random start seeded by ``seed``)."""
    model.eval()
    xa = pgd(model, x, y, EPS, EPS / 4, 10, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((model(xa).argmax(1) == y).float().mean())


def train_adversarial(rank: int, world: int, seed: int, bits: int | None, epochs: int, total_batch: int = 64,
          lr: float = 0.01, distributed: bool = True) -> dict[str, Any]:
    """Train on this rank's slice of each global batch (world = 1: single-process adversarial training)."""
    xtr, ytr, xte, yte = digits_split()
    torch.manual_seed(seed)
    model = digits_cnn()
    opt = LAMB(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(1000 * seed + rank)
    order = torch.Generator().manual_seed(seed)
    local = total_batch // world
    attack = partial(fgsm_fast, eps=EPS, generator=gen)
    for _ in range(epochs):
        perm = torch.randperm(len(ytr), generator=order)
        for start in range(0, len(ytr) - total_batch + 1, total_batch):
            idx = perm[start + rank * local: start + (rank + 1) * local]
            dat_step(model, opt, xtr[idx], ytr[idx], attack, bits=bits, generator=gen, distributed=distributed)
    model.eval()
    with torch.no_grad():
        clean = float((model(xte).argmax(1) == yte).float().mean())
    return {"robust": robust_accuracy(model, xte, yte, seed), "clean": clean}
