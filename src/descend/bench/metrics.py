"""Pure functions that turn loss curves into the benchmark's numbers.

* :func:`steps_to_target` — first (interpolated) step at which a curve reaches a target; ``inf`` if never.
* :func:`speedup` — AdamW-relative speedup as in Wen et al. 2025 ("Fantastic Pretraining Optimizers"):
  the steps the baseline needs to reach this optimizer's final loss, interpolated on the baseline's curve,
  divided by the steps this optimizer used.  If the baseline never reaches that loss the value is a lower
  bound (``censored=True``): baseline budget / steps used.
* :func:`performance_profile` — AlgoPerf-style ρ_s(τ): the fraction of workloads on which solver s reaches
  the target within τ × the best solver's time; misses never count.
* :func:`bootstrap_ci`, :func:`geometric_mean` — aggregation over seeds and workloads.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Speedup",
    "bootstrap_ci",
    "geometric_mean",
    "performance_profile",
    "profile_score",
    "speedup",
    "steps_to_target",
]


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


@dataclass(frozen=True)
class Speedup:
    """An AdamW-relative speedup; ``censored`` means ``value`` is only a lower bound."""

    value: float
    censored: bool = False


def speedup(baseline_steps: Sequence[float], baseline_losses: Sequence[float], final_loss: float,
            steps_used: float) -> Speedup:
    """Steps the baseline needs to reach ``final_loss`` (interpolated on its curve) ÷ ``steps_used``.

    >>> speedup([0, 100, 200], [2.0, 1.0, 0.5], 1.0, 50).value
    2.0
    >>> s = speedup([0, 100, 200], [2.0, 1.0, 0.5], 0.4, 200)
    >>> (s.value, s.censored)
    (1.0, True)
    """
    if steps_used <= 0:
        raise ValueError(f"steps_used must be > 0, got {steps_used}")
    if not math.isfinite(final_loss):
        return Speedup(0.0)
    needed = steps_to_target(baseline_steps, baseline_losses, final_loss)
    if math.isinf(needed):
        return Speedup(float(baseline_steps[-1]) / steps_used, censored=True)
    return Speedup(needed / steps_used)


def performance_profile(times: Mapping[str, Mapping[str, float]], taus: Sequence[float]) -> dict[str, list[float]]:
    """ρ_s(τ) for every solver s: the fraction of workloads with time_s ≤ τ · min_s' time_s'.

    ``times[solver][workload]`` is a time (or steps) to target, ``inf`` for a miss.  Workloads no solver
    solves count as misses for everyone.

    >>> performance_profile({"a": {"w1": 1.0, "w2": 4.0}, "b": {"w1": 2.0, "w2": 2.0}}, [1.0, 2.0])
    {'a': [0.5, 1.0], 'b': [0.5, 1.0]}
    """
    solvers = list(times)
    workloads = sorted({w for s in solvers for w in times[s]})
    if not workloads:
        raise ValueError("performance_profile needs at least one workload")
    best = {w: min(times[s].get(w, math.inf) for s in solvers) for w in workloads}
    out: dict[str, list[float]] = {}
    for s in solvers:
        ratios = [times[s].get(w, math.inf) / best[w] if math.isfinite(best[w]) else math.inf for w in workloads]
        out[s] = [sum(r <= tau for r in ratios) / len(workloads) for tau in taus]
    return out


def profile_score(taus: Sequence[float], rho: Sequence[float]) -> float:
    """Area under a performance profile over [τ_min, τ_max], normalised to [0, 1] (trapezoidal rule)."""
    if len(taus) < 2:
        raise ValueError("profile_score needs at least two values of tau")
    area = sum((t1 - t0) * (r0 + r1) / 2 for t0, t1, r0, r1 in zip(taus, taus[1:], rho, rho[1:], strict=False))
    return area / (taus[-1] - taus[0])


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive values (``nan`` for an empty sequence)."""
    if not values:
        return math.nan
    if any(v <= 0 for v in values):
        raise ValueError("geometric_mean needs positive values")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def bootstrap_ci(values: Sequence[float], *, level: float = 0.95, resamples: int = 2000, seed: int = 0,
                 statistic: str = "mean") -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (or ``"gmean"``) of ``values``."""
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    stat = geometric_mean if statistic == "gmean" else (lambda v: sum(v) / len(v))
    if len(values) == 1:
        return (float(values[0]), float(values[0]))
    rng = random.Random(seed)
    draws = sorted(stat([rng.choice(values) for _ in values]) for _ in range(resamples))
    lo = draws[int((1 - level) / 2 * (resamples - 1))]
    hi = draws[int((1 + level) / 2 * (resamples - 1))]
    return (float(lo), float(hi))
