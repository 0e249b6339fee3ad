"""Mechanic: golden fixtures, live comparison with mechanic-pytorch, resume into a fresh optimizer, bases,
schedulers, parameter groups, grad=None and argument checks."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import descend.optim as do
from descend.optim import replay
from descend.optim.mechanic import DEFAULT_S_BETAS, Mechanic, mechanize, resolve_base

from ..conftest import fixture_files

FIXTURES = fixture_files("mechanic__")
SHAPES = {"weight": (4, 6), "bias": (4,), "conv": (3, 2, 2, 2)}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_replays(path) -> None:
    r = replay.replay_file(path)
    assert r.passed, f"{path.name}: max |err| {r.max_abs_error:.3g}, err/tol {r.max_ratio:.3g}"
    assert "s_sum" in r.observable_ratios
    # the reference's operation order is followed: float64 trajectories agree to (nearly) the last bit
    assert r.max_ratio < 1e-2


def test_fixtures_exist() -> None:
    assert {p.stem for p in FIXTURES} >= {"mechanic__sgd_base", "mechanic__adam_base",
                                          "mechanic__sgd_momentum_store_delta"}


# ------------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _params(seed: int = 0, dtype: torch.dtype = torch.float64) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype))
            for s in SHAPES.values()]


def _grads(seed: int, steps: int, dtype: torch.dtype = torch.float64) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(1000 + seed)
    return [[torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for s in SHAPES.values()]
            for _ in range(steps)]


def _drive(opt: torch.optim.Optimizer, params: list[torch.Tensor], grads: list[list[torch.Tensor]],
           missing: Callable[[int, int], bool] = lambda t, i: False) -> list[list[torch.Tensor]]:
    """Feed ``grads`` (``missing(t, i)``: parameter i has no gradient at step t); snapshot after each step."""
    out = []
    for t, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(params, gs, strict=True)):
            p.grad = None if missing(t, i) else g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def _s_sum_reference(opt: torch.optim.Optimizer) -> float:
    return float(opt.state["_mechanic"]["s"].sum())


# ------------------------------------------------------------------------------------------ live reference

CASES = {
    "sgd": (torch.optim.SGD, {"lr": 0.5}, {}),
    "sgd_nesterov_wd_store": (torch.optim.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True,
                                                "weight_decay": 1e-3}, {"store_delta": True}),
    "adam": (torch.optim.Adam, {"lr": 1e-2}, {"s_decay": 0.1, "s_init": 1e-6}),
    "adamw_store": (torch.optim.AdamW, {"lr": 3e-3, "weight_decay": 0.1},
                    {"store_delta": True, "betas": (0.9, 0.99, 0.999)}),
    "rmsprop": (torch.optim.RMSprop, {"lr": 1e-3, "momentum": 0.5}, {"eps": 1e-6}),
}


@pytest.mark.reference
@pytest.mark.parametrize("gaps", [False, True], ids=["all_grads", "missing_grads"])
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_matches_mechanic_pytorch_float64(case: str, gaps: bool) -> None:
    """float64, random gradients, two parameter groups with different lrs; optionally some parameters
    without gradient at some steps (also the reference's re-scaled reconstruction of their offset)."""
    ref_pkg = pytest.importorskip("mechanic_pytorch")
    base_cls, base_kw, mech_kw = CASES[case]
    grads = _grads(3, 25)

    def missing(t: int, i: int) -> bool:
        return gaps and ((i == 1 and t % 3 == 1) or (i == 2 and t < 4))

    def groups(ps: list[torch.Tensor]) -> list[dict]:
        return [{"params": ps[:2]}, {"params": ps[2:], "lr": base_kw["lr"] * 0.5}]

    with default_dtype(torch.float64):  # the reference allocates its tuner with the default dtype
        p_ref = _params(3)
        ref = ref_pkg.mechanize(base_cls, **mech_kw)(groups(p_ref), **base_kw)
        expected, ref_s = [], []
        for t, gs in enumerate(grads):
            for i, (p, g) in enumerate(zip(p_ref, gs, strict=True)):
                p.grad = None if missing(t, i) else g.clone()
            ref.step()
            expected.append([p.detach().clone() for p in p_ref])
            ref_s.append(_s_sum_reference(ref))

    renamed = {{"betas": "s_betas", "eps": "s_eps"}.get(k, k): v for k, v in mech_kw.items()}
    p_ours = _params(3)
    ours = mechanize(base_cls, **renamed)(groups(p_ours), **base_kw)
    for t, gs in enumerate(grads):
        for i, (p, g) in enumerate(zip(p_ours, gs, strict=True)):
            p.grad = None if missing(t, i) else g.clone()
        ours.step()
        # Not bitwise: descend forms h = <Δ, g> + c <Δ, x⁺> in one pass per tensor (the reference: <Δ, g + c x⁺>)
        # and sums in another order, so h differs by a few ulps per step and s follows it linearly; measured
        # <= 3.5e-14 relative (parameters and Σs) over these 25 float64 steps; rtol 1e-12 leaves 30x margin.
        for a, b in zip(p_ours, expected[t], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=0.0, msg=f"step {t + 1}")
        assert ours.s_sum == pytest.approx(ref_s[t], rel=1e-12, abs=0.0)


@pytest.mark.reference
def test_matches_mechanic_pytorch_in_float32() -> None:
    """float32 parameters; the reference's tuner in float32 (default dtype) vs ours with tuner_dtype=float32
    (same arithmetic) and with the float64 default (close)."""
    ref_pkg = pytest.importorskip("mechanic_pytorch")
    grads = _grads(5, 20, torch.float32)
    p_ref = _params(5, torch.float32)
    ref = ref_pkg.mechanize(torch.optim.Adam)(p_ref, lr=1e-2)
    expected = _drive(ref, p_ref, grads)
    for tuner_dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-4)):
        p = _params(5, torch.float32)
        got = _drive(mechanize(torch.optim.Adam, tuner_dtype=tuner_dtype)(p, lr=1e-2), p, grads)
        for a, b in zip(got[-1], expected[-1], strict=True):
            torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------ algorithm


def test_first_step_is_tiny_and_follows_the_formula() -> None:
    """Σs starts at 0: after step 1, x = x_ref + u · Σ_i β_i m0 s_init / (n ε) with m0 = 1e-6."""
    p = _params(0)
    x0 = [q.detach().clone() for q in p]
    opt = mechanize(torch.optim.SGD)(p, lr=1.0)
    gs = _grads(0, 1)[0]
    for q, g in zip(p, gs, strict=True):
        q.grad = g.clone()
    opt.step()
    n = len(DEFAULT_S_BETAS)
    s1 = sum(b * 1e-6 * 1e-8 / n / 1e-8 for b in DEFAULT_S_BETAS)
    assert opt.s_sum == pytest.approx(s1, rel=1e-12)
    for q, x, g in zip(p, x0, gs, strict=True):
        torch.testing.assert_close(q.detach(), x - g * s1, rtol=1e-12, atol=1e-15)


def test_mechanic_tunes_a_badly_scaled_sgd() -> None:
    """The paper's claim in miniature: SGD with a 1000x too small lr barely moves; Mechanic finds the scale."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(40, 8, generator=g, dtype=torch.float64)
    b = torch.randn(40, generator=g, dtype=torch.float64)

    def run(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]) -> float:
        w = torch.nn.Parameter(torch.zeros(8, dtype=torch.float64))
        opt = make([w])
        for _ in range(300):
            opt.zero_grad()
            loss = 0.5 * ((A @ w - b) ** 2).mean()
            loss.backward()
            opt.step()
        return float(0.5 * ((A @ w.detach() - b) ** 2).mean())

    best = float(0.5 * ((A @ torch.linalg.lstsq(A, b).solution - b) ** 2).mean())
    plain = run(lambda ps: torch.optim.SGD(ps, lr=1e-4))
    tuned = run(lambda ps: mechanize(torch.optim.SGD)(ps, lr=1e-4))
    assert tuned - best < 0.05 * (plain - best)


@pytest.mark.parametrize("store_delta", [False, True])
def test_wrapping_an_instance_equals_mechanize(store_delta: bool) -> None:
    grads = _grads(1, 10)
    p1, p2 = _params(1), _params(1)
    a = _drive(mechanize(torch.optim.AdamW, store_delta=store_delta)(p1, lr=1e-2), p1, grads)
    b = _drive(Mechanic(torch.optim.AdamW(p2, lr=1e-2), store_delta=store_delta), p2, grads)
    assert all(torch.equal(x, y) for x, y in zip(a[-1], b[-1], strict=True))


# ------------------------------------------------------------------------------------------ bases


def _least_squares(params_dtype: torch.dtype = torch.float64) -> tuple[list[torch.Tensor], Callable]:
    g = torch.Generator().manual_seed(7)
    X = torch.randn(64, 5, generator=g, dtype=torch.float64)
    Y = X @ torch.randn(5, 3, generator=g, dtype=torch.float64) + 0.5
    W = torch.nn.Parameter(torch.zeros(3, 5, dtype=params_dtype))
    c = torch.nn.Parameter(torch.zeros(3, dtype=params_dtype))

    def loss() -> torch.Tensor:
        return 0.5 * ((X.to(params_dtype) @ W.T + c - Y.to(params_dtype)) ** 2).mean()

    return [W, c], loss


def _bases() -> dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]]:
    bases: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
        "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9),
        "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01),
        "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=1e-2),
    }
    try:
        from lion_pytorch import Lion  # a sign-based (Lion-like) base from a third-party package

        bases["lion_pytorch"] = lambda ps: Lion(ps, lr=1e-4)
    except ImportError:
        pass
    if "lion" in do.available():
        bases["descend_lion"] = lambda ps: do.create("lion", ps, lr=1e-4)
    return bases


@pytest.mark.parametrize("name", list(_bases()))
def test_works_with_many_bases(name: str) -> None:
    params, loss = _least_squares()
    opt = Mechanic(_bases()[name](params))
    start = float(loss().detach())
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert float(loss().detach()) < 0.5 * start, f"{name}: {start:.3g} -> {float(loss().detach()):.3g}"
    assert opt.s_sum > 0


def test_lbfgs_base_gets_the_cached_loss_first() -> None:
    params, loss = _least_squares()
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    opt = Mechanic(torch.optim.LBFGS(params, lr=0.5, max_iter=3))
    start = float(loss().detach())
    returned = opt.step(closure)
    assert float(returned.detach()) == pytest.approx(start)
    assert calls == 3  # Mechanic's evaluation stands in for LBFGS's first one (max_iter 3 -> 2 more)
    for _ in range(20):
        opt.step(closure)
    assert float(loss().detach()) < start


# ------------------------------------------------------------------------------------------ state


def _resume(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], dtype: torch.dtype,
            steps: int = 16, split: int = 7, gaps: bool = True) -> None:
    grads = _grads(2, steps, dtype)

    def missing(t: int, i: int) -> bool:
        return gaps and i == 1 and t % 4 == 2

    p1 = _params(2, dtype)
    straight = _drive(make(p1), p1, grads, missing)[-1]

    p2 = _params(2, dtype)
    opt = make(p2)
    _drive(opt, p2, grads[:split], missing)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": [p.detach() for p in p2]}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    p3 = _params(99, dtype)  # a fresh model and optimizer
    with torch.no_grad():
        for p, v in zip(p3, saved["params"], strict=True):
            p.copy_(v)
    fresh = make(p3)
    fresh.load_state_dict(saved["opt"])
    assert fresh.state["mechanic"]["s"].dtype == torch.float64
    resumed = _drive(fresh, p3, grads[split:], lambda t, i: missing(t + split, i))[-1]
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b), f"resumed run differs by {(a.double() - b.double()).abs().max():.3g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16],
                         ids=["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("store_delta", [False, True], ids=["reconstruct", "store_delta"])
@pytest.mark.parametrize("base", ["SGD", "Adam", "AdamW"])
def test_state_dict_round_trip_into_a_fresh_optimizer_is_bitwise(base: str, store_delta: bool,
                                                                 dtype: torch.dtype) -> None:
    kw = {"SGD": {"lr": 0.05, "momentum": 0.9}, "Adam": {"lr": 1e-2}, "AdamW": {"lr": 1e-2}}[base]
    _resume(lambda ps: mechanize(base, store_delta=store_delta)(ps, **kw), dtype)


def test_state_layout() -> None:
    p = _params(0, torch.float32)
    opt = mechanize(torch.optim.AdamW, store_delta=True)(p, lr=1e-3)
    p[1].grad = None
    for q in (p[0], p[2]):
        q.grad = torch.ones_like(q)
    opt.step()
    tuner = opt.state["mechanic"]
    assert {k: (v.dtype, tuple(v.shape)) for k, v in tuner.items()} == {
        **{k: (torch.float64, (6,)) for k in "smvr"}, "step": (torch.int64, ())}
    assert set(opt.state[p[0]]) == {"step", "exp_avg", "exp_avg_sq", "mechanic_ref", "mechanic_delta"}
    assert p[1] not in opt.state  # no gradient, no state
    assert opt.state is opt.base.state and opt.param_groups is opt.base.param_groups
    sd = opt.state_dict()
    assert "mechanic" in sd["state"] and 1 not in sd["state"]


def test_bfloat16_parameters_keep_float32_offsets() -> None:
    p = _params(0, torch.bfloat16)
    opt = mechanize(torch.optim.Adam, store_delta=True)(p, lr=1e-2)
    _drive(opt, p, _grads(0, 3, torch.bfloat16))
    assert opt.state[p[0]]["mechanic_ref"].dtype == torch.float32
    assert opt.state[p[0]]["mechanic_delta"].dtype == torch.float32
    assert all(q.dtype == torch.bfloat16 and torch.isfinite(q).all() for q in p)


def test_load_checks_the_number_of_betas_and_accepts_a_plain_base_state() -> None:
    p = _params(0)
    opt = mechanize(torch.optim.Adam)(p, lr=1e-2)
    _drive(opt, p, _grads(0, 3))
    other = mechanize(torch.optim.Adam, s_betas=(0.9, 0.99))(_params(0), lr=1e-2)
    with pytest.raises(ValueError, match="s_betas"):
        other.load_state_dict(opt.state_dict())

    plain = torch.optim.Adam(p, lr=1e-2)
    _drive(plain, p, _grads(0, 3))
    warm = mechanize(torch.optim.Adam)(p, lr=1e-2)
    warm.load_state_dict(plain.state_dict())  # warm start from a base checkpoint: the tuner starts afresh
    assert "mechanic" not in warm.state and int(warm.state[p[0]]["step"]) == 3
    _drive(warm, p, _grads(1, 2))
    assert int(warm.state["mechanic"]["step"]) == 2 and int(warm.state[p[0]]["step"]) == 5


def test_loaded_state_is_not_shared_with_the_source() -> None:
    p = _params(0)
    opt = mechanize(torch.optim.SGD, store_delta=True)(p, lr=0.1)
    _drive(opt, p, _grads(0, 2))
    sd = opt.state_dict()
    copy_opt = mechanize(torch.optim.SGD, store_delta=True)(p, lr=0.1)
    copy_opt.load_state_dict(sd)
    assert copy_opt.state["mechanic"]["s"] is not opt.state["mechanic"]["s"]
    assert copy_opt.state[p[0]]["mechanic_delta"] is not opt.state[p[0]]["mechanic_delta"]


def test_deepcopy_keeps_the_base() -> None:
    p = _params(0)
    opt = mechanize(torch.optim.Adam)(p, lr=1e-2)
    _drive(opt, p, _grads(0, 2))
    clone = copy.deepcopy(opt)
    assert isinstance(clone.base, torch.optim.Adam)
    assert clone.state is clone.base.state and clone.param_groups is clone.base.param_groups
    assert clone.s_sum == opt.s_sum


# ------------------------------------------------------------------------------------------ groups, lr


def test_scheduler_on_mechanic_drives_the_base_lr() -> None:
    p = _params(0)
    opt = mechanize(torch.optim.AdamW)(p, lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for gs in _grads(0, 3):
        for q, g in zip(p, gs, strict=True):
            q.grad = g
        opt.step()
        sched.step()
    assert opt.base.param_groups[0]["lr"] == pytest.approx(1e-2 / 8)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))], "lr": 0.3})
    assert len(opt.base.param_groups) == 2 and opt.base.param_groups[1]["weight_decay"] == 0.01


def test_group_with_zero_lr_from_the_start_never_moves() -> None:
    p = _params(0)
    before = [q.detach().clone() for q in p]
    opt = mechanize(torch.optim.Adam)([{"params": p[:2]}, {"params": p[2:], "lr": 0.0}], lr=1e-2)
    _drive(opt, p, _grads(0, 10))
    assert torch.equal(p[2], before[2])
    assert not torch.equal(p[0], before[0])


def test_no_gradient_at_all_leaves_the_tuner_alone() -> None:
    p = _params(0)
    opt = mechanize(torch.optim.Adam)(p, lr=1e-2)
    opt.step()
    assert len(opt.state) == 0


def test_closure_is_evaluated_once_and_its_loss_returned() -> None:
    params, loss = _least_squares()
    opt = mechanize(torch.optim.SGD)(params, lr=0.1)
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    expected = float(loss().detach())
    with torch.no_grad():  # the closure still gets gradients
        got = opt.step(closure)
    assert float(got.detach()) == pytest.approx(expected) and calls == 1


# ------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"s_decay": -1.0}, "s_decay"),
    ({"s_betas": ()}, "s_betas"),
    ({"s_betas": (0.9, 1.0)}, "s_betas"),
    ({"s_betas": "0.9"}, "s_betas"),
    ({"s_init": 0.0}, "s_init"),
    ({"s_eps": -1.0}, "s_eps"),
    ({"store_delta": "no"}, "store_delta"),
    ({"tuner_dtype": torch.float16}, "tuner_dtype"),
])
def test_invalid_arguments_raise(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        mechanize(torch.optim.SGD, **kwargs)
    with pytest.raises(ValueError, match=name):
        mechanize(torch.optim.SGD)(_params(0), lr=0.1, **kwargs)
    with pytest.raises(ValueError, match=name):
        Mechanic(torch.optim.SGD(_params(0), lr=0.1), **kwargs)


def test_negative_lr_raises_naming_lr() -> None:
    with pytest.raises(ValueError, match="lr"):
        mechanize(torch.optim.Adam)(_params(0), lr=-1.0)


def test_base_resolution_is_restricted_to_torch_optim() -> None:
    assert resolve_base("torch.optim.SGD") is torch.optim.SGD
    assert resolve_base("AdamW") is torch.optim.AdamW
    assert resolve_base(torch.optim.Adam) is torch.optim.Adam
    for bad in ("os.system", "torch.nn.Linear", "torch.optim.Optimizer", "torch.optim.lr_scheduler.StepLR",
                "__import__", "torch.optim.SGD.step", 3, torch.nn.Linear):
        with pytest.raises(ValueError, match="base"):
            resolve_base(bad)
    with pytest.raises(ValueError, match="base"):
        mechanize(mechanize(torch.optim.SGD))
    with pytest.raises(TypeError):
        Mechanic(Mechanic(torch.optim.SGD(_params(0), lr=0.1)))


def test_mechanize_returns_one_class_per_configuration() -> None:
    a = mechanize(torch.optim.SGD)
    assert a is mechanize("torch.optim.SGD") and a is not mechanize(torch.optim.SGD, s_decay=0.1)
    assert a.__name__ == "MechanicSGD" and issubclass(a, Mechanic)
    opt = mechanize(torch.optim.SGD, s_decay=0.1)(_params(0), lr=0.1, s_init=1e-6)
    assert (opt.s_decay, opt.s_init) == (0.1, 1e-6)
    assert opt.param_groups[0]["lr"] == 0.1


def test_registry_entry() -> None:
    spec = do.get("mechanic")
    opt = do.create("mechanic", _params(0), lr=2e-3)
    assert isinstance(opt, Mechanic) and isinstance(opt.base, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 2e-3 and opt.param_groups[0]["weight_decay"] == 0.0
    sgd = do.create("mechanic", _params(0), lr=0.1, base="torch.optim.SGD", weight_decay=0.0)
    assert isinstance(sgd.base, torch.optim.SGD)
    assert spec.observables is not None and spec.observables(opt) == {"s_sum": 0.0}
    assert set(spec.search_space) <= set(spec.defaults)


# ------------------------------------------------------------------------------------------ float32 (issue 10)


def _unit_scale_least_squares(dtype: torch.dtype, seed: int,
                   unknown: str) -> tuple[list[torch.Tensor], Callable[[], torch.Tensor]]:
    """‖Wx + b‖² with W ~ randn(10, 5), b ~ randn(10), x ~ randn(5): parameters of order 1 (LayerNorm-like)."""
    g = torch.Generator().manual_seed(seed)
    W, b, x = (torch.randn(*s, generator=g, dtype=torch.float64).to(dtype) for s in ((10, 5), (10,), (5,)))
    params = [W, b] if unknown == "Wb" else [x]
    for p in params:
        p.requires_grad_(True)
    return params, lambda: ((W @ x + b) ** 2).sum()


@pytest.mark.parametrize(("unknown", "seed"), [("Wb", 0), ("x", 1), ("x", 2)])
def test_float32_makes_progress_like_float64_with_unit_scale_parameters(unknown: str, seed: int) -> None:
    """With store_delta=False the reference rebuilds Δ = (x - x_ref)/(S + ε) from the parameters: while S is
    ~1e-6 the offset S·u is below float32's resolution at |x| ≈ 1, x rounds back to x_ref and Δ = 0 forever
    (before the fix: float32 loss unchanged after 300 steps for ("x", 1) and ("x", 2)).  Registry defaults,
    300 steps; float32 must remove at least 90% of the loss that float64 removes (the two runs differ by
    float32 rounding only, on a well-conditioned 10x5 least-squares problem)."""
    losses = {}
    for dtype in (torch.float64, torch.float32):
        params, loss = _unit_scale_least_squares(dtype, seed, unknown)
        opt = do.create("mechanic", params)
        l0 = loss().item()
        for _ in range(300):
            opt.zero_grad()
            loss().backward()
            opt.step()
        losses[dtype] = (l0, loss().item())
    (l0, l64), (_, l32) = losses[torch.float64], losses[torch.float32]
    assert l64 < 0.5 * l0, "float64 itself must make progress for the comparison to mean anything"
    assert l0 - l32 >= 0.9 * (l0 - l64), f"float32 {l0:.4g} -> {l32:.4g}, float64 {l0:.4g} -> {l64:.4g}"


def test_float32_keeps_the_exact_offset_and_float64_reconstructs_it() -> None:
    for dtype, keeps in ((torch.float32, True), (torch.float64, False)):
        params, loss = _unit_scale_least_squares(dtype, 0, "Wb")
        opt = do.create("mechanic", params)
        loss().backward()
        opt.step()
        assert ("mechanic_offset" in opt.state[params[0]]) is keeps


def _run_float32(steps: int, *, forget_writes: bool, fused: bool) -> tuple[list[torch.Tensor], Mechanic]:
    """Mechanic around AdamW on a float32 least-squares problem; ``forget_writes`` drops the record of this
    optimizer's last write before every step (forcing the copy of x)."""
    params, loss = _unit_scale_least_squares(torch.float32, 0, "Wb")
    opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=fused)
    for _ in range(steps):
        if forget_writes:
            opt.__dict__.pop("_written", None)
        opt.zero_grad()
        loss().backward()
        opt.step()
    return params, opt


def test_float32_rebuilds_x_instead_of_copying_it_with_identical_results() -> None:
    """float32, store_delta=False: after the first step x is rebuilt as x_ref + D (D, the exact offset, is what
    the last step wrote: x = fl(x_ref + D)) instead of being copied before the base step.  Eagerly the two are
    the same floating-point operations, so the trajectories must agree bit for bit; no copy is kept."""
    fast, opt = _run_float32(12, forget_writes=False, fused=False)
    slow, _ = _run_float32(12, forget_writes=True, fused=False)
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a, b)
    assert len(opt.__dict__.get("_scratch", {})) == 0, "the scratch copies are released once x is rebuilt"


def test_compiled_rebuilt_x_agrees_with_the_copy_to_float32_rounding() -> None:
    """The compiled path may contract x_ref + Δ·S into one fused multiply-add, so the x it rebuilds can differ
    from the parameter it wrote by one rounding (|x| · 2^-24 relative); each step's Δ then moves by at most that
    much, on a trajectory of 12 steps whose parameters are O(1): 1e-5 absolute covers 12 such roundings with a
    margin of 10 (the float32 run itself moves the parameters by ~1e-2)."""
    fast, _ = _run_float32(12, forget_writes=False, fused=True)
    slow, _ = _run_float32(12, forget_writes=True, fused=True)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def _written_midway(dtype: torch.dtype, how: str, fused: bool = False) -> list[torch.Tensor]:
    params, loss = _unit_scale_least_squares(dtype, 0, "Wb")
    opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=fused)
    for t in range(10):
        if t == 6:
            with torch.no_grad():
                if how == "tensor":
                    params[0].add_(0.5)
                elif how == "assign":  # what vector_to_parameters and average_parameters do
                    params[0].data = params[0].data + 0.5
                else:  # "data": in place through .data, which no version counter sees
                    params[0].data.add_(0.5)
        opt.zero_grad()
        loss().backward()
        opt.step()
    return [p.detach().double() for p in params]


@pytest.mark.parametrize(("how", "fused"), [("tensor", False), ("assign", False), ("tensor", True)])
def test_a_write_to_the_parameters_between_steps_is_taken_up_like_the_reference(how: str, fused: bool) -> None:
    """A write through the parameter (``p.add_``, ``module.load_state_dict``: its version counter moves) or an
    assignment of its data (``p.data = t``, as ``vector_to_parameters`` does: its storage moves) is seen: Δ is
    then taken from the new value, Δ = (x − x_ref)/(S + ε), as the reference (and descend in float64) rebuilds it
    from the parameters every step.  float32 must then follow float64's trajectory: 10 steps of a
    well-conditioned 10x5 least-squares problem, which differ by float32 rounding (6e-8 relative per operation;
    measured 1.3e-7 absolute on O(1) parameters); 1e-5 leaves a margin of ~100 for other CPUs' rounding.
    A write in place through ``.data`` (no version change, same storage) is not seen, and the two then differ
    by ~0.08 (checked, so the test can fail)."""
    want = _written_midway(torch.float64, how)
    got = _written_midway(torch.float32, how, fused)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    unseen = _written_midway(torch.float32, "data")
    assert (unseen[0] - want[0]).abs().max() > 1e-2


def test_loading_a_state_into_the_same_optimizer_forgets_the_record_of_its_writes() -> None:
    """Rolling the optimizer back (``load_state_dict`` of an earlier state into the same instance, parameters
    untouched) must give what loading into a fresh optimizer gives: x is taken from the parameters, not rebuilt
    from the loaded offset.  Both runs do the same float32 operations in the same order: bitwise."""
    def run(same: bool) -> list[torch.Tensor]:
        params, loss = _unit_scale_least_squares(torch.float32, 0, "Wb")
        opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=False)
        saved = None
        for t in range(10):
            if t == 3:
                saved = copy.deepcopy(opt.state_dict())
            if t == 6:
                if not same:
                    opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=False)
                opt.load_state_dict(saved)
            opt.zero_grad()
            loss().backward()
            opt.step()
        return [p.detach().clone() for p in params]

    for a, b in zip(run(True), run(False), strict=True):
        assert torch.equal(a, b)


def _sums_run(dtype: torch.dtype, scale: float, fused: bool, steps: int = 6) -> tuple[Mechanic, list[torch.Tensor]]:
    """Mechanic around AdamW on open-loop gradients ``scale · (g0 + 0.1 noise_t)`` (fixed seed): a consistent
    direction, so that ⟨Δ, g⟩ is far from cancelling and the tuner's scale grows within a few steps."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(40, 30), (30,), (700,)]
    params = [torch.randn(s, generator=gen).to(dtype).requires_grad_() for s in shapes]
    g0 = [torch.randn(s, generator=gen) for s in shapes]
    opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=fused)
    for _ in range(steps):
        for p, g in zip(params, g0, strict=True):
            p.grad = (scale * (g + 0.1 * torch.randn(g.shape, generator=gen))).to(dtype)
        opt.step()
    return opt, [p.detach().double() for p in params]


def _spy_wide_sums(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype]:
    """Record the dtype of ``g`` of every tensor whose sums are taken in float64 (``wide``)."""
    import descend.optim.mechanic as mech

    seen: list[torch.dtype] = []
    real = mech.mechanic_sums

    def spy(*args: Any, wide: bool, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        if wide:
            seen.append(args[2].dtype)
        return real(*args, wide=wide, **kwargs)

    monkeypatch.setattr(mech, "mechanic_sums", spy)
    return seen


@pytest.mark.parametrize("scale", [1e-25, 1.0, 1e18])
@pytest.mark.parametrize("fused", [False, True])
def test_float32_sums_fall_back_to_float64_where_a_product_leaves_float32s_range(
        scale: float, fused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below float64 the sums are accumulated in float32 unless a maximum of |x⁺|, |g|, |Δ| is outside
    [2^-30, 2^30]; then that tensor's in float64.  Gradients × 1e18 overflow a float32 ‖g‖² (the 1200 squares
    ~1e36 of the 40×30 tensor sum past 3.4e38) and make the first step's decay term 0·inf = NaN, while float32
    AdamW still works (its v ~ g² fits; from ~2e19 on AdamW's own float32 v overflows).  There the float32 run
    must track the float64 run of the same gradients: the tuner is nearly invariant to the gradients' scale
    (s ~ m/√v, both ∝ |h|), and h is a sum of consistent-sign ⟨Δ, g⟩ terms (condition number ~1), each rounded
    to ≲ 1e-6 relative in float32, composed over 6 steps.  Measured 8e-8 relative on the learned scale; the
    1e-4 bound is what float32 rounding of h can reach, and a lost or wrong sum moves it by far more (without
    the fallback it is NaN).  The tuner's v (which carries h² directly) is held to the same 1e-4.
    × 1e-25 the squares underflow float32; there float32 AdamW itself stalls (its v underflows), so the runs
    are not compared and only the fallback is checked to run."""
    wide = _spy_wide_sums(monkeypatch)
    lo, lo_params = _sums_run(torch.float32, scale, fused)
    assert bool(wide) == (scale != 1.0), "float64 sums exactly where a maximum leaves the float32 range"
    if scale == 1e-25:
        return
    wide.clear()
    hi, hi_params = _sums_run(torch.float64, scale, fused=False)
    assert all(dt == torch.float64 for dt in wide), "float64 parameters: all sums in float64, no fallback"
    assert lo.s_sum > 1e-6 and lo.s_sum == pytest.approx(hi.s_sum, rel=1e-4, abs=0.0)
    torch.testing.assert_close(lo.state["mechanic"]["v"], hi.state["mechanic"]["v"], rtol=1e-4, atol=0.0)
    for a, b in zip(lo_params, hi_params, strict=True):  # float32 resolution at |x| ≈ 3 is 2.4e-7
        torch.testing.assert_close(a, b, rtol=0.0, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-25, 1e18])
def test_float32_sums_and_their_float64_fallback_match_a_float64_reference(scale: float) -> None:
    """:func:`mechanic_sums` on extreme float32 inputs: the maxima fail the range test, and the ``wide`` sums
    equal float64 sums of the same values.  Both are float64 sums of identical products in another order: the
    squared norms are sums of positive terms (relative error ≤ n·2^-53 ≈ 1e-13 for n = 1000), the inner products
    err by at most that relative to ‖a‖ ‖b‖ (Cauchy–Schwarz): 1e-12 of that scale bounds both.  At scale 1 the
    float32 sums are within n·2^-24 ≈ 6e-5 of it (the worst case of any summation order) and pass the test."""
    from descend.optim.mechanic import _float32_sums_safe, mechanic_sums

    gen = torch.Generator().manual_seed(5)
    x, g, ref, d = (torch.randn(1000, generator=gen) for _ in range(4))
    for s, expect_safe in ((scale, False), (1.0, True)):
        xs, gs, ds = x * s, g * s, d
        narrow = mechanic_sums(None, xs, gs, ref, ds, offset_scale=2.0, kind="offset", wide=False)
        assert _float32_sums_safe(torch.stack(narrow[4:]).view(1, 3)) == [expect_safe]
        got = mechanic_sums(None, xs, gs, ref, ds, offset_scale=2.0, kind="offset", wide=not expect_safe)
        a, b, dd = xs.double(), gs.double(), ds.double() / 2.0
        want = [(a * a).sum(), (b * b).sum(), (dd * b).sum(), (dd * a).sum()]
        scales = [(a * a).sum(), (b * b).sum(), dd.norm() * b.norm(), dd.norm() * a.norm()]
        rel = 6e-5 if expect_safe else 1e-12
        for value, ref_value, size in zip(got[:4], want, scales, strict=True):
            assert abs(float(value) - float(ref_value)) <= rel * float(size), (s, float(value), float(ref_value))


def test_float64_fallback_recomputes_only_the_tensor_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model mixing float64, float32 and an empty parameter, one float32 tensor with gradients ~3e9 (max > 2^30):
    only that tensor's sums are recomputed in float64, and the tuner agrees with a run that takes every float32
    tensor's sums in float64.  The runs are identical up to step 2's sums (step 1 has Δ = 0, so h = 0 in both);
    there the in-range tensors' float32 sums err by ≤ n·2^-24 ≈ 9e-5 of ‖Δ‖‖g‖ (n = 1500), and ⟨Δ, g⟩ is
    consistent in sign, so h² differs by ≲ 2e-4 relative: 1e-3 bounds that, while any tensor's sums lost or
    swapped change h by ≥ 10 % (each tensor contributes n × its gradient scale, 14-57 % of h)."""
    import descend.optim.mechanic as mech

    def run(all_wide: bool) -> tuple[torch.Tensor, list[torch.dtype]]:
        gen = torch.Generator().manual_seed(11)
        spec = [(torch.float64, 300, 1e9), (torch.float32, 1500, 1e8), (torch.float32, 200, 3e9),
                (torch.float32, 0, 1.0)]
        params = [torch.randn(n, generator=gen).to(dt).requires_grad_() for dt, n, _ in spec]
        g0 = [torch.randn(n, generator=gen) for _, n, _ in spec]
        opt = mechanize(torch.optim.AdamW)(params, lr=1e-2, s_init=1e-4, tuner_fused=False)
        with monkeypatch.context() as mp:
            wide = _spy_wide_sums(mp)
            if all_wide:
                mp.setattr(mech, "_float32_sums_safe", lambda maxima: [False] * maxima.shape[0])
            for _ in range(2):
                for p, g, (dt, _, sc) in zip(params, g0, spec, strict=True):
                    p.grad = (sc * (g + 0.1 * torch.randn(g.shape, generator=gen))).to(dt)
                opt.step()
        return opt.state["mechanic"]["v"].clone(), wide

    v_fallback, wide = run(all_wide=False)
    # per step: the float64 tensor (its own wide call) and the one float32 tensor out of range
    assert sorted(map(str, wide)) == sorted(map(str, [torch.float64, torch.float32] * 2))
    v_all, wide_all = run(all_wide=True)
    assert wide_all.count(torch.float32) == 3 * 2
    assert bool((v_fallback > 0).all())
    torch.testing.assert_close(v_fallback, v_all, rtol=1e-3, atol=0.0)


def test_float32_sums_range_check() -> None:
    """The maxima accepted for float32 sums: 0, or within [2^-30, 2^30]; NaN and inf are not."""
    from descend.optim.mechanic import _float32_sums_safe

    assert _float32_sums_safe(torch.tensor([[0.0, 2.0**-30, 1.0], [2.0**30, 0.0, 0.0]])) == [True, True]
    for bad in (2.0**-31, 2.0**31, float("nan"), float("inf")):
        assert _float32_sums_safe(torch.tensor([[1.0, bad, 1.0], [1.0, 1.0, 1.0]])) == [False, True]
