r"""Matrix optimizers on sharded (FSDP2 / DTensor) and data-parallel parameters, with the per-matrix work
distributed across ranks.

Muon, SOAP and Shampoo precondition a *whole* matrix (Newton–Schulz on ``W``'s update, eigenbases of
``G Gᵀ`` and ``Gᵀ G``, inverse roots of Kronecker factors); FSDP2 (``torch.distributed.fsdp.fully_shard``)
gives every rank a row block of each matrix as a ``DTensor``.  :class:`ShardedOptimizer` wraps any descend
optimizer (by registry name) without changing it, in one of three modes:

``"owner"`` (default for optimizers whose update of one tensor depends on that tensor only: :data:`PER_TENSOR`)
    Each tensor ``i`` is *owned* by one rank ``o(i)`` (greedy longest-processing-time assignment on the cost
    ``rows·cols·min(rows, cols)`` of the 2-D view, the cost of Newton–Schulz / an eigendecomposition); per step::

        G_i = all-gather(grad shards of i),  W_i = all-gather(param shards of i)      (DTensor.full_tensor)
        on o(i):  W_i ← inner.step(W_i, G_i)         (the unmodified optimizer on whole matrices; state of i
                                                        lives on o(i) only: state memory ≈ 1/N per rank)
        W_i → all ranks (broadcast from o(i)),  each rank keeps its shard of W_i

    This is the design of distributed Shampoo (Shi et al. 2023, arXiv:2309.06497, Sec. 4: blocks assigned to
    ranks, search directions all-gathered) and of the distributed Muon implementations (KellerJordan/Muon's
    ``Muon``: parameters assigned round-robin, updates all-gathered; Moonshot's distributed Muon, Liu et al.
    2025, arXiv:2502.16982, Sec. 2.3: gather the full matrix, run NS, keep the local part).  With plain (DDP)
    parameters the gathers are skipped (every rank already has the all-reduced gradient) and only the
    per-matrix work is split.
``"replicate"`` (default for the other non-elementwise optimizers, e.g. FRUGAL, whose random subsets and
    block rotation couple the tensors of a group through one generator, and Mechanic's global tuner)
    Every rank gathers every tensor and runs the whole optimizer: correct, not cheaper.
``"local"`` (default for :data:`ELEMENTWISE` optimizers)
    The optimizer runs on each rank's shards directly (its state is sharded like the parameters).

In every mode the result equals the unsharded single-process step on the same gradients, bitwise: the inner
optimizer runs the same code on the same full tensors (owner/replicate), or the same coordinate-wise code on
a slice (local).  ``tests/distributed/test_sharded.py`` checks this on 2 and 3 gloo ranks in float64.

Checkpoints (``torch.distributed.checkpoint``): :meth:`ShardedOptimizer.checkpoint_state` is a flat dict of
tensors ``"<param name>|<state key>"`` — whole tensors on their owner (owner mode), replicated tensors
(replicate), ``DTensor`` shards (local) — that ``dcp.save`` writes from N ranks; :meth:`load_checkpoint`
reads it on M ranks, each rank loading the tensors its new partition owns.  Hyperparameter changes made after
construction (an LR scheduler) are not saved: re-create the scheduler as for any optimizer.

Deviations: a closure-driven optimizer (line searches) is refused in owner/replicate mode (the closure would
have to recompute gradients of the gathered copies); the gathers are all-gathers (an owner-only gather would
move less data; the all-gather is what ``DTensor.full_tensor`` offers on every backend).  Only 1-D device
meshes are supported (FSDP2 without HSDP).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from .._validate import check_choice, check_int
from ._comm import is_dtensor, local_chunk, rank_and_world

__all__ = ["ELEMENTWISE", "MODES", "PER_TENSOR", "ShardedOptimizer", "assign_owners", "default_mode"]

#: Registry names whose update of a tensor depends only on that tensor (owner mode is exact).
PER_TENSOR = ("muon", "soap", "shampoo", "scion")
#: Registry names whose update of a coordinate depends only on that coordinate (shards directly).
ELEMENTWISE = ("adamw", "nadamw", "lion", "adabelief")
MODES = ("owner", "replicate", "local")
_SEP = "|"


def default_mode(name: str) -> str:
    """``"local"`` for :data:`ELEMENTWISE`, ``"owner"`` for :data:`PER_TENSOR`, else ``"replicate"``."""
    return "local" if name in ELEMENTWISE else "owner" if name in PER_TENSOR else "replicate"


def _cost(shape: Sequence[int]) -> float:
    if len(shape) == 0:
        return 1.0
    rows = int(shape[0])
    cols = math.prod(shape[1:]) if len(shape) > 1 else 1
    return float(rows * cols * (min(rows, cols) if len(shape) > 1 else 1))


def assign_owners(shapes: Sequence[Sequence[int]], world_size: int) -> list[int]:
    """Owner rank of each tensor: longest processing time first on ``rows·cols·min(rows, cols)``, ties to the
    lower rank and the lower index (deterministic, so every rank computes the same assignment)."""
    check_int("world_size", world_size, 1)
    load = [0.0] * world_size
    owners = [0] * len(shapes)
    for i in sorted(range(len(shapes)), key=lambda j: (-_cost(shapes[j]), j)):
        r = min(range(world_size), key=lambda k: (load[k], k))
        owners[i] = r
        load[r] += _cost(shapes[i])
    return owners


def _groups(params: Iterable[Any]) -> list[dict[str, Any]]:
    items = list(params)
    if not items:
        raise ValueError("params must not be empty")
    if isinstance(items[0], dict):
        return [dict(g, params=list(g["params"])) for g in items]
    return [{"params": items}]


class ShardedOptimizer(torch.optim.Optimizer):
    """A descend optimizer on DTensor (FSDP2) or replicated (DDP) parameters; see the module docstring.

    Args:
        params: parameters or parameter groups (DTensors on a 1-D mesh, or plain tensors whose gradients are
            already the same on every rank, as after DDP's all-reduce).
        optimizer: a registry name (:func:`descend.optim.available`).
        mode: ``"owner"``, ``"replicate"`` or ``"local"`` (default: :func:`default_mode` of the name).
        names: one name per parameter (in group order) for checkpoint keys; default ``param<i>``.
        group: the process group (default: the world).
        **hyperparameters: passed to the optimizer's factory.
    """

    def __init__(self, params: Iterable[Any], optimizer: str, *, mode: str | None = None,
                 names: Sequence[str] | None = None, group: Any = None, **hyperparameters: Any) -> None:
        import descend.optim as do

        if not isinstance(optimizer, str) or optimizer not in do.available():
            raise ValueError(f"optimizer must be one of {do.available()}, got {optimizer!r}")
        mode = default_mode(optimizer) if mode is None else mode
        check_choice("mode", mode, MODES)
        spec = do.get(optimizer)
        if spec.requires_closure and mode != "local":
            raise ValueError(f"optimizer {optimizer!r} needs a closure, which mode {mode!r} cannot give it "
                             "(use mode='local' on replicated parameters)")
        groups = _groups(params)
        flat = [p for g in groups for p in g["params"]]
        if names is not None and (len(names) != len(flat) or len(set(names)) != len(names)):
            raise ValueError(f"names must be {len(flat)} distinct strings, one per parameter, got {len(names)}")
        self.names = list(names) if names is not None else [f"param{i}" for i in range(len(flat))]
        if any(_SEP in n for n in self.names):
            raise ValueError(f"names must not contain {_SEP!r}")
        self.mode, self.optimizer_name, self.process_group = mode, optimizer, group
        self.rank, self.world_size = rank_and_world(group)
        user_groups = [{k: v for k, v in g.items() if k != "params"} for g in groups]
        defaults = {k: v for k, v in spec.defaults.items()}
        defaults.update(hyperparameters)
        super().__init__(groups, defaults)
        self._flat: list[Any] = [p for g in self.param_groups for p in g["params"]]  # DTensors or tensors
        shapes = [tuple(p.shape) for p in self._flat]
        self.owners = (assign_owners(shapes, self.world_size) if mode == "owner"
                       else [self.rank] * len(self._flat))
        self._shadow: dict[int, torch.nn.Parameter] = {}
        with torch.no_grad():
            for i, p in enumerate(self._flat):
                if mode == "local":
                    local = p.to_local() if is_dtensor(p) else p
                    self._shadow[i] = torch.nn.Parameter(local.detach(), requires_grad=p.requires_grad)
                else:
                    full = p.full_tensor() if is_dtensor(p) else p.detach()
                    if self.owners[i] == self.rank:
                        self._shadow[i] = torch.nn.Parameter(full.detach().clone())
        inner_groups: list[dict[str, Any]] = []
        self._inner_of: list[int] = []  # outer group index of each inner group
        index = 0
        for gi, g in enumerate(self.param_groups):
            own = []
            for _ in g["params"]:
                if index in self._shadow:
                    own.append(self._shadow[index])
                index += 1
            if own:
                inner_groups.append({**user_groups[gi], "params": own})
                self._inner_of.append(gi)
        self.inner: torch.optim.Optimizer | None = (
            spec.create(inner_groups, **hyperparameters) if inner_groups else None)
        self._synced = [{k: v for k, v in self.param_groups[gi].items() if k != "params"} for gi in self._inner_of]
        # the inner optimizer's parameter order (global index of each), for its state dicts
        self._inner_order = [i for i in sorted(self._shadow)]

    # ------------------------------------------------------------------------------------------ step

    def _sync_hyperparameters(self) -> None:
        """Copy hyperparameters changed on the outer groups since the last step (an LR scheduler) inward."""
        if self.inner is None:
            return
        for k, gi in enumerate(self._inner_of):
            outer, seen = self.param_groups[gi], self._synced[k]
            for key, value in outer.items():
                if key != "params" and (key not in seen or not _same(seen[key], value)):
                    self.inner.param_groups[k][key] = value
                    seen[key] = value

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One step of the wrapped optimizer on whole tensors (owner/replicate) or on the shards (local)."""
        loss = None
        if closure is not None:
            if self.mode != "local":
                raise ValueError(f"closure is only supported in mode='local', not {self.mode!r}")
            with torch.enable_grad():
                loss = closure()
        self._sync_hyperparameters()
        if self.mode == "local":
            for i, p in enumerate(self._flat):
                g: Any = p.grad
                self._shadow[i].grad = None if g is None else (g.to_local() if is_dtensor(g) else g)
            if self.inner is not None:
                self.inner.step()
            return loss
        active = []
        for i, p in enumerate(self._flat):
            if p.grad is None:
                if i in self._shadow:
                    self._shadow[i].grad = None
                continue
            active.append(i)
            if is_dtensor(p):
                g, v = p.grad.full_tensor(), p.full_tensor()
            else:
                g, v = p.grad, p
            if i in self._shadow:
                self._shadow[i].copy_(v)
                self._shadow[i].grad = g.detach().clone()
        if self.inner is not None:
            self.inner.step()
        self._scatter(active)
        return loss

    def _scatter(self, active: Sequence[int]) -> None:
        bufs: dict[int, torch.Tensor] = {}
        works = []
        for i in active:
            p = self._flat[i]
            if self.mode == "owner" and self.world_size > 1:
                buf = (self._shadow[i].detach() if i in self._shadow
                       else torch.empty(tuple(p.shape), dtype=p.dtype, device=_device(p)))
                src = self.owners[i] if self.process_group is None else dist.get_global_rank(
                    self.process_group, self.owners[i])
                works.append(dist.broadcast(buf, src=src, group=self.process_group, async_op=True))
                bufs[i] = buf
            else:
                bufs[i] = self._shadow[i].detach()
        for w in works:
            if w is not None:
                w.wait()
        for i in active:
            p = self._flat[i]
            if is_dtensor(p):
                p.to_local().copy_(local_chunk(bufs[i], p))
            else:
                p.copy_(bufs[i])

    # ------------------------------------------------------------------------------------------ memory

    def state_bytes(self) -> int:
        """Bytes of optimizer state held on this rank (the inner optimizer's state tensors)."""
        if self.inner is None:
            return 0
        return sum(v.numel() * v.element_size() for st in self.inner.state.values() for v in st.values()
                   if isinstance(v, torch.Tensor))

    def shadow_bytes(self) -> int:
        """Bytes of the whole-tensor working copies this rank keeps (owner/replicate modes; 0 in local)."""
        if self.mode == "local":
            return 0
        return sum(s.numel() * s.element_size() for s in self._shadow.values())

    # ------------------------------------------------------------------------------------------ checkpoints

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The state as a flat dict of tensors for ``torch.distributed.checkpoint.save`` (see the module doc)."""
        out: dict[str, torch.Tensor] = {}
        if self.inner is None:
            return out
        for i in self._inner_order:
            st = self.inner.state.get(self._shadow[i], {})
            p = self._flat[i]
            for key, value in st.items():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"state {key!r} of {self.names[i]} is a {type(value).__name__}; only tensor "
                                    "state can be checkpointed")
                if self.mode == "local" and is_dtensor(p) and value.ndim > 0 and value.shape == p.to_local().shape:
                    from torch.distributed.tensor import DTensor

                    value = DTensor.from_local(value, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
                out[f"{self.names[i]}{_SEP}{key}"] = value
        return out

    def load_checkpoint(self, checkpoint_id: Any, prefix: str = "optim") -> None:
        """Load the state saved by ``dcp.save({prefix: opt.checkpoint_state(), ...}, checkpoint_id=...)`` on any
        number of ranks (every rank must call it)."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        meta = dcp.FileSystemReader(checkpoint_id).read_metadata().state_dict_metadata
        lead = f"{prefix}."
        by_name: dict[str, dict[str, TensorStorageMetadata]] = {}
        for fqn, m in meta.items():
            if fqn.startswith(lead) and _SEP in fqn and isinstance(m, TensorStorageMetadata):
                name, key = fqn[len(lead):].split(_SEP, 1)
                by_name.setdefault(name, {})[key] = m
        template: dict[str, torch.Tensor] = {}
        for i in self._inner_order:
            p = self._flat[i]
            for key, m in by_name.get(self.names[i], {}).items():
                dtype = m.properties.dtype
                if self.mode == "local" and is_dtensor(p) and len(m.size) > 0 and tuple(m.size) == tuple(p.shape):
                    from torch.distributed.tensor import DTensor

                    local = torch.empty(p.to_local().shape, dtype=dtype)
                    template[f"{self.names[i]}{_SEP}{key}"] = DTensor.from_local(
                        local, p.device_mesh, p.placements, shape=p.shape, stride=p.stride())
                else:
                    template[f"{self.names[i]}{_SEP}{key}"] = torch.empty(tuple(m.size), dtype=dtype)
        wrapped = {prefix: template}
        dcp.load(wrapped, checkpoint_id=checkpoint_id)
        if self.inner is None:
            return
        state: dict[int, dict[str, torch.Tensor]] = {}
        for k, i in enumerate(self._inner_order):
            entries = {}
            for key in by_name.get(self.names[i], {}):
                t: Any = wrapped[prefix][f"{self.names[i]}{_SEP}{key}"]
                entries[key] = t.to_local() if is_dtensor(t) else t
            if entries:
                state[k] = entries
        sd = self.inner.state_dict()
        self.inner.load_state_dict({"state": state, "param_groups": sd["param_groups"]})


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # tensors with several elements
        return a is b


def _device(p: Any) -> torch.device:
    return torch.device(p.device_mesh.device_type) if is_dtensor(p) else p.device


def state_bytes_of(opt: torch.optim.Optimizer) -> int:
    """Bytes of tensor state of a plain optimizer (for comparisons with :meth:`ShardedOptimizer.state_bytes`)."""
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor))


def owned(opt: ShardedOptimizer) -> Mapping[str, int]:
    """Owner rank of each parameter name."""
    return dict(zip(opt.names, opt.owners, strict=True))
