"""The default schedules have the forms of the authors' released code (Fatkhullin et al. 2023: NIGT_optimizer.py,
STORMHess_optimizer.py): with ``t`` counted from 0 here, each default equals the code's formula at that ``t``."""

from __future__ import annotations

import math

import pytest

from descend.rl import HARPG, NHARPG, NPGIGT, TabularMDP, TabularSoftmaxPolicy


@pytest.mark.parametrize("cls, gamma0, step_power, eta_power", [
    (NPGIGT, 1.0, 1.0, 0.8),     # γ_t = γ_0·2/(t+2),       η_t = (2/(t+2))^{4/5}
    (NHARPG, 1.0, 1.0, 1.0),     # γ_t = γ_0·2/(t+2),       η_t = 2/(t+2)
    (HARPG, 0.01, 0.5, 1.0),     # γ_t = γ_0·(2/(t+2))^{1/2}, η_t = 2/(t+2)
])
def test_default_schedules_have_the_codes_forms(cls: type, gamma0: float, step_power: float,
                                                eta_power: float) -> None:
    alg = cls(TabularSoftmaxPolicy(2, 2), TabularMDP.random(2, 2, seed=0))
    for t in (0, 1, 7, 1000):
        assert math.isclose(alg.lr(t), gamma0 * (2 / (t + 2)) ** step_power, rel_tol=1e-15)
        assert math.isclose(alg.momentum(t), (2 / (t + 2)) ** eta_power, rel_tol=1e-15)
