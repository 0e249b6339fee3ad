"""descend with the Hugging Face Trainer: a randomly initialised tiny GPT-2 (no downloads) trained by Sophia-G,
its Hessian loop run by a TrainerCallback.

    python examples/hf_trainer.py                # needs `pip install transformers`
"""

from __future__ import annotations

import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import descend.optim as do
from descend.integrations.hf import SophiaHessianTrainerCallback


class Tokens(torch.utils.data.Dataset):
    """Sequences of a repeating pattern with noise: learnable by a one-layer model in a few dozen steps."""

    def __init__(self, n: int, length: int = 32, vocab: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (n, 1), generator=g)
        self.ids = (start + torch.arange(length)) % vocab

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=1, n_head=2))
    data = Tokens(256)
    opt = do.SophiaG(model.parameters(), lr=2e-3, rho=0.05, bs=16 * 32, weight_decay=0.0)
    hessian_batches = [{"input_ids": data.ids[i:i + 16]} for i in range(0, 256, 16)]
    callback = SophiaHessianTrainerCallback(hessian_batches, every=10, seed=0)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=16, max_steps=60, logging_steps=10,
                                 report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True, seed=0)
        trainer = Trainer(model=model, args=args, train_dataset=data, optimizers=(opt, None), callbacks=[callback])
        trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    print(f"sophia_g loss {losses[0]:.3f} -> {losses[-1]:.3f} ({callback.updates} Hessian updates)")
    assert losses[-1] < 0.8 * losses[0] and callback.updates >= 5


if __name__ == "__main__":
    main()
