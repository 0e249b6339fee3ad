"""Argument checks shared by every descend family, with one wording for every message.

A bad value raises ``ValueError`` with one line naming the argument and the allowed range (or the allowed
values), before any state is created or changed::

    lr must be in [0.0, inf), got -1
    steps must be an integer in [1, inf], got 0
    method must be one of ('cg', 'neumann'), got 'qr'

The module does not import torch: tensors are recognised only when torch is already loaded (a tensor cannot
exist otherwise), and the tensor-only checks import it when called. ``descend.optim._validate`` and
``descend.bilevel._validate`` re-export these functions for code written before this module existed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "check_betas",
    "check_choice",
    "check_finite",
    "check_flag",
    "check_float",
    "check_int",
    "check_no_sparse_or_complex",
    "check_optional_int",
    "check_vector",
    "interval",
]


def _is_tensor(value: Any) -> bool:
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(value, torch_mod.Tensor)


def interval(low: float, high: float, low_open: bool = False, high_open: bool = False) -> str:
    """The interval as it appears in messages: ``[0.0, 1.0)``; an infinite end point is always open."""
    lo = "(" if low_open or low == -math.inf else "["
    hi = ")" if high_open or high == math.inf else "]"
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

    ``low_open``/``high_open`` exclude the corresponding end point; infinite end points are always open.
    Tensors holding one element are accepted (torch schedulers sometimes store tensor learning rates).
    """
    span = interval(low, high, low_open, high_open)
    if _is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a real number in {span}, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number in {span}, got {value!r}")
    v = float(value)
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must be in {span}, got {value!r}")
    return v


def check_int(name: str, value: Any, low: int = 0, high: float = math.inf) -> int:
    """Return ``value`` if it is an integer (not a bool) in ``[low, high]``, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any, low: int = 1, high: float = math.inf) -> int | None:
    """``None`` or an integer in ``[low, high]``."""
    return None if value is None else check_int(name, value, low, high)


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
    if _is_tensor(value) or value not in options:
        raise ValueError(f"{name} must be one of {options!r}, got {value!r}")
    return value


def check_vector(name: str, value: Any, like: torch.Tensor | None = None) -> torch.Tensor:
    """Check that ``value`` is a floating tensor (of the shape of ``like``, if given) with finite entries."""
    import torch

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
    if _is_tensor(value):
        import torch

        ok = bool(torch.isfinite(torch.as_tensor(value)).all())
    else:
        ok = math.isfinite(float(value))
    if not ok:
        raise ValueError(f"{name} is not finite (NaN or inf): the objective diverged or the step size is too "
                         "large for this problem")


def check_no_sparse_or_complex(optimizer_name: str, params: Iterable[torch.Tensor]) -> None:
    """Raise before any state changes if a parameter or its gradient is sparse or complex.

    Call this at the start of ``step()`` over every parameter that has a gradient.
    """
    import torch

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
