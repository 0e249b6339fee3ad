"""Offline data helpers shared by the workloads (seeded splits, mini-batch indices, a small cache)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def cache_dir() -> Path:
    """Where generated data sets are cached (``$DESCEND_CACHE`` or ``~/.cache/descend``)."""
    path = Path(os.environ.get("DESCEND_CACHE", Path.home() / ".cache" / "descend"))
    path.mkdir(parents=True, exist_ok=True)
    return path


_MEMORY: dict[str, Any] = {}


def cached(key: str, make: Callable[[], Any]) -> Any:
    """``make()`` once per key, stored with ``torch.save`` (atomic rename, so concurrent workers are safe)
    and kept in memory for the rest of the process.  Callers must not modify the value in place."""
    if key not in _MEMORY:
        _MEMORY[key] = _cached_on_disk(key, make)
    return _MEMORY[key]


def _cached_on_disk(key: str, make: Callable[[], Any]) -> Any:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = cache_dir() / f"{digest}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=False)
        except Exception:  # a truncated file from a killed writer: rebuild it
            path.unlink(missing_ok=True)
    value = make()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)
    return value


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Mini-batch ``step`` of a seeded sampler: a deterministic function of (seed, step) only."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return torch.randint(0, n, (batch,), generator=g)


def split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into (first ``1 - fraction``, last ``fraction``)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = round(n * (1 - fraction))
    return perm[:k], perm[k:]


def standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    """Scale features to zero mean / unit variance using the training rows' statistics."""
    mu, sd = train.mean(0), train.std(0).clamp_min(1e-8)
    return [(x - mu) / sd for x in (train, *others)]


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, prefix: str) -> dict[str, float]:
    """Cross-entropy and accuracy of ``logits`` against integer labels ``y``."""
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    acc = (logits.argmax(-1) == y).float().mean().item()
    return {f"{prefix}_loss": loss, f"{prefix}_acc": acc}
