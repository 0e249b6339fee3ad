"""Scion: stochastic conditional gradient with a per-layer linear minimization oracle (LMO).

Paper: Thomas Pethick, Wanyun Xie, Kimon Antonakopoulos, Zhenyu Zhu, Antonio Silveti-Falls, Volkan Cevher
(2025), "Training Deep Learning Models with Norm-Constrained LMOs", ICML 2025, arXiv:2502.07529.

Algorithm (paper, Algorithm 1 "uSCG" / Algorithm 2 "SCG" with the operator norms of Table 2 / Section 4;
per parameter tensor ``W``, ``g`` the gradient, ``α`` = ``momentum`` = the weight of the *new* gradient)::

    d  <- (1 - α) d + α g                         # d = g when α = 1 (no buffer is kept)
    W  <- W * (1 - lr)                            # constrained (SCG, default); skipped when unconstrained
    W  <- W - lr · scale · lmo(d)                 # lmo(d) = argmin_{‖s‖ ≤ 1} <d, s>, up to sign

The LMOs (``norm``; ``eps = 1e-8`` added to every norm as in the reference; ``d_out, d_in = W.shape``):

* ``Spectral`` (hidden matrices): ``NS5(d) · s`` with ``s = sqrt(d_out/d_in)`` (``normalized=True``, default)
  or ``sqrt(d_out)``; ``max=True`` takes ``max(1, s)``.  ``NS5`` = Newton-Schulz, ``X/(‖X‖_F + 1e-7)``,
  Jordan et al.'s coefficients, tall matrices transposed (:func:`descend.optim._linalg.newton_schulz`,
  shared with Muon).
* ``SpectralConv`` (3-D/4-D kernels): ``NS5`` of ``d`` reshaped to ``[out, in·k(·k)]``, times
  ``sqrt(out/in)/k`` (Conv1d) or ``sqrt(out/in)/k²`` (Conv2d).
* ``ColNorm`` (input layers): each column divided by its RMS ``‖d_{:,j}‖/sqrt(d_out)`` (times ``d_in`` when
  ``normalized``); ``RowNorm``: each row divided by ``‖d_{i,:}‖`` (times ``sqrt(d_in)`` when ``normalized``,
  default); ``transpose=True`` applies either to ``dᵀ`` (embeddings stored ``[vocab, dim]``).
* ``Sign`` (heads): ``sign(d) / d_in`` (``normalized``, default) or ``sign(d)``.
* ``BiasRMS`` (vectors): ``d / RMS(d)``.
* ``Auto`` (default): ``SpectralConv`` for 3-D/4-D, ``Spectral`` for 2-D, ``BiasRMS`` for 0-D/1-D tensors.

Defaults (the reference's): ``lr=1e-3, momentum=1.0, norm="Auto", norm_kwargs={}, scale=1.0,
unconstrained=False``; Newton-Schulz in bfloat16 as in the reference
where bfloat16 is fast, else float32 (``ns_dtype="auto"``).  The paper's
``momentum=0.1`` (i.e. a traditional momentum of 0.9) is the usual choice; Wen et al. 2025 tuned 0.05.

Reference: ``LIONS-EPFL/scion@f58a393e010395a5913176be5673d8839caa6285:scion.py`` (``Scion``).  Checked
against its recorded trajectories (``scion__*.json``: Auto on matrices, a bias and a conv kernel; four
groups ColNorm/Spectral/Sign/BiasRMS with radii and momentum; unconstrained with RowNorm on a transposed
embedding, ``Spectral(max=True)`` and normalised ColNorm) with rtol 1e-10, atol 1e-12 in float64
(Newton-Schulz in float64).

Deviations from the reference:

* ``norm``, ``norm_kwargs`` and the parameter shapes are validated when a group is added (``ValueError``
  naming the argument); the reference fails at the first step (or returns ``None`` for ``Auto`` on 5-D+).
  ``momentum`` must be in ``(0, 1]`` (the reference accepts 0, which freezes the buffer at zero) and
  ``scale >= 0``.
* The Newton-Schulz result is cast back to the state dtype before it is scaled (the reference scales the
  bfloat16 result); identical in float64.
* ``Scion.init()`` (the reference's norm-specific re-initialisation of the parameters) is not provided.
* ``ScionLight`` (the momentum kept in ``p.grad``) is not provided.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from ._base import DescendOptimizer, begin_step
from ._linalg import newton_schulz
from ._mixed_precision import state_dtype
from ._validate import check_choice, check_float, check_int
from .registry import Categorical, FloatRange, OptimizerSpec, register

__all__ = ["NORMS", "Scion", "lmo", "scion_param_groups"]

_LMO_EPS = 1e-8
_NS_EPS = 1e-7
_NS_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}

#: the reference's norms: name -> (allowed norm_kwargs with their defaults, allowed parameter ndims)
NORMS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "ColNorm": ({"normalized": False, "transpose": False}, (2,)),
    "RowNorm": ({"normalized": True, "transpose": False}, (2,)),
    "BiasRMS": ({}, (0, 1)),
    "SpectralConv": ({"steps": 5}, (3, 4)),
    "Spectral": ({"max": False, "normalized": True, "steps": 5}, (2,)),
    "Sign": ({"zero_init": False, "normalized": True}, (2,)),
    "Auto": ({}, (0, 1, 2, 3, 4)),
}


def _ns(g: torch.Tensor, steps: int, ns_dtype: torch.dtype | str) -> torch.Tensor:
    mat = g.reshape(len(g), -1)
    return newton_schulz(mat, steps, dtype=ns_dtype, normalization="keller", eps=_NS_EPS).to(g.dtype).view(g.shape)


def lmo(norm: str, g: torch.Tensor, norm_kwargs: Mapping[str, Any] | None = None, *,
        ns_dtype: torch.dtype | str = torch.bfloat16) -> torch.Tensor:
    """The reference's LMO direction of ``g`` for ``norm`` (the step is ``-lr·scale·lmo``); a new tensor."""
    kw = {**NORMS[norm][0], **(norm_kwargs or {})}
    if norm == "Auto":
        norm = "SpectralConv" if g.ndim in (3, 4) else "Spectral" if g.ndim == 2 else "BiasRMS"
        kw = dict(NORMS[norm][0])
    if norm == "Spectral":
        out = _ns(g, int(kw["steps"]), ns_dtype)
        d_out, d_in = g.shape
        s = (d_out / d_in) ** 0.5 if kw["normalized"] else d_out ** 0.5
        return out.mul_(max(1.0, s) if kw["max"] else s)
    if norm == "SpectralConv":
        out = _ns(g, int(kw["steps"]), ns_dtype)
        c_out, c_in, k = g.shape[:3]
        return out.mul_((c_out / c_in) ** 0.5 / (k if g.ndim == 3 else k ** 2))
    if norm == "BiasRMS":
        return g / (g.pow(2).mean(dim=0, keepdim=True).sqrt() + _LMO_EPS)
    if norm == "Sign":
        return torch.sign(g).mul_(1.0 / g.shape[1]) if kw["normalized"] else torch.sign(g)
    x = g.transpose(0, 1) if kw["transpose"] else g
    if norm == "ColNorm":
        r = x.pow(2).sum(dim=0, keepdim=True).sqrt().mul_(1.0 / math.sqrt(x.size(0)))
        if kw["normalized"]:
            r.mul_(x.size(1))
    else:  # RowNorm
        r = x.pow(2).sum(dim=-1, keepdim=True).sqrt()
        if kw["normalized"]:
            r.mul_(math.sqrt(x.size(-1)))
    x = x / (r + _LMO_EPS)
    return x.transpose(0, 1) if kw["transpose"] else x


class Scion(DescendOptimizer):
    """Scion (Pethick et al. 2025): momentum, then a norm-specific LMO step per parameter group.

    Args:
        params: parameters or parameter groups (groups may set every option below).
        lr: learning rate, ``>= 0``; the constrained form also decays ``W *= 1 - lr``.
        momentum: weight of the new gradient in the average, in ``(0, 1]`` (``1`` = no averaging).
        norm: one of :data:`NORMS` (``"Auto"``, ``"Spectral"``, ``"SpectralConv"``, ``"ColNorm"``,
            ``"RowNorm"``, ``"Sign"``, ``"BiasRMS"``).
        norm_kwargs: options of the norm (see the module docstring), e.g. ``{"transpose": True}``.
        scale: radius of the norm ball, ``>= 0`` (the step is ``lr·scale·lmo``).
        unconstrained: skip the ``W *= 1 - lr`` decay (uSCG).
        ns_dtype: dtype of the Newton-Schulz iteration: ``"auto"`` (default: bfloat16, the reference's, where
            bfloat16 matmuls are fast, else float32 — :func:`descend.optim._linalg.newton_schulz_dtype`),
            ``torch.bfloat16``, ``float32``,
            ``float64``, or its name (``"float32"``; the registry default, bfloat16 matmuls being slow on CPUs).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 1.0,
        norm: str = "Auto",
        norm_kwargs: Mapping[str, Any] | None = None,
        scale: float = 1.0,
        unconstrained: bool = False,
        *,
        ns_dtype: torch.dtype | str = "auto",
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "norm": norm, "norm_kwargs": dict(norm_kwargs or {}),
                    "scale": scale, "unconstrained": unconstrained, "ns_dtype": ns_dtype}
        _check_group(defaults, ())
        super().__init__(params, defaults)

    _STATE_KEYS = ("momentum_buffer",)  # the only state (none at all with momentum = 1)

    def _check_group(self, group: Mapping[str, Any]) -> dict[str, Any]:
        """The one validation of a group (constructor, ``add_param_group``, ``load_state_dict``), shapes
        included; ``norm_kwargs`` is stored as a dict (``None`` = ``{}``)."""
        kw = group["norm_kwargs"]
        kw = {} if kw is None else kw
        if not isinstance(kw, Mapping):
            raise ValueError(f"norm_kwargs must be a dict, got {kw!r}")
        _check_group({**group, "norm_kwargs": kw}, group["params"])
        return {"norm_kwargs": dict(kw)}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` (optional) re-evaluates the loss with gradients."""
        loss = begin_step(self, closure, "Scion")
        for group in self.param_groups:
            lr, momentum, scale = float(group["lr"]), float(group["momentum"]), float(group["scale"])
            ns_dtype = _NS_DTYPES.get(group["ns_dtype"], group["ns_dtype"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                dtype = state_dtype(p)
                g = p.grad if p.grad.dtype == dtype else p.grad.to(dtype)
                if momentum != 1.0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p, dtype=dtype,
                                                                    memory_format=torch.preserve_format)
                    g = state["momentum_buffer"].mul_(1.0 - momentum).add_(g, alpha=momentum)
                update = lmo(group["norm"], g, group["norm_kwargs"], ns_dtype=ns_dtype).mul_(scale)
                w = p if p.dtype == dtype else p.to(dtype)
                if not group["unconstrained"]:
                    w.mul_(1.0 - lr)
                w.add_(update, alpha=-lr)
                if w is not p:
                    p.copy_(w)
        return loss


_HEAD_NAMES = ("lm_head", "head", "classifier", "output_layer", "fc_out", "output_projection")


def scion_param_groups(
    model: nn.Module,
    *,
    scale: float = 50.0,
    head_scale_ratio: float = 60.0,
    embedding_types: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag),
    head_names: Iterable[str] = _HEAD_NAMES,
) -> list[dict[str, Any]]:
    """Parameter groups for :class:`Scion` from a module, after the paper's per-layer norms.

    Rules, in order (the first that applies wins):

    1. A 2-D weight of a module whose own (last) name is one of ``head_names`` (``lm_head``, ``head``, ...),
       including an embedding tied to it → ``Sign`` (normalised), radius ``scale · head_scale_ratio`` (the
       reference README's nanoGPT setting: radii 50 and 3000).
    2. A 2-D weight owned by an ``nn.Embedding``/``nn.EmbeddingBag`` (stored ``[vocab, dim]``) → ``ColNorm``
       with ``transpose=True`` (each token's vector to unit RMS), radius ``scale``.
    3. Everything else (hidden matrices, conv kernels, biases, gains) → ``Auto`` (Spectral / SpectralConv /
       BiasRMS), radius ``scale``.

    Returns up to three groups (empty ones omitted), each with a ``"name"``: ``"head"``, ``"embedding"``,
    ``"auto"``.  Parameters with ``requires_grad=False`` are left out.
    """
    check_float("scale", scale, 0.0)
    check_float("head_scale_ratio", head_scale_ratio, 0.0)
    heads = set(head_names)
    role: dict[int, str] = {}
    for mod_name, module in model.named_modules():
        last = mod_name.rsplit(".", 1)[-1]
        for p in module.parameters(recurse=False):
            if p.ndim == 2 and last in heads:
                role[id(p)] = "head"  # a head claims a weight tied to an embedding
            elif p.ndim == 2 and isinstance(module, embedding_types):
                role.setdefault(id(p), "embedding")
    buckets: dict[str, list[nn.Parameter]] = {"head": [], "embedding": [], "auto": []}
    for p in model.parameters():
        if p.requires_grad:
            buckets[role.get(id(p), "auto")].append(p)
    groups = [
        {"name": "head", "params": buckets["head"], "norm": "Sign", "norm_kwargs": {},
         "scale": scale * head_scale_ratio},
        {"name": "embedding", "params": buckets["embedding"], "norm": "ColNorm", "norm_kwargs": {"transpose": True},
         "scale": scale},
        {"name": "auto", "params": buckets["auto"], "norm": "Auto", "norm_kwargs": {}, "scale": scale},
    ]
    return [g for g in groups if g["params"]]


def _module_groups(model: nn.Module, hp: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Registry hook: :func:`scion_param_groups` with the (tuned) radius ``scale``."""
    return scion_param_groups(model, scale=float(hp["scale"]))


def _check_group(group: Mapping[str, Any], params: Iterable[torch.Tensor]) -> None:
    check_float("lr", group["lr"], 0.0)
    check_float("momentum", group["momentum"], 0.0, 1.0, low_open=True)
    check_float("scale", group["scale"], 0.0)
    if not isinstance(group["unconstrained"], bool):
        raise ValueError(f"unconstrained must be a bool, got {group['unconstrained']!r}")
    check_choice("ns_dtype", group["ns_dtype"], ("auto", *_NS_DTYPES, *_NS_DTYPES.values()))
    norm = check_choice("norm", group["norm"], tuple(NORMS))
    allowed, ndims = NORMS[norm]
    kw = group["norm_kwargs"]
    if not isinstance(kw, Mapping):
        raise ValueError(f"norm_kwargs must be a dict, got {kw!r}")
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"norm_kwargs {unknown} are not options of norm {norm!r} (allowed: {sorted(allowed)})")
    for key, value in kw.items():
        if key == "steps":
            check_int("norm_kwargs['steps']", value, 1)
        elif not isinstance(value, bool):
            raise ValueError(f"norm_kwargs[{key!r}] must be a bool, got {value!r}")
    for p in params:
        if p.ndim not in ndims:
            raise ValueError(f"norm {norm!r} needs parameters with ndim in {ndims}, got shape {tuple(p.shape)}")


def _from_fixture(fx: Mapping[str, Any], params: Mapping[str, torch.Tensor]) -> Scion:
    ns = (fx.get("replay") or {}).get("newton_schulz_dtype", "bfloat16")
    if ns not in _NS_DTYPES:
        raise ValueError(f"replay.newton_schulz_dtype must be one of {sorted(_NS_DTYPES)}, got {ns!r}")
    groups = fx.get("param_groups") or [{"params": list(fx["param_order"])}]
    built = [{**g, "params": [params[n] for n in g["params"]]} for g in groups]
    return Scion(built, **fx["hyperparameters"], ns_dtype=_NS_DTYPES[ns])


register(OptimizerSpec(
    name="scion",
    factory=Scion,
    paper="Pethick, Xie, Antonakopoulos, Zhu, Silveti-Falls, Cevher 2025, Training Deep Learning Models with "
          "Norm-Constrained LMOs (ICML), arXiv:2502.07529",
    reference="LIONS-EPFL/scion@f58a393e010395a5913176be5673d8839caa6285:scion.py",
    # float32 Newton-Schulz in the registry (as Muon's): bfloat16 matmuls are slow on CPUs (Scion took 3.3x
    # AdamW's train time on charlm_stdlib:s with bf16); the class default stays bfloat16 like the reference.
    # Wen et al. 2025 (130M, 1x Chinchilla): lr 1.6e-2, momentum 0.95 (= 0.05 here: the new gradient's
    # weight), linear decay; the paper's nanoGPT runs use lr 2^-12 with radii 50 (hidden) / 3000 (head)
    search_space={
        "lr": FloatRange(1e-4, 3e-2, log=True),
        "momentum": Categorical((0.02, 0.05, 0.1, 0.2)),
        "scale": FloatRange(0.3, 100.0, log=True),
        "unconstrained": Categorical((False, True)),
    },
    summary="momentum then a per-layer norm LMO step (spectral via Newton-Schulz, sign, row/column norms)",
    module_groups=_module_groups,
    fixture_names=("scion",),
    from_fixture=_from_fixture,
))
