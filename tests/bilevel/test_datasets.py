"""Data problems (scikit-learn, MNIST-1D): construction, corruption, metrics, a few solver steps."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from descend.bilevel import AmIGO, hypergradient
from descend.bilevel.datasets import hyper_cleaning, hyper_cleaning_baselines, logreg_l2


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits", "make_classification"])
def test_logreg_l2_builds_and_improves(dataset):
    p = logreg_l2(dataset, seed=0)
    r = AmIGO(p, lr_outer=1.0, lr_inner=1 / p.lipschitz(p.x0), inner_steps=10, hessian_steps=10).run(5)
    vals = r.column("outer_value")
    assert vals[-1] < vals[0]
    assert 0.0 <= r.history[-1]["test_accuracy"] <= 1.0


def test_logreg_hypergradient_matches_finite_difference():
    p = logreg_l2("breast_cancer", seed=1)
    x = p.x0.clone()
    L = p.lipschitz(x)

    def h(xx):
        y = p.y0
        est = hypergradient(p, xx, y, "cg", steps=1, inner_steps=3000, step_size=1 / L)
        return float(p.outer(xx, est.y)), est

    _, est = h(x)
    g = hypergradient(p, x, est.y, "cg", steps=60).grad
    e = torch.zeros_like(x)
    e[0] = 1e-4
    fd = (h(x + e)[0] - h(x - e)[0]) / 2e-4
    assert abs(fd - float(g[0])) < 1e-3 * max(1.0, abs(fd)) + 1e-6


@pytest.mark.parametrize("p_corrupt", [0.5, 0.7, 0.9])
def test_hyper_cleaning_corruption_rate(p_corrupt):
    p = hyper_cleaning("digits", p_corrupt, seed=0)
    clean = p.data["clean"].double().mean()
    # a corrupted label is uniform over the 10 classes, so it stays clean with probability 1/10
    assert abs(float(1 - clean) - p_corrupt * 0.9) < 0.05
    m = p.metrics(p.x0, p.y0)
    assert set(m) == {"test_error", "f1", "val_loss"} and m["f1"] == 0.0  # x0 = -2: every sample "corrupt"


def test_hyper_cleaning_learns_and_reference_points():
    p = hyper_cleaning("digits", 0.5, seed=0)
    s = AmIGO(p, lr_outer=100.0, lr_inner=0.5, inner_steps=10, hessian_steps=10, inner_batch_size=64,
              outer_batch_size=64, seed=0)
    r = s.run(60, eval_every=60)
    assert r.history[-1]["f1"] > 0.5 and r.history[-1]["test_error"] < 0.5
    ref = hyper_cleaning_baselines(p, steps=50)
    assert 0 < ref["true_labels_test_error"] < ref["val_only_test_error"] < 0.5


def test_mnist1d_small():
    pytest.importorskip("mnist1d")
    p = hyper_cleaning("mnist1d", 0.7, seed=0, mnist1d_samples=400)
    assert p.n_inner == 240 and p.n_outer == 80
    assert p.data["X_test"].shape == (80, 40)
    est = hypergradient(p, p.x0, p.y0, "cg", steps=5, inner_steps=20)
    assert torch.isfinite(est.grad).all() and est.grad.shape == p.x0.shape


@pytest.mark.slow
def test_mnist1d_default_size_reference_points():
    pytest.importorskip("mnist1d")
    p = hyper_cleaning("mnist1d", 0.5, seed=0)
    ref = hyper_cleaning_baselines(p)
    assert ref["true_labels_test_error"] < ref["val_only_test_error"]
