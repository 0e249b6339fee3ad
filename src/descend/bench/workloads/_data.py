"""Offline data helpers shared by the workloads (seeded splits, mini-batch indices, a pickle-free cache)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch


def cache_dir() -> Path:
    """Where generated data sets are cached (``$DESCEND_CACHE`` or ``~/.cache/descend``)."""
    path = Path(os.environ.get("DESCEND_CACHE", Path.home() / ".cache" / "descend"))
    path.mkdir(parents=True, exist_ok=True)
    return path


#: bump to invalidate every cache file written by an older layout
_FORMAT = "npz-v2"
_MEMORY: dict[str, dict[str, Any]] = {}
#: one lock per key: a trial thread and the planner thread may build the same workload at once
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()

Value = torch.Tensor | int | float
Check = Callable[[dict[str, Any]], bool]


def cache_path(key: str) -> Path:
    """The cache file of ``key``: a SHA-256 of the key (which must name every setting of the generator)."""
    return cache_dir() / f"{hashlib.sha256(f'{_FORMAT}/{key}'.encode()).hexdigest()[:32]}.npz"


def cached(key: str, make: Callable[[], Mapping[str, Value]], check: Check | None = None) -> dict[str, Any]:
    """``make()`` once per key, stored on disk and kept in memory for the rest of the process.

    ``make`` returns a flat mapping of names to tensors, ints and floats.  The file is a NumPy ``.npz`` read
    with ``allow_pickle=False`` (no pickle anywhere, so a planted file cannot run code); it also stores the
    key and a SHA-256 of its arrays, checked on load together with ``check(value)`` (shapes, dtypes).  A file
    that fails any check — truncated by a killed writer, corrupt, written for another key — is regenerated,
    not trusted.  Writes are atomic (a uniquely named temporary file + rename), so concurrent processes
    are safe, and threads of one process build a key once (a lock per key).  Callers must not modify the
    value in place.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        if key not in _MEMORY:
            _MEMORY[key] = _cached_on_disk(key, make, check)
        return _MEMORY[key]


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _to_arrays(value: Mapping[str, Value]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, v in value.items():
        if name.startswith("__"):
            raise ValueError(f"cache entry names must not start with '__', got {name!r}")
        if isinstance(v, torch.Tensor):
            out[name] = v.detach().cpu().contiguous().numpy()
        elif isinstance(v, bool | int | float):
            out[name] = np.asarray(v)
        else:
            raise TypeError(f"cache entry {name!r} must be a tensor, int or float, got {type(v).__name__}")
    return out


def _from_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, a in arrays.items():
        out[name] = a.item() if a.ndim == 0 else torch.from_numpy(np.array(a))
    return out


def _load(path: Path, key: str, check: Check | None) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
        stored_key = arrays.pop("__key__").tobytes().decode()
        stored_digest = arrays.pop("__sha256__").tobytes().decode()
    except Exception:  # not a readable npz, or one without our header
        return None
    if stored_key != key or stored_digest != _digest(arrays):
        return None
    value = _from_arrays(arrays)
    try:
        ok = check is None or bool(check(value))
    except Exception:
        ok = False
    return value if ok else None


def _cached_on_disk(key: str, make: Callable[[], Mapping[str, Value]], check: Check | None) -> dict[str, Any]:
    path = cache_path(key)
    if path.exists():
        value = _load(path, key, check)
        if value is not None:
            return value
        path.unlink(missing_ok=True)  # corrupt, truncated or foreign: rebuild it
    arrays = _to_arrays(make())
    header = {"__key__": np.frombuffer(key.encode(), dtype=np.uint8),
              "__sha256__": np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)}
    fd, name = tempfile.mkstemp(prefix=f"{path.stem}.", suffix=".tmp.npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            # numpy's stub fears a ** mapping could hold one of savez's own bool options; these hold only arrays
            np.savez(fh, **arrays, **header)  # type: ignore[arg-type]
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    value = _from_arrays(arrays)
    if check is not None and not check(value):
        raise RuntimeError(f"freshly generated data for {key!r} fails its own check")
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
