"""M-FAC damping on PyTorch's "goes the right direction" problem (issue 10 item 8).

‖W x + b‖² with W ~ randn(10, 5), b ~ randn(10), x ~ randn(5) (torch's test_optim problem), 20 steps of lr 1e-3
with the default window (1024): how many of 20 seeds end below their initial loss, per damping and window dtype.

Run: ``PYTHONPATH=src python benchmarks/mfac_damping.py``
"""

from __future__ import annotations

import math

import torch

from descend.optim import MFAC


def final_over_initial(damp: float, seed: int, window_dtype: torch.dtype, steps: int = 20) -> float:
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(10, 5, generator=g, dtype=torch.float64).to(window_dtype).requires_grad_()
    b = torch.randn(10, generator=g, dtype=torch.float64).to(window_dtype).requires_grad_()
    x = torch.randn(5, generator=g, dtype=torch.float64).to(window_dtype)
    opt = MFAC([W, b], lr=1e-3, damp=damp, window_dtype=window_dtype)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (W.mv(x) + b).pow(2).sum()
        loss.backward()
        return loss

    initial = closure().item()
    for _ in range(steps):
        opt.step(closure)
    return closure().item() / initial


def main() -> None:
    for window_dtype in (torch.float32, torch.float64):
        for damp in (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0):
            ratios = sorted(final_over_initial(damp, s, window_dtype) for s in range(20))
            down = sum(1 for r in ratios if r < 1 and math.isfinite(r))
            print(f"window {str(window_dtype)[6:]:8s} damp {damp:g}: downhill {down}/20, "
                  f"median final/initial {ratios[10]:.3g}, worst {ratios[-1]:.3g}")


if __name__ == "__main__":
    main()
