"""The benchmark's metric definitions, checked on synthetic curves whose answers are known in closed form."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from descend.bench import metrics

# -------------------------------------------------------------------------------------------- steps_to_target


def test_steps_to_target_interpolates_linearly():
    xs = [0, 10, 20, 30, 40]
    ys = [1.0, 0.8, 0.6, 0.4, 0.2]  # y = 1 - x / 50
    for target, expected in [(0.8, 10.0), (0.7, 15.0), (0.5, 25.0), (0.25, 37.5), (0.2, 40.0)]:
        assert metrics.steps_to_target(xs, ys, target) == pytest.approx(expected)


def test_steps_to_target_already_reached_missed_and_diverged():
    assert metrics.steps_to_target([5, 10], [0.1, 0.05], 0.5) == 5.0  # reached at the first point
    assert metrics.steps_to_target([0, 10, 20], [1.0, 0.5, 0.4], 0.1) == math.inf
    assert metrics.steps_to_target([0, 10, 20], [1.0, math.inf, 0.0], 0.1) == math.inf  # diverged first
    assert metrics.steps_to_target([0, 10, 20], [1.0, math.nan, 0.0], 0.1) == math.inf
    # a plateau exactly at the target: its first point
    assert metrics.steps_to_target([0, 10, 20, 30], [1.0, 0.5, 0.5, 0.5], 0.5) == 10.0
    # non-monotone curve: the first crossing counts, not a later one
    assert metrics.steps_to_target([0, 10, 20, 30], [1.0, 0.0, 1.0, 0.0], 0.5) == 5.0


def test_steps_to_target_on_wall_time_axis():
    ts = [0.0, 0.5, 1.5, 3.0]
    ys = [2.0, 1.0, 0.5, 0.25]
    assert metrics.steps_to_target(ts, ys, 0.75) == pytest.approx(1.0)


def test_steps_to_target_rejects_bad_curves():
    with pytest.raises(ValueError):
        metrics.steps_to_target([], [], 1.0)
    with pytest.raises(ValueError):
        metrics.steps_to_target([0, 1], [1.0], 1.0)
    with pytest.raises(ValueError):
        metrics.steps_to_target([0, 2, 1], [1.0, 0.5, 0.2], 0.3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.0, 10.0), min_size=2, max_size=12), st.floats(0.0, 10.0), st.floats(0.0, 10.0))
def test_steps_to_target_is_monotone_in_the_target(ys, t1, t2):
    """A lower (harder) target is never reached earlier; the step lies within the curve's range."""
    xs = list(range(len(ys)))
    lo, hi = sorted((t1, t2))
    s_lo, s_hi = metrics.steps_to_target(xs, ys, lo), metrics.steps_to_target(xs, ys, hi)
    assert s_hi <= s_lo
    if math.isfinite(s_hi):
        assert xs[0] <= s_hi <= xs[-1]


# -------------------------------------------------------------------------------------------- ladder speedup

T = 400
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
BUDGETS = [T * f for f in FACTORS]


def _law(b: float) -> float:
    """A synthetic ladder with a known inverse: L(b) = 1 + 8 / sqrt(b)  <=>  b = (8 / (L - 1))^2."""
    return 1 + 8 / math.sqrt(b)


def _inverse(loss: float) -> float:
    return (8 / (loss - 1)) ** 2


def _ladder(seeds: int = 4, noise: float = 0.0) -> list[list[float]]:
    # deterministic, zero-mean per rung over the seeds: the seed means equal the law exactly
    offsets = [noise * (k - (seeds - 1) / 2) for k in range(seeds)]
    return [[_law(b) + o for b in BUDGETS] for o in offsets]


def test_isotonic_decreasing_pools_violators():
    assert metrics.isotonic_decreasing([3.0, 2.0, 1.0]) == [3.0, 2.0, 1.0]
    assert metrics.isotonic_decreasing([1.0, 2.0, 3.0]) == [2.0, 2.0, 2.0]
    assert metrics.isotonic_decreasing([4.0, 1.0, 3.0, 0.0], [1.0, 1.0, 3.0, 1.0]) == [4.0, 2.5, 2.5, 0.0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=10))
def test_isotonic_fit_is_non_increasing_and_keeps_the_mean(ys):
    fit = metrics.isotonic_decreasing(ys)
    assert all(b <= a + 1e-9 for a, b in itertools.pairwise(fit))
    # PAV preserves the (weighted) sum; float error bounded by n * eps * max|y|
    assert sum(fit) == pytest.approx(sum(ys), abs=1e-9 * len(ys) * max(1.0, *map(abs, ys)))


@pytest.mark.parametrize("true_factor", [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 3.9])
def test_ladder_speedup_recovers_a_known_inverse(true_factor):
    """The optimizer ends where AdamW would after true_factor x T: the speedup is true_factor up to the error of
    linear interpolation in log budget of a smooth law between rungs a factor 2 apart (< 3 % here: the second
    derivative of L in log b over one octave, checked against the exact inverse)."""
    final = _law(true_factor * T)
    sp = metrics.ladder_speedup(BUDGETS, _ladder(), [final] * 4, T)
    assert sp.refused is None and sp.point.bound == "="
    assert sp.point.value == pytest.approx(true_factor, rel=0.03)
    # exact at the rungs themselves
    if true_factor in FACTORS:
        assert sp.point.value == pytest.approx(true_factor, rel=1e-12)
    assert _inverse(final) / T == pytest.approx(true_factor, rel=1e-12)


def test_outside_the_ladder_is_a_bound_never_an_extrapolation():
    better = metrics.ladder_speedup(BUDGETS, _ladder(), [_law(8 * T)] * 4, T)  # beats the 4x rung
    assert (better.point.value, better.point.bound) == (4.0, ">") and str(better).startswith(">4×")
    worse = metrics.ladder_speedup(BUDGETS, _ladder(), [_law(0.1 * T)] * 4, T)
    assert (worse.point.value, worse.point.bound) == (0.25, "<") and str(worse).startswith("<0.25×")


def test_a_diverged_seed_is_a_miss_not_dropped():
    finals = [_law(2 * T)] * 3 + [math.inf]
    sp = metrics.ladder_speedup(BUDGETS, _ladder(), finals, T)
    assert sp.point.bound == "<" and sp.point.value == 0.25  # the seed mean is inf: worse than every rung
    # the bootstrap still sees the resamples without the diverged seed: the CI's upper end is the 2x answer
    assert sp.high.value == pytest.approx(2.0, rel=1e-9) and sp.low.bound == "<"


def test_bootstrap_ci_covers_seed_noise_and_pairs_seeds():
    lad = _ladder(seeds=6, noise=0.01)
    finals = [_law(2 * T) + 0.01 * (k - 2.5) for k in range(6)]  # seed k shares seed k's offset: paired
    sp = metrics.ladder_speedup(BUDGETS, lad, finals, T)
    assert sp.low.value <= sp.point.value <= sp.high.value
    assert sp.point.value == pytest.approx(2.0, rel=1e-9)
    # paired resampling cancels the shared seed offset exactly: every resample gives 2
    assert sp.low.value == pytest.approx(2.0, rel=1e-9) and sp.high.value == pytest.approx(2.0, rel=1e-9)
    unpaired = metrics.ladder_speedup(BUDGETS, lad, finals, T, paired=False)
    assert unpaired.high.value - unpaired.low.value > 0.01


def test_non_monotone_or_flat_ladder_refuses():
    rising = [[_law(b) for b in BUDGETS[:3]] + [_law(BUDGETS[1]), _law(BUDGETS[0])]]  # longer runs end worse
    sp = metrics.ladder_speedup(BUDGETS, rising * 3, [1.5] * 3, T)
    assert sp.refused and "not monotone" in sp.refused and str(sp) == "refused"
    flat = [[2.0 + 1e-3 * ((k + i) % 2) for i in range(5)] for k in range(4)]
    assert "flat" in metrics.ladder_problem(BUDGETS, flat)
    diverged = _ladder()
    diverged[1][2] = math.inf
    assert "diverged" in metrics.ladder_problem(BUDGETS, diverged)
    # a rise inside the seed noise is not a refusal
    noisy = [[_law(b) + (0.2 if (i == 4 and k == 0) else 0.0) for i, b in enumerate(BUDGETS)] for k in range(4)]
    noisy[1][4] -= 0.2
    assert metrics.ladder_problem(BUDGETS, noisy) is None


def test_budget_to_reach_checks_its_input():
    with pytest.raises(ValueError):
        metrics.budget_to_reach([1, 2], [1.0], 0.5)
    with pytest.raises(ValueError):
        metrics.budget_to_reach([2, 1], [2.0, 1.0], 1.5)
    with pytest.raises(ValueError):
        metrics.budget_to_reach([1, 2], [1.0, 2.0], 1.5)
    with pytest.raises(ValueError):
        metrics.ladder_speedup(BUDGETS, _ladder(), [1.0], 0)
    assert metrics.aggregate_bound(["=", "="]) == "=" and metrics.aggregate_bound(["=", ">"]) == ">"
    assert metrics.aggregate_bound(["<", ">"]) == "?"


# -------------------------------------------------------------------------------------------- power laws


def test_power_law_fit_recovers_known_parameters():
    xs = [100, 200, 400, 800, 1600, 3200]
    seeds = [[1.5 + 3.0 * x**-0.5 + 1e-4 * ((k + i) % 3 - 1) for i, x in enumerate(xs)] for k in range(4)]
    fit = metrics.fit_power_law(xs, seeds)
    # the profile grid on alpha is ~0.04 % wide after refinement; the 1e-4 noise moves E by about as much
    assert pytest.approx(1.5, abs=5e-3) == fit.E and fit.alpha == pytest.approx(0.5, rel=0.03)
    assert fit.E_ci[0] <= fit.E <= fit.E_ci[1] and fit.reliable
    assert fit(400) == pytest.approx(1.5 + 3.0 / 20, rel=1e-3)
    assert fit.inverse(fit(900)) == pytest.approx(900, rel=1e-6)
    assert metrics.data_efficiency(fit, fit(1600), 400) == pytest.approx(4.0, rel=1e-6)
    assert fit.inverse(fit.E - 1) == math.inf


def test_power_law_fit_says_when_it_is_unreliable():
    few = metrics.fit_power_law([1, 2, 4], [[3.0, 2.0, 1.5], [3.1, 2.1, 1.6]])
    assert any("points" in p for p in few.problems)
    linear = metrics.fit_power_law([1, 2, 3, 4, 5], [[5.0, 4.0, 3.0, 2.0, 1.0]] * 2)  # no power law: α at a bound
    assert not linear.reliable
    one_seed = metrics.fit_power_law([1, 2, 4, 8], [[3.0, 2.0, 1.5, 1.25]])
    assert "one seed" in "; ".join(one_seed.problems)
    with pytest.raises(ValueError):
        metrics.fit_power_law([1, 2], [[1.0, 0.5]])
    assert metrics.monotone_curve([3.0, 2.0, 2.0, 1.0]) and not metrics.monotone_curve([3.0, 1.0, 2.0])


# -------------------------------------------------------------------------------------------- performance profile


def test_performance_profile_known_answer():
    times = {
        "a": {"w1": 1.0, "w2": 4.0, "w3": math.inf},
        "b": {"w1": 2.0, "w2": 2.0, "w3": 3.0},
        "c": {"w1": 3.0, "w2": math.inf},  # no entry for w3: a miss
    }
    rho = metrics.performance_profile(times, [1.0, 1.5, 2.0, 3.0, 4.0])
    # best times: w1 1 (a), w2 2 (b), w3 3 (b).  ratios a: 1, 2, inf; b: 2, 1, 1; c: 3, inf, inf
    assert rho["a"] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert rho["b"] == pytest.approx([2 / 3, 2 / 3, 1.0, 1.0, 1.0])
    assert rho["c"] == pytest.approx([0.0, 0.0, 0.0, 1 / 3, 1 / 3])


def test_performance_profile_unsolved_workload_is_a_miss_for_everyone():
    rho = metrics.performance_profile({"a": {"w1": 1.0, "w2": math.inf}, "b": {"w1": 1.0, "w2": math.inf}}, [1, 10])
    assert rho == {"a": [0.5, 0.5], "b": [0.5, 0.5]}
    with pytest.raises(ValueError):
        metrics.performance_profile({"a": {}}, [1.0])


def test_profile_score():
    taus = [1.0, 2.0, 3.0, 5.0]
    assert metrics.profile_score(taus, [1.0, 1.0, 1.0, 1.0]) == pytest.approx(1.0)
    assert metrics.profile_score(taus, [0.0, 0.0, 0.0, 0.0]) == 0.0
    # linear ramp 0 -> 1 over [1, 5]: area 2 / width 4
    assert metrics.profile_score([1.0, 5.0], [0.0, 1.0]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        metrics.profile_score([1.0], [1.0])


# -------------------------------------------------------------------------------------------- aggregation


def test_geometric_mean():
    assert metrics.geometric_mean([1.0, 4.0, 16.0]) == pytest.approx(4.0)
    assert metrics.geometric_mean([2.5]) == pytest.approx(2.5)
    assert math.isnan(metrics.geometric_mean([]))
    with pytest.raises(ValueError):
        metrics.geometric_mean([1.0, 0.0])


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    lo, hi = metrics.bootstrap_ci(values)
    assert min(values) <= lo <= 3.5 <= hi <= max(values)
    assert metrics.bootstrap_ci(values) == (lo, hi)  # fixed seed
    assert metrics.bootstrap_ci([7.0]) == (7.0, 7.0)
    assert metrics.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)
    glo, ghi = metrics.bootstrap_ci([1.0, 4.0, 16.0], statistic="gmean")
    assert 1.0 <= glo <= 4.0 <= ghi <= 16.0
    narrow = metrics.bootstrap_ci(values, level=0.5)
    assert lo <= narrow[0] <= narrow[1] <= hi
    with pytest.raises(ValueError):
        metrics.bootstrap_ci([])
    with pytest.raises(ValueError):
        metrics.bootstrap_ci(values, level=1.0)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(metrics)
    assert result.attempted > 0 and result.failed == 0
