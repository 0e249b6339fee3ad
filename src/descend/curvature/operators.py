"""Curvature operators: Hessian- and Gauss-Newton-vector products as flat linear operators.

Every estimator in :mod:`descend.curvature` talks to a symmetric ``n x n`` matrix only through products with
vectors, so the operators here are all it needs:

* :class:`HVPOperator` -- ``v -> H v`` with ``H`` the Hessian of ``loss_fn(model(x), y)`` in the model's
  parameters, over one batch ``(x, y)`` or a whole (re-iterable) data loader; or of any scalar closure
  ``f(params)`` (:meth:`HVPOperator.from_function`).
* :class:`GNVPOperator` -- ``v -> J^T H_L J v``, the generalised Gauss-Newton matrix (Schraudolph 2002,
  "Fast curvature matrix-vector products for second-order gradient descent"), with ``J`` the Jacobian of the
  model's outputs and ``H_L`` the Hessian of the loss in the outputs.  Positive semi-definite for convex losses.
* :class:`ClosureHVPOperator` -- the Hessian of ``closure()``, a loss computed from live tensors (an optimizer
  closure without ``backward``), by double backward; for code that cannot be made functional.
* :class:`DenseOperator` -- an explicit symmetric matrix (tests, small problems).

Vectors are flat 1-D tensors of length ``op.dim`` (the parameters concatenated in ``model.parameters()``
order, only those with ``requires_grad``); :meth:`CurvatureOperator.unflatten` maps back to shapes.

Cost unit: one matrix-vector product.  ``op.n_calls`` counts them (a block ``op.matmat(V)`` of ``k`` columns
counts ``k``), and every estimator reports how many it used.

Implementation.  Two exact paths (Pearlmutter 1994, "Fast exact multiplication by the Hessian"):
``torch.func`` forward-over-reverse ``jvp(grad(f))``, ``vmap``-ed over the columns of a block, and double
backward (``autograd.grad`` of the gradient graph).  ``method="auto"`` (default) picks by what measured fastest
on CPU (``benchmarks/curvature_vs_pyhessian.py``): for one batch, double backward on a gradient graph built once
and kept (as PyHessian does; Yao et al. 2020) -- recomputing forward and backward per product, as ``jvp(grad)``
must, cost ~2.5x more; for a loader, double backward for single products (Lanczos) and ``vmap(jvp(grad))`` for
blocks (Hutchinson, Hutch++: one traced pass per batch serves every column, ~2x faster per column).
``method="func"`` / ``"autograd"`` force one path; ``auto`` falls back to double backward where ``torch.func``
cannot trace the model.

An operator is a *snapshot*: it clones the parameters when constructed, so later optimizer steps on the model
do not change it (build a new one to measure again).  The model's train/eval mode is left as it is; call
``model.eval()`` first to measure the Hessian without dropout/batch-norm noise.  Over a data loader the
Hessian is the sample-weighted mean ``sum_b (n_b / N) H_b`` (``n_b`` = batch size; exact for mean-reduced
losses), as in PyHessian.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor

__all__ = ["ClosureHVPOperator", "CurvatureOperator", "DenseOperator", "GNVPOperator", "HVPOperator"]

Batch = Sequence[Any]
LossFn = Callable[[Any, Any], Tensor]
_METHODS = ("auto", "func", "autograd")


class CurvatureOperator:
    """A symmetric linear operator on flat vectors of length :attr:`dim`, counting its products.

    Subclasses implement :meth:`_matvec` (and optionally :meth:`_matmat`); users call :meth:`matvec` /
    :meth:`matmat`, which validate shapes and count.
    """

    dim: int
    dtype: torch.dtype
    device: torch.device

    def __init__(self, dim: int, dtype: torch.dtype, device: torch.device | str) -> None:
        self.dim = int(dim)
        self.dtype = dtype
        self.device = torch.device(device)
        self.n_calls = 0

    # -- what subclasses provide -------------------------------------------------------------------------------
    def _matvec(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def _matmat(self, V: Tensor) -> Tensor:
        return torch.stack([self._matvec(V[:, j]) for j in range(V.shape[1])], dim=1)

    # -- public ------------------------------------------------------------------------------------------------
    def matvec(self, v: Tensor) -> Tensor:
        """``A v`` for a flat vector ``v`` of length :attr:`dim` (one product)."""
        if v.ndim != 1 or v.shape[0] != self.dim:
            raise ValueError(f"v must be a 1-D tensor of length {self.dim}, got shape {tuple(v.shape)}")
        out = self._matvec(v.to(device=self.device, dtype=self.dtype))
        self.n_calls += 1
        return out

    def matmat(self, V: Tensor) -> Tensor:
        """``A V`` for a ``dim x k`` block (``k`` products)."""
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"V must be a 2-D tensor with {self.dim} rows, got shape {tuple(V.shape)}")
        if V.shape[1] == 0:
            return V.new_zeros((self.dim, 0))
        out = self._matmat(V.to(device=self.device, dtype=self.dtype))
        self.n_calls += V.shape[1]
        return out

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.matvec(v) if v.ndim == 1 else self.matmat(v)

    def to_dense(self) -> Tensor:
        """The full ``dim x dim`` matrix, by ``dim`` products with the basis vectors (small problems only)."""
        return self.matmat(torch.eye(self.dim, dtype=self.dtype, device=self.device))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.dim, self.dim)


class DenseOperator(CurvatureOperator):
    """An explicit symmetric matrix ``A`` as an operator (``A`` is symmetrised: ``(A + A^T) / 2``)."""

    def __init__(self, matrix: Tensor) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square 2-D, got shape {tuple(matrix.shape)}")
        super().__init__(matrix.shape[0], matrix.dtype, matrix.device)
        self.matrix = 0.5 * (matrix + matrix.T)

    def _matvec(self, v: Tensor) -> Tensor:
        return self.matrix @ v

    def _matmat(self, V: Tensor) -> Tensor:
        return self.matrix @ V


# ---------------------------------------------------------------------------------------------------------------
# model-based operators
# ---------------------------------------------------------------------------------------------------------------

def _is_batch(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(
        isinstance(t, (Tensor, tuple, list)) for t in data) and isinstance(data[-1], Tensor)


def _batch_size(batch: Batch) -> int:
    y = batch[1]
    return int(y.shape[0]) if isinstance(y, Tensor) and y.ndim > 0 else 1


class _ParamOperator(CurvatureOperator):
    """Shared machinery: the parameter snapshot, flattening, method choice and the torch.func fallback."""

    def __init__(self, params: Sequence[Tensor], method: str, chunk_size: int | None) -> None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if not params:
            raise ValueError("params must hold at least one tensor that requires grad")
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(f"params must share one floating dtype, got {sorted(map(str, dtypes))}")
        self.params: tuple[Tensor, ...] = tuple(p.detach().clone() for p in params)
        self.shapes = [p.shape for p in self.params]
        self.numels = [p.numel() for p in self.params]
        super().__init__(sum(self.numels), self.params[0].dtype, self.params[0].device)
        self.method = method
        self.chunk_size = chunk_size
        self.single_batch = True
        self._func_failed = False

    def flatten(self, tensors: Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter tensors into one flat vector (the operator's coordinates)."""
        return torch.cat([t.reshape(-1) for t in tensors])

    def _flatten_copy(self, tensors: Sequence[Tensor]) -> Tensor:
        """:meth:`flatten` by one strided copy per tensor (a transposed weight gradient needs no reshape first);
        not usable inside ``vmap``."""
        out = torch.empty(self.dim, dtype=tensors[0].dtype, device=tensors[0].device)
        for piece, t in zip(torch.split(out, self.numels), tensors, strict=True):
            piece.view(t.shape).copy_(t)  # one strided copy (a transposed weight gradient needs no reshape first)
        return out

    def unflatten(self, v: Tensor) -> tuple[Tensor, ...]:
        """Split a flat vector (or a ``dim x k`` block, columns kept last) into per-parameter shapes."""
        if v.ndim == 1:
            return tuple(c.view(s) for c, s in zip(torch.split(v, self.numels), self.shapes, strict=True))
        return tuple(c.reshape(*s, v.shape[1]) for c, s in zip(torch.split(v, self.numels), self.shapes, strict=True))

    def flat_params(self) -> Tensor:
        """The snapshot's parameters as one flat vector."""
        return self.flatten(self.params)

    # subclasses: per-batch products on per-parameter tuples
    def _batches(self) -> Iterable[tuple[float, Batch | None]]:
        raise NotImplementedError

    def _func_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _autograd_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _use_func(self, single: bool) -> bool:
        if self.method == "func":
            return True
        if self.method == "autograd" or self._func_failed:
            return False
        # auto (measured on CPU, benchmarks/curvature_vs_pyhessian.py): one batch -> double backward on the cached
        # gradient graph (fastest there, single products and blocks alike); a loader -> double backward for single
        # products, vmap(jvp(grad)) for blocks (one traced pass per batch for all columns, ~2x faster per column)
        return not single and not self.single_batch

    def _matvec(self, v: Tensor) -> Tensor:
        return self._apply(v, single=True)

    def _matmat(self, V: Tensor) -> Tensor:
        return self._apply(V, single=False)

    def _apply(self, v: Tensor, single: bool) -> Tensor:
        if self._use_func(single):
            try:
                return self._apply_func(v)
            except (RuntimeError, NotImplementedError, TypeError):
                if self.method == "func":
                    raise
                self._func_failed = True  # untraceable by torch.func: double backward from now on
        return self._apply_autograd(v)

    def _apply_func(self, v: Tensor) -> Tensor:
        from torch.func import vmap

        out: Tensor | None = None
        for weight, batch in self._batches():
            if v.ndim == 1:
                r = self.flatten(self._func_vec(batch, self.unflatten(v)))
            else:
                cols = v.T  # k x dim: vmap over the leading axis
                fn = vmap(partial(self._func_flat, batch), chunk_size=self.chunk_size)
                r = fn(cols).T
            out = weight * r if out is None else out + weight * r
        assert out is not None
        return out

    def _func_flat(self, batch: Batch | None, c: Tensor) -> Tensor:
        return self.flatten(self._func_vec(batch, self.unflatten(c)))

    def _apply_autograd(self, v: Tensor) -> Tensor:
        out: Tensor | None = None
        cols = [v] if v.ndim == 1 else [v[:, j] for j in range(v.shape[1])]
        for weight, batch in self._batches():
            rs = [self._flatten_copy(self._autograd_vec(batch, self.unflatten(c))) for c in cols]
            r = rs[0] if v.ndim == 1 else torch.stack(rs, dim=1)
            out = weight * r if out is None else out + weight * r
        assert out is not None
        return out


class _ModelOperator(_ParamOperator):
    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data: Any, method: str,
                 chunk_size: int | None) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(loss_fn):
            raise ValueError("loss_fn must be callable as loss_fn(outputs, targets) -> scalar tensor")
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        self.names = [k for k, _ in named]
        if _is_batch(data):
            loader: list[Batch] | Iterable[Batch] = [data]
            single = True
        elif isinstance(data, Iterable) and not isinstance(data, (Tensor, str, bytes)):
            if iter(data) is data:
                raise ValueError("data must be a batch (inputs, targets) or a re-iterable loader (a list or a "
                                 "DataLoader), not a one-shot iterator")
            loader = data
            single = False
        else:
            raise ValueError(f"data must be a batch (inputs, targets) or a re-iterable loader of batches, "
                             f"got {type(data).__name__}")
        super().__init__([p for _, p in named], method, chunk_size)
        self.loader = loader
        self.single_batch = single
        self.model = model
        self.loss_fn = loss_fn
        self._fixed = {k: t.detach() for k, t in model.named_parameters() if not t.requires_grad}
        self._fixed.update({k: b for k, b in model.named_buffers()})
        self._graph: tuple[Tensor, ...] | None = None

    def _batches(self) -> Iterable[tuple[float, Batch | None]]:
        if self.single_batch:
            return [(1.0, next(iter(self.loader)))]
        sizes: list[int] = []
        batches: list[Batch] = []
        for b in self.loader:
            batches.append(b)
            sizes.append(_batch_size(b))
        if not batches:
            raise ValueError("data loader is empty")
        total = float(sum(sizes))
        return [(n / total, b) for n, b in zip(sizes, batches, strict=True)]

    def _outputs(self, params: Sequence[Tensor], x: Any) -> Any:
        from torch.func import functional_call

        state = {**self._fixed, **dict(zip(self.names, params, strict=True))}
        return functional_call(self.model, state, (x,) if not isinstance(x, tuple) else x)

    def _loss(self, params: Sequence[Tensor], batch: Batch) -> Tensor:
        return self.loss_fn(self._outputs(params, batch[0]), batch[1])


class HVPOperator(_ModelOperator):
    """Hessian-vector products ``v -> H v`` of ``loss_fn(model(x), y)`` over a batch or a data loader.

    Args:
        model: the network; its parameters with ``requires_grad`` are the coordinates (snapshot at construction).
        loss_fn: ``loss_fn(outputs, targets) -> scalar`` (mean-reduced for a loader to give the dataset mean).
        data: one batch ``(inputs, targets)`` or a re-iterable loader of such batches.
        method: ``"auto"`` (default), ``"func"`` (``torch.func`` only) or ``"autograd"`` (double backward only).
        chunk_size: columns per ``vmap`` chunk for :meth:`matmat` (``None``: all at once).

    Example::

        op = HVPOperator(model, torch.nn.functional.cross_entropy, (x, y))
        eig = top_eigenpairs(op, k=1)          # sharpness; eig.n_hvp products
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data: Any, *, method: str = "auto",
                 chunk_size: int | None = None) -> None:
        super().__init__(model, loss_fn, data, method, chunk_size)
        self._function: Callable[[Sequence[Tensor]], Tensor] | None = None

    @classmethod
    def from_function(cls, f: Callable[[Sequence[Tensor]], Tensor], params: Sequence[Tensor], *,
                      method: str = "auto", chunk_size: int | None = None) -> HVPOperator:
        """The Hessian of a scalar closure ``f(params)`` (``params`` a sequence of tensors) at ``params``."""
        if not callable(f):
            raise ValueError("f must be callable as f(params) -> scalar tensor")
        op = cls.__new__(cls)
        _ParamOperator.__init__(op, list(params), method, chunk_size)
        op._function = f
        op.single_batch = True
        op._graph = None
        return op

    def _batches(self) -> Iterable[tuple[float, Batch | None]]:
        if self._function is not None:
            return [(1.0, None)]
        return super()._batches()

    def _scalar(self, params: Sequence[Tensor], batch: Batch | None) -> Tensor:
        if self._function is not None:
            return self._function(list(params))
        assert batch is not None
        return self._loss(params, batch)

    def loss(self) -> float:
        """The loss at the snapshot (sample-weighted mean over the loader)."""
        with torch.no_grad():
            return float(sum(w * float(self._scalar(self.params, b)) for w, b in self._batches()))

    def gradient(self) -> Tensor:
        """The flat gradient at the snapshot (sample-weighted mean over the loader)."""
        out = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for w, b in self._batches():
            ps = [p.detach().requires_grad_(True) for p in self.params]
            out += w * self.flatten(torch.autograd.grad(self._scalar(ps, b), ps))
        return out

    def _func_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        from torch.func import grad, jvp

        g = grad(lambda ps: self._scalar(ps, batch))
        return tuple(jvp(g, (self.params,), (v,))[1])

    def _autograd_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        if self.single_batch:  # the gradient graph is built once and differentiated again per product
            if self._graph is None:
                ps = [p.detach().requires_grad_(True) for p in self.params]
                self._leaves = ps
                self._graph = torch.autograd.grad(self._scalar(ps, batch), ps, create_graph=True)
            hv = torch.autograd.grad(self._graph, self._leaves, grad_outputs=v, retain_graph=True,
                                     allow_unused=True)
        else:
            ps = [p.detach().requires_grad_(True) for p in self.params]
            gr = torch.autograd.grad(self._scalar(ps, batch), ps, create_graph=True)
            hv = torch.autograd.grad(gr, ps, grad_outputs=v, allow_unused=True)
        return tuple(torch.zeros_like(p) if h is None else h.detach() for h, p in zip(hv, self.params, strict=True))


class GNVPOperator(_ModelOperator):
    """Generalised Gauss-Newton products ``v -> J^T H_L J v`` (Schraudolph 2002) over a batch or a loader.

    ``J`` is the Jacobian of ``model(x)`` in the parameters and ``H_L`` the Hessian of ``loss_fn(., y)`` in the
    outputs.  Equal to the Hessian when the model is linear in its parameters; for squared error
    ``0.5 * mean((f - y)^2)`` it is ``J^T J / n_outputs``.  Same arguments as :class:`HVPOperator`.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn, data: Any, *, method: str = "auto",
                 chunk_size: int | None = None) -> None:
        super().__init__(model, loss_fn, data, method, chunk_size)

    def _func_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        from torch.func import grad, jvp, vjp

        assert batch is not None
        x, y = batch[0], batch[1]
        def outputs(ps: tuple[Tensor, ...]) -> Any:
            return self._outputs(ps, x)

        def loss_of_outputs(o: Tensor) -> Tensor:
            return self.loss_fn(o, y)

        out, pull = vjp(outputs, self.params)[:2]
        jv = jvp(outputs, (self.params,), (v,))[1]
        hjv = jvp(grad(loss_of_outputs), (out,), (jv,))[1]
        return tuple(pull(hjv)[0])

    def _autograd_vec(self, batch: Batch | None, v: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        assert batch is not None
        ps = [p.detach().requires_grad_(True) for p in self.params]
        out = self._outputs(ps, batch[0])
        # J v by the double-vjp trick: u -> J^T u is linear in u, so d(J^T u)/du applied to v gives J v
        u = torch.zeros_like(out, requires_grad=True)
        jtu = torch.autograd.grad(out, ps, grad_outputs=u, create_graph=True)
        jv = torch.autograd.grad(jtu, u, grad_outputs=v, allow_unused=True)[0]
        o = out.detach().requires_grad_(True)
        go = torch.autograd.grad(self.loss_fn(o, batch[1]), o, create_graph=True)[0]
        hjv = torch.autograd.grad(go, o, grad_outputs=jv)[0]
        jthjv = torch.autograd.grad(out, ps, grad_outputs=hjv, allow_unused=True)
        return tuple(torch.zeros_like(p) if h is None else h.detach() for h, p in zip(jthjv, self.params, strict=True))


class ClosureHVPOperator(CurvatureOperator):
    """Hessian-vector products of ``closure()`` -- a loss computed from the live tensors ``params``, like an
    optimizer closure (no ``backward`` inside) -- by double backward on a gradient graph built once here.

    For code that cannot be made functional (``descend bench`` tasks, losses over module state).  It is a
    snapshot too: the graph is built at construction and computes the products there; where a tensor the graph
    saved is changed in place afterwards, autograd's version counter makes the next product fail instead.
    """

    def __init__(self, closure: Callable[[], Tensor], params: Iterable[Tensor]) -> None:
        if not callable(closure):
            raise ValueError("closure must be callable as closure() -> scalar tensor")
        ps = [p for p in params if p.requires_grad]
        if not ps:
            raise ValueError("params must hold at least one tensor that requires grad")
        dtypes = {p.dtype for p in ps}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(f"params must share one floating dtype, got {sorted(map(str, dtypes))}")
        super().__init__(sum(p.numel() for p in ps), ps[0].dtype, ps[0].device)
        self.params = ps
        self.numels = [p.numel() for p in ps]
        with torch.enable_grad():
            loss = closure()
            if loss.numel() != 1:
                raise ValueError(f"closure must return a scalar, got shape {tuple(loss.shape)}")
            grads = torch.autograd.grad(loss, ps, create_graph=True, allow_unused=True)
        self.loss_value = float(loss.detach())
        self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        self._grads = [grads[i] for i in self._live]
        self.gradient = torch.cat([torch.zeros_like(p).reshape(-1) if g is None else g.detach().reshape(-1)
                                   for g, p in zip(grads, ps, strict=True)])

    def _matvec(self, v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        if not self._live:  # the loss is linear in params: H = 0
            return out
        vs, outs = torch.split(v, self.numels), torch.split(out, self.numels)
        ps = [self.params[i] for i in self._live]
        hv = torch.autograd.grad(self._grads, ps, grad_outputs=[vs[i].view(self.params[i].shape) for i in self._live],
                                 retain_graph=True, allow_unused=True)
        for i, h in zip(self._live, hv, strict=True):
            if h is not None:
                outs[i].view(h.shape).copy_(h)
        return out
