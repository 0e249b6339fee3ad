"""descend inside PyTorch Lightning: Sophia-G with its Hessian callback, and SLS with Lightning's closure.

    python examples/lightning_module.py          # needs `pip install lightning`
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import descend.optim as do
from descend.integrations.lightning import SophiaHessianCallback


class Classifier(L.LightningModule):
    def __init__(self, optimizer: str) -> None:
        super().__init__()
        self.optimizer_name = optimizer
        self.net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 3))
        self.losses: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_name == "sls":  # Lightning calls step(closure): the closure runs forward + backward
            return do.SLS(self.parameters())
        return do.SophiaG(self.parameters(), lr=3e-3, rho=0.05, bs=64)


def main() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4:8].sum(1) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=g)
    for name in ("sophia_g", "sls"):
        torch.manual_seed(0)
        module = Classifier(name)
        callbacks = [SophiaHessianCallback(every=10, seed=0)] if name == "sophia_g" else []
        trainer = L.Trainer(max_epochs=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
        trainer.fit(module, loader)
        first, last = sum(module.losses[:8]) / 8, sum(module.losses[-8:]) / 8
        print(f"{name:<9} loss {first:.3f} -> {last:.3f}" + (f" ({callbacks[0].updates} Hessian updates)"
                                                              if callbacks else ""))
        assert last < 0.8 * first, f"{name} did not train under Lightning"
        if callbacks:
            assert callbacks[0].updates >= 3


if __name__ == "__main__":
    main()
