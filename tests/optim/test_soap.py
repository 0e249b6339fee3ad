"""SOAP: golden fixtures, the float32/float64 linear-algebra paths, shapes, and the paper's construction."""

from __future__ import annotations

import dataclasses
import io
import math

import pytest
import torch

import descend.optim as do
from descend.optim import replay
from descend.optim.soap import SOAP, merged_shape

from ..conftest import fixture_files
from ..tolerances import accumulation_rtol

FIXTURES = fixture_files("soap__")


def _replay_with(monkeypatch: pytest.MonkeyPatch, path, **overrides) -> replay.ReplayResult:
    """Replay ``path`` with the registry's builder, some constructor arguments overridden."""
    spec = do.get("soap")
    base = spec.from_fixture

    def build(fx, params):
        opt = base(fx, params)
        for group in opt.param_groups:
            group.update(overrides)
        return opt

    patched = dataclasses.replace(spec, from_fixture=build)
    monkeypatch.setattr(replay.registry, "spec_for_fixture", lambda name: patched)
    return replay.replay_file(path)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_replays(path) -> None:
    """The registry's replay (float32 casts + per-step re-projection of M, as the reference)."""
    r = replay.replay_file(path)
    assert r.passed, f"{path.name}: max |err| {r.max_abs_error:.3g}, err/tol {r.max_ratio:.3g}"
    # replicating the reference's casts reproduces it to the last bit here; allow other BLAS/LAPACKs some room
    assert r.max_ratio < 0.1


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
@pytest.mark.parametrize("overrides", [{"reproject_momentum": False},
                                       {"precond_dtype": "float64"},
                                       {"precond_dtype": "float64", "reproject_momentum": False}],
                         ids=["fast", "float64", "float64_fast"])
def test_fixture_replays_on_the_other_paths(monkeypatch, path, overrides) -> None:
    r = _replay_with(monkeypatch, path, **overrides)
    assert r.passed, f"{path.name} {overrides}: max |err| {r.max_abs_error:.3g}, err/tol {r.max_ratio:.3g}"


# ------------------------------------------------------------------------------------------ helpers


def _params(shapes: dict[str, tuple[int, ...]], seed: int = 0, dtype=torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: torch.nn.Parameter(torch.randn(s, generator=g, dtype=torch.float64).to(dtype))
            for n, s in shapes.items()}


def _grads(shapes: dict[str, tuple[int, ...]], steps: int, seed: int = 1, dtype=torch.float64) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(s, generator=g, dtype=torch.float64).to(dtype) for n, s in shapes.items()}
            for _ in range(steps)]


def _run(shapes, grads, seed: int = 0, dtype=torch.float64, **hp) -> dict[str, torch.Tensor]:
    P = _params(shapes, seed, dtype)
    opt = SOAP(list(P.values()), **hp)
    for g in grads:
        for n, p in P.items():
            p.grad = g[n].clone()
        opt.step()
    return {n: p.detach().clone() for n, p in P.items()}


SQUARE = {"w": (5, 5), "b": (5,), "conv": (3, 2, 2, 2)}


# ------------------------------------------------------------------------------------------ numerics


def test_float64_and_float32_linear_algebra_agree() -> None:
    grads = _grads(SQUARE, 30)
    hp = {"lr": 3e-3, "precondition_frequency": 3}
    a = _run(SQUARE, grads, precond_dtype="float32", **hp)
    b = _run(SQUARE, grads, precond_dtype="float64", **hp)
    for n in SQUARE:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=2e-6)  # float32 eigh/QR noise only


def test_fast_path_equals_reprojection_in_float64() -> None:
    """Skipping the per-step M round trip (the fast path) is exact up to float64 rounding."""
    shapes = {**SQUARE, "wide": (4, 12), "t3": (3, 4, 5)}
    grads = _grads(shapes, 25)
    hp = {"lr": 1e-2, "precondition_frequency": 4, "max_precond_dim": 8, "precond_dtype": "float64"}
    a = _run(shapes, grads, reproject_momentum=True, **hp)
    b = _run(shapes, grads, reproject_momentum=False, **hp)
    # Q Qᵀ M = M up to n eps |M| per step with an orthogonal float64 Q; divided by sqrt(V) + eps (V not small
    # here: the gradients are full rank) that stays ~n eps of an update of size lr, over 25 steps: ~1e-15.
    # 1e-13 leaves room for that bound times the steps' growth; a wrong rotation moves parameters by ~lr
    for n in shapes:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-13)


def test_first_step_only_initialises() -> None:
    P = _params(SQUARE)
    before = {n: p.detach().clone() for n, p in P.items()}
    opt = SOAP(list(P.values()), lr=0.1, weight_decay=0.5)
    for p in P.values():
        p.grad = torch.ones_like(p)
    opt.step()
    for n, p in P.items():
        assert torch.equal(p, before[n]), f"{n} moved on the initialising step"
        st = opt.state[p]
        assert float(st["step"]) == 0.0
        assert not st["exp_avg"].any() and not st["exp_avg_sq"].any()
    assert "basis_0" in opt.state[P["w"]] and "basis_0" not in opt.state[P["b"]]
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in P.items())
    assert all(float(opt.state[p]["step"]) == 1.0 for p in P.values())


def test_one_dimensional_params_are_hf_adam_delayed_by_one_step() -> None:
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.99), 1e-8, 0.1
    p = torch.nn.Parameter(torch.randn(7, dtype=torch.float64))
    grads = [torch.randn(7, dtype=torch.float64) for _ in range(6)]
    opt = SOAP([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    x, m, v = p.detach().clone(), torch.zeros(7, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
    for k, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        if k == 0:
            continue
        t = k
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps)
        x = x - lr * wd * x
        # same formula, possibly another operation order (fused multiply-add, foreach kernels): a few ulps of
        # |x| per step, accumulated over the steps (the update is a contraction in x)
        tol = accumulation_rtol(4 * k)
        torch.testing.assert_close(p.detach(), x, rtol=tol, atol=tol * float(x.abs().max()))


def test_adam_in_the_eigenbasis_on_diagonal_gradients() -> None:
    """The paper's construction: with diagonal gradients Shampoo's eigenbasis is a (signed) permutation of the
    coordinate axes, so SOAP is coordinate-wise Adam on the diagonal and leaves the rest alone."""
    n, lr = 6, 1e-2
    g = torch.Generator().manual_seed(3)
    diag = [torch.rand(n, generator=g, dtype=torch.float64) + 0.1 * torch.arange(n) for _ in range(12)]
    W = torch.nn.Parameter(torch.eye(n, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.ones(n, dtype=torch.float64))
    soap = SOAP([W], lr=lr, betas=(0.9, 0.99), weight_decay=0.0, precondition_frequency=2,
                precond_dtype="float64")
    adam = SOAP([bias], lr=lr, betas=(0.9, 0.99), weight_decay=0.0)  # 1-D: plain Adam, same eps placement
    for d in diag:
        W.grad, bias.grad = torch.diag(d), d.clone()
        soap.step()
        adam.step()
    torch.testing.assert_close(torch.diagonal(W.detach()), bias.detach(), rtol=0, atol=1e-12)
    # off the diagonal M and V hold only rounding noise (~1e-16, 1e-32): M / (sqrt(V) + eps) stays ~1e-8
    off = W.detach() - torch.diag(torch.diagonal(W.detach()))
    assert off.abs().max() < lr * 1e-6


# ------------------------------------------------------------------------------------------ shapes


def test_merged_shape_rule() -> None:
    assert merged_shape((2, 2, 3, 3), 8) == [4, 3, 3]
    assert merged_shape((2, 3, 4, 5), 12) == [6, 4, 5]
    assert merged_shape((64, 3, 3, 3), 30) == [64, 27]
    assert merged_shape((2, 3), 10) == [6]
    assert merged_shape((20000, 4), 10000) == [20000, 4]


@pytest.mark.parametrize(("shape", "hp", "factors"), [
    ((4, 20), {"max_precond_dim": 8}, {0: 4}),                       # one-sided: left only
    ((20, 4), {"max_precond_dim": 8}, {1: 4}),                       # one-sided: right only
    ((3, 4, 5), {}, {0: 3, 1: 4, 2: 5}),                              # 3-D: one factor per dimension
    ((2, 3, 4, 5), {"merge_dims": True, "max_precond_dim": 12}, {0: 6, 1: 4, 2: 5}),
    ((4, 3, 3, 2), {"merge_dims": True, "max_precond_dim": 8, "data_format": "channels_last"},
     {0: 8, 1: 3, 2: 3}),                                             # NHWC viewed as NCHW, then merged
    ((9, 10, 11), {"max_precond_dim": 10}, {0: 9, 1: 10}),
    ((6,), {"precondition_1d": True}, {0: 6}),
    ((6,), {}, {}),
    ((), {}, {}),
])
def test_factor_shapes(shape, hp, factors) -> None:
    p = torch.nn.Parameter(torch.randn(shape, dtype=torch.float64))
    opt = SOAP([p], lr=1e-2, precondition_frequency=2, **hp)
    before = p.detach().clone()
    for _ in range(5):
        p.grad = torch.randn(shape, dtype=torch.float64)
        opt.step()
    st = opt.state[p]
    got = {int(k.split("_")[1]): v.shape[0] for k, v in st.items() if k.startswith("factor_")}
    assert got == factors
    for i, n in factors.items():
        q = st[f"basis_{i}"]
        assert q.shape == (n, n)
        torch.testing.assert_close(q.T @ q, torch.eye(n, dtype=q.dtype), rtol=0, atol=1e-5)
    assert p.shape == before.shape and torch.isfinite(p).all() and not torch.equal(p, before)


def test_merge_dims_is_soap_on_the_merged_view() -> None:
    shape, view = (2, 2, 3, 3), (4, 3, 3)
    grads = _grads({"x": shape}, 12)
    a = _run({"x": shape}, grads, merge_dims=True, max_precond_dim=8, precondition_frequency=3)
    b = _run({"x": view}, [{"x": g["x"].reshape(view)} for g in grads], precondition_frequency=3)
    assert torch.equal(a["x"].reshape(view), b["x"])


def test_channels_last_is_soap_on_the_nchw_view() -> None:
    nhwc, perm = (4, 3, 3, 2), (0, 3, 1, 2)
    grads = _grads({"x": nhwc}, 12)
    a = _run({"x": nhwc}, grads, merge_dims=True, max_precond_dim=8, data_format="channels_last",
             precondition_frequency=3)
    P = _params({"x": nhwc})
    y = torch.nn.Parameter(P["x"].detach().permute(perm).contiguous())
    opt = SOAP([y], merge_dims=True, max_precond_dim=8, precondition_frequency=3)
    for g in grads:
        y.grad = g["x"].permute(perm).contiguous()
        opt.step()
    assert torch.equal(a["x"].permute(perm), y.detach())


# ------------------------------------------------------------------------------------------ state


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_resume_mid_refresh_cycle_is_bitwise(dtype) -> None:
    shapes = {"w": (6, 4), "b": (4,), "conv": (3, 2, 2, 2)}
    grads = _grads(shapes, 14, dtype=dtype)
    hp = {"lr": 1e-2, "precondition_frequency": 3, "max_precond_dim": 5}
    straight = _run(shapes, grads, dtype=dtype, **hp)

    P = _params(shapes, dtype=dtype)
    opt = SOAP(list(P.values()), **hp)
    for g in grads[:8]:
        for n, p in P.items():
            p.grad = g[n].clone()
        opt.step()
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "p": {n: p.detach() for n, p in P.items()}}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    Q = {n: torch.nn.Parameter(v.clone()) for n, v in saved["p"].items()}
    opt2 = SOAP(list(Q.values()), **hp)
    opt2.load_state_dict(saved["opt"])
    for p in Q.values():
        assert opt2.state[p]["exp_avg"].dtype == (torch.float32 if dtype == torch.bfloat16 else dtype)
    for g in grads[8:]:
        for n, p in Q.items():
            p.grad = g[n].clone()
        opt2.step()
    for n in shapes:
        assert torch.equal(straight[n], Q[n].detach()), n


def test_shampoo_beta_none_means_beta2() -> None:
    grads = _grads(SQUARE, 8)
    a = _run(SQUARE, grads, betas=(0.9, 0.97), shampoo_beta=None)
    b = _run(SQUARE, grads, betas=(0.9, 0.97), shampoo_beta=0.97)
    c = _run(SQUARE, grads, betas=(0.9, 0.97), shampoo_beta=0.5)
    assert all(torch.equal(a[n], b[n]) for n in SQUARE)
    assert not torch.equal(a["w"], c["w"])


@pytest.mark.parametrize(("arg", "value"), [("shampoo_beta", -1), ("precondition_frequency", 0),
                                            ("precond_dtype", torch.float64), ("merge_dims", "yes")])
def test_invalid_group_values_raise(arg, value) -> None:
    p = torch.nn.Parameter(torch.randn(3, 3))
    q = torch.nn.Parameter(torch.randn(3, 3))
    with pytest.raises(ValueError, match=arg):
        SOAP([{"params": [p]}, {"params": [q], arg: value}])


# ------------------------------------------------------------------------------------------ batching

# Four same-shaped matrices (one bucket), a distinct square one, pairs of one-sided matrices (the dimension 12 is
# above max_precond_dim = 8: identity on that side), 1-D parameters (plain Adam) and order-3 tensors.  Two-sided
# non-square matrices are left out on purpose: the larger factor of an m x n gradient is singular on the first
# step (rank min(m, n)), and the eigenvectors of its repeated eigenvalue 0 are not determined -- any rounding
# difference (measured: the memory offset of a 7 x 5 matrix inside a stack changes MKL's eigh code path) rotates
# them arbitrarily within the null space, and since Adam's elementwise scaling is not rotation invariant the
# trajectories then differ at O(lr).  That is SOAP's own sensitivity (one-by-one code on another BLAS has it too),
# not batching's, and no tolerance below O(lr) could be justified for it.
BATCH_SHAPES = {"a0": (6, 6), "a1": (6, 6), "a2": (6, 6), "a3": (6, 6), "sq": (4, 4), "w0": (5, 12), "w1": (5, 12),
                "tall0": (12, 6), "tall1": (12, 6), "b0": (6,), "b1": (6,), "t0": (3, 4, 5), "t1": (3, 4, 5)}
BATCH_HP = {"lr": 1e-2, "precondition_frequency": 3, "max_precond_dim": 8, "precond_dtype": "float64"}


def _run_grouped(grads: list[dict], batched: bool, **hp) -> tuple[dict[str, torch.Tensor], SOAP, float]:
    """The run on ``BATCH_SHAPES`` with all parameters in one group (``batched``) or one group each (every bucket
    holds one matrix: the one-by-one computation).  Also returns the smallest relative eigengap of any finite
    factor seen after any step."""
    P = _params(BATCH_SHAPES)
    params = list(P.values())
    opt = SOAP(params if batched else [{"params": [p]} for p in params], **{**BATCH_HP, **hp})
    gap = math.inf
    for g in grads:
        for n, p in P.items():
            p.grad = None if g[n] is None else g[n].clone()
        opt.step()
        for p in params:
            for key, f in opt.state[p].items():
                if key.startswith("factor_") and torch.isfinite(f).all():
                    ev = torch.linalg.eigvalsh(f)
                    gap = min(gap, (ev.diff().min() / ev.max()).item())
    return P, opt, gap


@pytest.mark.parametrize("hp", [{}, {"reproject_momentum": True}, {"normalize_grads": True}],
                         ids=["fast", "reproject", "normalized"])
def test_batched_buckets_equal_one_by_one_in_float64(monkeypatch, hp) -> None:
    """Same-shaped matrices stepped as one batch (stacked products, batched eigh / QR) = each matrix alone.

    10 steps with precondition_frequency 3: eigh at the first call, QR refreshes at t = 3, 6, 9.  Both runs do
    the same operations on the same matrices; they differ only where a batched kernel's blocking changes the
    order of a sum, an O(n eps) ~ 1e-15 relative perturbation of a product.  The eigenbasis refresh amplifies a
    perturbation of a factor by at most its condition ||F|| / (eigengap), <= 1 / (smallest relative gap), which
    the test checks is >= 1e-3 here: <= 6 · 1.1e-16 / 1e-3 ~ 7e-13 per refresh, 2e-12 over three, in bases and
    moments (entries O(1)) -> atol 1e-11; parameters move by lr = 1e-2 per step with that relative error -> over
    10 steps <= 2e-13 -> atol 1e-12.  A mismatched member or basis moves parameters by O(lr) = 1e-2."""
    qr_batches: list[int] = []
    qr = torch.linalg.qr

    def counting_qr(a: torch.Tensor, *args, **kwargs):
        qr_batches.append(a.shape[0] if a.dim() == 3 else 1)
        return qr(a, *args, **kwargs)

    grads = _grads(BATCH_SHAPES, 10)
    monkeypatch.setattr(torch.linalg, "qr", counting_qr)
    a, opt_a, gap = _run_grouped(grads, batched=True, **hp)
    assert 4 in qr_batches  # the (6, 6) bucket's factors were refreshed by one batched QR
    batched_calls = len(qr_batches)
    qr_batches.clear()
    b, opt_b, _ = _run_grouped(grads, batched=False, **hp)
    assert set(qr_batches) == {1} and len(qr_batches) > batched_calls
    assert gap >= 1e-3
    for n in BATCH_SHAPES:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-12, msg=n)
        sa, sb = opt_a.state[a[n]], opt_b.state[b[n]]
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-11, msg=f"{n}.{key}")


def test_a_failed_factor_in_a_batch_leaves_the_others_alone() -> None:
    """One matrix of the (6, 6) bucket gets a gradient x 1e200 once: its float64 factor overflows to inf, so it
    keeps its basis from then on (the guarded factorization), while its bucket-mates follow exactly the
    trajectory they have without it (matrices of a bucket are independent), and it stays finite.  Tolerance: as
    in the test above (same operations, same matrices, only summation order in batched kernels may differ)."""
    grads = _grads(BATCH_SHAPES, 10)
    clean, _, _ = _run_grouped(grads, batched=True)
    grads[4]["a1"] = grads[4]["a1"] * 1e200  # the 5th call: t = 4, before the refreshes at t = 6 and 9
    P, opt, _ = _run_grouped(grads, batched=True)
    alone, _, _ = _run_grouped(grads, batched=False)
    state = opt.state[P["a1"]]
    assert not torch.isfinite(state["factor_0"]).all()
    assert torch.isfinite(P["a1"]).all() and torch.isfinite(state["basis_0"]).all()
    for n in BATCH_SHAPES:
        if n != "a1":
            torch.testing.assert_close(P[n], clean[n], rtol=0, atol=1e-12, msg=n)
        torch.testing.assert_close(P[n], alone[n], rtol=0, atol=1e-12, msg=n)


def test_buckets_that_split_and_regroup_equal_one_by_one() -> None:
    """``a2`` skips two calls (no gradient): its step count falls behind, so the (6, 6) bucket splits into two
    (their state rows are re-packed into new storages) and ``a2`` is stepped alone; its refreshes come two calls
    later.  Still equal to stepping each matrix alone.  Tolerance: as in the float64 test above."""
    grads = _grads(BATCH_SHAPES, 12)
    for k in (4, 5):
        grads[k]["a2"] = None
    a, opt, _ = _run_grouped(grads, batched=True)
    b, _, _ = _run_grouped(grads, batched=False)
    assert float(opt.state[a["a2"]]["step"]) == float(opt.state[a["a1"]]["step"]) - 2
    for n in BATCH_SHAPES:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-12, msg=n)


def test_bucket_state_shares_storage_and_copies_stay_small() -> None:
    """A bucket's state entries are rows of one storage per key; pickling copies them out (otherwise each row
    would write the whole storage), and the copy steps on to the same parameters as the original."""
    import pickle

    P = _params({f"w{i}": (32, 32) for i in range(4)})
    opt = SOAP(list(P.values()), precondition_frequency=2)
    for g in _grads({f"w{i}": (32, 32) for i in range(4)}, 3):
        for n, p in P.items():
            p.grad = g[n].clone()
        opt.step()
    s0, s1 = opt.state[P["w0"]], opt.state[P["w1"]]
    for key in ("exp_avg", "exp_avg_sq", "factor_0", "basis_1"):
        assert s0[key].untyped_storage().data_ptr() == s1[key].untyped_storage().data_ptr(), key
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    blob = pickle.dumps(opt)
    assert len(blob) < 1.2 * state_bytes + 20_000  # one copy of the state and the overhead, not 4 copies
    copy = pickle.loads(blob)
    for p, q in zip(opt.param_groups[0]["params"], copy.param_groups[0]["params"], strict=True):
        p.grad = torch.ones_like(p)
        q.grad = torch.ones_like(q)
    opt.step()
    copy.step()
    for p, q in zip(opt.param_groups[0]["params"], copy.param_groups[0]["params"], strict=True):
        assert torch.equal(p, q)


def test_buckets_larger_than_the_stack_limit_are_chunked(monkeypatch) -> None:
    """With the stack limit at two 6 x 6 matrices the (6, 6) bucket runs as two chunks of two: still equal to
    one-by-one stepping (tolerance: as in the float64 test above), and no QR sees more than two of them."""
    from descend.optim import soap

    qr_batches: list[int] = []
    qr = torch.linalg.qr

    def counting_qr(a: torch.Tensor, *args, **kwargs):
        qr_batches.append(a.shape[0] if a.dim() == 3 else 1)
        return qr(a, *args, **kwargs)

    monkeypatch.setattr(soap, "_MAX_STACK_ELEMENTS", 72)
    monkeypatch.setattr(torch.linalg, "qr", counting_qr)
    grads = _grads(BATCH_SHAPES, 10)
    a, _, _ = _run_grouped(grads, batched=True)
    assert max(qr_batches) == 2
    b, _, _ = _run_grouped(grads, batched=False)
    for n in BATCH_SHAPES:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-12, msg=n)
