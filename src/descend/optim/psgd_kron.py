"""PSGD Kron: preconditioned SGD with a Kronecker-factored preconditioner fitted on the Lie group.

Papers: Xi-Lin Li (2018), "Preconditioned Stochastic Gradient Descent", IEEE TNNLS 29(5), arXiv:1512.04202 (the
preconditioner-fitting criterion), and Xi-Lin Li (2019), "Preconditioner on Matrix Lie Group for SGD",
ICLR 2019, arXiv:1809.10232 (Kronecker-product factors on the group of upper-triangular matrices); the "Kron"
variant of ``lixilinx/psgd_torch`` as packaged by Evan Walters (``kron-torch``), the one Wen et al. 2025 compared.

Algorithm (per parameter tensor viewed as ``G ∈ R^{n_1×…×n_k}`` — tensors with more than two dims merged to a
matrix — with one factor ``Q_i`` per dim: upper triangular ``n_i×n_i`` or diagonal; ``P = ⊗_i Q_iᵀQ_i``)::

    m  <- b1 m + (1-b1) g ;   m̂ = m / (1-b1^t)                                   # debiased momentum
    with probability p_t (a deterministic counter: every ⌈1/p_t⌉-th step; p_t = 1 for ``prob_flat_start``
    steps, then max(p_min, exp(-decay·(t - flat_start)))):
        V ~ N(0, I) ;  H = m̂ + sqrt(ε32)·mean|m̂|·V                               # probe (ε32: float32 eps)
        A = H ×_1 Q_1 … ×_k Q_k ;   B = V ×_1 Q_1^{-T} … ×_k Q_k^{-T}               # Li 2019, Eq. (10)-(12)
        for each i:  (A_i, B_i: mode-i unfoldings)
            triangular:  Q_i <- Q_i - η · triu(A_iA_iᵀ - B_iB_iᵀ) / lb(A_iA_iᵀ + B_iB_iᵀ) · Q_i
            diagonal:    Q_i <- Q_i - η · diag(A_iA_iᵀ - B_iB_iᵀ) / max|diag(A_iA_iᵀ + B_iB_iᵀ)| ⊙ Q_i
    u  = P H  (the probe-noisy m̂ on an update step, m̂ otherwise) ;  u <- u · min(1, 1.1 / RMS(u))
    W  <- W - lr · (u + wd·W)              (wd only for tensors with >= 2 dims)

``η`` = ``precond_lr``; ``lb(M)`` is a cheap lower bound of ``‖M‖_2`` (one power step from the column of
largest norm); with ``momentum_into_precond_update=False`` the raw gradient takes the probe noise and fits
``Q``, and the clean ``m̂`` is preconditioned.  About once per hundred update steps (a ``random.Random(seed)``
draw < 0.01 each step, as in the reference) the factors of each tensor are rebalanced to a common max-norm
(their geometric mean).  Factors start at ``precond_init_scale^(1/k)·I``.  A dim gets a diagonal factor when
its size is 1 or above ``max_size_triangular``, when the tensor has fewer than ``min_ndim_triangular`` dims,
or by ``memory_save_mode`` (``"one_diag"``: the largest dim; ``"smart_one_diag"``: the largest dim if strictly
larger than the second; ``"all_diag"``: every dim).

Defaults (the reference's): ``lr=3e-4, b1=0.9, weight_decay=0, preconditioner_update_probability=None`` (the
schedule ``prob_max=1, prob_min=0.03, prob_decay=1e-3, prob_flat_start=500``), ``max_size_triangular=8192,
min_ndim_triangular=2, memory_save_mode=None, momentum_into_precond_update=True, precond_lr=0.1,
precond_init_scale=1, merge_dims=True``.  Wen et al. 2025 (130M, 1x Chinchilla) tuned lr 2e-3, b1 0.95,
wd 0.7, precond_lr 0.2, update probability 0.05 after a flat start of 2000 steps, block size 256.

Randomness: the probes ``V`` come from a ``torch.Generator`` seeded with ``seed`` and the rebalancing draws
from ``random.Random(seed)``; both states are in ``state_dict()`` (a resumed run is bitwise the uninterrupted
one).

Reference: ``kron-torch==0.3.3`` (``kron_torch.kron.Kron``).  Checked against its recorded trajectories
(``psgd_kron__*.json``: defaults with a merged conv kernel and a diagonal bias factor; update probability 0.5
with weight decay, ``one_diag`` and the raw gradient into the fit; float32 native) with their recorded probes
replayed: rtol 1e-10, atol 1e-12 in float64 and atol 2e-5 in float32; the update and rebalancing steps are
recomputed (not replayed) and must match the recorded ones.  Live against the installed package in
tests/optim/test_psgd_kron.py.

Deviations from the reference:

* ``precond_dtype=None`` keeps the preconditioner in the parameters' state dtype (float32 for bfloat16/float16
  and float32, float64 for float64); the reference uses float32 unless told otherwise.  The triangular solve
  runs in the preconditioner's dtype (the reference: always float32).  ``mu_dtype`` is not provided.
* ``A`` and ``B`` are scaled by a common power of two before their Gram matrices are formed (the update is
  homogeneous of degree 0 in them), and the RMS of the update is taken scale-safely when it would overflow:
  float32 gradients of size 1e20 no longer give inf/NaN.  Otherwise identical up to rounding.
* The probe noise is added to a copy of the raw gradient (``momentum_into_precond_update=False``); the
  reference adds it to ``p.grad`` in place when no dtype cast happens.
* The update schedule (``prob_*``) and the randomness are optimizer-wide, read from the first group (as the
  reference reads ``preconditioner_update_probability``); a callable probability is not accepted — its
  schedule's parameters are hyperparameters instead.  0-dim parameters are treated as shape ``(1,)``.
* Invalid values raise ``ValueError`` naming the argument; no memory statistics are printed.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ._base import DescendOptimizer, begin_step
from ._mixed_precision import state_dtype
from ._validate import check_choice, check_flag, check_float, check_int
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["MEMORY_SAVE_MODES", "PSGDKron", "merged_shape", "update_probability"]

MEMORY_SAVE_MODES = (None, "smart_one_diag", "one_diag", "all_diag")
_PRECOND_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_EPS32 = float(torch.finfo(torch.float32).eps)
_GLOBAL = "_psgd_kron"  # key of the optimizer-wide state in ``self.state`` (schedule counters, RNG states)
_GLOBAL_KEYS = ("prob_step", "update_counter", "generator", "balance_rng")


def merged_shape(shape: Sequence[int], merge_dims: bool = True) -> tuple[int, ...]:
    """The shape PSGD Kron works on: a tensor with more than two dims merged into the more balanced of
    ``[prod(shape[:-1]), shape[-1]]`` and ``[shape[0], prod(shape[1:])]`` (the first on a tie); 0-dim → ``(1,)``."""
    if len(shape) == 0:
        return (1,)
    if len(shape) <= 2 or not merge_dims:
        return tuple(shape)
    first = (math.prod(shape[:-1]), shape[-1])
    second = (shape[0], math.prod(shape[1:]))
    return first if first[1] - first[0] <= second[1] - second[0] else second


def update_probability(step: int, prob_max: float = 1.0, prob_min: float = 0.03, prob_decay: float = 1e-3,
                       prob_flat_start: float = 500.0) -> float:
    """The reference's annealed update probability at (0-based) ``step``, computed in float32 as it does."""
    f32 = torch.float32
    prob = torch.tensor(prob_max, dtype=f32) * torch.exp(
        -torch.tensor(prob_decay, dtype=f32) * (torch.tensor(float(step), dtype=f32)
                                                - torch.tensor(prob_flat_start, dtype=f32)))
    return float(prob.clamp_(min=torch.tensor(prob_min, dtype=f32), max=torch.tensor(prob_max, dtype=f32)))


def _diagonal_dims(shape: Sequence[int], group: Mapping[str, Any]) -> list[bool]:
    mode = group["memory_save_mode"]
    diag = [False] * len(shape)
    if mode == "all_diag":
        diag = [True] * len(shape)
    elif mode in ("one_diag", "smart_one_diag") and len(shape) > 0:
        largest = int(np.argsort(shape)[::-1][0])
        ordered = sorted(shape)
        if mode == "one_diag" or (len(shape) > 1 and ordered[-1] > ordered[-2]):
            diag[largest] = True
    small = len(shape) < int(group["min_ndim_triangular"])
    return [d or size == 1 or size > int(group["max_size_triangular"]) or small for size, d in zip(shape, diag,
                                                                                                    strict=True)]


def _mode(x: torch.Tensor, q: torch.Tensor, i: int) -> torch.Tensor:
    """``x ×_i q``: ``q`` (a matrix) applied to dim ``i`` of ``x``; a vector ``q`` scales that dim."""
    if q.dim() < 2:
        return x * q.view([-1 if j == i else 1 for j in range(x.dim())])
    return torch.movedim(torch.tensordot(q, x, dims=([1], [i])), 0, i)


def _solve_mode(x: torch.Tensor, q: torch.Tensor, i: int) -> torch.Tensor:
    """``x ×_i q^{-T}`` for an upper-triangular ``q`` (a vector ``q``: divide that dim by it)."""
    if q.dim() < 2:
        return x / q.view([-1 if j == i else 1 for j in range(x.dim())])
    moved = torch.movedim(x, i, -1)
    rows = moved.reshape(-1, moved.shape[-1])
    solved = torch.linalg.solve_triangular(q, rows, upper=True, left=False)  # rows · q^{-1}
    return torch.movedim(solved.reshape(moved.shape), -1, i)


def _gram(x: torch.Tensor, i: int, diagonal: bool) -> torch.Tensor:
    """``X_i X_iᵀ`` of the mode-``i`` unfolding (its diagonal when ``diagonal``)."""
    unfolded = torch.movedim(x, i, 0).reshape(x.shape[i], -1)
    return unfolded.square().sum(dim=1) if diagonal else unfolded @ unfolded.T


def _lb(m: torch.Tensor, max_abs: torch.Tensor) -> torch.Tensor:
    """The reference's cheap lower bound of the spectral norm of the symmetric ``m`` (``max_abs = max|m|``)."""
    a = m / max_abs
    col = a[:, int(torch.argmax(a.square().sum(dim=0)))]
    x = col @ a
    x = x / torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(a @ x) * max_abs


def _update_q(qs: list[torch.Tensor], h: torch.Tensor, v: torch.Tensor, precond_lr: float) -> None:
    """One fit of the factors ``qs`` (in place) to the pair (noisy gradient ``h``, probe ``v``)."""
    a = h
    for i, q in enumerate(qs):
        a = _mode(a, q, i)
    b = v
    for i, q in enumerate(qs):
        b = _solve_mode(b, q, i)
    # the fit is homogeneous of degree 0 in (A, B): a common power-of-two scale keeps A Aᵀ, B Bᵀ finite
    top = torch.maximum(a.abs().max(), b.abs().max())
    if torch.isfinite(top) and top > 0:
        scale = torch.exp2(-torch.floor(torch.log2(top)))
        if scale != 1:
            a, b = a * scale, b * scale
    tiny = torch.finfo(h.dtype).tiny
    for i, q in enumerate(qs):
        diagonal = q.dim() < 2
        ga, gb = _gram(a, i, diagonal), _gram(b, i, diagonal)
        diff, total = (ga - gb).mul_(precond_lr), ga + gb
        norm = total.abs().max()
        if diagonal:
            q.sub_(diff.mul_(q / norm.clamp(min=tiny)))
        else:
            bound = _lb(total, norm) if norm > 0 else norm
            q.sub_(torch.triu(diff).div_(bound.clamp(min=tiny)) @ q)


def _precondition(qs: list[torch.Tensor], g: torch.Tensor) -> torch.Tensor:
    """``(⊗ Q_iᵀQ_i) g``: each factor applied, then its transpose (a vector factor: its square)."""
    out = g
    for i, q in enumerate(qs):
        out = _mode(out, q * q, i) if q.dim() < 2 else _mode(_mode(out, q, i), q.T, i)
    return out


def _clip_rms(u: torch.Tensor) -> torch.Tensor:
    """``u · min(1, 1.1/(RMS(u) + 1e-12))`` in place (the RMS taken scale-safely when ``u²`` overflows)."""
    rms = u.square().mean().sqrt()
    if not torch.isfinite(rms):
        top = u.abs().max()
        rms = (u / top).square().mean().sqrt() * top
    return u.mul_(torch.clamp(1.1 / (rms + 1e-12), max=1.0))


def _balance(qs: list[torch.Tensor]) -> None:
    norms = torch.stack([q.abs().max() for q in qs])
    target = norms.log().mean().exp()
    for q, n in zip(qs, norms, strict=True):
        q.mul_(target / n)


class PSGDKron(DescendOptimizer):
    """PSGD Kron (Li 2018/2019; kron-torch): momentum preconditioned by Kronecker factors fitted on the Lie
    group of triangular matrices, updated with a probability that anneals over training.

    Args:
        params: parameters or parameter groups.
        lr: learning rate, ``>= 0``.
        b1: momentum, in ``[0, 1)``.
        weight_decay: ``>= 0``, added to the update of tensors with ``>= 2`` dims (``W -= lr·(u + wd·W)``).
        preconditioner_update_probability: a fixed probability in ``(0, 1]``, or ``None`` for the annealing
            schedule (``prob_*``).
        max_size_triangular: dims larger than this get a diagonal factor, ``>= 1``.
        min_ndim_triangular: tensors with fewer dims get diagonal factors only, ``>= 0``.
        memory_save_mode: ``None``, ``"smart_one_diag"``, ``"one_diag"`` or ``"all_diag"``.
        momentum_into_precond_update: fit the factors to the debiased momentum (else to the raw gradient).
        precond_lr: step size ``η`` of the factor fit, ``>= 0``.
        precond_init_scale: the factors start at ``scale^(1/k)·I``, ``> 0``.
        merge_dims: view tensors with more than two dims as matrices (:func:`merged_shape`).
        prob_max, prob_min, prob_decay, prob_flat_start: the schedule ``min(prob_max, max(prob_min,
            prob_max·exp(-prob_decay·(t - prob_flat_start))))`` used when the probability is ``None``.
        precond_dtype: dtype of the factors: ``None`` (the parameters' state dtype), ``torch.float32`` /
            ``torch.float64`` or their names.
        seed: seed of the probe generator and of the rebalancing draws (the reference: 42 for the latter).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 3e-4,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        preconditioner_update_probability: float | None = None,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        memory_save_mode: str | None = None,
        momentum_into_precond_update: bool = True,
        precond_lr: float = 0.1,
        precond_init_scale: float = 1.0,
        merge_dims: bool = True,
        *,
        prob_max: float = 1.0,
        prob_min: float = 0.03,
        prob_decay: float = 1e-3,
        prob_flat_start: int = 500,
        precond_dtype: torch.dtype | str | None = None,
        seed: int = 42,
    ) -> None:
        defaults = {"lr": lr, "b1": b1, "weight_decay": weight_decay,
                    "preconditioner_update_probability": preconditioner_update_probability,
                    "max_size_triangular": max_size_triangular, "min_ndim_triangular": min_ndim_triangular,
                    "memory_save_mode": memory_save_mode, "momentum_into_precond_update": momentum_into_precond_update,
                    "precond_lr": precond_lr, "precond_init_scale": precond_init_scale, "merge_dims": merge_dims,
                    "prob_max": prob_max, "prob_min": prob_min, "prob_decay": prob_decay,
                    "prob_flat_start": prob_flat_start, "precond_dtype": precond_dtype}
        _check_group(defaults)
        check_int("seed", seed, 0, 2**63 - 1)
        self.seed = seed
        super().__init__(params, defaults)

    _STATE_KEYS = ("step", "momentum_buffer")
    _OPTIONAL_STATE_KEYS = ("Q_*",)
    _CONFIG_ATTRS = ("seed",)

    def _check_group(self, group: Mapping[str, Any]) -> None:
        """The one validation of a group (constructor, ``add_param_group``, ``load_state_dict``)."""
        _check_group(group)

    def _contract_not_applicable(self, check: str) -> str | None:
        """For :mod:`descend.optim.testing`: why a generic contract check cannot apply (``None``: it does)."""
        if check == "param_groups_weight_decay":
            return ("PSGD Kron decays only tensors with >= 2 dims (the reference's rule) and the check's second "
                    "group holds only a bias vector; tests/optim/test_psgd_kron.py checks per-group decay on matrices")
        return None

    def _precond_dtype(self, p: torch.Tensor, group: Mapping[str, Any]) -> torch.dtype:
        d = group["precond_dtype"]
        return state_dtype(p) if d is None else _PRECOND_DTYPES.get(d, d)

    def _required_state_keys(self, group: Mapping[str, Any], p: torch.Tensor) -> list[str]:
        n = len(merged_shape(p.shape, bool(group["merge_dims"])))
        return ["step", "momentum_buffer", *(f"Q_{i}" for i in range(n))]

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        if key.startswith("Q_"):
            return self._precond_dtype(p, group)
        return super()._state_dtype(p, group, key)

    # ---------------------------------------------------------------------------- optimizer-wide state

    def _global(self) -> dict[str, Any]:
        st = self.state.get(_GLOBAL)  # type: ignore[call-overload]
        if st is None:
            gen = torch.Generator().manual_seed(self.seed)
            st = {"prob_step": torch.tensor(0, dtype=torch.int64), "update_counter": torch.tensor(0, dtype=torch.int64),
                  "generator": gen.get_state(), "balance_rng": _pack_random(random.Random(self.seed))}
            self.state[_GLOBAL] = st  # type: ignore[index]
        return st

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Validate and load ``state_dict`` (the optimizer-wide schedule and RNG state included)."""
        saved = state_dict.get("state", {}) if isinstance(state_dict, Mapping) else {}
        glob = saved.get(_GLOBAL) if isinstance(saved, Mapping) else None
        if glob is not None:
            missing = [k for k in _GLOBAL_KEYS if k not in glob]
            if missing:
                raise ValueError(f"load_state_dict: the saved PSGDKron schedule state is missing {missing}")
            state_dict = {**state_dict, "state": {**saved, _GLOBAL: copy.deepcopy(dict(glob))}}
        super().load_state_dict(state_dict)
        if glob is not None:
            st = self.state[_GLOBAL]  # type: ignore[index]
            for key in ("prob_step", "update_counter"):
                st[key] = torch.as_tensor(st[key], dtype=torch.int64).clone()
            st["generator"] = torch.as_tensor(st["generator"], dtype=torch.uint8).clone()
            st["balance_rng"] = torch.as_tensor(st["balance_rng"], dtype=torch.int64).clone()
            _unpack_random(st["balance_rng"])  # a malformed state fails here, at load

    def _schedule(self) -> tuple[bool, bool]:
        """Advance the optimizer-wide counters: (update the preconditioners?, rebalance them?)."""
        st = self._global()
        group = self.param_groups[0]
        prob = group["preconditioner_update_probability"]
        if prob is None:
            prob = update_probability(int(st["prob_step"]), float(group["prob_max"]), float(group["prob_min"]),
                                      float(group["prob_decay"]), float(group["prob_flat_start"]))
            threshold = float(1.0 / torch.tensor(prob, dtype=torch.float32))
        else:
            threshold = 1.0 / float(prob)
        st["update_counter"] += 1
        do_update = float(st["update_counter"]) >= threshold
        if do_update:
            st["update_counter"].zero_()
        st["prob_step"] += 1
        rng = _unpack_random(st["balance_rng"])
        balance = rng.random() < 0.01 and do_update
        st["balance_rng"] = _pack_random(rng)
        return do_update, balance

    def _draw_probe(self, p: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A standard-normal probe of ``shape`` for parameter ``p`` (from the seeded generator)."""
        st = self._global()
        gen = torch.Generator()
        gen.set_state(st["generator"])
        v = torch.randn(shape, dtype=dtype, generator=gen)
        st["generator"] = gen.get_state()
        return v.to(p.device)

    # ---------------------------------------------------------------------------- the step

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "PSGDKron")
        if not any(p.grad is not None for g in self.param_groups for p in g["params"]):
            return loss
        do_update, balance = self._schedule()
        for group in self.param_groups:
            lr, b1, wd = float(group["lr"]), float(group["b1"]), float(group["weight_decay"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                dtype, pdtype = state_dtype(p), self._precond_dtype(p, group)
                shape = merged_shape(p.shape, bool(group["merge_dims"]))
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0, dtype=torch.float64)
                    state["momentum_buffer"] = torch.zeros_like(p, dtype=dtype, memory_format=torch.contiguous_format)
                    scale = float(group["precond_init_scale"]) ** (1.0 / len(shape))
                    for i, (n, diag) in enumerate(zip(shape, _diagonal_dims(shape, group), strict=True)):
                        eye = torch.ones(n, dtype=pdtype, device=p.device) if diag else torch.eye(
                            n, dtype=pdtype, device=p.device)
                        state[f"Q_{i}"] = eye.mul_(scale)
                qs = [state[f"Q_{i}"] for i in range(len(shape))]
                state["step"] += 1
                t = float(state["step"].item())
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                m = state["momentum_buffer"]
                m.mul_(b1).add_(g, alpha=1.0 - b1)
                debiased = (m / (1.0 - b1 ** t)).to(pdtype).reshape(shape)
                if len(shape) > 1 and balance:
                    _balance(qs)
                if do_update:
                    h = debiased if group["momentum_into_precond_update"] else g.to(pdtype, copy=True).reshape(shape)
                    v = self._draw_probe(p, shape, pdtype)
                    h.add_(v * (torch.tensor(_EPS32, dtype=pdtype).sqrt() * h.abs().mean()))
                    _update_q(qs, h, v, float(group["precond_lr"]))
                u = _clip_rms(_precondition(qs, debiased)).reshape(p.shape)
                w = p if p.dtype == dtype else p.to(dtype)
                if wd != 0.0 and p.dim() >= 2:
                    u = u.to(dtype).add_(w, alpha=wd)
                w.add_(u.to(dtype), alpha=-lr)
                if w is not p:
                    p.copy_(w)
        return loss


def _pack_random(rng: random.Random) -> torch.Tensor:
    """A ``random.Random``'s Mersenne-Twister state as an int64 tensor (625 words; ``random()`` never sets the
    cached Gaussian, which must be empty)."""
    version, internal, gauss = rng.getstate()
    if version != 3 or gauss is not None:
        raise RuntimeError("unexpected random.Random state")
    return torch.tensor(internal, dtype=torch.int64)


def _unpack_random(packed: torch.Tensor) -> random.Random:
    rng = random.Random()
    try:
        rng.setstate((3, tuple(int(x) for x in packed.tolist()), None))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"load_state_dict: the saved PSGDKron balance_rng is not a random.Random state ({exc})"
                         ) from None
    return rng


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_float("b1", group["b1"], 0.0, 1.0, high_open=True)
    check_float("weight_decay", group["weight_decay"], 0.0)
    prob = group["preconditioner_update_probability"]
    if prob is not None:
        check_float("preconditioner_update_probability", prob, 0.0, 1.0, low_open=True)
    check_int("max_size_triangular", group["max_size_triangular"], 1)
    check_int("min_ndim_triangular", group["min_ndim_triangular"], 0)
    if group["memory_save_mode"] is not None:
        check_choice("memory_save_mode", group["memory_save_mode"], MEMORY_SAVE_MODES[1:])
    check_flag("momentum_into_precond_update", group["momentum_into_precond_update"])
    check_flag("merge_dims", group["merge_dims"])
    check_float("precond_lr", group["precond_lr"], 0.0)
    check_float("precond_init_scale", group["precond_init_scale"], 0.0, low_open=True)
    check_float("prob_max", group["prob_max"], 0.0, 1.0, low_open=True)
    check_float("prob_min", group["prob_min"], 0.0, float(group["prob_max"]), low_open=True)
    check_float("prob_decay", group["prob_decay"], 0.0)
    check_float("prob_flat_start", group["prob_flat_start"], 0.0)
    if group["precond_dtype"] is not None:
        check_choice("precond_dtype", group["precond_dtype"], (*_PRECOND_DTYPES, *_PRECOND_DTYPES.values()))


# ------------------------------------------------------------------------------------------ fixtures


class _RecordedKron(PSGDKron):
    """PSGD Kron that takes its probes from a fixture's ``extra.precond_noise`` and checks that the update and
    rebalancing steps it computes are the recorded ones (a mismatch raises ``RuntimeError``)."""

    def __init__(self, params: list[torch.Tensor], names: Sequence[str], extra: Mapping[str, Any],
                 **hp: Any) -> None:
        super().__init__(params, **hp)
        self._names = {id(p): n for p, n in zip(params, names, strict=True)}
        self._noise = {int(e["step"]): e["V"] for e in extra.get("precond_noise", [])}
        self._updates = {int(s) for s in extra.get("precond_update_steps", [])}
        self._balances = {int(s) for s in extra.get("balance_steps", [])}
        self._t = 0

    def _schedule(self) -> tuple[bool, bool]:
        do_update, balance = super()._schedule()
        self._t += 1
        if do_update != (self._t in self._updates) or balance != (self._t in self._balances):
            raise RuntimeError(f"step {self._t}: computed update={do_update}, balance={balance}; the fixture "
                               f"records update={self._t in self._updates}, balance={self._t in self._balances}")
        return do_update, balance

    def _draw_probe(self, p: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        recorded = self._noise.get(self._t, {}).get(self._names[id(p)])
        if recorded is None:
            raise RuntimeError(f"step {self._t}: no recorded probe for parameter {self._names[id(p)]!r}")
        return torch.tensor(recorded, dtype=dtype, device=p.device).reshape(shape)


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> PSGDKron:
    hp = dict(fx["hyperparameters"])
    if hp.get("precond_dtype") is None:
        hp["precond_dtype"] = "float32"  # the reference's default
    replay = fx.get("replay") or {}
    solve = replay.get("solve_dtype", "float32")
    if solve != hp["precond_dtype"]:
        raise ValueError(f"replay.solve_dtype {solve!r} differs from precond_dtype {hp['precond_dtype']!r}: descend "
                         "solves in the preconditioner's dtype")
    names = list(fx["param_order"])
    extra = fx.get("extra") or {}
    for n, shape in (extra.get("merged_shapes") or {}).items():
        ours = merged_shape(tuple(params[n].shape), bool(hp.get("merge_dims", True)))
        if tuple(shape) != ours:
            raise ValueError(f"extra.merged_shapes[{n!r}] = {shape}, descend merges to {list(ours)}")
    return _RecordedKron([params[n] for n in names], names, extra, **hp)


register(OptimizerSpec(
    name="psgd_kron",
    factory=PSGDKron,
    paper="Li 2018, Preconditioned Stochastic Gradient Descent (IEEE TNNLS), arXiv:1512.04202; Li 2019, "
          "Preconditioner on Matrix Lie Group for SGD (ICLR), arXiv:1809.10232",
    reference="kron-torch==0.3.3 (kron_torch.kron.Kron)",
    # Wen et al. 2025 (130M, 1x Chinchilla): lr 2e-3, b1 0.95, wd 0.7 (0.5-0.9 about equal), precond_lr 0.2,
    # init scale 1, update probability 0.05 after a flat start of 2000 steps
    search_space={
        "lr": FloatRange(1e-4, 1e-2, log=True),
        "b1": Categorical((0.9, 0.95)),
        "weight_decay": Categorical((0.0, 0.1, 0.5, 0.7)),
        "precond_lr": Categorical((0.1, 0.2)),
    },
    summary="momentum preconditioned by Kronecker factors fitted on the triangular Lie group (probabilistic updates)",
    fixture_names=("psgd_kron",),
    from_fixture=_from_fixture,
))
