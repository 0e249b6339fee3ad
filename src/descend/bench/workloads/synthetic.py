"""Synthetic workloads with known structure: over-parameterized matrix sensing, in-context linear regression.

* ``matrix_sensing``: recover a rank-r PSD matrix M* = U* U*ᵀ (d×d) from n Gaussian linear measurements
  y_i = <A_i, M*> with an over-parameterized factor U ∈ R^{d×k}, k = d > r, from a small initialisation
  (Li, Ma, Zhang 2018, "Algorithmic Regularization in Over-parameterized Matrix Sensing...").  Reported:
  the loss on 256 held-out validation measurements (tuning), on 256 more test measurements (reporting), and
  the relative recovery error ||UUᵀ − M*||_F / ||M*||_F.
* ``icl_linear_regression``: in-context linear regression with a one-layer linear self-attention (LSA) model
  (von Oswald et al. 2023; Ahn et al. 2023; Zhang, Frei, Bartlett 2024): a prompt holds N pairs (x_i, w·x_i)
  and a query x_q; the model predicts w·x_q.  Every training step draws fresh tasks w ~ N(0, I) from a
  seeded generator; validation (tuning) and test (reporting) use two fixed sets of 1024 prompts each, drawn
  from other generators than training.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .base import Task, Workload, register_workload


@register_workload
class MatrixSensing(Workload):
    name = "matrix_sensing"
    description = "over-parameterized low-rank matrix sensing (U Uᵀ factorisation, Gaussian measurements)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {"d": 20, "r": 2, "n": 400}, "m": {"d": 40, "r": 3, "n": 1200}}
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1200}
    batch: ClassVar[int] = 64

    def build(self, seed: int, scale: str) -> Task:
        s = self.settings(scale)
        d, r, n = s["d"], s["r"], s["n"]
        g = torch.Generator().manual_seed(12345 + d)  # the instance is fixed; the seed moves init and batches
        u_star = torch.randn(d, r, generator=g) / d**0.25
        m_star = u_star @ u_star.T
        A = torch.randn(n + 256, d, d, generator=g) / d
        A = (A + A.transpose(1, 2)) / 2
        y = torch.einsum("nij,ij->n", A, m_star)
        A_tr, y_tr, A_va, y_va = A[:n], y[:n], A[n:], y[n:]
        A_te = torch.randn(256, d, d, generator=g) / d  # drawn after the others: train/val unchanged
        A_te = (A_te + A_te.transpose(1, 2)) / 2
        y_te = torch.einsum("nij,ij->n", A_te, m_star)
        torch.manual_seed(seed)
        U = torch.nn.Parameter(1e-2 * torch.randn(d, d))

        def predict(As: torch.Tensor) -> torch.Tensor:
            return torch.einsum("nij,ij->n", As, U @ U.T)

        def train_loss(step: int) -> torch.Tensor:
            gb = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
            idx = torch.randint(0, n, (self.batch,), generator=gb)
            return 0.5 * ((predict(A_tr[idx]) - y_tr[idx]) ** 2).mean()

        @torch.no_grad()
        def evaluate() -> dict[str, float]:
            val = 0.5 * ((predict(A_va) - y_va) ** 2).mean().item()
            test = 0.5 * ((predict(A_te) - y_te) ** 2).mean().item()
            rec = (torch.linalg.matrix_norm(U @ U.T - m_star) / torch.linalg.matrix_norm(m_star)).item()
            return {"val_loss": val, "test_loss": test, "recovery_error": rec}

        return Task(params=[U], train_loss=train_loss, evaluate=evaluate, info={"n_params": U.numel()})


class LinearSelfAttention(torch.nn.Module):
    """One-layer linear self-attention: Z + (1/N) W_PV Z M Zᵀ W_KQ Z, read out at the query's label slot."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        e = dim + 1
        self.w_kq = torch.nn.Parameter(0.1 * torch.randn(e, e) / e**0.5)
        self.w_pv = torch.nn.Parameter(0.1 * torch.randn(e, e) / e**0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
        # Z: (B, d+1, N+1) with columns (x_i, y_i) and the query (x_q, 0); the mask M excludes the query column.
        _B, N, _ = x.shape
        z = torch.cat([torch.cat([x, y[..., None]], -1), torch.cat([xq, torch.zeros_like(xq[:, :1])], -1)[:, None]], 1)
        z = z.transpose(1, 2)
        ctx = z[:, :, :N]
        attn = ctx @ ctx.transpose(1, 2) / N  # (B, e, e)
        out = self.w_pv @ attn @ self.w_kq @ z[:, :, N:]
        return out[:, -1, 0]


@register_workload
class ICLLinearRegression(Workload):
    name = "icl_linear_regression"
    description = "in-context linear regression with one-layer linear self-attention"
    scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {"dim": 5, "context": 20}, "m": {"dim": 10, "context": 40}}
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1200}
    batch: ClassVar[int] = 64

    @staticmethod
    def _prompts(g: torch.Generator, n: int, dim: int, context: int) -> tuple[torch.Tensor, ...]:
        w = torch.randn(n, dim, generator=g)
        x = torch.randn(n, context, dim, generator=g)
        xq = torch.randn(n, dim, generator=g)
        return x, (x @ w[..., None])[..., 0], xq, (xq * w).sum(-1)

    def build(self, seed: int, scale: str) -> Task:
        s = self.settings(scale)
        dim, context = s["dim"], s["context"]
        # far from the training generators' seeds (seed * 1_000_003 + step), so no training batch repeats them
        val = self._prompts(torch.Generator().manual_seed((1 << 40) + 777 + dim), 1024, dim, context)
        test = self._prompts(torch.Generator().manual_seed((1 << 40) + 888 + dim), 1024, dim, context)
        torch.manual_seed(seed)
        model = LinearSelfAttention(dim)

        def train_loss(step: int) -> torch.Tensor:
            g = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
            x, y, xq, yq = self._prompts(g, self.batch, dim, context)
            return 0.5 * ((model(x, y, xq) - yq) ** 2).mean()

        def loss_on(prompts: tuple[torch.Tensor, ...]) -> float:
            x, y, xq, yq = prompts
            return 0.5 * ((model(x, y, xq) - yq) ** 2).mean().item()

        @torch.no_grad()
        def evaluate() -> dict[str, float]:
            return {"val_loss": loss_on(val), "test_loss": loss_on(test)}

        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate, model=model,
                    info={"n_params": sum(p.numel() for p in model.parameters())})
