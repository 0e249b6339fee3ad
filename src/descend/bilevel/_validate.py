"""Argument checks for :mod:`descend.bilevel` with uniform messages.

A bad value raises ``ValueError`` naming the argument and the allowed range before any state is created.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["check_choice", "check_finite", "check_float", "check_int", "check_optional_int", "check_vector"]


def check_float(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number in the interval, else raise ``ValueError``."""
    lo = "(" if low_open or low == -math.inf else "["
    hi = ")" if high_open or high == math.inf else "]"
    interval = f"{lo}{low}, {high}{hi}"
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {interval}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_int(name: str, value: Any, low: int = 0, high: float = math.inf) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any, low: int = 1, high: float = math.inf) -> int | None:
    """``None`` or an integer in ``[low, high]``."""
    return None if value is None else check_int(name, value, low, high)


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices!r}, got {value!r}")
    return value


def check_vector(name: str, value: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check that ``value`` is a floating tensor (of the shape of ``like``, if given) with finite entries."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")
    if like is not None and value.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)}, got {tuple(value.shape)}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must have finite entries")
    return value


def check_finite(name: str, value: torch.Tensor | float) -> None:
    """Raise ``ValueError`` if a computed objective or gradient is not finite (NaN or inf)."""
    ok = bool(torch.isfinite(value).all()) if isinstance(value, torch.Tensor) else math.isfinite(value)
    if not ok:
        raise ValueError(f"{name} is not finite (NaN or inf): the objective diverged or the step size is too "
                         "large for this problem")
