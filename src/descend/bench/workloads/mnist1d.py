"""MNIST-1D (Greydanus 2020) classification with an MLP and with a small 1-D CNN.

The data set is generated offline by the ``mnist1d`` package (``mnist1d.data.make_dataset`` with its default
configuration except ``num_samples``) and cached on disk (see ``_data.cached``: NumPy, no pickle).

* Scales ``s`` / ``m`` (the default): **60 000 signals** — 48 000 for training (6 000 of them held out for
  validation, used to tune) and 12 000 for test (reported).  Large enough that the training set is not
  memorised within the budget: validation tracks training and the curves are monotone, so the benchmark
  measures training speed.  Generating it takes ~100 s on one busy CPU core, once per cache.
* Scales ``s4k`` / ``m4k`` (data-constrained): the package's default 5 000 signals — 4 000 for training (500
  held out for validation), 1 000 for test.  A model over-fits within the budget (AdamW's validation loss
  bottoms out and rises again): the regime of the data-constrained mode, which tunes weight decay over a
  wide range and judges the best monotone curve.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._data import batch_indices, cached, classification_metrics, split
from .base import Task, Workload, register_workload

#: signals generated for the default scales, and for the data-constrained ones (the package's default)
SAMPLES = 60_000
SAMPLES_CONSTRAINED = 5_000
_VALIDATION_FRACTION = 0.125


#: ``mnist1d.data.get_dataset_args()``'s defaults (checked against the package in the tests), pinned here so a
#: cache hit needs no import of ``mnist1d`` (which pulls in matplotlib and scipy: seconds); ``num_samples`` is
#: set per scale
_GENERATOR: dict[str, Any] = {
    "train_split": 0.8, "template_len": 12, "padding": [36, 60], "scale_coeff": 0.4, "max_translation": 48,
    "corr_noise_scale": 0.25, "iid_noise_scale": 0.02, "shear_scale": 0.75, "shuffle_seq": False,
    "final_seq_length": 40, "seed": 42,
}


def _config(num_samples: int) -> dict[str, Any]:
    """The generator's full configuration and package version (what the cache key is a hash of)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("mnist1d")
    except PackageNotFoundError:
        package = "not installed"
    return {"mnist1d": package, "num_samples": num_samples, **_GENERATOR}


def _make(num_samples: int) -> dict[str, torch.Tensor]:
    try:
        from mnist1d.data import make_dataset
        from mnist1d.utils import ObjectView
    except ImportError as exc:
        raise ImportError("the MNIST-1D workloads need the mnist1d package: pip install 'descend[bench]'") from exc

    args = ObjectView({"num_samples": num_samples, **{k: list(v) if isinstance(v, list) else v
                                                      for k, v in _GENERATOR.items()}})
    d = make_dataset(args)
    return {k: torch.as_tensor(d[k]) for k in ("x", "y", "x_test", "y_test")}


def _check(num_samples: int, length: int, train_split: float) -> Any:
    """Shape, dtype and label-range checks of a cached set (a file that fails them is regenerated)."""
    total = num_samples // 10 * 10  # make_dataset draws num_samples // 10 signals per class
    n_train = int(total * train_split)
    n_test = total - n_train
    shapes = {"x": (n_train, length), "y": (n_train,), "x_test": (n_test, length), "y_test": (n_test,)}

    def check(d: dict[str, Any]) -> bool:
        if set(d) != set(shapes) or any(tuple(d[k].shape) != v for k, v in shapes.items()):
            return False
        labels_ok = all(not d[k].dtype.is_floating_point and bool(((d[k] >= 0) & (d[k] < 10)).all())
                        for k in ("y", "y_test"))
        return labels_ok and all(d[k].dtype.is_floating_point and bool(torch.isfinite(d[k]).all())
                                 for k in ("x", "x_test"))

    return check


def load_mnist1d(num_samples: int = SAMPLES) -> dict[str, torch.Tensor]:
    """(x, y) train / validation / test tensors (float32 inputs, int64 labels) of ``num_samples`` signals."""
    cfg = _config(num_samples)
    key = "mnist1d/" + json.dumps(cfg, sort_keys=True)
    check = _check(num_samples, int(cfg["final_seq_length"]), float(cfg["train_split"]))
    d = cached(key, lambda: _make(num_samples), check=check)
    x, y = d["x"].float(), d["y"].long()
    tr, va = split(len(x), _VALIDATION_FRACTION, seed=0)
    return {"x": x[tr], "y": y[tr], "x_val": x[va], "y_val": y[va],
            "x_test": d["x_test"].float(), "y_test": d["y_test"].long()}


class _MNIST1D(Workload):
    batch: ClassVar[int] = 128
    test_scale: ClassVar[str | None] = "s4k"  # 5 000 signals: seconds to generate, not minutes
    predicts: ClassVar[bool] = True

    def model(self, settings: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def build(self, seed: int, scale: str) -> Task:
        settings = dict(self.settings(scale))
        d = load_mnist1d(settings["samples"])
        torch.manual_seed(seed)
        model = self.model(settings)

        def train_loss(step: int) -> torch.Tensor:
            idx = batch_indices(len(d["x"]), self.batch, seed, step)
            return F.cross_entropy(model(d["x"][idx]), d["y"][idx])

        @torch.no_grad()
        def evaluate() -> dict[str, float]:
            model.eval()
            out = {**classification_metrics(model(d["x_val"]), d["y_val"], "val"),
                   **classification_metrics(model(d["x_test"]), d["y_test"], "test")}
            model.train()
            return out

        @torch.no_grad()
        def predict() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
            model.eval()
            out = {split: (F.log_softmax(model(d[f"x_{split}"]), dim=-1), d[f"y_{split}"]) for split in ("val", "test")}
            model.train()
            return out

        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate, model=model,
                    info={"n_params": sum(p.numel() for p in model.parameters())}, predict=predict)


@register_workload
class MLPMNIST1D(_MNIST1D):
    name = "mlp_mnist1d"
    description = "MLP on MNIST-1D (40 inputs, 10 classes; 60k signals, s4k/m4k: 5k, data-constrained)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"width": 128, "depth": 2, "samples": SAMPLES},
        "m": {"width": 512, "depth": 3, "samples": SAMPLES},
        "s4k": {"width": 128, "depth": 2, "samples": SAMPLES_CONSTRAINED},  # data-constrained
        "m4k": {"width": 512, "depth": 3, "samples": SAMPLES_CONSTRAINED},
    }
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1500, "s4k": 600, "m4k": 1500}

    def model(self, settings: dict[str, Any]) -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        width_in = 40
        for _ in range(settings["depth"]):
            layers += [torch.nn.Linear(width_in, settings["width"]), torch.nn.GELU()]
            width_in = settings["width"]
        return torch.nn.Sequential(*layers, torch.nn.Linear(width_in, 10))


class _CNN(torch.nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = torch.nn.ModuleList([
            torch.nn.Conv1d(1, channels, 5, padding=2),
            torch.nn.Conv1d(channels, channels, 3, padding=1),
            torch.nn.Conv1d(channels, channels, 3, padding=1),
        ])
        self.head = torch.nn.Linear(channels * 10, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(1)
        for i, conv in enumerate(self.convs):
            h = F.gelu(conv(h))
            if i < 2:
                h = F.max_pool1d(h, 2)
        return self.head(h.flatten(1))


@register_workload
class CNNMNIST1D(_MNIST1D):
    name = "cnn_mnist1d"
    description = "small 1-D CNN (3 conv layers + linear head) on MNIST-1D (60k signals; s4k/m4k: 5k)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {
        "s": {"channels": 16, "samples": SAMPLES},
        "m": {"channels": 48, "samples": SAMPLES},
        "s4k": {"channels": 16, "samples": SAMPLES_CONSTRAINED},  # data-constrained
        "m4k": {"channels": 48, "samples": SAMPLES_CONSTRAINED},
    }
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1500, "s4k": 600, "m4k": 1500}

    def model(self, settings: dict[str, Any]) -> torch.nn.Module:
        return _CNN(settings["channels"])
