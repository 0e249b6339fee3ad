"""Step time and optimizer-state memory of matrix optimizers on transformer-block-shaped parameters.

Parameters (defaults, ``--d 512 --vocab 8192``): hidden matrices ``d×d``, ``d×4d``, ``4d×d`` and an embedding
``vocab×d``.  Every entry optimizes the hidden matrices with its matrix method and the embedding with AdamW —
inside one optimizer where the library routes parameters itself (descend ``muon``, pytorch-optimizer
``Muon``), otherwise next to a ``torch.optim.AdamW``.

Entries (each included when importable/registered):

* ``descend.muon``            — :class:`descend.optim.Muon` (torch's normalisation and lr scaling, so the
  arithmetic matches torch.optim.Muon), Newton–Schulz in ``--ns-dtype``;
* ``descend.muon[create]``    — ``descend.optim.create("muon", ...)``: the registry defaults a user gets;
* ``torch.Muon+AdamW``        — ``torch.optim.Muon`` + ``torch.optim.AdamW``; its Newton–Schulz runs in
  ``--ns-dtype`` too (for a dtype other than bfloat16 ``Tensor.bfloat16`` returns a ``--ns-dtype`` copy while
  it steps — the way the golden fixtures were recorded);
* ``descend.<name>+AdamW``    — any other registered descend matrix optimizer named in ``--descend``
  (default ``soap,shampoo``), with its registry defaults;
* ``pytorch_optimizer.Muon``  — pytorch-optimizer's Muon with ``use_muon`` groups (its Newton–Schulz dtype
  default is switched to ``--ns-dtype`` while it steps);
* ``heavyball.<Name>+AdamW``  — heavyball's ``Muon`` and ``SOAP`` (eager unless ``--heavyball-compile``;
  heavyball always rounds its Newton–Schulz input to bfloat16);
* ``descend.soap[baseline]+AdamW`` — with ``--soap-baseline FILE``: the ``SOAP`` class of another copy of
  ``soap.py`` (e.g. ``git show main:src/descend/optim/soap.py > /tmp/soap_main.py``), loaded inside this
  ``descend.optim`` (its relative imports resolve here), with the registry's SOAP defaults: before/after in
  one run.

``--shapes`` replaces the transformer block's hidden matrices by a list such as ``512x512*8,512x2048``
(``RxC``, ``*K`` for K matrices of that shape), e.g. a stack of same-shaped attention projections.

Timing: the same fixed gradients every step; entries are interleaved step by step (so machine load hits all
alike); the first ``--warmup`` steps are discarded; the table shows the median and the 25–75 % range of
the wall time of ``step()`` and the ratio to ``torch.Muon+AdamW``.  An entry whose second step takes
longer than ``--max-step-s`` is dropped and reported (the first may hold one-time set-up).  ``--clock cpu`` times
the process's CPU time instead of the wall clock (``time.process_time``: on a shared machine it does not count the
time the process waits for a core; with several threads it sums them; CPU devices only).
Memory: bytes of all tensors in the optimizers' ``state`` (shared storage counted once) per parameter element.

Usage::

    python benchmarks/matrix_step_time.py                       # CPU, float32 Newton–Schulz
    python benchmarks/matrix_step_time.py --ns-dtype bfloat16 --device cuda
    python benchmarks/matrix_step_time.py --d 256 --vocab 4096 --steps 8 --json out.json
    python benchmarks/matrix_step_time.py --shapes 512x512*8 --vocab 1024 --soap-baseline /tmp/soap_main.py
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@dataclass
class Entry:
    name: str
    build: Callable[[list[nn.Parameter], list[nn.Parameter]], list[torch.optim.Optimizer]]
    patch: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    ns_dtype: str = ""
    times: list[float] = field(default_factory=list)
    note: str = ""


@contextlib.contextmanager
def _tensor_bfloat16_as(dtype: torch.dtype) -> Iterator[None]:
    """Make ``Tensor.bfloat16()`` return a copy in ``dtype`` (torch.optim.Muon's Newton–Schulz cast)."""
    if dtype == torch.bfloat16:
        yield
        return
    original = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self, *a, **k: self.to(dtype, copy=True)  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _default_dtype_arg(fn: Callable, dtype: torch.dtype) -> Iterator[None]:
    """Replace a ``torch.bfloat16`` default argument of ``fn`` by ``dtype`` while the block runs."""
    saved = fn.__defaults__
    if saved is not None:
        fn.__defaults__ = tuple(dtype if d is torch.bfloat16 else d for d in saved)
    try:
        yield
    finally:
        fn.__defaults__ = saved


def _entries(args: argparse.Namespace) -> list[Entry]:
    ns = _DTYPES[args.ns_dtype]
    hp = {"lr": 0.02, "weight_decay": 0.01}
    adam = {"lr": 3e-4, "betas": (0.9, 0.95), "eps": 1e-10, "weight_decay": 0.0}
    out: list[Entry] = []

    import descend.optim as do

    out.append(Entry(
        "descend.muon",
        lambda h, e: [do.Muon([{"params": h, "use_muon": True}, {"params": e, "use_muon": False, **adam}],
                              **hp, momentum=0.95, nesterov=True, ns_dtype=args.ns_dtype,
                              normalization="torch", adjust_lr_fn="original")],
        ns_dtype=args.ns_dtype))
    out.append(Entry(  # what a user gets: the registry's defaults (bfloat16 Newton–Schulz)
        "descend.muon[create]",
        lambda h, e: [do.create("muon", [{"params": h, "use_muon": True}, {"params": e, "use_muon": False}])],
        ns_dtype=str(do.get("muon").defaults.get("ns_dtype"))))
    if hasattr(torch.optim, "Muon"):
        out.append(Entry(
            "torch.Muon+AdamW",
            lambda h, e: [torch.optim.Muon(h, **hp, momentum=0.95, nesterov=True), torch.optim.AdamW(e, **adam)],
            patch=lambda: _tensor_bfloat16_as(ns), ns_dtype=args.ns_dtype))
    for name in filter(None, args.descend.split(",")):
        if name in do.available():
            out.append(Entry(f"descend.{name}+AdamW",
                             lambda h, e, name=name: [do.create(name, h), torch.optim.AdamW(e, **adam)],
                             ns_dtype="n/a"))
        else:
            print(f"# descend.{name}: not registered, skipped", file=sys.stderr)
    if args.soap_baseline:
        baseline = _load_soap_baseline(args.soap_baseline)
        soap_defaults = dict(do.get("soap").defaults)
        out.append(Entry("descend.soap[baseline]+AdamW",
                         lambda h, e: [baseline(h, **soap_defaults), torch.optim.AdamW(e, **adam)], ns_dtype="n/a"))
    if args.peers:
        try:
            import pytorch_optimizer
            matrix = importlib.import_module("pytorch_optimizer.optimizer.utils.matrix")
            ns_fn = matrix.zero_power_via_newton_schulz_5
            out.append(Entry(
                "pytorch_optimizer.Muon",
                lambda h, e: [pytorch_optimizer.Muon(
                    [{"params": h, "use_muon": True, **hp},
                     {"params": e, "use_muon": False, **adam}], momentum=0.95, nesterov=True)],
                patch=lambda: _default_dtype_arg(ns_fn, ns), ns_dtype=args.ns_dtype))
            # SOAP with the reference's defaults (a re-implementation of nikhilvyas/SOAP, same numerics)
            out.append(Entry("pytorch_optimizer.SOAP+AdamW",
                             lambda h, e: [pytorch_optimizer.SOAP(h, lr=3e-3), torch.optim.AdamW(e, **adam)],
                             ns_dtype="n/a"))
            # ScalableShampoo: blocked Kronecker factors with grafting, roots every 100 steps like descend's
            out.append(Entry("pytorch_optimizer.ScalableShampoo+AdamW",
                             lambda h, e: [pytorch_optimizer.ScalableShampoo(
                                 h, lr=1e-3, start_preconditioning_step=1, preconditioning_compute_steps=100),
                                 torch.optim.AdamW(e, **adam)],
                             ns_dtype="n/a"))
        except Exception as exc:  # not installed, or an API change
            print(f"# pytorch_optimizer: unavailable ({exc!r})", file=sys.stderr)
        try:
            import heavyball
            import heavyball.utils
            if not args.heavyball_compile:
                heavyball.utils.compile_mode = None
                heavyball.utils.compile_mode_recommended_to_none = None
            out.append(Entry("heavyball.Muon+AdamW",
                             lambda h, e: [heavyball.Muon(h, lr=0.02), torch.optim.AdamW(e, **adam)],
                             ns_dtype="bfloat16 (own)"))
            out.append(Entry("heavyball.SOAP+AdamW",
                             lambda h, e: [heavyball.SOAP(h, lr=3e-3), torch.optim.AdamW(e, **adam)],
                             ns_dtype="n/a"))
        except Exception as exc:
            print(f"# heavyball: unavailable ({exc!r})", file=sys.stderr)
    if args.only:
        keep = set(args.only.split(","))
        out = [e for e in out if e.name in keep]
    return out


def _load_soap_baseline(path: str) -> Callable[..., torch.optim.Optimizer]:
    """The ``SOAP`` class of the file ``path`` (a copy of ``descend/optim/soap.py``), loaded as a module of
    ``descend.optim`` without registering it."""
    import importlib.util

    import descend.optim.registry as registry

    spec = importlib.util.spec_from_file_location("descend.optim._soap_baseline", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    register, registry.register = registry.register, lambda *a, **k: None  # type: ignore[assignment]
    try:
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        registry.register = register  # type: ignore[assignment]
    return module.SOAP  # type: ignore[no-any-return]


def _parse_shapes(text: str) -> dict[str, tuple[int, int]]:
    """``"512x512*8,512x2048"`` -> ``{"m0": (512, 512), ..., "m7": (512, 512), "m8": (512, 2048)}``."""
    out: dict[str, tuple[int, int]] = {}
    for part in filter(None, text.split(",")):
        dims, _, count = part.partition("*")
        try:
            rows, cols = (int(x) for x in dims.split("x"))
            k = int(count) if count else 1
        except ValueError:
            raise ValueError(f"--shapes entries are RxC or RxC*K, got {part!r}") from None
        if min(rows, cols, k) < 1:
            raise ValueError(f"--shapes sizes and counts must be >= 1, got {part!r}")
        for _ in range(k):
            out[f"m{len(out)}"] = (rows, cols)
    return out


def _state_bytes(opts: list[torch.optim.Optimizer]) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0

    def visit(x: object) -> None:
        nonlocal total
        if isinstance(x, torch.Tensor):
            key = (x.untyped_storage().data_ptr(), x.untyped_storage().nbytes())
            if key not in seen:
                seen.add(key)
                total += key[1]
        elif isinstance(x, dict):
            for v in x.values():
                visit(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                visit(v)

    for opt in opts:
        visit(list(opt.state.values()))
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--d", type=int, default=512, help="model width (hidden shapes d×d, d×4d, 4d×d)")
    ap.add_argument("--vocab", type=int, default=8192, help="embedding rows (routed to AdamW)")
    ap.add_argument("--ns-dtype", choices=sorted(_DTYPES), default="float32",
                    help="Newton–Schulz dtype for descend and torch (bfloat16 = both references' default; "
                         "float32 is the default here because bfloat16 matmuls are very slow on most CPUs)")
    ap.add_argument("--param-dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per entry")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave as is)")
    ap.add_argument("--descend", default="soap,shampoo", help="other registered descend optimizers to include")
    ap.add_argument("--no-peers", dest="peers", action="store_false", help="skip pytorch-optimizer/heavyball")
    ap.add_argument("--heavyball-compile", action="store_true", help="let heavyball torch.compile its steps")
    ap.add_argument("--only", default="", help="comma-separated entry names to run")
    ap.add_argument("--max-step-s", type=float, default=60.0, help="drop an entry whose second step is slower")
    ap.add_argument("--json", default="", help="also write the results to this file")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall: time.perf_counter; cpu: time.process_time (CPU time, robust to a loaded machine)")
    ap.add_argument("--shapes", default="", help="hidden matrices instead of the block's, e.g. 512x512*8,512x2048")
    ap.add_argument("--soap-baseline", default="", help="a copy of soap.py to time next to this one (before/after)")
    args = ap.parse_args(argv)
    # every argument is checked before any work (exit 2, one line)
    if args.clock == "cpu" and torch.device(args.device).type != "cpu":
        ap.error(f"--clock cpu times CPU work only; use --clock wall with --device {args.device}")
    if args.soap_baseline and not os.path.isfile(args.soap_baseline):
        ap.error(f"--soap-baseline must name a file (a copy of soap.py), got {args.soap_baseline!r}")
    try:
        custom = _parse_shapes(args.shapes) if args.shapes else None
    except ValueError as exc:
        ap.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, pdt = torch.device(args.device), _DTYPES[args.param_dtype]
    d = args.d
    shapes = custom or {"attn": (d, d), "mlp_up": (4 * d, d), "mlp_down": (d, 4 * d)}
    gen = torch.Generator().manual_seed(0)
    init = {k: torch.randn(*s, generator=gen) / s[1] ** 0.5 for k, s in shapes.items()}
    init["embed"] = torch.randn(args.vocab, d, generator=gen)
    grads = {k: 1e-2 * torch.randn(*v.shape, generator=gen) for k, v in init.items()}
    n_params = sum(v.numel() for v in init.values())

    entries = _entries(args)
    live: list[tuple[Entry, list[nn.Parameter], list[torch.optim.Optimizer]]] = []
    for entry in entries:
        params = {k: nn.Parameter(v.to(dev, pdt)) for k, v in init.items()}
        for k, p in params.items():
            p.grad = grads[k].to(dev, pdt)
        try:
            opts = entry.build([params[k] for k in shapes], [params["embed"]])
        except Exception as exc:
            print(f"# {entry.name}: cannot build ({exc!r})", file=sys.stderr)
            continue
        live.append((entry, list(params.values()), opts))

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    dropped: dict[str, str] = {}
    for it in range(args.warmup + args.steps):
        for entry, _params, opts in live:
            if entry.name in dropped:
                continue
            sync()
            t0 = clock()
            with entry.patch():
                for opt in opts:
                    opt.step()
            sync()
            dt = clock() - t0
            # the first call may include one-time work (preconditioner init, compilation): judge the second
            if it == min(1, args.warmup + args.steps - 1) and dt > args.max_step_s:
                dropped[entry.name] = f"step {it + 1} took {dt:.1f} s > --max-step-s {args.max_step_s:g}"
            if it >= args.warmup:
                entry.times.append(dt)
        print(f"# step {it + 1}/{args.warmup + args.steps} done", file=sys.stderr)

    base = next((statistics.median(e.times) for e, _, _ in live if e.name == "torch.Muon+AdamW" and e.times), None)
    rows = []
    for entry, _params, opts in live:
        if entry.name in dropped:
            rows.append({"optimizer": entry.name, "note": "dropped: " + dropped[entry.name]})
            continue
        q = statistics.quantiles(entry.times, n=4) if len(entry.times) > 1 else [entry.times[0]] * 3
        med = statistics.median(entry.times)
        rows.append({"optimizer": entry.name, "ns_dtype": entry.ns_dtype, "median_ms": 1e3 * med,
                     "p25_ms": 1e3 * q[0], "p75_ms": 1e3 * q[2],
                     "vs_torch": med / base if base else None,
                     "state_bytes_per_param": _state_bytes(opts) / n_params})

    print(f"\nshapes: {shapes} + embed {(args.vocab, d)} (AdamW); {n_params / 1e6:.2f} M params "
          f"({args.param_dtype}, {args.device}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.steps} timed steps after {args.warmup} warm-up; {args.clock} clock\n")
    print("| optimizer | NS dtype | step ms (median) | 25–75 % | × torch.Muon | state B/param |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        if "median_ms" not in r:
            print(f"| {r['optimizer']} | | | | | {r['note']} |")
            continue
        ratio = f"{r['vs_torch']:.3f}" if r["vs_torch"] is not None else "–"
        print(f"| {r['optimizer']} | {r['ns_dtype']} | {r['median_ms']:.1f} | {r['p25_ms']:.1f}–{r['p75_ms']:.1f} "
              f"| {ratio} | {r['state_bytes_per_param']:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "n_params": n_params, "rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
