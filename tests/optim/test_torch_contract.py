"""PyTorch's generic optimizer contract (what ``test/test_optim.py`` checks for every ``torch.optim``
optimizer), held for every optimizer in the registry.

The checks live in :mod:`descend.optim.testing` (one implementation, also run on a user's optimizer by
``check_optimizer``); this file runs each of them on each ``descend.optim.available()`` optimizer with its
registry defaults, strict mode on.  A check that cannot apply to an optimizer skips itself with the reason.

KNOWN_FAILURES lists the (optimizer, check) pairs that fail today, each with the issue item that tracks it;
they are ``xfail(strict=True)``, so a fix shows up as XPASS (a failure) until its entry is deleted here.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import descend.optim as do
from descend.optim.testing import CHECKS, Check, CheckSkipped, OptimizerUnderTest, check_optimizer

# Why each check fails today, by issue 10 item (fixer: items 1, 2, 4-8; linesearch: item 3 and the line
# searches' copies).  Delete a KNOWN_FAILURES entry when its fix merges: strict xfail turns a fixed one into XPASS.
_WHY = {
    "right_direction": "item 8: M-FAC with the reference damping 1e-5 moves uphill",
    "param_groups_lr": "item 8: M-FAC with the reference damping 1e-5 moves uphill",
    "param_groups_weight_decay": "item 8: M-FAC with the reference damping 1e-5 moves uphill",
    "tensor_lr": "item 6: a 1-element tensor lr passes the constructor and crashes at step",
    "noop_without_grads": "item 3: a step with no gradients raises instead of doing nothing",
    "nontensor_step": "item 4: a Python-number step in a loaded state crashes",
    "float64_state_into_float32": "item 4: a float64 state loaded into float32 parameters crashes",
    "named_parameters": "item 6: named_parameters() input fails",
    "hooks": "item 2: step hooks fire twice",
    "deepcopy": "item 5: deepcopy loses attributes (or the copy cannot step)",
    "pickle": "item 5: pickle loses attributes (or cannot pickle)",
    "float32_progress": "item 1: float32 stalls on parameters of order one",
    "extreme_gradients": "item 7: float32 gradients x1e10..1e30 give NaN or a LinAlgError",
    "validated_on_load": "item 4: load_state_dict takes lr = nan / -1, betas = (2, 2)",
    "validated_on_add_param_group": "item 4: add_param_group takes lr = nan / -1, betas = (2, 2) (or adds the group "
                                    "before raising)",
    "foreign_state_dict": "item 4: a torch Adagrad state dict loads without a clear error",
    "missing_state_key": "item 4: a state dict missing a state key loads without a clear error",
}
_CLOSURE = "item 3: the torch closure convention (zero_grad, backward, return loss) fails: backward twice"


def _fails(optimizer: str, *checks: str, why: str | None = None, also: bool = False) -> dict[tuple[str, str], str]:
    """``also``: the check fails with the optimizer's own closure convention too, for ``_WHY[check]``."""
    out = {}
    for check in checks:
        reason = why or _WHY[check]
        if why and also:
            reason += "; with the old closure convention still " + _WHY[check]
        out[optimizer, check] = "issue 10 " + reason
    return out


# (optimizer, check) -> why it fails today (measured 2026-12-01 on main after the fixer and line-search merges).
KNOWN_FAILURES: dict[tuple[str, str], str] = {
}

CASES = {name: OptimizerUnderTest.from_spec(do.get(name)) for name in do.available()}


def _cases() -> list[Any]:
    out = []
    for name in CASES:
        for check in CHECKS:
            reason = KNOWN_FAILURES.get((name, check.name))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            out.append(pytest.param(name, check, id=f"{name}-{check.name}", marks=marks))
    return out


@pytest.mark.parametrize(("name", "check"), _cases())
def test_contract(name: str, check: Check) -> None:
    try:
        check.run(CASES[name])
    except CheckSkipped as exc:
        pytest.skip(f"{name}: {exc}")


def test_known_failures_name_real_optimizers_and_checks() -> None:
    names = {c.name for c in CHECKS}
    stale = [k for k in KNOWN_FAILURES if k[0] not in CASES or k[1] not in names]
    assert not stale, f"KNOWN_FAILURES entries for unknown optimizers or checks: {stale}"


# ------------------------------------------------------------------------------------------ check_optimizer


def test_torch_adamw_passes_the_torch_contract() -> None:
    report = check_optimizer(torch.optim.AdamW, lr=1e-2)
    assert report.ok and not [r for r in report.results if r.status == "skipped"], str(report)


def test_torch_adamw_fails_exactly_the_strict_promises_torch_does_not_make() -> None:
    report = check_optimizer(torch.optim.AdamW, lr=1e-2, strict=True, raise_on_failure=False)
    assert {r.name for r in report.failed} == {"validated_on_load", "validated_on_add_param_group",
                                               "foreign_state_dict", "missing_state_key", "sparse_grads"}, \
        str(report)


class _Uphill(torch.optim.SGD):
    """Steps along +grad."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=group["lr"])


class _IgnoresGroupLr(torch.optim.SGD):
    """Uses the constructor's lr for every group."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.defaults["lr"])


class _ForgetsOnPickle(torch.optim.SGD):
    """Keeps a step-size multiplier outside the state dict, which torch's ``__getstate__`` drops."""

    def __init__(self, params: Any, lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)
        self.scale = 0.5

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-group["lr"] * self.scale)


class _NanOnHugeGradients(torch.optim.SGD):
    """Divides the squared gradient by its sum without rescaling first: inf / inf (or 0 / 0) in float32."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.add_(p.grad.sign() * p.grad.pow(2) / p.grad.pow(2).sum(), alpha=-group["lr"])


@pytest.mark.parametrize(("broken", "failing"), [
    (_Uphill, "right_direction"),
    (_IgnoresGroupLr, "param_groups_lr"),
    (_ForgetsOnPickle, "pickle"),
    (_NanOnHugeGradients, "extreme_gradients"),
])
def test_a_broken_optimizer_fails_the_right_check(broken: type[torch.optim.Optimizer], failing: str) -> None:
    report = check_optimizer(broken, lr=0.01, raise_on_failure=False)
    failed = {r.name for r in report.failed}
    assert failing in failed, str(report)
    with pytest.raises(AssertionError, match=failing):
        check_optimizer(broken, lr=0.01, only=(failing,))


def test_check_optimizer_rejects_unknown_check_names() -> None:
    with pytest.raises(ValueError, match="unknown checks"):
        check_optimizer(torch.optim.SGD, lr=0.1, only=("no_such_check",))


def test_problem_is_the_issue_one_float32_scale() -> None:
    # the checks' problem has parameters of order one (float32 resolution ~1e-7 there)
    from descend.optim.testing import _problem

    params, loss = _problem(torch.float32, False)
    assert all(0.1 < float(p.abs().mean()) < 3 for p in params)
    assert math.isfinite(float(loss(params)))


def test_the_module_examples_run() -> None:
    import doctest

    import descend.optim.testing

    result = doctest.testmod(descend.optim.testing)
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------------------------------ defaults written once


@pytest.mark.parametrize("name", list(CASES))
def test_registry_defaults_are_the_signature_defaults(name: str) -> None:
    spec = do.get(name)
    written = do.registry.signature_defaults(spec.factory)
    for key, value in spec.defaults.items():
        if written.get(key) is not None:
            assert value == written[key], f"{name}.{key}: registry {value!r} vs signature {written[key]!r}"
    params = [torch.nn.Parameter(torch.randn(3, 3))]
    group = spec.create(params).param_groups[0]
    plain = spec.factory([torch.nn.Parameter(torch.randn(3, 3))]).param_groups[0]
    added = set(spec.defaults) - {k for k, v in written.items() if v is not None}
    for key in set(group) & set(plain) - added - {"params"}:
        assert group[key] == plain[key], f"create({name!r}) and {spec.factory!r}() disagree on {key}"


def test_a_default_typed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="already in the signature"):
        do.OptimizerSpec(name="twice", factory=torch.optim.SGD, paper="-", reference="-", defaults={"lr": 0.1})
    spec = do.OptimizerSpec(name="added", factory=do.get("mechanic").factory,
                            paper="-", reference="-", defaults={"weight_decay": 0.0})
    assert spec.defaults["weight_decay"] == 0.0 and spec.defaults["s_decay"] == 0.01


def test_muon_from_the_registry_uses_the_signature_ns_dtype() -> None:
    # the registry used to type ns_dtype="float32" over Muon's bfloat16 default (issue 10, "defaults written once")
    opt = do.create("muon", [torch.nn.Parameter(torch.randn(4, 4))])
    assert opt.param_groups[0]["ns_dtype"] == do.Muon([torch.nn.Parameter(torch.randn(4, 4))]).defaults["ns_dtype"]


def test_torch_lbfgs_drives_the_closure_path() -> None:
    # LBFGS takes one group only, and torch's own LBFGS loses its ``_params`` list in a copy (a torch bug the
    # checks catch); everything else passes through step(closure) in the torch convention.
    report = check_optimizer(torch.optim.LBFGS, requires_closure=True, param_groups=False, lr=0.5, max_iter=5,
                             raise_on_failure=False)
    assert {r.name for r in report.failed} == {"deepcopy", "pickle"}, str(report)
    assert "_params" in report.failed[0].message


def test_a_replaced_spec_keeps_its_defaults() -> None:
    import dataclasses

    spec = do.get("mechanic")
    copy_ = dataclasses.replace(spec, summary="copy")
    assert copy_.defaults == spec.defaults
    p = torch.nn.Parameter(torch.ones(2))
    assert copy_.create([p]).param_groups[0]["weight_decay"] == spec.create([p]).param_groups[0]["weight_decay"] == 0


def test_test_metadata_lives_in_testing_and_names_registered_optimizers() -> None:
    # issue 10 ("one engine each"): convergence settings and invalid examples left the runtime OptimizerSpec;
    # a key that names no registered optimizer is a typo or a stale entry (a missing one fails test_contract)
    from descend.optim import testing

    assert set(testing.TEST_METADATA) <= set(do.available())
    assert not hasattr(do.get("adamw"), "convergence") and not hasattr(do.get("adamw"), "invalid")
    assert do.ConvergenceCheck is do.registry.ConvergenceCheck is testing.ConvergenceCheck


def test_register_test_metadata_refuses_bad_input_and_duplicates() -> None:
    from descend.optim.testing import TEST_METADATA, ConvergenceCheck, get_test_metadata, register_test_metadata

    good = {"quadratic": ConvergenceCheck({"lr": 0.1})}
    with pytest.raises(ValueError, match="convergence\\['quadratic'\\] must be a ConvergenceCheck"):
        register_test_metadata("x_bad", convergence={"quadratic": {"lr": 0.1}}, invalid={})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="invalid\\['lr'\\] must be a sequence"):
        register_test_metadata("x_bad", convergence=good, invalid={"lr": -1.0})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="invalid\\['mode'\\] must be a sequence"):
        register_test_metadata("x_bad", convergence=good, invalid={"mode": "abc"})
    with pytest.raises(ValueError, match="name must be"):
        register_test_metadata("", convergence=good, invalid={})
    assert "x_bad" not in TEST_METADATA  # a refused call registers nothing
    with pytest.raises(ValueError, match="already registered"):
        register_test_metadata("adamw", convergence=good, invalid={})
    assert get_test_metadata("adamw").convergence["quadratic"].steps == 600  # unchanged by the refused call
    with pytest.raises(KeyError, match="register_test_metadata"):
        get_test_metadata("no_such_optimizer")
