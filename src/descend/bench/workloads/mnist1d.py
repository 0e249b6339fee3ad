"""MNIST-1D (Greydanus 2020) classification with an MLP and with a small 1-D CNN.

The data set is generated offline by the ``mnist1d`` package (``mnist1d.data.make_dataset`` with its default
arguments: 4000 training and 1000 test signals of length 40, 10 classes) and cached.  500 training signals are
held out for validation (used to tune); the test split is reported.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ._data import batch_indices, cached, classification_metrics, split
from .base import Task, Workload, register_workload


def _make() -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return {k: torch.as_tensor(d[k]) for k in ("x", "y", "x_test", "y_test")}


def load_mnist1d() -> dict[str, torch.Tensor]:
    """(x, y) train / validation / test tensors (float32 inputs, int64 labels)."""
    d = cached("mnist1d/default/v1", _make)
    x, y = d["x"].float(), d["y"].long()
    tr, va = split(len(x), 0.125, seed=0)
    return {"x": x[tr], "y": y[tr], "x_val": x[va], "y_val": y[va],
            "x_test": d["x_test"].float(), "y_test": d["y_test"].long()}


class _MNIST1D(Workload):
    batch: ClassVar[int] = 128

    def model(self, settings: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def build(self, seed: int, scale: str) -> Task:
        settings = dict(self.settings(scale))
        d = load_mnist1d()
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

        return Task(params=list(model.parameters()), train_loss=train_loss, evaluate=evaluate, model=model,
                    info={"n_params": sum(p.numel() for p in model.parameters())})


@register_workload
class MLPMNIST1D(_MNIST1D):
    name = "mlp_mnist1d"
    description = "MLP on MNIST-1D (40 inputs, 10 classes)"
    scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {"width": 128, "depth": 2}, "m": {"width": 512, "depth": 3}}
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1500}

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
    description = "small 1-D CNN (3 conv layers + linear head) on MNIST-1D"
    scales: ClassVar[dict[str, dict[str, Any]]] = {"s": {"channels": 16}, "m": {"channels": 48}}
    budget: ClassVar[dict[str, int]] = {"s": 600, "m": 1500}

    def model(self, settings: dict[str, Any]) -> torch.nn.Module:
        return _CNN(settings["channels"])
