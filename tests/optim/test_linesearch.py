"""SLS (SGD + Armijo/Goldstein), layer-wise Adam + Armijo and SaLSa: fixtures, live references, properties."""

from __future__ import annotations

import contextlib
import copy
import math
import pickle
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.optim.optimizer as torch_optimizer

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
        opt.step(lambda: "0.5")
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


# ---------------------------------------------------------------------------------------------- closures


def _data(seed: int) -> tuple[list[torch.Tensor], Callable[[list[torch.Tensor], int], torch.Tensor]]:
    """Like :func:`_mlp`, but the loss takes the parameters, so that copies of an optimizer can be stepped."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 5, generator=g, dtype=torch.float64)
    Y = torch.randn(48, 3, generator=g, dtype=torch.float64)
    shapes = [(4, 5), (4,), (3, 4), (3,)]
    P = [(0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).requires_grad_(True) for s in shapes]
    batches = [torch.randperm(48, generator=g)[:16] for _ in range(64)]

    def loss(P: list[torch.Tensor], t: int) -> torch.Tensor:
        rows = batches[t % len(batches)]
        x, y = X[rows].to(P[0].dtype), Y[rows].to(P[0].dtype)
        out = torch.tanh(x @ P[0].T + P[1]) @ P[2].T + P[3]
        return 0.5 * ((out - y) ** 2).mean() + 1e-3 * sum((p**2).sum() for p in P)

    return P, loss


def _groups(cls: type, P: list[torch.Tensor]) -> list[dict]:
    """Two groups for the layer-wise search (so that its cycle runs), one for the others."""
    if cls is LayerwiseAdamSLS:
        return [{"params": P[:2]}, {"params": P[2:]}]
    return [{"params": P}]


def _state_equal(a: dict, b: dict) -> bool:
    sa, sb = a["state"], b["state"]
    return sa.keys() == sb.keys() and all(
        sa[k].keys() == sb[k].keys() and all(torch.equal(torch.as_tensor(sa[k][n]), torch.as_tensor(sb[k][n]))
                                             for n in sa[k]) for k in sa)


def _copy(P: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_(True) for p in P]


def _equal(P: list[torch.Tensor], Q: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(P, Q, strict=True))


Loss = Callable[[list[torch.Tensor], int], torch.Tensor]


def _trained(cls: type, seed: int, steps: int, **kw: object) -> tuple[list[torch.Tensor], Loss, torch.optim.Optimizer]:
    """Parameters, loss and an optimizer ``cls`` on them (``_groups``) after ``steps`` steps."""
    P, loss = _data(seed)
    opt = cls(_groups(cls, P), **kw)
    for t in range(steps):
        opt.step(lambda t=t: loss(P, t))
    return P, loss, opt


def _lockstep(a: torch.optim.Optimizer, P: list[torch.Tensor], b: torch.optim.Optimizer, Q: list[torch.Tensor],
              loss: Callable[[list[torch.Tensor], int], torch.Tensor], steps: range) -> None:
    """Step ``a`` on ``P`` and ``b`` on ``Q`` over the same batches; the parameters must stay bitwise equal."""
    for t in steps:
        a.step(lambda t=t: loss(P, t))
        b.step(lambda t=t: loss(Q, t))
        assert _equal(P, Q), t


@pytest.mark.parametrize("zero_to_none", [True, False], ids=["set_to_none", "zero_in_place"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_torch_closure_convention_gives_the_same_iterates(cls: type, zero_to_none: bool) -> None:
    """``zero_grad(); loss.backward(); return loss`` (LBFGS's closure) and the no-backward closure give
    bitwise the same iterates: the trial losses are the same computations, only autograd differs."""
    P1, loss = _data(20)
    P2 = _copy(P1)
    a, b = cls(_groups(cls, P1), init_step_size=3.0), cls(_groups(cls, P2), init_step_size=3.0)
    for t in range(12):
        def torch_closure(t: int = t) -> torch.Tensor:
            b.zero_grad(set_to_none=zero_to_none)
            value = loss(P2, t)
            value.backward()
            return value
        fa = a.step(lambda t=t: loss(P1, t))
        fb = b.step(torch_closure)
        assert torch.equal(fa, fb)
        assert _equal(P1, P2), t
        # after the step p.grad is the gradient at the start point in both conventions
        assert all(torch.equal(x.grad, y.grad) for x, y in zip(P1, P2, strict=True))
        assert a.last_step_info == b.last_step_info
    assert a.last_step_info["line_search_trials"] >= 1
    assert _state_equal(a.state_dict(), b.state_dict())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_lightning_style_closure_returning_a_detached_loss(cls: type) -> None:
    """PyTorch Lightning's closure back-propagates and returns ``loss.detach().clone()``; some LBFGS closures
    return ``loss.item()``."""
    P1, loss = _data(21)
    P2 = _copy(P1)
    a, b = cls(_groups(cls, P1)), cls(_groups(cls, P2))
    for t in range(6):
        def closure(t: int = t) -> torch.Tensor | float:
            b.zero_grad()
            value = loss(P2, t)
            value.backward()
            return value.detach().clone() if t % 2 else value.item()  # LBFGS-style closures may return a number
        a.step(lambda t=t: loss(P1, t))
        b.step(closure=closure)
        assert _equal(P1, P2)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_step_returns_the_loss_at_the_start_point(cls: type) -> None:
    P, loss = _data(22)
    opt = cls(_groups(cls, P))
    for t in range(3):
        with torch.no_grad():
            expected = loss(P, t)
        out = opt.step(lambda t=t: loss(P, t))
        assert isinstance(out, torch.Tensor) and not out.requires_grad
        assert torch.equal(out, expected)
        assert opt.last_step_info["loss"] == float(expected)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_no_gradient_is_a_no_op(cls: type) -> None:
    """As for torch optimizers (PyTorch's ``test_step_is_noop_when_params_have_no_grad``): parameters that
    get no gradient are neither moved nor given state; the closure's value is returned."""
    params = [torch.randn(2, 3, dtype=torch.float64) for _ in range(2)]  # requires_grad=False
    before = [p.clone() for p in params]
    opt = cls(params)
    out = opt.step(lambda: torch.tensor([1.0]))
    assert torch.equal(out, torch.tensor([1.0]))
    assert _equal(params, before) and not opt.state
    assert opt.step(lambda: None) is None and not opt.state
    assert opt.step(lambda: 1) == 1 and not opt.state  # PyTorch's hook tests use such a closure
    # parameters that require grad but on which the loss does not depend
    P, loss = _data(23)
    other = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = cls([other])
    opt.step(lambda: loss(P, 0))
    assert other.grad is None and torch.equal(other, torch.zeros(3, dtype=torch.float64)) and not opt.state


class _Boom(Exception):
    pass


@pytest.mark.parametrize("torch_convention", [False, True], ids=["no_backward", "backward"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_closure_raising_mid_search_restores_parameters_and_state(cls: type, torch_convention: bool) -> None:
    """The closure fails at the first trial (the parameters have moved, the new Adam moments are computed):
    parameters and state are exactly those before the step, and the following steps equal those of an
    optimizer which never saw the failure."""
    P, loss = _data(24)
    Q = _copy(P)
    opt, twin = cls(_groups(cls, P)), cls(_groups(cls, Q))
    _lockstep(opt, P, twin, Q, loss, range(3))
    x_before = [p.detach().clone() for p in P]
    s_before = copy.deepcopy(opt.state_dict())
    calls = [0]
    moved = []

    def failing() -> torch.Tensor:
        calls[0] += 1
        if calls[0] == 2:  # the first evaluation, then the failure at the first trial
            moved.append(not _equal(P, x_before))
            raise _Boom
        if torch_convention:
            opt.zero_grad()
        value = loss(P, 3)
        if torch_convention:
            value.backward()
        return value

    with pytest.raises(_Boom):
        opt.step(failing)
    assert calls[0] == 2 and moved == [True]
    assert _equal(P, x_before)
    assert _state_equal(opt.state_dict(), s_before)
    _lockstep(opt, P, twin, Q, loss, range(3, 6))


# ---------------------------------------------------------------------------------------------- torch contract


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_state_dict_with_python_number_scalars_loads(cls: type) -> None:
    """Older torch and many checkpoints hold ``step`` (here every scalar) as a Python number."""
    P, loss, opt = _trained(cls, 25, 8)
    sd = copy.deepcopy(opt.state_dict())
    for st in sd["state"].values():
        for k, v in st.items():
            if v.dim() == 0:
                st[k] = int(v) if k == "step" else float(v)
    Q = _copy(P)
    other = cls(_groups(cls, Q))
    other.load_state_dict(sd)
    _lockstep(opt, P, other, Q, loss, range(8, 14))


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_copy_then_step_equals_step(cls: type, how: str) -> None:
    extra = {"warmup_steps": 2} if cls is LayerwiseAdamSLS else {}
    P, loss, opt = _trained(cls, 26, 3, repeat_rng=True, **extra)
    if how == "deepcopy":
        P2, opt2 = copy.deepcopy((P, opt))
    else:
        P2, opt2 = pickle.loads(pickle.dumps((P, opt)))
    assert opt2.repeat_rng is True and opt2.last_step_info == opt.last_step_info
    if cls is LayerwiseAdamSLS:
        assert opt2.warmup_steps == 2
    for t in range(3, 8):
        torch.manual_seed(t)
        opt.step(lambda t=t: loss(P, t) + 1e-3 * torch.rand(()))  # random closure: repeat_rng matters
        torch.manual_seed(t)
        opt2.step(lambda t=t: loss(P2, t) + 1e-3 * torch.rand(()))
        assert _equal(P, P2)
        assert opt.last_step_info == opt2.last_step_info


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf")])
@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_hyperparameters_validated_in_add_param_group_and_load_state_dict(cls: type, value: float) -> None:
    P, loss = _data(27)
    opt = cls([{"params": P[:2]}])
    opt.step(lambda: loss(P, 0))
    sd = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match="lr"):
        opt.add_param_group({"params": P[2:], "lr": value})
    assert len(opt.param_groups) == 1
    with pytest.raises(ValueError, match="init_step_size"):
        opt.add_param_group({"params": P[2:], "init_step_size": value})
    with pytest.raises(ValueError, match="lr"):
        cls([{"params": P[:2]}, {"params": P[2:], "lr": value}])
    bad = copy.deepcopy(sd)
    bad["param_groups"][0]["lr"] = value
    with pytest.raises(ValueError, match="lr"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 1.0 and _state_equal(opt.state_dict(), sd)
    opt.add_param_group({"params": P[2:], "lr": 0.5})  # a valid group is accepted
    assert opt.param_groups[1]["lr"] == 0.5


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_load_state_dict_of_another_optimizer_is_refused(cls: type) -> None:
    P, loss = _data(28)
    opt = cls(P)
    opt.step(lambda: loss(P, 0))
    adam = torch.optim.Adam(P)
    for p in P:
        p.grad = torch.ones_like(p)
    adam.step()
    with pytest.raises(ValueError, match="another optimizer"):
        opt.load_state_dict(adam.state_dict())
    other = next(c for c in ALL if c is not cls)(P)
    other.step(lambda: loss(P, 0))
    with pytest.raises(ValueError, match="another optimizer"):
        opt.load_state_dict(other.state_dict())
    missing = copy.deepcopy(opt.state_dict())
    del missing["state"][0]["step_size"]
    with pytest.raises(ValueError, match="step_size"):
        opt.load_state_dict(missing)
    if "exp_avg" in opt.state[P[0]]:
        half = copy.deepcopy(opt.state_dict())
        del half["state"][0]["exp_avg_sq"]
        with pytest.raises(ValueError, match="exp_avg_sq"):
            opt.load_state_dict(half)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_state_of_a_frozen_group_round_trips(cls: type) -> None:
    """A group with lr = 0 gets no moments (the layer-wise search still keeps its step size): such a state
    loads back."""
    P, loss = _data(34)
    opt = cls([{"params": P[:2]}, {"params": P[2:], "lr": 0.0}])
    for t in range(3):
        opt.step(lambda t=t: loss(P, t))
    Q = _copy(P)
    other = cls([{"params": Q[:2]}, {"params": Q[2:], "lr": 0.0}])
    other.load_state_dict(opt.state_dict())
    _lockstep(opt, P, other, Q, loss, range(3, 6))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_hooks_fire_once_per_step(cls: type) -> None:
    P, loss = _data(29)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # a torch optimizer in the process
    opt = cls(_groups(cls, P), init_step_size=10.0)  # several trials per step
    calls: list[str] = []
    handles = [
        opt.register_step_pre_hook(lambda *a: calls.append("pre")),
        opt.register_step_post_hook(lambda *a: calls.append("post")),
        torch_optimizer.register_optimizer_step_pre_hook(lambda *a: calls.append("global_pre")),
        torch_optimizer.register_optimizer_step_post_hook(lambda *a: calls.append("global_post")),
    ]
    try:
        for t in range(3):
            opt.step(lambda t=t: loss(P, t))
    finally:
        for h in handles:
            h.remove()
    assert opt.last_step_info["line_search_trials"] >= 1
    assert sorted(calls) == sorted(["pre", "post", "global_pre", "global_post"] * 3)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_named_parameters(cls: type) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    a, b = cls(model.named_parameters()), cls(twin.parameters())
    assert a.param_groups[0]["param_names"] == [n for n, _ in model.named_parameters()]
    for _ in range(4):
        a.step(lambda: ((model(x) - y) ** 2).mean())
        b.step(lambda: ((twin(x) - y) ** 2).mean())
    assert _equal(list(model.parameters()), list(twin.parameters()))
    assert "param_names" in a.state_dict()["param_groups"][0]


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_one_element_tensor_lr(cls: type) -> None:
    """``lr=torch.tensor([0.5])`` (ndim 1) behaves as ``lr=0.5``."""
    P1, loss = _data(30)
    P2 = _copy(P1)
    a, b = cls(_groups(cls, P1), lr=0.5), cls(_groups(cls, P2), lr=torch.tensor([0.5]))
    _lockstep(a, P1, b, P2, loss, range(5))
    with pytest.raises(ValueError, match="lr"):
        cls(P1, lr=torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_float32_makes_progress_like_float64(cls: type) -> None:
    """200 steps on the tanh network (full batch): float32 reaches a loss within 1% of float64's (its own
    rounding, ~1e-7 relative per operation, is far below the 1% the comparison allows)."""
    finals = {}
    for dtype in (torch.float64, torch.float32):
        P, loss = _data(31)
        P = [p.detach().to(dtype).requires_grad_(True) for p in P]
        opt = cls(_groups(cls, P))
        first = float(loss(P, 0).detach())
        for _ in range(200):
            opt.step(lambda P=P, loss=loss: loss(P, 0))
        finals[dtype] = float(loss(P, 0).detach())
        assert finals[dtype] < 0.5 * first, (dtype, first, finals[dtype])
    assert finals[torch.float32] == pytest.approx(finals[torch.float64], rel=1e-2)


def test_one_cycle_lr_cycles_adam_beta1() -> None:
    """OneCycleLR looks for ``betas`` (or ``momentum``) in the defaults: the Adam-based searches have it (its
    first entry is Adam's beta1; SaLSa's third, the smoothing factor, is kept); SLS, plain SGD, has no
    momentum, so OneCycleLR needs ``cycle_momentum=False`` (torch's own error says so otherwise)."""
    for cls in (SaLSA, LayerwiseAdamSLS):
        P, loss = _data(32)
        opt = cls(P)
        third = opt.param_groups[0]["betas"][2:]
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=20)
        for t in range(20):
            opt.step(lambda t=t, P=P, loss=loss: loss(P, t))
            if t < 19:
                sched.step()
        assert opt.param_groups[0]["betas"][2:] == third
        assert opt.param_groups[0]["betas"][0] != 0.9  # cycled
    P, loss = _data(32)
    sls = SLS(P)
    with pytest.raises(ValueError, match="momentum"):
        torch.optim.lr_scheduler.OneCycleLR(sls, max_lr=1.0, total_steps=20)
    sched = torch.optim.lr_scheduler.OneCycleLR(sls, max_lr=1.0, total_steps=20, cycle_momentum=False)
    lrs = []
    for t in range(20):
        lrs.append(sls.param_groups[0]["lr"])
        sls.step(lambda t=t: loss(P, t))
        if t < 19:
            sched.step()
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0) and lrs[-1] < 1e-3


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_float64_state_loads_into_float32_parameters(cls: type) -> None:
    """Moments take the parameters' dtype (as torch's loader does), scalars stay float64, and the run goes on."""
    P, loss, opt = _trained(cls, 33, 4)
    P32 = [p.detach().float().requires_grad_(True) for p in P]
    opt32 = cls(_groups(cls, P32))
    opt32.load_state_dict(opt.state_dict())
    for st in opt32.state.values():
        assert st["step_size"].dtype == torch.float64
        assert "exp_avg" not in st or st["exp_avg"].dtype == st["exp_avg_sq"].dtype == torch.float32
    for t in range(4, 8):
        opt32.step(lambda t=t: loss(P32, t))
    for st in opt32.state.values():
        assert "exp_avg" not in st or st["exp_avg"].dtype == torch.float32
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in P32)
