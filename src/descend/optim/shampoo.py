"""Shampoo, in the practical form of Distributed Shampoo (one process, no distribution).

Papers:

* Gupta, Koren & Singer 2018, "Shampoo: Preconditioned Stochastic Tensor Optimization" (ICML),
  arXiv:1802.09568 — Algorithm 1 (matrices) and Algorithm 2 (order-k tensors).
* Shi, Lee, Iwasaki, Gallego-Posada, Li, Rangadurai, Mudigere & Rabbat 2023, "A Distributed Data-Parallel
  PyTorch Implementation of the Distributed Shampoo Optimizer for Training Neural Networks At-Scale",
  arXiv:2309.06497 — Algorithm 1 (blocking, β2 accumulation, grafting, first-moment filtering).

Algorithm (per parameter, step t = 1, 2, …; G = gradient, W = parameter; Shi et al. Alg. 1)::

    reshape W, G by merging small dims (merge_dims), then split each dim into blocks of
    ≤ max_preconditioner_dim (every block b below is handled independently)
    G ← G + λ W                                               (weight_decay_type = "l2" only)
    F_k ← β2 F_k + w · G_(k) G_(k)ᵀ,   w = 1 if β2 = 1 else 1 − β2   (k = each preconditioned dim,
                                        G_(k) = mode-k unfolding; F_k starts at 0)
    V  ← grafting second moment (adam/rmsprop: β2g V + (1 − β2g) G², adagrad: V + G², sgd: none)
    if (t % f = 0 and t > s) or t = s:                           (f = precondition_frequency,
        F̂_k = F_k / (1 − β2^t)   (only if β2 < 1 and bias correction)      s = start_preconditioning_step)
        F̂_k = Q diag(λ) Qᵀ ;  if min λ < ε: λ ← λ − min λ + ε             (ε is NOT added otherwise)
        R_k = Q diag(λ^(−e_k)) Qᵀ,  e_k = 1 / (2·order) unless overridden  (R_k starts at I;
        kept unchanged if eigh fails; > max_failed_roots failures in a row raise)
    if β1 > 0:  Ḡ = lerp(M, G, 1 − β3);  M ← lerp(M, G, 1 − β1);  (Ḡ = M if β3 = β1)
                Ḡ ← Ḡ / (1 − β3 β1^(t−1))                         (bias correction)
    else:       Ḡ = G
    P_graft = Ḡ / (sqrt(V / (1 − β2g^t)) + ε_g)  (adam; rmsprop/adagrad without the correction; sgd: Ḡ)
    if t < s and grafting ≠ "none":  P = P_graft
    else:  P = Ḡ ×_1 R_1 ×_2 R_2 ⋯   and with grafting, per block:  P ← ‖P_graft‖ / (‖P‖ + 1e−16) · P
    P ← P + λ W                                               (weight_decay_type = "decoupled")
    W ← W − η P

With β2 = 1, β1 = 0, no grafting and f = s = 1 this is the paper's update W ← W − η L^(−1/4) G R^(−1/4)
with L = Σ G Gᵀ, R = Σ Gᵀ G (the paper's ε I initialisation becomes the eigenvalue shift above; the two
agree whenever ε is small against the spectrum, and exactly on the range of the gradients).

Defaults (the reference README's recipe for replacing AdamW, with the reference's 1024 block size):
``lr=1e-3, betas=(0.9, 0.999), beta3=None (= β1), epsilon=1e-12, weight_decay=0, decoupled,
max_preconditioner_dim=1024, precondition_frequency=100, start_preconditioning_step=None (= f),
use_bias_correction=True, grafting="adam", grafting_beta2=0.999, grafting_epsilon=1e-8,
inverse_exponent_override=None, merge_dims=True, factor_dtype="float32", max_failed_roots=3``.
The reference's own constructor defaults differ (``lr=1e-2, betas=(0.9, 1.0)``, no grafting,
``precondition_frequency=1``); pass those explicitly to get them.

Reference: ``facebookresearch/optimizers`` @ f606606, ``distributed_shampoo/`` (``DistributedShampoo`` with
``RootInvShampooPreconditionerConfig`` = ``DefaultShampooConfig``, eigh root inverse, default
``PerturbationConfig``, ``SingleDeviceDistributedConfig(target_parameter_dimensionality=1)``).  It needs
Python ≥ 3.12 and is not installable here, so no trajectory is replayed; the tests check instead, in
float64 and to rounding (rtol ≤ 1e-10): the exact reduction to torch's Adam/AdamW/Adagrad/RMSprop/SGD before
preconditioning starts, the inverse roots against a dense SciPy computation, the paper's matrix update
against a dense computation, n-D tensors against explicit Kronecker products, and blocking against
separately optimized blocks.

State (all tensors in ``self.state[p]``): ``step`` (float64), ``factor.{b}.{k}`` / ``inv_root.{b}.{k}`` (the
Kronecker factor and its inverse root for block ``b``, k-th preconditioned dim, in ``factor_dtype``),
``failures.{b}`` (int64), ``exp_avg`` (if β1 > 0) and ``graft_sq`` (adam/rmsprop/adagrad grafting) in the
parameter's shape.  Elementwise state is kept in the parameter's dtype, or float32 for bfloat16/float16
parameters (the update is computed in float32 and rounded once).  ``load_state_dict`` (descend's loader)
gives factors and roots the group's ``factor_dtype`` (torch would cast the float32 factors of a float64
parameter) and the elementwise state the dtype above.
The structural hyperparameters (``max_preconditioner_dim``, ``merge_dims``, ``inverse_exponent_override``,
``factor_dtype``) must not change once a parameter has state.

Known deviations from the reference (and why):

* Weight decay "corrected"/"independent", iterate averaging (GPA, schedule-free), classic momentum,
  trace scaling, pseudo-inverse, packed storage, Newton/QR root solvers and the eigendecomposed / SOAP /
  KL variants are not implemented (descend has SOAP separately); ``max_preconditioner_dim`` must be an int.
* Bias corrections (1 − β2^t, 1 − β3 β1^(t−1), Adam grafting's 1 − β2g^t) are computed in double
  precision; the reference forms them as float32 tensors (≈1e−7 relative error).
* The step counter is per parameter (torch convention), not per group: identical unless some parameters
  skip steps (``grad is None``).
* A non-finite inverse root counts as a failed computation (old root kept); the reference raises.  A
  non-finite factor matrix raises in both.
* ``grafting_beta2`` must be in (0, 1) (the reference accepts 1, where Adam/RMSProp grafting degenerates
  to V = 0).  ``start_preconditioning_step`` is ``None`` instead of ``-1`` for "= precondition_frequency".
* The Kronecker outer products are formed from the gradient cast to ``factor_dtype`` (the reference forms
  them in the gradient's dtype and accumulates into the float32 factor).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from ._base import DescendOptimizer, begin_step
from ._linalg import matrix_inverse_root
from ._validate import check_choice, check_float, check_int
from .registry import Categorical, FloatRange, OptimizerSpec, register
from .roles import Role, param_roles

__all__ = ["NEVER", "Shampoo", "block_slices", "merged_shape", "shampoo_param_groups"]

_GRAFTINGS = ("adam", "rmsprop", "adagrad", "sgd", "none")
_FACTOR_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_WD_TYPES = ("decoupled", "l2")
_GRAFT_NORM_EPS = 1e-16  # the reference's guard in ‖P_graft‖ / (‖P_shampoo‖ + 1e-16)

Override = Mapping[int, float | Mapping[int, float]]


def merged_shape(shape: tuple[int, ...], max_dim: int, merge: bool) -> tuple[int, ...]:
    """The shape a parameter is preconditioned in.

    With ``merge`` (the reference's ``target_parameter_dimensionality=1``): drop dims of size 1, then,
    from the last dim backwards, merge neighbours while the product stays ≤ ``max_dim``; a 0-d tensor
    becomes ``(1,)``.  E.g. ``(1, 2, 5, 1), 10 -> (10,)``; ``(32, 3, 64, 64), 8192 -> (96, 4096)``.
    Without ``merge`` the shape is kept as is (a 0-d tensor is then not preconditioned).
    """
    if not merge:
        return tuple(shape)
    if 0 in shape:
        return (0,)
    rest = [d for d in reversed(shape) if d != 1] or [1]
    out = [rest[0]]
    for d in rest[1:]:
        if out[-1] * d <= max_dim:
            out[-1] *= d
        else:
            out.append(d)
    return tuple(reversed(out))


def block_slices(shape: tuple[int, ...], max_dim: int) -> list[tuple[slice, ...]]:
    """Index tuples of the blocks: every dim cut into chunks of ``max_dim`` (last one shorter), row-major."""
    per_dim = [[slice(i, min(i + max_dim, n)) for i in range(0, n, max_dim)] or [slice(0, 0)] for n in shape]
    return [tuple(ix) for ix in itertools.product(*per_dim)]


def _exponents(order: int, override: Override | None) -> list[float]:
    """Inverse-root exponent of each dim of an order-``order`` block (0 = dim not preconditioned)."""
    default = 1.0 / (2 * max(order, 1))
    spec = (override or {}).get(order, {})
    if isinstance(spec, Mapping):
        return [float(spec.get(k, default)) for k in range(order)]
    return [float(spec)] * order


def _check_override(value: Any) -> Override | None:
    name = "inverse_exponent_override"
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be None or a mapping order -> exponent or order -> {{dim: exponent}}, "
                         f"got {value!r}")
    for order, spec in value.items():
        check_int(f"{name} order", order, 0)
        if isinstance(spec, Mapping):
            for dim, e in spec.items():
                check_int(f"{name}[{order}] dim", dim, 0, max(order - 1, 0))
                check_float(f"{name}[{order}][{dim}]", e, 0.0)
        else:
            check_float(f"{name}[{order}]", spec, 0.0)
    return value


def _check_group(group: Mapping[str, Any]) -> None:
    check_float("lr", group["lr"], 0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair (beta1 in [0, 1), beta2 in [0, 1]), got {betas!r}")
    check_float("betas[0]", betas[0], 0.0, 1.0, high_open=True)
    check_float("betas[1]", betas[1], 0.0, 1.0)
    if group["beta3"] is not None:
        check_float("beta3", group["beta3"], 0.0, 1.0, high_open=True)
    check_float("epsilon", group["epsilon"], 0.0, low_open=True)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_choice("weight_decay_type", group["weight_decay_type"], _WD_TYPES)
    check_int("max_preconditioner_dim", group["max_preconditioner_dim"], 1)
    freq = check_int("precondition_frequency", group["precondition_frequency"], 1)
    if group["start_preconditioning_step"] is not None:
        check_int("start_preconditioning_step", group["start_preconditioning_step"], freq)
    check_choice("use_bias_correction", group["use_bias_correction"], (True, False))
    check_choice("grafting", group["grafting"], _GRAFTINGS)
    check_float("grafting_beta2", group["grafting_beta2"], 0.0, 1.0, low_open=True, high_open=True)
    check_float("grafting_epsilon", group["grafting_epsilon"], 0.0, low_open=True)
    _check_override(group["inverse_exponent_override"])
    check_choice("merge_dims", group["merge_dims"], (True, False))
    check_choice("factor_dtype", group["factor_dtype"], tuple(_FACTOR_DTYPES))
    check_int("max_failed_roots", group["max_failed_roots"], 0)


def _work_dtype(p: torch.Tensor) -> torch.dtype:
    return p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32


def _precondition_block(grad: torch.Tensor, roots: list[torch.Tensor], exps: list[float]) -> torch.Tensor:
    """``grad ×_1 R_1 ×_2 R_2 …`` over the preconditioned dims (in the roots' dtype)."""
    x = grad.to(roots[0].dtype) if roots else grad
    it = iter(roots)
    for e in exps:
        # Contract the leading axis with R (symmetric); the result's new axis goes last, so after all
        # dims the axes are back in their original order.  Skipped dims are rotated to the back.
        x = torch.tensordot(x, next(it), dims=([0], [0])) if e != 0.0 else x.movedim(0, -1)
    return x.to(grad.dtype)


class Shampoo(DescendOptimizer):
    """Shampoo with blocking, grafting and β2 accumulation (Distributed Shampoo's practical form).

    Args:
        params: parameters or parameter groups.
        lr: learning rate η (≥ 0).
        betas: (β1, β2): first-moment filter (β1 = 0: none) and Kronecker-factor EMA (β2 = 1: AdaGrad sum).
        beta3: filter coefficient of the current step's gradient (``None`` = β1; Shi et al. §3.1).
        epsilon: ε of the eigenvalue shift, applied only when the smallest eigenvalue is below ε.
        weight_decay: λ.
        weight_decay_type: ``"decoupled"`` (added to the search direction, AdamW-style) or ``"l2"``.
        max_preconditioner_dim: block size; dims above it are split into blocks.
        precondition_frequency: inverse roots are recomputed every that many steps.
        start_preconditioning_step: first step that uses Shampoo (before it: the grafting method);
            ``None`` = ``precondition_frequency``.  Must be ≥ ``precondition_frequency``.
        use_bias_correction: correct the β1 filter and the β2 factor EMA for their zero initialisation.
        grafting: ``"adam"``, ``"rmsprop"``, ``"adagrad"``, ``"sgd"`` or ``"none"``: the method whose
            per-block update norm Shampoo's direction takes (and which runs before preconditioning starts).
        grafting_beta2, grafting_epsilon: β2 and ε of the grafting method (adam/rmsprop; ε also adagrad).
        inverse_exponent_override: ``{order: e}`` or ``{order: {dim: e}}``: inverse-root exponent ``e``
            instead of ``1/(2·order)``; ``e = 0`` leaves that dim unpreconditioned.
        merge_dims: merge small dims before blocking (reference behaviour; a (3, 5) matrix becomes a
            15-vector with one full 15×15 factor).  ``False`` keeps every dim (the paper's Kronecker form).
        factor_dtype: ``"float32"`` (reference) or ``"float64"``: dtype of the factors, the eigh and roots.
        max_failed_roots: consecutive failed root computations (per block) tolerated before raising.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        epsilon: float = 1e-12,
        weight_decay: float = 0.0,
        weight_decay_type: str = "decoupled",
        max_preconditioner_dim: int = 1024,
        precondition_frequency: int = 100,
        start_preconditioning_step: int | None = None,
        use_bias_correction: bool = True,
        grafting: str = "adam",
        grafting_beta2: float = 0.999,
        grafting_epsilon: float = 1e-8,
        inverse_exponent_override: Override | None = None,
        merge_dims: bool = True,
        factor_dtype: str = "float32",
        max_failed_roots: int = 3,
    ) -> None:
        defaults = dict(
            lr=lr, betas=tuple(betas) if isinstance(betas, (list, tuple)) else betas, beta3=beta3,
            epsilon=epsilon, weight_decay=weight_decay, weight_decay_type=weight_decay_type,
            max_preconditioner_dim=max_preconditioner_dim, precondition_frequency=precondition_frequency,
            start_preconditioning_step=start_preconditioning_step, use_bias_correction=use_bias_correction,
            grafting=grafting, grafting_beta2=grafting_beta2, grafting_epsilon=grafting_epsilon,
            inverse_exponent_override=inverse_exponent_override, merge_dims=merge_dims,
            factor_dtype=factor_dtype, max_failed_roots=max_failed_roots,
        )
        _check_group(defaults)
        super().__init__(params, defaults)

    _STATE_KEYS = ("step",)
    _OPTIONAL_STATE_KEYS = ("factor.*", "inv_root.*", "failures.*", "exp_avg", "graft_sq")

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _check_group(group)

    def _required_state_keys(self, group: Mapping[str, Any], p: torch.Tensor) -> list[str]:
        keys = ["step"]
        for b, (_, exps) in enumerate(self._layout(p, group)[1]):
            n_roots = sum(e != 0.0 for e in exps)
            keys += [f"{kind}.{b}.{k}" for k in range(n_roots) for kind in ("factor", "inv_root")]
            keys.append(f"failures.{b}")
        if group["betas"][0] != 0.0:
            keys.append("exp_avg")
        if group["grafting"] in ("adam", "rmsprop", "adagrad"):
            keys.append("graft_sq")
        return keys

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        # factors and roots in the group's factor_dtype (float32 even for float64 parameters, by default)
        if key.startswith(("factor.", "inv_root.")):
            return _FACTOR_DTYPES[group["factor_dtype"]]
        if key.startswith("failures."):
            return torch.int64
        return super()._state_dtype(p, group, key)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Shampoo step; ``closure`` (optional) re-evaluates the loss with gradients enabled."""
        loss = begin_step(self, closure, "Shampoo")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None or p.numel() == 0:
                    continue
                self._step_param(p, group)
        return loss

    # ------------------------------------------------------------------------------------------ internals

    def _layout(self, p: torch.Tensor, group: Mapping[str, Any]) -> tuple[tuple[int, ...], list[Any]]:
        """(merged shape, [(block slices, exponents of its dims)])."""
        max_dim = group["max_preconditioner_dim"]
        shape = merged_shape(tuple(p.shape), max_dim, group["merge_dims"])
        blocks = []
        for sl in block_slices(shape, max_dim):
            blocks.append((sl, _exponents(len(shape), group["inverse_exponent_override"])))
        return shape, blocks

    def _init_state(self, p: torch.Tensor, group: Mapping[str, Any], shape: tuple[int, ...],
                    blocks: list[Any]) -> None:
        state = self.state[p]
        fdtype = _FACTOR_DTYPES[group["factor_dtype"]]
        state["step"] = torch.tensor(0.0, dtype=torch.float64)
        for b, (sl, exps) in enumerate(blocks):
            sizes = [s.stop - s.start for s in sl]
            for k, d in enumerate(n for n, e in zip(sizes, exps, strict=True) if e != 0.0):
                state[f"factor.{b}.{k}"] = torch.zeros(d, d, dtype=fdtype, device=p.device)
                state[f"inv_root.{b}.{k}"] = torch.eye(d, dtype=fdtype, device=p.device)
            state[f"failures.{b}"] = torch.tensor(0, dtype=torch.int64)

    def _refresh_roots(self, p: torch.Tensor, state: dict[str, Any], group: Mapping[str, Any],
                       blocks: list[Any], t: float) -> None:
        beta2 = group["betas"][1]
        bc2 = 1.0 - beta2**t if (group["use_bias_correction"] and beta2 < 1.0) else 1.0
        for b, (_, exps) in enumerate(blocks):
            failed = False
            for k, e in enumerate(e for e in exps if e != 0.0):
                factor = state[f"factor.{b}.{k}"] / bc2
                if not torch.isfinite(factor).all():
                    raise RuntimeError(f"Shampoo: non-finite Kronecker factor (block {b}, dim {k}) of a parameter "
                                       f"of shape {tuple(p.shape)}: check for nan/inf gradients or divergence")
                try:
                    root = matrix_inverse_root(factor, e, epsilon=group["epsilon"])
                except RuntimeError:  # eigh did not converge, even in float64
                    failed = True
                    continue
                if not torch.isfinite(root).all():
                    failed = True
                    continue
                state[f"inv_root.{b}.{k}"].copy_(root)
            counter = state[f"failures.{b}"]
            if not failed:
                counter.zero_()
                continue
            counter.add_(1)
            if int(counter) > group["max_failed_roots"]:
                raise RuntimeError(f"Shampoo: the inverse root of block {b} of a parameter of shape "
                                   f"{tuple(p.shape)} failed {int(counter)} times in a row "
                                   f"(max_failed_roots={group['max_failed_roots']})")

    def _graft(self, gbar: torch.Tensor, sq: torch.Tensor | None, group: Mapping[str, Any],
               t: float) -> torch.Tensor:
        kind = group["grafting"]
        if kind == "sgd" or sq is None:
            return gbar
        # Adam: sqrt(V / (1 - β2g^t)) + ε, as the reference (torch's Adam divides sqrt(V) by sqrt(1 - β2g^t)).
        denom = (sq / (1.0 - group["grafting_beta2"] ** t)).sqrt() if kind == "adam" else sq.sqrt()
        return gbar / denom.add_(group["grafting_epsilon"])

    def _step_param(self, p: torch.Tensor, group: Mapping[str, Any]) -> None:
        state = self.state[p]
        shape, blocks = self._layout(p, group)
        if not state:
            self._init_state(p, group, shape, blocks)
        work = _work_dtype(p)
        state["step"].add_(1.0)
        t = float(state["step"])
        beta1, beta2 = group["betas"]
        beta3 = beta1 if group["beta3"] is None else group["beta3"]
        wd, kind = group["weight_decay"], group["grafting"]
        freq = group["precondition_frequency"]
        start = freq if group["start_preconditioning_step"] is None else group["start_preconditioning_step"]

        w = p.detach().to(work).reshape(shape)
        assert p.grad is not None  # step() calls this only for parameters with a gradient
        g = p.grad.detach().to(work).reshape(shape)
        if wd != 0.0 and group["weight_decay_type"] == "l2":
            g = g + wd * w

        # Kronecker factors: F_k ← β2 F_k + w · G_(k) G_(k)ᵀ, per block.
        weight = 1.0 if beta2 == 1.0 else 1.0 - beta2
        fdtype = _FACTOR_DTYPES[group["factor_dtype"]]
        for b, (sl, exps) in enumerate(blocks):
            gb = g[sl].to(fdtype)
            dims = [d for d, e in enumerate(exps) if e != 0.0]
            for k, d in enumerate(dims):
                others = [i for i in range(gb.dim()) if i != d]
                outer = torch.tensordot(gb, gb, dims=(others, others))
                factor = state[f"factor.{b}.{k}"]
                if beta2 != 1.0:
                    factor.mul_(beta2)
                factor.add_(outer, alpha=weight)

        # Grafting second moment.
        sq = None
        if kind in ("adam", "rmsprop", "adagrad"):
            if "graft_sq" not in state:
                state["graft_sq"] = torch.zeros_like(p, dtype=work, memory_format=torch.contiguous_format)
            sq = state["graft_sq"].view(shape)
            if kind == "adagrad":
                sq.addcmul_(g, g)
            else:
                bg2 = group["grafting_beta2"]
                sq.mul_(bg2).addcmul_(g, g, value=1.0 - bg2)

        if (t % freq == 0 and t > start) or t == start:
            self._refresh_roots(p, state, group, blocks, t)

        # First-moment filtering (Shi et al. §3.1, Lion-like β1/β3).
        if beta1 != 0.0:
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(p, dtype=work, memory_format=torch.contiguous_format)
            m = state["exp_avg"].view(shape)
            gbar = torch.lerp(m, g, 1.0 - beta3) if beta3 != beta1 else None
            m.lerp_(g, 1.0 - beta1)
            gbar = m if gbar is None else gbar
            if group["use_bias_correction"]:
                gbar = gbar / (1.0 - beta3 * beta1 ** (t - 1))
        else:
            gbar = g

        # Search direction.
        if t < start and kind != "none":
            direction = self._graft(gbar, sq, group, t)
        else:
            direction = torch.empty_like(gbar)
            for b, (sl, exps) in enumerate(blocks):
                n_roots = sum(e != 0.0 for e in exps)
                roots = [state[f"inv_root.{b}.{k}"] for k in range(n_roots)]
                pb = _precondition_block(gbar[sl], roots, exps)
                if kind != "none":
                    graft_norm = torch.linalg.vector_norm(self._graft(gbar[sl], None if sq is None else sq[sl],
                                                                      group, t))
                    pb = pb * (graft_norm / (torch.linalg.vector_norm(pb) + _GRAFT_NORM_EPS))
                direction[sl] = pb
        if wd != 0.0 and group["weight_decay_type"] == "decoupled":
            direction = direction + wd * w

        lr = float(group["lr"])
        if p.dtype == work:
            p.add_(direction.view(p.shape), alpha=-lr)
        else:
            p.copy_(w.view(p.shape).add(direction.view(p.shape), alpha=-lr))


# ---------------------------------------------------------------------------------------------- registry

#: ``start_preconditioning_step`` of a group that never starts preconditioning (its grafting method throughout)
NEVER = 1 << 62


def shampoo_param_groups(model: torch.nn.Module, adam_roles: Iterable[Role | str] = (Role.EMBEDDING,)
                         ) -> list[dict[str, Any]]:
    """Groups for :class:`Shampoo` from a module: parameters whose role (:func:`descend.optim.roles.param_roles`,
    from module types) is in ``adam_roles`` — by default the embeddings and positional tables — never start
    preconditioning (``start_preconditioning_step=NEVER`` with Adam grafting: exactly Adam/AdamW); every
    other parameter is preconditioned as usual.  Empty groups are omitted."""
    chosen = {Role.parse(r, "adam_roles") for r in adam_roles}
    roles = param_roles(model)
    adam = [p for p, r in roles.items() if r in chosen and p.requires_grad]
    rest = [p for p, r in roles.items() if r not in chosen and p.requires_grad]
    groups: list[dict[str, Any]] = [
        {"name": "shampoo", "params": rest},
        {"name": "adam", "params": adam, "start_preconditioning_step": NEVER, "grafting": "adam"},
    ]
    return [g for g in groups if g["params"]]


def _module_groups(model: torch.nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: :func:`shampoo_param_groups` (embeddings to Adam)."""
    return shampoo_param_groups(model)


register(OptimizerSpec(
    name="shampoo",
    factory=Shampoo,
    paper=("Gupta, Koren & Singer 2018, Shampoo: Preconditioned Stochastic Tensor Optimization, arXiv:1802.09568; "
           "Shi et al. 2023, A Distributed Data-Parallel PyTorch Implementation of the Distributed Shampoo "
           "Optimizer, arXiv:2309.06497"),
    reference=("facebookresearch/optimizers@f606606 distributed_shampoo (read, not installable on Python 3.11); "
               "checked against torch Adam/AdamW/Adagrad/RMSprop/SGD and dense float64 computations"),
    search_space={
        "lr": FloatRange(1e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.999), (0.95, 0.999), (0.9, 0.99), (0.95, 0.95))),
        "epsilon": FloatRange(1e-12, 1e-6, log=True),
        "weight_decay": FloatRange(1e-5, 1.0, log=True),  # as AdamW's (Wen et al.: wd 0.1, Soap and Kron 0.1-0.7)
        "precondition_frequency": Categorical((10, 50, 100)),
        "grafting_epsilon": FloatRange(1e-10, 1e-6, log=True),
    },
    summary="Kronecker-factored preconditioner (blocked, β2-averaged) with Adam grafting: Distributed Shampoo",
    module_groups=_module_groups,
))
