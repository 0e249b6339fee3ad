"""Shampoo (descend.optim.shampoo): no installable reference (facebookresearch/optimizers needs Python ≥ 3.12)
and no fixture, so the checks are exact reductions and dense float64 computations:

* before preconditioning starts, Shampoo is its grafting method: torch's AdamW / Adam (L2) / Adagrad /
  RMSprop / SGD trajectories, to rounding;
* the inverse root (``_linalg.matrix_inverse_root``) against SciPy / an eigenvalue-exact construction,
  including near-singular and slightly indefinite matrices (the ε rule: shift only when λ_min < ε);
* the paper's matrix update W ← W − η L^(−1/4) G R^(−1/4) (L₀ = εI, R₀ = εI, β2 = 1) computed densely;
* order-3 tensors against explicit Kronecker products, exponent overrides, full-matrix vectors;
* blocking: a blocked parameter equals its blocks optimized as separate parameters;
* root-refresh schedule, failure tolerance, resume with float32 factors of float64/bfloat16 parameters.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import descend.optim.shampoo as shampoo_mod
from descend.optim import _linalg
from descend.optim.shampoo import Shampoo, block_slices, merged_shape

from ..tolerances import condition, inverse_root_rtol, regularised_root_step_rtol

scipy_linalg = pytest.importorskip("scipy.linalg")

F64 = torch.float64
EXACT = {"rtol": 1e-12, "atol": 1e-14}


def _grads(shapes: list[tuple[int, ...]], steps: int, seed: int = 0) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g, dtype=F64) for s in shapes] for _ in range(steps)]


def _params(shapes: list[tuple[int, ...]], seed: int = 1) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g, dtype=F64)) for s in shapes]


def _drive(opts: list[torch.optim.Optimizer], params: list[list[torch.nn.Parameter]],
           grads: list[list[torch.Tensor]]) -> None:
    for step_grads in grads:
        for opt, ps in zip(opts, params, strict=True):
            for p, gr in zip(ps, step_grads, strict=True):
                p.grad = gr.clone()
            opt.step()


# ------------------------------------------------------------------------------------------ (1) grafting

SHAPES = [(6, 4), (4,), (3, 2, 2), ()]
NEVER = {"precondition_frequency": 1, "start_preconditioning_step": 10_000}


@pytest.mark.parametrize(("shampoo_kw", "make_torch"), [
    ({"grafting": "adam", "betas": (0.9, 0.5), "grafting_beta2": 0.99, "weight_decay": 0.1},
     lambda ps: torch.optim.AdamW(ps, lr=0.03, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
    ({"grafting": "adam", "betas": (0.8, 1.0), "grafting_beta2": 0.999, "weight_decay": 0.05,
      "weight_decay_type": "l2", "grafting_epsilon": 1e-6},
     lambda ps: torch.optim.Adam(ps, lr=0.03, betas=(0.8, 0.999), eps=1e-6, weight_decay=0.05)),
    ({"grafting": "adagrad", "betas": (0.0, 1.0), "grafting_epsilon": 1e-10},
     lambda ps: torch.optim.Adagrad(ps, lr=0.03, eps=1e-10)),
    ({"grafting": "rmsprop", "betas": (0.0, 0.9), "grafting_beta2": 0.95},
     lambda ps: torch.optim.RMSprop(ps, lr=0.03, alpha=0.95, eps=1e-8)),
    ({"grafting": "sgd", "betas": (0.0, 0.9), "weight_decay": 0.1, "weight_decay_type": "l2"},
     lambda ps: torch.optim.SGD(ps, lr=0.03, weight_decay=0.1)),
], ids=["adamw", "adam-l2", "adagrad", "rmsprop", "sgd-l2"])
def test_before_preconditioning_it_is_the_grafting_method(shampoo_kw, make_torch) -> None:
    a, b = _params(SHAPES), _params(SHAPES)
    ours = Shampoo(a, lr=0.03, max_preconditioner_dim=3, **NEVER, **shampoo_kw)
    theirs = make_torch(b)
    _drive([ours, theirs], [a, b], _grads(SHAPES, 40))
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **EXACT)


# ------------------------------------------------------------------------------------------ (2) inverse roots


def _spd(n: int, eigenvalues: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return (q * eigenvalues) @ q.T, q


@pytest.mark.parametrize("exponent", [0.5, 0.25, 1 / 6, 0.2, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_root_matches_scipy(exponent: float, seed: int) -> None:
    n = 7
    lam = np.exp(np.random.default_rng(100 + seed).uniform(np.log(1e-3), np.log(1e2), n))
    a, _ = _spd(n, lam, seed)
    a = (a + a.T) / 2
    expected = np.real(scipy_linalg.fractional_matrix_power(a, -exponent))
    got = _linalg.matrix_inverse_root(torch.from_numpy(a), exponent, epsilon=1e-12)
    assert got.dtype == F64
    # eigh (ours) against SciPy's Schur-Pade root: both within p n eps kappa (kappa <= 1e5 here: ~1.5e-10)
    tol = inverse_root_rtol(condition(a), n, exponent)
    np.testing.assert_allclose(got.numpy(), expected, rtol=tol, atol=tol * np.abs(expected).max())


@pytest.mark.parametrize("lam_small", [[0.0, 0.0], [1e-14, 3e-9], [-1e-10, 2e-8], [-1e-3, 0.0]],
                         ids=["singular", "near-singular", "slightly-indefinite", "indefinite"])
def test_inverse_root_shifts_only_below_epsilon(lam_small: list[float]) -> None:
    """λ_min < ε: λ ← λ − λ_min + ε (the shift is relative to λ_min, not a plain + ε)."""
    eps = 1e-6
    lam = np.array([*lam_small, 0.5, 2.0, 10.0])
    a, q = _spd(len(lam), lam, 3)
    shifted = lam - lam.min() + eps
    for exponent in (0.25, 0.5):
        expected = (q * shifted**-exponent) @ q.T
        got = _linalg.matrix_inverse_root(torch.from_numpy(a), exponent, epsilon=eps).numpy()
        # λ_min is only known to ~1e-15 absolute; relative to ε that is 1e-9 of the largest component
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7 * np.abs(expected).max())


def test_inverse_root_adds_no_epsilon_when_well_conditioned() -> None:
    lam = np.array([1e-3, 0.1, 1.0, 4.0])
    a, q = _spd(4, lam, 4)
    got = _linalg.matrix_inverse_root(torch.from_numpy(a), 0.25, epsilon=1e-4).numpy()
    expected = (q * lam**-0.25) @ q.T
    tol = inverse_root_rtol(lam.max() / lam.min(), 4, 0.25)  # kappa 4000: ~1.8e-12 (an added eps: ~1e-2)
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * np.abs(expected).max())


def test_inverse_root_dtype_and_float64_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    lam = np.array([0.01, 0.3, 1.0, 5.0, 9.0])
    a, q = _spd(5, lam, 5)
    expected = (q * lam**-0.25) @ q.T
    got32 = _linalg.matrix_inverse_root(torch.from_numpy(a), 0.25, epsilon=1e-12, dtype=torch.float32)
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.double().numpy(), expected, rtol=0, atol=1e-4 * np.abs(expected).max())

    real_eigh = torch.linalg.eigh
    seen: list[torch.dtype] = []

    def flaky_eigh(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(m.dtype)
        if m.dtype != F64:
            raise torch.linalg.LinAlgError("simulated: eigh did not converge")
        return real_eigh(m)

    monkeypatch.setattr(torch.linalg, "eigh", flaky_eigh)
    retried = _linalg.matrix_inverse_root(torch.from_numpy(a).float(), 0.25, epsilon=1e-12)
    assert seen == [torch.float32, F64] and retried.dtype == torch.float32
    np.testing.assert_allclose(retried.double().numpy(), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    with pytest.raises(torch.linalg.LinAlgError):
        _linalg.matrix_inverse_root(torch.eye(3, dtype=torch.float32) * float("nan"), 0.25, epsilon=1e-12)


# ------------------------------------------------------------------------------------------ (3) the paper


PAPER = {"betas": (0.0, 1.0), "grafting": "none", "precondition_frequency": 1, "merge_dims": False,
         "factor_dtype": "float64", "epsilon": 1e-12}


def _dense_root(m: np.ndarray, exponent: float) -> np.ndarray:
    lam, q = np.linalg.eigh(m)
    return (q * lam**-exponent) @ q.T


def test_matrix_case_is_the_papers_update() -> None:
    """Gupta et al. Alg. 1: L_t = εI + Σ G Gᵀ, R_t = εI + Σ Gᵀ G, W ← W − η L_t^(−1/4) G_t R_t^(−1/4)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 3))
    w0 = 0.1 * rng.standard_normal((4, 3))
    lr, eps, steps = 0.1, PAPER["epsilon"], 12

    w = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    opt = Shampoo([w], lr=lr, **PAPER)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    wd, big_l, big_r = w0.copy(), eps * np.eye(4), eps * np.eye(3)
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * ((xt @ w - yt) ** 2).sum()).backward()
        opt.step()
        g = x.T @ (x @ wd - y)
        big_l, big_r = big_l + g @ g.T, big_r + g.T @ g
        wd = wd - lr * _dense_root(big_l, 0.25) @ g @ _dense_root(big_r, 0.25)
    # L_1 = eps I + G Gᵀ is singular up to eps = 1e-12 (G is 4x3): rounding reaching its null space is
    # amplified by (lambda_max / eps)^(1/4); later steps carry that error forward
    lam_max = float(np.linalg.eigvalsh(big_l).max())
    tol = regularised_root_step_rtol(lam_max, eps, 4, 0.25, steps)
    np.testing.assert_allclose(w.detach().numpy(), wd, rtol=tol, atol=tol * np.abs(wd).max())
    assert not np.allclose(wd, w0, atol=1e-3)


# ------------------------------------------------------------------------------------------ (4) tensors


def _unfold(t: np.ndarray, k: int) -> np.ndarray:
    return np.moveaxis(t, k, 0).reshape(t.shape[k], -1)


def _practical_root(m: np.ndarray, exponent: float, eps: float) -> np.ndarray:
    lam, q = np.linalg.eigh(m)
    if lam.min() < eps:
        lam = lam - lam.min() + eps
    return (q * lam**-exponent) @ q.T


@pytest.mark.parametrize(("override", "exps"), [
    (None, [1 / 6, 1 / 6, 1 / 6]),
    ({3: {0: 0.0, 1: 0.25}}, [0.0, 0.25, 1 / 6]),
    ({3: 0.3}, [0.3, 0.3, 0.3]),
], ids=["default", "per-dim", "all-dims"])
def test_order3_tensor_is_a_kronecker_product(override, exps: list[float]) -> None:
    shape, lr, eps, beta2 = (2, 3, 4), 0.5, 1e-12, 0.9
    p = _params([shape])[0]
    start = p.detach().numpy().copy()
    opt = Shampoo([p], lr=lr, **{**PAPER, "betas": (0.0, beta2)}, inverse_exponent_override=override)
    grads = _grads([shape], 3, seed=7)
    factors = [np.zeros((n, n)) for n in shape]
    expected = start
    tol = 0.0
    for t, (gr,) in enumerate(grads, start=1):
        p.grad = gr.clone()
        opt.step()
        g = gr.numpy()
        factors = [beta2 * f + (1 - beta2) * _unfold(g, k) @ _unfold(g, k).T for k, f in enumerate(factors)]
        mats = [np.eye(n) if e == 0.0 else _practical_root(f / (1 - beta2**t), e, eps)
                for n, f, e in zip(shape, factors, exps, strict=True)]
        kron = np.kron(np.kron(mats[0], mats[1]), mats[2])  # row-major vec(G)
        expected = expected - lr * (kron @ g.reshape(-1)).reshape(shape)
        # each step adds the error of its roots (p n eps kappa per factor; the factors are full rank)
        tol += sum(inverse_root_rtol(condition(f / (1 - beta2**t) + eps * np.eye(n)), n, e)
                   for n, f, e in zip(shape, factors, exps, strict=True) if e != 0.0)
    np.testing.assert_allclose(p.detach().numpy(), expected, rtol=tol, atol=tol * np.abs(expected).max())
    n_factors = sum(e != 0.0 for e in exps)
    assert sorted(k for k in opt.state[p] if k.startswith("factor.")) == [f"factor.0.{k}" for k in range(n_factors)]


def test_vector_gets_full_matrix_adagrad() -> None:
    """A 1-D parameter (and, merged, a (1, 3, 1, 4) one) is preconditioned by (Σ g gᵀ)^(−1/2)."""
    eps, lr = 1e-12, 0.2
    for shape in [(12,), (1, 3, 1, 4)]:
        p = _params([shape])[0]
        expected = p.detach().numpy().reshape(-1).copy()
        opt = Shampoo([p], lr=lr, **{**PAPER, "merge_dims": True})
        acc = np.zeros((12, 12))
        for (gr,) in _grads([shape], 4, seed=3):
            p.grad = gr.clone()
            opt.step()
            g = gr.numpy().reshape(-1)
            acc += np.outer(g, g)
            expected = expected - lr * _practical_root(acc, 0.5, eps) @ g
        # Σ g gᵀ has rank 4 of 12, regularised by eps = 1e-12: the rounding component of g in the null space
        # is amplified by eps^(-1/2) instead of ~lambda_max^(-1/2), a relative error of n eps sqrt(lambda_max /
        # eps) per step (~4e-10 here, 4 steps; measured 1e-9 on one CPU, 2.2e-9 on an AMD Zen 3 with MKL)
        tol = regularised_root_step_rtol(float(np.linalg.eigvalsh(acc).max()), eps, 12, 0.5, 4)
        np.testing.assert_allclose(p.detach().numpy().reshape(-1), expected, rtol=tol,
                                   atol=tol * np.abs(expected).max())
        assert opt.state[p]["factor.0.0"].shape == (12, 12)


def test_merged_shape_and_blocks() -> None:
    assert merged_shape((1, 2, 5, 1), 10, True) == (10,)
    assert merged_shape((1, 2, 5, 1), 1, True) == (2, 5)
    assert merged_shape((32, 3, 64, 64), 8192, True) == (96, 4096)
    assert merged_shape((3, 5), 1024, True) == (15,)
    assert merged_shape((), 1024, True) == (1,)
    assert merged_shape((3, 5), 1024, False) == (3, 5)
    sizes = [tuple(s.stop - s.start for s in sl) for sl in block_slices((5, 7), 3)]
    assert sizes == [(3, 3), (3, 3), (3, 1), (2, 3), (2, 3), (2, 1)]


@pytest.mark.parametrize("grafting", ["adam", "none"])
def test_blocked_parameter_equals_its_blocks_optimized_separately(grafting: str) -> None:
    kw = {"lr": 0.05, "betas": (0.9, 0.95), "precondition_frequency": 2, "grafting": grafting,
          "merge_dims": False, "factor_dtype": "float64", "epsilon": 1e-10, "weight_decay": 0.01}
    whole = _params([(5, 7)])[0]
    slices = block_slices((5, 7), 3)
    parts = [torch.nn.Parameter(whole.detach()[sl].clone()) for sl in slices]
    o_whole = Shampoo([whole], max_preconditioner_dim=3, **kw)
    o_parts = Shampoo(parts, max_preconditioner_dim=1024, **kw)
    for (gr,) in _grads([(5, 7)], 9, seed=11):
        whole.grad = gr.clone()
        for part, sl in zip(parts, slices, strict=True):
            part.grad = gr[sl].clone()
        o_whole.step()
        o_parts.step()
    for part, sl in zip(parts, slices, strict=True):
        torch.testing.assert_close(whole.detach()[sl], part.detach(), rtol=1e-12, atol=1e-13)
    assert len([k for k in o_whole.state[whole] if k.startswith("inv_root.")]) == 2 * len(slices)


# ------------------------------------------------------------------------------------------ schedule, failures


def test_roots_refresh_on_schedule_and_grafting_runs_before(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = shampoo_mod.Shampoo._refresh_roots

    def spy(self, p, state, group, blocks, t):
        calls.append(t)
        return real(self, p, state, group, blocks, t)

    monkeypatch.setattr(shampoo_mod.Shampoo, "_refresh_roots", spy)
    p = _params([(3, 2)])[0]
    q = torch.nn.Parameter(p.detach().clone())
    opt = Shampoo([p], lr=0.01, precondition_frequency=3, start_preconditioning_step=6, merge_dims=False)
    adamw = torch.optim.AdamW([q], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    for t, (gr,) in enumerate(_grads([(3, 2)], 13), start=1):
        p.grad, q.grad = gr.clone(), gr.clone()
        opt.step()
        adamw.step()
        if t == 5:  # steps 1..5 are pure Adam grafting
            torch.testing.assert_close(p.detach(), q.detach(), **EXACT)
    assert calls == [6.0, 9.0, 12.0]


def test_failed_root_keeps_the_old_one_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    p = _params([(3, 2)])[0]
    opt = Shampoo([p], lr=0.01, precondition_frequency=1, merge_dims=False, grafting="none",
                  betas=(0.0, 1.0), max_failed_roots=2)
    grads = _grads([(3, 2)], 6)
    p.grad = grads[0][0].clone()
    opt.step()
    good = [opt.state[p]["inv_root.0.0"].clone(), opt.state[p]["inv_root.0.1"].clone()]
    assert not torch.equal(good[0], torch.eye(3, dtype=good[0].dtype))

    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise torch.linalg.LinAlgError("simulated failure")

    monkeypatch.setattr(shampoo_mod, "matrix_inverse_root", broken)
    for t in (1, 2):
        before = p.detach().clone()
        p.grad = grads[t][0].clone()
        opt.step()
        assert int(opt.state[p]["failures.0"]) == t
        assert torch.equal(opt.state[p]["inv_root.0.0"], good[0])
        assert torch.equal(opt.state[p]["inv_root.0.1"], good[1])
        assert not torch.equal(p.detach(), before)  # the step still happens, with the old roots
    p.grad = grads[3][0].clone()
    with pytest.raises(RuntimeError, match="max_failed_roots"):
        opt.step()

    monkeypatch.setattr(shampoo_mod, "matrix_inverse_root", lambda m, e, **kw: torch.full_like(m, float("nan")))
    opt2 = Shampoo([p], lr=0.01, precondition_frequency=1, merge_dims=False)
    p.grad = grads[4][0].clone()
    opt2.step()  # a non-finite root counts as a failure: identity kept
    assert int(opt2.state[p]["failures.0"]) == 1
    assert torch.equal(opt2.state[p]["inv_root.0.0"], torch.eye(3))


def test_nonfinite_factor_raises() -> None:
    p = _params([(3, 2)])[0]
    opt = Shampoo([p], precondition_frequency=1)
    p.grad = torch.full((3, 2), float("inf"), dtype=F64)
    with pytest.raises(RuntimeError, match="non-finite"):
        opt.step()


# ------------------------------------------------------------------------------------------ state, resume


@pytest.mark.parametrize("dtype", [F64, torch.bfloat16], ids=["float64", "bfloat16"])
def test_resume_keeps_float32_factors_and_is_bitwise(dtype: torch.dtype) -> None:
    shapes = [(6, 4), (5,), (2, 3, 2)]
    kw = {"lr": 0.01, "precondition_frequency": 3, "max_preconditioner_dim": 4, "merge_dims": False}
    grads = [[g.to(dtype) for g in step] for step in _grads(shapes, 14)]

    def fresh() -> tuple[list[torch.nn.Parameter], Shampoo]:
        ps = [torch.nn.Parameter(p.detach().to(dtype)) for p in _params(shapes)]
        return ps, Shampoo(ps, **kw)

    a, oa = fresh()
    _drive([oa], [a], grads)
    b, ob = fresh()
    _drive([ob], [b], grads[:7])
    buf = io.BytesIO()
    torch.save({"opt": ob.state_dict(), "params": [p.detach() for p in b]}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    c, oc = fresh()
    with torch.no_grad():
        for p, v in zip(c, saved["params"], strict=True):
            p.copy_(v)
    oc.load_state_dict(saved["opt"])
    st = oc.state[c[0]]
    assert st["factor.0.0"].dtype == torch.float32 and st["failures.0"].dtype == torch.int64
    work = torch.float32 if dtype == torch.bfloat16 else dtype
    assert st["graft_sq"].dtype == work and st["exp_avg"].dtype == work and st["step"].dtype == F64
    _drive([oc], [c], grads[7:])
    for x, y in zip(a, c, strict=True):
        assert x.dtype == dtype
        assert torch.equal(x, y)


def test_scalar_and_empty_parameters() -> None:
    s = torch.nn.Parameter(torch.tensor(2.0, dtype=F64))
    e = torch.nn.Parameter(torch.zeros(0, 3, dtype=F64))
    for merge in (True, False):
        opt = Shampoo([s, e], lr=0.1, precondition_frequency=1, merge_dims=merge, grafting="sgd", betas=(0.0, 1.0))
        s.grad, e.grad = torch.tensor(1.0, dtype=F64), torch.zeros(0, 3, dtype=F64)
        before = float(s.detach())
        opt.step()
        assert float(s.detach()) == pytest.approx(before - 0.1)  # |grafted step| = |sgd step|
        assert e not in opt.state


def test_start_before_frequency_is_rejected() -> None:
    p = _params([(2, 2)])[0]
    with pytest.raises(ValueError, match="start_preconditioning_step"):
        Shampoo([p], precondition_frequency=10, start_preconditioning_step=5)
    with pytest.raises(ValueError, match="lr"):
        Shampoo([{"params": [p], "lr": -1.0}])
