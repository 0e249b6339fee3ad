"""Bilevel problems on real data: per-feature ℓ2 tuning of logistic regression and data hyper-cleaning.

scikit-learn and mnist1d are imported lazily (only when such a problem is built); nothing is downloaded:
scikit-learn's ``breast_cancer`` and ``digits`` ship with the package, ``make_classification`` is
synthetic, and MNIST-1D is generated with ``mnist1d.data.make_dataset`` (never ``get_dataset``, which
downloads).  Every split and corruption is drawn from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validate import check_choice, check_float, check_int
from .problems import BilevelProblem

__all__ = ["HYPER_CLEANING_DATASETS", "LOGREG_DATASETS", "hyper_cleaning", "hyper_cleaning_baselines", "logreg_l2"]

LOGREG_DATASETS = ("breast_cancer", "digits", "make_classification")
HYPER_CLEANING_DATASETS = ("digits", "mnist1d")


def _sklearn(name: str, seed: int) -> tuple[Any, Any]:
    try:
        import sklearn.datasets as skd
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"dataset {name!r} needs scikit-learn (pip install scikit-learn)") from exc
    if name == "breast_cancer":
        return skd.load_breast_cancer(return_X_y=True)
    if name == "digits":
        return skd.load_digits(return_X_y=True)
    return skd.make_classification(n_samples=1000, n_features=20, n_informative=10, n_redundant=4,
                                   random_state=seed)


@functools.lru_cache(maxsize=4)
def _mnist1d(num_samples: int, seed: int) -> tuple[Any, Any, Any, Any]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("dataset 'mnist1d' needs the mnist1d package (pip install mnist1d)") from exc
    args = get_dataset_args()
    args.num_samples = num_samples
    args.seed = seed
    d = make_dataset(args)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _splits(n: int, sizes: tuple[int, ...], gen: torch.Generator) -> list[Tensor]:
    perm = torch.randperm(n, generator=gen)
    out, start = [], 0
    for s in sizes:
        out.append(perm[start:start + s])
        start += s
    return out


def _standardize(X: Tensor, train: Tensor) -> Tensor:
    mu, sd = X[train].mean(0), X[train].std(0)
    return (X - mu) / torch.where(sd > 0, sd, torch.ones_like(sd))


def _ce(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sample cross-entropy (binary logistic when there is one logit column)."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], labels.to(logits.dtype), reduction="none")
    return F.cross_entropy(logits, labels, reduction="none")


def _predict(logits: Tensor) -> Tensor:
    return (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(1)


def _linear(X: Tensor, W: Tensor) -> Tensor:
    return X @ W[:-1] + W[-1]


def logreg_l2(dataset: str = "breast_cancer", *, seed: int = 0, val_fraction: float = 0.25,
              test_fraction: float = 0.25, dtype: torch.dtype = torch.float64) -> BilevelProblem:
    """Per-feature ℓ2 regularisation of logistic regression (Pedregosa 2016, arXiv:1602.02355, Sec. 4;
    Dagréou et al. 2022, arXiv:2201.13409, Sec. 4).

    y = W ∈ R^{(d+1) × C} (last row: the unpenalised bias; C = 1 logit for binary data, else softmax);
    x ∈ R^d, λ_j = exp(x_j)::

        g(x, W) = mean_{train} CE(X W, t) + ½ Σ_j exp(x_j) ‖W_j‖²,      f(x, W) = mean_{val} CE(X W, t)

    Features are standardised on the training split.  Metrics: validation loss, test loss and accuracy.
    Inner samples: training rows; outer samples: validation rows.
    """
    check_choice("dataset", dataset, LOGREG_DATASETS)
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    test_fraction = check_float("test_fraction", test_fraction, 0.0, 1.0, low_open=True, high_open=True)
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    Xn, tn = _sklearn(dataset, seed)
    X, t = torch.as_tensor(Xn, dtype=dtype), torch.as_tensor(tn, dtype=torch.long)
    n, d = X.shape
    n_classes = int(t.max()) + 1
    C = 1 if n_classes == 2 else n_classes
    gen = torch.Generator().manual_seed(int(seed))
    n_val, n_test = int(val_fraction * n), int(test_fraction * n)
    val, test, train = _splits(n, (n_val, n_test, n - n_val - n_test), gen)
    X = _standardize(X, train)
    Xtr, ttr, Xval, tval, Xte, tte = X[train], t[train], X[val], t[val], X[test], t[test]
    L_data = (0.25 if C == 1 else 0.5) * float(torch.linalg.matrix_norm(Xtr, ord=2)) ** 2 / len(train)

    def inner_batch(x: Tensor, W: Tensor, idx: Tensor) -> Tensor:
        return _ce(_linear(Xtr[idx], W), ttr[idx]).mean() + 0.5 * (torch.exp(x)[:, None] * W[:-1] ** 2).sum()

    def inner(x: Tensor, W: Tensor) -> Tensor:
        return _ce(_linear(Xtr, W), ttr).mean() + 0.5 * (torch.exp(x)[:, None] * W[:-1] ** 2).sum()

    def outer_batch(x: Tensor, W: Tensor, idx: Tensor) -> Tensor:
        return _ce(_linear(Xval[idx], W), tval[idx]).mean()

    def outer(x: Tensor, W: Tensor) -> Tensor:
        return _ce(_linear(Xval, W), tval).mean()

    def metrics(x: Tensor, W: Tensor) -> dict[str, float]:
        with torch.no_grad():
            logits = _linear(Xte, W)
            return {"val_loss": float(outer(x, W)), "test_loss": float(_ce(logits, tte).mean()),
                    "test_accuracy": float((_predict(logits) == tte).to(dtype).mean())}

    return BilevelProblem(
        outer=outer, inner=inner, x0=torch.full((d,), -2.0, dtype=dtype), y0=torch.zeros(d + 1, C, dtype=dtype),
        outer_batch=outer_batch, inner_batch=inner_batch, n_outer=len(val), n_inner=len(train),
        metrics=metrics, inner_lipschitz=lambda x: L_data + float(torch.exp(x).max()),
        name=f"logreg_l2_{dataset}", data={"X_train": Xtr, "t_train": ttr, "X_val": Xval, "t_val": tval,
                                            "X_test": Xte, "t_test": tte})


def hyper_cleaning(dataset: str = "digits", p: float = 0.5, *, seed: int = 0, reg: float = 0.2,
                   n_train: int | None = None, n_val: int | None = None, mnist1d_samples: int = 5000,
                   dtype: torch.dtype = torch.float64) -> BilevelProblem:
    """Data hyper-cleaning (Franceschi et al. 2017, arXiv:1703.01785, Sec. 5.1; benchmark_bilevel's protocol as
    in Dagréou et al. 2022, arXiv:2201.13409, Sec. 4).

    Each training label is replaced, with probability ``p``, by a label drawn uniformly among the classes.
    x ∈ R^{n_train} weighs the training samples by σ(x_i); y = W ∈ R^{(d+1) × C} (last row: bias)::

        g(x, W) = mean_i σ(x_i) CE_i(W) + reg ‖W_{:d}‖²,      f(x, W) = mean_{val} CE(W)   (clean labels)

    x starts at −2.  Metrics: ``test_error``; ``f1`` of "σ(x_i) ≥ ½ ⇔ label i is clean" (clean: the label
    equals the true one); ``val_loss``.  See :func:`hyper_cleaning_baselines` for the two reference points.

    Args:
        dataset: ``"digits"`` (scikit-learn, 1797 images 8×8) or ``"mnist1d"`` (generated, 40 features).
        p: corruption probability in [0, 1] (the papers use 0.5, 0.7, 0.9).
        seed: seed of the splits and the corruption (and of MNIST-1D's generator).
        reg: ℓ2 weight.  n_train, n_val: split sizes (defaults: digits 1000 / 300, MNIST-1D 3000 / 1000 of the
            training part; the rest — MNIST-1D: its test set — is the test split).
        mnist1d_samples: ``num_samples`` of MNIST-1D (80 % train, 20 % test).
    """
    check_choice("dataset", dataset, HYPER_CLEANING_DATASETS)
    p = check_float("p", p, 0.0, 1.0)
    reg = check_float("reg", reg, 0.0)
    gen = torch.Generator().manual_seed(int(seed))
    if dataset == "digits":
        Xn, tn = _sklearn("digits", seed)
        X, t = torch.as_tensor(Xn, dtype=dtype), torch.as_tensor(tn, dtype=torch.long)
        ntr = check_int("n_train", 1000 if n_train is None else n_train, 1)
        nv = check_int("n_val", 300 if n_val is None else n_val, 1, len(t) - ntr - 1)
        train, val, test = _splits(len(t), (ntr, nv, len(t) - ntr - nv), gen)
    else:
        mnist1d_samples = check_int("mnist1d_samples", mnist1d_samples, 50)
        x_tr, y_tr, x_te, y_te = _mnist1d(mnist1d_samples, int(seed))
        X = torch.cat([torch.as_tensor(x_tr, dtype=dtype), torch.as_tensor(x_te, dtype=dtype)])
        t = torch.cat([torch.as_tensor(y_tr, dtype=torch.long), torch.as_tensor(y_te, dtype=torch.long)])
        n_pool = len(y_tr)
        ntr = check_int("n_train", (3 * n_pool) // 4 if n_train is None else n_train, 1, n_pool - 1)
        nv = check_int("n_val", n_pool - ntr if n_val is None else n_val, 1, n_pool - ntr)
        train, val = _splits(n_pool, (ntr, nv), gen)
        test = torch.arange(n_pool, len(t))
    X = _standardize(X, train)
    C = int(t.max()) + 1
    t_true = t[train]
    flip = torch.rand(ntr, generator=gen) < p
    t_noisy = torch.where(flip, torch.randint(C, (ntr,), generator=gen), t_true)
    clean = t_noisy == t_true
    Xtr, Xval, tval, Xte, tte = X[train], X[val], t[val], X[test], t[test]
    d = X.shape[1]
    L_data = 0.5 * float(torch.linalg.matrix_norm(Xtr, ord=2)) ** 2 / ntr + 2 * reg

    def inner_batch(x: Tensor, W: Tensor, idx: Tensor) -> Tensor:
        ce = _ce(_linear(Xtr[idx], W), t_noisy[idx])
        return (torch.sigmoid(x[idx]) * ce).mean() + reg * (W[:-1] ** 2).sum()

    def inner(x: Tensor, W: Tensor) -> Tensor:
        return (torch.sigmoid(x) * _ce(_linear(Xtr, W), t_noisy)).mean() + reg * (W[:-1] ** 2).sum()

    def outer_batch(x: Tensor, W: Tensor, idx: Tensor) -> Tensor:
        return _ce(_linear(Xval[idx], W), tval[idx]).mean()

    def outer(x: Tensor, W: Tensor) -> Tensor:
        return _ce(_linear(Xval, W), tval).mean()

    def metrics(x: Tensor, W: Tensor) -> dict[str, float]:
        with torch.no_grad():
            err = float((_predict(_linear(Xte, W)) != tte).to(dtype).mean())
            pred_clean = torch.sigmoid(x) >= 0.5
            tp = float((pred_clean & clean).sum())
            denom = float(pred_clean.sum() + clean.sum())
            return {"test_error": err, "f1": 2 * tp / denom if denom else 0.0, "val_loss": float(outer(x, W))}

    return BilevelProblem(
        outer=outer, inner=inner, x0=torch.full((ntr,), -2.0, dtype=dtype), y0=torch.zeros(d + 1, C, dtype=dtype),
        outer_batch=outer_batch, inner_batch=inner_batch, n_outer=nv, n_inner=ntr, metrics=metrics,
        inner_lipschitz=L_data, name=f"hyper_cleaning_{dataset}_p{p:g}",
        data={"X_train": Xtr, "t_noisy": t_noisy, "t_true": t_true, "clean": clean, "X_val": Xval, "t_val": tval,
              "X_test": Xte, "t_test": tte, "reg": reg})


def _fit(X: Tensor, t: Tensor, C: int, reg: float, steps: int) -> Tensor:
    W = torch.zeros(X.shape[1] + 1, C, dtype=X.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([W], lr=1.0, max_iter=steps, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = _ce(_linear(X, W), t).mean() + reg * (W[:-1] ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return W.detach()


def hyper_cleaning_baselines(problem: BilevelProblem, steps: int = 200) -> dict[str, float]:
    """The two reference points of hyper-cleaning: test error of the same model (same ``reg``) trained
    (a) on the clean validation set alone, (b) on the training set with its true labels (L-BFGS, full batch).
    """
    if not problem.name.startswith("hyper_cleaning"):
        raise ValueError(f"problem must be built by hyper_cleaning(), got {problem.name!r}")
    steps = check_int("steps", steps, 1)
    D = problem.data
    C = problem.y0.shape[1]
    out = {}
    fits: dict[str, Callable[[], Tensor]] = {
        "val_only_test_error": lambda: _fit(D["X_val"], D["t_val"], C, D["reg"], steps),
        "true_labels_test_error": lambda: _fit(D["X_train"], D["t_true"], C, D["reg"], steps),
    }
    for key, fit in fits.items():
        W = fit()
        out[key] = float((_predict(_linear(D["X_test"], W)) != D["t_test"]).to(W.dtype).mean())
    return out
