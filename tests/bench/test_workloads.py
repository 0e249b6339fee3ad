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
    """The scale the tests build: the workload's ``test_scale`` (cheap data), else its first (smallest) one."""
    wl = get_workload(name)
    return wl.test_scale or next(iter(wl.scales))


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


# ------------------------------------------------------------------------------- metrics and held-out splits


@pytest.mark.parametrize("name", _workload_params())
def test_workload_declares_its_metric_and_reports_a_test_split(name: str, descend_cache: Path):
    """Tuning selects on ``target_metric`` (of a declared kind); the final evaluation also has ``test_metric``,
    computed on other data than the validation metric."""
    from descend.bench.workloads.base import METRIC_KINDS

    wl = get_workload(name)
    assert wl.metric_kind in METRIC_KINDS
    assert wl.test_metric is not None, "every built-in workload has a test split"
    warm(descend_cache, name, _smallest(name))
    task = wl.build(0, _smallest(name))
    final = dict((task.final_evaluate or task.evaluate)())
    assert wl.target_metric in final and wl.test_metric in final
    assert math.isfinite(final[wl.test_metric])
    if wl.metric_kind == "validation":
        assert final["val_loss"] != final[wl.test_metric]  # another split, not a copy


def test_mnist1d_default_scales_are_large_and_the_data_constrained_ones_small():
    from descend.bench.workloads import mnist1d

    for name in ("mlp_mnist1d", "cnn_mnist1d"):
        scales = get_workload(name).scales
        assert scales["s"]["samples"] == scales["m"]["samples"] == mnist1d.SAMPLES == 60_000
        assert scales["s4k"]["samples"] == scales["m4k"]["samples"] == 5_000  # 4 000 train (incl. validation)
        assert get_workload(name).test_scale == "s4k"


def test_mnist1d_pinned_generator_config_is_the_package_default():
    """The cache key hashes a pinned copy of the generator's configuration: it must be the package's default."""
    pytest.importorskip("mnist1d")
    from mnist1d.data import get_dataset_args

    from descend.bench.workloads import mnist1d

    package = {k: v for k, v in vars(get_dataset_args()).items() if k not in ("url", "num_samples")}
    assert package == mnist1d._GENERATOR
    assert mnist1d._config(60_000)["num_samples"] == 60_000


def test_mnist1d_splits_are_disjoint_and_sized(descend_cache: Path):
    from descend.bench.workloads.mnist1d import load_mnist1d

    warm(descend_cache, "mlp_mnist1d", "s4k")
    d = load_mnist1d(5_000)
    assert (len(d["x"]), len(d["x_val"]), len(d["x_test"])) == (3_500, 500, 1_000)
    rows = {tuple(r.tolist()) for r in d["x"]}
    assert not rows & {tuple(r.tolist()) for r in d["x_val"]}
    assert not rows & {tuple(r.tolist()) for r in d["x_test"]}


def test_charlm_test_split_by_file_and_a_64k_token_validation(descend_cache: Path):
    """Validation and test each predict >= 65 536 bytes at the end of training (counted at the model's head),
    from different files than training."""
    from descend.bench.workloads.charlm import CharLM

    warm(descend_cache, "charlm_stdlib", "s")
    task = get_workload("charlm_stdlib").build(0, "s")
    assert task.model is not None and task.final_evaluate is not None
    predicted = []
    handle = task.model.head.register_forward_hook(lambda m, i, out: predicted.append(out.shape[0] * out.shape[1]))
    try:
        final = dict(task.final_evaluate())
    finally:
        handle.remove()
    assert sum(predicted) >= 2 * 65_536 and CharLM.eval_tokens >= 65_536
    assert {"val_loss", "test_loss"} <= set(final) and final["val_loss"] != final["test_loss"]
    from descend.bench.workloads._data import cached

    ctx = get_workload("charlm_stdlib").scales["s"]["context"]
    data = cached(f"charlm/stdlib/{__import__('sysconfig').get_python_version()}/{CharLM.corpus_bytes}/v2",
                  lambda: pytest.fail("the corpus should be cached by now"))
    assert len(data["val"]) >= 65_536 + ctx and len(data["test"]) >= 65_536 + ctx
    # split by file: a 200-byte chunk of the held-out streams is (almost surely) absent from training
    train = bytes(data["train"].tolist())
    for stream in (data["val"], data["test"]):
        chunk = bytes(stream[10_000:10_200].tolist())
        assert chunk not in train


# ------------------------------------------------------------------------------------------ no-pickle cache


def test_cache_never_unpickles_and_regenerates_bad_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A planted pickle at the cache path is not executed, a corrupt or foreign file is regenerated, and a file
    failing the caller's shape check is regenerated (the cache is NumPy .npz read with allow_pickle=False)."""
    import pickle

    from descend.bench.workloads import _data

    monkeypatch.setenv("DESCEND_CACHE", str(tmp_path))
    monkeypatch.setattr(_data, "_MEMORY", {})
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    calls = []

    def make() -> dict:
        calls.append(1)
        return {"x": torch.arange(6.0).reshape(2, 3), "n": 3, "f": 0.5}

    key = "test/evil/v1"
    path = _data.cache_path(key)
    path.write_bytes(pickle.dumps({"x": Evil()}))
    torch.save({"x": Evil()}, path.with_suffix(".pt"))  # the old layout's name, for good measure
    value = _data.cached(key, make)
    assert not marker.exists() and len(calls) == 1
    assert torch.equal(value["x"], torch.arange(6.0).reshape(2, 3)) and value["n"] == 3 and value["f"] == 0.5
    assert isinstance(value["n"], int) and isinstance(value["f"], float)

    def again(check=None) -> dict:
        _data._MEMORY.clear()
        return _data.cached(key, make, check=check)

    again()
    assert len(calls) == 1, "a valid file is read back, not regenerated"
    path.write_bytes(path.read_bytes()[:100])  # truncated by a killed writer
    again()
    assert len(calls) == 2
    # a valid file of another key copied to this key's name: the stored key does not match
    other = "test/other/v1"
    _data.cached(other, lambda: {"x": torch.zeros(1)})
    path.write_bytes(_data.cache_path(other).read_bytes())
    assert torch.equal(again()["x"], torch.arange(6.0).reshape(2, 3)) and len(calls) == 3
    # tampered array contents: the stored digest does not match
    import numpy as np

    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["x"] = arrays["x"] + 1
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    assert torch.equal(again()["x"], torch.arange(6.0).reshape(2, 3)) and len(calls) == 4
    # the caller's check rejects the stored value (e.g. another shape): regenerated
    again(check=lambda d: d["x"].shape == (2, 3))
    assert len(calls) == 4
    with pytest.raises(RuntimeError, match="fails its own check"):
        again(check=lambda d: d["x"].shape == (3, 2))
    assert len(calls) == 5
    assert not marker.exists()
    with pytest.raises(TypeError, match="tensor, int or float"):
        _data.cached("test/bad/v1", lambda: {"x": object()})


def test_cache_builds_a_key_once_when_threads_ask_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The runner's trial thread and its planner thread can build the same workload at the same moment: the
    key is generated once, both get it, and no temporary file is left behind (this raced before: two writers
    shared one temporary name, and the second rename failed with FileNotFoundError)."""
    import threading
    import time

    from descend.bench.workloads import _data

    monkeypatch.setenv("DESCEND_CACHE", str(tmp_path))
    monkeypatch.setattr(_data, "_MEMORY", {})
    calls = []

    def make() -> dict:
        calls.append(1)
        time.sleep(0.2)
        return {"x": torch.arange(4.0)}

    results: list = []
    errors: list = []

    def ask() -> None:
        try:
            results.append(_data.cached("test/race/v1", make))
        except Exception as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(calls) == 1 and len(results) == 4
    assert all(torch.equal(r["x"], torch.arange(4.0)) for r in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == [_data.cache_path("test/race/v1").name]


def test_no_pickle_in_the_data_path():
    import inspect

    from descend.bench.workloads import _data

    source = inspect.getsource(_data)
    assert "torch.load" not in source and "pickle" not in source.replace("allow_pickle=False", "").replace(
        "no pickle", "").replace("a pickle-free", "")


# ------------------------------------------------------------------------------------------ parameter roles


def test_workload_roles_route_the_mlp_cnn_charlm_and_logreg(descend_cache: Path):
    """Roles from module types, declared where it matters; Muon is not applicable without hidden matrices."""
    from descend.optim import muon_param_groups
    from descend.optim.roles import NO_HIDDEN_MATRICES, Role, names_by_role

    warm(descend_cache, "mlp_mnist1d", "s4k")
    mlp = get_workload("mlp_mnist1d").build(0, "s4k")
    assert mlp.model is not None
    by_id = {id(p): n for n, p in mlp.model.named_parameters()}
    groups = {g["name"]: {by_id[id(p)] for p in g["params"]} for g in muon_param_groups(mlp.model)}
    assert groups["muon"] == {"2.weight"} and groups["adamw"] == {"0.weight", "4.weight"}  # input and head

    cnn = get_workload("cnn_mnist1d").build(0, "s4k")
    roles = names_by_role(cnn.model, cnn.param_roles())
    assert roles["convs.0.weight"] is Role.INPUT and roles["convs.1.weight"] is Role.HIDDEN
    assert roles["head.weight"] is Role.HEAD

    warm(descend_cache, "charlm_stdlib", "s")
    lm = get_workload("charlm_stdlib").build(0, "s")
    roles = names_by_role(lm.model, lm.param_roles())
    assert roles["pos"] is Role.EMBEDDING and roles["embed.weight"] is Role.EMBEDDING
    assert roles["head.weight"] is Role.HEAD and roles["blocks.0.qkv.weight"] is Role.HIDDEN
    assert lm.roles == {"pos": "embedding", "head.weight": "head"}  # declared by the workload

    warm(descend_cache, "logreg_breast_cancer", "s")
    assert get_workload("logreg_breast_cancer").not_applicable("muon", "s") == NO_HIDDEN_MATRICES
    assert get_workload("logreg_breast_cancer").not_applicable("adamw", "s") is None
    assert get_workload("mlp_mnist1d").not_applicable("muon", "s4k") is None

    with pytest.raises(ValueError, match=r"needs Task\.model"):
        Task(params=[], train_loss=lambda s: torch.zeros(()), evaluate=dict, roles={"w": "hidden"})


def test_not_applicable_cells_get_no_work(tmp_path: Path, descend_cache: Path):
    """Muon on logistic regression (no hidden matrix) is skipped, not run as AdamW under Muon's name."""
    from descend.bench.protocol import not_applicable, pending_work
    from descend.bench.storage import Storage

    from .conftest import small_plan

    warm(descend_cache, "logreg_breast_cancer", "s")
    plan = small_plan("na", optimizers=("adamw", "muon"))
    storage = Storage(str(tmp_path / "bench.db"))
    storage.save_plan(plan.name, plan.to_dict())
    items = list(pending_work(storage, plan))
    # adamw#2 is the noise-floor replica of the baseline (a second tuning of AdamW); no muon work at all
    assert items and {i.optimizer for i in items} <= {"adamw", "adamw#2"} and "adamw" in {i.optimizer for i in items}
    assert not_applicable("logreg_breast_cancer", "s", "muon") == "n/a: no hidden matrices"
    # a run waits until every expected final run is stored: an n/a cell must not be expected (it would wait
    # forever — the quick suite hung on exactly that)
    assert not any(cell.endswith(":muon") for cell, _ in plan.expected_finals())
    assert storage.missing_finals(plan) == len(plan.expected_finals()) == 2 * plan.seeds  # adamw, adamw#2
