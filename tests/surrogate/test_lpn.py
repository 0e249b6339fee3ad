"""Learned proximal networks: convexity of ψ, f = ∇ψ symmetric PSD Jacobian, the prior formula, the 1-D Laplace
experiment (slow), plug-and-play deblurring of scikit-learn digits."""

from __future__ import annotations

import pytest
import torch

from descend.surrogate.lpn import (
    LPN,
    laplace_loss_minimizer,
    laplace_stages,
    pnp_admm,
    pnp_pgd,
    prior,
    soft_threshold,
    train_laplace,
    train_lpn,
)


def _random_lpn(dim: int, seed: int = 0, scale: float = 0.5) -> LPN:
    torch.manual_seed(seed)
    m = LPN(dim, 16, 3, 10.0).double()
    with torch.no_grad():  # perturb every weight (constrained ones stay >= 0 after the clip), away from the init
        for p in m.parameters():
            p.add_(scale * torch.randn_like(p))
    m.clip_weights()
    return m


def test_constrained_weights_stay_nonnegative_during_training() -> None:
    m = LPN(2, 8, 2)
    train_lpn(m, lambda n: torch.randn(n, 2), 0.5, stages=[("l2", 0.0, 1e-1, 20)], batch_size=32)
    assert all(bool((w >= 0).all()) for w in m.constrained())


def test_psi_is_convex_along_random_lines() -> None:
    """Second differences ψ(a + (t−h)v) − 2ψ(a + tv) + ψ(a + (t+h)v) ≥ 0 up to float64 rounding (|ψ| eps ~ 1e-14)."""
    m = _random_lpn(5)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        a, v = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
        t = torch.linspace(-3, 3, 201, dtype=torch.float64)
        psi = m.scalar(a + t[:, None] * v).detach()
        second = psi[:-2] - 2 * psi[1:-1] + psi[2:]
        assert float(second.min()) >= -1e-10 * max(1.0, float(psi.abs().max()))


def test_jacobian_of_f_is_symmetric_psd() -> None:
    """J_f = ∇²ψ: symmetric to rounding (two reverse-mode sweeps of the same Hessian, ~1e-15) and PSD (smallest
    eigenvalue ≥ −1e-10 ‖J‖)."""
    m = _random_lpn(4)
    g = torch.Generator().manual_seed(2)
    for _ in range(10):
        y = torch.randn(4, generator=g, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda z: m(z.unsqueeze(0)).squeeze(0), y)
        assert torch.allclose(jac, jac.T, atol=1e-10 * float(jac.abs().max()) + 1e-14)
        lam = torch.linalg.eigvalsh(0.5 * (jac + jac.T))
        assert float(lam.min()) >= -1e-10 * float(lam.abs().max())


def test_prior_makes_f_the_prox() -> None:
    """φ from inverting f: for y on a grid, x = f(y) minimises ½(y − x')² + φ(x') over x' in the range of f (the
    definition of f = prox_φ); checked on a 1-D LPN against every other grid value of φ."""
    m = _random_lpn(1, seed=3, scale=0.3)
    ys = torch.linspace(-2, 2, 41, dtype=torch.float64).unsqueeze(1)
    xs = m(ys).detach()
    assert float(xs.max() - xs.min()) > 0.5  # a non-trivial prox (not nearly constant)
    phi = prior(m, xs, steps=300, lr=5e-2)
    for i in range(0, 41, 5):
        obj = 0.5 * (ys[i] - xs.squeeze(1)) ** 2 + phi
        # the minimiser is x_i exactly; the inversion (Adam, ~1e-4 in y) perturbs φ at second order only
        assert int(obj.argmin()) == i or float(obj[i] - obj.min()) < 1e-6 * float(obj.abs().max())


def test_population_loss_minimizer_tends_to_soft_thresholding_and_misses_0_1_at_the_last_gamma() -> None:
    """The exact minimiser of the proximal-matching loss (quadrature, :func:`laplace_loss_minimizer`) tends to the
    MAP denoiser as γ → 0: at γ = 0.01 it is soft-thresholding within 0.02 (the threshold bias shrinks like γ:
    0.111, 0.065, 0.031 at γ = 0.1, 0.05, 0.02).  At the reference schedule's last γ = 0.1 it is 0.111 at y = 1:
    even a perfect minimiser of the schedule's last loss is outside the issue's ±0.1 there (what the xfail below
    measures); elsewhere it is within 1e-3 of soft-thresholding."""
    ys = [-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0]
    for y in ys:
        want = float(soft_threshold(torch.tensor(y)))
        assert abs(laplace_loss_minimizer(y, 0.01) - want) <= 0.02, y
    bias = [laplace_loss_minimizer(1.0, g) for g in (0.1, 0.05, 0.02)]
    assert bias[0] > bias[1] > bias[2] > 0
    assert bias[0] > 0.1 and laplace_loss_minimizer(-1.0, 0.1) < -0.1
    for y in (-3.0, -2.0, 0.0, 2.0, 3.0):
        assert abs(laplace_loss_minimizer(y, 0.1) - float(soft_threshold(torch.tensor(y)))) <= 1e-3, y


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured: the short schedule (8k steps) gives f(±1) = ±0.16–0.19 and the "
                   "reference schedule (44k steps, batch 2000, 35 min; python benchmarks/surrogate_lpn.py --schedule "
                   "reference) f(−1) = −0.177, f(1) = 0.167, outside ±0.1; the exact minimiser of the schedule's last "
                   "loss (γ = 0.1) is itself ±0.111 there (test above), so ±0.1 at y = ±1 needs γ below 0.1")
def test_laplace_prox_matching_gives_soft_thresholding() -> None:
    """The MAP denoiser for x ~ Laplace(0, 1), y = x + N(0, 1) is soft-thresholding at 1; proximal matching must
    recover it within ±0.1 at y = −3..3 while the ℓ2-trained LPN (MMSE) shrinks smoothly (|f(±1)| > 0.1).

    Strict xfail: the short schedule misses at ±1 (see the module docstring); if it starts passing, this fails and
    the README's LPN line must be updated."""
    pts = torch.tensor([-3.0, -2, -1, 0, 1, 2, 3]).unsqueeze(1)
    target = torch.tensor([-2.0, -1, 0, 0, 0, 1, 2])
    f_prox = train_laplace("prox", batch_size=1000, schedule="short")(pts).detach().squeeze(1)
    assert float((f_prox - target).abs().max()) <= 0.1, f_prox


@pytest.mark.slow
def test_laplace_l2_training_shrinks_smoothly() -> None:
    """The ℓ2-trained LPN is the MMSE denoiser: smooth shrinkage, clearly non-zero at y = ±1 (soft-thresholding,
    the MAP denoiser, would give 0 there)."""
    pts = torch.tensor([-3.0, -2, -1, 0, 1, 2, 3]).unsqueeze(1)
    f_l2 = train_laplace("l2", batch_size=1000, schedule="short")(pts).detach().squeeze(1)
    assert float(f_l2[2].abs()) > 0.1 and float(f_l2[4].abs()) > 0.1, f_l2
    assert bool((f_l2[1:] > f_l2[:-1]).all()), f_l2  # monotone, as a prox of a convex function must be


def test_laplace_schedules_anneal_gamma() -> None:
    for schedule in ("short", "reference"):
        gammas = [g for kind, g, _, _ in laplace_stages("prox", schedule=schedule) if kind == "prox"]
        assert sorted(set(gammas), reverse=True) == [0.5, 0.4, 0.3, 0.2, 0.1]
        assert gammas == sorted(gammas, reverse=True)  # annealed: never increases
    assert {kind for kind, *_ in laplace_stages("l2")} == {"l2"}


def _digits_deblur() -> tuple[LPN, torch.Tensor, torch.Tensor, torch.Tensor]:
    datasets = pytest.importorskip("sklearn.datasets")
    imgs = torch.tensor(datasets.load_digits().images, dtype=torch.float32) / 16.0  # (1797, 8, 8) in [0, 1]
    train, test = imgs[:1500].reshape(-1, 64), imgs[1500:1510].reshape(-1, 64)
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32) / 16  # 3x3 Gaussian-like blur
    a = torch.zeros(64, 64)
    for i in range(8):
        for j in range(8):
            for di in range(-1, 2):
                for dj in range(-1, 2):
                    if 0 <= i + di < 8 and 0 <= j + dj < 8:
                        a[i * 8 + j, (i + di) * 8 + j + dj] = k[di + 1, dj + 1]
    g = torch.Generator().manual_seed(0)
    b = test @ a.T + 0.02 * torch.randn(test.shape, generator=g)
    torch.manual_seed(0)
    model = LPN(64, 32, 2, 10.0)

    def sample(n: int) -> torch.Tensor:
        return train[torch.randint(0, train.shape[0], (n,))]

    train_lpn(model, sample, 0.1, stages=[("l2", 0.0, 3e-3, 150)], batch_size=64)
    return model, a, b, test


def test_pnp_with_lpn_prox_converges_on_digits_deblurring() -> None:
    """PnP proximal gradient (step 1/‖A‖² = 1 for this normalised blur) and PnP-ADMM (ρ = 0.1) with the LPN as prox:
    the relative change of the iterates ‖x_{k+1} − x_k‖/‖x_k‖ falls to 1e-3 (PGD) and the ADMM residual ‖x − z‖/‖z‖
    to 1e-4 (float32: rounding floor ~1e-7), and ADMM's reconstruction beats the blurred observation.  PGD at step 1
    weights the prior as φ/1, too strong for observation noise 0.02 with a prior learned at σ = 0.1: it converges but
    to an over-smoothed image (measured error 5.5 vs 4.8 for b), so its quality is not asserted."""
    model, a, b, clean = _digits_deblur()
    _, res = pnp_pgd(model, lambda z: z @ a.T, lambda r: r @ a, b, step=1.0, iters=150)
    assert max(res[-10:]) < 1e-3, res[-5:]
    assert res[-1] < 1e-2 * res[0]
    x2, res2 = pnp_admm(model, a, b, rho=0.1, iters=150)
    assert res2[-1] < 1e-4, res2[-5:]
    assert float((x2 - clean).norm()) < float((b - clean).norm())
