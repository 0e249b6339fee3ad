"""descend's optimizers in a plain PyTorch loop: one of each kind, on a tiny classifier (runs in seconds).

    python examples/plain_loop.py
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import descend.optim as do


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4:8].sum(1) > 0).long()  # 3 classes
    return x, y


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 64), torch.nn.GELU(),
                               torch.nn.Linear(64, 3))


def train(name: str, steps: int = 60) -> float:
    x, y = data()
    net = model()
    sophia = None
    if name == "adamw":  # elementwise
        opt: torch.optim.Optimizer = do.create("adamw", net.parameters(), lr=3e-3)
    elif name == "muon":  # matrix optimizer: hidden matrices to Muon, input layer, head and vectors to AdamW
        opt = do.Muon(do.muon_param_groups(net), lr=0.02)
    elif name == "sls":  # line search: step(closure)
        opt = do.SLS(net.parameters())
    elif name == "sophia_g":  # Sophia-G with its Gauss-Newton-Bartlett Hessian loop
        opt = sophia = do.SophiaG(net.parameters(), lr=3e-3, rho=0.05, bs=256)
    elif name == "mechanic":  # Mechanic learns the learning-rate scale of any base optimizer
        opt = do.mechanize(torch.optim.AdamW)(net.parameters(), lr=1e-2)
    else:
        raise ValueError(name)
    first = F.cross_entropy(net(x), y).item()
    for step in range(steps):
        if name == "sls":
            opt.step(lambda: F.cross_entropy(net(x), y))  # the loss; SLS back-propagates it itself
            continue
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
        if sophia is not None and step % 10 == 9:
            do.gnb_hessian_update(sophia, net(x))  # sample labels, backward, update_hessian
    last = F.cross_entropy(net(x), y).item()
    print(f"{name:<10} loss {first:.3f} -> {last:.3f}")
    return last / first


if __name__ == "__main__":
    for name in ("adamw", "muon", "sls", "sophia_g", "mechanic"):
        assert train(name) < 0.8, f"{name} did not train"
