"""Every registered workload, at its smallest scale: seeded determinism, seeds that matter, finite evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from descend.bench.workloads import Task, Workload, available_workloads, get_workload, register_workload

from .conftest import warm

#: workloads whose data takes long to generate on a fresh cache (the L-BFGS optimum of digits: ~30 s)
SLOW = {"logreg_digits"}
STEPS = 3


def _smallest(name: str) -> str:
    return next(iter(get_workload(name).scales))  # scales are listed smallest (the default) first


def _params(task: Task) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for p in task.params:
        out.extend(p["params"] if isinstance(p, dict) else [p])
    return out


def _trajectory(task: Task) -> list[float]:
    """train_loss(step) for a few steps of plain SGD (so later losses also depend on the earlier gradients)."""
    losses = []
    params = _params(task)
    for t in range(STEPS):
        loss = task.train_loss(t)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    p.sub_(1e-2 * g)
    return losses


def _workload_params() -> list:
    return [pytest.param(w, marks=pytest.mark.slow) if w in SLOW else w for w in available_workloads()]


def test_registry_lists_the_builtins():
    names = available_workloads()
    for expected in ("logreg_breast_cancer", "logreg_digits", "mlp_mnist1d", "cnn_mnist1d", "charlm_stdlib",
                     "matrix_sensing", "icl_linear_regression"):
        assert expected in names
    for w in names:
        wl = get_workload(w)
        assert set(wl.budget) == set(wl.scales) and all(b > 0 for b in wl.budget.values())
    with pytest.raises(KeyError, match="unknown workload"):
        get_workload("no_such_workload")
    with pytest.raises(ValueError, match="no scale"):
        get_workload(names[0]).build(0, "no_such_scale")


@pytest.mark.parametrize("name", _workload_params())
def test_workload_is_deterministic_given_the_seed(name: str, descend_cache: Path):
    warm(descend_cache, name, _smallest(name))
    scale = _smallest(name)
    wl = get_workload(name)
    a, b = wl.build(0, scale), wl.build(0, scale)
    pa, pb = _params(a), _params(b)
    assert len(pa) == len(pb) > 0
    for x, y in zip(pa, pb, strict=True):
        assert x.shape == y.shape and torch.equal(x, y)
    assert _trajectory(a) == _trajectory(b)
    assert dict(a.evaluate()) == dict(b.evaluate())

    # another seed: another initialisation and other mini-batches
    c = wl.build(1, scale)
    assert any(not torch.equal(x, y) for x, y in zip(_params(wl.build(0, scale)), _params(c), strict=True))
    assert _trajectory(c) != _trajectory(wl.build(0, scale))

    metrics = dict(c.evaluate())
    assert "val_loss" in metrics and math.isfinite(metrics["val_loss"])
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("name", [pytest.param("logreg_breast_cancer"),
                                  pytest.param("logreg_digits", marks=pytest.mark.slow)])
def test_logreg_optimum_is_a_lower_bound(name: str, descend_cache: Path):
    """The reported suboptimality f(x) - f* is >= 0, and f* really is (nearly) the minimum."""
    from descend.bench.workloads.logreg import _load, _objective

    warm(descend_cache, name, "s")
    task = get_workload(name).build(0, "s")
    assert task.optimum is not None and task.train_objective is not None and task.model is not None
    at_init = float(task.train_objective())
    assert at_init > task.optimum
    assert dict(task.evaluate())["suboptimality"] == pytest.approx(at_init - task.optimum)

    # full-batch L-BFGS (float64) from the trial's initialisation gets close to f* but not below it
    data = _load(name.removeprefix("logreg_"), "s")
    W = task.model.weight.detach().double().clone().requires_grad_()
    b = task.model.bias.detach().double().clone().requires_grad_()
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(W, b, data["Xtr"], data["ytr"])
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        reached = float(_objective(W, b, data["Xtr"], data["ytr"]))
        assert task.optimum - 1e-9 <= reached < at_init
        task.model.weight.copy_(W)
        task.model.bias.copy_(b)
    sub = dict(task.evaluate())["suboptimality"]
    assert 0 <= sub < 1e-3


def test_a_workload_plugin_registers_and_builds():
    @register_workload
    class Quadratic(Workload):
        name = "test_quadratic_plugin"
        scales = {"s": {"d": 3}}  # noqa: RUF012
        budget = {"s": 5}  # noqa: RUF012

        def build(self, seed: int, scale: str) -> Task:
            d = self.settings(scale)["d"]
            torch.manual_seed(seed)
            x = torch.nn.Parameter(torch.randn(d))
            return Task(params=[x], train_loss=lambda step: (x**2).sum(),
                        evaluate=lambda: {"val_loss": float((x.detach() ** 2).sum())})

    assert "test_quadratic_plugin" in available_workloads()
    assert math.isfinite(get_workload("test_quadratic_plugin").build(0, "s").evaluate()["val_loss"])
    with pytest.raises(ValueError, match="already registered"):
        register_workload(type("Other", (Quadratic,), {}))
    with pytest.raises(ValueError, match="needs a name"):
        register_workload(type("Nameless", (Workload,), {}))
