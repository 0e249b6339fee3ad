"""Greedy BCD (Nutini, Laradji, Schmidt 2022): the rule ordering of Figs. 4/5 and ℓ1 active-set identification.

"≫" is read as "at least 5× smaller relative suboptimality" and "≈" as "within 10×" (fixed before measuring);
the spec's explicit "GSL ≥ 100× better than GS" is asserted as written.
"""

import pytest
import torch

from descend.classic import bcd


def _check_ordering(c):
    last = {k: v[-1] for k, v in c.items()}
    rnd, cyc, fgs, vgs = last["VB Random Lb"], last["Sort-FB Cyclic Lb"], last["Sort-FB GS Lb"], last["VB GS Lb"]
    fgsl, vgsl = last["Sort-FB GSL Lb"], last["VB GSL Lb"]
    fgsl_h, fgsq_h, vgsl_h = last["Sort-FB GSL Hb"], last["Sort-FB GSQ Hb"], last["VB GSL Hb"]
    assert rnd >= 5 * max(cyc, fgs), last  # Random ≫ Cyclic ≈ FB-GS
    assert max(cyc, fgs) <= 10 * min(cyc, fgs), last  # Cyclic ≈ FB-GS
    assert fgs >= 5 * vgs, last  # FB-GS ≫ VB-GS
    assert fgs >= 100 * fgsl and vgs >= 100 * vgsl, last  # GSL ≥ 100× better than GS
    assert fgsl >= 5 * fgsl_h and vgsl >= 5 * vgsl_h, last  # GSL ≫ Hb updates
    assert fgsq_h <= fgsl_h, last  # GSQ ≤ GSL under Hb


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rule_ordering_reduced(seed):
    # 100×1000 with 167 iterations keeps the paper's ratio p/(τ·iterations) ≈ 1.2 of 300×3000 at 500 iterations
    _check_ordering(bcd.rule_ordering(100, 1000, seed=seed, iters=167))


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rule_ordering_spec_size(seed):
    _check_ordering(bcd.rule_ordering(300, 3000, seed=seed, iters=500))


def test_hb_on_a_quadratic_reaches_the_solution():
    q = bcd.lattice_label_propagation(8, 6, seed=0)
    xstar = torch.linalg.solve(q.mat, q.c)
    fstar = float(-0.5 * q.c.dot(xstar))
    res = bcd.bcd(q, rule="gsq", partition="order", update="hb", block_size=4, max_iter=3000)
    # Q has weights 1e5 and a 1e-3 shift: κ ≈ 1e9, so compare f (error ~ κ·eps·|f*|) not x
    assert res.f[-1] - fstar <= 1e-6 * abs(fstar)


@pytest.mark.parametrize("update", ["la", "ls"])
def test_logistic_la_and_ls_updates_decrease_monotonically(update):
    a, y = bcd.dataset_a(60, 300, seed=1, kind="logistic")
    res = bcd.bcd(bcd.Logistic(a, y), rule="gsl", update=update, max_iter=100)
    f = torch.tensor(res.f)
    assert bool((f[1:] <= f[:-1] + 1e-9 * f[0]).all())
    lb = bcd.bcd(bcd.Logistic(a, y), rule="gsl", update="lb", max_iter=100)
    if update == "ls":  # exact block Newton + Armijo beats the global 1/L_b step by orders of magnitude
        assert res.f[-1] < 1e-3 * lb.f[-1]
    else:  # LA as in the reference (estimates only grow, block max): progress, but measured *behind* Lb here
        assert res.f[-1] < 0.9 * res.f[0]


def test_l1_proximal_newton_identifies_the_active_set():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    import numpy as np

    a, y = bcd.dataset_a(100, 1000, seed=1)
    lam = 0.1 * float((a.T @ y).abs().max())
    loss = bcd.NonNegL1(a, y, lam)
    am, ym = a.numpy(), y.numpy()
    ref = scipy_optimize.minimize(lambda x: (0.5 * np.sum((am @ x - ym) ** 2) + lam * x.sum(),
                                             am.T @ (am @ x - ym) + lam), np.zeros(1000), jac=True,
                                  method="L-BFGS-B", bounds=[(0, None)] * 1000,
                                  options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12})
    pn = bcd.bcd(loss, rule="gsq-nn", update="pn", max_iter=200, seed=1)
    pg = bcd.bcd(loss, rule="gsq-nn", update="pg", max_iter=200, seed=1)
    # finitely many support changes, the last well before the end, and the final support is the reference's
    assert pn.support_changes and pn.support_changes[-1] <= 100, pn.support_changes[-5:]
    assert set(torch.nonzero(pn.x > 0).flatten().tolist()) == set(np.flatnonzero(ref.x > 1e-8).tolist())
    # f* ≈ 3.5e4 with data of size ~1e4: 1e-9 relative is ~1e3 × round-off of one evaluation
    assert pn.f[-1] - ref.fun <= 1e-9 * abs(ref.fun)
    assert pg.f[-1] - ref.fun > 10 * (pn.f[-1] - ref.fun)  # projected gradient is still far behind


def test_bad_arguments_are_rejected():
    a, y = bcd.dataset_a(10, 20, seed=1)
    loss = bcd.LeastSquares(a, y)
    with pytest.raises(ValueError, match="rule must be one of"):
        bcd.bcd(loss, rule="best")
    with pytest.raises(ValueError, match="block_size must be in"):
        bcd.bcd(loss, block_size=0)
    with pytest.raises(ValueError, match="needs a fixed partition"):
        bcd.bcd(loss, rule="cyclic", partition="vb")
    with pytest.raises(ValueError, match="non-negative"):
        bcd.bcd(loss, update="pn")
