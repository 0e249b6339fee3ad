r"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner.

Paper: Nikhil Vyas, Depen Morwani, Rosie Zhao, Mujin Kwun, Itai Shapira, David Brandfonbrener, Lucas Janson,
Sham Kakade (2024), "SOAP: Improving and Stabilizing Shampoo using Adam", arXiv:2409.11321.

Algorithm (the paper's Algorithm 3 for one ``m x n`` parameter ``W``, with the eigenvector refresh of its
Algorithm 4, as the reference implements them; an order-k tensor has one factor per dimension)::

    first call (initialisation only -- W is NOT updated, t stays 0):
        L = (1 - β_s) G Gᵀ,   R = (1 - β_s) Gᵀ G
        Q_L, Q_R = eigenvectors of L + 1e-30·I, R + 1e-30·I, columns in descending eigenvalue order
    every later call (the preconditioner is one step stale: G enters L, R after the update):
        G' = Q_Lᵀ G Q_R                                     rotate into the eigenbasis
        t  = t + 1
        M  = β1 M + (1 - β1) G'                             first moment, kept in the eigenbasis
        V  = β2 V + (1 - β2) G'²                            second moment, in the eigenbasis
        N  = Q_L (M / (√V + ε)) Q_Rᵀ                         ε added to the un-corrected √V
        N  = N / (1e-30 + RMS(N))                           if normalize_grads
        W  = W - lr · √(1 - β2ᵗ) / (1 - β1ᵗ) · N             bias factor only if correct_bias
        W  = W - lr · wd · W                                decoupled weight decay, after the update
        L  = β_s L + (1 - β_s) G Gᵀ,   R = β_s R + (1 - β_s) Gᵀ G
        if t % precondition_frequency == 0:                 power iteration + QR refresh
            M ← Q_L M Q_Rᵀ                                  (back to the original basis, old Q)
            for each factor (F, Q) and its axis a:
                order = argsort(diag(Qᵀ F Q), descending);  V ← V re-ordered by ``order`` along a
                Q ← qr(F Q[:, order]).Q
            M ← Q_Lᵀ M Q_R                                  (into the new basis)

``β_s = shampoo_beta`` (``None``: ``β2``).  Tensors: factor ``k`` = contraction of ``G`` with itself over
every dimension except ``k``; rotating = ``tensordot`` with each ``Q`` over dimension 0 in turn.
A dimension larger than ``max_precond_dim`` gets no factor (identity rotation: one-sided SOAP);
1-D tensors get none unless ``precondition_1d`` (they are then plain Adam with HF-style ε); 0-D
tensors never.  ``merge_dims`` first views an n-D tensor with adjacent dimensions merged while their
product stays ``<= max_precond_dim``; ``data_format="channels_last"`` permutes 4-D tensors NHWC→NCHW
before merging (as in the reference, it has no effect without ``merge_dims``).

Defaults (the reference README's recommendation): ``lr=3e-3, betas=(0.95, 0.95), shampoo_beta=None,
eps=1e-8, weight_decay=0.01, precondition_frequency=10, max_precond_dim=10000, merge_dims=False,
precondition_1d=False, normalize_grads=False, data_format="channels_first", correct_bias=True,
precond_dtype="float32"``.

Reference: ``nikhilvyas/SOAP@a1e5535`` ``soap.py`` (HEAD 2024-12-02, first moment kept in the
eigenbasis), checked with the golden fixtures ``soap__*.json`` (atol 2e-6).  ``precond_dtype="float32"``
reproduces the reference's cast path: factors rounded to float32 before ``eigh`` with the ``1e-30·I``
shift built in torch's default dtype (so under a float64 default the eigh runs in float64 on the
float32-rounded factor, which is how the fixtures were recorded), the QR refresh in float32, results
cast back to the state dtype.  ``precond_dtype="float64"`` runs all of it in float64.

Known deviations from the reference, and why:

* The reference rotates the first moment back to the original basis and into the eigenbasis again after
  *every* step; by default we do so only when the basis changes (every ``precondition_frequency``
  steps).  In exact arithmetic the round trip is the identity; skipping it saves two of the four tensor
  rotations of a step (one CPU thread, n x n weight + bias, refresh every 10 steps: 4.3 vs 5.7 ms at
  n = 128, 19 vs 28 ms at n = 256, 154 vs 239 ms at n = 512).  With
  float32-computed bases (orthogonal only to ~1e-7) the round trip is not the identity and the fast path
  deviates from the fixtures by up to 8.8e-8 (4% of their tolerance); ``reproject_momentum=True``
  (what the fixture replay uses) matches them to the last bit or two (max |err| 1.1e-16 over the three
  fixtures: batched products may sum in another order).  In float64 both paths agree to ~1e-15 (tested).
* Batching (no change to the math): the parameters of a group whose preconditioned views agree in shape,
  dtype, device, preconditioned axes and step count are stepped together (in chunks of at most 2**24
  gradient elements, which bounds the temporaries: one 4096 x 4096 matrix, 64 of 512 x 512) -- rotations
  and factor products as batched matrix products, one ``eigh`` / ``QR`` per chunk and axis on the
  ``(B, n, n)`` stack, the
  moment and factor EMAs as single in-place kernels on state rows that share one storage per bucket and
  key (only the gradients are stacked each step).  The reference loops over parameters.  Each matrix of a
  bucket gets what it would get alone (a failed or non-finite factorization falls back for that matrix
  only); float64 equality with one-parameter buckets over three refreshes is tested to 1e-12.  Measured
  (``benchmarks/matrix_step_time.py --clock cpu``, one CPU thread): 64 matrices of 64 x 64 1.95x faster
  than one by one (19 vs 37 ms); from 128 x 128 up on a par (the matrix products dominate on a CPU).
* ``shampoo_beta=None`` replaces the reference's ``-1`` sentinel (negative values are rejected).
* State (moments, factors, bases) is kept in the parameter's dtype, float32 for bfloat16/float16
  parameters (the reference allocates factors in torch's default dtype and fails on bfloat16); the
  update is computed in the state dtype and added to the parameter in its own dtype.  ``load_state_dict``
  keeps that float32 state (:mod:`descend.optim._state`).
* ``step`` counts preconditioned steps (0 after the initialising call), as in the reference.
* State keys: ``step``, ``exp_avg``, ``exp_avg_sq`` (both in the eigenbasis, shaped like the merged /
  NCHW view the preconditioner works on), ``factor_k`` and ``basis_k`` for each preconditioned axis k
  of that view (absent axes: identity).  The reference keeps lists of matrices instead.  After a step the
  entries of a bucket are views (rows) of one storage per key; ``torch.save(opt.state_dict())`` and
  ``deepcopy(opt.state_dict())`` keep that sharing (one copy of each storage), ``pickle`` and ``deepcopy`` of the
  optimizer copy the rows out, a loaded state dict is re-packed on its first step.  ``pickle.dumps`` of the
  *state dict* (multiprocessing queues, Ray, ``broadcast_object_list``) writes a bucket's whole storage once per
  row: send ``torch.save``'s bytes, or clone the rows first.  A state
  without the factor or basis of a preconditioned axis is refused by ``load_state_dict``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._linalg import eigenbasis_descending, refresh_eigenbasis_qr
from ._mixed_precision import state_dtype
from ._validate import check_betas, check_choice, check_float, check_int
from .registry import Categorical, FloatRange, IntRange, OptimizerSpec, register
from .roles import Role, param_roles

__all__ = ["SOAP", "soap_param_groups"]

_PRECOND_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_DATA_FORMATS = ("channels_first", "channels_last")


def merged_shape(shape: Iterable[int], max_precond_dim: int) -> list[int]:
    """Merge adjacent dimensions while their product stays ``<= max_precond_dim`` (the reference's rule)."""
    out: list[int] = []
    run = 1
    for size in shape:
        if run * size > max_precond_dim:
            if run > 1:
                out.append(run)
                run = size
            else:
                out.append(size)
                run = 1
        else:
            run *= size
    if run > 1 or not out:
        out.append(run)
    return out


class _Layout:
    """How a parameter is viewed for preconditioning: optional NHWC→NCHW permute, then merged dims."""

    def __init__(self, shape: torch.Size, group: Mapping[str, Any]) -> None:
        self.shape = tuple(shape)
        self.permute = group["merge_dims"] and group["data_format"] == "channels_last" and len(shape) == 4
        base = (shape[0], shape[3], shape[1], shape[2]) if self.permute else self.shape
        self.base = tuple(base)
        if group["merge_dims"] and len(shape) > 1:
            self.view = tuple(merged_shape(base, group["max_precond_dim"]))
        else:
            self.view = self.base
        self.identity = not self.permute and self.view == self.shape

    def to_view(self, t: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return t
        if self.permute:
            t = t.permute(0, 3, 1, 2)
        return t.reshape(self.view)

    def from_view(self, t: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return t
        return t.reshape(self.base).permute(0, 2, 3, 1) if self.permute else t.reshape(self.shape)

    def factor_axes(self, group: Mapping[str, Any]) -> list[int]:
        """Axes of the view that get a Kronecker factor."""
        if len(self.shape) == 0 or (len(self.shape) == 1 and not group["precondition_1d"]):
            return []
        return [i for i, n in enumerate(self.view) if n <= group["max_precond_dim"]]


class SOAP(DescendOptimizer):
    """SOAP (Vyas et al. 2024): Adam run in the slowly updated eigenbasis of Shampoo's preconditioner.

    See the module docstring for the update rule, defaults and deviations from the reference.  The first
    ``step()`` a parameter sees only builds its preconditioner (the parameter does not move).

    Args:
        params: parameters or parameter groups.
        lr: learning rate (also scales the decoupled weight decay).
        betas: Adam's ``(β1, β2)``.
        shampoo_beta: EMA coefficient of the Kronecker factors; ``None`` uses ``β2``.
        eps: added to ``√V`` (not bias-corrected).
        weight_decay: decoupled weight decay, ``W -= lr · weight_decay · W`` after the update.
        precondition_frequency: refresh the eigenbases every this many steps (power iteration + QR).
        max_precond_dim: dimensions larger than this get no factor (identity on that side).
        merge_dims: merge adjacent dimensions of n-D tensors while their product ``<= max_precond_dim``.
        precondition_1d: give 1-D tensors a factor too (else plain Adam).
        normalize_grads: divide the update by its RMS.
        data_format: ``"channels_first"`` or ``"channels_last"`` (NHWC 4-D kernels; only with merge_dims).
        correct_bias: Adam's bias correction ``√(1-β2ᵗ)/(1-β1ᵗ)`` on the step size.
        precond_dtype: ``"float32"`` (the reference's cast path) or ``"float64"``: dtype of eigh / QR.
        reproject_momentum: rotate ``M`` back to the original basis and into the eigenbasis again after
            every step, as the reference does (the identity in exact arithmetic, not with float32 bases).
            ``True`` reproduces the reference's trajectories (to ~1e-16) at 1.3-1.6x the cost of a step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 3e-3,
        *,
        betas: tuple[float, float] = (0.95, 0.95),
        shampoo_beta: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        merge_dims: bool = False,
        precondition_1d: bool = False,
        normalize_grads: bool = False,
        data_format: str = "channels_first",
        correct_bias: bool = True,
        precond_dtype: str = "float32",
        reproject_momentum: bool = False,
    ) -> None:
        defaults = {
            "lr": lr, "betas": betas, "shampoo_beta": shampoo_beta, "eps": eps, "weight_decay": weight_decay,
            "precondition_frequency": precondition_frequency, "max_precond_dim": max_precond_dim,
            "merge_dims": merge_dims, "precondition_1d": precondition_1d, "normalize_grads": normalize_grads,
            "data_format": data_format, "correct_bias": correct_bias, "precond_dtype": precond_dtype,
            "reproject_momentum": reproject_momentum,
        }
        _validate(defaults)
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "exp_avg", "exp_avg_sq")
    _OPTIONAL_STATE_KEYS = ("factor_*", "basis_*")

    def _required_state_keys(self, group: Mapping[str, Any], p: torch.Tensor) -> list[str]:
        """``step``, the moments, and a factor and a basis for each preconditioned axis of ``p``'s view (a state
        dict without one of them is refused at load: a step cannot rebuild a factor's history)."""
        axes = _Layout(p.shape, group).factor_axes(group)
        return [*self._STATE_KEYS, *(f"{k}_{i}" for i in axes for k in ("factor", "basis"))]

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        _validate(group)
        return {"betas": tuple(group["betas"])}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SOAP step (on a parameter's first call: only build its preconditioner).

        Args:
            closure: re-evaluates the model and returns the loss (run with gradients enabled).
        """
        loss = begin_step(self, closure, "SOAP")
        for group in self.param_groups:
            fresh: dict[tuple[Any, ...], list[_Item]] = {}
            buckets: dict[tuple[Any, ...], list[_Item]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                item = _Item(p, self.state[p], _Layout(p.shape, group))
                if "step" not in item.state:
                    fresh.setdefault(item.key(tuple(item.layout.factor_axes(group)), None), []).append(item)
                else:
                    axes = tuple(i for i in range(item.grad.dim()) if f"basis_{i}" in item.state)
                    buckets.setdefault(item.key(axes, float(item.state["step"])), []).append(item)
            for key, items in fresh.items():
                for chunk in _chunks(items):
                    self._init_state(chunk, key[1], group)
            for key, items in buckets.items():
                for chunk in _chunks(items):
                    self._update(chunk, key[1], group)
        return loss

    # ------------------------------------------------------------------------------------------------
    # Each bucket holds the parameters of one group whose preconditioned views agree in shape, dtype,
    # device, preconditioned axes and step count.  Their state entries are kept as the rows of one
    # ``(B, ...)`` tensor per key (:func:`_packed`), so that the rotations and Kronecker-factor products
    # are batched matrix products, eigh / QR run once per bucket on ``(B, n, n)`` stacks, and the moment
    # and factor EMAs are single in-place kernels -- with no copy of the state per step (only the
    # gradients are stacked).  A bucket of one is the one-by-one computation.  The state stays one tensor
    # per parameter and key (the layout above; each row is a view into its bucket's storage).

    @staticmethod
    def _init_state(items: list[_Item], axes: tuple[int, ...], group: Mapping[str, Any]) -> None:
        """A bucket's first call: zero moments, the factors from this gradient, their eigenbases."""
        beta_s, pdt = _beta_s(group), _PRECOND_DTYPES[group["precond_dtype"]]
        states = [it.state for it in items]
        grads = torch.stack([it.grad for it in items])
        for s in states:
            s["step"] = torch.tensor(0.0, dtype=torch.float64)
        _assign_rows(states, "exp_avg", torch.zeros_like(grads, memory_format=torch.contiguous_format))
        _assign_rows(states, "exp_avg_sq", torch.zeros_like(grads, memory_format=torch.contiguous_format))
        for i in axes:
            n = grads.shape[i + 1]
            _assign_rows(states, f"factor_{i}", grads.new_zeros(len(items), n, n))
        SOAP._accumulate(states, grads, axes, beta_s)
        for i in axes:
            factors = _packed(states, f"factor_{i}")
            eye = torch.eye(factors.shape[-1], dtype=factors.dtype, device=factors.device).expand_as(factors)
            # a factor that overflowed (|g| > ~1e19 in float32) or an eigh that failed: start from the identity
            (bases,) = _guarded(
                lambda f: (eigenbasis_descending(f, pdt, shift_dtype=_shift_dtype(pdt)),), (factors,), (eye,))
            _assign_rows(states, f"basis_{i}", bases.contiguous())

    @staticmethod
    def _update(items: list[_Item], axes: tuple[int, ...], group: Mapping[str, Any]) -> None:
        """One preconditioned step of a bucket (all at the same step count)."""
        beta1, beta2 = group["betas"]
        states = [it.state for it in items]
        grads = torch.stack([it.grad for it in items])
        bases = [_packed(states, f"basis_{i}") if i in axes else None for i in range(grads.dim() - 1)]
        grads_rot = _rotate(grads, bases, back=False) if axes else grads

        torch._foreach_add_([s["step"] for s in states], 1.0)
        t = float(states[0]["step"])
        exp_avg, exp_avg_sq = _packed(states, "exp_avg"), _packed(states, "exp_avg_sq")
        exp_avg.mul_(beta1).add_(grads_rot, alpha=1.0 - beta1)
        exp_avg_sq.mul_(beta2).add_(grads_rot.square(), alpha=1.0 - beta2)
        update = exp_avg_sq.sqrt().add_(group["eps"])
        torch.div(exp_avg, update, out=update)
        if axes:
            update = _rotate(update, bases, back=True)
        if group["normalize_grads"]:
            dims, sq = tuple(range(1, update.dim())), update.square()
            update = update / (1e-30 + (sq.mean(dim=dims, keepdim=True) if dims else sq) ** 0.5)  # RMS per row

        lr = float(group["lr"])
        step_size = lr
        if group["correct_bias"]:
            step_size = step_size * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)
        params = [it.param for it in items]
        torch._foreach_add_(params, [it.layout.from_view(u) for it, u in zip(items, update.unbind(0), strict=True)],
                            alpha=-step_size)
        if group["weight_decay"] > 0.0:
            torch._foreach_add_(params, params, alpha=-lr * group["weight_decay"])

        if not axes:
            return
        SOAP._accumulate(states, grads, axes, _beta_s(group))
        if t % group["precondition_frequency"] == 0:
            SOAP._refresh(states, bases, axes, _PRECOND_DTYPES[group["precond_dtype"]])
        elif group["reproject_momentum"]:
            exp_avg.copy_(_rotate(_rotate(exp_avg, bases, back=True), bases, back=False))

    @staticmethod
    def _accumulate(states: list[dict[str, Any]], grads: torch.Tensor, axes: tuple[int, ...], beta_s: float) -> None:
        """``F_k ← β_s F_k + (1-β_s) · (G contracted with itself over every axis but k)``, for the stack ``grads``."""
        for i in axes:
            g = grads.movedim(i + 1, 1).reshape(grads.shape[0], grads.shape[i + 1], -1)
            _packed(states, f"factor_{i}").lerp_(g @ g.mT, 1.0 - beta_s)

    @staticmethod
    def _refresh(states: list[dict[str, Any]], bases: list[torch.Tensor | None], axes: tuple[int, ...],
                 pdt: torch.dtype) -> None:
        """Power iteration + QR on every factor; re-order V, carry M over into the new basis."""
        exp_avg, exp_avg_sq = _packed(states, "exp_avg"), _packed(states, "exp_avg_sq")
        momentum = _rotate(exp_avg, bases, back=True)
        sq = exp_avg_sq
        for i in axes:
            old = bases[i]
            assert old is not None  # every axis in ``axes`` has a basis
            keep = torch.arange(old.shape[-1], device=old.device).expand(old.shape[:-1])
            # non-finite factor or failed factorization: that matrix keeps its basis (and V its order)
            (new, order) = _guarded(partial(refresh_eigenbasis_qr, dtype=pdt),
                                       (_packed(states, f"factor_{i}"), old), (old, keep))
            index = order.reshape(order.shape[0], *[1] * i, order.shape[1], *[1] * (sq.dim() - i - 2))
            sq = torch.take_along_dim(sq, index, dim=i + 1)
            old.copy_(new)  # the rows are the state's bases
        exp_avg_sq.copy_(sq)
        exp_avg.copy_(_rotate(momentum, bases, back=False))

    def __getstate__(self) -> dict[str, Any]:
        """As the base class, with every state row that views a bucket's storage copied out: ``pickle`` would
        otherwise write the whole storage once per row (``torch.save`` of the state dict shares it)."""
        state = super().__getstate__()
        state["state"] = defaultdict(dict, {p: {k: v.clone() if _is_row(v) else v for k, v in s.items()}
                                            for p, s in state["state"].items()})
        return state


class _Item:
    """One parameter in a step: the tensor, its state and layout, and its gradient as the view in the state dtype."""

    __slots__ = ("grad", "layout", "param", "state")

    def __init__(self, param: torch.Tensor, state: dict[str, Any], layout: _Layout) -> None:
        assert param.grad is not None  # step() builds items only for parameters with a gradient
        self.param, self.state, self.layout = param, state, layout
        self.grad = layout.to_view(param.grad.to(state_dtype(param)))

    def key(self, axes: tuple[int, ...], step: float | None) -> tuple[Any, ...]:
        """What parameters must share to be stepped as one batch (``axes`` second: the bucket's axes)."""
        return (tuple(self.grad.shape), axes, self.grad.dtype, self.param.dtype, self.grad.device, step)


#: Largest stack (elements) a bucket is processed in: a step's temporaries are a few stacks of gradients, so a
#: bucket of many large matrices is cut into chunks (a 4096 x 4096 matrix is a chunk of its own; 512 x 512: 64).
_MAX_STACK_ELEMENTS = 1 << 24


def _chunks(items: list[_Item]) -> list[list[_Item]]:
    """``items`` in consecutive chunks of at most ``_MAX_STACK_ELEMENTS`` gradient elements (at least one item);
    the same parameters always form the same chunk, so their packed state stays packed."""
    size = max(1, _MAX_STACK_ELEMENTS // max(1, items[0].grad.numel()))
    return [items[i:i + size] for i in range(0, len(items), size)]


def _assign_rows(states: list[dict[str, Any]], key: str, stacked: torch.Tensor) -> None:
    """``state[key] = stacked[b]`` for the b-th state: the rows become the state entries (views)."""
    for s, row in zip(states, stacked.unbind(0), strict=True):
        s[key] = row


def _packed(states: list[dict[str, Any]], key: str) -> torch.Tensor:
    """The entries ``key`` of a bucket's states as one ``(B, ...)`` tensor *whose rows are those entries*, so
    that in-place operations on it update the state.  Zero-copy when the entries already are consecutive rows
    of one contiguous storage (kept so from the bucket's first step on); otherwise (a loaded state dict, a
    changed bucket) they are stacked once and the state entries replaced by the rows of the stack."""
    tensors = [s[key] for s in states]
    first = tensors[0]
    if len(tensors) == 1:
        return first.unsqueeze(0)
    n, ptr, offset = first.numel(), first.untyped_storage().data_ptr(), first.storage_offset()
    if all(t.is_contiguous() and t.shape == first.shape and t.dtype == first.dtype
           and t.untyped_storage().data_ptr() == ptr and t.storage_offset() == offset + b * n
           for b, t in enumerate(tensors)):
        return first.as_strided((len(tensors), *first.shape), (n, *first.stride()), offset)
    stacked = torch.stack(tensors)
    _assign_rows(states, key, stacked)
    return stacked


def _is_row(t: Any) -> bool:
    """Whether ``t`` is a tensor that views only part of its storage (a bucket row)."""
    return isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > t.numel() * t.element_size()


def _beta_s(group: Mapping[str, Any]) -> float:
    return float(group["betas"][1] if group["shampoo_beta"] is None else group["shampoo_beta"])


def _rotate(x: torch.Tensor, bases: list[torch.Tensor | None], back: bool) -> torch.Tensor:
    """For a stack ``x`` of shape ``(B, *view)``: ``x[b] ×_k Q_k[b]ᵀ`` for every axis k (``back``: ``×_k Q_k[b]``),
    as batched matrix products; axes without a basis are left alone."""
    batch = x.shape[0]
    for q in bases:
        x = x.movedim(1, -1)  # the axis to contract comes last; after every axis the order is restored
        if q is not None:
            shape = x.shape
            x = (x.reshape(batch, -1, shape[-1]) @ (q.mT if back else q)).reshape(shape)
    return x


def _guarded(compute: Callable[..., tuple[torch.Tensor, ...]], inputs: tuple[torch.Tensor, ...],
             fallback: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """``compute(*inputs)`` for stacks of ``B`` matrices (``inputs[0]``: the ``(B, n, n)`` factors), with
    matrix ``b`` of every output taken from ``fallback`` instead where ``factors[b]`` is not finite, its
    factorization fails or its first output is not finite (float32 factors overflow for gradients above
    ~1e19; eigh then raises ``_LinAlgError``).  Matrices are independent: a failure within a batch is retried
    matrix by matrix, so each gets what it would get alone."""
    factors = inputs[0]
    finite = torch.isfinite(factors).flatten(1).all(1)
    try:
        out = compute(torch.where(finite.view(-1, 1, 1), factors, 0.0), *inputs[1:])
    except RuntimeError:  # torch.linalg.LinAlgError derives from RuntimeError
        if factors.shape[0] == 1:
            return fallback
        parts = [_guarded(compute, tuple(x[b:b + 1] for x in inputs), tuple(f[b:b + 1] for f in fallback))
                 for b in range(factors.shape[0])]
        return tuple(torch.cat([p[k] for p in parts]) for k in range(len(fallback)))
    ok = finite & torch.isfinite(out[0]).flatten(1).all(1)
    return tuple(torch.where(ok.view(-1, *[1] * (o.dim() - 1)), o, f) for o, f in zip(out, fallback, strict=True))


def _shift_dtype(pdt: torch.dtype) -> torch.dtype:
    # float32 option: the reference builds the 1e-30·I shift in torch's default dtype
    return torch.get_default_dtype() if pdt == torch.float32 else pdt


def _validate(h: Mapping[str, Any]) -> None:
    check_float("lr", h["lr"], 0.0)
    check_betas("betas", h["betas"])
    if h["shampoo_beta"] is not None:
        check_float("shampoo_beta", h["shampoo_beta"], 0.0, 1.0, high_open=True)
    check_float("eps", h["eps"], 0.0)
    check_float("weight_decay", h["weight_decay"], 0.0)
    check_int("precondition_frequency", h["precondition_frequency"], 1)
    check_int("max_precond_dim", h["max_precond_dim"], 1)
    for flag in ("merge_dims", "precondition_1d", "normalize_grads", "correct_bias", "reproject_momentum"):
        check_choice(flag, h[flag], (False, True))
    check_choice("data_format", h["data_format"], _DATA_FORMATS)
    check_choice("precond_dtype", h["precond_dtype"], tuple(_PRECOND_DTYPES))


# ----------------------------------------------------------------------------------------------------
# registry


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> SOAP:
    hp = dict(fx["hyperparameters"])
    if hp.get("shampoo_beta") is not None and hp["shampoo_beta"] < 0:  # the reference's "-1 = use β2"
        hp["shampoo_beta"] = None
    hp["betas"] = tuple(hp["betas"])
    return SOAP([params[n] for n in fx["param_order"]], precond_dtype="float32", reproject_momentum=True, **hp)


def soap_param_groups(model: torch.nn.Module, adam_roles: Iterable[Role | str] = (Role.EMBEDDING,)
                      ) -> list[dict[str, Any]]:
    """Groups for :class:`SOAP` from a module: parameters whose role (:func:`descend.optim.roles.param_roles`,
    from module types) is in ``adam_roles`` — by default the embeddings and positional tables, as the Muon /
    Levanter recipes treat them — get plain Adam (``max_precond_dim=1``: no dimension gets a factor, the
    identity basis); every other parameter is preconditioned as usual (1-D tensors are Adam anyway unless
    ``precondition_1d``).  Empty groups are omitted."""
    chosen = {Role.parse(r, "adam_roles") for r in adam_roles}
    roles = param_roles(model)
    adam = [p for p, r in roles.items() if r in chosen and p.requires_grad]
    rest = [p for p, r in roles.items() if r not in chosen and p.requires_grad]
    groups: list[dict[str, Any]] = [{"name": "soap", "params": rest},
                                    {"name": "adam", "params": adam, "max_precond_dim": 1}]
    return [g for g in groups if g["params"]]


def _module_groups(model: torch.nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: :func:`soap_param_groups` (embeddings to plain Adam)."""
    return soap_param_groups(model)


register(OptimizerSpec(
    name="soap",
    factory=SOAP,
    paper="Vyas, Morwani, Zhao, Kwun, Shapira, Brandfonbrener, Janson, Kakade 2024, SOAP: Improving and "
          "Stabilizing Shampoo using Adam, arXiv:2409.11321",
    reference="nikhilvyas/SOAP@a1e553530fde97d0e6b307d7c82ac6d38b072340:soap.py#SOAP",
    search_space={
        # Wen et al. 2025: lr 1.6e-2 (14 % of the log range below the old top, 3e-2), betas (0.95, 0.98)
        # (0.99 marginally better), shampoo_beta 0.95, wd 0.1, precondition_frequency 1 (the range's floor)
        "lr": FloatRange(3e-4, 1e-1, log=True),
        "betas": Categorical(((0.9, 0.95), (0.95, 0.95), (0.9, 0.99), (0.95, 0.98), (0.95, 0.99))),
        "shampoo_beta": Categorical((None, 0.9, 0.95, 0.99)),
        "weight_decay": FloatRange(1e-4, 1.0, log=True),
        "precondition_frequency": IntRange(1, 100, log=True),
    },
    summary="Adam in the eigenbasis of Shampoo's Kronecker preconditioner, refreshed by power iteration + QR",
    module_groups=_module_groups,
    fixture_names=("soap",),
    from_fixture=_from_fixture,
))
