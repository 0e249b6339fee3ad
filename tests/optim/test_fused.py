"""The compiled default of the elementwise optimizers (:mod:`descend.optim._fused`) and the fast defaults.

The rest of the suite runs with ``DESCEND_COMPILE=0`` (``tests/conftest.py``); these tests exercise the auto
mode itself (it compiles), its one-warning fallback (compile failures simulated), that a learning-rate
schedule and new parameter shapes do not recompile, and that every fast path equals its eager path in
float64 (the same math function, run eagerly or compiled).  Tolerance of the eager/compiled comparisons:
rtol 1e-13 -- the compiled loop evaluates the same expressions in float64 with at most a different
association/contraction of a few operations per element per step (each ~1 ulp = 1.1e-16), over 12 steps of
well-conditioned updates (no cancellation beyond a factor ~10).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

import descend.optim as do
from descend.optim import _fused
from descend.optim.adabelief import AdaBelief
from descend.optim.adam_mini import AdamMini
from descend.optim.agd import AcceleratedSGD
from descend.optim.baselines import NAdamW
from descend.optim.cautious import CAdamW
from descend.optim.frugal import FRUGAL
from descend.optim.lion import Lion
from descend.optim.mars import MARS
from descend.optim.mechanic import Mechanic, mechanic
from descend.optim.muon import Muon
from descend.optim.sophia import SophiaG

from .fused_equivalence import assert_fused_matches_eager, random_run


def _mechanic(params: Any, *, fused: bool, **hp: Any) -> torch.optim.Optimizer:
    return mechanic(params, tuner_fused=fused, **hp)


# ------------------------------------------------------------------------ fast path == eager path (float64)


# Each case compiles its math function (10-20 s on a loaded 2-core machine with a cold inductor cache): the
# defaults run in the default suite, the other flag combinations under the slow marker.
@pytest.mark.parametrize("factory, hp", [
    (NAdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    pytest.param(NAdamW, {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": False, "maximize": True},
                 marks=pytest.mark.slow),
    (AcceleratedSGD, {"lr": 0.05}),
    pytest.param(AcceleratedSGD, {"lr": 0.05, "mu": 0.5}, marks=pytest.mark.slow),
    (FRUGAL, {"lr": 1e-2, "update_gap": 4}),  # blocks (default): AdamW + sign-SGD tensors, rotating
    pytest.param(FRUGAL, {"lr": 1e-2, "update_gap": 4, "inactive_update_rule": "sgd", "correct_bias": False},
                 marks=pytest.mark.slow),
    (_mechanic, {"lr": 1e-2, "s_init": 1e-4}),
    pytest.param(_mechanic, {"lr": 1e-2, "s_init": 1e-4, "store_delta": True, "base": torch.optim.SGD,
                             "momentum": 0.9}, marks=pytest.mark.slow),
    # Adam-mini: the block sums of g² are a reduction the compiled loop may associate differently (vectorised
    # partial sums): positive terms, condition number 1, <= 9 terms per block here: <= 1e-15 relative
    (AdamMini, {"lr": 1e-2, "weight_decay": 0.1}),
    pytest.param(AdamMini, {"lr": 1e-2, "partition": "elementwise", "betas": (0.8, 0.9)}, marks=pytest.mark.slow),
    # C-AdamW: the mask's mean is a sum of 0/1 terms (exact in float64 at these sizes), the rest elementwise
    (CAdamW, {"lr": 1e-2, "weight_decay": 0.1}),
    pytest.param(CAdamW, {"lr": 1e-2, "foreach": False, "correct_bias": False}, marks=pytest.mark.slow),
    # MARS (mars-adamw): the clipping norm is a sum of squares (positive terms) the compiled loop may associate
    # differently: a few ulps on a value of order 1, the rest elementwise
    (MARS, {"lr": 1e-2, "weight_decay": 0.1}),
    pytest.param(MARS, {"lr": 1e-2, "amsgrad": True, "gamma": 0.1}, marks=pytest.mark.slow),
], ids=["nadamw", "nadam-l2-max", "agd", "agd-mu", "frugal", "frugal-sgd", "mechanic", "mechanic-store",
        "adam_mini", "adam_mini-elementwise", "c_adamw", "c_adamw-loop", "mars", "mars-amsgrad"])
def test_fused_equals_eager_float64(factory: Callable[..., torch.optim.Optimizer], hp: dict[str, Any],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert_fused_matches_eager(factory, hp, monkeypatch)


@pytest.mark.parametrize("hp", [{"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": False},
                                {"maximize": True, "weight_decay": 0.01, "momentum_decay": 0.01}])
def test_nadamw_math_equals_torch_nadam_float64(hp: dict[str, Any]) -> None:
    """The eager :func:`nadamw_update` against torch's own NAdam (single-tensor path): torch's lerp/addcmul/
    addcdiv kernels contract multiply-adds, ours are separate operations, so they agree to a few ulps per step
    (measured <= 2e-16 relative after 12 steps); rtol 1e-13."""
    ours = random_run(NAdamW, {"lr": 1e-2, **hp}, fused=False)

    def torch_nadam(params: Any, fused: bool, **kw: Any) -> torch.optim.Optimizer:
        return torch.optim.NAdam(params, **{"decoupled_weight_decay": True, "foreach": False, **kw})

    ref = random_run(torch_nadam, {"lr": 1e-2, **hp}, fused=False)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------------------------------------ the auto mode


class _Spy:
    def __init__(self, real: Callable[..., Any] | None = None, fail: bool = False) -> None:
        self.calls: list[Callable[..., Any]] = []
        self.real, self.fail = real, fail

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.calls.append(fn)
        if self.fail:
            def broken(*args: Any, **kwargs: Any) -> Any:
                raise RuntimeError("simulated compiler failure\nsecond line")
            return broken
        assert self.real is not None
        return self.real(fn)


@pytest.fixture
def auto(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The auto mode as a user gets it (no DESCEND_COMPILE), with fresh probe/failure records."""
    monkeypatch.delenv(_fused.ENV_VAR, raising=False)
    monkeypatch.setattr(_fused, "_AVAILABLE", {})
    monkeypatch.setattr(_fused, "_FAILED", [])
    return monkeypatch


def _lion_run(fused: bool | None, steps: int = 3) -> list[torch.Tensor]:
    return random_run(Lion, {"lr": 1e-2, "weight_decay": 0.1}, fused=fused, steps=steps)  # type: ignore[arg-type]


def test_default_is_auto_and_compiles(auto: pytest.MonkeyPatch) -> None:
    if _fused._unavailable_reason("cpu") is not None:
        pytest.skip(f"torch.compile cannot build CPU kernels here: {_fused._unavailable_reason('cpu')}")
    for cls in (AdaBelief, Lion, SophiaG, AcceleratedSGD, FRUGAL, AdamMini):
        assert inspect.signature(cls).parameters["fused"].default is None, cls
    assert NAdamW([torch.nn.Parameter(torch.zeros(2))])._fused is None
    assert inspect.signature(Mechanic).parameters["tuner_fused"].default is None
    spy = _Spy(_fused.compiled)
    auto.setattr(_fused, "compiled", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", _fused.FusedFallbackWarning)
        fast = _lion_run(None)
    assert spy.calls, "fused=None did not compile on a machine where torch.compile works"
    for a, b in zip(fast, _lion_run(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-15)


def test_env_var_turns_auto_off(auto: pytest.MonkeyPatch) -> None:
    auto.setenv(_fused.ENV_VAR, "0")
    spy = _Spy(fail=True)
    auto.setattr(_fused, "compiled", spy)
    _lion_run(None)
    assert not spy.calls
    assert _fused.use_compiled(True, "cpu") and not _fused.use_compiled(False, "cpu")


def test_compile_failure_falls_back_with_one_warning(auto: pytest.MonkeyPatch) -> None:
    """A compiler that fails at the first call: one warning for the whole process, then the eager path
    (bitwise the eager result: the same function, run eagerly); no further compile attempts."""
    auto.setattr(_fused, "_unavailable_reason", lambda device_type: None)
    spy = _Spy(fail=True)
    auto.setattr(_fused, "compiled", spy)
    with pytest.warns(_fused.FusedFallbackWarning, match="simulated compiler failure") as record:
        got = _lion_run(None)
        got2 = random_run(NAdamW, {"lr": 1e-2}, fused=None)  # type: ignore[arg-type]
    assert len([w for w in record if issubclass(w.category, _fused.FusedFallbackWarning)]) == 1
    assert "second line" not in str(record[0].message)
    assert len(spy.calls) == 1
    for a, b in zip(got, _lion_run(False), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(got2, random_run(NAdamW, {"lr": 1e-2}, fused=False), strict=True):
        assert torch.equal(a, b)


def test_explicit_fused_true_propagates_compile_errors(auto: pytest.MonkeyPatch) -> None:
    auto.setattr(_fused, "compiled", _Spy(fail=True))
    with pytest.raises(RuntimeError, match="simulated compiler failure"):
        _lion_run(True)


def test_no_compiler_warns_once_and_runs_eagerly(auto: pytest.MonkeyPatch) -> None:
    auto.setattr(_fused, "_unavailable_reason", lambda device_type: "InvalidCxxCompiler: no working C++ compiler")
    spy = _Spy(fail=True)
    auto.setattr(_fused, "compiled", spy)
    with pytest.warns(_fused.FusedFallbackWarning, match="no working C\\+\\+ compiler") as record:
        _lion_run(None)
        random_run(AcceleratedSGD, {"lr": 0.05}, fused=None)  # type: ignore[arg-type]
    assert len(record) == 1 and not spy.calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])  # float32: scalars as 0-d float32 tensors
def test_schedule_and_shapes_do_not_recompile(dtype: torch.dtype) -> None:
    """One graph per (function, dtype, flags, number of tensors in the call): a learning rate and weight decay
    that change every step, the step counter (NAdamW's bias corrections), and another model whose tensors have
    new sizes (same count) reuse it -- scalars are graph inputs, sizes are symbolic."""
    from torch._dynamo.utils import counters

    if _fused._unavailable_reason("cpu") is not None:
        pytest.skip("torch.compile cannot build CPU kernels here")
    gen = torch.Generator().manual_seed(0)

    def model(shapes: list[tuple[int, ...]]) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype)) for s in shapes]

    def grads(params: list[torch.nn.Parameter]) -> None:
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=dtype)

    params = model([(13, 3), (40,)])
    opts = [Lion(params, lr=1e-2, weight_decay=0.1, fused=True), NAdamW(params, lr=1e-2, fused=True)]
    for opt in opts:
        grads(params)
        opt.step()  # compiles (or finds the graph of an earlier test)
    graphs = counters["stats"]["unique_graphs"]
    for k in range(5):
        for opt in opts:
            opt.param_groups[0]["lr"] = 1e-2 / (k + 2)
            opt.param_groups[0]["weight_decay"] = 0.1 * (k + 1)
            grads(params)
            opt.step()
    other = model([(7, 5), (29,)])
    for opt in (Lion(other, lr=3e-3, fused=True), NAdamW(other, lr=3e-3, fused=True)):
        grads(other)
        opt.step()
    assert counters["stats"]["unique_graphs"] == graphs


def test_one_compiled_call_per_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled path updates a parameter group's tensors in one call (not one call per tensor: each call
    costs ~0.1-0.2 ms of guards and wrappers); groups whose scalars are equal share the call, a group with
    other scalars gets its own; the 1-element tensor runs eagerly."""
    if _fused._unavailable_reason("cpu") is not None:
        pytest.skip("torch.compile cannot build CPU kernels here")
    calls: list[int] = []
    real = _fused.compiled

    def spy(fn: Callable[..., Any]) -> Callable[..., Any]:
        c = real(fn)

        def counted(lists: list[Any], scalars: dict[str, Any]) -> Any:
            calls.append(len(lists))
            return c(lists, scalars)
        return counted

    monkeypatch.setattr(_fused, "compiled", spy)
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64))
              for s in [(13, 3), (40,), (2, 5), (1,), (6,)]]
    opt = Lion([{"params": params[:4]}, {"params": params[4:], "lr": 1e-3}], lr=1e-2, fused=True)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    opt.step()
    assert sorted(calls) == [1, 3]


def test_small_and_strided_tensors_stay_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = _Spy(fail=True)
    monkeypatch.setattr(_fused, "compiled", spy)
    base = torch.randn(6, 4, dtype=torch.float64)
    p = torch.nn.Parameter(base.t())  # not contiguous
    q = torch.nn.Parameter(torch.randn(1, dtype=torch.float64))
    opt = Lion([p, q], lr=1e-2, fused=True)
    p.grad, q.grad = torch.randn(6, 4, dtype=torch.float64).t(), torch.randn(1, dtype=torch.float64)
    opt.step()
    assert not spy.calls


# ----------------------------------------------------------------------------------- fast defaults (non-compiled)


def test_adamw_uses_torchs_fused_kernel_by_default() -> None:
    p = torch.nn.Parameter(torch.randn(3, 4))
    assert do.create("adamw", [p]).param_groups[0]["fused"] is True
    assert do.create("adamw", [{"params": [p]}]).param_groups[0]["fused"] is True
    assert do.create("adamw", [("w", p)]).param_groups[0]["fused"] is True
    assert not do.create("adamw", [p], foreach=True).param_groups[0]["fused"]
    assert not do.create("adamw", [p], fused=False).param_groups[0]["fused"]
    # (non-floating parameters, where torch's fused kernel does not apply, are refused at construction:
    # tests/optim/test_torch_fixes.py)


def test_mechanic_registry_base_is_fused_adamw() -> None:
    p = torch.nn.Parameter(torch.randn(3, 4))
    opt = do.create("mechanic", [p])
    assert isinstance(opt.base, torch.optim.AdamW) and opt.param_groups[0]["fused"] is True
    assert not do.create("mechanic", [p], foreach=True).param_groups[0]["fused"]


def test_muon_default_newton_schulz_is_bfloat16_where_it_is_fast(monkeypatch) -> None:
    """``ns_dtype="auto"`` (the signature's default, what ``create("muon")`` gives): bfloat16 — torch.optim.Muon's
    and Keller Jordan's choice — where bfloat16 matmuls are fast, float32 where the CPU emulates them (30x slower
    at 512x512 on an AVX2-only CPU), so the default is never slower than torch.optim.Muon's."""
    from descend.optim import _linalg

    assert inspect.signature(Muon).parameters["ns_dtype"].default == "auto"
    opt = do.create("muon", [torch.nn.Parameter(torch.randn(8, 4))])
    assert {g["ns_dtype"] for g in opt.param_groups} == {"auto"}
    cpu = torch.device("cpu")
    for fast, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(_linalg, "fast_bfloat16_matmul", lambda device, fast=fast: fast)
        assert _linalg.newton_schulz_dtype("auto", cpu) is expected
        g = torch.randn(8, 4, dtype=torch.float64)
        assert _linalg.newton_schulz(g, dtype="auto").dtype is expected
    assert _linalg.newton_schulz_dtype(torch.float64, cpu) is torch.float64


@pytest.mark.parametrize("name", ["c_adamw", "nadamw", "adabelief"])
def test_compiled_float32_is_as_close_to_float64_as_eager(name: str) -> None:
    """The compiled float32 default tracks a float64 run as closely as the eager float32 path does.

    Both float32 paths round every operation (~6e-8 relative), so after 20 steps they sit at a similar distance
    from the float64 trajectory (measured: eager 2.6e-6 / 1.4e-6 / 5.1e-7 relative for C-AdamW / NAdamW /
    AdaBelief, compiled the same to 5 %).  Bound: 4x eager's distance, room for the compiled loop's other
    association of a few operations per element.  Before the betas reached the compiled loop in float64,
    ``1 - beta2`` was off by 1.3e-5 relative there and the compiled distances were 1.0e-4 / 4.0e-5 / 3.6e-6
    (40x / 27x / 7x eager's): this test failed.
    """
    torch.manual_seed(0)
    w0 = torch.randn(4096)
    grads = [torch.randn(4096) for _ in range(20)]

    def run(dtype: torch.dtype, fused: bool) -> torch.Tensor:
        p = torch.nn.Parameter(w0.to(dtype).clone())
        opt = do.create(name, [p], fused=fused)
        for g in grads:
            p.grad = g.to(dtype)
            opt.step()
        return p.detach().double()

    ref = run(torch.float64, False)

    def dist(x: torch.Tensor) -> float:
        return float(((x - ref).abs() / ref.abs().clamp_min(1e-3)).max())

    eager, compiled = dist(run(torch.float32, False)), dist(run(torch.float32, True))
    assert eager > 0.0 and compiled <= 4.0 * eager, (eager, compiled)
