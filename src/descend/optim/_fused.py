"""The fast path of elementwise optimizers: one compiled loop per tensor instead of one memory pass per op.

An elementwise optimizer (AdaBelief, Lion, Sophia-G, NAdamW, AGD, FRUGAL, Mechanic's reductions, Adam-mini) writes its
per-tensor update once, as a plain Python function of tensors and Python scalars that updates its arguments
in place (the *math function*).  The eager path calls that function directly, one ATen kernel (= one pass
over memory) per operation.  The fast path runs the very same function through ``torch.compile``
(inductor), which fuses it into a single loop over the elements -- a single C++/OpenMP loop on the CPU, a
single Triton kernel on a GPU -- that reads every input once and writes every output once.  Only the
execution changes, never the math: both paths agree to floating-point rounding (the tests compare them in
float64).

The ``fused`` flag of every such optimizer:

* ``None`` (the default) = **auto**: compiled where ``torch.compile`` works -- a CPU tensor with a working
  C++ compiler, or a CUDA tensor with Triton -- and eager elsewhere.  If compiling fails at run time
  (a broken toolchain, an unsupported dynamo/Python combination), the process warns *once*
  (:class:`FusedFallbackWarning`) and continues eagerly; the results are the same math.  The environment
  variable ``DESCEND_COMPILE=0`` turns the auto mode off (eager everywhere, no warning); the test suite sets
  it so that the contract tests do not compile (the compiled default has its own tests);
  ``DESCEND_COMPILE=1`` forces the auto mode on even on devices not listed above.
* ``True``: always compiled (errors propagate); ``False``: always eager.

How the compiled function is called, so that a step makes one compiled call per parameter group (not one per
tensor) and never recompiles:

* an optimizer collects its per-tensor calls in an :class:`ElementwiseBatch`; the tensors that share a math
  function and scalar values (a parameter group's) are updated by ONE call of :func:`multi_tensor`'s wrapper
  -- ``for ts in lists: fn(*ts, **scalars)``, compiled -- in chunks of at most :data:`MAX_TENSORS_PER_CALL`.
  A compiled call costs ~0.1-0.2 ms on the CPU (guards, argument wrapping, inductor's wrapper), which per
  tensor was 10-40 % of a 12.6M-parameter step; per group it is paid once.  The wrapper of each math
  function has its own code object, hence its own dynamo cache and recompile limit;
* every tensor is passed as a flat 1-D alias of its storage (:func:`flat_alias`) and compiled with
  ``dynamic=True``: one graph serves all sizes (dynamo guards on the number of tensors in the call and on
  which of their sizes are equal, both fixed for a model, so the graph is reused at every step);
* scalars (learning rate, bias corrections, ...) are plain Python floats used only in tensor arithmetic;
  dynamo (``specialize_float=False``, torch's default) turns them into graph inputs instead of guarding on
  their values, so a learning-rate schedule or the step counter never recompiles (tested with dynamo's
  counters); float32 CPU tensors get them as 0-d float32 tensors, the betas as 0-d float64 ones (so that
  ``1 - beta`` is rounded once, as on the eager path; see :func:`_as_compiled_scalars`);
* booleans select code (guards); keep their combinations few (dynamo keeps at most
  ``torch._dynamo.config.recompile_limit`` graphs per function, 8 by default, and runs further variants
  eagerly -- still correct, just slow).

Cost of the first step (compilation) and the caches: each (function, dtype, flag combination) compiles once
per process -- dynamo traces, inductor generates C++ and gcc builds it.  Inductor's on-disk FX-graph cache
(``torch._inductor.config.fx_graph_cache``, on by default, directory ``TORCHINDUCTOR_CACHE_DIR``, default
``/tmp/torchinductor_$USER``) keeps the built kernels, so a second process -- a benchmark worker, a resumed
run -- skips code generation and gcc.  Measured on a shared 2-core CPU (torch 2.13, ``benchmarks/
step_time.py --compile-cost``, load average 2.5-4.5): the first step of Lion / NAdamW / Mechanic took 21 / 21 /
45 s in a process with an empty cache and 14 / 10 / 12 s in the next process (cache hit; importing inductor
and dynamo tracing are not cached); later calls cost ~0.1-0.2 ms of wrapper overhead per call.  On an idle
2-core Intel Xeon (release 0.5, same command, group graphs) every elementwise default's first step took 15-18 s
with an empty cache and 4.1-4.5 s with a warm one.  The older
numbers are for per-tensor graphs; a graph over a whole group (17 tensors in ``benchmarks/step_time.py``'s
12.6M-parameter model) compiled in 31-110 s with an empty cache at load average 8 (first-step column of that
benchmark) and 5-35 s with a warm one (Adam-mini's first step, two graphs over 17 segments: ~115 s).  Workers
on one machine share the default cache directory; point ``TORCHINDUCTOR_CACHE_DIR`` at a persistent disk to
keep it across reboots.
"""

from __future__ import annotations

import os
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

__all__ = [
    "MAX_TENSORS_PER_CALL",
    "MIN_COMPILED_NUMEL",
    "ElementwiseBatch",
    "FusedFallbackWarning",
    "can_compile",
    "check_fused",
    "compile_available",
    "compiled",
    "copy_back",
    "flat_alias",
    "multi_tensor",
    "run_elementwise",
    "run_elementwise_many",
    "torch_fused_supported",
    "use_compiled",
]

#: Tensors with fewer elements than this are always updated eagerly.
MIN_COMPILED_NUMEL = 2

#: At most this many tensors are updated by one compiled call (a longer list is cut into chunks).
MAX_TENSORS_PER_CALL = 32

#: Scalars whose name starts with this reach a float32 compiled loop in float64 (the math takes ``1 - beta``).
BETA_PREFIX = "beta"

#: Environment variable read by the auto mode (``fused=None``): ``0`` = eager, ``1`` = compile everywhere.
ENV_VAR = "DESCEND_COMPILE"

_COMPILED: dict[Callable[..., Any], Callable[..., Any]] = {}
_MULTI: dict[Callable[..., Any], Callable[..., Any]] = {}
_AVAILABLE: dict[str, str | None] = {}  # device type -> None (compilable) or the reason it is not
_FAILED: list[str] = []  # set once the auto mode saw a compile failure: the reason; auto is then eager


class FusedFallbackWarning(RuntimeWarning):
    """The auto mode (``fused=None``) could not compile and runs the elementwise update eagerly."""


def check_fused(fused: Any) -> bool | None:
    """Validate the ``fused`` flag: ``True`` (compiled), ``False`` (eager) or ``None`` (auto, the default)."""
    if fused is not None and not isinstance(fused, bool):
        raise ValueError(f"fused must be True, False or None (auto: compiled where torch.compile works), "
                         f"got {fused!r}")
    return fused


def _unavailable_reason(device_type: str) -> str | None:
    """Why ``torch.compile`` cannot build kernels for ``device_type`` (``None``: it can)."""
    try:
        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile (dynamo) does not support this Python version"
        if device_type == "cpu":
            from torch._inductor import cpp_builder
            cpp_builder.get_cpp_compiler()
            return None
        if device_type == "cuda":
            from torch.utils._triton import has_triton
            return None if has_triton() else "Triton is not installed"
    except Exception as exc:  # any failure of the probe means: do not compile
        return f"{type(exc).__name__}: {exc}".strip()
    return f"the auto mode compiles on cpu and cuda only, not on {device_type!r}"


def compile_available(device: torch.device | str) -> bool:
    """Whether the auto mode compiles for ``device`` (honours ``DESCEND_COMPILE``; probes once per type)."""
    env = os.environ.get(ENV_VAR, "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if _FAILED:
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    device_type = torch.device(device).type
    if device_type not in _AVAILABLE:
        _AVAILABLE[device_type] = reason = _unavailable_reason(device_type)
        if reason is not None and device_type in ("cpu", "cuda"):
            _warn_fallback(f"torch.compile is not available on {device_type} ({reason})")
    return _AVAILABLE[device_type] is None


def use_compiled(fused: bool | None, device: torch.device | str) -> bool:
    """Resolve the ``fused`` flag for a tensor on ``device``."""
    if fused is None:
        return compile_available(device)
    return fused


def _warn_fallback(reason: str) -> None:
    warnings.warn(f"descend.optim: {reason}; elementwise optimizers with fused=None run their eager path "
                  f"(same math, several times slower per step). Pass fused=False or set {ENV_VAR}=0 to "
                  f"silence this warning.", FusedFallbackWarning, stacklevel=4)


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.compile(fn, dynamic=True)``, built once per function and shared by all optimizers."""
    c = _COMPILED.get(fn)
    if c is None:
        c = torch.compile(fn, dynamic=True)
        _COMPILED[fn] = c
    return c


def flat_alias(t: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor sharing ``t``'s memory (``t`` must be contiguous).

    Unlike ``t.view(-1)`` the result is not a view (it has no ``_base``), so dynamo guards on nothing but
    its dtype, device and rank, and one compiled graph serves every parameter shape.
    """
    out = torch.empty(0, dtype=t.dtype, device=t.device)
    return out.set_(t.untyped_storage(), t.storage_offset(), (t.numel(),), (1,))


def shaped_alias(t: torch.Tensor) -> torch.Tensor:
    """A tensor of ``t``'s shape sharing its memory (``t`` contiguous) that, like :func:`flat_alias`, is not a
    view, so that dynamo guards on nothing but its dtype, device and rank."""
    out = torch.empty(0, dtype=t.dtype, device=t.device)
    return out.set_(t.untyped_storage(), t.storage_offset(), t.shape, t.stride())


def can_compile(tensors: Sequence[torch.Tensor | None]) -> bool:
    """Whether the tensors qualify for the compiled path (contiguous, same size, not tiny)."""
    ts = [t for t in tensors if t is not None]
    n = ts[0].numel()
    return n >= MIN_COMPILED_NUMEL and all(t.is_contiguous() and t.numel() == n for t in ts)


def multi_tensor(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` applied to every tuple of a list, ``[fn(*ts, **scalars) for ts in lists]``: what is compiled.

    One compiled call then updates a whole list of tensors (a parameter group) instead of one tensor, which
    saves the per-call cost (guards, argument wrapping, inductor's wrapper: ~0.1-0.2 ms a call on the CPU).
    Each math function gets a wrapper with its *own* code object (a renamed copy), so that dynamo's cache
    and recompile limit are per math function, as for the per-tensor compile.  Built once per function.
    """
    w = _MULTI.get(fn)
    if w is None:
        code = _apply_each(fn).__code__
        code = code.replace(co_name=f"each_{getattr(fn, '__name__', 'fn')}")
        w = types.FunctionType(code, _apply_each.__globals__, code.co_name, None, (types.CellType(fn),))
        _MULTI[fn] = w
    return w


def _apply_each(fn: Callable[..., Any]) -> Callable[..., list[Any]]:
    def apply(lists: list[tuple[torch.Tensor | None, ...]], scalars: dict[str, Any]) -> list[Any]:
        out = []
        for ts in lists:
            out.append(fn(*ts, **scalars))
        return out
    return apply


def _as_compiled_scalars(scalars: dict[str, Any], first: torch.Tensor) -> dict[str, Any]:
    """The scalars as the compiled call takes them (float32 CPU tensors: 0-d tensors, see below)."""
    if first.dtype == torch.float32 and first.device.type == "cpu":
        # Python floats reach the compiled loop as float64 inputs that the C++ loop re-loads and converts to
        # float at every vector (measured ~10% of a 12.6M-element AdaBelief step); float32 0-d tensors avoid
        # the conversion.  Except the betas: the math functions take 1 - beta inside, and float32(0.999) makes
        # 1 - beta2 off by 1.3e-5 relative (the eager path rounds 1 - beta once, from float64).  Over 20 steps
        # that put the compiled C-AdamW / NAdamW 40x / 27x further from a float64 run than eager float32; with
        # the betas as float64 tensors both paths are equally close (tests/optim/test_fused.py), at no
        # measurable cost (two scalars).
        return {k: torch.tensor(v, dtype=torch.float64 if k.startswith(BETA_PREFIX) else torch.float32)
                if type(v) is float else v for k, v in scalars.items()}
    return scalars


def run_elementwise(fn: Callable[..., Any], fused: bool | None, tensors: Sequence[torch.Tensor | None],
                    **scalars: Any) -> Any:
    """Call ``fn(*tensors, **scalars)`` eagerly, or compiled on flat aliases (one tensor tuple).

    ``fused``: ``True`` compiled, ``False`` eager, ``None`` auto (:func:`use_compiled`).  ``fn`` must update
    its tensor arguments in place (``None`` entries are passed through); what it returns is returned (for a
    compiled call, reductions come back as 0-d tensors).  Inside a region that dynamo is already compiling
    (a user's ``torch.compile`` of the whole step) ``fn`` is called directly and traced with it.
    """
    return run_elementwise_many(fn, fused, [tensors], **scalars)[0]


def run_elementwise_many(fn: Callable[..., Any], fused: bool | None,
                         items: Sequence[Sequence[torch.Tensor | None]], *,
                         qualifies: Callable[[Sequence[torch.Tensor | None]], bool] = can_compile,
                         keep_shape: bool = False, **scalars: Any) -> list[Any]:
    """``[fn(*ts, **scalars) for ts in items]``, the compiled way in as few calls as possible.

    The tuples that qualify (``qualifies``, default :func:`can_compile`) are bucketed by dtype, device and
    which arguments are ``None``; each bucket runs as one call of the compiled :func:`multi_tensor` wrapper
    (in chunks of at most :data:`MAX_TENSORS_PER_CALL`); the rest run eagerly.  The results come back in the
    order of ``items``.  ``keep_shape``: pass the tensors with their shapes (aliases without a ``_base``) instead of
    flattened, for math functions that reduce along a dimension (Adam-mini's blocks: a flattened block index
    would cost an integer division per vector in the compiled loop).  Compilation happens once per
    (function, dtype, flags, list length and size pattern); the lists an optimizer passes are the same every
    step, so a step never recompiles.
    """
    out: list[Any] = [None] * len(items)
    todo = list(range(len(items)))
    if not items:
        return out
    first = next(t for t in items[0] if t is not None)
    if fused is False or torch.compiler.is_compiling() or (fused is None and not compile_available(first.device)):
        return [fn(*ts, **scalars) for ts in items]
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for i in todo:
        ts = items[i]
        if not qualifies(ts):
            out[i] = fn(*ts, **scalars)
            continue
        key = tuple(None if t is None else (t.dtype, t.device) for t in ts)
        buckets.setdefault(key, []).append(i)
    for idx in buckets.values():
        for lo in range(0, len(idx), MAX_TENSORS_PER_CALL):
            chunk = idx[lo:lo + MAX_TENSORS_PER_CALL]
            alias = shaped_alias if keep_shape else flat_alias
            args = [tuple(None if t is None else alias(t) for t in items[i]) for i in chunk]
            head = next(t for t in items[chunk[0]] if t is not None)
            kw = _as_compiled_scalars(scalars, head)
            if fused:
                res = compiled(multi_tensor(fn))(args, kw)
            else:
                try:
                    res = compiled(multi_tensor(fn))(args, kw)
                except Exception as exc:  # compilation failed before anything ran: fall back, once per process
                    if not _FAILED:
                        _FAILED.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                        _warn_fallback(f"torch.compile failed ({_FAILED[0]})")
                    res = [fn(*items[i], **scalars) for i in chunk]
            for i, r in zip(chunk, res, strict=True):
                out[i] = r
    return out


def copy_back(p: torch.Tensor, w: torch.Tensor) -> Callable[[], None]:
    """A callback for :meth:`ElementwiseBatch.add`: ``p.copy_(w)`` (a low-precision parameter rounded from its
    float32 work copy once the batch has run)."""
    def then() -> None:
        p.copy_(w)
    return then


class ElementwiseBatch:
    """Collects an optimizer step's per-tensor calls and runs them together (:func:`run_elementwise_many`).

    ``add(fn, tensors, scalars, then)`` records one tensor's update; :meth:`run` groups the records by
    function and scalar values (a parameter group's tensors share them), runs each group in one compiled
    call (or eagerly, per ``fused``), then calls the ``then`` callbacks in order (a low-precision parameter
    copied back from its float32 work copy).  Each record's update only touches its own tensors, so running
    them later and together gives the same result as one by one.
    """

    def __init__(self, fused: bool | None) -> None:
        self.fused = fused
        self._groups: dict[tuple[Any, ...], tuple[Callable[..., Any], Callable[..., bool], bool, dict[str, Any],
                                                  list[Sequence[torch.Tensor | None]]]] = {}
        self._then: list[Callable[[], Any]] = []

    def add(self, fn: Callable[..., Any], tensors: Sequence[torch.Tensor | None], scalars: dict[str, Any],
            then: Callable[[], Any] | None = None, *,
            qualifies: Callable[[Sequence[torch.Tensor | None]], bool] = can_compile,
            keep_shape: bool = False) -> None:
        """Record ``fn(*tensors, **scalars)``; ``then`` runs after the batch; ``qualifies``: which tuples
        may be compiled (default :func:`can_compile`: contiguous tensors of one size)."""
        key = (fn, qualifies, keep_shape, *sorted(scalars.items()))
        self._groups.setdefault(key, (fn, qualifies, keep_shape, scalars, []))[4].append(tensors)
        if then is not None:
            self._then.append(then)

    def then(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` after the batch (after the earlier callbacks)."""
        self._then.append(callback)

    def run(self) -> None:
        groups, thens = self._groups, self._then
        self._groups, self._then = {}, []
        for fn, qualifies, keep_shape, scalars, items in groups.values():
            run_elementwise_many(fn, self.fused, items, qualifies=qualifies, keep_shape=keep_shape, **scalars)
        for then in thens:
            then()


def torch_fused_supported(params: Iterable[Any]) -> bool:
    """Whether torch's own ``fused=True`` kernels (Adam, AdamW, SGD) accept every tensor in ``params``.

    ``params`` is what an optimizer constructor receives (tensors, ``(name, tensor)`` pairs or group dicts);
    torch's fused kernels need floating-point, dense, non-complex tensors on CPU or CUDA (they are prebuilt:
    no compiler, so ``DESCEND_COMPILE`` does not apply).  Pass a list (an iterator would be consumed).
    """
    tensors: list[Any] = []
    for item in params:
        if isinstance(item, dict):
            ps = item.get("params", [])
            tensors.extend([ps] if isinstance(ps, torch.Tensor) else list(ps))
        else:
            tensors.append(item)
    tensors = [t[1] if isinstance(t, tuple) and len(t) == 2 else t for t in tensors]
    return bool(tensors) and all(
        isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        and t.layout == torch.strided and t.device.type in ("cpu", "cuda") for t in tensors)
