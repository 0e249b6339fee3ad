"""DAT on scikit-learn digits (8×8, pixels scaled to [0, 1]): a small CNN, fast-FGSM adversarial training,
robust accuracy under PGD-10 on a held-out split.  Used by tests/distributed/test_dat.py and the slow seeds."""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from descend.distributed.dat import LAMB, dat_step, fgsm_fast, pgd

EPS = 0.1


def digits(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    x, y = x[perm], y[perm]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10))


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> float:
    model.eval()
    xa = pgd(model, x, y, EPS, EPS / 4, 10, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return float((model(xa).argmax(1) == y).float().mean())


def train(rank: int, world: int, seed: int, bits: int | None, epochs: int, total_batch: int = 64,
          lr: float = 0.01, distributed: bool = True) -> dict[str, Any]:
    """Train on this rank's slice of each global batch (world = 1: single-process adversarial training)."""
    xtr, ytr, xte, yte = digits()
    torch.manual_seed(seed)
    model = cnn()
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


def dat_runs(rank: int, world: int, seeds: list[int], epochs: int, bits: int) -> dict[str, Any]:
    """Per seed: DAT (no quantization), DAT with ``bits``-bit QSGD, and (rank 0 only, no communication) the
    single-process adversarial training at the same total batch."""
    import torch.distributed as dist

    out: dict[str, Any] = {}
    for s in seeds:
        out[f"dat/{s}"] = train(rank, world, s, None, epochs)
        out[f"dat_q{bits}/{s}"] = train(rank, world, s, bits, epochs)
    dist.barrier()
    if rank == 0:  # single-process adversarial training, no communication
        for s in seeds:
            out[f"single/{s}"] = train(0, 1, s, None, epochs, distributed=False)
    return out
