"""Cautious optimizers: C-AdamW's two code paths, the generic ``cautious(Base)`` wrapper, validation.

The golden trajectories of the reference (``c_adamw__*.json``) are replayed by tests/optim/test_replay.py
through the registry; here the wrapper is checked against C-AdamW and against a direct implementation of
C-Lion, in float64.
"""

from __future__ import annotations

import pytest
import torch

from descend.optim import CAdamW, CLion, Lion, cautious
from descend.optim.cautious import cautious_scale


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(5, 4, generator=g, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(7, generator=g, dtype=torch.float64))]


def _grads(steps: int, seed: int = 1) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)]
            for _ in range(steps)]


def _run(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], grads: list[list[torch.Tensor]]) -> None:
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.clone()
        opt.step()


def test_cautious_scale_mask_and_floor() -> None:
    u = torch.tensor([1.0, -2.0, 3.0, 0.0], dtype=torch.float64)
    g = torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    # two of four agree (u*g > 0; a zero product does not): kept entries scaled by 1/0.5
    assert torch.equal(cautious_scale(u, g), torch.tensor([2.0, 0.0, 2.0, 0.0], dtype=torch.float64))
    # nothing agrees: the mean is floored at 1e-3, the update is zero rather than nan
    assert torch.equal(cautious_scale(u, -g.abs() * u.sign()), torch.zeros(4, dtype=torch.float64))


def test_wrapper_on_torch_adamw_is_c_adamw_foreach_path() -> None:
    # torch.optim.AdamW has the reference's foreach-path denominator (sqrt(v)/sqrt(1-b2^t) + eps, step
    # lr/(1-b1^t)) and mask sign(-delta) = sign(m_t), so cautious(AdamW) must retrace CAdamW(foreach=True).
    # The wrapper's delta = W_new - W_old is exact up to one rounding of W (|W| ~ 1: 1.1e-16 per step);
    # over 25 steps that is < 1e-14, far inside atol 1e-12 (the update per step is ~lr = 1e-2).
    grads = _grads(25)
    a, b = _params(), _params()
    hp = {"lr": 1e-2, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}
    _run(CAdamW(a, **hp, foreach=True), a, grads)
    _run(cautious(torch.optim.AdamW)(b, **hp), b, grads)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
    # and the cautious mask mattered: plain AdamW ends elsewhere
    c = _params()
    _run(torch.optim.AdamW(c, **hp), c, grads)
    assert (a[0] - c[0]).abs().max() > 1e-3


def test_loop_and_foreach_paths_differ_only_in_eps_placement() -> None:
    # with eps = 0 both paths are lr/bc1 * m / (sqrt(v)/sqrt(bc2)), only the rounding order differs
    grads = _grads(10)
    a, b = _params(), _params()
    _run(CAdamW(a, lr=1e-2, eps=0.0, foreach=True), a, grads)
    _run(CAdamW(b, lr=1e-2, eps=0.0, foreach=False), b, grads)
    for x, y in zip(a, b, strict=True):  # same math, different rounding order: a few ulps of the update
        torch.testing.assert_close(x, y, rtol=0, atol=1e-13)
    c = _params()
    _run(CAdamW(c, lr=1e-2, eps=1.0, foreach=False), c, grads)  # a visible eps separates the paths
    d = _params()
    _run(CAdamW(d, lr=1e-2, eps=1.0, foreach=True), d, grads)
    assert (c[0] - d[0]).abs().max() > 1e-4


def test_c_lion_matches_direct_rule() -> None:
    lr, (b1, b2), wd = 3e-3, (0.9, 0.99), 0.2
    grads = _grads(20)
    a = _params()
    _run(CLion(a, lr=lr, betas=(b1, b2), weight_decay=wd), a, grads)
    w = [p.detach().clone() for p in _params()]
    m = [torch.zeros_like(x) for x in w]
    for gs in grads:
        for i, g in enumerate(gs):
            u = (b1 * m[i] + (1 - b1) * g).sign()
            mask = (u * g > 0).double()
            w[i] = w[i] * (1 - lr * wd) - lr * u * mask / max(mask.mean().item(), 1e-3)
            m[i] = b2 * m[i] + (1 - b2) * g
    for x, y in zip(a, w, strict=True):  # delta rounding only (see above): ~1e-16 per step
        torch.testing.assert_close(x.detach(), y, rtol=0, atol=1e-13)
    b = _params()
    _run(Lion(b, lr=lr, betas=(b1, b2), weight_decay=wd), b, grads)
    assert (a[0] - b[0]).abs().max() > 1e-3  # the mask mattered


def test_wrapper_restores_weight_decay_and_refuses_lion_decoupled_decay() -> None:
    p = _params()
    opt = CLion(p, lr=1e-3, weight_decay=0.3)
    _run(opt, p, _grads(2))
    assert opt.param_groups[0]["weight_decay"] == 0.3
    with pytest.raises(ValueError, match="decoupled_weight_decay"):
        CLion(_params(), lr=1e-3, decoupled_weight_decay=True)
    with pytest.raises(ValueError, match="base"):
        cautious(int)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"lr": -1.0}, "lr"), ({"betas": (1.0, 0.9)}, r"betas\[0\]"), ({"eps": -1.0}, "eps"),
    ({"weight_decay": -0.1}, "weight_decay"), ({"foreach": 1}, "foreach"), ({"correct_bias": None}, "correct_bias"),
])
def test_c_adamw_validation_names_the_argument(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CAdamW(_params(), **kwargs)


def test_c_adamw_state_is_lazy_and_all_tensors() -> None:
    p = _params()
    opt = CAdamW(p)
    assert len(opt.state) == 0
    _run(opt, p, _grads(1))
    for st in opt.state.values():
        assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
        assert all(isinstance(v, torch.Tensor) for v in st.values())


def test_refused_group_is_not_kept() -> None:
    opt = CAdamW(_params())
    with pytest.raises(ValueError, match="eps"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))], "eps": -1.0})
    assert len(opt.param_groups) == 1


def test_wrapper_fires_step_hooks_once_even_when_the_base_step_is_hooked() -> None:
    Lion(_params(), lr=1e-3)  # a Lion instance makes torch wrap Lion.step with its hook runner
    p = _params()
    opt = CLion(p, lr=1e-3)
    calls = {"pre": 0, "post": 0}
    opt.register_step_pre_hook(lambda *_: calls.__setitem__("pre", calls["pre"] + 1))
    opt.register_step_post_hook(lambda *_: calls.__setitem__("post", calls["post"] + 1))
    _run(opt, p, _grads(3))
    assert calls == {"pre": 3, "post": 3}


@pytest.mark.parametrize("make", [lambda ps: CLion(ps, lr=1e-3, weight_decay=0.1),
                                  lambda ps: cautious(torch.optim.SGD)(ps, lr=1e-2, momentum=0.9)])
def test_wrapper_instances_pickle_and_step_like_the_original(make: object) -> None:
    import pickle

    p = _params()
    opt = make(p)  # type: ignore[operator]
    _run(opt, p, _grads(2))
    p2, opt2 = pickle.loads(pickle.dumps((p, opt)))
    assert type(opt2) is type(opt)  # the same run-time class (cautious(base) is cached)
    grads = _grads(3, seed=5)
    _run(opt, p, grads)
    _run(opt2, p2, grads)
    for a, b in zip(p, p2, strict=True):
        assert torch.equal(a, b)  # identical float64 arithmetic on identical state: bitwise equal
