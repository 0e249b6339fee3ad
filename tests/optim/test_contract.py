"""The torch.optim contract, checked for every registered optimizer.

Each test is parametrized over ``descend.optim.available()``: registering an optimizer is enough for it to be
held to convergence on problems with known optima, bitwise resume, dtypes, per-group learning rates,
schedulers, ``grad=None``, sparse/complex input handling and hyperparameter validation.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import descend.optim as do
from descend.optim.testing import OptimizerTestMetadata, get_test_metadata

from .problems import Problem, mixed, quadratic, rosenbrock, scheduler, step

SPECS = [do.get(n) for n in do.available()]
ELEMENTWISE = [s for s in SPECS if s.elementwise]


def by_name(specs: list[do.OptimizerSpec]) -> dict:
    return {"argvalues": specs, "ids": [s.name for s in specs]}


def meta(spec: do.OptimizerSpec) -> OptimizerTestMetadata:
    """The convergence checks and invalid examples of ``spec`` (declared in :mod:`descend.optim.testing`)."""
    return get_test_metadata(spec.name)


def _snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


# ------------------------------------------------------------------------------------------ registry


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_registry_entry_is_complete(spec: do.OptimizerSpec) -> None:
    assert spec.paper and spec.reference and spec.summary
    assert spec.search_space, "the benchmark tunes from the search space: declare one"
    assert {"quadratic", "rosenbrock"} <= set(meta(spec).convergence), "declare both convergence checks"
    assert meta(spec).invalid, "declare invalid hyperparameter examples"
    if spec.lr_key is not None:
        assert spec.lr_key in meta(spec).invalid
    assert spec.factory.__doc__ or type(spec.factory).__doc__


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_create_with_defaults_and_step(spec: do.OptimizerSpec) -> None:
    prob = mixed(matrix_only=spec.matrix_only)
    opt = do.create(spec.name, prob.params)
    assert isinstance(opt, torch.optim.Optimizer)
    before = prob.loss().item()
    for t in range(3):
        step(spec, opt, prob, t)
    for p in prob.params:
        assert torch.isfinite(p).all()
    assert prob.loss().item() <= 1.5 * before  # a sane first few steps, no blow-up


# ------------------------------------------------------------------------------------------ convergence


@pytest.mark.parametrize("problem_name", ["quadratic", "rosenbrock"])
@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_converges_to_known_optimum(spec: do.OptimizerSpec, problem_name: str) -> None:
    check = meta(spec).convergence[problem_name]
    prob = quadratic() if problem_name == "quadratic" else rosenbrock()
    d0 = prob.distance()
    opt = spec.create(prob.params, **check.hyperparameters)
    sched = scheduler(opt, check.schedule, check.steps)
    for t in range(check.steps):
        step(spec, opt, prob, t)
        if sched is not None:
            sched.step()
    rel = prob.distance() / d0
    assert rel <= check.tolerance, f"{spec.name} on {problem_name}: ||x-x*||/||x0-x*|| = {rel:.3g}"


# ------------------------------------------------------------------------------------------ resume


def _run(spec: do.OptimizerSpec, steps: int, split: int | None, dtype: torch.dtype) -> list[torch.Tensor]:
    prob = mixed(dtype=dtype, matrix_only=spec.matrix_only)
    opt = spec.create(prob.params)
    for t in range(steps if split is None else split):
        step(spec, opt, prob, t)
    if split is None:
        return _snapshot(prob.params)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": _snapshot(prob.params)}, buf)
    del opt
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    fresh = _rebind(saved["params"], dtype, spec.matrix_only)  # new parameters and a new optimizer
    opt2 = spec.create(fresh.params)
    opt2.load_state_dict(saved["opt"])
    for t in range(split, steps):
        step(spec, opt2, fresh, t)
    return _snapshot(fresh.params)


def _rebind(values: list[torch.Tensor], dtype: torch.dtype, matrix_only: bool) -> Problem:
    prob = mixed(dtype=dtype, matrix_only=matrix_only)
    with torch.no_grad():
        for p, v in zip(prob.params, values, strict=True):
            p.copy_(v)
    return prob


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_resume_is_bitwise_identical(spec: do.OptimizerSpec, dtype: torch.dtype) -> None:
    steps, split = 25, 13
    straight = _run(spec, steps, None, dtype)
    resumed = _run(spec, steps, split, dtype)
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b), f"{spec.name}: resumed trajectory differs by {(a - b).abs().max():.3g}"


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_state_is_tensors_only(spec: do.OptimizerSpec) -> None:
    prob = mixed(matrix_only=spec.matrix_only)
    opt = spec.create(prob.params)
    for t in range(3):
        step(spec, opt, prob, t)

    def leaves(x: object) -> list[object]:
        if isinstance(x, dict):
            return [y for v in x.values() for y in leaves(v)]
        if isinstance(x, (list, tuple)):
            return [y for v in x for y in leaves(v)]
        return [x]

    bad = [type(v).__name__ for v in leaves(opt.state_dict()["state"]) if not isinstance(v, torch.Tensor)]
    assert not bad, f"{spec.name} keeps non-tensor state {bad}: a resume would not restore it exactly"


# ------------------------------------------------------------------------------------------ dtypes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16],
                         ids=["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_dtypes(spec: do.OptimizerSpec, dtype: torch.dtype) -> None:
    prob = mixed(dtype=dtype, matrix_only=spec.matrix_only)
    hp = meta(spec).convergence["quadratic"].hyperparameters
    opt = spec.create(prob.params, **hp)
    start = prob.loss().item()
    for t in range(20):
        step(spec, opt, prob, t)
    for p in prob.params:
        assert p.dtype == dtype
        assert torch.isfinite(p).all()
    if dtype != torch.bfloat16:
        assert prob.loss().item() < start


# ------------------------------------------------------------------------------------------ groups, lr


def _need_lr(spec: do.OptimizerSpec) -> str:
    if spec.lr_key is None:
        pytest.skip(f"{spec.name} has no learning rate (lr_key=None)")
    return spec.lr_key


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_param_group_with_its_own_lr(spec: do.OptimizerSpec) -> None:
    key = _need_lr(spec)
    if not spec.zero_lr_freezes:
        pytest.skip(f"{spec.name}: lr = 0 does not freeze parameters by design (zero_lr_freezes=False)")
    prob = mixed(matrix_only=spec.matrix_only)
    frozen, moving = prob.params[-1:], prob.params[:-1]
    opt = spec.create([{"params": moving}, {"params": frozen, key: 0.0}])
    before = _snapshot(prob.params)
    for t in range(5):
        step(spec, opt, prob, t)
    assert torch.equal(frozen[0], before[-1]), "a group with lr=0 moved: the group's lr is not used"
    assert any(not torch.equal(p, b) for p, b in zip(moving, before, strict=False)), "the other group did not move"


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_scheduler_changes_the_trajectory_from_that_step_on(spec: do.OptimizerSpec) -> None:
    _need_lr(spec)

    def run(factor: float) -> list[list[torch.Tensor]]:
        prob = mixed(matrix_only=spec.matrix_only)
        opt = spec.create(prob.params)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if t < 4 else factor)
        out = []
        for t in range(8):
            step(spec, opt, prob, t)
            sched.step()
            out.append(_snapshot(prob.params))
        return out

    a, b = run(1.0), run(0.25)
    for t in range(4):
        assert all(torch.equal(x, y) for x, y in zip(a[t], b[t], strict=True))
    assert any(not torch.equal(x, y) for x, y in zip(a[-1], b[-1], strict=True)), \
        "changing the lr through a scheduler had no effect: the optimizer does not read group['lr']"


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_scheduler_to_zero_freezes(spec: do.OptimizerSpec) -> None:
    _need_lr(spec)
    if not spec.zero_lr_freezes:
        pytest.skip(f"{spec.name}: lr = 0 does not freeze parameters by design (zero_lr_freezes=False)")
    prob = mixed(matrix_only=spec.matrix_only)
    opt = spec.create(prob.params)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 if t < 3 else 0.0)
    for t in range(3):
        step(spec, opt, prob, t)
        sched.step()
    frozen = _snapshot(prob.params)
    for t in range(3, 6):
        step(spec, opt, prob, t)
        sched.step()
    assert all(torch.equal(p, f) for p, f in zip(prob.params, frozen, strict=True))


# ------------------------------------------------------------------------------------------ inputs


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_params_without_grad_are_skipped(spec: do.OptimizerSpec) -> None:
    prob = mixed(matrix_only=spec.matrix_only)
    unused = torch.nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    params = [prob.params[0], unused, *prob.params[1:]]
    opt = spec.create(params)
    before = unused.detach().clone()
    for t in range(4):
        step(spec, opt, prob, t)
    assert unused.grad is None
    assert torch.equal(unused, before)


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_closure_returns_loss(spec: do.OptimizerSpec) -> None:
    prob = mixed(matrix_only=spec.matrix_only)
    opt = spec.create(prob.params)
    expected = prob.loss().item()
    loss = step(spec, opt, prob, use_closure=True)
    assert loss is not None and float(loss.detach()) == pytest.approx(expected)


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_sparse_gradients_raise_before_any_state_change(spec: do.OptimizerSpec) -> None:
    emb = torch.nn.Embedding(10, 4, sparse=True).double()
    dense = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    idx = torch.tensor([1, 3, 3, 7])

    def loss() -> torch.Tensor:
        return (emb(idx) @ dense).pow(2).sum()

    prob = Problem([dense, emb.weight], loss)
    opt = spec.create(prob.params)
    before_params = _snapshot(prob.params)
    before_state = copy.deepcopy(opt.state_dict())
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)sparse"):
        step(spec, opt, prob)
    assert all(torch.equal(p, b) for p, b in zip(prob.params, before_params, strict=True))
    after_state = opt.state_dict()
    assert after_state["state"].keys() == before_state["state"].keys()
    for k, st_ in before_state["state"].items():
        for name, v in st_.items():
            assert torch.equal(after_state["state"][k][name], v) if isinstance(v, torch.Tensor) else True


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_complex_parameters_work_or_raise_clearly(spec: do.OptimizerSpec) -> None:
    target = torch.tensor([[1 + 2j, -1j], [0.5, 2 - 1j]], dtype=torch.complex128)
    z = torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.complex128))
    prob = Problem([z], lambda: (z - target).abs().pow(2).sum())
    opt = spec.create(prob.params, **meta(spec).convergence["quadratic"].hyperparameters)
    start = prob.loss().item()
    try:
        for t in range(10):
            step(spec, opt, prob, t)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        assert "complex" in str(exc).lower(), f"unclear error for complex parameters: {exc}"
        assert torch.equal(z.detach(), torch.zeros_like(z)) or t > 0
        return
    assert torch.isfinite(torch.view_as_real(z)).all()
    assert prob.loss().item() < start


@pytest.mark.parametrize("spec", **by_name(SPECS))
def test_invalid_hyperparameters_raise_value_error_naming_the_argument(spec: do.OptimizerSpec) -> None:
    p = torch.nn.Parameter(torch.randn(3, 3))
    for arg, values in meta(spec).invalid.items():
        for v in values:
            with pytest.raises(ValueError, match=arg.split(".")[-1]):
                spec.create([p], **{arg: v})


# ------------------------------------------------------------------------------------------ properties


@pytest.mark.parametrize("spec", **by_name(ELEMENTWISE))
@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    cols=st.integers(1, 7),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_elementwise_update_is_separable(spec: do.OptimizerSpec, rows: int, cols: int,
                                         dtype: torch.dtype, seed: int) -> None:
    """Elementwise optimizers: optimizing a tensor whole or as two halves gives the same update."""
    g = torch.Generator().manual_seed(seed)
    init = torch.randn(rows, cols + 1, generator=g, dtype=torch.float64).to(dtype)
    grads = [torch.randn(rows, cols + 1, generator=g, dtype=torch.float64).to(dtype) for _ in range(4)]
    whole = torch.nn.Parameter(init.clone())
    left, right = (torch.nn.Parameter(init[:, :1].clone()), torch.nn.Parameter(init[:, 1:].clone()))
    o1, o2 = spec.create([whole]), spec.create([left, right])
    for gr in grads:
        whole.grad, left.grad, right.grad = gr.clone(), gr[:, :1].clone(), gr[:, 1:].clone()
        o1.step()
        o2.step()
        assert whole.shape == init.shape and whole.dtype == dtype
        assert torch.isfinite(whole).all()
        tol = 1e-12 if dtype == torch.float64 else 1e-5  # vectorised vs scalar kernels may round differently
        torch.testing.assert_close(whole.detach(), torch.cat([left.detach(), right.detach()], 1),
                                   rtol=tol, atol=tol)
