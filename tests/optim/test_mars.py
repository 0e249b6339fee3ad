"""MARS (approximate form): the correction, the clipping, the three bases, the 1-D AdamW, validation.

The reference's recorded trajectories (``mars__*.json``) are replayed by tests/optim/test_replay.py; these
tests check the pieces against independent float64 computations.
"""

from __future__ import annotations

import copy

import pytest
import torch

from descend.optim import MARS
from descend.optim._linalg import newton_schulz

F64 = torch.float64


def _param(*shape: int, seed: int = 0) -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64))


def _grad(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_gamma_zero_without_clipping_is_adamw() -> None:
    # gamma = 0 makes c_t = g_t; gradients of norm < 1 leave clipping off; optimize_1d sends the bias through
    # the same AdamW form.  W -= lr (wd W + m_hat/(sqrt(v_hat)+eps)) equals torch's W *= 1-lr wd; W -= lr u
    # up to rounding (a few ulps of |W| ~ 1 per step: < 1e-14 after 20 steps, atol 1e-12).
    a = [_param(4, 3), _param(5, seed=1)]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    hp = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    mars = MARS(a, **hp, gamma=0.0, optimize_1d=True)
    adamw = torch.optim.AdamW(b, **hp)
    for t in range(20):
        for pa, pb in zip(a, b, strict=True):
            g = _grad(*pa.shape, seed=100 + t, scale=0.05)  # norm ~ 0.05 * sqrt(12) < 1
            pa.grad, pb.grad = g.clone(), g.clone()
        mars.step()
        adamw.step()
    for pa, pb in zip(a, b, strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-12)


def test_correction_first_step_and_clipping() -> None:
    gamma, b1 = 0.05, 0.95
    k = gamma * b1 / (1 - b1)
    p = _param(3, 4)
    opt = MARS([p], lr=1e-3, betas=(b1, 0.99), gamma=gamma)
    g1, g2 = _grad(3, 4, seed=1, scale=0.01), _grad(3, 4, seed=2, scale=0.01)
    p.grad = g1.clone()
    opt.step()
    m1 = (1 - b1) * (1 + k) * g1  # g_0 = 0: c_1 = (1 + k) g_1, norm ~ 0.03 (not clipped)
    torch.testing.assert_close(opt.state[p]["exp_avg"], m1, rtol=1e-14, atol=0)
    p.grad = g2.clone()
    opt.step()
    c2 = g2 + k * (g2 - g1)
    torch.testing.assert_close(opt.state[p]["exp_avg"], b1 * m1 + (1 - b1) * c2, rtol=1e-14, atol=0)
    # a large gradient: c_3 is divided by its norm
    g3 = _grad(3, 4, seed=3, scale=10.0)
    m2 = opt.state[p]["exp_avg"].clone()
    p.grad = g3.clone()
    opt.step()
    c3 = g3 + k * (g3 - g2)
    c3 = c3 / c3.norm()
    torch.testing.assert_close(opt.state[p]["exp_avg"], b1 * m2 + (1 - b1) * c3, rtol=1e-14, atol=1e-16)


def test_last_grad_is_a_copy() -> None:
    # the reference keeps a reference to p.grad; descend copies it, so reusing one grad buffer in place
    # (what backward() does with set_to_none=False) gives the same trajectory as fresh tensors
    a, b = _param(4, 4), _param(4, 4)
    oa, ob = MARS([a], lr=1e-2), MARS([b], lr=1e-2)
    b.grad = torch.zeros(4, 4, dtype=F64)
    for t in range(5):
        g = _grad(4, 4, seed=t, scale=0.1)
        a.grad = g.clone()
        b.grad.copy_(g)
        oa.step()
        ob.step()
    assert torch.equal(a, b)


def test_lion_and_shampoo_forms_match_direct_rules() -> None:
    lr, wd, b1 = 1e-2, 0.1, 0.95
    for kind, shape in (("mars-lion", (4, 6)), ("mars-shampoo", (6, 4)), ("mars-shampoo", (2, 3, 2))):
        p = _param(*shape)
        w = p.detach().clone()
        opt = MARS([p], lr=lr, betas=(b1, 0.99), weight_decay=wd, gamma=0.0, mars_type=kind, ns_dtype=F64)
        m = torch.zeros_like(w)
        for t in range(4):
            g = _grad(*shape, seed=t, scale=0.05)
            p.grad = g.clone()
            opt.step()
            m = b1 * m + (1 - b1) * g
            if kind == "mars-lion":
                w = w - lr * (wd * w + m.sign())
            else:
                mat = (m / (1 - b1)).reshape(shape[0], -1)
                ortho = newton_schulz(mat, dtype=F64, normalization="keller", eps=1e-8).reshape(shape)
                w = w - lr * (max(1.0, mat.shape[0] / mat.shape[1]) ** 0.5 * ortho + wd * w)
        # float64, the same operations up to order: a few ulps of |W| ~ 1
        torch.testing.assert_close(p.detach(), w, rtol=0, atol=1e-13, msg=f"{kind} {shape}")


def test_vectors_take_adamw_with_the_1d_hyperparameters_and_follow_the_schedule() -> None:
    bias = _param(5)
    opt = MARS([bias], lr=1e-3, lr_1d=1e-2, betas_1d=(0.9, 0.95), weight_decay_1d=0.0)
    opt.param_groups[0]["lr"] = 5e-4  # a schedule halves lr: the 1-D learning rate halves too
    w = bias.detach().clone()
    bias.grad = _grad(5, seed=1)
    opt.step()
    # first AdamW step: m_hat/sqrt(v_hat) = sign(g) (eps 1e-8 negligible at |g| ~ 1: relative 1e-8)
    torch.testing.assert_close(bias.detach(), w - 5e-3 * bias.grad.sign(), rtol=0, atol=1e-9)
    assert set(opt.state[bias]) == {"step", "exp_avg", "exp_avg_sq"}  # no last_grad for AdamW tensors


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"lr": -1.0}, "lr"), ({"betas": (1.0, 0.9)}, r"betas\[0\]"), ({"gamma": -0.1}, "gamma"),
    ({"mars_type": "mars-sgd"}, "mars_type"), ({"betas_1d": (0.9,)}, "betas_1d"), ({"lr_1d": -1.0}, "lr_1d"),
    ({"is_approx": "no"}, "is_approx"), ({"ns_steps": 0}, "ns_steps"), ({"ns_dtype": torch.int32}, "ns_dtype"),
    ({"optimize_1d": 1}, "optimize_1d"),
])
def test_validation_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        MARS([_param(2, 2)], **kwargs)


def test_refused_group_is_not_kept() -> None:
    opt = MARS([_param(2, 2)])
    with pytest.raises(ValueError, match="gamma"):
        opt.add_param_group({"params": [_param(3, 3)], "gamma": -1.0})
    assert len(opt.param_groups) == 1


def test_a_groups_own_lr_scales_its_vectors_like_the_reference_lr_1d_factor() -> None:
    # the reference: 1-D lr = group lr * lr_1d / (constructor lr); a group at 0.1x lr moves its vectors 0.1x
    w, a, b = _param(4, 3), _param(5, seed=1), _param(5, seed=1)
    opt = MARS([{"params": [w, a]}, {"params": [b], "lr": 1e-4}], lr=1e-3, lr_1d=1e-2, weight_decay_1d=0.0)
    added = _param(5, seed=1)
    opt.add_param_group({"params": [added], "lr": 2e-3})  # added later: still relative to the constructor lr
    assert [g["lr_init"] for g in opt.param_groups] == [1e-3, 1e-3, 1e-3]
    starts = [p.detach().clone() for p in (a, b, added)]
    g = _grad(5, seed=2)
    w.grad = _grad(4, 3, seed=3)
    a.grad, b.grad, added.grad = g.clone(), g.clone(), g.clone()
    opt.step()
    # first AdamW step: m_hat/sqrt(v_hat) = sign(g) (eps 1e-8 negligible at |g| ~ 1: relative 1e-8)
    for p, start, lr in zip((a, b, added), starts, (1e-2, 1e-3, 2e-2), strict=True):
        torch.testing.assert_close(p.detach(), start - lr * g.sign(), rtol=0, atol=1e-9)


def test_load_state_dict_refuses_bad_groups_and_missing_or_foreign_state_keys() -> None:
    w, bias = _param(4, 3), _param(5, seed=1)
    src = MARS([w, bias], lr=1e-3, amsgrad=True)
    w.grad, bias.grad = _grad(4, 3, seed=2), _grad(5, seed=3)
    src.step()

    def target() -> MARS:
        return MARS([_param(4, 3), _param(5, seed=1)], lr=1e-3, amsgrad=True)

    for key, value in (("lr", float("nan")), ("lr", -1.0), ("mars_type", "mars-sgd"), ("lr_init", -1.0)):
        state = copy.deepcopy(src.state_dict())  # torch's state_dict shares the state dicts
        state["param_groups"][0][key] = value
        opt = target()
        with pytest.raises(ValueError, match=key):
            opt.load_state_dict(state)
        assert not opt.state
    for pid, key in ((0, "last_grad"), (0, "max_exp_avg_sq"), (1, "exp_avg_sq")):
        state = copy.deepcopy(src.state_dict())  # torch's state_dict shares the state dicts
        del state["state"][pid][key]
        with pytest.raises(ValueError, match=key):
            target().load_state_dict(state)
    state = copy.deepcopy(src.state_dict())  # torch's state_dict shares the state dicts
    state["state"][1]["momentum_buffer"] = state["state"][1]["exp_avg"]
    with pytest.raises(ValueError, match="momentum_buffer"):
        target().load_state_dict(state)
    opt = target()
    opt.load_state_dict(src.state_dict())
    assert set(opt.state[opt.param_groups[0]["params"][0]]) == {"step", "exp_avg", "last_grad", "exp_avg_sq",
                                                                 "max_exp_avg_sq"}


def test_weight_decay_per_group_decays_matrices_and_weight_decay_1d_vectors() -> None:
    # lr_1d = lr and a zero gradient history aside, decay is the only difference between the runs
    def run(wd: float, wd_1d: float) -> list[torch.Tensor]:
        w1, w2, v = _param(4, 3), _param(4, 3, seed=1), _param(5, seed=2)
        opt = MARS([{"params": [w1]}, {"params": [w2, v], "weight_decay": wd, "weight_decay_1d": wd_1d}],
                   lr=1e-2, lr_1d=1e-2, weight_decay=0.0, weight_decay_1d=0.0)
        for step in range(3):
            for p in (w1, w2, v):
                p.grad = _grad(*p.shape, seed=10 + step)
            opt.step()
        return [p.detach().clone() for p in (w1, w2, v)]

    base, decayed, decayed_1d = run(0.0, 0.0), run(0.5, 0.0), run(0.0, 0.5)
    assert torch.equal(base[0], decayed[0]) and torch.equal(base[0], decayed_1d[0])  # first group untouched
    assert not torch.equal(base[1], decayed[1]) and torch.equal(base[2], decayed[2])  # wd: the matrix only
    assert torch.equal(base[1], decayed_1d[1]) and not torch.equal(base[2], decayed_1d[2])  # wd_1d: the vector
    assert decayed_1d[2].norm() < base[2].norm()
