"""The benchmark's metric definitions, checked on synthetic curves whose answers are known in closed form."""

from __future__ import annotations

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


# -------------------------------------------------------------------------------------------- speedup


def _baseline_curve(n: int = 2001) -> tuple[list[float], list[float]]:
    """A baseline whose loss is L(s) = 1 / (1 + s / 100) on a dense grid of 0..1000 steps."""
    steps = [1000 * i / (n - 1) for i in range(n)]
    return steps, [1 / (1 + s / 100) for s in steps]


def test_speedup_known_answer():
    steps, losses = _baseline_curve()
    # the baseline reaches L(400) = 0.2 at step 400; an optimizer that gets there in 100 steps is 4x faster
    s = metrics.speedup(steps, losses, 0.2, 100)
    assert s.value == pytest.approx(4.0, rel=1e-3)
    assert not s.censored
    # one that needs 800 steps for the same loss is 2x slower
    assert metrics.speedup(steps, losses, 0.2, 800).value == pytest.approx(0.5, rel=1e-3)
    # the baseline against itself: exactly 1 at its own final point
    assert metrics.speedup(steps, losses, losses[-1], steps[-1]).value == pytest.approx(1.0)


def test_speedup_is_censored_when_the_baseline_never_gets_there():
    steps, losses = _baseline_curve()
    s = metrics.speedup(steps, losses, 0.01, 250)  # below the baseline's best, 1/11
    assert s.censored
    assert s.value == pytest.approx(1000 / 250)  # a lower bound: baseline budget / steps used


def test_speedup_of_a_diverged_run_is_zero_and_bad_steps_are_rejected():
    steps, losses = _baseline_curve()
    assert metrics.speedup(steps, losses, math.inf, 100) == metrics.Speedup(0.0)
    assert metrics.speedup(steps, losses, math.nan, 100).value == 0.0
    with pytest.raises(ValueError):
        metrics.speedup(steps, losses, 0.5, 0)


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
