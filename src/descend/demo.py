"""A two-minute demonstration: train one small network with several optimizers and compare their losses.

The task is a synthetic teacher–student classification problem (a random two-layer "teacher" labels
Gaussian inputs; a wider student MLP learns it), generated offline from a seed.  Every optimizer starts
from the same initial weights and sees the same mini-batches; the table reports the final training loss,
the held-out loss and accuracy, and the wall time per step.

    python -m descend.demo --optimizers adamw lion soap muon --steps 400

The hyperparameters are typical published settings for each optimizer (see ``TYPICAL``), not tuned for
this task: a fair comparison with equal tuning budgets is what ``descend bench`` is for.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import optim as do

#: Typical settings from each optimizer's paper or reference README (not tuned here).
TYPICAL: dict[str, dict[str, Any]] = {
    "adamw": {"lr": 3e-3, "weight_decay": 0.01},
    "nadamw": {"lr": 3e-3, "weight_decay": 0.01},
    "adabelief": {"lr": 3e-3, "eps": 1e-16},
    "lion": {"lr": 3e-4, "weight_decay": 0.1},
    "sophia_g": {"lr": 3e-4, "rho": 0.04},
    "soap": {"lr": 3e-3},
    "shampoo": {"lr": 3e-3},
    "muon": {"lr": 0.02},
}


def make_data(seed: int, n_train: int = 4096, n_val: int = 2048, dim: int = 32, classes: int = 10
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian inputs labelled by a random two-layer teacher network."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim, 64, generator=g) / dim**0.5
    w2 = torch.randn(64, classes, generator=g) / 8
    x = torch.randn(n_train + n_val, dim, generator=g)
    y = (torch.tanh(x @ w1) @ w2).argmax(1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_model(seed: int, dim: int = 32, classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(dim, 128), torch.nn.GELU(), torch.nn.Linear(128, 128), torch.nn.GELU(),
        torch.nn.Linear(128, classes),
    )


def train(name: str, steps: int, batch: int, seed: int) -> dict[str, float]:
    """Train the student with optimizer ``name`` and return its final metrics."""
    xt, yt, xv, yv = make_data(seed)
    model = make_model(seed)
    spec = do.get(name)
    opt = spec.create(model.parameters(), **TYPICAL.get(name, {}))
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda t: max(0.0, 1 - t / steps))
             if spec.lr_key is not None else None)
    order = torch.Generator().manual_seed(seed + 1)
    elapsed = 0.0
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        idx = torch.randint(0, len(xt), (batch,), generator=order)

        def batch_loss(idx: torch.Tensor = idx) -> torch.Tensor:
            return F.cross_entropy(model(xt[idx]), yt[idx])

        start = time.perf_counter()
        if spec.requires_closure:
            # torch's stub types a closure and step's result as float; line searches take and return the loss tensor
            loss = opt.step(batch_loss)  # type: ignore[arg-type, assignment]
        else:
            opt.zero_grad()
            loss = batch_loss()
            loss.backward()
            opt.step()
        elapsed += time.perf_counter() - start
        if sched is not None:
            sched.step()
    with torch.no_grad():
        logits = model(xv)
        val = F.cross_entropy(logits, yv).item()
        acc = (logits.argmax(1) == yv).float().mean().item()
    return {"train_loss": float(loss.detach()), "val_loss": val, "val_acc": acc, "ms_per_step": 1e3 * elapsed / steps}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m descend.demo", description=__doc__.split("\n\n")[0])
    default = [n for n in ("adamw", "lion", "adabelief", "soap", "muon") if n in do.available()]
    ap.add_argument("--optimizers", nargs="+", default=default, choices=do.available(), metavar="NAME",
                    help=f"registered optimizers (default: {' '.join(default)}; all: {' '.join(do.available())})")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(f"teacher-student MLP, {args.steps} steps of batch {args.batch}, seed {args.seed}; typical settings, "
          "linear decay to zero\n")
    print(f"{'optimizer':<12} {'train loss':>10} {'val loss':>9} {'val acc':>8} {'ms/step':>8}")
    for name in args.optimizers:
        r = train(name, args.steps, args.batch, args.seed)
        print(f"{name:<12} {r['train_loss']:>10.4f} {r['val_loss']:>9.4f} {r['val_acc']:>8.3f} "
              f"{r['ms_per_step']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
