"""Step time and optimizer-state memory of every registered descend optimizer vs torch's AdamW.

Parameters: transformer-block shapes (``d×d`` q/k/v/o, ``d×4d`` and ``4d×d`` MLP, their biases, two
layer norms) repeated until ``--params-m`` million elements, topped up with a ``rows×d`` embedding.
Defaults: ``d = 1024``, ≈12.6M parameters (one block), float32, CPU.

Entries:

* ``torch.AdamW[for-loop|foreach|fused]`` -- the baselines; every ratio is relative to ``fused``;
* ``descend.<name>`` for every name in ``descend.optim.available()`` (or ``--optimizers``), with its
  registry defaults -- what a user gets (the elementwise ones compile their update, :mod:`descend.optim._fused`);
  ``descend.<name>[eager]`` too where the optimizer has an eager switch (``fused=False``; Mechanic:
  ``tuner_fused=False``).  Optimizers that need a closure are skipped (noted); ``matrix_only`` ones get the
  ≥2-D parameters only (noted);
* ``ref.<name>`` -- the reference package where one is installed (:data:`REFERENCES`, the package's defaults);
* ``peer.*`` -- other libraries' implementations where installed (:data:`PEERS`: heavyball's compiled AdamW).

Timing: the same fixed gradients every step; entries are interleaved step by step so that load from other
processes hits all alike; the first ``--warmup`` steps (compilation included) are discarded and the table
shows the median ``step()`` time, the ratio to fused AdamW, the first step's time (set-up, compilation) and
the bytes of optimizer state per parameter element.  A second table puts, per optimizer, the default, the
eager path and the reference side by side.  An entry whose step after the warmup takes longer than
``--max-step-s`` is dropped (noted).  ``--compile-cost`` instead measures the first step of each elementwise
optimizer in fresh processes with an empty and then a warm inductor cache (``TORCHINDUCTOR_CACHE_DIR`` in a
temporary folder).

Usage::

    python benchmarks/step_time.py --threads 1                    # everything, ≈12.6M params
    python benchmarks/step_time.py --optimizers lion,adabelief --steps 30
    python benchmarks/step_time.py --params-m 4 --no-reference --no-eager
    python benchmarks/step_time.py --compile-cost --threads 1
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

import descend.optim as do


def _adabelief_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from adabelief_pytorch import AdaBelief
    return AdaBelief(params, print_change_log=False)


def _lion_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from lion_pytorch import Lion
    return Lion(params)


def _sophia_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from sophia_opt import SophiaG
    return SophiaG(params)


def _mechanic_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    from mechanic_pytorch import mechanize
    return mechanize(torch.optim.AdamW)(params, lr=1e-3, weight_decay=0.0)


def _nadamw_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.NAdam(params, decoupled_weight_decay=True, weight_decay=0.01)


def _adam_mini_names(params: list[nn.Parameter]) -> list[tuple[str, nn.Parameter]]:
    """Names for :func:`block_shapes`'s tensors that the reference's keyword rules read as a transformer block
    (q/k/v/o, their biases, MLP fc/proj and biases, two layer norms; a trailing matrix is the embedding)."""
    block = ["q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight", "q_proj.bias", "k_proj.bias",
             "v_proj.bias", "o_proj.bias", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight", "mlp.proj.bias",
             "ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"]
    names = [f"layers.{i // len(block)}.{block[i % len(block)]}" for i in range(len(params))]
    if len(params) % len(block):
        names[-1] = "embed.weight"
    return list(zip(names, params, strict=True))


def _adam_mini_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    import contextlib
    import io

    from adam_mini import Adam_mini
    d = params[0].shape[1]
    with contextlib.redirect_stdout(io.StringIO()):
        return Adam_mini(_adam_mini_names(params), dim=d, n_heads=max(1, d // 64), verbose=False)


def _psgd_kron_ref(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    # eager, as descend's: torch.compile is the identity while kron_torch.kron is imported (how its fixtures were
    # recorded); the package's own compiled kernels would need an inductor build per parameter shape
    import importlib
    compile_ = torch.compile
    torch.compile = lambda fn=None, *a, **k: fn if fn is not None else (lambda f: f)  # type: ignore[assignment]
    try:
        for name in [m for m in sys.modules if m == "kron_torch" or m.startswith("kron_torch.")]:
            del sys.modules[name]
        kron = importlib.import_module("kron_torch.kron")
    finally:
        torch.compile = compile_

    class _Quiet(kron.Kron):  # type: ignore[misc, name-defined]
        def step(self, closure=None):  # the reference prints its memory use at the first step
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                return super().step(closure)

    return _Quiet(params)


#: Reference implementations by registry name (defaults = the package's defaults).
REFERENCES: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "adabelief": _adabelief_ref,
    "lion": _lion_ref,
    "sophia_g": _sophia_ref,
    "mechanic": _mechanic_ref,
    "nadamw": _nadamw_ref,
    "adam_mini": _adam_mini_ref,
    "psgd_kron": _psgd_kron_ref,
}


def _heavyball_adamw(params: list[nn.Parameter]) -> torch.optim.Optimizer:
    import heavyball
    return heavyball.AdamW(params, lr=1e-3)


#: Other libraries' implementations (entry name -> builder), included where importable.
PEERS: dict[str, tuple[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]]] = {
    "peer.heavyball.AdamW": ("heavyball", _heavyball_adamw),
}

#: Optimizers with a compiled elementwise fast path besides those the registry marks ``elementwise``.
FAST_PATH = ("agd_interpolation", "frugal", "mechanic", "adam_mini")

#: Keyword that selects the eager path, by registry name (default: ``fused=False`` if the factory takes it).
EAGER_KWARGS: dict[str, dict[str, bool]] = {"mechanic": {"tuner_fused": False}, "nadamw": {"fused": False},
                                            "adamw": {"fused": False}}


def eager_kwargs(name: str, factory: Callable[..., object]) -> dict[str, bool] | None:
    """The keyword arguments that run ``name``'s eager path, or ``None`` if it has no switch."""
    if name in EAGER_KWARGS:
        return EAGER_KWARGS[name]
    return {"fused": False} if "fused" in inspect.signature(factory).parameters else None


def block_shapes(d: int, target: int) -> list[tuple[int, ...]]:
    """Transformer-block parameter shapes totalling about ``target`` elements."""
    block = [(d, d)] * 4 + [(d,)] * 4 + [(4 * d, d), (4 * d,), (d, 4 * d), (d,)] + [(d,)] * 4
    per_block = sum(torch.Size(s).numel() for s in block)
    shapes = block * max(1, target // per_block)
    rest = target - sum(torch.Size(s).numel() for s in shapes)
    if rest >= d:
        shapes.append((rest // d, d))
    return shapes


@dataclass
class Entry:
    name: str
    build: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    matrix_only: bool = False
    optimizer: str = ""  # registry name this entry belongs to ("" for the baselines)
    kind: str = ""  # "default", "eager", "ref" or ""
    params: list[nn.Parameter] = field(default_factory=list)
    opt: torch.optim.Optimizer | None = None
    times: list[float] = field(default_factory=list)
    note: str = ""


def entries(args: argparse.Namespace) -> tuple[list[Entry], list[str]]:
    out = [Entry("torch.AdamW[for-loop]", lambda p: torch.optim.AdamW(p, foreach=False)),
           Entry("torch.AdamW[foreach]", lambda p: torch.optim.AdamW(p, foreach=True)),
           Entry("torch.AdamW[fused]", lambda p: torch.optim.AdamW(p, fused=True))]
    notes: list[str] = []
    names = args.optimizers.split(",") if args.optimizers else do.available()
    for name in names:
        spec = do.get(name)
        if spec.requires_closure:
            notes.append(f"skipped descend.{name}: needs a closure (line search), not a fixed-gradient step")
            continue
        if spec.matrix_only:
            notes.append(f"descend.{name}: matrix-only, timed on the ≥2-D parameters only")
        out.append(Entry(f"descend.{name}", lambda p, s=spec: s.create(p), spec.matrix_only, name, "default"))
        eager = eager_kwargs(name, spec.factory)
        if not args.no_eager and eager is not None:
            out.append(Entry(f"descend.{name}[eager]", lambda p, s=spec, kw=eager: s.create(p, **kw),
                             spec.matrix_only, name, "eager"))
        if not args.no_reference and name in REFERENCES:
            out.append(Entry(f"ref.{name}", REFERENCES[name], spec.matrix_only, name, "ref"))
    if not args.no_reference:
        for entry_name, (module, build) in PEERS.items():
            try:
                __import__(module)
            except ImportError:
                notes.append(f"skipped {entry_name}: {module} not installed")
                continue
            out.append(Entry(entry_name, build))
    return out, notes


def state_bytes_per_param(opt: torch.optim.Optimizer, n: int) -> float:
    """Bytes of every tensor in ``opt.state`` (inside lists and dicts too: kron-torch keeps its factors in a
    list), shared storage counted once, per parameter element."""
    seen, total = set(), 0

    def visit(v: object) -> None:
        nonlocal total
        if isinstance(v, torch.Tensor):
            if v.untyped_storage().data_ptr() not in seen:
                seen.add(v.untyped_storage().data_ptr())
                total += v.untyped_storage().nbytes()
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)

    for st in opt.state.values():
        visit(st)
    return total / n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params-m", type=float, default=12.6, help="millions of parameter elements")
    ap.add_argument("--d", type=int, default=1024, help="model width")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per entry")
    ap.add_argument("--warmup", type=int, default=3, help="discarded steps per entry (compilation included)")
    ap.add_argument("--optimizers", default="", help="comma-separated registry names (default: all)")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager variants of descend's optimizers")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference packages")
    ap.add_argument("--max-step-s", type=float, default=5.0, help="drop entries slower than this per step")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--compile-cost", action="store_true",
                    help="measure the first (compiling) step in fresh processes, cold and warm inductor cache")
    ap.add_argument("--first-step", default="", help=argparse.SUPPRESS)  # child process of --compile-cost
    ap.add_argument("--json", default="", help="also write the results to this file")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.first_step:
        first_step(args)
        return
    if args.compile_cost:
        compile_cost(args)
        return
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    shapes = block_shapes(args.d, int(args.params_m * 1e6))
    init = [torch.randn(s, dtype=dtype) * 0.02 for s in shapes]
    grads = [torch.randn(s, dtype=dtype) * 1e-3 for s in shapes]
    n_all = sum(t.numel() for t in init)
    print(f"{len(shapes)} tensors, {n_all / 1e6:.2f}M parameters, {args.dtype}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")

    todo, notes = entries(args)
    live: list[Entry] = []
    for e in todo:
        idx = [i for i, s in enumerate(shapes) if len(s) >= 2 or not e.matrix_only]
        e.params = [nn.Parameter(init[i].clone()) for i in idx]
        for p, i in zip(e.params, idx, strict=True):
            p.grad = grads[i]
        try:
            e.opt = e.build(e.params)
        except Exception as exc:  # a benchmark reports, it does not stop
            notes.append(f"skipped {e.name}: cannot build ({type(exc).__name__}: {exc})")
            continue
        live.append(e)

    for k in range(args.warmup + args.steps):
        print(f"round {k + 1}/{args.warmup + args.steps}: {len(live)} entries", file=sys.stderr, flush=True)
        for e in list(live):
            idx = [i for i, s in enumerate(shapes) if len(s) >= 2 or not e.matrix_only]
            for p, i in zip(e.params, idx, strict=True):
                p.grad = grads[i]  # (again: heavyball sets .grad to None after its step)
            t0 = time.perf_counter()
            try:
                e.opt.step()
            except Exception as exc:
                notes.append(f"dropped {e.name}: step failed ({type(exc).__name__}: {exc})")
                live.remove(e)
                continue
            dt = time.perf_counter() - t0
            e.times.append(dt)
            # warmup steps may compile (AdaBelief's rectified update first runs at step 6): judged after warmup
            if len(e.times) > max(1, args.warmup) and dt > args.max_step_s:
                notes.append(f"dropped {e.name}: {dt:.1f} s per step > --max-step-s")
                live.remove(e)

    base = next((e for e in todo if e.name == "torch.AdamW[fused]"), None)
    base_t = statistics.median(base.times[args.warmup:]) if base and len(base.times) > args.warmup else float("nan")
    print(f"\n{'entry':<30} {'median ms':>10} {'IQR ms':>15} {'x fused AdamW':>14} {'first step s':>13} "
          f"{'state B/param':>14}")
    medians: dict[str, float] = {}
    rows = []
    for e in live:
        timed = e.times[args.warmup:]
        if not timed:
            continue
        q = statistics.quantiles(timed, n=4) if len(timed) >= 2 else [timed[0]] * 3
        med = statistics.median(timed)
        medians[e.name] = med
        n = sum(p.numel() for p in e.params)
        rows.append({"entry": e.name, "median_ms": med * 1e3, "p25_ms": q[0] * 1e3, "p75_ms": q[2] * 1e3,
                     "x_fused_adamw": med / base_t, "first_step_s": e.times[0],
                     "state_bytes_per_param": state_bytes_per_param(e.opt, n)})
        print(f"{e.name:<30} {med * 1e3:>10.2f} {q[0] * 1e3:>7.1f}-{q[2] * 1e3:<7.1f} {med / base_t:>14.2f} "
              f"{e.times[0]:>13.2f} {state_bytes_per_param(e.opt, n):>14.1f}")
    for note in notes:
        print("note:", note)
    side = side_by_side(todo, medians, base_t)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"threads": torch.get_num_threads(), "params": n_all, "rows": rows, "side_by_side": side,
                       "notes": notes}, fh, indent=1)


def side_by_side(todo: list[Entry], medians: dict[str, float], base_t: float) -> list[dict[str, object]]:
    """Per optimizer: default, eager and reference, as ratios to fused AdamW (markdown table on stdout)."""
    by: dict[str, dict[str, float]] = {}
    for e in todo:
        if e.optimizer and e.name in medians:
            by.setdefault(e.optimizer, {})[e.kind] = medians[e.name]
    print("\n| optimizer | default ms | default / fused AdamW | eager / fused AdamW | reference / fused AdamW "
          "| default / reference |")
    print("|---|---:|---:|---:|---:|---:|")
    out: list[dict[str, object]] = []

    def fmt(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    for name, t in by.items():
        d, eg, rf = t.get("default"), t.get("eager"), t.get("ref")
        row = {"optimizer": name, "default_ms": None if d is None else d * 1e3,
               "default_x": None if d is None else d / base_t, "eager_x": None if eg is None else eg / base_t,
               "ref_x": None if rf is None else rf / base_t, "default_over_ref": None if d is None or rf is None
               else d / rf}
        out.append(row)
        print(f"| {name} | {fmt(row['default_ms'])} | {fmt(row['default_x'])} | {fmt(row['eager_x'])} | "  # type: ignore[arg-type]
              f"{fmt(row['ref_x'])} | {fmt(row['default_over_ref'])} |")  # type: ignore[arg-type]
    return out


def first_step(args: argparse.Namespace) -> None:
    """Child of ``--compile-cost``: the time of the first and the second step of one optimizer's default."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(s) * 0.02) for s in [(256, 64), (64,), (64, 256)]]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    t0 = time.perf_counter()
    opt = do.create(args.first_step, params)
    opt.step()
    t1 = time.perf_counter()
    opt.step()
    t2 = time.perf_counter()
    print(json.dumps({"first_s": t1 - t0, "second_s": t2 - t1}))


def compile_cost(args: argparse.Namespace) -> None:
    """First-step time of each elementwise default in fresh processes: empty, then warm inductor cache."""
    names = args.optimizers.split(",") if args.optimizers else [
        n for n in do.available() if n in FAST_PATH or do.get(n).elementwise]
    print("| optimizer | first step, empty cache (s) | first step, warm cache (s) | second step (ms) |")
    print("|---|---:|---:|---:|")
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "OMP_NUM_THREADS": str(args.threads or 1)}
            env.pop("DESCEND_COMPILE", None)
            cmd = [sys.executable, __file__, "--first-step", name, "--threads", str(args.threads or 1)]
            runs = [json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                               .stdout.strip().splitlines()[-1]) for _ in range(2)]
        rows.append({"optimizer": name, "cold_s": runs[0]["first_s"], "warm_s": runs[1]["first_s"],
                     "second_ms": runs[1]["second_s"] * 1e3})
        print(f"| {name} | {runs[0]['first_s']:.1f} | {runs[1]['first_s']:.1f} | {runs[1]['second_s'] * 1e3:.2f} |",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
