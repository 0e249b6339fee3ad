"""Shared argument checks with uniform error messages.

Every optimizer validates its hyperparameters with these helpers so that a bad value always raises
``ValueError`` naming the argument and the allowed range, before any state is created or changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "check_betas",
    "check_choice",
    "check_flag",
    "check_float",
    "check_int",
    "check_no_sparse_or_complex",
]


def _bracket(low: float, high: float, low_open: bool, high_open: bool) -> str:
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    return f"{lo}{low}, {high}{hi}"


def check_float(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a float if it is a finite real number in the given interval, else raise.

    ``low_open``/``high_open`` exclude the corresponding end point.  Infinite end points are always open.
    Tensors holding one element are accepted (torch schedulers sometimes store tensor learning rates).
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {_bracket(low, high, low_open, high_open)}, "
                         f"got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        interval = _bracket(low, high, low_open or low == -math.inf, high_open or high == math.inf)
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_int(name: str, value: Any, low: int = 0, high: float = math.inf) -> int:
    """Return ``value`` if it is an integer in ``[low, high]``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def check_betas(name: str, betas: Any, n: int = 2, *, allow_one: bool = False) -> tuple[float, ...]:
    """Validate a tuple of ``n`` momentum coefficients, each in ``[0, 1)`` (or ``[0, 1]``)."""
    if not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != n:
        raise ValueError(f"{name} must be a sequence of {n} numbers in [0, 1{']' if allow_one else ')'}, "
                         f"got {betas!r}")
    return tuple(
        check_float(f"{name}[{i}]", b, 0.0, 1.0, high_open=not allow_one) for i, b in enumerate(betas)
    )


def check_flag(name: str, value: Any, *, allow_none: bool = False) -> bool | None:
    """A boolean flag: ``True`` or ``False`` (or ``None`` where that means "auto"); anything else — a tensor,
    a number, a string — raises ``ValueError`` naming the flag."""
    if isinstance(value, bool) or (allow_none and value is None):
        return value
    allowed = "True, False or None" if allow_none else "True or False"
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (a tensor never is one: compare plain
    Python values, so that ``torch.tensor(True)`` gets this message instead of an ambiguous-bool error)."""
    options = tuple(choices)
    if isinstance(value, torch.Tensor) or value not in options:
        raise ValueError(f"{name} must be one of {options!r}, got {value!r}")
    return value


def check_no_sparse_or_complex(optimizer_name: str, params: Iterable[torch.Tensor]) -> None:
    """Raise before any state changes if a parameter or its gradient is sparse or complex.

    Call this at the start of ``step()`` over every parameter that has a gradient.
    """
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse or p.is_sparse:
            raise RuntimeError(
                f"{optimizer_name} does not support sparse gradients; use a dense gradient "
                "(e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam"
            )
        if torch.is_complex(p) or torch.is_complex(p.grad):
            raise RuntimeError(
                f"{optimizer_name} does not support complex parameters; optimize "
                "torch.view_as_real(p) instead"
            )
