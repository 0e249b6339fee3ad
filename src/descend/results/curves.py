"""Reading a curve, for every family: when did it first reach a target."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = ["steps_to_target"]


def _check_curve(xs: Sequence[float], ys: Sequence[float]) -> None:
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"a curve needs as many x as y values (got {len(xs)} and {len(ys)}) and at least one")
    if any(b < a for a, b in itertools.pairwise(xs)):
        raise ValueError("curve x values (steps or times) must be non-decreasing")


def steps_to_target(xs: Sequence[float], ys: Sequence[float], target: float) -> float:
    """First x at which the curve (xs, ys) reaches ``ys <= target``, linearly interpolated; ``inf`` if never.

    >>> steps_to_target([0, 10, 20], [1.0, 0.5, 0.2], 0.35)
    15.0
    >>> steps_to_target([0, 10], [1.0, 0.5], 0.1)
    inf
    """
    _check_curve(xs, ys)
    if ys[0] <= target:
        return float(xs[0])
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if not math.isfinite(y1):
            return math.inf  # diverged before reaching the target
        if y1 <= target:
            if y0 == y1:
                return float(x1)
            return float(x0 + (x1 - x0) * (y0 - target) / (y0 - y1))
    return math.inf
