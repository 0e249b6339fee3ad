"""A custom benchmark workload in one file, compared with descend.bench.compare() at a tiny budget.

    python examples/custom_workload.py
    descend bench run --workloads examples.custom_workload:TinyRegression:s --optimizers adamw,lion
"""

from __future__ import annotations

from typing import ClassVar

import torch

from descend.bench import compare
from descend.bench.workloads import Task, Workload


class TinyRegression(Workload):
    name = "tiny_regression"
    description = "linear regression on synthetic data (an example plug-in)"
    scales: ClassVar[dict[str, dict[str, int]]] = {"s": {"d": 16}}
    budget: ClassVar[dict[str, int]] = {"s": 100}

    def build(self, seed: int, scale: str) -> Task:
        d = self.scales[scale]["d"]
        g = torch.Generator().manual_seed(seed)
        w_true = torch.randn(d, generator=g)
        x = {split: torch.randn(256, d, generator=g) for split in ("train", "val", "test")}
        y = {split: x[split] @ w_true + 0.1 * torch.randn(256, generator=g) for split in x}
        model = torch.nn.Linear(d, 1)

        def loss(split: str) -> torch.Tensor:
            return torch.nn.functional.mse_loss(model(x[split]).squeeze(-1), y[split])

        def evaluate() -> dict[str, float]:
            with torch.no_grad():
                return {"val_loss": loss("val").item(), "test_loss": loss("test").item()}

        return Task(params=list(model.parameters()), model=model, train_loss=lambda step: loss("train"),
                    evaluate=evaluate)


if __name__ == "__main__":
    result = compare(TinyRegression, optimizers=["adamw", "lion"], trials=2, seeds=2)
    for sentence in result.verdict:
        print(sentence)
    assert result.verdict
