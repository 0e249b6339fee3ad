"""Step time of the line searches under the two closure conventions: the no-backward closure (trials evaluated
without autograd) and the torch/LBFGS closure (``zero_grad(); loss.backward(); return loss``: one backward per
trial).  Median of 60 steps after 10 warm-up steps, 1 thread, an MLP 256-512-512-10 on one batch of 256.

Run: ``PYTHONPATH=src python benchmarks/linesearch_closures.py``
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

import descend.optim as do


def _measure(name: str, X: torch.Tensor, Y: torch.Tensor, torch_convention: bool) -> tuple[float, float]:
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 10))
    opt = do.create(name, model.parameters())

    def loss() -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(X), Y)

    def torch_closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    closure: Callable[[], torch.Tensor] = torch_closure if torch_convention else loss
    times, trials = [], []
    for i in range(70):
        t0 = time.perf_counter()
        opt.step(closure)
        if i >= 10:
            times.append(time.perf_counter() - t0)
            trials.append(opt.last_step_info.get("line_search_trials", 0.0))
    return statistics.median(times) * 1e3, statistics.mean(trials)


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    X, Y = torch.randn(256, 256), torch.randint(0, 10, (256,))
    for name in ("sls", "salsa", "adam_sls"):
        (t0, n0), (t1, n1) = (_measure(name, X, Y, conv) for conv in (False, True))
        print(f"{name:9s} no-backward closure {t0:6.1f} ms/step ({n0:.2f} trials)   "
              f"torch closure {t1:6.1f} ms/step ({n1:.2f} trials)   ratio {t1 / t0:.2f}")


if __name__ == "__main__":
    main()
