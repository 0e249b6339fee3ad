"""Average-reward IGT: is there a step schedule whose regret slope meets the claim (≤ 0.75 over T ∈ [10³, 10⁵])?

    python benchmarks/rl_average_sweep.py                                  # the sweep quoted in the README
    python benchmarks/rl_average_sweep.py --seeds 0,1,2 --lrs 1 --powers 0.8   # the defaults on the check's seeds

The MDP, epoch length, window and slope fit of tests/rl/test_average_reward.py (|S| = 5, |A| = 2, H = 200, N = 10,
T = 10⁵ steps, least squares of log regret on log T over every iteration with T ≥ 10³).  Schedules: step
γ_k = γ₀·2/(k+2) and IGT momentum η_k = (2/(k+2))^p; descend's defaults are γ₀ = 1, p = 0.8.  The default grid is
γ₀ ∈ {1, 2, 3, 4} at p = 0.8 and γ₀ ∈ {0.3, 0.5, 1} at p ∈ {0.5, 0.67, 1}, on seeds 10–14, kept apart from the
evaluation seeds 0–2.  Each run takes 2–6 s on one core.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from descend.rl import AverageRewardIGT, Power, TabularMDP, TabularSoftmaxPolicy
from descend.rl.study import regret_slope

DEFAULT_GRID = [(lr, 0.8) for lr in (1.0, 2.0, 3.0, 4.0)] + \
    [(lr, p) for lr in (0.3, 0.5, 1.0) for p in (0.5, 0.67, 1.0)]


def slope(seed: int, lr: float, power: float, steps: int = 100_000) -> float:
    """The regret slope of one IGT run: :func:`descend.rl.study.regret_slope` over every iteration (T ≥ 10³)."""
    mdp = TabularMDP.random(5, 2, gamma=1.0, horizon=1, seed=0)
    alg = AverageRewardIGT(TabularSoftmaxPolicy(5, 2), mdp, seed=seed, lr=Power(lr, 1.0),
                           momentum=Power(1.0, power))
    curve = alg.run(steps)
    value = regret_slope({"env_steps": [float(c[0]) for c in curve], "regret": [float(c[1]) for c in curve]})
    assert value is not None
    return value


def _floats(ap: argparse.ArgumentParser, name: str, text: str | None, low_open: float) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        ap.error(f"--{name} must be comma-separated numbers, got {text!r}")
    if not vals or any(not np.isfinite(v) or v <= low_open for v in vals):
        ap.error(f"--{name} must be numbers > {low_open:g}, got {text!r}")
    return vals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="10,11,12,13,14", help="comma-separated seeds ≥ 0")
    ap.add_argument("--lrs", help="step scales γ₀ > 0 (with --powers: their full grid instead of the default one)")
    ap.add_argument("--powers", help="momentum exponents p > 0")
    a = ap.parse_args()
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    except ValueError:
        ap.error(f"--seeds must be comma-separated integers ≥ 0, got {a.seeds!r}")
    if not seeds or min(seeds) < 0 or max(seeds) >= 2**63:
        ap.error(f"--seeds must be comma-separated integers ≥ 0, got {a.seeds!r}")
    lrs, powers = _floats(ap, "lrs", a.lrs, 0.0), _floats(ap, "powers", a.powers, 0.0)
    if (lrs is None) != (powers is None):
        ap.error("--lrs and --powers go together (or neither: the default grid)")
    grid = DEFAULT_GRID if lrs is None or powers is None else [(lr, p) for lr in lrs for p in powers]
    torch.set_num_threads(1)
    print(f"seeds {seeds}; claim: mean slope ≤ 0.75")
    for lr, p in grid:
        slopes = [slope(s, lr, p) for s in seeds]
        print(f"γ₀ = {lr:g}, p = {p:g}: slopes {', '.join(f'{v:.3f}' for v in slopes)}; mean {np.mean(slopes):.3f}",
              flush=True)


if __name__ == "__main__":
    main()
