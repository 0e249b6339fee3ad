"""Multinomial logistic regression on scikit-learn's bundled data sets (convex, optimum known).

The objective is the mean cross-entropy plus ``l2/2 * ||W||^2`` (bias not regularised): strongly convex,
so its minimum over the training split is computed once, in float64, by L-BFGS with a strong-Wolfe line
search to gradient norm 1e-10, and every trial reports its suboptimality ``f(x_T) - f*`` — the metric these
workloads are tuned and judged on (validation loss and accuracy are reported too).

Scales: ``s`` = the standardised raw features; ``m`` = raw features plus 256 fixed random ReLU features
(a wider, worse-conditioned problem).  Data split (60 % train / 20 % validation / 20 % test) is fixed; the
trial seed sets the initialisation and the mini-batch order.  The single linear layer is the model's head: there
is no hidden matrix, so hidden-matrix optimizers (Muon) are not applicable here.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._data import batch_indices, cached, classification_metrics, split, standardize
from .base import Task, Workload, register_workload

_L2 = 1e-3


def _load(dataset: str, scale: str) -> dict[str, torch.Tensor | int]:
    from sklearn import datasets

    loader = {"breast_cancer": datasets.load_breast_cancer, "digits": datasets.load_digits}[dataset]
    X, y = loader(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float64)
    y = torch.tensor(y, dtype=torch.long)
    rest, te = split(len(X), 0.2, seed=0)
    tr_in_rest, va_in_rest = split(len(rest), 0.25, seed=1)
    tr, va = rest[tr_in_rest], rest[va_in_rest]
    Xtr, Xva, Xte = standardize(X[tr], X[va], X[te])
    if scale == "m":
        g = torch.Generator().manual_seed(1)
        R = torch.randn(Xtr.shape[1], 256, generator=g, dtype=torch.float64) / Xtr.shape[1] ** 0.5
        Xtr, Xva, Xte = (torch.cat([x, torch.relu(x @ R)], 1) for x in (Xtr, Xva, Xte))
        Xtr, Xva, Xte = standardize(Xtr, Xva, Xte)
    return {"Xtr": Xtr, "ytr": y[tr], "Xva": Xva, "yva": y[va], "Xte": Xte, "yte": y[te],
            "classes": int(y.max()) + 1}


def _objective(W: torch.Tensor, b: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(X @ W.T + b, y) + 0.5 * _L2 * (W**2).sum()


def _optimum(data: dict[str, Any]) -> float:
    X, y, k = data["Xtr"], data["ytr"], data["classes"]
    W = torch.zeros(k, X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=5000, tolerance_grad=1e-10, tolerance_change=0,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = _objective(W, b, X, y)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    with torch.no_grad():
        return float(_objective(W, b, X, y))


def _with_optimum(data: dict[str, torch.Tensor | int]) -> dict[str, torch.Tensor | int | float]:
    """``data`` with the optimal objective value (``"optimum"``) added."""
    return {**data, "optimum": _optimum(data)}


def _check(d: dict[str, Any]) -> bool:
    """Shapes and dtypes of a cached data set (a file that fails is regenerated)."""
    width = d["Xtr"].shape[1]
    return (all(d[x].dtype == torch.float64 and d[x].ndim == 2 and d[x].shape[1] == width
                and d[y].ndim == 1 and len(d[y]) == len(d[x]) and not d[y].dtype.is_floating_point
                for x, y in (("Xtr", "ytr"), ("Xva", "yva"), ("Xte", "yte")))
            and isinstance(d["classes"], int) and isinstance(d["optimum"], float) and math.isfinite(d["optimum"]))


class _LogReg(Workload):
    #: a convex problem with a known optimum: judge the optimization itself (the validation loss of an
    #: under-regularised model is not monotone in training time, which makes speedups meaningless)
    target_metric: ClassVar[str] = "suboptimality"
    metric_kind = "suboptimality"
    dataset: ClassVar[str] = ""
    scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {}, "m": {}}
    budget: ClassVar[dict[str, int]] = {"s": 300, "m": 600}
    batch: ClassVar[int] = 64

    def build(self, seed: int, scale: str) -> Task:
        self.settings(scale)
        data = cached(f"logreg/{self.dataset}/{scale}/l2={_L2}/split=60-20-20/v2",
                      lambda: _with_optimum(_load(self.dataset, scale)), check=_check)
        Xtr, ytr = data["Xtr"].float(), data["ytr"]
        Xva, yva = data["Xva"].float(), data["yva"]
        Xte, yte = data["Xte"].float(), data["yte"]
        torch.manual_seed(seed)
        model = torch.nn.Linear(Xtr.shape[1], data["classes"])
        with torch.no_grad():
            model.weight.mul_(0.1)
            model.bias.zero_()

        def train_loss(step: int) -> torch.Tensor:
            idx = batch_indices(len(Xtr), self.batch, seed, step)
            return _objective(model.weight, model.bias, Xtr[idx], ytr[idx])

        def train_objective() -> torch.Tensor:
            W, b = model.weight.detach().double(), model.bias.detach().double()
            return _objective(W, b, data["Xtr"], data["ytr"])

        @torch.no_grad()
        def evaluate() -> dict[str, float]:
            out = {**classification_metrics(model(Xva), yva, "val"), **classification_metrics(model(Xte), yte, "test")}
            out["suboptimality"] = max(float(train_objective()) - data["optimum"], 0.0)
            return out

        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate,
                    optimum=data["optimum"], train_objective=train_objective, model=model,
                    info={"n_params": sum(p.numel() for p in model.parameters())})


@register_workload
class LogRegBreastCancer(_LogReg):
    name = "logreg_breast_cancer"
    description = "logistic regression, scikit-learn breast_cancer (569 x 30, 2 classes), l2 1e-3"
    dataset = "breast_cancer"


@register_workload
class LogRegDigits(_LogReg):
    name = "logreg_digits"
    description = "multinomial logistic regression, scikit-learn digits (1797 x 64, 10 classes), l2 1e-3"
    dataset = "digits"
