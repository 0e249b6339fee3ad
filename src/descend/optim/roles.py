"""Parameter roles — hidden matrix, input layer, output head, embedding, vector — derived from module types.

Optimizers such as Muon, FRUGAL, SOAP and Shampoo treat the parts of a network differently: Muon's
orthogonalised update is meant for *hidden* matrices only (its authors route the input layer, the output head,
embeddings and every vector to AdamW).  Guessing those parts from parameter *names* fails on ordinary models:
in an ``nn.Sequential`` the names are ``"0"``, ``"2"``, ``"4"``.  :func:`param_roles` derives them from the
*module types* instead, and a workload (or a user) overrides what the rules get wrong.

Rules, in order (the first that applies wins):

1. an explicit override: ``overrides`` passed to :func:`param_roles`, then the roles declared on the model with
   :func:`declare_roles` (keys: parameter names from ``model.named_parameters()`` or the parameters);
2. parameters of normalisation modules (BatchNorm, LayerNorm, GroupNorm, RMSNorm, …) and every parameter with
   ``ndim < 2`` (biases, gains, scalars) → ``VECTOR``;
3. parameters owned by an ``nn.Embedding`` / ``nn.EmbeddingBag`` (a weight tied to an embedding counts as the
   embedding) → ``EMBEDDING``;
4. the weight of the **last** ``nn.Linear`` → ``HEAD`` (the output layer; a model with a single linear layer,
   e.g. logistic regression, has a head and no hidden matrix);
5. the weight of the **first** ``nn.Linear`` / convolution → ``INPUT`` — unless the model has an embedding,
   which is then its input layer;
6. weights of the other ``nn.Linear`` / convolution modules → ``HIDDEN`` (kernels of ``ndim > 2`` included);
7. any other parameter with ``ndim ≥ 2`` (a raw ``nn.Parameter`` of a custom module) → ``EMBEDDING`` if the
   model has an embedding (a positional table next to a token embedding, e.g. ``pos`` of a GPT), else
   ``HIDDEN`` (a custom matrix layer, e.g. the weights of a linear self-attention).

"First" and "last" follow the modules' registration order (``model.named_modules()``), or the order in which
they are *called* when ``example_input`` is given (one forward pass under ``torch.no_grad``, through forward
hooks), for models that register their layers in another order than they use them.

Examples:
    >>> import torch
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(40, 128), torch.nn.GELU(), torch.nn.Linear(128, 128),
    ...                           torch.nn.GELU(), torch.nn.Linear(128, 10))
    >>> [r.value for r in param_roles(mlp).values()]
    ['input', 'vector', 'hidden', 'vector', 'head', 'vector']
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["NO_HIDDEN_MATRICES", "NotApplicable", "Role", "declare_roles", "names_by_role", "param_roles",
           "roles_of_params"]


class Role(str, enum.Enum):
    """What a parameter is in its network (the value is the lower-case name)."""

    HIDDEN = "hidden"  #: a matrix (or kernel) between two hidden layers
    INPUT = "input"  #: the first layer's weight (when the model has no embedding)
    HEAD = "head"  #: the output layer's weight
    EMBEDDING = "embedding"  #: token embeddings and positional tables
    VECTOR = "vector"  #: biases, normalisation gains, scalars

    @classmethod
    def parse(cls, value: Role | str, what: str = "role") -> Role:
        """``value`` as a :class:`Role` (from a member or its name); a one-line error otherwise."""
        if isinstance(value, Role):
            return value
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"{what} must be one of {[r.value for r in cls]}, got {value!r}") from None


#: the message of :class:`NotApplicable` when a model has no hidden matrix
NO_HIDDEN_MATRICES = "n/a: no hidden matrices"


class NotApplicable(ValueError):
    """Raised by a group builder when the optimizer has nothing to do on this model (e.g. Muon without any
    hidden matrix would be plain AdamW under another name); the benchmark reports the message as "n/a"."""


_ATTR = "_descend_param_roles"
_NORMS: tuple[type[nn.Module], ...] = tuple(
    t for t in (getattr(nn.modules.batchnorm, "_NormBase", None), nn.LayerNorm, nn.GroupNorm,
                getattr(nn, "RMSNorm", None), nn.LocalResponseNorm)
    if t is not None
)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)

# keyed by names, by parameters, or by both (Mapping is invariant in its key: a union takes each kind)
Overrides = Mapping[str, Role | str] | Mapping[nn.Parameter, Role | str] | Mapping[str | nn.Parameter, Role | str]


def _resolve(model: nn.Module, roles: Overrides) -> dict[str, Role]:
    """``roles`` keyed by parameter name, validated against ``model`` (a one-line ``ValueError`` otherwise)."""
    by_name = dict(model.named_parameters(remove_duplicate=False))
    name_of = {id(p): n for n, p in by_name.items()}
    checked: dict[str, Role] = {}
    for key, value in roles.items():
        if isinstance(key, str):
            if key not in by_name:
                raise ValueError(f"roles: {key!r} is not a parameter of the model; parameters: "
                                 f"{', '.join(by_name)}")
            name = key
        elif isinstance(key, torch.Tensor) and id(key) in name_of:
            name = name_of[id(key)]
        else:
            raise ValueError(f"roles: keys must be parameter names or parameters of the model, got {key!r}")
        checked[name] = Role.parse(value, f"roles[{key!r}]")
    return checked


def declare_roles(model: nn.Module, roles: Overrides) -> None:
    """Attach role overrides to ``model`` (honoured by every later :func:`param_roles` call on it, and kept by
    ``copy.deepcopy``: they are stored by parameter name).

    ``roles`` maps parameter names (as in ``model.named_parameters()``) or parameters to roles; unknown names
    raise ``ValueError`` before anything is stored.  Declaring again replaces the previous declaration.
    """
    object.__setattr__(model, _ATTR, _resolve(model, roles))


def _call_order(model: nn.Module, example_input: Any) -> list[nn.Module]:
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module: nn.Module, *_: Any) -> None:
        if id(module) not in seen:
            seen.add(id(module))
            order.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.no_grad():
            if isinstance(example_input, tuple):
                model(*example_input)
            else:
                model(example_input)
    finally:
        for h in handles:
            h.remove()
    # layers never called keep their registration order, after the called ones
    return order + [m for m in model.modules() if isinstance(m, _LAYERS) and id(m) not in seen]


def param_roles(model: nn.Module, overrides: Overrides | None = None, *,
                example_input: Any = None) -> dict[nn.Parameter, Role]:
    """The :class:`Role` of every parameter of ``model`` (in ``named_parameters`` order; see the module doc).

    ``overrides`` (names or parameters → roles) take precedence over :func:`declare_roles` declarations,
    which take precedence over the rules.  ``example_input``: run one forward pass to order the layers by
    use instead of registration.
    """
    owner: dict[int, nn.Module] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            # the first owner wins, except that an embedding always claims a tied weight
            if id(p) not in owner or isinstance(module, _EMBEDDINGS):
                owner[id(p)] = module
    has_embedding = any(isinstance(m, _EMBEDDINGS) for m in owner.values())
    layers = (_call_order(model, example_input) if example_input is not None
              else [m for m in model.modules() if isinstance(m, _LAYERS)])
    layers = [m for m in layers if getattr(m, "weight", None) is not None]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    first = layers[0] if layers and not has_embedding else None
    named: dict[str, Role] = dict(getattr(model, _ATTR, {}))
    if overrides:
        named.update(_resolve(model, overrides))
    by_name = dict(model.named_parameters(remove_duplicate=False))
    forced = {id(by_name[n]): r for n, r in named.items() if n in by_name}

    roles: dict[nn.Parameter, Role] = {}
    for _name, p in model.named_parameters():
        module = owner[id(p)]
        if id(p) in forced:
            role = forced[id(p)]
        elif isinstance(module, _NORMS) or p.ndim < 2:
            role = Role.VECTOR
        elif isinstance(module, _EMBEDDINGS):
            role = Role.EMBEDDING
        elif module is head and p is module.weight:
            role = Role.HEAD
        elif module is first and p is module.weight:
            role = Role.INPUT
        elif isinstance(module, _LAYERS):
            role = Role.HIDDEN
        else:
            role = Role.EMBEDDING if has_embedding else Role.HIDDEN
        roles[p] = role
    return roles


def roles_of_params(params: Iterable[Any]) -> dict[nn.Parameter, Role]:
    """Roles of bare parameters (no module to read): ``VECTOR`` below two dimensions, ``HIDDEN`` otherwise.

    Parameter groups (dicts with ``"params"``) are flattened.
    """
    out: dict[nn.Parameter, Role] = {}
    for item in params:
        for p in (item["params"] if isinstance(item, dict) else [item]):
            out[p] = Role.VECTOR if p.ndim < 2 else Role.HIDDEN
    return out


def names_by_role(model: nn.Module, roles: Mapping[nn.Parameter, Role] | None = None) -> dict[str, Role]:
    """``{parameter name: role}`` of ``model`` (for reports and tests)."""
    roles = param_roles(model) if roles is None else roles
    return {name: roles[p] for name, p in model.named_parameters() if p in roles}
