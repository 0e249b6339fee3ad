r"""Decentralized constrained optimization with a linear-optimization oracle: stochastic gradient sliding
(inexact primal–dual sliding with conditional-gradient sliding) and the decentralized Frank–Wolfe baseline.

Paper: H. Nguyen, Y. Li, T. Zhao (2024), "Stochastic Constrained Decentralized Optimization for Machine
Learning with Fewer Data Oracles: a Gradient Sliding Approach", arXiv:2404.02511 (no public code; its full
text was not retrievable here, so the step-size rules below are this module's, not verified against it).
Building blocks: conditional gradient sliding, G. Lan & Y. Zhou (2016), "Conditional Gradient Sliding for
Convex Optimization", SIAM J. Optim. 26(2), Alg. 1 + the CndG procedure; the primal–dual (Laplacian) form of
consensus as in G. Lan, S. Lee, Y. Zhou (2020), "Communication-efficient algorithms for decentralized and
stochastic optimization", Math. Program. 180.  Baseline: H.-T. Wai, J. Lafond, A. Scaglione, E. Moulines
(2017), "Decentralized Frank–Wolfe Algorithm for Convex and Nonconvex Problems", IEEE TAC, Alg. 2 (DeFW with
gradient tracking).

Problem: ``min_{x ∈ X} Σ_i f_i(x)`` over a connected graph with Laplacian ``L``; ``X`` has a linear
minimization oracle ``LO(c) = argmin_{v∈X} ⟨c, v⟩`` (here the ℓ1 ball).  Reformulation: private copies
``x_i ∈ X``, constraint ``(L ⊗ I) x = 0``, saddle ``min_x max_y Σ f_i(x_i) + ⟨y, (L ⊗ I) x⟩``.

Sliding (``gradient_sliding``), node i, outer iteration k = 1..N (γ_k = 3/(k+2), β_k = β·3/(k+1),
η_k = η/(k(k+1)), θ = 1, σ the dual step)::

    x̲_i = (1 − γ_k) x̄_i + γ_k x_i
    g_i = ∇̃ f_i(x̲_i)                                  ONE stochastic gradient (batch b)  [gradient samples]
    s_i = (L (2y^k − y^{k−1}))_i                        one neighbour exchange             [communication]
    x_i = CndG(g_i + s_i, x_i, β_k, η_k)               Frank–Wolfe on the prox subproblem [LO calls]:
          u ← x_i;  repeat v = LO(c + β_k(u − x_i)),  V = ⟨c + β_k(u − x_i), u − v⟩,
                    stop if V ≤ η_k,  u ← u + min(1, V/(β_k‖v − u‖²)) (v − u)
    x̄_i = (1 − γ_k) x̄_i + γ_k x_i
    y_i ← y_i + σ (L x̄)_i                               one neighbour exchange             [communication]

The gradient is computed once per outer step at the accelerated point (CGS: O(1/√ε) gradients on smooth
problems) and the projection onto X is replaced by many cheap LO calls; the dual ascent on the consensus
constraint uses only graph edges.  Output: x̄ (per node) and its network average.

DeFW (``defw``), node i, t = 1..T, Metropolis mixing W, γ_t = 2/(t+1)::

    x̂_i = Σ_j W_ij x_j                                  [communication]
    s_i = Σ_j W_ij s_j + ∇̃f_i(x̂_i) − ∇̃f_i(x̂_i^{prev})  (gradient tracking)  [communication, 1 gradient]
    x_i = (1 − γ_t) x̂_i + γ_t LO(s_i)                   [1 LO call]

Nodes run the same code in one process (:class:`~._comm.InProcess`) or one per gloo process
(:class:`~._comm.TorchDistributed`); counters (:class:`Counters`) are per node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ._comm import Communicator

__all__ = ["Counters", "LogisticNode", "defw", "gradient_sliding", "l1_lo", "laplacian_apply", "metropolis",
           "ring", "torus"]

Graph = list[list[int]]


def ring(n: int) -> Graph:
    if n < 3:
        raise ValueError(f"a ring needs n >= 3 nodes, got {n}")
    return [sorted({(i - 1) % n, (i + 1) % n}) for i in range(n)]


def torus(rows: int, cols: int) -> Graph:
    """2-D torus grid (each node has 4 neighbours when rows, cols >= 3)."""
    if rows < 3 or cols < 3:
        raise ValueError(f"a torus needs rows, cols >= 3, got {rows}x{cols}")
    n = rows * cols

    def idx(r: int, c: int) -> int:
        return (r % rows) * cols + (c % cols)
    return [sorted({idx(i // cols + dr, i % cols + dc) for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))})
            for i in range(n)]


def complete(n: int) -> Graph:
    return [[j for j in range(n) if j != i] for i in range(n)]


def metropolis(graph: Graph) -> list[dict[int, float]]:
    """Metropolis–Hastings mixing weights ``W_ij = 1/(1 + max(d_i, d_j))``, ``W_ii = 1 − Σ_j W_ij``."""
    W = []
    for i, nb in enumerate(graph):
        row = {j: 1.0 / (1 + max(len(nb), len(graph[j]))) for j in nb}
        row[i] = 1.0 - sum(row.values())
        W.append(row)
    return W


def laplacian_apply(values: dict[int, torch.Tensor], received: dict[int, dict[int, torch.Tensor]],
                    ) -> dict[int, torch.Tensor]:
    """``(L z)_i = Σ_{j ∈ N(i)} (z_i − z_j)`` from each node's received neighbour values."""
    out = {}
    for i, z in values.items():
        acc = torch.zeros_like(z)
        for zj in received[i].values():
            acc += z - zj
        out[i] = acc
    return out


def l1_lo(radius: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """LO of the ℓ1 ball of ``radius``: ``−radius · sign(c_j) e_j`` at ``j = argmax |c_j|``."""
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")

    def lo(c: torch.Tensor) -> torch.Tensor:
        v = torch.zeros_like(c)
        j = int(c.abs().argmax())
        v[j] = -radius * float(torch.sign(c[j])) if c[j] != 0 else radius
        return v
    return lo


@dataclass
class Counters:
    gradient_samples: int = 0  # stochastic-gradient oracle calls (each on a batch of `batch` data points)
    lo_calls: int = 0
    rounds: int = 0  # communication rounds (neighbour exchanges)


@dataclass
class LogisticNode:
    """``f_i(x) = mean_k log(1 + exp(−y_k a_kᵀ x))`` on the node's data; stochastic gradients on batches."""

    A: torch.Tensor
    y: torch.Tensor
    batch: int | None = None  # None: the full local gradient (σ = 0)
    generator: torch.Generator = field(default_factory=torch.Generator)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(-self.y * (self.A @ x)).mean()

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch is None:
            A, y = self.A, self.y
        else:
            idx = torch.randint(len(self.y), (self.batch,), generator=self.generator)
            A, y = self.A[idx], self.y[idx]
        return -(A.T @ (y * torch.sigmoid(-y * (A @ x)))) / len(y)


def _cndg(c: torch.Tensor, anchor: torch.Tensor, beta: float, eta: float, lo: Callable[[torch.Tensor], torch.Tensor],
          counters: Counters, max_calls: int) -> torch.Tensor:
    u = anchor.clone()
    for _ in range(max_calls):
        grad = c + beta * (u - anchor)
        v = lo(grad)
        counters.lo_calls += 1
        gap = float(grad @ (u - v))
        if gap <= eta:
            break
        d = v - u
        u = u + min(1.0, gap / (beta * float(d @ d))) * d
    return u


def gradient_sliding(nodes: dict[int, LogisticNode], graph: Graph, lo: Callable[[torch.Tensor], torch.Tensor],
                     dim: int, steps: int, comm: Communicator, *, beta: float, eta: float, sigma: float,
                     max_lo: int = 1000, callback: Callable[[int, dict[int, torch.Tensor]], None] | None = None,
                     ) -> tuple[dict[int, torch.Tensor], dict[int, Counters]]:
    """Run the sliding method on this process's ``nodes`` (see the module docstring); returns each hosted
    node's x̄ and counters."""
    for name, v in (("beta", beta), ("eta", eta), ("sigma", sigma)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    lap_norm_sq = max(4.0 * len(nb) ** 2 for nb in graph)  # ‖L‖² ≤ (2 d_max)²
    zero = torch.zeros(dim, dtype=torch.float64)
    x = {i: zero.clone() for i in nodes}
    xbar = {i: zero.clone() for i in nodes}
    y = {i: zero.clone() for i in nodes}
    y_prev = {i: zero.clone() for i in nodes}
    cnt = {i: Counters() for i in nodes}
    for k in range(1, steps + 1):
        gamma, eta_k = 3.0 / (k + 2), eta / (k * (k + 1))
        beta_k = beta * 3.0 / (k + 1) + sigma * lap_norm_sq  # the primal–dual step condition β σ⁻¹ ≥ ‖L‖²
        grads = {}
        for i, node in nodes.items():
            grads[i] = node.grad((1 - gamma) * xbar[i] + gamma * x[i])
            cnt[i].gradient_samples += 1
        ytil = {i: 2 * y[i] - y_prev[i] for i in nodes}
        s = laplacian_apply(ytil, comm.neighbors(ytil, graph))
        for i in nodes:
            cnt[i].rounds += 1
            x[i] = _cndg(grads[i] + s[i], x[i], beta_k, eta_k, lo, cnt[i], max_lo)
            xbar[i] = (1 - gamma) * xbar[i] + gamma * x[i]
        lx = laplacian_apply(x, comm.neighbors(x, graph))
        for i in nodes:
            cnt[i].rounds += 1
            y_prev[i], y[i] = y[i], y[i] + sigma * lx[i]
        if callback is not None:
            callback(k, xbar)
    return xbar, cnt


def defw(nodes: dict[int, LogisticNode], graph: Graph, lo: Callable[[torch.Tensor], torch.Tensor], dim: int,
         steps: int, comm: Communicator,
         callback: Callable[[int, dict[int, torch.Tensor]], None] | None = None,
         ) -> tuple[dict[int, torch.Tensor], dict[int, Counters]]:
    """Decentralized Frank–Wolfe with gradient tracking (see the module docstring)."""
    W = metropolis(graph)
    zero = torch.zeros(dim, dtype=torch.float64)
    x = {i: zero.clone() for i in nodes}
    cnt = {i: Counters() for i in nodes}
    g_prev = {i: node.grad(x[i]) for i, node in nodes.items()}
    s = {i: g.clone() for i, g in g_prev.items()}
    for i in nodes:
        cnt[i].gradient_samples += 1
    for t in range(1, steps + 1):
        recv = comm.neighbors(x, graph)
        xhat = {i: W[i][i] * x[i] + sum(W[i][j] * recv[i][j] for j in graph[i]) for i in nodes}
        recv_s = comm.neighbors(s, graph)
        for i, node in nodes.items():
            cnt[i].rounds += 2
            g = node.grad(xhat[i])
            cnt[i].gradient_samples += 1
            s[i] = W[i][i] * s[i] + sum(W[i][j] * recv_s[i][j] for j in graph[i]) + g - g_prev[i]
            g_prev[i] = g
            gamma = 2.0 / (t + 1)
            cnt[i].lo_calls += 1
            x[i] = (1 - gamma) * xhat[i] + gamma * lo(s[i])
        if callback is not None:
            callback(t, x)
    return x, cnt


def project_l1(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Euclidean projection onto the ℓ1 ball (Duchi et al. 2008, sort-based)."""
    if float(v.abs().sum()) <= radius:
        return v.clone()
    u = v.abs().sort(descending=True).values
    css = u.cumsum(0)
    k = torch.arange(1, len(u) + 1, dtype=v.dtype)
    rho = int(torch.nonzero(u * k > css - radius).max())
    theta = (css[rho] - radius) / (rho + 1)
    return torch.sign(v) * (v.abs() - theta).clamp(min=0)


def centralized_optimum(nodes: Sequence[LogisticNode], radius: float, iters: int = 20000) -> tuple[torch.Tensor, float]:
    """``F* = min_{‖x‖₁ ≤ r} Σ_i f_i(x)`` by FISTA with exact ℓ1 projections (full gradients)."""
    A = torch.cat([n.A for n in nodes])
    m = len(nodes)
    lip = m * float(torch.linalg.matrix_norm(A, 2) ** 2) / (4 * len(A))
    full = [LogisticNode(n.A, n.y) for n in nodes]

    def F(x: torch.Tensor) -> float:
        return float(sum(n.value(x) for n in full))

    def G(x: torch.Tensor) -> torch.Tensor:
        return sum((n.grad(x) for n in full), start=torch.zeros(A.shape[1], dtype=A.dtype))

    x = z = torch.zeros(A.shape[1], dtype=A.dtype)
    t = 1.0
    for _ in range(iters):
        x_new = project_l1(z - G(z) / lip, radius)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        z = x_new + (t - 1) / t_new * (x_new - x)
        x, t = x_new, t_new
    return x, F(x)
