"""Sophia-G: golden fixtures (parameters and unclipped fraction), live comparison with sophia-opt, the fused
path, the Gauss-Newton-Bartlett helper, edge cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from descend.optim import SophiaG, gnb_hessian_update
from descend.optim.replay import replay_file
from descend.optim.sophia import sophia_hessian_ema, sophia_update

from ..conftest import fixture_files
from .fused_equivalence import assert_fused_matches_eager


@pytest.mark.parametrize("path", fixture_files("sophia_g__"), ids=lambda p: p.stem)
def test_fixture_replay(path) -> None:
    result = replay_file(path)
    assert result.passed, f"{path.name}: max err/tol {result.max_ratio:.3g} (step {result.first_failing_step})"
    assert result.observable_ratios.get("unclipped_fraction", 2.0) <= 1.0


@pytest.mark.reference
@pytest.mark.parametrize("hp,bs", [({}, 5120), ({"lr": 6e-4, "rho": 0.05, "weight_decay": 0.2,
                                                 "betas": (0.96, 0.95)}, 3)])
def test_matches_sophia_opt(hp, bs) -> None:
    ref_mod = pytest.importorskip("sophia_opt")
    g = torch.Generator().manual_seed(9)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 5), (5,), (2, 3, 3)]]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o, r = SophiaG(ours, **hp), ref_mod.SophiaG(theirs, **hp)
    for t in range(25):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=g, dtype=torch.float64)
            b.grad = a.grad.clone()
        o.step(bs=bs)
        r.step(bs=bs)
        if t % 4 == 3:
            for a, b in zip(ours, theirs, strict=True):
                a.grad = torch.randn(a.shape, generator=g, dtype=torch.float64)
                b.grad = a.grad.clone()
            o.update_hessian()
            r.update_hessian()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("hp", [{"bs": 4, "lr": 1e-2}, {"bs": 2, "maximize": True, "rho": 0.1}])
def test_fused_equals_eager_float64(hp, monkeypatch) -> None:
    assert_fused_matches_eager(SophiaG, hp, monkeypatch, hessian_every=3)


def test_math_compiles_without_graph_breaks() -> None:
    t = [torch.randn(16, dtype=torch.float64) for _ in range(4)]
    e1 = torch._dynamo.explain(sophia_update)(*t, lr=0.1, beta1=0.9, decay=0.99, rho_bs=2.0, maximize=False)
    e2 = torch._dynamo.explain(sophia_hessian_ema)(t[0], t[1], beta2=0.99)
    assert e1.graph_break_count == e2.graph_break_count == 0


def test_before_any_hessian_update_every_step_is_a_clipped_sign_step() -> None:
    w = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = SophiaG([w], lr=0.1, weight_decay=0.0)
    w.grad = torch.tensor([1e-9, -3.0, 0.0, 2.0], dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.tensor([-0.1, 0.1, 0.0, -0.1], dtype=torch.float64))
    assert opt.unclipped_fraction() == 0.25  # only the zero-momentum coordinate is "unclipped"


def test_step_bs_overrides_group_bs_for_one_step() -> None:
    def run(**kw) -> torch.Tensor:
        w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        opt = SophiaG([w], lr=0.1, weight_decay=0.0, **kw.pop("ctor", {}))
        w.grad = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
        opt.update_hessian()
        opt.step(**kw)
        return w.detach()

    assert torch.equal(run(bs=7), run(ctor={"bs": 7}))
    assert not torch.equal(run(bs=7), run())
    with pytest.raises(ValueError, match="bs"):
        run(bs=0)


def test_gnb_helper_matches_manual_estimate() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 4).double()
    x = torch.randn(32, 5, dtype=torch.float64)
    opt = SophiaG(model.parameters(), betas=(0.9, 0.5))
    gnb_hessian_update(opt, model(x), generator=torch.Generator().manual_seed(1))
    # the same estimate by hand
    logits = model(x)
    y = torch.multinomial(torch.softmax(logits.detach().float(), -1), 1,
                          generator=torch.Generator().manual_seed(1)).squeeze(-1)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), list(model.parameters()))
    for p, gr in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(opt.state[p]["hessian"], 0.5 * gr * gr, rtol=1e-12, atol=1e-15)
        assert p.grad is None


def test_gnb_training_decreases_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x @ torch.randn(10, 3)).argmax(-1)  # separable labels
    model = torch.nn.Linear(10, 3)
    opt = SophiaG(model.parameters(), lr=2e-2, rho=0.05, bs=256, weight_decay=0.0)
    first = F.cross_entropy(model(x), y).item()
    for t in range(60):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if t % 10 == 9:
            gnb_hessian_update(opt, model(x))
    assert F.cross_entropy(model(x), y).item() < 0.8 * first
    assert 0.0 <= opt.unclipped_fraction() <= 1.0


def test_warns_when_the_hessian_loop_is_missing() -> None:
    """Without update_hessian() Sophia-G is sign-momentum: it says so once, after HESSIAN_OVERDUE steps."""
    import warnings

    from descend.optim.sophia import HESSIAN_OVERDUE, SophiaG

    w = torch.nn.Parameter(torch.ones(4))
    opt = SophiaG([w], lr=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(2 * HESSIAN_OVERDUE):
            w.grad = torch.ones(4)
            opt.step()
            if t == HESSIAN_OVERDUE - 2:
                assert not caught
    assert len([c for c in caught if "without update_hessian" in str(c.message)]) == 1
    opt2 = SophiaG([w], lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for t in range(2 * HESSIAN_OVERDUE):
            w.grad = torch.ones(4)
            opt2.step()
            if t % 10 == 9:
                opt2.update_hessian()  # the loop the paper runs: never overdue


def test_integrations_find_sophia_inside_framework_wrappers() -> None:
    from descend.integrations import sophia_optimizers
    from descend.optim.sophia import SophiaG

    opt = SophiaG([torch.nn.Parameter(torch.ones(2))])

    class Wrapper:  # Lightning's LightningOptimizer keeps it in ._optimizer, Accelerate's in .optimizer
        def __init__(self, inner: object, attr: str) -> None:
            setattr(self, attr, inner)

    assert sophia_optimizers([Wrapper(opt, "_optimizer"), torch.optim.SGD([torch.nn.Parameter(torch.ones(1))])]) \
        == [opt]
    assert sophia_optimizers(Wrapper(Wrapper(opt, "optimizer"), "_optimizer")) == [opt]
