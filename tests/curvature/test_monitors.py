"""Training monitors: exact values on problems with known curvature, costs as reported, and the edge of
stability of Cohen et al. (2021) observed with the sharpness monitor in a plain GD loop."""

from __future__ import annotations

import math

import pytest
import torch

from descend.curvature import (
    CurvatureOperator,
    HVPOperator,
    KernelChangeMonitor,
    Monitors,
    ParameterChangeMonitor,
    SharpnessMonitor,
    TraceMonitor,
)

from .conftest import Problem


def _quadratic(dim: int = 30, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    lam = torch.logspace(1, -2, dim, dtype=torch.float64)  # lambda_max = 10, decaying spectrum
    return Q @ torch.diag(lam) @ Q.T, lam


def test_sharpness_and_trace_on_a_quadratic_and_costs() -> None:
    A, lam = _quadratic()
    theta = torch.randn(30, dtype=torch.float64, requires_grad=True)
    ops: list[CurvatureOperator] = []

    def operator() -> CurvatureOperator:
        ops.append(HVPOperator.from_function(lambda ps: 0.5 * ps[0] @ A @ ps[0], [theta]))
        return ops[-1]

    sharp = SharpnessMonitor(operator, lr=0.15, every=5, tol=1e-8)
    assert sharp(3) is None and not sharp.history  # not due
    r = sharp(5)
    assert r is not None
    # Weyl: |theta - lambda_max| <= residual <= tol * |lambda|
    assert r["sharpness"] == pytest.approx(10.0, rel=1e-7)
    assert r["eos_threshold"] == pytest.approx(2 / 0.15) and r["sharpness_ratio"] == pytest.approx(0.75, rel=1e-7)
    assert r["sharpness_hvp"] == ops[-1].n_calls > 0  # the cost it reports is the cost it paid
    r2 = sharp(10)  # warm start from the last eigenvector: converged after a step or two
    assert r2 is not None and r2["sharpness_hvp"] <= 3 < r["sharpness_hvp"]
    tr = TraceMonitor(operator, lr=lambda: 0.1, every=1, budget=30)
    t = tr(1)
    assert t is not None and t["trace_hvp"] == ops[-1].n_calls == 30
    # Hutch++ on a spectrum decaying from 10 to 0.01: 10 sketch columns capture the top, the rest is small
    assert abs(t["trace"] - lam.sum().item()) <= 4 * t["trace_se"] + 1e-9
    assert t["sgd_stability"] == pytest.approx(0.1 * t["trace"] / 2)


def test_gradient_descent_on_a_quadratic_is_stable_iff_sharpness_ratio_below_one() -> None:
    """The fact the edge of stability is measured against: GD on 0.5 x^T A x is stable iff eta lambda_max < 2."""
    A, _ = _quadratic()
    for eta, stable in ((0.19, True), (0.21, False)):
        x = torch.ones(30, dtype=torch.float64)
        op = HVPOperator.from_function(lambda ps: 0.5 * ps[0] @ A @ ps[0], [x.clone()])
        mon = SharpnessMonitor(lambda op=op: op, lr=eta)  # type: ignore[misc]
        ratio = mon(1)["sharpness_ratio"]  # type: ignore[index]
        for _ in range(400):
            x = x - eta * (A @ x)
        assert (ratio < 1) == stable == bool(x.norm() < 30 ** 0.5)  # contracts from ||1|| or blows up (1.1^400)


def test_edge_of_stability_in_full_batch_gd() -> None:
    """Cohen et al. (2021): under full-batch GD the sharpness settles at 2/eta.  A tanh MLP with MSE, eta = 0.4
    (above 2 / lambda_max at initialisation): GD is not divergent, the sharpness falls to 2/eta and hovers
    there (ratio within 5 %) for the rest of training, while the loss keeps decreasing overall."""
    torch.manual_seed(0)
    x = torch.randn(64, 4, dtype=torch.float64)
    y = torch.sin(x @ torch.randn(4, 1, dtype=torch.float64))
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1)).double()
    loss_fn = torch.nn.functional.mse_loss
    opt = torch.optim.SGD(model.parameters(), lr=0.4)
    mons = Monitors([SharpnessMonitor(lambda: HVPOperator(model, loss_fn, (x, y)), lr=opt, every=10),
                     ParameterChangeMonitor(model.parameters(), every=10)])
    first = mons(0)
    assert first is not None and first["sharpness_ratio"] > 1.1 and first["param_change"] == 0.0
    loss0 = float(loss_fn(model(x), y))
    for t in range(200):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        mons(t + 1)
    ratios = [h["sharpness_ratio"] for h in mons.monitors[0].history if h["step"] >= 50]
    assert len(ratios) == 16 and all(0.95 <= r <= 1.05 for r in ratios), ratios
    assert float(loss_fn(model(x), y)) < 0.5 * loss0
    assert mons.monitors[1].history[-1]["param_change"] > 0


def test_parameter_and_kernel_change(problem: Problem) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2).double()
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    probe = torch.randn(5, 3, dtype=torch.float64)
    k_lin, k_mlp = KernelChangeMonitor(lin, probe), KernelChangeMonitor(mlp, probe)
    p_mlp = ParameterChangeMonitor(mlp.parameters())
    theta0 = torch.cat([p.detach().reshape(-1) for p in mlp.parameters()]).clone()
    # the empirical NTK is J J^T (J: Jacobian of the 10 outputs in the parameters)
    from torch.func import functional_call

    names = [k for k, _ in mlp.named_parameters()]
    shapes = [p.shape for p in mlp.parameters()]

    def out(flat: torch.Tensor) -> torch.Tensor:
        ps = [c.view(s) for c, s in zip(torch.split(flat, [math.prod(s) for s in shapes]), shapes, strict=True)]
        return functional_call(mlp, dict(zip(names, ps, strict=True)), (probe,)).reshape(-1)

    J = torch.autograd.functional.jacobian(out, theta0)
    assert torch.allclose(k_mlp.kernel0, J @ J.T, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        for p in list(lin.parameters()) + list(mlp.parameters()):
            p.add_(0.3 * torch.randn_like(p))
    r_lin, r_mlp, r_p = k_lin(1), k_mlp(1), p_mlp(1)
    assert r_lin is not None and r_mlp is not None and r_p is not None
    assert r_lin["kernel_change"] <= 1e-12  # a linear model's kernel does not depend on its parameters
    assert r_mlp["kernel_change"] > 1e-3 and r_mlp["kernel_change_hvp"] == 10
    theta1 = torch.cat([p.detach().reshape(-1) for p in mlp.parameters()])
    assert r_p["param_change"] == pytest.approx(((theta1 - theta0).norm() / theta0.norm()).item(), rel=1e-12)
    assert r_p["param_change_hvp"] == 0


def test_diverged_training_reads_nan_and_bad_every() -> None:
    w = torch.tensor([math.inf, 1.0], dtype=torch.float64, requires_grad=True)
    mon = SharpnessMonitor(lambda: HVPOperator.from_function(lambda ps: (ps[0] ** 4).sum(), [w]), lr=0.1)
    r = mon(1)
    assert r is not None and math.isnan(r["sharpness"])
    with pytest.raises(ValueError, match="every"):
        ParameterChangeMonitor([w], every=0)
