"""Pure functions that turn loss curves into the benchmark's numbers.

* :func:`steps_to_target` — first (interpolated) step at which a curve reaches a target; ``inf`` if never.
* :func:`ladder_speedup` — AdamW-relative speedup as in Wen et al. 2025 ("Fantastic Pretraining Optimizers"):
  the budget AdamW needs to reach this optimizer's final value ÷ the budget this optimizer used, where "the
  budget AdamW needs" is read off a **ladder** of separate AdamW runs at several budgets (each with its own
  full schedule: a checkpoint in the middle of a cosine schedule is not a shorter run), made monotone by
  isotonic regression and interpolated in log budget.  Outside the ladder the value is a bound (``>`` /
  ``<``); a non-monotone or flat ladder refuses a speedup (:func:`ladder_problem`).
* :func:`fit_power_law` — the scaling-law view (Kim et al. 2025, "Pre-training under infinite compute"):
  ``L = E + A·x^(−α)`` over budgets or model sizes, asymptote ``E`` with bootstrap CIs and reliability checks;
  :func:`data_efficiency` inverts a baseline's law.
* :func:`performance_profile` — AlgoPerf-style ρ_s(τ): the fraction of workloads on which solver s reaches
  the target within τ × the best solver's time; misses never count.
* :func:`bootstrap_ci`, :func:`geometric_mean` — aggregation over seeds and workloads.
* :func:`ensemble_metrics` — the data-constrained mode's ensembles (Kim et al. 2025, §"ensembling"): the
  cross-entropy and accuracy of the mean of K runs' predicted class probabilities.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..results.curves import steps_to_target

__all__ = [
    "LadderSpeedup",
    "PowerLawFit",
    "Speedup",
    "aggregate_bound",
    "bootstrap_ci",
    "budget_to_reach",
    "data_efficiency",
    "ensemble_metrics",
    "fit_power_law",
    "geometric_mean",
    "isotonic_decreasing",
    "ladder_problem",
    "ladder_speedup",
    "monotone_curve",
    "performance_profile",
    "profile_score",
    "steps_to_target",
]


# -------------------------------------------------------------------------------------------- the budget ladder

#: A speedup is exact (``"="``), a lower bound (``">"``: the optimizer beats the longest rung) or an upper bound
#: (``"<"``: it does not even reach the shortest rung, or it diverged); ``"?"`` for an aggregate of both kinds.
Bound = str


@dataclass(frozen=True)
class Speedup:
    """An AdamW-relative speedup.  ``bound`` says whether ``value`` is exact or a bound (see :data:`Bound`)."""

    value: float
    bound: Bound = "="

    @property
    def censored(self) -> bool:
        return self.bound != "="

    def __str__(self) -> str:
        return f"{'' if self.bound == '=' else self.bound}{self.value:.3g}×"


def isotonic_decreasing(ys: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """The least-squares non-increasing fit to ``ys`` (pool-adjacent-violators).

    >>> isotonic_decreasing([3.0, 1.0, 2.0, 0.0])
    [3.0, 1.5, 1.5, 0.0]
    """
    w = list(weights) if weights is not None else [1.0] * len(ys)
    if len(w) != len(ys) or any(v <= 0 for v in w):
        raise ValueError("isotonic_decreasing needs one positive weight per value")
    blocks: list[list[float]] = []  # [mean, weight, count]
    for y, wi in zip(ys, w, strict=True):
        blocks.append([float(y), float(wi), 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            m2, w2, c2 = blocks.pop()
            m1, w1, c1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    out: list[float] = []
    for m, _, c in blocks:
        out.extend([m] * int(c))
    return out


def budget_to_reach(budgets: Sequence[float], fitted: Sequence[float], target: float) -> tuple[float, Bound]:
    """Budget at which a non-increasing ladder ``fitted`` (final value vs budget) first reaches ``target``.

    Interpolated linearly in log budget between rungs.  Outside the ladder the answer is a bound: the shortest
    rung with ``"<"`` when even it ends below ``target`` (the optimizer is worse than AdamW's shortest run),
    the longest rung with ``">"`` when ``target`` is below every rung (or a non-finite ``target`` gives the shortest
    rung with ``"<"``: a diverged run is a miss).

    >>> b, bound = budget_to_reach([100, 200, 400], [3.0, 2.0, 1.0], 1.5)  # halfway in log budget: 200·√2
    >>> (round(b, 6), bound)
    (282.842712, '=')
    >>> budget_to_reach([100, 200, 400], [3.0, 2.0, 1.0], 0.5)
    (400.0, '>')
    """
    if len(budgets) != len(fitted) or len(budgets) < 2:
        raise ValueError(f"a ladder needs at least two rungs with one value each, got {len(budgets)}/{len(fitted)}")
    if any(b <= 0 for b in budgets) or any(b1 <= b0 for b0, b1 in itertools.pairwise(budgets)):
        raise ValueError("ladder budgets must be positive and strictly increasing")
    if any(f1 > f0 for f0, f1 in itertools.pairwise(fitted)):
        raise ValueError("budget_to_reach needs a non-increasing ladder (fit it with isotonic_decreasing)")
    if not math.isfinite(target) or target > fitted[0]:
        return float(budgets[0]), "<"
    if target < fitted[-1]:
        return float(budgets[-1]), ">"
    if target == fitted[0]:
        return float(budgets[0]), "="
    for i in range(1, len(budgets)):
        f0, f1 = fitted[i - 1], fitted[i]
        if f1 <= target:
            if f0 == f1:
                return float(budgets[i - 1]), "="
            u = (f0 - target) / (f0 - f1)
            lb = math.log(budgets[i - 1]) + u * (math.log(budgets[i]) - math.log(budgets[i - 1]))
            return math.exp(lb), "="
    return float(budgets[-1]), ">"  # pragma: no cover - excluded by the checks above


def ladder_problem(budgets: Sequence[float], values: Sequence[Sequence[float]]) -> str | None:
    """Why a ladder cannot give a speedup, or ``None`` when it can.

    ``values[k][i]`` is seed k's final value at rung i.  Refused: a rung with a diverged seed; a longer run that
    ends worse than a shorter one by more than twice the standard error of the paired difference over seeds
    (over-fitting, or a configuration that does not transfer across budgets); a ladder flat within that noise
    (the budget does not change the result, so "the budget AdamW needs" is undefined).
    """
    if len(budgets) < 2:
        return f"the ladder has {len(budgets)} rung(s); at least two are needed"
    if not values or any(len(v) != len(budgets) for v in values):
        raise ValueError("ladder values must have one row per seed and one value per rung")
    for i, b in enumerate(budgets):
        if not all(math.isfinite(v[i]) for v in values):
            return f"AdamW diverged on a seed of the {_g(b)}-step rung"
    means = [statistics.fmean(v[i] for v in values) for i in range(len(budgets))]

    def noise(i: int, j: int) -> float:
        d = [v[j] - v[i] for v in values]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else 0.0
        return 2 * se + 1e-9 * max(abs(means[i]), abs(means[j]))

    for i in range(len(budgets) - 1):
        if means[i + 1] - means[i] > noise(i, i + 1):
            return (f"not monotone: AdamW's {_g(budgets[i + 1])}-step runs end at {_g(means[i + 1])}, worse than its "
                    f"{_g(budgets[i])}-step runs ({_g(means[i])}); a longer run over-fits or the tuned configuration "
                    "does not transfer across budgets")
    if means[0] - means[-1] <= noise(0, len(budgets) - 1):
        return (f"flat or unresolved: AdamW ends at {_g(means[0])} after {_g(budgets[0])} steps and {_g(means[-1])} "
                f"after {_g(budgets[-1])}, a difference within twice its seed noise, so the budget it needs is "
                "undefined (more seeds would resolve a real slope)")
    return None


def _g(x: float) -> str:
    return f"{x:.4g}"


@dataclass(frozen=True)
class LadderSpeedup:
    """The speedup read off a baseline ladder, with its bootstrap CI over seeds (each end may be a bound)."""

    point: Speedup
    low: Speedup
    high: Speedup
    refused: str | None = None  # why no speedup is given (see :func:`ladder_problem`)

    @property
    def value(self) -> float:
        return self.point.value

    def __str__(self) -> str:
        if self.refused:
            return "refused"

        def f(x: Speedup) -> str:
            return f"{'' if x.bound == '=' else x.bound}{x.value:.3g}"

        return f"{f(self.point)}× [{f(self.low)}, {f(self.high)}]"


def _speedup_of(budgets: Sequence[float], ladder_means: Sequence[float], final: float, steps_used: float) -> Speedup:
    fitted = isotonic_decreasing(ladder_means)
    b, bound = budget_to_reach(budgets, fitted, final)
    return Speedup(b / steps_used, bound)


def ladder_speedup(budgets: Sequence[float], ladder: Sequence[Sequence[float]], finals: Sequence[float],
                   steps_used: float, *, level: float = 0.95, resamples: int = 1000, seed: int = 0,
                   paired: bool | None = None) -> LadderSpeedup:
    """Speedup of an optimizer over a baseline ladder, ``budget AdamW needs to match its final value ÷ steps_used``.

    ``ladder[k][i]``: the baseline's final value on seed k at budget ``budgets[i]`` (each a full run with its own
    schedule); ``finals[k]``: the optimizer's final value on seed k after ``steps_used`` steps (``inf`` if it
    diverged: a miss, never dropped).  The point estimate compares seed means: the mean ladder, made
    non-increasing by isotonic regression and interpolated linearly in log budget, is inverted at the optimizer's
    mean final value.  The CI is a percentile bootstrap over seeds (the same seeds drawn for both when ``paired``,
    the default when both have as many seeds); outside the ladder the point and the CI ends are bounds.
    """
    if steps_used <= 0:
        raise ValueError(f"steps_used must be > 0, got {steps_used}")
    if not finals:
        raise ValueError("ladder_speedup needs at least one final value")
    problem = ladder_problem(budgets, ladder)
    if problem is not None:
        nan = Speedup(math.nan)
        return LadderSpeedup(nan, nan, nan, refused=problem)
    n_rungs = len(budgets)
    paired = len(ladder) == len(finals) if paired is None else paired
    if paired and len(ladder) != len(finals):
        raise ValueError(f"paired seeds need as many ladder rows as finals ({len(ladder)} vs {len(finals)})")

    def estimate(rows: Sequence[Sequence[float]], fin: Sequence[float]) -> Speedup:
        means = [statistics.fmean(r[i] for r in rows) for i in range(n_rungs)]
        mean_final = statistics.fmean(fin) if all(math.isfinite(f) for f in fin) else math.inf
        return _speedup_of(budgets, means, mean_final, steps_used)

    point = estimate(ladder, finals)
    rng = random.Random(seed)
    draws: list[Speedup] = []
    for _ in range(resamples):
        if paired:
            idx = [rng.randrange(len(finals)) for _ in finals]
            rows, fin = [ladder[k] for k in idx], [finals[k] for k in idx]
        else:
            rows = [ladder[rng.randrange(len(ladder))] for _ in ladder]
            fin = [finals[rng.randrange(len(finals))] for _ in finals]
        draws.append(estimate(rows, fin))
    draws.sort(key=lambda s: s.value)
    lo = draws[int((1 - level) / 2 * (resamples - 1))]
    hi = draws[int((1 + level) / 2 * (resamples - 1))]
    return LadderSpeedup(point, lo, hi)


def aggregate_bound(bounds: Sequence[Bound]) -> Bound:
    """The bound of a geometric mean of speedups: exact only if every term is; ``"?"`` if terms bound both ways."""
    kinds = set(bounds) - {"="}
    if not kinds:
        return "="
    return kinds.pop() if len(kinds) == 1 and "?" not in kinds else "?"


# -------------------------------------------------------------------------------------------- scaling laws


@dataclass(frozen=True)
class PowerLawFit:
    """``L(x) = E + A·x^(−α)`` fitted to (x, L) points, with bootstrap CIs over seeds; ``problems`` lists why it is
    unreliable (empty when it is fine)."""

    E: float
    A: float
    alpha: float
    E_ci: tuple[float, float]
    alpha_ci: tuple[float, float]
    problems: tuple[str, ...] = ()

    @property
    def reliable(self) -> bool:
        return not self.problems

    def __call__(self, x: float) -> float:
        return self.E + self.A * x ** (-self.alpha)

    def inverse(self, loss: float) -> float:
        """The x at which the fitted law reaches ``loss`` (``inf`` when ``loss`` is at or below the asymptote)."""
        if loss <= self.E or self.A <= 0:
            return math.inf
        return ((loss - self.E) / self.A) ** (-1 / self.alpha)


ALPHA_BOUNDS = (0.02, 4.0)


def _fit_once(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares for ``E + A·x^(−α)``: linear in (E, A) at fixed α, so α is profiled on a log grid (then a
    finer one around the best) with E ≤ min(y) and A ≥ 0 enforced exactly — deterministic, no start point."""
    import numpy as np

    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    u = x / float(np.exp(np.mean(np.log(x))))  # conditioning: x / its geometric mean

    def solve(alphas: Any) -> tuple[Any, Any, Any, Any]:
        z = u[None, :] ** (-alphas[:, None])  # (n_alpha, n_points)
        zm, ym = z.mean(1), y.mean()
        var = ((z - zm[:, None]) ** 2).sum(1)
        A = np.where(var > 0, ((z - zm[:, None]) * (y - ym)).sum(1) / np.maximum(var, 1e-300), 0.0)
        A = np.maximum(A, 0.0)
        E = ym - A * zm
        over = y.min() < E  # the asymptote may not lie above the data: E = min(y), refit A >= 0
        if over.any():
            E = np.where(over, y.min(), E)
            A_fix = np.maximum(((y - y.min())[None, :] * z).sum(1) / (z**2).sum(1), 0.0)
            A = np.where(over, A_fix, A)
        sse = ((E[:, None] + A[:, None] * z - y) ** 2).sum(1)
        return E, A, sse, alphas

    lo, hi = math.log(ALPHA_BOUNDS[0]), math.log(ALPHA_BOUNDS[1])
    E, A, sse, al = solve(np.exp(np.linspace(lo, hi, 161)))
    k = int(np.argmin(sse))
    step = (hi - lo) / 160
    E, A, sse, al = solve(np.exp(np.clip(math.log(al[k]) + np.linspace(-step, step, 81), lo, hi)))
    k = int(np.argmin(sse))
    x0 = float(np.exp(np.mean(np.log(x))))
    return float(E[k]), float(A[k]) * x0 ** float(al[k]), float(al[k])


def fit_power_law(xs: Sequence[float], per_seed: Sequence[Sequence[float]], *, level: float = 0.95,
                  resamples: int = 200, seed: int = 0) -> PowerLawFit:
    """Fit ``L = E + A·x^(−α)`` to the seed means of ``per_seed[k][i]`` (value of seed k at ``xs[i]``).

    Robust bounded least squares (E ≤ the lowest mean, A ≥ 0, α in :data:`ALPHA_BOUNDS`); CIs of E and α by a
    bootstrap over seeds.  Unreliable (``problems``): fewer than 4 points (3 parameters), α at a bound, a
    non-finite value, or an asymptote CI wider than the range of the data.
    """
    if len(xs) < 3:
        raise ValueError(f"a power-law fit needs at least 3 x values, got {len(xs)}")
    if any(x <= 0 for x in xs):
        raise ValueError("power-law x values (budgets, sizes) must be positive")
    if not per_seed or any(len(r) != len(xs) for r in per_seed):
        raise ValueError("per_seed must have one row per seed and one value per x")
    problems: list[str] = []
    if any(not math.isfinite(v) for r in per_seed for v in r):
        nan = (math.nan, math.nan)
        return PowerLawFit(math.nan, math.nan, math.nan, nan, nan, ("a diverged run: no fit",))
    means = [statistics.fmean(r[i] for r in per_seed) for i in range(len(xs))]
    E, A, alpha = _fit_once(xs, means)
    rng = random.Random(seed)
    Es, alphas = [], []
    if len(per_seed) > 1:
        for _ in range(resamples):
            rows = [per_seed[rng.randrange(len(per_seed))] for _ in per_seed]
            e, _, a = _fit_once(xs, [statistics.fmean(r[i] for r in rows) for i in range(len(xs))])
            Es.append(e)
            alphas.append(a)
    Es.sort()
    alphas.sort()

    def ci(v: list[float], point: float) -> tuple[float, float]:
        if not v:
            return (point, point)
        return (v[int((1 - level) / 2 * (len(v) - 1))], v[int((1 + level) / 2 * (len(v) - 1))])

    E_ci, alpha_ci = ci(Es, E), ci(alphas, alpha)
    if len(xs) < 4:
        problems.append(f"only {len(xs)} points for 3 parameters")
    if min(abs(alpha - b) for b in ALPHA_BOUNDS) < 1e-3 * alpha:
        problems.append(f"α = {alpha:.3g} is at a bound of {ALPHA_BOUNDS}")
    if len(per_seed) < 2:
        problems.append("one seed: no confidence interval")
    elif E_ci[1] - E_ci[0] > max(means) - min(means):
        problems.append(f"the asymptote's CI [{E_ci[0]:.4g}, {E_ci[1]:.4g}] is wider than the data's range")
    return PowerLawFit(E, A, alpha, E_ci, alpha_ci, tuple(problems))


def data_efficiency(baseline: PowerLawFit, loss: float, x: float) -> float:
    """How many times more budget than ``x`` the baseline's fitted law needs to reach ``loss`` (``inf`` when ``loss``
    is at or below the baseline's asymptote).  An extrapolation when the answer lies beyond the baseline's data:
    the caller knows that range and must say so."""
    if x <= 0:
        raise ValueError(f"x must be > 0, got {x}")
    return baseline.inverse(loss) / x


def monotone_curve(ys: Sequence[float], rtol: float = 0.01) -> bool:
    """Whether a validation curve never rises above its running minimum by more than ``rtol`` of its range
    (the data-constrained mode's test for "does not over-fit")."""
    finite = [y for y in ys if math.isfinite(y)]
    if len(finite) != len(ys) or not ys:
        return False
    span = max(finite) - min(finite)
    best = math.inf
    for y in finite:
        if y > best + rtol * span:
            return False
        best = min(best, y)
    return True

def ensemble_metrics(members: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, float]:
    """Cross-entropy and accuracy of an ensemble that averages its members' class probabilities.

    ``members[k][split]`` is ``{"log_probs": N×C, "labels": N}`` (run ``k``'s final held-out predictions, as
    :func:`descend.bench.trial.run_trial` stores them with ``predictions=True``); every member must predict
    the same labels.  Returns ``{f"{split}_loss", f"{split}_acc"}`` per split: ``−mean_i log((1/K) Σ_k
    p_k(y_i | x_i))`` (a log-sum-exp per example, so tiny probabilities do not underflow) and the accuracy of
    the averaged probabilities' arg-max.  By Jensen's inequality the ensemble's loss is never above its
    members' mean loss.

    >>> import math
    >>> a = {"val": {"log_probs": [[math.log(0.9), math.log(0.1)]], "labels": [0]}}
    >>> b = {"val": {"log_probs": [[math.log(0.5), math.log(0.5)]], "labels": [0]}}
    >>> round(ensemble_metrics([a, b])["val_loss"], 6) == round(-math.log(0.7), 6)
    True
    """
    if not members:
        raise ValueError("an ensemble needs at least one member")
    out: dict[str, float] = {}
    k = len(members)
    for split in members[0]:
        labels = list(members[0][split]["labels"])
        tables = [m[split]["log_probs"] for m in members]
        if any(list(m[split]["labels"]) != labels or len(m[split]["log_probs"]) != len(labels) for m in members):
            raise ValueError(f"ensemble members disagree on the {split!r} split's labels")
        loss = correct = 0.0
        for i, y in enumerate(labels):
            rows = [t[i] for t in tables]
            logp = [_logsumexp([r[c] for r in rows]) - math.log(k) for c in range(len(rows[0]))]
            loss -= logp[int(y)]
            correct += float(max(range(len(logp)), key=logp.__getitem__) == int(y))
        out[f"{split}_loss"] = loss / max(len(labels), 1)
        out[f"{split}_acc"] = correct / max(len(labels), 1)
    return out


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == -math.inf:
        return -math.inf
    return m + math.log(sum(math.exp(x - m) for x in xs))


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
