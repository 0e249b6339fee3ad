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
    res = bcd.bcd(q, rule="gsl", partition="vb", update="hb", block_size=8, max_iter=800)
    # Q has weights 1e5 and a 1e-3 shift: κ ≈ 1e9, so compare f (error ~ κ·eps·|f*| ≈ 1e-7 |f*| at worst) not x;
    # measured 1.1e-6 relative after 400 iterations, linear rate, so 800 iterations must reach 1e-8
    assert res.f[-1] - fstar <= 1e-8 * abs(fstar)


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


def test_softmax_block_bound_dominates_the_hessian_and_hb_beats_lb():
    loss = bcd.dataset_c(80, 60, 6, seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = 0.3 * torch.randn(loss.dim, generator=gen, dtype=torch.float64)
        b = torch.randperm(loss.dim, generator=gen)[:7]
        diff = loss.hbound(b.unsqueeze(0))[0] - loss.hess_block(x, loss.zinit(x), b)
        # H_b ⪰ ∇²_bb f must hold exactly; 1e-10 covers eigvalsh round-off on entries of size ~1e3
        assert float(torch.linalg.eigvalsh(diff)[0]) >= -1e-10
    xr = (0.1 * torch.randn(loss.dim, generator=gen, dtype=torch.float64)).requires_grad_(True)
    z = loss.mat @ xr.reshape(-1, loss.classes)
    (torch.logsumexp(z, 1) - z.gather(1, loss.labels.unsqueeze(1)).squeeze(1)).sum().backward()
    x = xr.detach()
    assert torch.allclose(loss.grad(x, loss.zinit(x)), xr.grad, rtol=1e-10, atol=1e-9)
    lb = bcd.bcd(loss, rule="gsl", update="lb", max_iter=150)
    hb = bcd.bcd(loss, rule="gsl", update="hb", max_iter=150)
    assert hb.f[-1] < lb.f[-1] < lb.f[0]


def test_forest_blocks_with_message_passing_beat_red_black_on_the_lattice():
    q = bcd.lattice_label_propagation(14, 10, seed=1)
    xs = torch.linalg.solve(q.mat, q.c)
    fstar = float(-0.5 * q.c.dot(xs))
    rb, forest = bcd.graph_partition(q, "red-black"), bcd.graph_partition(q, "forest")
    for b in rb:  # independent sets: Q_bb diagonal
        sub = q.mat[b][:, b]
        assert torch.count_nonzero(sub - torch.diag(sub.diagonal())) == 0
    gen = torch.Generator().manual_seed(0)
    for b in forest:  # forests: message passing solves Q_bb exactly (κ(Q_bb) ≲ 1e8 here, hence 1e-7)
        sub = q.mat[b][:, b]
        rhs = torch.randn(b.numel(), generator=gen, dtype=torch.float64)
        assert torch.linalg.vector_norm(sub @ bcd.forest_solve(sub, rhs) - rhs) <= 1e-7 * torch.linalg.vector_norm(rhs)
    iters = 30
    gap_rb = bcd.block_exact_descent(q, rb, iters=iters)[-1] - fstar
    gap_forest = bcd.block_exact_descent(q, forest, iters=iters)[-1] - fstar
    assert gap_forest * 5 <= gap_rb, (gap_forest, gap_rb)  # the paper's Fig. 6 claim, "≫" read as ≥ 5×
