"""Step-size and momentum schedules ``t ↦ value`` (``t = 0, 1, …`` counts iterations)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from descend._validate import check_float

__all__ = ["MOMENTUM_HARPG", "MOMENTUM_IGT", "STEP_2_OVER_T", "Constant", "Power", "Schedule", "as_schedule"]

Schedule = Callable[[int], float]


@dataclass(frozen=True)
class Constant:
    """``value`` at every iteration."""

    value: float

    def __post_init__(self) -> None:
        check_float("value", self.value, 0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return self.value


@dataclass(frozen=True)
class Power:
    """``scale · (shift / (t + shift))^power``: equals ``scale`` at ``t = 0`` and decays like ``t^{-power}``.

    ``Power(1, 1)`` is ``2/(t+2)``; ``Power(1, 0.8)`` is ``(2/(t+2))^{4/5}``.
    """

    scale: float
    power: float
    shift: float = 2.0

    def __post_init__(self) -> None:
        check_float("scale", self.scale, 0.0, low_open=True)
        check_float("power", self.power, 0.0)
        check_float("shift", self.shift, 0.0, low_open=True)

    def __call__(self, t: int) -> float:
        return self.scale * (self.shift / (t + self.shift)) ** self.power


def as_schedule(name: str, value: float | Schedule) -> Schedule:
    """A number becomes :class:`Constant`; a callable is used as is."""
    if callable(value):
        return value
    check_float(name, value, 0.0, low_open=True)
    return Constant(float(value))


#: ``2/(t+2)``: the default step size ``γ_t`` of the normalized methods (``γ_0 = 1``).
STEP_2_OVER_T = Power(1.0, 1.0)
#: ``(2/(t+2))^{4/5}``: N-PG-IGT's momentum ``η_t``.
MOMENTUM_IGT = Power(1.0, 0.8)
#: ``2/(t+2)``: (N-)HARPG's momentum ``η_t``.
MOMENTUM_HARPG = Power(1.0, 1.0)
