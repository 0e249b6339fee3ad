"""The ``torch.optim`` contract as reusable checks: :func:`check_optimizer` runs them on any optimizer.

These are the generic checks PyTorch's own ``test/test_optim.py`` applies to every ``torch.optim`` optimizer
(through its ``OptimizerInfo`` tables), written once here so that descend's test suite and a user's own
optimizer are held to the same contract:

* ``right_direction`` — the loss goes down on a small least-squares problem.
* ``param_groups_lr`` / ``param_groups_weight_decay`` — a group's own ``lr`` / ``weight_decay`` is used.
* ``tensor_lr`` — a 0-dim or 1-element tensor learning rate either works like the float or is rejected by
  the constructor (not at ``step``).
* ``noop_without_grads`` — with every ``grad`` ``None``, ``step`` changes neither parameters nor state.
* ``state_dict_deterministic`` — two identical runs give identical state dicts; save → load → save is exact.
* ``load_then_continue`` — ``torch.save`` / ``torch.load(weights_only=True)`` of the state, loaded into a
  fresh optimizer, continues bitwise like the uninterrupted run (float32 and float64).
* ``nontensor_step`` — a state whose ``step`` is a Python number (older checkpoints) loads and continues.
* ``float64_state_into_float32`` — a float64 state loads into float32 parameters (cast, as torch does).
* ``named_parameters`` — ``model.named_parameters()`` is accepted and changes nothing about the updates.
* ``add_param_group`` — a group added later behaves exactly like one given to the constructor.
* ``hooks`` — per-instance and global step pre/post hooks fire exactly once per ``step``, also once a torch
  Adam / AdamW / NAdam exists in the process (torch then wraps their ``step`` too).
* ``deepcopy`` / ``pickle`` — the copy has the same public attributes and steps exactly like the original.
* ``repr`` — printing works and names the class.
* ``complex_params`` / ``sparse_grads`` — supported (the loss goes down), or rejected with a ``ValueError``,
  ``RuntimeError``, ``TypeError`` or ``NotImplementedError`` naming the problem before any state changes.
* ``float32_progress`` — float32 makes progress wherever float64 does (default hyperparameters).
* ``extreme_gradients`` — float32 gradients of magnitude 1e-30 … 1e30 keep the parameters finite.

Strict checks (``strict=True``) go beyond what ``torch.optim`` itself guarantees; descend's optimizers keep
them, torch's own do not:

* ``validated_on_load`` / ``validated_on_add_param_group`` — ``lr = nan``, ``lr = -1`` and
  ``betas = (2, 2)`` arriving through ``load_state_dict`` or ``add_param_group`` raise ``ValueError`` like the
  constructor, and change nothing.
* ``foreign_state_dict`` / ``missing_state_key`` — a state dict of another optimizer, or one with a state key
  removed, raises a clear error at ``load_state_dict`` instead of at the next ``step``.

Example:

>>> import torch
>>> from descend.optim.testing import check_optimizer
>>> report = check_optimizer(torch.optim.AdamW, lr=1e-2, only=("right_direction", "add_param_group"))
>>> report.ok, [r.name for r in report.results]
(True, ['right_direction', 'add_param_group'])

A failed check raises ``AssertionError`` naming it (pass ``raise_on_failure=False`` to get the report):

>>> class Broken(torch.optim.SGD):
...     def step(self, closure=None):  # climbs instead of descending
...         for g in self.param_groups:
...             for p in g["params"]:
...                 if p.grad is not None:
...                     p.data.add_(p.grad, alpha=g["lr"])
>>> report = check_optimizer(Broken, lr=0.01, only=("right_direction",), raise_on_failure=False)
>>> report.failed[0].name
'right_direction'

Line searches and other optimizers that need a closure pass ``requires_closure=True``; the checks then call
``step(closure)`` with the torch convention (the closure calls ``zero_grad()``, ``backward()`` and returns
the loss).

What only the tests need about a registered optimizer — the hyperparameters under which it must converge on
the quadratic and Rosenbrock problems (:class:`ConvergenceCheck`) and hyperparameter values it must reject —
is declared here with :func:`register_test_metadata` (read back with :func:`get_test_metadata`;
:data:`TEST_METADATA` holds them by registry name), not on the runtime :class:`~descend.optim.OptimizerSpec`.
"""

from __future__ import annotations

import copy
import inspect
import io
import math
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:  # registry re-exports ConvergenceCheck from here: no import cycle at run time
    from .registry import OptimizerSpec

__all__ = [
    "CHECKS",
    "TEST_METADATA",
    "Check",
    "CheckResult",
    "CheckSkipped",
    "ContractReport",
    "ConvergenceCheck",
    "OptimizerTestMetadata",
    "OptimizerUnderTest",
    "check_optimizer",
    "get_test_metadata",
    "register_test_metadata",
    "run_check",
]

Params = list[torch.nn.Parameter]
LossFn = Callable[[Sequence[torch.Tensor]], torch.Tensor]


class CheckSkipped(Exception):
    """Raised by a check whose assumption cannot apply to the optimizer; the message says why."""


@dataclass(frozen=True)
class OptimizerUnderTest:
    """What the checks need to know about an optimizer.

    Attributes:
        factory: ``factory(params, **hyperparameters) -> torch.optim.Optimizer`` (a class or a function).
        name: used in messages.
        hyperparameters: passed to every construction (on top of the factory's own defaults).
        requires_closure: ``step`` needs a closure; the checks pass one in the torch convention.
        lr_key: the group key of the learning rate (``None``: there is none; lr checks are skipped).
        matrix_only: the optimizer accepts only parameters with ``ndim >= 2`` (the checks then use a matrix
            problem without the bias vector).
        strict: also hold the optimizer to descend's stricter promises inside the checks (a rejected sparse
            or complex input, or a step without gradients, leaves the state untouched; torch's own optimizers
            create the state of the parameters before the offending one, and LBFGS counts evaluations).
        param_groups: the optimizer supports several parameter groups (``False`` for LBFGS-like ones: the
            group checks are skipped).
    """

    factory: Callable[..., torch.optim.Optimizer]
    name: str = ""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    requires_closure: bool = False
    lr_key: str | None = "lr"
    matrix_only: bool = False
    strict: bool = False
    param_groups: bool = True

    @classmethod
    def from_spec(cls, spec: OptimizerSpec, *, strict: bool = True) -> OptimizerUnderTest:
        """The registry entry ``spec`` with its defaults (descend holds its own optimizers to ``strict``)."""
        return cls(spec.create, spec.name, {}, spec.requires_closure, spec.lr_key,
                   spec.matrix_only, strict)

    def create(self, params: Any, **overrides: Any) -> torch.optim.Optimizer:
        return self.factory(params, **{**self.hyperparameters, **overrides})

    def accepts(self, key: str) -> bool:
        """Whether ``key`` is a hyperparameter of the factory (in its signature or its groups)."""
        try:
            sig = inspect.signature(self.factory)
        except (TypeError, ValueError):
            sig = None
        if sig is not None and key in sig.parameters:
            return True
        opt = self.create(_problem(torch.float64, self.matrix_only)[0])
        return key in opt.param_groups[0]


# ------------------------------------------------------------------------------------------ problem and driver


def _problem(dtype: torch.dtype, matrix_only: bool, seed: int = 0) -> tuple[Params, LossFn]:
    """``||W x + b||^2`` with W ~ randn(10, 5), b ~ randn(10), x ~ randn(5) drawn in float32: loss 149.2.

    This is the problem of issue 10, item 1 (parameters of order one, where float32 resolution matters: an
    optimizer whose update falls below it stalls there).  The values are drawn in float32 and cast, so the
    float32 and float64 problems start from the same point.  The loss is a function of the parameter list so
    that a copied optimizer can be driven on its copied parameters.
    """
    g = torch.Generator().manual_seed(seed)
    W = torch.nn.Parameter(torch.randn(10, 5, generator=g).to(dtype))
    b = torch.nn.Parameter(torch.randn(10, generator=g).to(dtype))
    x = torch.randn(5, generator=g).to(dtype)

    def loss(params: Sequence[torch.Tensor]) -> torch.Tensor:
        out = params[0] @ x
        if len(params) > 1:
            out = out + params[1]
        return (out**2).sum()

    return ([W] if matrix_only else [W, b]), loss


def _closure(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor], loss_fn: LossFn
             ) -> Callable[[], torch.Tensor]:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = loss_fn(params)
            loss.backward()
        return loss
    return closure


def _step(case: OptimizerUnderTest, opt: torch.optim.Optimizer, params: Sequence[torch.Tensor],
          loss_fn: LossFn, t: int = 0) -> None:
    """One step in the torch convention; a Sophia-style ``update_hessian()`` is called every 10th step."""
    closure = _closure(opt, params, loss_fn)
    if case.requires_closure:
        # torch's stub types a closure as returning float; torch's docs (and every optimizer) take the loss tensor
        opt.step(closure)  # type: ignore[arg-type]
        return
    closure()
    opt.step()
    if hasattr(opt, "update_hessian") and (t + 1) % 10 == 0:
        opt.update_hessian()


def _run(case: OptimizerUnderTest, opt: torch.optim.Optimizer, params: Sequence[torch.Tensor], loss_fn: LossFn,
         steps: int, start: int = 0) -> None:
    for t in range(start, start + steps):
        _step(case, opt, params, loss_fn, t)


def _loss(params: Sequence[torch.Tensor], loss_fn: LossFn) -> float:
    with torch.no_grad():
        return float(loss_fn(params))


def _snapshot(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _same(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def _max_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b, strict=True))


def _equal_trees(a: Any, b: Any, path: str = "") -> str | None:
    """``None`` if ``a`` and ``b`` are equal (tensors bitwise, with dtype), else where they differ."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return f"{path}: {type(a).__name__} vs {type(b).__name__}"
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            return f"{path}: tensors differ"
        return None
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        if set(a) != set(b):
            return f"{path}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for k in a:
            if (d := _equal_trees(a[k], b[k], f"{path}[{k!r}]")) is not None:
                return d
        return None
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if (d := _equal_trees(x, y, f"{path}[{i}]")) is not None:
                return d
        return None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return None
    try:
        same = bool(a == b)
    except Exception:  # objects without a usable ==
        same = a is b
    return None if same else f"{path}: {a!r} vs {b!r}"


def _trained(case: OptimizerUnderTest, dtype: torch.dtype = torch.float64, steps: int = 4, **overrides: Any
             ) -> tuple[Params, LossFn, torch.optim.Optimizer]:
    params, loss_fn = _problem(dtype, case.matrix_only)
    opt = case.create(params, **overrides)
    _run(case, opt, params, loss_fn, steps)
    return params, loss_fn, opt


def _lr(case: OptimizerUnderTest) -> float:
    if case.lr_key is None:
        raise CheckSkipped("the optimizer has no learning rate (lr_key=None)")
    opt = case.create(_problem(torch.float64, case.matrix_only)[0])
    lr = opt.param_groups[0].get(case.lr_key)
    if not isinstance(lr, (int, float)) or isinstance(lr, bool):
        raise CheckSkipped(f"the default {case.lr_key} is not a number ({lr!r})")
    return float(lr)


# ------------------------------------------------------------------------------------------ the checks


def _need_groups(case: OptimizerUnderTest) -> None:
    if not case.param_groups:
        raise CheckSkipped("the optimizer supports a single parameter group only (param_groups=False)")


def _not_applicable(opt: torch.optim.Optimizer, check: str) -> str | None:
    """Why ``check`` cannot apply to ``opt`` as configured, if the optimizer says so: its optional method
    ``_contract_not_applicable(check) -> str | None`` (e.g. MARS, whose vectors take ``weight_decay_1d``)."""
    declared = getattr(opt, "_contract_not_applicable", None)
    return declared(check) if callable(declared) else None


def check_right_direction(case: OptimizerUnderTest) -> None:
    """20 steps on a small least-squares problem lower the loss (float64)."""
    params, loss_fn = _problem(torch.float64, case.matrix_only)
    opt = case.create(params)
    start = _loss(params, loss_fn)
    _run(case, opt, params, loss_fn, 20)
    end = _loss(params, loss_fn)
    assert end < start, f"the loss went from {start:.6g} to {end:.6g} in 20 steps"


def check_param_groups_lr(case: OptimizerUnderTest) -> None:
    """A group with its own lr (0.1 x) gets a different trajectory than with the shared lr; the loss goes down."""
    _need_groups(case)
    lr = _lr(case)
    runs = []
    for factor in (1.0, 0.1):
        params, loss_fn = _problem(torch.float64, False)
        opt = case.create([{"params": params[:1]}, {"params": params[1:], case.lr_key: lr * factor}])
        start = _loss(params, loss_fn)
        _run(case, opt, params, loss_fn, 10)
        assert _loss(params, loss_fn) < start, f"with the second group's {case.lr_key} x {factor} the loss rose"
        runs.append(_snapshot(params))
    assert not torch.equal(runs[0][1], runs[1][1]), f"the second group's {case.lr_key} is not used"


def check_param_groups_weight_decay(case: OptimizerUnderTest) -> None:
    """A group with its own weight_decay (0.5 vs 0) gets a different trajectory; the loss goes down."""
    _need_groups(case)
    if not case.accepts("weight_decay"):
        raise CheckSkipped("the optimizer has no weight_decay hyperparameter")
    if (why := _not_applicable(case.create(_problem(torch.float64, False)[0]), "param_groups_weight_decay")):
        raise CheckSkipped(why)
    runs = []
    for wd in (0.0, 0.5):
        params, loss_fn = _problem(torch.float64, False)
        opt = case.create([{"params": params[:1], "weight_decay": 0.0}, {"params": params[1:], "weight_decay": wd}])
        start = _loss(params, loss_fn)
        _run(case, opt, params, loss_fn, 10)
        assert _loss(params, loss_fn) < start, f"with the second group's weight_decay = {wd} the loss rose"
        runs.append(_snapshot(params))
    assert not torch.equal(runs[0][1], runs[1][1]), "the second group's weight_decay is not used"


def _prefixed(prefix: str) -> Callable[[str], str]:
    """An ``assert_close`` ``msg`` callable that puts ``prefix`` before torch's own message."""
    return lambda message: f"{prefix}: {message}"


def check_tensor_lr(case: OptimizerUnderTest) -> None:
    """A 0-dim and a 1-element float64 tensor lr are rejected by the constructor or give the float lr's steps.

    Tolerance: the tensor and the float lr run the same float64 arithmetic, possibly in another order, for 5
    steps on a well-conditioned problem; rounding differences stay near 1e-15, so rtol 1e-9 can only fail on a
    real difference (a wrong lr, or one read once and never again).
    """
    lr = _lr(case)
    key = case.lr_key
    assert key is not None  # _lr skipped the check otherwise
    ref_params, loss_fn = _problem(torch.float64, case.matrix_only)
    _run(case, case.create(ref_params), ref_params, loss_fn, 5)
    for shape in ((), (1,)):
        value = torch.full(shape, lr, dtype=torch.float64)
        params, loss_fn = _problem(torch.float64, case.matrix_only)
        try:
            opt = case.create(params, **{key: value})
        except (ValueError, TypeError) as exc:
            assert key in str(exc), f"tensor lr of shape {shape} rejected without naming it: {exc}"
            continue
        try:
            _run(case, opt, params, loss_fn, 5)
        except Exception as exc:
            raise AssertionError(f"a tensor lr of shape {tuple(shape)} passed the constructor but step raised "
                                 f"{type(exc).__name__}: {exc}") from exc
        for p, r in zip(params, ref_params, strict=True):
            torch.testing.assert_close(p.detach(), r.detach(), rtol=1e-9, atol=1e-12,
                                       msg=_prefixed(f"tensor lr of shape {tuple(shape)}"))


def check_noop_without_grads(case: OptimizerUnderTest) -> None:
    """With every grad None, step (with a closure that returns a constant loss) changes no parameter or state."""
    params, loss_fn = _problem(torch.float64, case.matrix_only)
    opt = case.create(params)
    _run(case, opt, params, loss_fn, 2)
    opt.zero_grad(set_to_none=True)
    before, state = _snapshot(params), copy.deepcopy(opt.state_dict())

    def constant_loss() -> torch.Tensor:
        return torch.tensor(1.0, dtype=torch.float64)

    try:
        opt.step(constant_loss)  # type: ignore[arg-type]  # torch's stub: Callable[[], float]; a tensor loss is fine
    except Exception as exc:
        raise AssertionError(f"step with no gradients raised {type(exc).__name__}: {exc}") from exc
    assert _same(params, before), "step changed the parameters although no parameter had a gradient"
    diff = _equal_trees(opt.state_dict(), state)
    assert diff is None or not case.strict, f"step changed the state although no parameter had a gradient ({diff})"


def check_state_dict_deterministic(case: OptimizerUnderTest) -> None:
    """Two identical runs give identical state dicts, and save -> load -> save reproduces it exactly."""
    sd = [_trained(case)[2].state_dict() for _ in range(2)]
    diff = _equal_trees(sd[0], sd[1])
    assert diff is None, f"two identical runs gave different state dicts ({diff})"
    params, _ = _problem(torch.float64, case.matrix_only)
    fresh = case.create(params)
    fresh.load_state_dict(copy.deepcopy(sd[0]))
    diff = _equal_trees(fresh.state_dict(), sd[0])
    assert diff is None, f"state_dict() after load_state_dict(sd) differs from sd ({diff})"


def _saved(opt: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> tuple[dict[str, Any], list[torch.Tensor]]:
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": _snapshot(params)}, buf)
    buf.seek(0)
    try:
        saved = torch.load(buf, weights_only=True)
    except Exception as exc:
        raise AssertionError(f"torch.load(weights_only=True) cannot read the state dict: {exc}") from exc
    return saved["opt"], saved["params"]


def _continue(case: OptimizerUnderTest, state: dict[str, Any], values: Sequence[torch.Tensor],
              dtype: torch.dtype, steps: int, start: int) -> list[torch.Tensor]:
    params, loss_fn = _problem(dtype, case.matrix_only)
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    opt = case.create(params)
    opt.load_state_dict(state)
    _run(case, opt, params, loss_fn, steps, start)
    return _snapshot(params)


def check_load_then_continue(case: OptimizerUnderTest) -> None:
    """save (torch.save, weights_only load) at step 6, load into a fresh optimizer, 6 more: bitwise = 12 straight."""
    for dtype in (torch.float64, torch.float32):
        straight = _snapshot(_trained(case, dtype, 12)[0])
        params, _, opt = _trained(case, dtype, 6)
        state, values = _saved(opt, params)
        resumed = _continue(case, state, values, dtype, 6, 6)
        assert _same(straight, resumed), \
            f"{dtype}: the resumed run differs from the uninterrupted one by {_max_diff(straight, resumed):.3g}"


def _map_step(state: Any, fn: Callable[[torch.Tensor], Any]) -> int:
    n = 0
    for st in state["state"].values():
        if isinstance(st.get("step"), torch.Tensor):
            st["step"] = fn(st["step"])
            n += 1
    return n


def check_nontensor_step(case: OptimizerUnderTest) -> None:
    """A state whose ``step`` is a Python number loads and continues like the tensor one.

    Tolerance: the same float64 computation with the step counter as a Python float instead of a tensor;
    bias corrections may round differently in the last bit, so rtol 1e-9 after 4 steps.
    """
    params, _, opt = _trained(case)
    state = opt.state_dict()
    reference = _continue(case, copy.deepcopy(state), _snapshot(params), torch.float64, 4, 4)
    if _map_step(state, lambda s: float(s.item())) == 0:
        raise CheckSkipped("the state has no tensor 'step' entry")
    try:
        resumed = _continue(case, state, _snapshot(params), torch.float64, 4, 4)
    except Exception as exc:
        raise AssertionError(f"a state with a Python-number step: {type(exc).__name__}: {exc}") from exc
    for a, b in zip(resumed, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def check_float64_state_into_float32(case: OptimizerUnderTest) -> None:
    """A float64 run's state loads into float32 parameters; the steps after it keep float32 and stay finite."""
    params, _, opt = _trained(case)
    state = opt.state_dict()
    values = [p.detach().float() for p in params]
    try:
        resumed = _continue(case, state, values, torch.float32, 4, 4)
    except Exception as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    for p in resumed:
        assert p.dtype == torch.float32, f"parameters became {p.dtype}"
        assert torch.isfinite(p).all(), "parameters are not finite after loading a float64 state"


def check_named_parameters(case: OptimizerUnderTest) -> None:
    """``named_parameters()``-style input is accepted and gives exactly the steps of the plain parameters."""
    plain, loss_fn = _problem(torch.float64, case.matrix_only)
    _run(case, case.create(plain), plain, loss_fn, 5)
    named, loss_fn = _problem(torch.float64, case.matrix_only)
    try:
        opt = case.create(iter([(f"p{i}", p) for i, p in enumerate(named)]))
        _run(case, opt, named, loss_fn, 5)
    except Exception as exc:
        raise AssertionError(f"named parameters: {type(exc).__name__}: {exc}") from exc
    assert _same(plain, named), f"named parameters changed the steps by {_max_diff(plain, named):.3g}"


def check_add_param_group(case: OptimizerUnderTest) -> None:
    """A group added with ``add_param_group`` gets the defaults and the same steps as one given at construction."""
    _need_groups(case)
    direct, loss_fn = _problem(torch.float64, False)
    _run(case, case.create([{"params": direct[:1]}, {"params": direct[1:]}]), direct, loss_fn, 5)
    added, loss_fn = _problem(torch.float64, False)
    opt = case.create(added[:1])
    opt.add_param_group({"params": added[1:]})
    assert set(opt.param_groups[1]) == set(opt.param_groups[0]), \
        f"the added group has keys {sorted(opt.param_groups[1])}, the first {sorted(opt.param_groups[0])}"
    _run(case, opt, added, loss_fn, 5)
    assert _same(direct, added), f"the added group's steps differ by {_max_diff(direct, added):.3g}"


def check_hooks(case: OptimizerUnderTest) -> None:
    """Per-instance and global step pre/post hooks fire exactly once per step, also with torch Adams around."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    dummy = torch.nn.Parameter(torch.zeros(1))
    torch_opts = [torch.optim.Adam([dummy]), torch.optim.AdamW([dummy]), torch.optim.NAdam([dummy])]  # noqa: F841
    params, loss_fn = _problem(torch.float64, case.matrix_only)
    opt = case.create(params)
    calls = {"pre": 0, "post": 0, "global pre": 0, "global post": 0}

    def counter(key: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            calls[key] += 1
        return hook

    handles = [opt.register_step_pre_hook(counter("pre")), opt.register_step_post_hook(counter("post")),
               register_optimizer_step_pre_hook(counter("global pre")),
               register_optimizer_step_post_hook(counter("global post"))]
    try:
        _run(case, opt, params, loss_fn, 3)
    finally:
        for h in handles:
            h.remove()
    wrong = {k: v for k, v in calls.items() if v != 3}
    assert not wrong, f"hooks fired {wrong} times in 3 steps (expected 3 each)"


def _copy_check(case: OptimizerUnderTest, how: Literal["deepcopy", "pickle"]) -> None:
    params, loss_fn, opt = _trained(case, steps=3)
    try:
        if how == "deepcopy":
            params2, opt2 = copy.deepcopy((params, opt))
        else:
            params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    except Exception as exc:
        raise AssertionError(f"{how}: {type(exc).__name__}: {exc}") from exc
    public = lambda o: {k for k in vars(o) if not k.startswith("_")}  # noqa: E731
    missing = public(opt) - public(opt2)
    assert not missing, f"the {how} copy lost the attributes {sorted(missing)}"
    try:
        _run(case, opt2, params2, loss_fn, 4, 3)
    except Exception as exc:
        raise AssertionError(f"the {how} copy cannot step: {type(exc).__name__}: {exc}") from exc
    _run(case, opt, params, loss_fn, 4, 3)
    assert _same(params, params2), f"the {how} copy steps differently (by {_max_diff(params, params2):.3g})"


def check_deepcopy(case: OptimizerUnderTest) -> None:
    """``copy.deepcopy`` keeps every public attribute, and the copy steps exactly like the original."""
    _copy_check(case, "deepcopy")


def check_pickle(case: OptimizerUnderTest) -> None:
    """A pickle round trip keeps every public attribute, and the copy steps exactly like the original."""
    _copy_check(case, "pickle")


def check_repr(case: OptimizerUnderTest) -> None:
    """``repr`` and ``str`` work after a step, name the class and show the learning rate."""
    opt = _trained(case, steps=1)[2]
    text = repr(opt)
    assert isinstance(text, str) and isinstance(str(opt), str)
    assert type(opt).__name__ in text, f"repr does not name the class: {text[:200]!r}"
    if case.lr_key is not None:
        assert case.lr_key in text, f"repr does not show {case.lr_key}: {text[:200]!r}"


_CLEAR_ERRORS = (ValueError, RuntimeError, TypeError, NotImplementedError)


def _rejected_or_progress(case: OptimizerUnderTest, what: str, params: Sequence[torch.Tensor], loss_fn: LossFn
                          ) -> None:
    opt = case.create(params)
    before, state = _snapshot(params), copy.deepcopy(opt.state_dict())
    start = _loss(params, loss_fn)
    try:
        _step(case, opt, params, loss_fn, 0)
    except _CLEAR_ERRORS as exc:
        assert what in str(exc).lower(), f"{what} input raised an error that does not say {what!r}: {exc}"
        assert _same(params, before), f"{what} input was rejected only after the parameters changed"
        diff = _equal_trees(opt.state_dict(), state)
        assert diff is None or not case.strict, f"{what} input was rejected only after the state changed ({diff})"
        return
    _run(case, opt, params, loss_fn, 19, 1)
    assert all(torch.isfinite(p.detach()).all() for p in params), f"{what} input gives non-finite parameters"
    end = _loss(params, loss_fn)
    assert end < start, f"{what} input is accepted but the loss went from {start:.6g} to {end:.6g}"


def check_complex_params(case: OptimizerUnderTest) -> None:
    """Complex parameters are supported (the loss goes down) or rejected cleanly before any state change."""
    g = torch.Generator().manual_seed(0)
    real = torch.nn.Parameter(torch.randn(3, 3, generator=g, dtype=torch.float64))
    z = torch.nn.Parameter(torch.zeros(3, 3, dtype=torch.complex128))
    target = torch.randn(3, 3, generator=g, dtype=torch.complex128)

    def loss(params: Sequence[torch.Tensor]) -> torch.Tensor:
        return (params[0] ** 2).sum() + (params[1] - target).abs().pow(2).sum()

    _rejected_or_progress(case, "complex", [real, z], loss)


def check_sparse_grads(case: OptimizerUnderTest) -> None:
    """Sparse gradients are supported (the loss goes down) or rejected cleanly before any state change."""
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.Embedding(10, 4, sparse=True).double()
    dense = torch.nn.Parameter(torch.randn(4, 4, generator=g, dtype=torch.float64))
    idx = torch.tensor([1, 3, 3, 7])

    def loss(params: Sequence[torch.Tensor]) -> torch.Tensor:
        return (torch.nn.functional.embedding(idx, params[1], sparse=True) @ params[0] - 1).pow(2).sum()

    _rejected_or_progress(case, "sparse", [dense, emb.weight], loss)


def _loss_ratio(case: OptimizerUnderTest, dtype: torch.dtype, steps: int, **overrides: Any) -> float:
    params, loss_fn = _problem(dtype, case.matrix_only)
    opt = case.create(params, **overrides)
    start = _loss(params, loss_fn)
    _run(case, opt, params, loss_fn, steps)
    return _loss(params, loss_fn) / start


def check_float32_progress(case: OptimizerUnderTest) -> None:
    """Where 300 float64 steps halve the loss, 300 float32 steps make at least half that (log) progress.

    The default hyperparameters first; if float64 does not halve the loss with them, the learning rate x10
    and x100 (the first that does is used for both dtypes).  Progress is log(loss_0 / loss_300).  float32
    cannot resolve a loss far below 1e-7 of the start, so the float64 progress is capped at a factor 1e3
    before halving: the check asks for a float32 loss ratio below max(ratio64, 1e-3) ** 0.5.
    """
    overrides: dict[str, Any] = {}
    r64 = _loss_ratio(case, torch.float64, 300)
    if not r64 <= 0.5 and case.lr_key is not None:
        lr = _lr(case)
        for factor in (10.0, 100.0):
            overrides = {case.lr_key: lr * factor}
            r64 = _loss_ratio(case, torch.float64, 300, **overrides)
            if r64 <= 0.5:
                break
    if not r64 <= 0.5:
        raise CheckSkipped(f"float64 does not halve the loss in 300 steps with lr x1, x10, x100 (ratio {r64:.3g})")
    r32 = _loss_ratio(case, torch.float32, 300, **overrides)
    bound = max(r64, 1e-3) ** 0.5
    assert r32 <= bound, (f"float32 stalls: loss ratio after 300 steps {r32:.3g} in float32 vs {r64:.3g} in "
                          f"float64 (needs <= {bound:.3g}; {overrides or 'defaults'})")


EXTREME_SCALES = (1e-30, 1e-20, 1e-10, 1e10, 1e20, 1e30)


def check_extreme_gradients(case: OptimizerUnderTest) -> None:
    """Two float32 steps with gradients scaled by 1e-30 ... 1e30 keep every parameter finite."""
    bad = []
    for scale in EXTREME_SCALES:
        params, _ = _problem(torch.float32, case.matrix_only)
        g = torch.Generator().manual_seed(1)
        directions = [torch.randn(p.shape, generator=g) for p in params]

        def loss_fn(ps: Sequence[torch.Tensor], s: float = scale, ds: list[torch.Tensor] = directions
                    ) -> torch.Tensor:
            # linear loss: the gradient is s * direction exactly, whatever the parameters
            return torch.stack([((s * d) * p).sum() for d, p in zip(ds, ps, strict=True)]).sum()

        opt = case.create(params)
        try:
            _run(case, opt, params, loss_fn, 2)
        except Exception as exc:
            bad.append(f"x{scale:g}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        if not all(torch.isfinite(p.detach()).all() for p in params):
            bad.append(f"x{scale:g}: non-finite parameters")
    assert not bad, "extreme float32 gradients: " + "; ".join(bad)


_BAD_HYPERPARAMETERS: tuple[tuple[str, Any], ...] = (("lr", math.nan), ("lr", -1.0), ("betas", (2.0, 2.0)))


def _bad_values(case: OptimizerUnderTest, group: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for name, value in _BAD_HYPERPARAMETERS:
        key = case.lr_key if name == "lr" else name
        if key is not None and key in group:
            out.append((key, value))
    return out


def check_validated_on_load(case: OptimizerUnderTest) -> None:
    """lr = nan, lr = -1, betas = (2, 2) in a loaded state dict's groups raise ValueError naming the key."""
    opt = _trained(case, steps=2)[2]
    bad = []
    for key, value in _bad_values(case, opt.param_groups[0]):
        state = copy.deepcopy(opt.state_dict())
        state["param_groups"][0][key] = value
        target = case.create(_problem(torch.float64, case.matrix_only)[0])
        before = copy.deepcopy(target.state_dict())
        try:
            target.load_state_dict(state)
        except ValueError as exc:
            if key not in str(exc):
                bad.append(f"{key} = {value} raised without naming {key} ({exc})")
            elif _equal_trees(target.state_dict(), before) is not None:
                bad.append(f"{key} = {value} was rejected after changing the optimizer")
            continue
        bad.append(f"{key} = {value} accepted")
    assert not bad, "load_state_dict: " + "; ".join(bad)


def check_validated_on_add_param_group(case: OptimizerUnderTest) -> None:
    """lr = nan, lr = -1, betas = (2, 2) in ``add_param_group`` raise ValueError naming the key, adding nothing."""
    _need_groups(case)
    params, _ = _problem(torch.float64, False)
    bad = []
    for key, value in _bad_values(case, case.create(params[:1]).param_groups[0]):
        opt = case.create(params[:1])
        try:
            opt.add_param_group({"params": params[1:], key: value})
        except ValueError as exc:
            if key not in str(exc):
                bad.append(f"{key} = {value} raised without naming {key} ({exc})")
            elif len(opt.param_groups) != 1:
                bad.append(f"{key} = {value} was rejected but the group was added anyway")
            continue
        bad.append(f"{key} = {value} accepted")
    assert not bad, "add_param_group: " + "; ".join(bad)


def _clear_load_error(opt: torch.optim.Optimizer, state: dict[str, Any], what: str, name: str) -> None:
    try:
        opt.load_state_dict(state)
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        text = str(exc)
        assert len(text) > 20 and (name in text or "state" in text.lower()), \
            f"a state dict {what} gave an unclear {type(exc).__name__}: {text!r}"
        return
    raise AssertionError(f"load_state_dict accepted a state dict {what}; the error would come at step or never")


def check_foreign_state_dict(case: OptimizerUnderTest) -> None:
    """A state dict saved by ``torch.optim.Adagrad`` raises a clear error at ``load_state_dict``."""
    own = _trained(case, steps=2)[2].state_dict()
    own_keys = {k for st in own["state"].values() for k in st}
    params, loss_fn = _problem(torch.float64, case.matrix_only)
    other = torch.optim.Adagrad(params)
    _run(OptimizerUnderTest(torch.optim.Adagrad), other, params, loss_fn, 2)
    foreign = other.state_dict()
    if {k for st in foreign["state"].values() for k in st} <= own_keys:
        raise CheckSkipped("Adagrad's state keys are a subset of this optimizer's")
    _clear_load_error(case.create(_problem(torch.float64, case.matrix_only)[0]), foreign,
                      "from torch.optim.Adagrad", "Adagrad")


def check_missing_state_key(case: OptimizerUnderTest) -> None:
    """A state dict with one per-parameter state entry removed raises a clear error at ``load_state_dict``."""
    state = _trained(case, steps=2)[2].state_dict()
    # a state left empty by the removal is an untouched parameter's, which torch (and descend) load as valid
    entries = [(i, k) for i, st in state["state"].items() for k in st if k != "step" and len(st) > 1]
    if not entries:
        raise CheckSkipped("no per-parameter state has a key besides 'step' whose removal leaves it non-empty")
    i, key = entries[0]
    del state["state"][i][key]
    _clear_load_error(case.create(_problem(torch.float64, case.matrix_only)[0]), state,
                      f"missing the state key {key!r}", key)


# ------------------------------------------------------------------------------------------ registry of checks


@dataclass(frozen=True)
class Check:
    """One contract check: ``run(case)`` raises ``AssertionError`` (failed) or :class:`CheckSkipped`."""

    name: str
    run: Callable[[OptimizerUnderTest], None]
    strict: bool = False

    @property
    def doc(self) -> str:
        return (self.run.__doc__ or "").strip().splitlines()[0]


CHECKS: tuple[Check, ...] = (
    Check("right_direction", check_right_direction),
    Check("param_groups_lr", check_param_groups_lr),
    Check("param_groups_weight_decay", check_param_groups_weight_decay),
    Check("tensor_lr", check_tensor_lr),
    Check("noop_without_grads", check_noop_without_grads),
    Check("state_dict_deterministic", check_state_dict_deterministic),
    Check("load_then_continue", check_load_then_continue),
    Check("nontensor_step", check_nontensor_step),
    Check("float64_state_into_float32", check_float64_state_into_float32),
    Check("named_parameters", check_named_parameters),
    Check("add_param_group", check_add_param_group),
    Check("hooks", check_hooks),
    Check("deepcopy", check_deepcopy),
    Check("pickle", check_pickle),
    Check("repr", check_repr),
    Check("complex_params", check_complex_params),
    Check("sparse_grads", check_sparse_grads),
    Check("float32_progress", check_float32_progress),
    Check("extreme_gradients", check_extreme_gradients),
    Check("validated_on_load", check_validated_on_load, strict=True),
    Check("validated_on_add_param_group", check_validated_on_add_param_group, strict=True),
    Check("foreign_state_dict", check_foreign_state_dict, strict=True),
    Check("missing_state_key", check_missing_state_key, strict=True),
)
_BY_NAME = {c.name: c for c in CHECKS}


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``status`` is ``"passed"``, ``"failed"`` or ``"skipped"``; ``message`` says why."""

    name: str
    status: Literal["passed", "failed", "skipped"]
    message: str = ""


@dataclass
class ContractReport:
    """The results of :func:`check_optimizer`, one per check run."""

    optimizer: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"{self.optimizer}: {len(self.results) - len(self.failed)}/{len(self.results)} checks passed"]
        lines += [f"  {r.status:7s} {r.name}" + (f": {r.message}" if r.message else "") for r in self.results]
        return "\n".join(lines)


def run_check(name: str, case: OptimizerUnderTest) -> CheckResult:
    """Run the check called ``name`` on ``case``; any exception the optimizer raises fails the check."""
    check = _BY_NAME[name]
    try:
        check.run(case)
    except CheckSkipped as exc:
        return CheckResult(name, "skipped", str(exc))
    except AssertionError as exc:
        return CheckResult(name, "failed", str(exc).strip() or check.doc)
    except Exception as exc:  # an optimizer raising where the contract expects a result fails the check
        return CheckResult(name, "failed", f"{type(exc).__name__}: {exc}")
    return CheckResult(name, "passed")


def check_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer],
    /,
    *,
    requires_closure: bool = False,
    lr_key: str | None = "lr",
    matrix_only: bool = False,
    param_groups: bool = True,
    strict: bool = False,
    only: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    raise_on_failure: bool = True,
    **hyperparameters: Any,
) -> ContractReport:
    """Run the ``torch.optim`` contract checks on ``optimizer`` (a class or ``factory(params, **hp)``).

    Args:
        optimizer: ``torch.optim.Optimizer`` subclass or a factory with the same call signature.
        requires_closure: ``step`` needs a closure (passed in the torch convention).
        lr_key: the group key of the learning rate, ``None`` if there is none.
        matrix_only: the optimizer accepts only parameters with ``ndim >= 2``.
        param_groups: the optimizer supports several parameter groups (``False``: group checks skipped).
        strict: also run the checks that go beyond what ``torch.optim`` itself guarantees (validation of
            hyperparameters in ``load_state_dict`` / ``add_param_group``, errors for foreign state dicts).
        only: run just these checks (names from :data:`CHECKS`); ``skip``: leave these out.
        raise_on_failure: raise ``AssertionError`` naming every failed check (else return the report).
        **hyperparameters: passed to every construction, e.g. ``lr=1e-2``.

    Returns:
        A :class:`ContractReport` (an optimizer that raises where the contract expects a result fails the
        check, with the exception in the message).
    """
    names = list(only) if only is not None else [c.name for c in CHECKS if strict or not c.strict]
    unknown = [n for n in [*names, *skip] if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(_BY_NAME)}")
    name = getattr(optimizer, "__qualname__", type(optimizer).__name__)
    case = OptimizerUnderTest(optimizer, name, dict(hyperparameters), requires_closure, lr_key, matrix_only, strict,
                              param_groups)
    report = ContractReport(name, [run_check(n, case) for n in names if n not in set(skip)])
    if raise_on_failure and not report.ok:
        raise AssertionError(f"{name} fails the optimizer contract check(s) "
                             + "; ".join(f"{r.name}: {r.message}" for r in report.failed))
    return report


# ------------------------------------------------------------------------------------------ test metadata


@dataclass(frozen=True)
class ConvergenceCheck:
    """Documented hyperparameters under which the optimizer must reach a known optimum.

    The contract tests run ``steps`` steps (with a ``schedule`` of the learning rate: ``"constant"``,
    ``"cosine"`` to zero, or ``"linear"`` to zero) and assert the distance of the final iterate to the
    optimum is below ``tolerance`` (relative to the distance at initialisation).
    """

    hyperparameters: Mapping[str, Any]
    steps: int = 500
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    tolerance: float = 1e-2


@dataclass(frozen=True)
class OptimizerTestMetadata:
    """What descend's contract tests (``tests/optim/test_contract.py``) need beyond the runtime spec.

    Attributes:
        convergence: named convergence checks (``"quadratic"``, ``"rosenbrock"``: both are required).
        invalid: hyperparameter values that must raise a ``ValueError`` naming the argument, e.g.
            ``{"lr": (-1.0,), "betas": ((1.0, 0.9),)}`` (the learning rate's key must be among them).
    """

    convergence: Mapping[str, ConvergenceCheck] = field(default_factory=dict)
    invalid: Mapping[str, Sequence[Any]] = field(default_factory=dict)


TEST_METADATA: dict[str, OptimizerTestMetadata] = {}
"""Test metadata by registry name (:func:`descend.optim.available`); filled by :func:`register_test_metadata`."""


def register_test_metadata(
    name: str,
    *,
    convergence: Mapping[str, ConvergenceCheck],
    invalid: Mapping[str, Sequence[Any]],
    replace: bool = False,
) -> OptimizerTestMetadata:
    """Declare the contract-test metadata of the optimizer registered (or to be registered) as ``name``.

    An optimizer module outside descend calls it next to its :func:`descend.optim.register`, so that
    descend's contract tests hold it to its convergence checks and invalid examples:

    >>> from descend.optim.testing import ConvergenceCheck, get_test_metadata, register_test_metadata
    >>> meta = register_test_metadata(
    ...     "my_sgd", convergence={"quadratic": ConvergenceCheck({"lr": 0.1}, steps=200)}, invalid={"lr": (-1.0,)})
    >>> get_test_metadata("my_sgd").convergence["quadratic"].steps
    200
    >>> _ = TEST_METADATA.pop("my_sgd")  # (undo the example)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty registry name, got {name!r}")
    if name in TEST_METADATA and not replace:
        raise ValueError(f"test metadata for {name!r} is already registered (pass replace=True to overwrite)")
    for key, check in convergence.items():
        if not isinstance(check, ConvergenceCheck):
            raise ValueError(f"convergence[{key!r}] must be a ConvergenceCheck, got {type(check).__name__}")
    for key, values in invalid.items():
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise ValueError(f"invalid[{key!r}] must be a sequence of values (a tuple), got {values!r}")
    meta = OptimizerTestMetadata(dict(convergence), dict(invalid))
    TEST_METADATA[name] = meta
    return meta


def get_test_metadata(name: str) -> OptimizerTestMetadata:
    """The test metadata registered for ``name`` (``KeyError`` saying how to declare it when there is none)."""
    try:
        return TEST_METADATA[name]
    except KeyError:
        raise KeyError(f"no test metadata for optimizer {name!r}: declare its convergence checks and invalid "
                       "examples with descend.optim.testing.register_test_metadata") from None


# descend's own optimizers, by registry name.  Comments give the measured relative distances
# ||x - x*|| / ||x0 - x*|| the checks leave room for.

_ADAM_CHECKS = {
    "quadratic": ConvergenceCheck({"lr": 0.05, "weight_decay": 0.0}, steps=600, schedule="cosine"),
    "rosenbrock": ConvergenceCheck({"lr": 0.1, "weight_decay": 0.0}, steps=2000, tolerance=1e-2),
}
register_test_metadata(
    "adamw",
    convergence=_ADAM_CHECKS,
    invalid={"lr": (-1.0,), "eps": (-1e-8,), "betas": ((1.0, 0.999),)},
)
register_test_metadata(
    "nadamw",
    convergence={
        "quadratic": _ADAM_CHECKS["quadratic"],
        # NAdam's momentum-decay schedule makes it slower on Rosenbrock's curved valley (measured 0.014 after 3000).
        "rosenbrock": ConvergenceCheck({"lr": 0.02, "betas": (0.9, 0.99), "weight_decay": 0.0}, steps=3000,
                                       tolerance=2e-2),
    },
    invalid={"lr": (-1.0,), "eps": (-1e-8,), "betas": ((1.0, 0.999),)},
)
register_test_metadata(
    "adabelief",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05}, steps=600, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.01, "betas": (0.9, 0.99), "degenerated_to_sgd": False}, steps=3000,
                                       schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "eps": (-1e-8,), "betas": ((1.0, 0.999), (0.9, 1.5)), "weight_decay": (-0.1,)},
)
register_test_metadata(
    "agd_interpolation",
    convergence={
        # convex scheme (mu = 0, gamma_0 = 1/lr): relative distance ~4e-7 after 300 steps (float32/64)
        "quadratic": ConvergenceCheck({"lr": 0.3, "mu": 0.0}, steps=300, schedule="constant",
                                      tolerance=1e-3),
        # constant-momentum form (gamma_0 = mu = 1, beta = 0.94): ~1.5e-4 after 1000 steps; lr ~ 1/L at x*
        # (lr = 2e-3 diverges; mu = 0.1 diverges, mu = 0 converges too but needs ~3000 steps)
        "rosenbrock": ConvergenceCheck({"lr": 1e-3, "mu": 1.0}, steps=1500, schedule="constant",
                                       tolerance=1e-2),
    },
    invalid={"lr": (-1.0, float("nan")), "mu": (-0.1,), "gamma0": (0.0, -1.0)},
)
register_test_metadata(
    "frugal",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "projection": "columns", "density": 0.4, "update_gap": 10,
                                       "weight_decay": 0.0, "inactive_lr_scale": 0.1},
                                      steps=600, schedule="cosine", tolerance=1e-2),
        "rosenbrock": ConvergenceCheck({"lr": 0.02, "projection": "svd", "density": 0.5, "update_gap": 50,
                                        "weight_decay": 0.0, "inactive_lr_scale": 0.1},
                                       steps=3000, schedule="cosine", tolerance=1e-2),
    },
    invalid={"lr": (-1.0,), "density": (1.5, -0.1), "update_gap": (0,), "projection": ("pca",),
             "inactive_update_rule": ("adam",), "betas": ((1.0, 0.999),), "eps": (-1e-8,),
             "block_order": ("zigzag",), "proj_side": ("up",), "svd_dtype": (torch.float16,)},
)
register_test_metadata(
    "lion",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.02}, steps=1000, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.01}, steps=4000, schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "betas": ((1.5, 0.99), (0.9, -0.1)), "weight_decay": (-0.1,)},
)
register_test_metadata(
    "mechanic",
    # Σs starts at 0, so Mechanic needs a few hundred steps to find its scale (quadratic: 0.0035 at 1400
    # steps).  On Rosenbrock's curved valley, changing the scale moves x along the ray x_ref + SΔ, across the
    # valley; the learned scale shrinks and progress is slow (||x-x*||/||x0-x*|| = 0.31 after 3000 steps, 0.19
    # after 6000 with lr 0.02): that check asserts steady progress, not convergence to 1e-2.
    convergence={
        "quadratic": ConvergenceCheck({"lr": 1e-2}, steps=1400, schedule="constant"),
        "rosenbrock": ConvergenceCheck({"lr": 0.05, "betas": (0.9, 0.99), "s_init": 1e-6}, steps=3000,
                                       schedule="constant", tolerance=0.4),
    },
    invalid={
        "lr": (-1.0, math.nan),
        "s_decay": (-0.1,),
        "s_betas": ((), (1.0,), (0.9, -0.1)),
        "s_init": (0.0, -1e-8),
        "s_eps": (0.0,),
        "store_delta": ("yes",),
        "tuner_dtype": (torch.int64,),
        "base": ("torch.nn.Linear", "os.system", 3),
    },
)
register_test_metadata(
    "mfac",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "ngrads": 8, "damp": 1e-2, "window_dtype": torch.float64},
                                      steps=300, schedule="cosine", tolerance=1e-2),
        # gradient outer products model Rosenbrock's curved valley poorly: with strong damping M-FAC is
        # close to heavy-ball gradient descent, which the check exercises (small damping wanders off)
        "rosenbrock": ConvergenceCheck({"lr": 0.6, "ngrads": 4, "damp": 100.0, "momentum": 0.99,
                                        "window_dtype": torch.float64},
                                       steps=3000, schedule="cosine", tolerance=1e-2),
    },
    invalid={"lr": (-1.0,), "momentum": (1.0, -0.1), "weight_decay": (-1e-3,), "ngrads": (0, 2.5),
             "damp": (0.0, -1e-5), "window_dtype": (torch.float16, "float32")},
)
register_test_metadata(
    "muon",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "adam_lr_ratio": 1.0, "ns_dtype": "float64"},
                                      steps=300, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.02, "ns_dtype": "float64"}, steps=1000, schedule="cosine"),
    },
    invalid={
        "lr": (-1.0,), "weight_decay": (-0.1,), "momentum": (1.0, -0.5), "ns_steps": (0, 100),
        "ns_dtype": ("int8",), "normalization": ("spectral",), "ns_eps": (0.0,),
        "adjust_lr_fn": ("sqrt",), "betas": ((1.0, 0.95),), "eps": (-1e-8,), "adam_lr_ratio": (-1.0,),
        "adam_lr": (-1.0, float("nan")),
        "ns_coefficients": ((1.0, 2.0),),
    },
)
register_test_metadata(
    "shampoo",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "precondition_frequency": 5}, steps=600, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.05, "betas": (0.9, 0.99), "grafting_beta2": 0.99,
                                        "precondition_frequency": 5}, steps=3000, schedule="cosine"),
    },
    invalid={
        "lr": (-1.0,), "betas": ((1.0, 0.999), (0.9, 1.5)), "beta3": (1.0,), "epsilon": (0.0, -1e-12),
        "weight_decay": (-0.1,), "weight_decay_type": ("l1",), "max_preconditioner_dim": (0, 2.5),
        "precondition_frequency": (0,), "start_preconditioning_step": (50,), "grafting": ("lamb",),
        "grafting_beta2": (1.0, 0.0), "grafting_epsilon": (0.0,), "factor_dtype": ("float16",),
        "inverse_exponent_override": ({2: -0.25}, {2: {3: 0.25}}), "max_failed_roots": (-1,),
    },
)
register_test_metadata(
    "soap",
    convergence={
        # the first step only initialises the preconditioner (no update); measured rel. distances:
        # quadratic 1.2e-5, rosenbrock 9e-7 (robust to lr x/1.3 on rosenbrock)
        "quadratic": ConvergenceCheck({"lr": 0.05, "betas": (0.9, 0.99), "weight_decay": 0.0}, steps=300,
                                      schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.02, "weight_decay": 0.0}, steps=800, schedule="cosine"),
    },
    invalid={
        "lr": (-1.0, math.nan),
        "betas": ((1.0, 0.95), (0.9,)),
        "shampoo_beta": (1.0, -1.0),
        "eps": (-1e-8,),
        "weight_decay": (-0.1,),
        "precondition_frequency": (0, 2.5),
        "max_precond_dim": (0,),
        "data_format": ("nhwc",),
        "precond_dtype": ("float16",),
    },
)
register_test_metadata(
    "sophia_g",
    convergence={  # update_hessian() from the current gradient after every 10th step (contract tests)
        "quadratic": ConvergenceCheck({"lr": 0.02, "rho": 0.04, "weight_decay": 0.0, "bs": 1}, steps=1000,
                                      schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.05, "rho": 0.01, "weight_decay": 0.0, "bs": 1}, steps=2000,
                                       schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "betas": ((1.0, 0.99), (0.9, -0.5)), "rho": (-0.1,), "weight_decay": (-0.1,),
             "bs": (0, -5)},
)
register_test_metadata(
    "sls",
    convergence={
        # noiseless quadratic: 5e-9 after 50 steps.  Rosenbrock: gradient descent crawls along the valley
        # (||x-x*||/||x0-x*|| = 0.06 after 2000 steps, about 1 trial per step with the defaults)
        "quadratic": ConvergenceCheck({"n_batches_per_epoch": 1}, steps=100),
        "rosenbrock": ConvergenceCheck({}, steps=2000, tolerance=0.1),
    },
    invalid={"lr": (-1.0,), "c": (0.0, 1.0), "beta_b": (0.0, 1.0), "init_step_size": (0.0,),
             "n_batches_per_epoch": (0,), "reset_option": (3,), "line_search": ("wolfe",),
             "max_trials": (0,)},
)
register_test_metadata(
    "salsa",
    convergence={
        # measured: quadratic 2.6e-4 after 150 steps; Rosenbrock 0.028 after 2500 steps
        "quadratic": ConvergenceCheck({}, steps=150),
        "rosenbrock": ConvergenceCheck({}, steps=2500, tolerance=0.05),
    },
    invalid={"lr": (-1.0,), "c": (0.0, 1.0), "betas": ((1.0, 0.999, 0.9),), "eps": (0.0,),
             "decrease_factor": (1.0,), "growth_factor": (0.5,), "max_trials": (0,),
             "bias_correction": ("none",)},
)
register_test_metadata(
    "adam_sls",
    convergence={
        # measured: quadratic 2.0e-5 after 200 steps; Rosenbrock 1.4e-3 after 1000 steps
        "quadratic": ConvergenceCheck({}, steps=200),
        "rosenbrock": ConvergenceCheck({"c": 0.1, "n_batches_per_epoch": 10}, steps=1000),
    },
    invalid={"lr": (-1.0,), "c": (0.0, 1.0), "betas": ((1.0, 0.999),), "beta_b": (1.0,), "eps": (0.0,),
             "n_batches_per_epoch": (0,), "reset_option": (5,), "max_trials": (0,)},
)

register_test_metadata(
    "c_adamw",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05}, steps=1000, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.1}, steps=2000, schedule="constant"),  # measured 8e-4
    },
    invalid={"lr": (-1.0,), "betas": ((1.0, 0.9), (0.9, -0.1)), "eps": (-1e-8,), "weight_decay": (-0.1,)},
)
register_test_metadata(
    "c_lion",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.02}, steps=1000, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.01}, steps=4000, schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "betas": ((1.5, 0.99), (0.9, -0.1)), "weight_decay": (-0.1,)},
)
register_test_metadata(
    "mars",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "lr_1d": 0.05, "weight_decay_1d": 0.0}, steps=1000,
                                      schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.1}, steps=2000, schedule="constant"),
    },
    invalid={"lr": (-1.0,), "betas": ((1.0, 0.9), (0.9, -0.1)), "eps": (-1e-8,), "weight_decay": (-0.1,),
             "gamma": (-0.1,), "mars_type": ("mars-sgd",), "lr_1d": (-1.0,), "weight_decay_1d": (-0.1,)},
)
register_test_metadata(
    "scion",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05, "momentum": 0.1, "unconstrained": True}, steps=1000,
                                      schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.02, "momentum": 0.1, "unconstrained": True}, steps=4000,
                                       schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "momentum": (0.0, 1.5), "scale": (-1.0,), "norm": ("Frobenius",)},
)
register_test_metadata(
    "adam_mini",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05}, steps=1000, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.1}, steps=2000, schedule="constant"),
    },
    invalid={"lr": (-1.0,), "betas": ((1.0, 0.9), (0.9, -0.1)), "eps": (-1e-8,), "weight_decay": (-0.1,),
             "partition": ("per_layer",), "head_numel": (0, 2.5)},
)
register_test_metadata(
    "psgd_kron",
    convergence={
        "quadratic": ConvergenceCheck({"lr": 0.05}, steps=1000, schedule="cosine"),
        "rosenbrock": ConvergenceCheck({"lr": 0.02}, steps=3000, schedule="cosine"),
    },
    invalid={"lr": (-1.0,), "b1": (1.0, -0.1), "weight_decay": (-0.1,), "preconditioner_update_probability": (0.0, 1.5),
             "max_size_triangular": (0,), "memory_save_mode": ("half_diag",), "precond_lr": (-0.1,),
             "precond_init_scale": (0.0,), "precond_dtype": ("float16",), "seed": (-1,)},
)
