"""Lion: golden fixtures, live comparison with lion-pytorch, the fused path, edge cases."""

from __future__ import annotations

import io

import pytest
import torch

from descend.optim import Lion
from descend.optim.lion import lion_update
from descend.optim.replay import replay_file

from ..conftest import fixture_files
from .fused_equivalence import assert_fused_matches_eager, random_run


@pytest.mark.parametrize("path", fixture_files("lion__"), ids=lambda p: p.stem)
def test_fixture_replay(path) -> None:
    result = replay_file(path)
    assert result.passed, f"{path.name}: max err/tol {result.max_ratio:.3g} (step {result.first_failing_step})"


@pytest.mark.reference
@pytest.mark.parametrize("hp", [{}, {"lr": 3e-3, "betas": (0.95, 0.98), "weight_decay": 0.3},
                                {"lr": 1e-3, "weight_decay": 0.01, "decoupled_weight_decay": True}])
def test_matches_lion_pytorch(hp) -> None:
    ref_mod = pytest.importorskip("lion_pytorch")
    g = torch.Generator().manual_seed(3)
    init = [torch.randn(s, generator=g, dtype=torch.float64) for s in [(6, 5), (5,), (2, 3, 3)]]
    ours = [torch.nn.Parameter(t.clone()) for t in init]
    theirs = [torch.nn.Parameter(t.clone()) for t in init]
    o, r = Lion(ours, **hp), ref_mod.Lion(theirs, **hp)
    for _ in range(25):
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=g, dtype=torch.float64)
            b.grad = a.grad.clone()
        o.step()
        r.step()
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("hp", [{"weight_decay": 0.1, "lr": 1e-2},
                                {"decoupled_weight_decay": True, "weight_decay": 1e-3, "lr": 1e-2}])
def test_fused_equals_eager_float64(hp, monkeypatch) -> None:
    assert_fused_matches_eager(Lion, hp, monkeypatch)


def test_math_compiles_without_graph_breaks() -> None:
    t = [torch.randn(16, dtype=torch.float64) for _ in range(3)]
    explanation = torch._dynamo.explain(lion_update)(*t, lr=0.1, beta1=0.9, beta2=0.99, decay=0.99)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


def test_zero_gradient_coordinates_only_decay() -> None:
    w = torch.nn.Parameter(torch.ones(2, 3, dtype=torch.float64))
    opt = Lion([w], lr=0.1, weight_decay=0.5)
    w.grad = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    opt.step()
    expected = torch.tensor([[0.95 - 0.1, 0.95 + 0.1, 0.95], [0.95, 0.95, 0.95]], dtype=torch.float64)
    torch.testing.assert_close(w.detach(), expected, rtol=0, atol=1e-15)


def test_decoupled_weight_decay_follows_schedule_not_scale() -> None:
    w = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = Lion([w], lr=0.2, weight_decay=0.1, decoupled_weight_decay=True)
    opt.param_groups[0]["lr"] = 0.1  # a scheduler halves the lr: decay becomes 0.1 * 0.1 / 0.2
    w.grad = torch.zeros(3, dtype=torch.float64)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((3,), 0.95, dtype=torch.float64), rtol=0, atol=1e-15)
    assert opt.state_dict()["param_groups"][0]["lr_init"] == 0.2


def test_decoupled_weight_decay_needs_positive_initial_lr() -> None:
    with pytest.raises(ValueError, match="lr"):
        Lion([torch.nn.Parameter(torch.ones(2))], lr=0.0, decoupled_weight_decay=True)


@pytest.mark.parametrize("bad", [{"fused": "yes"}, {"decoupled_weight_decay": 1}, {"betas": (0.9,)}])
def test_invalid_flags(bad) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Lion([torch.nn.Parameter(torch.ones(2))], **bad)


def test_bfloat16_keeps_float32_state_and_resumes_bitwise() -> None:
    def run(resume_at: int | None) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        w = torch.nn.Parameter(torch.randn(4, 5, generator=g).to(torch.bfloat16))
        opt = Lion([w], lr=1e-2, weight_decay=0.1)
        for t in range(6):
            w.grad = torch.randn(4, 5, generator=g).to(torch.bfloat16)
            opt.step()
            if t + 1 == resume_at:
                buf = io.BytesIO()
                torch.save({"w": w.detach().clone(), "opt": opt.state_dict()}, buf)
                buf.seek(0)
                saved = torch.load(buf)
                w = torch.nn.Parameter(saved["w"])
                opt = Lion([w], lr=1e-2, weight_decay=0.1)
                opt.load_state_dict(saved["opt"])
                assert opt.state[w]["exp_avg"].dtype == torch.float32
        return w.detach()

    assert torch.equal(run(None), run(3))


def test_fused_float32_close_to_eager() -> None:
    a = random_run(Lion, {"lr": 1e-2, "weight_decay": 0.1}, fused=False, dtype=torch.float32)
    b = random_run(Lion, {"lr": 1e-2, "weight_decay": 0.1}, fused=True, dtype=torch.float32)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
