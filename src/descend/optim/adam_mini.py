"""Adam-mini: Adam with one second-moment value per parameter block.

Paper: Yushun Zhang, Congliang Chen, Ziniu Li, Tian Ding, Chenwei Wu, Diederik P. Kingma, Yinyu Ye, Zhi-Quan Luo,
Ruoyu Sun (2024), "Adam-mini: Use Fewer Learning Rates To Gain More", arXiv:2406.16793 (ICLR 2025).

Algorithm (paper, Algorithm 1 "Adam-mini" with the partition of Algorithm 3 / Section 2.3, "Principle 1": the
blocks are the smallest dense sub-blocks of the Hessian).  Per parameter tensor ``W`` with gradient ``g``, split
into blocks ``b = 1..B`` (consecutive elements in row-major order, see below)::

    m   <- β1 m + (1-β1) g                                  # element-wise, as in Adam
    v_b <- β2 v_b + (1-β2) · mean_{i ∈ b}(g_i²)              # ONE number per block
    W   <- W · (1 - lr·wd)                                  # decoupled decay, before the update
    W_i <- W_i - lr · m_i / ((1-β1^t) · (sqrt(v_b)/sqrt(1-β2^t) + eps))    for i in block b

The partitions (a group's ``partition``):

* ``"row"`` — one block per row of ``W.view(W.shape[0], -1)``: per output neuron of a linear layer or
  convolution (value, attention output projection and MLP matrices), per token of an embedding ``[vocab, d]``
  and of the output head ``[vocab, d]``;
* ``"head"`` — blocks of ``head_numel`` consecutive elements: per attention head of a query or key matrix
  ``[n_heads·d_head, d]`` (``head_numel = d_head·d``; with grouped-query attention the key matrix has
  ``n_kv_heads`` such blocks);
* ``"qkv"`` — a packed ``[3d, d]`` query/key/value matrix (``nn.MultiheadAttention.in_proj_weight``, a GPT's
  ``qkv`` linear): its first two thirds per head (``head_numel``), its last third per row;
* ``"tensor"`` — the whole tensor is one block (normalisation gains; the paper's default PyTorch partition);
* ``"elementwise"`` — every element is its own block: plain AdamW (the reference's treatment of biases);
* ``"auto"`` (default) — ``"row"`` for tensors with ``ndim >= 2``, ``"tensor"`` for vectors and scalars.

:func:`adam_mini_param_groups` derives the partition from a model's **module structure** (module types and
:func:`descend.optim.roles.param_roles`), not from parameter names: embeddings, the head and every linear /
convolution weight per row, ``nn.MultiheadAttention`` per head, biases element-wise, normalisation gains and
other vectors one block each (and no weight decay for vectors).  Which of a custom attention module's linear
layers are queries and keys cannot be read off their types; name them with ``query_key=`` (separate q / k
layers) or ``qkv=`` (a packed layer) and give ``n_heads``.  :func:`adam_mini_reference_groups` applies the
reference's name-based rules instead (the fixtures are replayed with it).

State per tensor: ``exp_avg`` (element-wise) and ``exp_avg_sq`` (one value per block) — about half of AdamW's
state memory for matrices (tests/optim/test_adam_mini.py measures it).

Defaults (the reference's): ``lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0``.  Wen et al. 2025
(130M, 1x Chinchilla) tuned lr 8e-3, betas (0.9, 0.98), eps 1e-15, wd 0.1.

Reference: ``adam-mini==1.1.1`` (``Adam_mini``, the authors' package, zyushun/Adam-mini).  Checked against its
recorded trajectories (``adam_mini__*.json``: a toy transformer's q/k/v/o/MLP/embedding/head/bias/norm blocks,
Llama names with grouped-query attention, weight decay with gradients ~3e-7 where ``eps`` matters) with
rtol 1e-10, atol 1e-12 in float64, and live against the installed package (tests/optim/test_adam_mini.py).

Fast path: per block segment, one math function, :func:`adam_mini_segment` (:func:`adam_mini_moments`, the
block-mean of g² and the first moment, then :func:`adam_mini_apply`, decay and parameter update), run eagerly
or compiled by ``torch.compile`` (``fused``; default ``None``: compiled where it works, eager with one warning
where not; :mod:`descend.optim._fused`); a group's segments go into one compiled call.  Compiled and eager agree
to rounding (float64, rtol 1e-13, tests/optim/test_fused.py).

Deviations from the reference:

* The partition is a per-group option (derived from module structure by :func:`adam_mini_param_groups`);
  the reference matches substrings of lower-cased parameter names (:func:`adam_mini_reference_groups`
  reproduces that, first rule wins: ``bias`` → element-wise; q/k names → per head; embedding, output,
  value, MLP, attention-projection names → per row; anything else → one block).
* ``"row"`` views tensors with ``ndim > 2`` as ``[shape[0], -1]`` (one block per output channel); the reference
  averages over dim 1 only.  Vectors with ``"row"`` are element-wise (the reference fails on them).
* No distributed all-reduce of the block sums (the reference's model-sharding branch); a single process.
* Invalid values raise ``ValueError`` naming the argument; ``verbose`` printing is not provided.
* The step counter is a float64 tensor in each parameter's state (the reference: a Python int).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused, copy_back
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_choice, check_float, check_int
from .registry import Categorical, FloatRange, OptimizerSpec, register
from .roles import Role, param_roles

__all__ = ["PARTITIONS", "AdamMini", "adam_mini_apply", "adam_mini_moments", "adam_mini_param_groups",
           "adam_mini_reference_groups", "adam_mini_segment", "blocks_of"]

PARTITIONS = ("auto", "row", "head", "qkv", "tensor", "elementwise")

Segments = tuple[tuple[int, int], ...]
"""A partition of a flattened tensor into consecutive blocks: ``((block_size, n_blocks), ...)`` in order."""


def blocks_of(shape: Sequence[int], partition: str, head_numel: int | None = None) -> Segments:
    """The blocks of a tensor of ``shape`` under ``partition`` (``ValueError`` if the shape does not fit)."""
    numel = math.prod(shape)
    if partition == "auto":
        partition = "row" if len(shape) >= 2 else "tensor"
    if partition == "elementwise" or (partition == "row" and len(shape) < 2):
        return ((1, numel),)
    if partition == "tensor":
        return ((numel, 1),)
    if partition == "row":
        return ((numel // shape[0] if shape[0] else 0, shape[0]),)
    if head_numel is None:
        raise ValueError(f"partition {partition!r} needs head_numel (elements per attention head), got None")
    if partition == "head":
        if numel % head_numel:
            raise ValueError(f"partition 'head': a tensor of shape {tuple(shape)} ({numel} elements) does not split "
                             f"into blocks of head_numel={head_numel}")
        return ((head_numel, numel // head_numel),)
    # qkv: the first two thirds of the rows per head, the last third per row
    if len(shape) != 2 or shape[0] % 3 or (2 * numel // 3) % head_numel:
        raise ValueError(f"partition 'qkv' needs a [3d, d'] matrix whose first 2d rows split into blocks of "
                         f"head_numel={head_numel}, got shape {tuple(shape)}")
    return ((head_numel, 2 * numel // 3 // head_numel), (shape[1], shape[0] // 3))


def _n_blocks(segments: Segments) -> int:
    return sum(n for _, n in segments)


def adam_mini_moments(g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, beta1: float, beta2: float) -> None:
    """Adam-mini's moments of one segment, in place (the math of the eager and the compiled path).

    ``g``, ``m``: the segment's elements as ``[n, size]`` (contiguous), block ``b`` being row ``b``; ``v``: the
    ``n`` block second moments::

        v_b <- β2 v_b + (1-β2) mean_{i ∈ b} g_i²;   m <- m + (1-β1)(g - m)

    Compiled (:mod:`descend.optim._fused`): one loop over ``g`` and ``m``.
    """
    v.mul_(beta2).add_((g * g).sum(dim=1) * ((1.0 - beta2) / g.shape[1]))
    m.lerp_(g, 1.0 - beta1)


def adam_mini_apply(w: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, decay: float, step_size: float,
                    sqrt_bc2: float, eps: float) -> None:
    """Adam-mini's parameter update of one segment, in place, after :func:`adam_mini_moments`::

        w_i <- decay · w_i - step_size · m_i / (sqrt(v_b) / sqrt_bc2 + eps)

    (``decay = 1 - lr·wd``, ``step_size = lr / (1-β1^t)``, ``sqrt_bc2 = sqrt(1-β2^t)``).  Compiled: one loop
    over ``w`` and ``m``.
    """
    factor = step_size / (v.sqrt() / sqrt_bc2 + eps)
    w.mul_(decay)
    w.sub_(m * factor.view(-1, 1))


def adam_mini_segment(w: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, beta1: float,
                      beta2: float, decay: float, step_size: float, sqrt_bc2: float, eps: float) -> None:
    """One Adam-mini step of one segment: :func:`adam_mini_moments`, then :func:`adam_mini_apply`.

    One function, so that the compiled form is one kernel per segment list.  Inside it inductor (torch 2.13)
    emits two loops over each segment, not one per block row: the row reductions of ``g²``, then the update,
    which reads ``g`` again (from the L3 cache while the segment fits there; 6 memory streams in all: ``g``,
    then ``w, g, m`` read, ``w, m`` written; the generated C++ was read to check this).  The two functions
    compiled apart re-read ``m`` and ``w`` from memory as well (three side-by-side runs on
    ``benchmarks/step_time.py``'s shapes, one thread, in both orders: 1.31-1.72x fused AdamW for the two,
    1.14-1.45x for this form, 10-16 % less time).
    """
    adam_mini_moments(g, m, v, beta1=beta1, beta2=beta2)
    adam_mini_apply(w, m, v, decay=decay, step_size=step_size, sqrt_bc2=sqrt_bc2, eps=eps)


def _segments_compile(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether a segment qualifies for the compiled path: contiguous, its elements (all but the last
    tensor, the block moments) of one size ≥ 2."""
    *elems, v = tensors
    assert v is not None and all(t is not None for t in elems)
    n = elems[0].numel()  # type: ignore[union-attr]
    return n >= 2 and all(t.numel() == n and t.is_contiguous() for t in elems) and v.is_contiguous()  # type: ignore[union-attr]


class AdamMini(DescendOptimizer):
    """Adam-mini (Zhang et al. 2024): element-wise first moment, one second moment per block.

    Args:
        params: parameters or parameter groups; a group may set every option below (the builders
            :func:`adam_mini_param_groups` and :func:`adam_mini_reference_groups` set ``partition``,
            ``head_numel`` and ``weight_decay`` per group).
        lr: learning rate, ``>= 0``.
        betas: ``(beta1, beta2)`` in ``[0, 1)``.
        eps: added to ``sqrt(v)/sqrt(1-beta2^t)``, ``>= 0``.
        weight_decay: decoupled decay ``W *= 1 - lr·wd`` before the update, ``>= 0``.
        partition: one of :data:`PARTITIONS` (see the module docstring); ``"auto"``: per row for matrices,
            one block for vectors.
        head_numel: elements per attention head (``d_head · d``), for ``"head"`` and ``"qkv"``.
        fused: ``None`` (default) compiled where ``torch.compile`` works (one compiled call per group of
            segments, :func:`adam_mini_segment`), ``True`` always, ``False`` eager.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        partition: str = "auto",
        head_numel: int | None = None,
        fused: bool | None = None,
    ) -> None:
        self._fused = check_fused(fused)
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "partition": partition,
                    "head_numel": head_numel}
        _check_hyperparameters(defaults)
        if partition in ("head", "qkv") and head_numel is None:
            raise ValueError(f"partition {partition!r} needs head_numel (elements per attention head), got None")
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
    _CONFIG_ATTRS = ("_fused",)

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The one validation of a group (constructor defaults, ``add_param_group``, ``load_state_dict``),
        the parameters' shapes against the partition included; ``betas`` is stored as a tuple."""
        betas = _check_hyperparameters(group)
        for p in group["params"]:
            blocks_of(p.shape, group["partition"], group["head_numel"])
        return {"betas": betas}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "AdamMini")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of segments that share scalars
        for group in self.param_groups:
            lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
            beta1, beta2 = (float(b) for b in group["betas"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                dtype = state_dtype(p)
                segments = blocks_of(p.shape, group["partition"], group["head_numel"])
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros(_n_blocks(segments), dtype=dtype, device=p.device)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                w = p if p.dtype == dtype else p.to(dtype)
                state["step"] += 1
                t = float(state["step"].item())
                scalars = {"beta1": beta1, "beta2": beta2, "decay": 1.0 - lr * wd,
                           "step_size": lr / (1.0 - beta1**t), "sqrt_bc2": math.sqrt(1.0 - beta2**t), "eps": eps}
                m = state["exp_avg"]
                # the segments are ranges of the row-major elements: work on contiguous copies where needed
                w_c, m_c, g_c = w.contiguous(), m.contiguous(), g.contiguous()
                wf, mf, gf, v = w_c.view(-1), m_c.view(-1), g_c.view(-1), state["exp_avg_sq"]
                start, b = 0, 0
                for size, n in segments:
                    end = start + size * n
                    ws, gs, ms = (f[start:end].view(n, size) for f in (wf, gf, mf))
                    batch.add(adam_mini_segment, (ws, gs, ms, v[b:b + n]), scalars, qualifies=_segments_compile,
                              keep_shape=True)
                    start, b = end, b + n
                for work, out in ((w_c, w), (m_c, m), (w, p)):
                    if work is not out:
                        batch.then(copy_back(out, work))
        batch.run()
        return loss


def _check_hyperparameters(group: Mapping[str, Any]) -> tuple[float, ...]:
    check_float("lr", group["lr"], 0.0)
    betas = check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_choice("partition", group["partition"], PARTITIONS)
    if group["head_numel"] is not None:
        check_int("head_numel", group["head_numel"], 1)
    return betas


# ------------------------------------------------------------------------------------------ partitions


def _group(params: list[Any], partition: str, head_numel: int | None, weight_decay: float | None
           ) -> dict[str, Any]:
    g: dict[str, Any] = {"params": params, "partition": partition, "head_numel": head_numel}
    if weight_decay is not None:
        g["weight_decay"] = weight_decay
    return g


def _collect(assigned: Iterable[tuple[Any, str, int | None, bool]], weight_decay: float | None
             ) -> list[dict[str, Any]]:
    """Groups of ``(param, partition, head_numel, decays)`` with equal options, in first-appearance order."""
    buckets: dict[tuple[str, int | None, bool], list[Any]] = {}
    for p, partition, head_numel, decays in assigned:
        buckets.setdefault((partition, head_numel, decays), []).append(p)
    return [_group(ps, part, hn, weight_decay if decays else 0.0) for (part, hn, decays), ps in buckets.items()]


def _heads_of(items: Iterable[nn.Module | nn.Parameter], what: str) -> list[nn.Parameter]:
    out = []
    for item in items:
        weight = getattr(item, "weight", None) if isinstance(item, nn.Module) else item
        if isinstance(weight, nn.Parameter):
            out.append(weight)
        else:
            raise ValueError(f"{what} must hold linear modules or their weight parameters, got {type(item).__name__}")
    return out


def adam_mini_param_groups(
    model: nn.Module,
    *,
    n_heads: int | None = None,
    head_dim: int | None = None,
    query_key: Iterable[nn.Module | nn.Parameter] = (),
    qkv: Iterable[nn.Module | nn.Parameter] = (),
    weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups for :class:`AdamMini` with the paper's partition, derived from ``model``'s modules.

    Rules (the first that applies wins):

    1. ``nn.MultiheadAttention``: ``in_proj_weight`` → ``"qkv"``, ``q_proj_weight``/``k_proj_weight`` →
       ``"head"`` (``head_numel = d_head · columns``, ``d_head = embed_dim // num_heads``), ``v_proj_weight``
       → ``"row"``; its ``out_proj`` is an ``nn.Linear`` (rule 4).
    2. weights named in ``qkv`` (packed ``[3d, d]`` linear layers) → ``"qkv"``; in ``query_key`` (separate
       query and key layers) → ``"head"``; both with ``head_numel = head_dim · d`` (``head_dim`` defaults to
       ``d // n_heads``, ``d`` = the layer's input features); ``n_heads`` is then required.
    3. vectors (:data:`~descend.optim.roles.Role.VECTOR`): biases of linear / convolution / attention modules →
       ``"elementwise"``; normalisation gains and other vectors → ``"tensor"``; none of them decays.
    4. everything else — embeddings (per token), the output head (per token), hidden and input linear /
       convolution weights (per output neuron / channel), other matrices — → ``"row"``.

    ``weight_decay``: the decay of the decayed groups (``None``: the optimizer's).  Returns one group per
    (partition, head_numel, decay) combination, each with its ``partition`` and ``head_numel``; parameters
    with ``requires_grad=False`` are left out.
    """
    if weight_decay is not None:
        check_float("weight_decay", weight_decay, 0.0)
    qk_params, packed = _heads_of(query_key, "query_key"), _heads_of(qkv, "qkv")
    if (qk_params or packed) and n_heads is None:
        raise ValueError("n_heads is required with query_key / qkv (to split them into heads)")
    if n_heads is not None:
        check_int("n_heads", n_heads, 1)
    if head_dim is not None:
        check_int("head_dim", head_dim, 1)
    special: dict[int, tuple[str, int | None]] = {}
    for module in model.modules():
        if isinstance(module, nn.MultiheadAttention):
            d_head = module.embed_dim // module.num_heads
            if module.in_proj_weight is not None:
                special[id(module.in_proj_weight)] = ("qkv", d_head * module.in_proj_weight.shape[1])
            for name in ("q_proj_weight", "k_proj_weight"):
                w = getattr(module, name, None)
                if w is not None:
                    special[id(w)] = ("head", d_head * w.shape[1])
            if getattr(module, "v_proj_weight", None) is not None:
                special[id(module.v_proj_weight)] = ("row", None)
    for kind, params in (("head", qk_params), ("qkv", packed)):
        for w in params:
            if w.ndim != 2:
                raise ValueError(f"{'query_key' if kind == 'head' else 'qkv'}: expected 2-D weights, got shape "
                                 f"{tuple(w.shape)}")
            assert n_heads is not None
            d_head = head_dim if head_dim is not None else w.shape[1] // n_heads
            if d_head < 1:
                raise ValueError(f"n_heads={n_heads} exceeds the input features of a weight of shape "
                                 f"{tuple(w.shape)}")
            special[id(w)] = (kind, d_head * w.shape[1])
    owners: dict[int, nn.Module] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners.setdefault(id(p), module)
    roles = param_roles(model)
    assigned = []
    for p, role in roles.items():
        if not p.requires_grad:
            continue
        if id(p) in special:
            partition, head_numel = special[id(p)]
            assigned.append((p, partition, head_numel, True))
        elif role is Role.VECTOR:
            owner = owners.get(id(p))
            is_bias = owner is not None and any(p is b for n, b in owner.named_parameters(recurse=False)
                                                if "bias" in n)
            assigned.append((p, "elementwise" if is_bias else "tensor", None, False))
        else:
            assigned.append((p, "row", None, True))
    for p, partition, head_numel, _ in assigned:
        blocks_of(p.shape, partition, head_numel)  # a shape that does not fit fails here, naming it
    return _collect(assigned, weight_decay)


# the reference's keyword sets (adam-mini==1.1.1), in the order its step() tests them
_REF_ELEMENTWISE = ("bias",)
_REF_HEAD = ("k_proj", "q_proj", "wq", "wk", "query", "key")
_REF_ROW = ("embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value", "feed_forward",
            "linear", "mlp", "o_proj", "wo", "attn.proj")
_REF_NO_DECAY = ("norm", "ln", "bias")


def adam_mini_reference_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    *,
    dim: int = 2048,
    n_heads: int = 32,
    n_kv_heads: int | None = None,
    weight_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups with the reference's **name-based** partition (``adam-mini==1.1.1``'s rules).

    Names are lower-cased; the first matching rule wins: a name containing ``bias`` → element-wise; ``k_proj``,
    ``q_proj``, ``wq``, ``wk``, ``query``, ``key`` → per head (blocks of ``dim²/n_heads`` elements);
    ``embed``, ``embd``, ``wte``, ``lm_head``, ``output``, ``final_layer``, ``v_proj``, ``wv``, ``value``,
    ``feed_forward``, ``linear``, ``mlp``, ``o_proj``, ``wo``, ``attn.proj`` → per row; anything else → one
    block.  Names containing ``norm``, ``ln`` or ``bias`` get no weight decay.  For migrating code written
    against the reference, and for replaying its fixtures; :func:`adam_mini_param_groups` derives the
    partition from module structure instead.
    """
    check_int("dim", dim, 1)
    check_int("n_heads", n_heads, 1)
    if n_kv_heads is not None:
        check_int("n_kv_heads", n_kv_heads, 1)
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads ({n_heads}) must be a multiple of n_kv_heads ({n_kv_heads})")
    if (dim * dim) % n_heads:
        raise ValueError(f"dim² ({dim * dim}) must be a multiple of n_heads ({n_heads})")
    head_numel = dim * dim // n_heads
    assigned = []
    for raw, p in named_parameters:
        if not p.requires_grad:
            continue
        name = raw.lower()
        if any(k in name for k in _REF_ELEMENTWISE):
            partition, hn = "elementwise", None
        elif any(k in name for k in _REF_HEAD):
            partition, hn = "head", head_numel
        elif any(k in name for k in _REF_ROW):
            partition, hn = "row", None
        else:
            partition, hn = "tensor", None
        blocks_of(p.shape, partition, hn)
        assigned.append((p, partition, hn, not any(k in name for k in _REF_NO_DECAY)))
    return _collect(assigned, weight_decay)


# ------------------------------------------------------------------------------------------ registry


def _module_groups(model: nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: :func:`adam_mini_param_groups` (vectors without decay, the rest with the tuned one)."""
    return adam_mini_param_groups(model, weight_decay=float(hp["weight_decay"]))


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> AdamMini:
    hp = dict(fx["hyperparameters"])
    hp.pop("verbose", None)
    n_kv = hp.pop("n_kv_heads", None)
    groups = adam_mini_reference_groups(
        [(n, params[n]) for n in fx["param_order"]],  # type: ignore[misc]
        dim=int(hp.pop("dim", 2048)), n_heads=int(hp.pop("n_heads", 32)),
        n_kv_heads=None if n_kv is None else int(n_kv), weight_decay=float(hp.get("weight_decay", 0.0)))
    hp["betas"] = tuple(hp.get("betas", (0.9, 0.999)))
    return AdamMini(groups, **hp)


register(OptimizerSpec(
    name="adam_mini",
    factory=AdamMini,
    paper="Zhang, Chen, Li, Ding, Wu, Kingma, Ye, Luo, Sun 2024, Adam-mini: Use Fewer Learning Rates To Gain More, "
          "arXiv:2406.16793",
    reference="adam-mini==1.1.1 (Adam_mini)",
    # Wen et al. 2025 (130M, 1x Chinchilla): lr 8e-3, betas (0.9, 0.98), eps 1e-15, wd 0.1, warmup 2000
    search_space={
        "lr": FloatRange(3e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.95), (0.9, 0.98), (0.95, 0.98), (0.9, 0.999))),
        "eps": Categorical((1e-15, 1e-10, 1e-8)),
        "weight_decay": Categorical((0.0, 0.1, 0.2)),
    },
    summary="Adam with one second-moment value per block (per head, per neuron/token, per tensor)",
    module_groups=_module_groups,
    fixture_names=("adam_mini",),
    from_fixture=_from_fixture,
))
