"""AdaBelief: golden fixtures, live comparison with adabelief-pytorch, the fused path, eps semantics."""

from __future__ import annotations

import math

import pytest
import torch

from descend.optim import AdaBelief
from descend.optim.adabelief import adabelief_adaptive, adabelief_rectified, rectified_step_multiplier
from descend.optim.replay import replay_file

from ..conftest import fixture_files
from .fused_equivalence import assert_fused_matches_eager

CONFIGS = [
    {},
    {"lr": 2e-3, "eps": 1e-8, "weight_decay": 5e-3, "weight_decouple": False, "rectify": False},
    {"betas": (0.9, 0.99), "eps": 1e-10, "weight_decay": 0.05, "amsgrad": True, "fixed_decay": True,
     "degenerated_to_sgd": False},
    {"eps": 1e-12, "weight_decay": 0.1, "amsgrad": True, "rectify": False},
]


@pytest.mark.parametrize("path", fixture_files("adabelief__"), ids=lambda p: p.stem)
def test_fixture_replay(path) -> None:
    result = replay_file(path)
    assert result.passed, f"{path.name}: max err/tol {result.max_ratio:.3g} (step {result.first_failing_step})"


@pytest.mark.reference
@pytest.mark.parametrize("hp", CONFIGS)
def test_matches_adabelief_pytorch(hp) -> None:
    ref_mod = pytest.importorskip("adabelief_pytorch")
    g = torch.Generator().manual_seed(5)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 5), (5,), (2, 3, 3)]]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o, r = AdaBelief(ours, **hp), ref_mod.AdaBelief(theirs, print_change_log=False, **hp)
    for _ in range(25):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = 1e-3 * torch.randn(a.shape, generator=g, dtype=torch.float64)  # small: eps matters
            b.grad = a.grad.clone()
        o.step()
        r.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("hp", CONFIGS, ids=["defaults", "l2_no_rectify", "amsgrad_fixed_no_sgd", "amsgrad_adam"])
def test_fused_equals_eager_float64(hp, monkeypatch) -> None:
    assert_fused_matches_eager(AdaBelief, hp, monkeypatch)


@pytest.mark.parametrize("fn", [adabelief_adaptive, adabelief_rectified])
def test_math_compiles_without_graph_breaks(fn) -> None:
    t = [torch.randn(16, dtype=torch.float64) for _ in range(5)]
    extra = {"sqrt_bc2": 0.1} if fn is adabelief_adaptive else {}
    explanation = torch._dynamo.explain(fn)(*t, decay=0.99, wd=0.0, coupled=False, beta1=0.9, beta2=0.999,
                                            eps=1e-8, step_size=1e-3, **extra)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_eps_accumulates_into_the_state() -> None:
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = AdaBelief([w], eps=1e-8, betas=(0.9, 0.5), rectify=False)
    for t in range(1, 4):
        w.grad = torch.zeros(3, dtype=torch.float64)
        opt.step()
        expected = 1e-8 * sum(0.5**k for k in range(t))  # s_t = 0.5 s_{t-1} + eps
        torch.testing.assert_close(opt.state[w]["exp_avg_var"], torch.full((3,), expected, dtype=torch.float64),
                                   rtol=1e-15, atol=0)
    assert opt.state[w]["step"].dtype == torch.float64 and opt.state[w]["step"].item() == 3


def test_rectification_schedule() -> None:
    # beta2 = 0.999: rho_t < 5 for t <= 5 (SGD fallback, as the defaults fixture describes), then RAdam's r_t
    assert [rectified_step_multiplier(t, 0.9, 0.999) is None for t in range(1, 8)] == [True] * 5 + [False] * 2
    rho_inf = 2 / (1 - 0.999) - 1
    assert rectified_step_multiplier(10**6, 0.9, 0.999) == pytest.approx(1.0, rel=1e-6)
    assert rho_inf == pytest.approx(1999.0)


def test_no_sgd_fallback_means_no_step_but_moments_move() -> None:
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = AdaBelief([w], degenerated_to_sgd=False)
    w.grad = torch.ones(4, dtype=torch.float64)
    opt.step()
    assert torch.equal(w.detach(), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(opt.state[w]["exp_avg"], torch.full((4,), 0.1, dtype=torch.float64))


def test_coupled_weight_decay_leaves_grad_untouched() -> None:
    w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
    opt = AdaBelief([w], weight_decay=0.1, weight_decouple=False)
    w.grad = torch.full((4,), 0.5, dtype=torch.float64)
    opt.step()
    assert torch.all(w.grad == 0.5)


def test_per_group_flags() -> None:
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = AdaBelief([{"params": [a]}, {"params": [b], "rectify": False, "amsgrad": True}])
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.step()
    assert "max_exp_avg_var" in opt.state[b] and "max_exp_avg_var" not in opt.state[a]
    assert not math.isclose(a[0].item(), b[0].item())  # SGD fallback vs Adam-like step


@pytest.mark.parametrize("bad", [{"rectify": "no"}, {"fused": 1}, {"amsgrad": None}])
def test_invalid_flags(bad) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        AdaBelief([torch.nn.Parameter(torch.ones(2))], **bad)


def test_bfloat16_state_is_float32() -> None:
    w = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    opt = AdaBelief([w], lr=1e-2)
    for _ in range(3):
        w.grad = torch.randn(8).to(torch.bfloat16)
        opt.step()
    assert w.dtype == torch.bfloat16 and opt.state[w]["exp_avg_var"].dtype == torch.float32
    assert torch.isfinite(w).all()
