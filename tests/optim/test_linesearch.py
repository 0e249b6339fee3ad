"""SLS (SGD + Armijo/Goldstein), layer-wise Adam + Armijo and SaLSa: fixtures, live references, properties."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator

import pytest
import torch

import descend.optim as do
from descend.optim import SLS, LayerwiseAdamSLS, SaLSA
from descend.optim.replay import replay_file

from ..conftest import fixture_files

FIXTURES = fixture_files("sls_armijo_sgd__") + fixture_files("salsa__")
ALL = [SLS, SaLSA, LayerwiseAdamSLS]


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_replay(path) -> None:  # type: ignore[no-untyped-def]
    r = replay_file(path)
    assert r.passed, r
    assert {"step_size", "loss", "line_search_trials"} <= set(r.observable_ratios), r.observable_ratios


def test_fixtures_are_present() -> None:
    assert len(FIXTURES) == 4


# ---------------------------------------------------------------------------------------------- problems


def _mlp(seed: int, dtype: torch.dtype = torch.float64) -> tuple[list[torch.Tensor], Callable[..., torch.Tensor]]:
    """A small tanh network on random data with fixed mini-batches (batch index passed to the loss)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 5, generator=g, dtype=torch.float64).to(dtype)
    Y = torch.randn(48, 3, generator=g, dtype=torch.float64).to(dtype)
    shapes = [(4, 5), (4,), (3, 4), (3,)]
    P = [(0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).to(dtype).requires_grad_(True) for s in shapes]
    batches = [torch.randperm(48, generator=g)[:16] for _ in range(64)]

    def loss(t: int | None = None) -> torch.Tensor:
        rows = slice(None) if t is None else batches[t % len(batches)]
        out = torch.tanh(X[rows] @ P[0].T + P[1]) @ P[2].T + P[3]
        return 0.5 * ((out - Y[rows]) ** 2).mean() + 1e-3 * sum((p**2).sum() for p in P)

    return P, loss


@contextlib.contextmanager
def _default_dtype(dt: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _close(a: list[torch.Tensor], b: list[torch.Tensor], rtol: float = 1e-9, atol: float = 1e-12) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------------- live: SaLSa


@pytest.mark.reference
@pytest.mark.parametrize("kw", [
    {},
    {"use_mv": True, "c": 0.3},
    {"speed_up": False, "momentum": (0.8, 0.99, 0.5)},
    {"init_step_size": 0.05, "c": 0.1},
], ids=["defaults", "use_mv", "no_speed_up", "small_init"])
@pytest.mark.parametrize("seed", [0, 1])
def test_salsa_matches_package(kw: dict, seed: int) -> None:
    ref_mod = pytest.importorskip("salsa.SaLSA")
    steps = 60
    P_ref, loss_ref = _mlp(seed)
    P_me, loss_me = _mlp(seed)
    with _default_dtype(torch.float64):
        ref = ref_mod.SaLSA(P_ref, **kw)
    mine = SaLSA(P_me, **{("betas" if k == "momentum" else k): v for k, v in kw.items()})
    rng = torch.get_rng_state()
    for t in range(steps):
        def closure(backwards: bool = False, t: int = t) -> torch.Tensor:
            loss = loss_ref(t)
            if backwards:
                loss.backward()
            return loss
        ref.zero_grad()
        with _default_dtype(torch.float64):
            ref.step(closure)
        mine.step(lambda t=t: loss_me(t))
        _close(P_me, P_ref)
        assert mine.last_step_info["step_size"] == pytest.approx(ref.step_size, rel=1e-9, abs=1e-12)
        assert mine.last_step_info["ls_freq"] == pytest.approx(ref.state["LS_freq"], rel=1e-9)
    torch.set_rng_state(rng)


def test_salsa_textbook_bias_correction_first_step() -> None:
    """First step, no speed-up: v/(1-beta2) = g^2, so the search direction is g/(|g| + eps)."""
    P, loss = _mlp(3)
    x0 = [p.detach().clone() for p in P]
    opt = SaLSA(P, bias_correction="textbook", speed_up=False)
    g = torch.autograd.grad(loss(), P)
    opt.step(loss)
    eta = opt.last_step_info["step_size"]
    _close(P, [x - eta * (gi / (gi.abs() + 1e-8)) for x, gi in zip(x0, g, strict=True)], rtol=1e-12)
    # the package's off-by-one divides v by 1 - beta2^2 instead: a different first step
    P2, loss2 = _mlp(3)
    SaLSA(P2, speed_up=False).step(loss2)
    assert not torch.allclose(P2[0], P[0])


# ---------------------------------------------------------------------------------------------- live: Adam+Armijo


@pytest.mark.reference
@pytest.mark.parametrize("smooth", [False, True], ids=["plain", "smooth"])
@pytest.mark.parametrize("split", [[[0, 1, 2, 3]], [[0, 1], [2, 3]], [[0], [1], [2, 3]]],
                         ids=["1group", "2groups", "3groups"])
def test_adam_sls_matches_package(smooth: bool, split: list[list[int]]) -> None:
    """``salsa.adam_sls.AdamSLS(speed_up=False)`` computes the IJCNN'23 iterates; it allows 200 trials."""
    ref_mod = pytest.importorskip("salsa.adam_sls")
    P_ref, loss_ref = _mlp(5)
    P_me, loss_me = _mlp(5)
    kw = {"c": 0.1, "n_batches_per_epoch": 4, "smooth": smooth}
    with _default_dtype(torch.float64):
        ref = ref_mod.AdamSLS([[P_ref[j] for j in idx] for idx in split], speed_up=False, **kw)
    mine = LayerwiseAdamSLS([{"params": [P_me[j] for j in idx]} for idx in split], max_trials=200, **kw)
    rng = torch.get_rng_state()
    for t in range(20):
        ref.zero_grad()
        with _default_dtype(torch.float64), contextlib.redirect_stdout(None):
            ref.step(lambda t=t: loss_ref(t))
        mine.step(lambda t=t: loss_me(t))
        _close(P_me, P_ref)
        ours = [float(mine.state[g["params"][0]]["step_size"]) for g in mine.param_groups]
        assert ours == pytest.approx(ref.state["step_sizes"], rel=1e-9)
    torch.set_rng_state(rng)


def test_adam_sls_cycle_and_warmup() -> None:
    P, loss = _mlp(7)
    groups = [{"params": [P[0]]}, {"params": [P[1]]}, {"params": P[2:]}]
    opt = LayerwiseAdamSLS(groups, n_batches_per_epoch=2, c=0.1, warmup_steps=3)
    growth = 2.0 ** 0.5
    prev = None
    for t in range(12):
        opt.step(lambda t=t: loss(t))
        sizes = [float(opt.state[g["params"][0]]["step_size"]) for g in opt.param_groups]
        searched = int(opt.last_step_info["searched_group"])
        if t < 3:  # warm-up: one global search, one shared step size
            assert searched == -1 and len(set(sizes)) == 1
        else:  # the groups take turns; the others only grow by gamma^(1/b)
            assert searched == (t - 3) % 3
            for i in range(3):
                if i != searched:
                    assert sizes[i] == pytest.approx(prev[i] * growth, rel=1e-14)
        prev = sizes


def test_adam_sls_step_uses_momentum_direction() -> None:
    """The step taken is -lr * eta * P m_hat from the start point (one group, first step: m_hat = g)."""
    P, loss = _mlp(8)
    x0 = [p.detach().clone() for p in P]
    g = torch.autograd.grad(loss(), P)
    opt = LayerwiseAdamSLS(P, lr=0.5)
    opt.step(loss)
    eta = opt.last_step_info["step_size"]
    _close(P, [x - 0.5 * eta * gi / (gi.abs() + 1e-8) for x, gi in zip(x0, g, strict=True)], rtol=1e-12)


# ---------------------------------------------------------------------------------------------- SLS (no live ref)


def test_sls_accepted_step_satisfies_armijo() -> None:
    P, loss = _mlp(11)
    opt = SLS(P, n_batches_per_epoch=4, c=0.2)
    for t in range(15):
        x0 = [p.detach().clone() for p in P]
        f0 = float(loss(t).detach())
        g = torch.autograd.grad(loss(t), P)
        gn2 = sum(float((gi**2).sum()) for gi in g)
        opt.step(lambda t=t: loss(t))
        eta = opt.last_step_info["step_size"]
        _close(P, [x - eta * gi for x, gi in zip(x0, g, strict=True)], rtol=1e-12)
        assert float(loss(t).detach()) <= f0 - 0.2 * eta * gn2 * (1 - 1e-12)


@pytest.mark.parametrize("reset", [0, 1, 2])
def test_sls_reset_options(reset: int) -> None:
    P, loss = _mlp(12)
    opt = SLS(P, init_step_size=2.0, reset_option=reset, n_batches_per_epoch=3, gamma=2.0)
    prev = 2.0
    for t in range(10):
        opt.step(lambda t=t: loss(t))
        eta = opt.last_step_info["step_size"]
        trials = int(opt.last_step_info["line_search_trials"])
        start = {0: prev, 1: prev * 2.0 ** (1 / 3), 2: 2.0}[reset]
        assert eta == pytest.approx(start * 0.9 ** (trials - 1), rel=1e-12)
        prev = eta


def test_sls_goldstein_accepts_both_conditions() -> None:
    P, loss = _mlp(13)
    opt = SLS(P, line_search="goldstein", c=0.25, n_batches_per_epoch=2)
    for t in range(10):
        f0 = float(loss(t).detach())
        gn2 = sum(float((g**2).sum()) for g in torch.autograd.grad(loss(t), P))
        opt.step(lambda t=t: loss(t))
        eta, f1 = opt.last_step_info["step_size"], float(loss(t).detach())
        assert f0 - 0.75 * eta * gn2 <= f1 <= f0 - 0.25 * eta * gn2


def test_goldstein_rejects_c_above_half() -> None:
    with pytest.raises(ValueError, match="c"):
        SLS([torch.zeros(2, requires_grad=True)], line_search="goldstein", c=0.6)


def test_sls_never_accepting_follows_reference() -> None:
    """Armijo never satisfied: x - 1e-6 g and the step size shrunk max_trials times."""
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:  # every trial (evaluated without grad) looks worse
        return (p**2).sum() + (0.0 if torch.is_grad_enabled() else 1.0)

    opt = SLS([p], max_trials=7, n_batches_per_epoch=1)
    opt.step(closure)
    torch.testing.assert_close(p.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64) * (1 - 2e-6))
    assert opt.last_step_info["step_size"] == pytest.approx(2.0 * 0.9**7)
    assert opt.last_step_info["line_search_trials"] == 7


# ---------------------------------------------------------------------------------------------- shared behaviour


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_nonfinite_trials_are_rejected(cls: type) -> None:
    """A loss that is +inf (or NaN) far from the start: such trials fail and never become the iterate."""
    p = torch.tensor([0.5, -0.3, 0.2], dtype=torch.float64, requires_grad=True)

    def closure() -> torch.Tensor:
        val = ((p - 1) ** 2).sum()
        if not torch.is_grad_enabled() and float(p.abs().max()) > 0.6:
            return val * float("nan")
        return val

    opt = cls([p], init_step_size=5.0)
    # LayerwiseAdamSLS's step follows momentum, not the searched direction: only its first step (m_hat = g)
    # is guaranteed to be a point the search evaluated
    for _ in range(1 if cls is LayerwiseAdamSLS else 5):
        opt.step(closure)
        assert torch.isfinite(p).all() and float(p.detach().abs().max()) <= 0.6


@pytest.mark.parametrize("bad", ["loss", "grad"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_nonfinite_start_skips_the_step(cls: type, bad: str) -> None:
    P, loss = _mlp(14)
    opt = cls(P)
    for t in range(3):
        opt.step(lambda t=t: loss(t))
    before_p = [p.detach().clone() for p in P]
    before_s = copy.deepcopy(opt.state_dict())

    def closure() -> torch.Tensor:
        if bad == "loss":
            return loss(0) * float("inf")
        return loss(0) + torch.sqrt(P[1] * 0).sum()  # finite loss, NaN gradient (0 * d sqrt(0))

    out = opt.step(closure)
    assert (not math.isfinite(float(out))) if bad == "loss" else math.isfinite(float(out))
    assert all(torch.equal(a, b) for a, b in zip(P, before_p, strict=True))
    after = opt.state_dict()
    for k, st in before_s["state"].items():
        assert all(torch.equal(v, after["state"][k][n]) for n, v in st.items())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_closure_errors(cls: type) -> None:
    P, loss = _mlp(15)
    opt = cls(P)
    with pytest.raises(RuntimeError, match="closure"):
        opt.step()
    with pytest.raises(TypeError, match="one-element tensor"):
        opt.step(lambda: float(loss()))
    with pytest.raises(TypeError, match="one-element tensor"):
        opt.step(lambda: torch.stack([loss(), loss()]))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_repeat_rng_repeats_the_random_stream(cls: type) -> None:
    P, loss = _mlp(16)
    draws: list[float] = []

    def closure() -> torch.Tensor:
        draws.append(float(torch.rand(())))
        return loss(0)

    opt = cls(P, repeat_rng=True, init_step_size=10.0)  # large: several trials
    torch.manual_seed(0)
    opt.step(closure)
    assert len(draws) >= 2 and len(set(draws)) == 1
    after = torch.rand(())
    torch.manual_seed(0)
    torch.rand(())
    assert torch.equal(after, torch.rand(()))  # the RNG continues as if the closure had run once

    draws.clear()
    cls(P, init_step_size=10.0).step(closure)
    assert len(set(draws)) == len(draws) >= 2


@pytest.mark.parametrize("cls", [SLS, SaLSA], ids=lambda c: c.__name__)
def test_lr_scales_the_accepted_step_only(cls: type) -> None:
    P1, loss1 = _mlp(17)
    P2, loss2 = _mlp(17)
    x0 = [p.detach().clone() for p in P1]
    a, b = cls(P1), cls(P2, lr=0.25)
    a.step(loss1)
    b.step(loss2)
    assert a.last_step_info["step_size"] == b.last_step_info["step_size"]
    _close([x + 0.25 * (p - x) for p, x in zip(P1, x0, strict=True)], P2, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_bfloat16_keeps_float32_moments_and_float64_scalars(cls: type) -> None:
    P, loss = _mlp(18, dtype=torch.bfloat16)
    opt = cls(P)
    for t in range(3):
        opt.step(lambda t=t: loss(t))
    sd = opt.state_dict()
    P2, _ = _mlp(18, dtype=torch.bfloat16)
    opt2 = cls(P2)
    opt2.load_state_dict(copy.deepcopy(sd))
    for st in opt2.state.values():
        assert st["step_size"].dtype == torch.float64
        if "exp_avg" in st:
            assert st["exp_avg"].dtype == torch.float32
    assert all(torch.isfinite(p).all() for p in P)


def test_sls_groups_keep_their_own_step_size() -> None:
    P, loss = _mlp(19)
    opt = SLS([{"params": P[:2]}, {"params": P[2:], "init_step_size": 0.01, "reset_option": 0}])
    for t in range(5):
        opt.step(lambda t=t: loss(t))
    s0, s1 = (float(opt.state[g["params"][0]]["step_size"]) for g in opt.param_groups)
    assert s1 <= 0.01 < s0


def test_registry_entries() -> None:
    for name, fixture in [("sls", "sls_armijo_sgd"), ("salsa", "salsa"), ("adam_sls", None)]:
        spec = do.get(name)
        assert spec.requires_closure and spec.lr_key == "lr"
        if fixture:
            assert do.spec_for_fixture(fixture) is spec
