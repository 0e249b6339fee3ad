"""Per-rank bodies of tests/distributed/test_matrix.py (run in spawned gloo processes, float64).

Each returns a JSON dict; the comparisons against the single-process reference run inside the ranks (the
reference is recomputed on every rank: it is cheap and needs no communication).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

import descend.optim as do
from descend.distributed import ShardedOptimizer, deterministic_allreduce_hook, ordered_mean
from descend.distributed.sharded import state_bytes_of

BATCH = 12  # divisible by 2 and 3
STEPS = 3
DT = torch.float64


def _model(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5, bias=bias, dtype=DT), nn.Tanh(), nn.Linear(5, 4, bias=bias, dtype=DT))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 6, generator=g, dtype=DT), torch.randn(BATCH, 4, generator=g, dtype=DT)


def _flat(params: Any) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


def _same_on_all_ranks(x: torch.Tensor) -> bool:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return all(torch.equal(parts[0], q) for q in parts[1:])


def _ref_closure(model: nn.Module, opt: torch.optim.Optimizer, world: int) -> Any:
    """Single process: gradient accumulation over the ranks' micro-batches in rank order, then / world —
    the arithmetic of deterministic_allreduce_hook."""
    X, Y = _data()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        losses = []
        with torch.enable_grad():
            for xs, ys in zip(X.chunk(world), Y.chunk(world), strict=True):
                loss = nn.functional.mse_loss(model(xs), ys)
                loss.backward()
                losses.append(loss.detach())
        for p in model.parameters():
            if p.grad is not None:
                p.grad.div_(world)
        total = losses[0].clone()
        for x in losses[1:]:
            total += x
        return total.div_(world)
    return closure


def _ddp_closure(ddp: nn.Module, opt: torch.optim.Optimizer, rank: int, world: int) -> Any:
    X, Y = _data()
    xs, ys = X.chunk(world)[rank], Y.chunk(world)[rank]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        with torch.enable_grad():
            loss = nn.functional.mse_loss(ddp(xs), ys)
            loss.backward()
        return ordered_mean(loss.detach())  # the global loss: line searches decide on the same number
    return closure


def _drive(opt: torch.optim.Optimizer, closure: Any, needs_closure: bool, t: int) -> None:
    if needs_closure:
        opt.step(closure)
    else:
        closure()
        opt.step()
        if hasattr(opt, "update_hessian") and t % 2 == 1:
            opt.update_hessian()


def ddp_all(rank: int, world: int, names: list[str], hook: bool = True) -> dict[str, Any]:
    """Every registered optimizer under DDP vs the single-process step (and the owner-mode wrapper for the
    matrix optimizers, whose Newton–Schulz/eigh work is then split across ranks)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    out: dict[str, Any] = {}
    cases = [(n, None) for n in names] + [(n, "owner") for n in ("muon", "soap", "shampoo") if n in names]
    for name, mode in cases:
        spec = do.get(name)
        model = _model(bias=not spec.matrix_only)
        ref = copy.deepcopy(model)
        ddp = DDP(model)
        if hook:
            ddp.register_comm_hook(None, deterministic_allreduce_hook)
        opt: torch.optim.Optimizer = (spec.create(ddp.parameters()) if mode is None
                                      else ShardedOptimizer(list(ddp.parameters()), name, mode=mode))
        ref_opt = spec.create(ref.parameters())
        diffs, same_ranks = [], True
        for t in range(STEPS):
            _drive(opt, _ddp_closure(ddp, opt, rank, world), spec.requires_closure, t)
            _drive(ref_opt, _ref_closure(ref, ref_opt, world), spec.requires_closure, t)
            a, b = _flat(model.parameters()), _flat(ref.parameters())
            diffs.append(float((a - b).abs().max() / b.abs().max()))
            same_ranks = same_ranks and _same_on_all_ranks(a)
        key = name if mode is None else f"{name}[{mode}]"
        out[key] = {"rel_diff": max(diffs), "ranks_equal": same_ranks,
                    "moved": float((_flat(model.parameters()) - _flat(_model(not spec.matrix_only).parameters()))
                                   .abs().max())}
    return out


# ------------------------------------------------------------------------------------------ FSDP2


def _synthetic_grads(shapes: list[torch.Size], t: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + t)
    return [torch.randn(s, generator=g, dtype=DT) for s in shapes]


def _sharded_model() -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    m = _model()
    fully_shard(m[0])
    fully_shard(m[2])
    fully_shard(m)
    return m


def _set_grads(params: list[Any], grads: list[torch.Tensor]) -> None:
    from torch.distributed.tensor import distribute_tensor

    for p, g in zip(params, grads, strict=True):
        p.grad = distribute_tensor(g, p.device_mesh, p.placements, src_data_rank=None)


def _full(params: list[Any]) -> torch.Tensor:
    return torch.cat([p.full_tensor().detach().reshape(-1) for p in params])


def fsdp_all(rank: int, world: int, names: list[str], ckpt: str | None, resume: str | None) -> dict[str, Any]:
    """FSDP2 parameters: each optimizer (default mode) vs the unsharded step on the same gradients; an
    end-to-end FSDP backward for Muon; DCP save (ckpt) and resume on another world size (resume)."""
    out: dict[str, Any] = {}
    for name in names:
        m = _sharded_model()
        ref = _model()
        params, ref_params = list(m.parameters()), list(ref.parameters())
        names_ = [n for n, _ in m.named_parameters()]
        opt = ShardedOptimizer(params, name, names=names_)
        ref_opt = do.create(name, ref_params)
        shapes = [p.shape for p in ref_params]
        equal = True
        for t in range(STEPS):
            grads = _synthetic_grads(shapes, t)
            _set_grads(params, grads)
            for p, g in zip(ref_params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
            ref_opt.step()
            equal = equal and torch.equal(_full(params), _flat(ref_params))
        sb = torch.tensor([float(opt.state_bytes())], dtype=DT)
        per_rank = [torch.empty_like(sb) for _ in range(world)]
        dist.all_gather(per_rank, sb)
        out[name] = {"equal": equal, "mode": opt.mode, "state_bytes": [float(x) for x in per_rank],
                     "single_state_bytes": state_bytes_of(ref_opt)}

    # end to end: a real FSDP backward (reduce-scatter of the per-rank gradients) then the owner-mode step
    m = _sharded_model()
    ref = _model()
    opt = ShardedOptimizer(list(m.parameters()), "muon", ns_dtype="float64")
    ref_opt = do.create("muon", ref.parameters(), ns_dtype="float64")
    X, Y = _data()
    xs, ys = X.chunk(world)[rank], Y.chunk(world)[rank]
    diffs = []
    for _ in range(STEPS):
        opt.zero_grad()
        nn.functional.mse_loss(m(xs), ys).backward()
        opt.step()
        _ref_closure(ref, ref_opt, world)()
        ref_opt.step()
        a, b = _full(list(m.parameters())), _flat(ref.parameters())
        diffs.append(float((a - b).abs().max() / b.abs().max()))
    out["muon_end_to_end"] = {"rel_diff": max(diffs)}

    out["checkpoint"] = _checkpoint(rank, world, ckpt, resume)
    return out


CKPT_OPTIMIZERS = ("muon", "soap", "adamw")


def _checkpoint(rank: int, world: int, ckpt: str | None, resume: str | None) -> dict[str, Any]:
    """Save after STEPS steps (ckpt), or load a checkpoint written on another world size and take STEPS more
    steps (resume); the resumed trajectory is compared with 2·STEPS uninterrupted single-process steps."""
    import torch.distributed.checkpoint as dcp

    res: dict[str, Any] = {}
    for name in CKPT_OPTIMIZERS:
        m = _sharded_model()
        params = list(m.parameters())
        opt = ShardedOptimizer(params, name, names=[n for n, _ in m.named_parameters()])
        shapes = [p.shape for p in _model().parameters()]
        if ckpt is not None:
            for t in range(STEPS):
                _set_grads(params, _synthetic_grads(shapes, t))
                opt.step()
            dcp.save({"model": m.state_dict(), "optim": opt.checkpoint_state()}, checkpoint_id=f"{ckpt}/{name}")
            res[name] = {"saved": True}
        if resume is not None:
            state = {"model": m.state_dict()}
            dcp.load(state, checkpoint_id=f"{resume}/{name}")
            m.load_state_dict(state["model"])
            opt.load_checkpoint(f"{resume}/{name}")
            for t in range(STEPS, 2 * STEPS):
                _set_grads(params, _synthetic_grads(shapes, t))
                opt.step()
            ref = _model()
            ref_params = list(ref.parameters())
            ref_opt = do.create(name, ref_params)
            for t in range(2 * STEPS):
                for p, g in zip(ref_params, _synthetic_grads(shapes, t), strict=True):
                    p.grad = g
                ref_opt.step()
            res[name] = {"resumed_equal": bool(torch.equal(_full(params), _flat(ref_params)))}
    return res


def everything(rank: int, world: int, names: list[str], ckpt: str | None, resume: str | None) -> dict[str, Any]:
    """One spawned group per world size runs all scenarios (process start-up dominates the test time)."""
    return {"ddp": ddp_all(rank, world, names), "ddp_ring": ddp_all(rank, world, ["adamw", "muon"], hook=False),
            "fsdp": fsdp_all(rank, world, list(FSDP_OPTIMIZERS), ckpt, resume)}


FSDP_OPTIMIZERS = ("muon", "soap", "shampoo", "frugal", "scion", "adamw", "nadamw", "lion", "adabelief")
