r"""FRUGAL: state-full AdamW on a subspace, a state-free update on the rest.

Paper: Philip Zmushko, Aleksandr Beznosikov, Martin Takáč, Samuel Horváth (2024), "FRUGAL: Memory-Efficient
Optimization by Reducing State Overhead for Scalable Training", arXiv:2411.07837.

Algorithm (paper Algorithm 1 / §3, as the authors' ``GaloreAdamW``, ``CoordAdamW`` and ``BlockAdamW`` run
it).  Parameters are split into *regular* ones (full AdamW) and *projected* ones.  For a projected matrix
W with gradient G, at the group's steps t = 1, 1 + T, 1 + 2T, … (T = ``update_gap``) a subspace is drawn
from that step's gradient and, with ``reset_statistics``, the Adam moments and their step count restart::

    W ← W · (1 − lr·wd)                                              (decoupled, un-scaled lr, every param)
    low   = down(G)                       svd:  right P = Vh[:r] (rows ≥ cols, r = round(ρ·cols)): G Pᵀ
                                                left  P = U[:, :r] (rows < cols, r = round(ρ·rows)): Pᵀ G
                                          random: the same with a random semi-orthogonal P
                                          columns / rows / randk: G[:, S], G[S, :], G.flat[S], |S| = ⌊ρ·n⌋
    m ← β1 m + (1−β1) low ; v ← β2 v + (1−β2) low² ; k ← k + 1
    Δ_low = −(lr·s / (1−β1^k)) · m / (√v / √(1−β2^k) + ε)           (s = ``proj_params_lr_scale``)
    W ← W + up(Δ_low) − lr·s·s_in · φ(G − up(low))                   (s_in = ``inactive_lr_scale``)

with φ = sign (``"sign_sgd"``), identity (``"sgd"``) or 0 (``"no"``).  ``blocks`` (BAdam-like): at each
refresh k = round(ρ·#tensors) whole tensors become active (order ``random``, ``ascending``,
``descending`` or ``mirror``), get fresh AdamW state and the update above with up = down = identity;
inactive tensors get −lr·s·s_in·φ(G) and hold no state.  Regular parameters: AdamW with ``lr``.

Memory: a projected m×n matrix keeps 2·|low| moment entries (≈ ρ of AdamW's 2mn), plus the r×n (or m×r)
basis for svd/random and ⌊ρ·n⌋ int64 indices for coordinates; blocks keep moments only for active tensors.
Measured on a transformer-like model (float32, ρ = 0.25, d = 256; ``tests/optim/test_frugal.py``), all state
of the projected tensors / (ρ · AdamW's): columns, rows 1.005; blocks 1.00 averaged over a rotation (1.50
when the largest tensors are active); svd, random 1.25 (the basis); randk 2.0 (its int64 index list is as
large as float32 moments, as in the reference).

Defaults: ``lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, correct_bias=True, density=0.25,
update_gap=200, reset_statistics=True, inactive_update_rule="sign_sgd", inactive_lr_scale=1.0,
proj_params_lr_scale=1.0, proj_side="std"`` (the reference's), ``projection="blocks",
block_order="descending"`` (the paper's pre-training script, ``--optimizer frugal``), SVD in float32
(``svd_dtype``, as the reference).

Which parameters are projected: a group's ``is_proj_params`` (``True``/``False``, as the reference's groups;
:func:`frugal_param_groups` builds them like its ``prepare_proj_params``), or ``None`` (default) = auto:
2-D tensors for svd/random/columns/rows, tensors with ≥ 2 dimensions for randk/blocks.

Randomness: subsets come from a ``torch.Generator`` per group seeded with ``seed + group index``, whose
state is kept in the optimizer state (bitwise resume).  ``subset_provider(step, projection, params)``
(optional) replaces the draw: it returns, for each projected tensor of the group, an index list
(columns / rows / randk as flat indices or ``[rows, cols]``) or a bool (blocks); the fixture replay uses
it to inject the reference's recorded subsets.

Reference: the authors' commit ``c7ebe4c`` (``hungquangbui02022003/FRUGAL`` fork) ``frugal/`` with import
shims; checked against ``frugal__*.json`` (coordinates/blocks: rtol 1e-10, atol 1e-12; SVD: rtol 1e-9,
atol 2e-7).

Known deviations from the reference:

* ``blocks`` activates at least one tensor when ρ > 0 (the reference's ``round(ρ·#tensors)`` can be 0 for
  small groups, which silently trains no tensor state-fully).  As in the reference, a block refresh always
  restarts the moments (``reset_statistics`` only affects the other projections).
* Parameters without a gradient are skipped (no state); a projected tensor that first gets a gradient
  between refreshes draws its own subspace at that step.  The refresh schedule counts the group's steps.
* The ``"full"`` (two-sided) GaLore projection and the ``randperm`` projection type are not offered
  (``randperm`` = ``columns``/``rows`` with a permutation-matrix multiply).
* ``closure`` is evaluated under ``torch.enable_grad()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ._base import DescendOptimizer, begin_step
from ._fused import ElementwiseBatch, check_fused
from ._validate import check_betas, check_choice, check_float, check_int
from .registry import Categorical, FloatRange, IntRange, OptimizerSpec, register
from .roles import NO_HIDDEN_MATRICES, NotApplicable, Role, param_roles

__all__ = ["FRUGAL", "PROJECTIONS", "frugal_adamw", "frugal_param_groups", "frugal_state_free"]

PROJECTIONS = ("svd", "random", "columns", "rows", "randk", "blocks")
_MATRIX_PROJECTIONS = ("svd", "random", "columns", "rows")
_RULES = ("sign_sgd", "sgd", "no")
_SIDES = ("std", "reverse_std", "left", "right")
_ORDERS = ("random", "ascending", "descending", "mirror")
_ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")
_DEFAULT_TARGETS = ("attn", "mlp", "q_proj", "v_proj", "up_proj", "down_proj", "gate_proj", "k_proj", "o_proj",
                    "query", "value", "key", "intermediate.dense", "output.dense")

SubsetProvider = Callable[[int, str, Sequence[torch.Tensor]], Sequence[Any]]


def frugal_param_groups(model: nn.Module, target_modules: Sequence[str] | None = _DEFAULT_TARGETS, *,
                        proj_norms: bool = False, proj_embeds: bool = False,
                        proj_logits: bool = False, matrices_only: bool = False) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into a regular and a projected group.

    Projected: weights of ``nn.Linear`` modules whose qualified name contains one of ``target_modules``
    (attention and MLP projections), plus norms / ``embed_tokens`` / ``lm_head`` parameters if asked.
    Everything else (embeddings, norms, biases, output head) is regular (full AdamW).  Mirrors the
    reference's ``prepare_proj_params``.

    ``target_modules=None``: project the **hidden matrices** instead, by role (module types, not names:
    :func:`descend.optim.roles.param_roles`; the input layer, head, embeddings and vectors stay regular) —
    what the benchmark uses, since ordinary models do not follow the reference's naming.
    ``matrices_only`` keeps tensors with ``ndim != 2`` (conv kernels) regular, for the matrix projections.
    """
    proj: list[torch.Tensor] = []
    if target_modules is None:
        roles = param_roles(model)
        proj = [p for p, role in roles.items() if role is Role.HIDDEN and p.requires_grad
                and (p.ndim == 2 or not matrices_only)]
    for name, module in model.named_modules():
        if target_modules is None:
            break
        if isinstance(module, nn.Linear) and any(t in name for t in target_modules) \
                and module.weight.requires_grad:
            proj.append(module.weight)
    for name, p in model.named_parameters():
        if (("norm" in name and proj_norms) or ("embed_tokens" in name and proj_embeds)
                or ("lm_head" in name and proj_logits)):
            proj.append(p)
    ids = {id(p) for p in proj}
    regular = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]
    return [{"params": regular, "is_proj_params": False}, {"params": proj, "is_proj_params": True}]


class FRUGAL(DescendOptimizer):
    """FRUGAL: AdamW on a projected subspace of each projected tensor, signSGD/SGD on the complement.

    Args:
        params: parameters or groups; a group's ``is_proj_params`` (``True``/``False``/``None`` = auto by
            shape) says whether its tensors are projected.  Every other keyword below except ``svd_dtype``,
            ``seed`` and ``subset_provider`` may be set per group.
        lr, betas, eps, weight_decay, correct_bias: the AdamW part (decoupled weight decay, un-scaled lr).
        projection: ``"svd"``, ``"random"``, ``"columns"``, ``"rows"``, ``"randk"`` or ``"blocks"``.
        density: ρ, the state-full fraction (rank, columns, coordinates or tensors).
        update_gap: T, steps between subspace refreshes.
        reset_statistics: restart the Adam moments and bias correction at each refresh.
        inactive_update_rule: ``"sign_sgd"``, ``"sgd"`` or ``"no"`` on the complement.
        inactive_lr_scale, proj_params_lr_scale: lr multipliers (see the module docstring).
        proj_side: ``"std"`` (right for rows ≥ cols, else left), ``"reverse_std"``, ``"left"``, ``"right"``.
        block_order: ``"random"``, ``"ascending"``, ``"descending"`` or ``"mirror"``.
        svd_dtype: dtype of the SVD / QR that builds the basis (cast back to the parameter dtype).
        seed: seed of the per-group generators of random subsets.
        subset_provider: optional ``(step, projection, params) -> choices`` replacing the random draws.
        fused: the elementwise parts (:func:`frugal_adamw`, :func:`frugal_state_free`) compiled where
            ``torch.compile`` works (``None``, default), always (``True``) or never (``False``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        correct_bias: bool = True,
        projection: str = "blocks",
        density: float = 0.25,
        update_gap: int = 200,
        reset_statistics: bool = True,
        inactive_update_rule: str = "sign_sgd",
        inactive_lr_scale: float = 1.0,
        proj_params_lr_scale: float = 1.0,
        proj_side: str = "std",
        block_order: str = "descending",
        svd_dtype: torch.dtype = torch.float32,
        seed: int = 0,
        subset_provider: SubsetProvider | None = None,
        fused: bool | None = None,
    ) -> None:
        self._fused = check_fused(fused)
        self.svd_dtype: torch.dtype = check_choice("svd_dtype", svd_dtype, (torch.float32, torch.float64))
        self.seed = check_int("seed", seed, 0)
        if subset_provider is not None and not callable(subset_provider):
            raise ValueError("subset_provider must be callable (step, projection, params) -> choices or None")
        self.subset_provider = subset_provider
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay,
                    "correct_bias": correct_bias, "is_proj_params": None, "projection": projection,
                    "density": density, "update_gap": update_gap, "reset_statistics": reset_statistics,
                    "inactive_update_rule": inactive_update_rule, "inactive_lr_scale": inactive_lr_scale,
                    "proj_params_lr_scale": proj_params_lr_scale, "proj_side": proj_side,
                    "block_order": block_order}
        _check_group(defaults, [])
        super().__init__(params, defaults)

    _STATE_KEYS = ()
    _OPTIONAL_STATE_KEYS = ("step", "exp_avg", "exp_avg_sq", "basis", "indices", "group_step", "rng", "active",
                            "next_block")
    _STATE_KEY_SETS = (("step", "exp_avg", "exp_avg_sq"), ("group_step", "rng"))
    _STEP_DTYPE = torch.int64
    _CONFIG_ATTRS = ("svd_dtype", "seed", "subset_provider", "_fused")

    def _check_group(self, group: Mapping[str, Any]) -> None:
        _check_group(group, group["params"])

    def _check_param_state(self, keys: set[Any], group: Mapping[str, Any], p: torch.Tensor) -> None:
        super()._check_param_state(keys, group, p)
        need = []
        if "group_step" in keys and group["projection"] == "blocks":
            need += ["active", "next_block"]
        if "exp_avg" in keys and self.projected(group, p) and group["projection"] != "blocks":
            need.append("basis" if group["projection"] in ("svd", "random") else "indices")
        missing = [k for k in need if k not in keys]
        if missing:
            raise ValueError(f"FRUGAL state key(s) {missing} are missing (keys saved: {sorted(map(str, keys))})")

    def _state_dtype(self, p: torch.Tensor, group: Mapping[str, Any], key: str) -> torch.dtype | None:
        # moments and bases live in the parameter's own dtype (also bfloat16); counters are int64
        if key in ("step", "group_step", "next_block"):
            return torch.int64
        return p.dtype if p.is_floating_point() and key in ("exp_avg", "exp_avg_sq", "basis") else None

    # ---------------------------------------------------------------------------------- bookkeeping

    @staticmethod
    def projected(group: Mapping[str, Any], p: torch.Tensor) -> bool:
        """Whether ``p`` (a tensor of ``group``) is projected."""
        flag = group["is_proj_params"]
        if flag is not None:
            return bool(flag)
        return p.ndim == 2 if group["projection"] in _MATRIX_PROJECTIONS else p.ndim >= 2

    def _group_state(self, group: Mapping[str, Any], proj: list[torch.Tensor]) -> dict[str, Any]:
        for p in proj:
            st = self.state.get(p)
            if st and "group_step" in st:
                return st
        st = self.state[next(p for p in proj if p.grad is not None)]
        index = next(i for i, g in enumerate(self.param_groups) if g is group)
        st["group_step"] = torch.zeros((), dtype=torch.int64)
        st["rng"] = torch.Generator().manual_seed(self.seed + index).get_state()
        if group["projection"] == "blocks":
            st["active"] = torch.zeros(len(proj), dtype=torch.bool)
            n = len(proj)
            start = n - 1 if group["block_order"] == "descending" else 0
            st["next_block"] = torch.tensor(start, dtype=torch.int64)
        return st

    def _generator(self, gstate: dict[str, Any]) -> torch.Generator:
        gen = torch.Generator()
        gen.set_state(gstate["rng"])
        return gen

    # ---------------------------------------------------------------------------------- subspaces

    def _choices(self, step: int, group: Mapping[str, Any], params: list[torch.Tensor],
                 gstate: dict[str, Any]) -> list[Any]:
        """Index subsets (or active flags, for blocks) for ``params``, drawn or from the provider."""
        kind = group["projection"]
        if self.subset_provider is not None:
            out = list(self.subset_provider(step, kind, params))
            if len(out) != len(params):
                raise ValueError(f"subset_provider returned {len(out)} choices for {len(params)} tensors")
            return out
        gen = self._generator(gstate)
        if kind == "blocks":
            out = _select_blocks(group, len(params), gstate, gen)
        else:
            out = []
            for p in params:
                total = {"columns": p.shape[-1], "rows": p.shape[0]}.get(kind, p.numel())
                out.append(torch.randperm(total, generator=gen)[:int(total * group["density"])])
        gstate["rng"] = gen.get_state()
        return out

    def _new_basis(self, group: Mapping[str, Any], g: torch.Tensor, gstate: dict[str, Any]) -> torch.Tensor:
        side = _side(group["proj_side"], g.shape)
        rank = round((g.shape[1] if side == "right" else g.shape[0]) * group["density"])
        if group["projection"] == "svd":
            u, _, vh = torch.linalg.svd(g.to(self.svd_dtype), full_matrices=False)
            basis = vh[:rank, :] if side == "right" else u[:, :rank]
        else:  # random semi-orthogonal basis: Q of a Gaussian matrix, signs fixed by R's diagonal
            gen = self._generator(gstate)
            n = g.shape[1] if side == "right" else g.shape[0]
            gauss = torch.randn(n, rank, generator=gen, dtype=torch.float64).to(self.svd_dtype)
            gstate["rng"] = gen.get_state()
            q, r = torch.linalg.qr(gauss)
            q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
            basis = q.T if side == "right" else q
        return basis.to(device=g.device, dtype=g.dtype).contiguous()

    def _refresh(self, group: Mapping[str, Any], params: list[torch.Tensor], gstate: dict[str, Any],
                 step: int) -> None:
        """Draw new subspaces for ``params`` (which all have gradients) and reset their statistics."""
        kind = group["projection"]
        grads: list[torch.Tensor] = []
        for p in params:
            assert p.grad is not None  # the callers pass only parameters with gradients
            grads.append(p.grad)
        if kind in ("svd", "random"):
            for p, g in zip(params, grads, strict=True):
                self.state[p]["basis"] = self._new_basis(group, g, gstate)
        else:
            for p, choice in zip(params, self._choices(step, group, params, gstate), strict=True):
                self.state[p]["indices"] = _flat_indices(kind, p, choice)
        for p, g in zip(params, grads, strict=True):
            st = self.state[p]
            if group["reset_statistics"] or "exp_avg" not in st:
                low = _down(group, st, g)
                st["step"] = torch.zeros((), dtype=torch.int64)
                st["exp_avg"] = torch.zeros_like(low)
                st["exp_avg_sq"] = torch.zeros_like(low)

    def _refresh_blocks(self, group: Mapping[str, Any], proj: list[torch.Tensor], gstate: dict[str, Any],
                        step: int) -> None:
        flags = [bool(f) for f in self._choices(step, group, proj, gstate)]
        gstate["active"] = torch.tensor(flags, dtype=torch.bool)
        for p in proj:  # every block restarts (the reference clears all and re-initialises the active)
            st = self.state.get(p)
            if st:
                for key in _ADAM_KEYS:
                    st.pop(key, None)

    # ---------------------------------------------------------------------------------- the step

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One FRUGAL step; ``closure`` (optional) re-evaluates the loss with gradients enabled."""
        loss = begin_step(self, closure, "FRUGAL")
        batch = ElementwiseBatch(self._fused)  # one compiled call per group of tensors that share scalars
        for group in self.param_groups:
            if not any(p.grad is not None for p in group["params"]):
                continue
            proj = [p for p in group["params"] if self.projected(group, p)]
            kind = group["projection"]
            gstate = None
            if any(p.grad is not None for p in proj):
                gstate = self._group_state(group, proj)
                t = int(gstate["group_step"])
                if t % group["update_gap"] == 0:
                    if kind == "blocks":
                        self._refresh_blocks(group, proj, gstate, t + 1)
                    else:
                        self._refresh(group, [p for p in proj if p.grad is not None], gstate, t + 1)
                elif kind != "blocks":
                    fresh = [p for p in proj if p.grad is not None and "exp_avg" not in self.state[p]]
                    if fresh:
                        self._refresh(group, fresh, gstate, t + 1)
            proj_ids = {id(p) for p in proj}
            for i, p in enumerate(proj):
                if p.grad is not None:
                    assert gstate is not None  # set above: a projected parameter has a gradient
                    self._update_projected(batch, group, p,
                                           bool(gstate["active"][i]) if kind == "blocks" else True)
            for p in group["params"]:
                if p.grad is not None and id(p) not in proj_ids:
                    st = self.state[p]
                    if "exp_avg" not in st:
                        _init_adam(st, p)
                    _adam_update(st, p, p.grad, group, float(group["lr"]), batch,
                                 decay=1 - float(group["lr"]) * group["weight_decay"])
            if gstate is not None:
                gstate["group_step"] += 1
        batch.run()
        return loss

    def _update_projected(self, batch: ElementwiseBatch, group: Mapping[str, Any], p: torch.Tensor,
                          active: bool) -> None:
        kind, g, st = group["projection"], p.grad, self.state[p]
        assert g is not None  # ``step`` calls this only for parameters with gradients
        decay = 1 - float(group["lr"]) * group["weight_decay"]
        active_lr = float(group["lr"]) * group["proj_params_lr_scale"]
        inactive_lr = active_lr * group["inactive_lr_scale"]
        rule = group["inactive_update_rule"]
        if kind == "blocks":
            if active:
                if "exp_avg" not in st:
                    _init_adam(st, p)
                _adam_update(st, p, g, group, active_lr, batch, decay=decay)
            elif rule == "no":
                p.mul_(decay)
            else:
                batch.add(frugal_state_free, (p, g), {"decay": decay, "lr": inactive_lr, "sign": rule == "sign_sgd"})
            return
        p.mul_(decay)
        low = _down(group, st, g)
        low_update = torch.zeros_like(low)
        now = ElementwiseBatch(batch.fused)  # the low-dimensional update is needed at once
        _adam_update(st, low_update, low, group, active_lr, now, decay=1.0)
        now.run()
        update = _up(group, st, low_update, g)
        if rule != "no":
            resid = g - _up(group, st, low, g)
            update.add_(-inactive_lr * (resid if rule == "sgd" else resid.sign()))
        p.add_(update)


# -------------------------------------------------------------------------------------- helpers


def _check_group(group: Mapping[str, Any], params: Sequence[torch.Tensor]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_betas("betas", group["betas"])
    check_float("eps", group["eps"], 0.0)
    check_float("weight_decay", group["weight_decay"], 0.0)
    check_choice("correct_bias", group["correct_bias"], (True, False))
    check_choice("is_proj_params", group["is_proj_params"], (None, True, False))
    check_choice("projection", group["projection"], PROJECTIONS)
    check_float("density", group["density"], 0.0, 1.0)
    check_int("update_gap", group["update_gap"], 1)
    check_choice("reset_statistics", group["reset_statistics"], (True, False))
    check_choice("inactive_update_rule", group["inactive_update_rule"], _RULES)
    check_float("inactive_lr_scale", group["inactive_lr_scale"], 0.0)
    check_float("proj_params_lr_scale", group["proj_params_lr_scale"], 0.0)
    check_choice("proj_side", group["proj_side"], _SIDES)
    check_choice("block_order", group["block_order"], _ORDERS)
    proj = [p for p in params if FRUGAL.projected(group, p)]
    if group["projection"] in _MATRIX_PROJECTIONS and any(p.ndim != 2 for p in proj):
        raise ValueError(f"is_proj_params: projection {group['projection']!r} needs 2-D tensors, got shapes "
                         f"{[tuple(p.shape) for p in proj if p.ndim != 2]}")
    if group["projection"] == "blocks" and group["block_order"] == "mirror" and proj \
            and _num_active(group, len(proj)) % 2:
        raise ValueError(f"block_order 'mirror' needs an even number of active blocks, got "
                         f"{_num_active(group, len(proj))} (density {group['density']}, {len(proj)} tensors)")


def _num_active(group: Mapping[str, Any], n: int) -> int:
    k = round(n * group["density"])
    return max(k, 1) if group["density"] > 0 and n > 0 else k


def _select_blocks(group: Mapping[str, Any], n: int, gstate: dict[str, Any], gen: torch.Generator) -> list[bool]:
    k, order = _num_active(group, n), group["block_order"]
    flags = [False] * n
    start = int(gstate["next_block"])
    if order == "random":
        for i in torch.randperm(n, generator=gen)[:k].tolist():
            flags[i] = True
        return flags
    if order == "ascending":
        for i in range(start, start + k):
            flags[i % n] = True
        start = start + k - n if start + k >= n else start + k
    elif order == "descending":
        for i in range(start, start - k, -1):
            flags[i % n] = True
        start = start - k + n if start - k < 0 else start - k
    else:  # mirror: pairs (i, n - 1 - i) from both ends
        half = n // 2
        for i in range(start, start + k // 2):
            flags[i % half] = True
            flags[n - 1 - i % half] = True
        start = start + k // 2 - half if start + k // 2 >= half else start + k // 2
    gstate["next_block"].fill_(start)
    return flags


def _side(proj_side: str, shape: torch.Size) -> str:
    tall = shape[0] >= shape[1]
    if proj_side in ("left", "right"):
        return proj_side
    return "right" if tall == (proj_side == "std") else "left"


def _flat_indices(kind: str, p: torch.Tensor, choice: Any) -> torch.Tensor:
    if kind == "randk" and isinstance(choice, (list, tuple)) and len(choice) == 2 \
            and not isinstance(choice[0], int):
        rows, cols = (torch.as_tensor(c, dtype=torch.int64) for c in choice)
        return (rows * p.shape[-1] + cols).to(p.device)
    return torch.as_tensor(choice, dtype=torch.int64).to(p.device)


def _down(group: Mapping[str, Any], st: Mapping[str, Any], g: torch.Tensor) -> torch.Tensor:
    kind = group["projection"]
    if kind in ("svd", "random"):
        basis = st["basis"]
        return g @ basis.T if _side(group["proj_side"], g.shape) == "right" else basis.T @ g
    idx = st["indices"]
    if kind == "columns":
        return g[:, idx]
    if kind == "rows":
        return g[idx]
    return g.reshape(-1)[idx]


def _up(group: Mapping[str, Any], st: Mapping[str, Any], low: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    kind = group["projection"]
    if kind in ("svd", "random"):
        basis = st["basis"]
        return low @ basis if _side(group["proj_side"], like.shape) == "right" else basis @ low
    full = torch.zeros_like(like)
    idx = st["indices"]
    if kind == "columns":
        full[:, idx] = low
    elif kind == "rows":
        full[idx] = low
    else:
        full.view(-1)[idx] = low
    return full


def _init_adam(st: dict[str, Any], like: torch.Tensor) -> None:
    st["step"] = torch.zeros((), dtype=torch.int64)
    st["exp_avg"] = torch.zeros_like(like, memory_format=torch.preserve_format)
    st["exp_avg_sq"] = torch.zeros_like(like, memory_format=torch.preserve_format)


def frugal_adamw(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, *, decay: float,
                 beta1: float, beta2: float, step_size: float, correct_bias: bool, sqrt_bc2: float,
                 eps: float) -> None:
    """AdamW on one tensor, in place (eps after the bias-corrected root, as the reference's ``AdamW``): the
    math of the eager and the compiled path.  ``p`` is the parameter (``decay = 1 - lr wd``) or, for a
    projected tensor, a zero buffer that receives the low-dimensional update (``decay = 1``)."""
    p.mul_(decay)
    m.mul_(beta1).add_(g * (1.0 - beta1))
    v.mul_(beta2).add_(g * g * (1.0 - beta2))
    denom = v.sqrt()
    if correct_bias:
        denom = denom / sqrt_bc2
    p.add_(m / (denom + eps) * -step_size)


def frugal_state_free(p: torch.Tensor, g: torch.Tensor, *, decay: float, lr: float, sign: bool) -> None:
    """The state-free update of an inactive block, in place: ``p <- decay p - lr phi(g)``, phi = sign or id."""
    p.mul_(decay)
    p.sub_((g.sign() if sign else g) * lr)


def _adam_update(st: dict[str, Any], out: torch.Tensor, g: torch.Tensor, group: Mapping[str, Any], lr: float,
                 batch: ElementwiseBatch, *, decay: float) -> None:
    """:func:`frugal_adamw` into ``out`` for gradient ``g`` (added to ``batch``), advancing the step."""
    beta1, beta2 = group["betas"]
    st["step"] += 1
    k = int(st["step"])
    correct_bias = bool(group["correct_bias"])
    batch.add(frugal_adamw, (out, g, st["exp_avg"], st["exp_avg_sq"]),
              {"decay": decay, "beta1": float(beta1), "beta2": float(beta2), "correct_bias": correct_bias,
               "step_size": lr / (1.0 - beta1**k) if correct_bias else lr,
               "sqrt_bc2": math.sqrt(1.0 - beta2**k) if correct_bias else 1.0, "eps": float(group["eps"])})


# -------------------------------------------------------------------------------------- registry


def _recorded_subsets(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> SubsetProvider | None:
    """A provider that returns the reference's recorded subsets (``extra.coordinate_indices`` / ``active_blocks``)."""
    extra = fx.get("extra", {}) or {}
    records = extra.get("coordinate_indices") or extra.get("active_blocks")
    if not records:
        return None
    by_step = {int(r["step"]): r["choice"] for r in records}
    names = {id(t): n for n, t in params.items()}

    def provider(step: int, projection: str, tensors: Sequence[torch.Tensor]) -> list[Any]:
        if step not in by_step:
            raise KeyError(f"the fixture records no subset for a refresh at step {step}")
        return [by_step[step][names[id(t)]] for t in tensors]

    return provider


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> FRUGAL:
    hp = dict(fx["hyperparameters"])
    hp.pop("no_deprecation_warning", None)
    hp.pop("_example_state_init", None)
    if "proj_type" in hp:  # GaloreAdamW
        hp["projection"] = hp.pop("proj_type")
    elif "coord_choice" in hp:  # CoordAdamW
        choice = hp.pop("coord_choice")
        hp["projection"] = choice if choice in ("columns", "rows") else "randk"
    elif "block_order" in hp:  # BlockAdamW
        hp["projection"] = "blocks"
    hp["betas"] = tuple(hp["betas"])
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [params[n] for n in g["params"]]}
              for g in fx["param_groups"]]
    return FRUGAL(groups, subset_provider=_recorded_subsets(fx, params),
                  svd_dtype=torch.float32, **hp)


def _module_groups(model: nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: hidden matrices projected, everything else regular AdamW (roles from module types);
    ``NotApplicable`` on a model without hidden matrices (FRUGAL would be AdamW there)."""
    groups = frugal_param_groups(model, None, matrices_only=hp.get("projection") in _MATRIX_PROJECTIONS)
    if not groups[1]["params"]:
        raise NotApplicable(NO_HIDDEN_MATRICES)
    return [g for g in groups if g["params"]]


register(OptimizerSpec(
    name="frugal",
    factory=FRUGAL,
    paper="Zmushko, Beznosikov, Takáč & Horváth 2024, FRUGAL: Memory-Efficient Optimization by Reducing "
          "State Overhead for Scalable Training, arXiv:2411.07837",
    reference="philip-zmushko/FRUGAL@c7ebe4c (fork hungquangbui02022003/FRUGAL) frugal/ "
              "GaloreAdamW, CoordAdamW, BlockAdamW",
    search_space={
        "lr": FloatRange(1e-4, 3e-2, log=True),
        "betas": Categorical(((0.9, 0.95), (0.9, 0.999))),
        "weight_decay": FloatRange(1e-5, 1.0, log=True),  # as AdamW's (Wen et al.: wd 0.1 for Adam-type methods)
        "density": Categorical((0.0, 0.125, 0.25, 0.5)),
        "update_gap": IntRange(50, 500, log=True),
        "inactive_lr_scale": FloatRange(0.01, 1.0, log=True),
    },
    summary="memory-efficient AdamW: state-full on a ρ-fraction subspace (blocks/SVD/columns), signSGD on the rest",
    module_groups=_module_groups,
    fixture_names=("frugal",),
    from_fixture=_from_fixture,
))
