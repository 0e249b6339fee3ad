"""MARS, exact form (``is_approx=False``): the correction uses the gradient of the *current* batch at the previous
iterate, ``c_t = g(x_t, ξ_t) + γ·β1/(1-β1)·(g(x_t, ξ_t) - g(x_{t-1}, ξ_t))`` (paper, Algorithm 1; ``x_0 = x_1``).

No recorded fixture covers this form (the reference's exact mode is driven by its training loop through
``update_previous_grad``/``update_last_grad``); it is checked against a direct float64 implementation of the
algorithm with analytic gradients.
"""

from __future__ import annotations

import io
import math

import pytest
import torch

from descend.optim import MARS

F64 = torch.float64


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 5, generator=g, dtype=F64), torch.randn(8, 3, generator=g, dtype=F64))
            for _ in range(steps)]


def _loss(W: torch.Tensor, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((A @ W.T - Y) ** 2).sum()


def _grad(W: torch.Tensor, A: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    return (A @ W.T - Y).T @ A  # d/dW of 0.5 ||A Wᵀ - Y||²


def _direct(W0: torch.Tensor, batches: list, lr: float, betas: tuple[float, float], gamma: float, eps: float,
            wd: float) -> torch.Tensor:
    b1, b2 = betas
    W, prev = W0.clone(), W0.clone()
    m, v = torch.zeros_like(W), torch.zeros_like(W)
    for t, (A, Y) in enumerate(batches, start=1):
        g, gp = _grad(W, A, Y), _grad(prev, A, Y)
        c = g + gamma * b1 / (1 - b1) * (g - gp)
        if c.norm() > 1:
            c = c / c.norm()
        m = b1 * m + (1 - b1) * c
        v = b2 * v + (1 - b2) * c * c
        prev = W.clone()
        W = W - lr * (wd * W + m / ((v.sqrt() / math.sqrt(1 - b2 ** t) + eps) * (1 - b1 ** t)))
    return W


def _run(opt_w: torch.nn.Parameter, opt: MARS, batches: list) -> None:
    for A, Y in batches:
        def closure(A: torch.Tensor = A, Y: torch.Tensor = Y) -> torch.Tensor:
            opt.zero_grad()
            loss = _loss(opt_w, A, Y)
            loss.backward()
            return loss
        opt.step(closure)


@pytest.mark.parametrize("gamma", [0.025, 0.5])
def test_exact_form_matches_a_direct_implementation(gamma: float) -> None:
    # float64, 15 steps of the same arithmetic in another order: rounding only (rtol 1e-11 leaves > 100x room:
    # the AdamW-form update is a ratio of well-scaled moments, the quadratic's curvature times lr is ~0.1)
    batches = _batches(15)
    W0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    hp = {"lr": 0.05, "betas": (0.9, 0.99), "gamma": gamma, "eps": 1e-8, "weight_decay": 0.1}
    w = torch.nn.Parameter(W0.clone())
    _run(w, MARS([w], is_approx=False, **hp), batches)
    expected = _direct(W0, batches, hp["lr"], hp["betas"], gamma, hp["eps"], hp["weight_decay"])
    torch.testing.assert_close(w.detach(), expected, rtol=1e-11, atol=1e-13)
    # and it is not the approximate form (whose correction uses the previous batch's gradient)
    w2 = torch.nn.Parameter(W0.clone())
    _run(w2, MARS([w2], **hp), batches)
    assert (w2.detach() - expected).abs().max() > 1e-6


def test_exact_form_needs_a_closure_and_resumes_bitwise() -> None:
    w = torch.nn.Parameter(torch.ones(3, 5, dtype=F64))
    opt = MARS([w], is_approx=False)
    w.grad = torch.ones_like(w)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    batches = _batches(8)
    W0 = torch.randn(3, 5, generator=torch.Generator().manual_seed(2), dtype=F64)
    straight = torch.nn.Parameter(W0.clone())
    _run(straight, MARS([straight], is_approx=False, lr=0.05), batches)
    first = torch.nn.Parameter(W0.clone())
    opt1 = MARS([first], is_approx=False, lr=0.05)
    _run(first, opt1, batches[:4])
    buf = io.BytesIO()
    torch.save(opt1.state_dict(), buf)
    buf.seek(0)
    resumed = torch.nn.Parameter(first.detach().clone())
    opt2 = MARS([resumed], is_approx=False, lr=0.05)
    opt2.load_state_dict(torch.load(buf, weights_only=True))
    _run(resumed, opt2, batches[4:])
    assert torch.equal(resumed.detach(), straight.detach())
    sd = opt1.state_dict()
    del sd["state"][0]["prev_param"]
    with pytest.raises(ValueError, match="prev_param"):
        MARS([torch.nn.Parameter(W0.clone())], is_approx=False).load_state_dict(sd)
    with pytest.raises(ValueError, match="is_approx"):
        MARS([w], is_approx="no")  # type: ignore[arg-type]


@pytest.mark.slow
def test_exact_form_passes_the_torch_contract() -> None:
    """The whole torch contract (descend.optim.testing.check_optimizer) with the closure-driven exact form."""
    from descend.optim.testing import check_optimizer

    report = check_optimizer(MARS, requires_closure=True, raise_on_failure=False, is_approx=False)
    assert report.ok, str(report)
